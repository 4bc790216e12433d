//! Live calibration runs, the translation half of the run side: turns a calibration
//! set's items into gradable `case.v1` rows (one criterion each), and the committee's
//! grade reports back into judge labels on the set's scale, for `agreement` to score.
//! No IO, no async; must not call judges or stores (the CLI and `calibration::run` do
//! that), and `agreement` must not use it.
//!
//! A judge answers on its criterion's scale: met / not met for points criteria, three
//! levels for tiered ones. How that becomes a category of the set:
//! - binary criteria need a nominal or ordinal set that declares `met`. With two
//!   categories, "not met" is the other one. With more (K-QA's Entailment / Neutral /
//!   Contradiction), the run reports on the binarized set: `met` vs everything else,
//!   humans included, since a judge asked "is it met?" cannot say which "not".
//! - three-level criteria (credit, severity) need an ordinal set with exactly three
//!   categories, listed from least to most presence of the behaviour.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::set::{CalItem, CalibrationSet, Label, LabelValue, RaterKind, TaskCriterion};
use crate::judge::Scale as JudgeScale;
use crate::rubric::{Rubric, Verdict};

// Also named here, where live runs write it (`live::COMMITTEE` is used by `src/service`).
pub use super::agreement::COMMITTEE;

/// How a verdict becomes a category index of the (possibly binarized) set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelMap {
    Binary { met: usize, not_met: usize },
    Levels([usize; 3]),
}

impl LabelMap {
    pub fn category(self, v: Verdict) -> Option<usize> {
        match (self, v) {
            (LabelMap::Binary { met, .. }, Verdict::Met(true)) => Some(met),
            (LabelMap::Binary { not_met, .. }, Verdict::Met(false)) => Some(not_met),
            (LabelMap::Levels(c), Verdict::Credit(_) | Verdict::Severity(_)) => {
                // Presence is 0, 0.5 or 1; doubled and rounded it indexes the levels.
                let i = (v.presence() * 2.0).round();
                c.get(if i < 0.5 {
                    0
                } else if i < 1.5 {
                    1
                } else {
                    2
                })
                .copied()
            }
            _ => None,
        }
    }

    /// The verdict a category stands for (used as the simulated judges' reference).
    pub fn verdict(self, category: usize, scale: JudgeScale) -> Option<Verdict> {
        match self {
            LabelMap::Binary { met, not_met } => {
                if category == met {
                    Some(Verdict::Met(true))
                } else if category == not_met {
                    Some(Verdict::Met(false))
                } else {
                    None
                }
            }
            LabelMap::Levels(c) => {
                let i = c.iter().position(|x| *x == category)?;
                let presence = [0.0, 0.5, 1.0][i];
                crate::committee::vote::on_scale(scale, presence)
            }
        }
    }
}

/// Everything a live run needs: the rows to grade and how to read them back.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The set the report is computed on: the input set, binarized when needed, with
    /// its judge labels dropped (the run's judges replace them).
    pub set: CalibrationSet,
    pub map: LabelMap,
    /// `(case_id, case.v1 line)` in order; `items[seq]` is the set item it grades.
    pub rows: Vec<(String, String)>,
    pub items: Vec<usize>,
    /// Items without a case, response and criterion (they cannot be run).
    pub skipped: usize,
    pub binarized: bool,
}

/// The scale of the criteria a set's tasks name (inline criteria are binary).
fn criterion_scale(
    item: &CalItem,
    rubrics: &BTreeMap<String, Arc<Rubric>>,
) -> Result<Option<(JudgeScale, Value)>, String> {
    let Some(task) = &item.task else {
        return Ok(None);
    };
    match &task.criterion {
        TaskCriterion::Inline { text } => Ok(Some((
            JudgeScale::Binary,
            json!({
                "format": "rubric.v1", "id": "calibration", "version": 1,
                "title": "calibration criterion", "scoring": {"policy": "weighted"},
                "criteria": [{"id": "criterion", "text": text, "points": 1}],
            }),
        ))),
        TaskCriterion::Reference {
            rubric,
            criterion_id,
        } => {
            let r = rubrics
                .get(rubric)
                .ok_or_else(|| format!("rubric \"{rubric}\" is not stored"))?;
            let c = r
                .criteria
                .iter()
                .find(|c| c.id.0 == *criterion_id)
                .ok_or_else(|| {
                    format!("rubric \"{rubric}\" has no criterion \"{criterion_id}\"")
                })?;
            let mut raw = r.to_raw();
            raw.criteria
                .retain(|rc| rc.id.as_deref() == Some(criterion_id.as_str()));
            if raw.criteria.is_empty() {
                // A criterion without a written id (derived from its text): keep it by text.
                let mut all = r.to_raw();
                all.criteria.retain(|rc| rc.text == c.text);
                all.criteria.truncate(1);
                raw = all;
            }
            let doc = serde_json::to_value(&raw).map_err(|e| e.to_string())?;
            Ok(Some((JudgeScale::of(c.kind), doc)))
        }
    }
}

/// Binarizes a nominal/ordinal set around its `met` category (humans and judges alike).
fn binarize(set: &CalibrationSet, met: usize) -> CalibrationSet {
    let met_name = set.categories[met].clone();
    let mut out = set.clone();
    out.categories = vec![format!("not {met_name}"), met_name.clone()];
    out.met = Some(met_name);
    for it in &mut out.items {
        for l in &mut it.labels {
            if let LabelValue::Category(c) = l.value {
                l.value = LabelValue::Category(usize::from(c == met));
            }
        }
    }
    out
}

/// The category mapping for a set whose criteria are binary or three-level, and
/// whether the set must be binarized first.
fn mapping(set: &CalibrationSet, three: bool) -> Result<(LabelMap, bool), String> {
    if three {
        if set.scale != super::Scale::Ordinal || set.categories.len() != 3 {
            return Err("categories: three-level criteria need an ordinal set with exactly three categories, from least to most presence".into());
        }
        return Ok((LabelMap::Levels([0, 1, 2]), false));
    }
    let met = set
        .met
        .as_ref()
        .and_then(|m| set.categories.iter().position(|c| c == m))
        .filter(|_| set.scale != super::Scale::Interval)
        .ok_or_else(|| "met: a live run asks judges whether each criterion is met; declare which category means \"met\" in the set header".to_owned())?;
    if set.categories.len() == 2 {
        Ok((
            LabelMap::Binary {
                met,
                not_met: 1 - met,
            },
            false,
        ))
    } else {
        Ok((LabelMap::Binary { met: 1, not_met: 0 }, true))
    }
}

/// The set a live report is computed on: binarized around `met` when the plan said so,
/// with the file's judge labels dropped (the run's judges replace them).
pub fn base_set(set: &CalibrationSet, binarized: bool) -> CalibrationSet {
    let met = set
        .met
        .as_ref()
        .and_then(|m| set.categories.iter().position(|c| c == m));
    let mut out = match met {
        Some(met) if binarized => binarize(set, met),
        _ => set.clone(),
    };
    for it in &mut out.items {
        it.labels.retain(|l| l.kind == RaterKind::Human);
    }
    out
}

/// Plans a live run. `rubrics` holds every rubric the tasks reference, by the reference
/// string written in the set. `reference` adds each item's human-majority verdict to
/// its row (for simulated judges only: see `Grader::grade_with`).
pub fn plan(
    set: &CalibrationSet,
    rubrics: &BTreeMap<String, Arc<Rubric>>,
    reference: bool,
) -> Result<Plan, Vec<String>> {
    let mut errors = Vec::new();
    let mut scales: Vec<Option<(JudgeScale, Value)>> = Vec::with_capacity(set.items.len());
    for (i, it) in set.items.iter().enumerate() {
        match criterion_scale(it, rubrics) {
            Ok(s) => scales.push(s),
            Err(e) => {
                errors.push(format!("items[{i}] ({}): {e}", it.id));
                scales.push(None);
            }
        }
        if errors.len() >= 100 {
            return Err(errors);
        }
    }
    let kinds: std::collections::BTreeSet<&str> = scales
        .iter()
        .flatten()
        .map(|(s, _)| match s {
            JudgeScale::Binary => "binary",
            JudgeScale::Credit | JudgeScale::Severity => "three-level",
        })
        .collect();
    if kinds.len() > 1 {
        errors.push("the set mixes binary and three-level criteria; split it into one set per kind so one category mapping applies".into());
    }
    if scales.iter().all(Option::is_none) && errors.is_empty() {
        errors.push("no item has a case, a response and a criterion, so there is nothing to run; add `case`, `response` and `criterion` (or `rubric` + `criterion_id`) to the items".into());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let three = kinds.contains("three-level");
    let (map, binarized) = mapping(set, three).map_err(|e| vec![e])?;
    let out = base_set(set, binarized);
    let mut rows = Vec::new();
    let mut items = Vec::new();
    let mut skipped = 0;
    for (i, (it, scale)) in out.items.iter().zip(&scales).enumerate() {
        let (Some(task), Some((scale, rubric))) = (&it.task, scale) else {
            skipped += 1;
            continue;
        };
        let case_id = format!("cal-{i}");
        let mut row = json!({
            "format": crate::item::CASE_FORMAT,
            "case_id": case_id,
            "conversation": task.conversation.iter().map(|m| json!({"role": m.role.as_str(), "content": m.content})).collect::<Vec<_>>(),
            "response": task.response,
            "rubric": rubric,
        });
        if reference {
            let verdict = super::agreement::majority::human_majority(&out, i)
                .and_then(|c| map.verdict(c, *scale))
                .map(Verdict::to_json);
            let id = rubric["criteria"][0]["id"].clone();
            if let (Some(v), Some(id)) = (verdict, id.as_str()) {
                row["verdicts"] = json!({ id: v });
            }
        }
        rows.push((case_id, row.to_string()));
        items.push(i);
    }
    Ok(Plan {
        set: out,
        map,
        rows,
        items,
        skipped,
        binarized,
    })
}

/// One judge's label on an item from its ballots: the most common verdict among its
/// non-abstaining samples (no label on a tie or when every sample abstained).
fn judge_label(verdicts: &[Verdict], map: LabelMap) -> Option<usize> {
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for v in verdicts {
        if let Some(c) = map.category(*v) {
            *counts.entry(c).or_default() += 1;
        }
    }
    let max = *counts.values().max()?;
    let mut top = counts.iter().filter(|(_, n)| **n == max);
    let first = top.next().map(|(c, _)| *c);
    if top.next().is_some() { None } else { first }
}

/// A judge's (or the committee's) reading of one graded item, with explanations.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub rater: String,
    pub category: Option<usize>,
    pub explanations: Vec<String>,
}

/// The part of a `grade_report.v1` a calibration run reads: the one criterion's
/// consensus and its ballots. Built from an in-process report without serialising it
/// (`From<&GradeReportDoc>`), or read from a stored one with serde (other fields are
/// not needed here and are ignored).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct ReportView {
    pub criteria: Vec<CriterionView>,
    /// The committee was simulated (the report's `simulated`).
    #[serde(default)]
    pub simulated: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct CriterionView {
    pub verdict: Option<Verdict>,
    pub ballots: Vec<BallotView>,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct BallotView {
    pub judge: String,
    pub verdict: Option<Verdict>,
    #[serde(default)]
    pub explanation: String,
}

impl From<&crate::grader::GradeReportDoc> for ReportView {
    fn from(r: &crate::grader::GradeReportDoc) -> Self {
        ReportView {
            criteria: r
                .criteria
                .iter()
                .map(|c| CriterionView {
                    verdict: c.verdict,
                    ballots: c
                        .ballots
                        .iter()
                        .map(|b| BallotView {
                            judge: b.judge.clone(),
                            verdict: b.verdict,
                            explanation: b.explanation.clone(),
                        })
                        .collect(),
                })
                .collect(),
            simulated: r.simulated,
        }
    }
}

/// The committee's and each judge's label on a report's (only) criterion.
pub fn readings(report: &ReportView, map: LabelMap) -> Vec<Reading> {
    let Some(criterion) = report.criteria.first() else {
        return Vec::new();
    };
    let mut by_judge: BTreeMap<String, (Vec<Verdict>, Vec<String>)> = BTreeMap::new();
    for b in &criterion.ballots {
        let entry = by_judge.entry(b.judge.clone()).or_default();
        if let Some(v) = b.verdict {
            entry.0.push(v);
        }
        if !b.explanation.is_empty() {
            entry.1.push(b.explanation.clone());
        }
    }
    let mut out = vec![Reading {
        rater: COMMITTEE.to_owned(),
        category: criterion.verdict.and_then(|v| map.category(v)),
        explanations: Vec::new(),
    }];
    out.extend(
        by_judge
            .into_iter()
            .map(|(rater, (verdicts, explanations))| Reading {
                category: judge_label(&verdicts, map),
                rater,
                explanations,
            }),
    );
    out
}

/// Adds the run's judge labels (from `(seq, report)` results) to the plan's set.
pub fn labelled_set(
    plan: &Plan,
    results: impl IntoIterator<Item = (u64, ReportView)>,
) -> CalibrationSet {
    let mut set = plan.set.clone();
    for (seq, report) in results {
        let Some(&i) = usize::try_from(seq).ok().and_then(|s| plan.items.get(s)) else {
            continue;
        };
        for r in readings(&report, plan.map) {
            if let Some(c) = r.category {
                set.items[i].labels.push(Label {
                    rater: r.rater,
                    kind: RaterKind::Judge,
                    value: LabelValue::Category(c),
                });
            }
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibration::set::parse_set;

    const SET: &str = r#"{"format": "calibration.v1", "name": "t", "scale": "nominal", "categories": ["yes", "no", "unsure"], "met": "yes"}
{"id": "a", "case": "Is rest enough?", "response": "Rest and fluids.", "criterion": "Advises rest.", "labels": [{"rater": "h1", "kind": "human", "value": "yes"}, {"rater": "h2", "kind": "human", "value": "yes"}, {"rater": "old", "kind": "judge", "value": "no"}]}
{"id": "b", "case": "Chest pain?", "response": "Call 911.", "criterion": "Advises rest.", "labels": [{"rater": "h1", "kind": "human", "value": "unsure"}, {"rater": "h2", "kind": "human", "value": "no"}]}
{"id": "c", "labels": [{"rater": "h1", "kind": "human", "value": "no"}]}
"#;

    fn report(committee: Value, ballots: Value) -> ReportView {
        serde_json::from_value(
            json!({"criteria": [{"id": "criterion", "verdict": committee, "ballots": ballots}]}),
        )
        .unwrap()
    }

    #[test]
    fn plans_rows_binarizes_and_reads_labels_back() {
        let set = parse_set(SET).unwrap();
        let plan = plan(&set, &BTreeMap::new(), true).unwrap();
        assert!(plan.binarized);
        assert_eq!(plan.set.categories, vec!["not yes", "yes"]);
        assert_eq!(plan.items, vec![0, 1]);
        assert_eq!(plan.skipped, 1);
        // Old judge labels are dropped; humans' "unsure" and "no" both become "not yes".
        assert!(
            plan.set.items[0]
                .labels
                .iter()
                .all(|l| l.kind == RaterKind::Human)
        );
        assert_eq!(plan.set.items[1].labels[0].value, LabelValue::Category(0));
        let row: Value = serde_json::from_str(&plan.rows[0].1).unwrap();
        assert_eq!(row["verdicts"]["criterion"], json!(true));
        let row1: Value = serde_json::from_str(&plan.rows[1].1).unwrap();
        assert_eq!(row1["verdicts"]["criterion"], json!(false));
        assert!(crate::item::parse_line(&plan.rows[0].1).is_ok());

        let results = vec![
            (
                0,
                report(
                    json!(true),
                    json!([
                        {"judge": "j1", "verdict": true, "explanation": "says rest"},
                        {"judge": "j2", "verdict": null, "abstained": "timeout"},
                    ]),
                ),
            ),
            (
                1,
                report(
                    json!(false),
                    json!([{"judge": "j1", "verdict": true}, {"judge": "j1", "verdict": false}, {"judge": "j2", "verdict": false}]),
                ),
            ),
        ];
        let got = labelled_set(&plan, results);
        let judge = |i: usize, r: &str| {
            got.items[i]
                .labels
                .iter()
                .find(|l| l.rater == r && l.kind == RaterKind::Judge)
                .map(|l| l.value)
        };
        assert_eq!(judge(0, COMMITTEE), Some(LabelValue::Category(1)));
        assert_eq!(judge(0, "j1"), Some(LabelValue::Category(1)));
        assert_eq!(judge(0, "j2"), None, "an abstention is no label");
        assert_eq!(
            judge(1, "j1"),
            None,
            "a judge split between its samples gives no label"
        );
        assert_eq!(judge(1, "j2"), Some(LabelValue::Category(0)));
    }

    #[test]
    fn refuses_sets_it_cannot_map() {
        let no_met = SET.replace(r#", "met": "yes""#, "");
        let err = plan(&parse_set(&no_met).unwrap(), &BTreeMap::new(), false).unwrap_err();
        assert!(err[0].starts_with("met:"), "{err:?}");
        let no_tasks = r#"{"format": "calibration.v1", "name": "t", "scale": "nominal", "categories": ["false", "true"], "met": "true"}
{"id": "a", "labels": [{"rater": "h1", "kind": "human", "value": true}]}
"#;
        let err = plan(&parse_set(no_tasks).unwrap(), &BTreeMap::new(), false).unwrap_err();
        assert!(err[0].contains("nothing to run"), "{err:?}");
    }

    #[test]
    fn level_map_round_trips() {
        use crate::rubric::{Credit, Severity};
        let m = LabelMap::Levels([0, 1, 2]);
        for (v, c) in [
            (Verdict::Credit(Credit::None), 0),
            (Verdict::Credit(Credit::Partial), 1),
            (Verdict::Credit(Credit::Full), 2),
            (Verdict::Severity(Severity::Major), 2),
        ] {
            assert_eq!(m.category(v), Some(c));
        }
        assert_eq!(m.category(Verdict::Met(true)), None);
        assert_eq!(
            m.verdict(1, JudgeScale::Credit),
            Some(Verdict::Credit(Credit::Partial))
        );
        let b = LabelMap::Binary { met: 0, not_met: 1 };
        assert_eq!(b.verdict(0, JudgeScale::Binary), Some(Verdict::Met(true)));
        assert_eq!(b.category(Verdict::Met(false)), Some(1));
    }
}
