//! Any CSV as a calibration set, through a column mapping: which columns hold the item
//! id, category, criterion, case and response, and which hold whose labels. The
//! mapping is written `key=column,...` (`parse_csv_mapping`); the scale, categories,
//! met category and set name are given separately. Rows are numbered from 1 after the
//! header; errors name the row, its line in the file and the column.

use std::collections::{BTreeMap, BTreeSet};

use super::{CalItem, CalibrationSet, Label, LabelValue, RaterKind, Scale, Task, TaskCriterion};
use crate::item::{Message, Role};

/// Which CSV columns hold what. Column names are matched against the header with
/// surrounding spaces ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvMapping {
    /// The item id column; without one, items are numbered `row-1`, `row-2`, ...
    pub id: Option<String>,
    pub category: Option<String>,
    pub criterion: Option<String>,
    /// The user's message (one user turn).
    pub case: Option<String>,
    pub response: Option<String>,
    /// (column, rater, kind) for every label column.
    pub labels: Vec<(String, String, RaterKind)>,
    pub scale: Scale,
    /// The categories in order; by default (nominal scales only) the sorted distinct
    /// label values.
    pub categories: Option<Vec<String>>,
    pub met: Option<String>,
    pub name: String,
}

const KEYS: &str = "id, category, criterion, case, response, human:RATER or judge:RATER";

/// Parses a mapping such as
/// `id=row_id,category=topic,criterion=claim,case=question,response=answer,human:alice=label_a,judge:gpt4=gpt_label`.
/// The scale defaults to nominal, the name to `csv`; the caller sets scale, categories,
/// met and name from their own options.
pub fn parse_csv_mapping(spec: &str) -> Result<CsvMapping, String> {
    let mut m = CsvMapping {
        id: None,
        category: None,
        criterion: None,
        case: None,
        response: None,
        labels: Vec::new(),
        scale: Scale::Nominal,
        categories: None,
        met: None,
        name: "csv".into(),
    };
    let mut errors = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, column)) = part.split_once('=') else {
            errors.push(format!("\"{part}\" is not KEY=COLUMN (keys: {KEYS})"));
            continue;
        };
        let (key, column) = (key.trim(), column.trim());
        if column.is_empty() {
            errors.push(format!("\"{part}\": name the column after `=`"));
            continue;
        }
        let slot = match key {
            "id" => &mut m.id,
            "category" => &mut m.category,
            "criterion" => &mut m.criterion,
            "case" => &mut m.case,
            "response" => &mut m.response,
            _ => {
                let rater = key
                    .strip_prefix("human:")
                    .map(|r| (r.trim(), RaterKind::Human))
                    .or_else(|| {
                        key.strip_prefix("judge:")
                            .map(|r| (r.trim(), RaterKind::Judge))
                    });
                match rater {
                    Some(("", _)) => errors.push(format!(
                        "\"{part}\": name the rater, as in {key}NAME={column}"
                    )),
                    Some((rater, kind)) => {
                        if m.labels.iter().any(|(_, r, k)| r == rater && *k == kind) {
                            errors.push(format!(
                                "\"{key}\" is mapped twice; give each rater one column"
                            ));
                        } else {
                            m.labels.push((column.to_owned(), rater.to_owned(), kind));
                        }
                    }
                    None => errors.push(format!("unknown key \"{key}\"; use {KEYS}")),
                }
                continue;
            }
        };
        if slot.is_some() {
            errors.push(format!("\"{key}\" is mapped twice"));
        } else {
            *slot = Some(column.to_owned());
        }
    }
    if m.labels.is_empty() && errors.is_empty() {
        errors.push(
            "map at least one label column, as human:RATER=COLUMN or judge:RATER=COLUMN".into(),
        );
    }
    if errors.is_empty() {
        Ok(m)
    } else {
        Err(errors.join("; "))
    }
}

/// Checks the parts of a mapping that do not depend on the data.
fn check_mapping(m: &CsvMapping) -> Vec<String> {
    let mut errors = Vec::new();
    if m.labels.is_empty() {
        errors.push(
            "map: no label columns; map at least one as human:RATER=COLUMN or judge:RATER=COLUMN"
                .into(),
        );
    }
    if m.labels.iter().any(|(_, r, _)| r.trim().is_empty()) {
        errors.push("map: every label column needs a rater name".into());
    }
    if m.name.trim().is_empty() {
        errors.push("name: empty; name the set".into());
    }
    match (m.scale, &m.categories) {
        (Scale::Interval, Some(_)) => errors.push(
            "categories: an interval scale has numeric labels, not categories; leave --categories out"
                .into(),
        ),
        (Scale::Interval, None) => {}
        (Scale::Ordinal, None) => errors.push(
            "categories: an ordinal scale needs its categories listed in order, low to high (--categories poor,fair,good)"
                .into(),
        ),
        (Scale::Nominal | Scale::Ordinal, Some(cs)) => {
            if cs.len() < 2 {
                errors.push("categories: list at least two categories".into());
            }
            if cs.iter().any(|c| c.trim().is_empty()) {
                errors.push("categories: a category name is empty".into());
            }
            let distinct: BTreeSet<&String> = cs.iter().collect();
            if distinct.len() != cs.len() {
                errors.push("categories: a category is listed twice".into());
            }
        }
        (Scale::Nominal, None) => {}
    }
    if m.scale == Scale::Interval && m.met.is_some() {
        errors.push("met: an interval scale has no categories; leave --met out".into());
    }
    errors
}

/// Imports a CSV through a column mapping. Empty label cells are missing labels; every
/// other problem (missing columns, values outside the categories, numbers that do not
/// parse, repeated ids) is reported, all at once.
pub fn import_csv(text: &str, m: &CsvMapping) -> Result<CalibrationSet, Vec<String>> {
    let mut errors = check_mapping(m);
    if !errors.is_empty() {
        return Err(errors);
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = ::csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| vec![format!("header: {e}")])?
        .clone();
    let mapped = [
        ("id", &m.id),
        ("category", &m.category),
        ("criterion", &m.criterion),
        ("case", &m.case),
        ("response", &m.response),
    ];
    let available = headers
        .iter()
        .map(|h| format!("\"{}\"", h.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut find = |column: &str, role: &str| {
        let found = headers.iter().position(|h| h.trim() == column);
        if found.is_none() {
            errors.push(format!(
                "header: no column \"{column}\" (mapped as {role}); the columns are {available}"
            ));
        }
        found
    };
    let cols: BTreeMap<&str, Option<usize>> = mapped
        .iter()
        .filter_map(|(role, c)| c.as_deref().map(|c| (*role, find(c, role))))
        .collect();
    let label_cols: Vec<(usize, &str, &str, RaterKind)> = m
        .labels
        .iter()
        .filter_map(|(c, rater, kind)| {
            find(c, &format!("{}:{rater}", kind.as_str()))
                .map(|i| (i, c.as_str(), rater.as_str(), *kind))
        })
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let col = |role: &str| cols.get(role).copied().flatten();
    let mut rows = Vec::new();
    for (n, rec) in reader.records().enumerate() {
        match rec {
            Ok(r) => rows.push((n + 1, r)),
            Err(e) => errors.push(format!("row {}: {e}", n + 1)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if rows.is_empty() {
        return Err(vec!["the file has a header but no rows".into()]);
    }
    let categories = match (&m.categories, m.scale) {
        (Some(cs), _) => cs.clone(),
        (None, Scale::Interval) => Vec::new(),
        (None, Scale::Nominal | Scale::Ordinal) => {
            let seen: BTreeSet<&str> = rows
                .iter()
                .flat_map(|(_, r)| label_cols.iter().filter_map(|(i, ..)| r.get(*i)))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect();
            if seen.len() < 2 {
                return Err(vec![format!(
                    "categories: the label columns hold {} distinct value(s) ({}); list the categories with --categories so the set has at least two",
                    seen.len(),
                    seen.iter().copied().collect::<Vec<_>>().join(", ")
                )]);
            }
            seen.into_iter().map(str::to_owned).collect()
        }
    };
    if let Some(met) = &m.met {
        if !categories.contains(met) {
            return Err(vec![format!(
                "met: \"{met}\" is not one of the categories {}",
                categories.join(", ")
            )]);
        }
    }
    let mut items = Vec::with_capacity(rows.len());
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for (n, rec) in &rows {
        let line = rec.position().map_or(*n + 1, |p| p.line() as usize);
        let at = |column: &str| format!("row {n} (line {line}): {column}");
        let cell = |role: &str| {
            col(role)
                .and_then(|i| rec.get(i))
                .filter(|s| !s.trim().is_empty())
                .map(str::to_owned)
        };
        let id = match (&m.id, cell("id")) {
            (None, _) => format!("row-{n}"),
            (Some(c), None) => {
                errors.push(format!(
                    "{}: empty id; give every row an id, or leave id out of the mapping to number rows",
                    at(c)
                ));
                continue;
            }
            (Some(_), Some(id)) => id.trim().to_owned(),
        };
        if let Some(first) = ids.insert(id.clone(), *n) {
            errors.push(format!(
                "{}: id \"{id}\" repeats row {first}; ids must be unique",
                at(m.id.as_deref().unwrap_or("id"))
            ));
        }
        let mut labels = Vec::new();
        for (i, column, rater, kind) in &label_cols {
            let v = rec.get(*i).unwrap_or("").trim();
            if v.is_empty() {
                continue;
            }
            let value = match m.scale {
                Scale::Interval => match v.parse::<f64>() {
                    Ok(x) if x.is_finite() => LabelValue::Number(x),
                    _ => {
                        errors.push(format!(
                            "{}: \"{v}\" is not a finite number; an interval scale needs numbers",
                            at(column)
                        ));
                        continue;
                    }
                },
                Scale::Nominal | Scale::Ordinal => match categories.iter().position(|c| c == v) {
                    Some(c) => LabelValue::Category(c),
                    None => {
                        errors.push(format!(
                            "{}: \"{v}\" is not one of the categories {}; correct the cell or list it with --categories",
                            at(column),
                            categories.join(", ")
                        ));
                        continue;
                    }
                },
            };
            labels.push(Label {
                rater: (*rater).to_owned(),
                kind: *kind,
                value,
            });
        }
        let criterion = cell("criterion");
        let task = match (cell("case"), cell("response"), &criterion) {
            (Some(case), Some(response), Some(text)) => Some(Task {
                conversation: vec![Message {
                    role: Role::User,
                    content: case,
                }],
                response,
                criterion: TaskCriterion::Inline { text: text.clone() },
            }),
            _ => None,
        };
        items.push(CalItem {
            id,
            category: cell("category").map(|c| c.trim().to_owned()),
            criterion,
            task,
            labels,
        });
        if errors.len() > 100 {
            break;
        }
    }
    if errors.is_empty() {
        Ok(CalibrationSet {
            name: m.name.clone(),
            description: None,
            scale: m.scale,
            categories,
            met: m.met.clone(),
            min_pair_items: None,
            items,
        })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_set;
    use super::*;

    const SPEC: &str = "id=row_id,category=topic,criterion=claim,case=question,response=answer,human:alice=label_a,human:bob=label_b,judge:gpt4=gpt_label";

    const CSV: &str = "row_id,topic,question,answer,claim,label_a,label_b,gpt_label\n\
r1,sleep,How long should I nap?,\"Keep naps short, about 20 minutes.\",Recommends a short nap.,yes,yes,yes\n\
r2,diet,Is coffee bad?,\"In moderation, coffee is fine.\",Mentions moderation.,yes,,no\n\
r3,diet,,,Mentions hydration.,no,no,no\n";

    fn mapping() -> CsvMapping {
        parse_csv_mapping(SPEC).unwrap()
    }

    #[test]
    fn parses_a_mapping() {
        let m = mapping();
        assert_eq!(m.id.as_deref(), Some("row_id"));
        assert_eq!(m.case.as_deref(), Some("question"));
        assert_eq!(
            m.labels,
            vec![
                ("label_a".into(), "alice".into(), RaterKind::Human),
                ("label_b".into(), "bob".into(), RaterKind::Human),
                ("gpt_label".into(), "gpt4".into(), RaterKind::Judge),
            ]
        );
        assert_eq!((m.scale, m.name.as_str()), (Scale::Nominal, "csv"));
        let spaced = parse_csv_mapping(" id = row_id , human:alice = label_a ,").unwrap();
        assert_eq!(spaced.id.as_deref(), Some("row_id"));
    }

    #[test]
    fn mapping_errors_say_what_to_write() {
        let cases = [
            ("id", "\"id\" is not KEY=COLUMN"),
            ("id=", "name the column"),
            ("topic=t,human:a=x", "unknown key \"topic\""),
            ("id=a,id=b,human:a=x", "\"id\" is mapped twice"),
            ("human:=x", "name the rater"),
            ("human:a=x,human:a=y", "\"human:a\" is mapped twice"),
            ("id=a", "map at least one label column"),
        ];
        for (spec, expected) in cases {
            let e = parse_csv_mapping(spec).unwrap_err();
            assert!(e.contains(expected), "{spec}: {e}");
        }
        // The same rater name may appear once as a human and once as a judge.
        assert!(parse_csv_mapping("human:a=x,judge:a=y").is_ok());
    }

    #[test]
    fn imports_rows_with_tasks_and_missing_labels() {
        let s = import_csv(CSV, &mapping()).unwrap();
        assert_eq!(
            s.categories,
            vec!["no", "yes"],
            "sorted distinct label values"
        );
        assert_eq!(s.items.len(), 3);
        let r1 = &s.items[0];
        assert_eq!(
            (r1.id.as_str(), r1.category.as_deref()),
            ("r1", Some("sleep"))
        );
        assert_eq!(r1.criterion.as_deref(), Some("Recommends a short nap."));
        let task = r1.task.as_ref().unwrap();
        assert_eq!(task.response, "Keep naps short, about 20 minutes.");
        assert_eq!(task.conversation[0].content, "How long should I nap?");
        assert_eq!(
            s.items[1].labels.len(),
            2,
            "an empty cell is a missing label"
        );
        assert_eq!(s.items[1].labels[1].kind, RaterKind::Judge);
        assert_eq!(s.items[2].task, None, "no case or response: no task");
        assert_eq!(parse_set(&s.to_jsonl()), Ok(s));
    }

    #[test]
    fn data_errors_name_row_and_column() {
        let check = |csv: &str, m: &CsvMapping, expected: &str| {
            let errs = import_csv(csv, m).unwrap_err();
            assert!(
                errs.iter().any(|e| e.starts_with(expected)),
                "expected {expected:?}, got {errs:?}"
            );
        };
        let m = mapping();
        check(
            &CSV.replace("label_b", "label_x"),
            &m,
            "header: no column \"label_b\" (mapped as human:bob); the columns are \"row_id\", \"topic\"",
        );
        let mut declared = m.clone();
        declared.categories = Some(vec!["no".into(), "yes".into()]);
        check(
            &CSV.replace(",yes,,no", ",maybe,,no"),
            &declared,
            "row 2 (line 3): label_a: \"maybe\" is not one of the categories no, yes",
        );
        check(
            &CSV.replace("r2,", "r1,"),
            &m,
            "row 2 (line 3): row_id: id \"r1\" repeats row 1",
        );
        check(
            &CSV.replace("r3,", ","),
            &m,
            "row 3 (line 4): row_id: empty id",
        );
        let mut ordinal = m.clone();
        ordinal.scale = Scale::Ordinal;
        check(
            CSV,
            &ordinal,
            "categories: an ordinal scale needs its categories",
        );
        let mut interval = m.clone();
        interval.scale = Scale::Interval;
        check(
            CSV,
            &interval,
            "row 1 (line 2): label_a: \"yes\" is not a finite number",
        );
        let mut met = m.clone();
        met.met = Some("true".into());
        check(
            CSV,
            &met,
            "met: \"true\" is not one of the categories no, yes",
        );
        check(
            "row_id,label_a,label_b,gpt_label,topic,question,answer,claim\nr1,yes,yes,yes,,,,\n",
            &m,
            "categories: the label columns hold 1 distinct value(s) (yes)",
        );
        check(
            "row_id,topic,question,answer,claim,label_a,label_b,gpt_label\nr1,a\n",
            &m,
            "row 1: CSV error",
        );
    }

    #[test]
    fn numbers_ids_and_reads_interval_labels() {
        let mut m = parse_csv_mapping("human:a=x,judge:j=y").unwrap();
        m.scale = Scale::Interval;
        let s = import_csv("\u{feff}x,y\n1.5,2\n,-3e0\n", &m).unwrap();
        assert_eq!(s.items[0].id, "row-1");
        assert_eq!(s.items[1].id, "row-2");
        assert_eq!(s.items[0].labels[0].value, LabelValue::Number(1.5));
        assert_eq!(s.items[1].labels.len(), 1);
        assert!(s.categories.is_empty());
        assert_eq!(parse_set(&s.to_jsonl()), Ok(s));
        let errs = import_csv("x,y\ninf,1\n", &m).unwrap_err();
        assert!(
            errs[0].contains("\"inf\" is not a finite number"),
            "{errs:?}"
        );
    }

    #[test]
    fn the_csv_example_imports() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("calibration/examples");
        let text = std::fs::read_to_string(dir.join("sleep-advice.csv")).unwrap();
        let mut m = parse_csv_mapping(
            "id=row_id,category=topic,criterion=claim,case=question,response=answer,human:alice=label_a,human:bob=label_b,judge:gpt4=gpt_label",
        )
        .unwrap();
        m.categories = Some(vec!["no".into(), "partly".into(), "yes".into()]);
        m.scale = Scale::Ordinal;
        m.met = Some("yes".into());
        m.name = "sleep-advice".into();
        let s = import_csv(&text, &m).unwrap();
        assert!(s.items.len() >= 8);
        assert!(s.items.iter().all(|i| i.task.is_some()));
        assert_eq!(s.raters(RaterKind::Human), vec!["alice", "bob"]);
        assert_eq!(parse_set(&s.to_jsonl()), Ok(s));
    }
}
