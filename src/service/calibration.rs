//! Calibration sets, labels (with their history), runs and disagreements as callers
//! see them. A set belongs to the key that uploaded it and a run to the key that
//! started it; annotators and admins see every set and run, a client only its own
//! (another's is `not_found`). Must not compute statistics (that is `calibration`).

use serde_json::{Value, json};

use super::auth::ListFilter;
use super::{Action, Caller, Owned, Service, corrupt, invalid};
use crate::calibration::set::NewLabel;
use crate::calibration::{CalibrationSet, LabelValue, RaterKind};
use crate::error::Error;
use crate::item::RubricSource;
use crate::rubric::{FieldError, Invalid};
use crate::store::{CalibrationRunRecord, CalibrationSetRecord, LabelEvent, now_ms};

/// Largest bootstrap a calibration run may ask for (CPU per report).
const MAX_RESAMPLES: usize = 10_000;

/// Importer errors (`line N: field: message`) as field errors under `field`.
fn errors_under(field: &str, errors: Vec<String>) -> Error {
    Error::Invalid(Invalid(
        errors
            .into_iter()
            .map(|e| FieldError::new(field, e))
            .collect(),
    ))
}

fn set_json(rec: &CalibrationSetRecord, set: Option<&CalibrationSet>) -> Value {
    let mut v = json!({
        "id": rec.id,
        "name": rec.name,
        "owner": rec.owner,
        "items": rec.items,
        "labels": rec.labels,
        "created_at": rec.created_at,
        "updated_at": rec.updated_at,
    });
    if let Some(s) = set {
        v["scale"] = json!(s.scale.as_str());
        v["categories"] = json!(s.categories);
        v["met"] = json!(s.met);
        v["raters"] =
            json!({"humans": s.raters(RaterKind::Human), "judges": s.raters(RaterKind::Judge)});
        v["runnable_items"] = json!(s.items.iter().filter(|i| i.task.is_some()).count());
    }
    v
}

fn label_count(set: &CalibrationSet) -> u64 {
    set.items.iter().map(|i| i.labels.len() as u64).sum()
}

/// A label's value as the API shows it: the category's name, or the number.
fn label_value_json(set: &CalibrationSet, v: &LabelValue) -> Value {
    match v {
        LabelValue::Category(c) => set
            .categories
            .get(*c)
            .map_or(Value::Null, |n| Value::from(n.as_str())),
        LabelValue::Number(x) => json!(x),
    }
}

/// The current value of `(item, rater, kind)` in a set, as the API shows it.
fn current_label(set: &CalibrationSet, l: &NewLabel) -> Option<Value> {
    let item = set.items.iter().find(|it| it.id == l.item)?;
    let label = item
        .labels
        .iter()
        .find(|x| x.rater == l.rater && x.kind == l.kind)?;
    Some(label_value_json(set, &label.value))
}

fn event_json(e: &LabelEvent) -> Value {
    json!({
        "item": e.item,
        "rater": e.rater,
        "kind": e.kind,
        "value": e.value,
        "previous": e.previous,
        "author": e.author,
        "at": e.at,
    })
}

fn run_not_found(id: &str) -> Error {
    Error::NotFound {
        what: "calibration run",
        name: id.to_owned(),
    }
}

impl Service {
    /// Uploads a set: `{"format", "content", "name"?, "csv"?}`; stored as calibration.v1.
    pub async fn create_calibration_set(
        &self,
        caller: &Caller,
        doc: &Value,
    ) -> Result<Value, Error> {
        use crate::calibration::set;
        caller.require(Action::CreateCalibrationSet)?;
        let format = doc
            .get("format")
            .and_then(Value::as_str)
            .unwrap_or("calibration.v1");
        let Some(content) = doc.get("content").and_then(Value::as_str) else {
            return Err(invalid(
                "content",
                "missing: put the set's text (JSONL or CSV) in `content` as a string",
            ));
        };
        let mut parsed = match format {
            "calibration.v1" => set::parse_set(content),
            "kqa" => set::import_kqa(content),
            "healthbench-meta" => set::import_healthbench_meta(content),
            "csv" => {
                let csv = doc.get("csv").unwrap_or(&Value::Null);
                let mapping = csv_mapping(csv)?;
                set::import_csv(content, &mapping)
            }
            other => {
                return Err(invalid(
                    "format",
                    format!("\"{other}\" is not a set format; use calibration.v1, kqa, healthbench-meta or csv"),
                ));
            }
        }
        .map_err(|e| errors_under("content", e))?;
        if let Some(name) = doc.get("name").and_then(Value::as_str) {
            if name.trim().is_empty() {
                return Err(invalid("name", "must not be empty"));
            }
            parsed.name = name.to_owned();
        }
        // Set names label the agreement gauges, so they are unique across owners. The
        // conflict names no id another owner could then read.
        let _guard = self.calibration_lock.lock().await;
        if let Some(other) = self
            .store
            .list_calibration_sets(None)
            .await?
            .into_iter()
            .find(|s| s.name == parsed.name)
        {
            let whose = if caller.sees(Owned::Calibration, other.owner.as_deref()) {
                format!(" (id {})", other.id)
            } else {
                String::new()
            };
            return Err(Error::Conflict(format!(
                "a calibration set named \"{}\" exists{whose}; pass another `name` (set names label the agreement metrics)",
                other.name
            )));
        }
        let now = now_ms();
        let rec = CalibrationSetRecord {
            id: uuid::Uuid::now_v7().to_string(),
            name: parsed.name.clone(),
            owner: caller.owner().map(str::to_owned),
            document: parsed.to_jsonl(),
            items: parsed.items.len() as u64,
            labels: label_count(&parsed),
            created_at: now,
            updated_at: now,
        };
        self.store.put_calibration_set(&rec).await?;
        Ok(set_json(&rec, Some(&parsed)))
    }

    /// A stored set the caller may see, parsed.
    async fn stored_set(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(CalibrationSetRecord, CalibrationSet), Error> {
        let missing = || Error::NotFound {
            what: "calibration set",
            name: id.to_owned(),
        };
        let rec = self.store.calibration_set(id).await?.ok_or_else(missing)?;
        if !caller.sees(Owned::Calibration, rec.owner.as_deref()) {
            return Err(missing());
        }
        let set = crate::calibration::set::parse_set(&rec.document)
            .map_err(|e| corrupt(format_args!("stored calibration set {id}"), e.join("; ")))?;
        Ok((rec, set))
    }

    pub async fn calibration_set(&self, caller: &Caller, id: &str) -> Result<Value, Error> {
        caller.require(Action::ReadCalibration)?;
        let (rec, set) = self.stored_set(caller, id).await?;
        Ok(set_json(&rec, Some(&set)))
    }

    /// The caller's sets (annotators and admins: every set, or `owner`'s).
    pub async fn calibration_sets(
        &self,
        caller: &Caller,
        owner: Option<&str>,
    ) -> Result<Value, Error> {
        caller.require(Action::ReadCalibration)?;
        let sets = match caller.list_filter(Owned::Calibration, owner) {
            ListFilter::Nothing => Vec::new(),
            ListFilter::All => self.store.list_calibration_sets(None).await?,
            ListFilter::Owner(o) => self.store.list_calibration_sets(Some(o)).await?,
        };
        Ok(json!({"sets": sets.iter().map(|s| set_json(s, None)).collect::<Vec<_>>()}))
    }

    /// Adds (or corrects) labels: `{"labels": [{"item", "rater", "kind", "value"}]}`.
    /// All or nothing: one invalid label changes nothing. Each write is kept in the
    /// set's label history with its author, time and the value it replaced.
    pub async fn add_calibration_labels(
        &self,
        caller: &Caller,
        id: &str,
        doc: &Value,
    ) -> Result<Value, Error> {
        use crate::calibration::set::parse_new_labels;
        caller.require(Action::AddLabels)?;
        let labels = parse_new_labels(doc).map_err(|e| errors_under("labels", e))?;
        // Read-modify-write of one set at a time, so two annotators never lose a label.
        let _guard = self.calibration_lock.lock().await;
        let (rec, mut set) = self.stored_set(caller, id).await?;
        let previous: Vec<Option<Value>> = labels.iter().map(|l| current_label(&set, l)).collect();
        let added = set
            .add_labels(&labels)
            .map_err(|e| errors_under("labels", e))?;
        let at = now_ms();
        let history: Vec<LabelEvent> = labels
            .iter()
            .zip(previous)
            .map(|(l, previous)| LabelEvent {
                item: l.item.clone(),
                rater: l.rater.clone(),
                kind: l.kind.as_str().to_owned(),
                value: current_label(&set, l).unwrap_or(Value::Null),
                previous,
                author: caller.owner().map(str::to_owned),
                at,
            })
            .collect();
        let rec = CalibrationSetRecord {
            document: set.to_jsonl(),
            items: set.items.len() as u64,
            labels: label_count(&set),
            updated_at: at,
            ..rec
        };
        self.store
            .update_calibration_set(id, &rec.document, rec.items, rec.labels, &history)
            .await?;
        Ok(
            json!({"added": added.added, "replaced": added.replaced, "set": set_json(&rec, Some(&set))}),
        )
    }

    /// Every label written to a set through the API (one item's, when given), oldest
    /// first: who wrote it, when, and the value it replaced.
    pub async fn label_history(
        &self,
        caller: &Caller,
        id: &str,
        item: Option<&str>,
    ) -> Result<Value, Error> {
        caller.require(Action::ReadCalibration)?;
        let (_, set) = self.stored_set(caller, id).await?;
        if let Some(item) = item {
            if !set.items.iter().any(|it| it.id == item) {
                return Err(invalid(
                    "item",
                    format!("no item \"{item}\" in set \"{}\"", set.name),
                ));
            }
        }
        let events = self.store.label_history(id, item).await?;
        Ok(json!({
            "set": id,
            "item": item,
            "history": events.iter().map(event_json).collect::<Vec<_>>(),
        }))
    }

    /// Starts a calibration run over a stored set: `{"set", "seed"?, "resamples"?,
    /// "confidence"?}`. The run is a job; its report is written when the job finishes.
    pub async fn start_calibration_run(
        &self,
        caller: &Caller,
        doc: &Value,
    ) -> Result<Value, Error> {
        use crate::calibration::{ReportOptions, live, run::RunOptions};
        caller.require(Action::StartCalibrationRun)?;
        let Some(set_id) = doc.get("set").and_then(Value::as_str) else {
            return Err(invalid(
                "set",
                "missing: the id of a stored calibration set",
            ));
        };
        let defaults = ReportOptions::default();
        let seed = match doc.get("seed") {
            None | Some(Value::Null) => defaults.seed,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| invalid("seed", "must be a non-negative integer"))?,
        };
        let resamples = match doc.get("resamples") {
            None | Some(Value::Null) => defaults.resamples,
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n <= MAX_RESAMPLES)
                .ok_or_else(|| {
                    invalid(
                        "resamples",
                        format!("must be an integer from 0 to {MAX_RESAMPLES}"),
                    )
                })?,
        };
        let confidence = match doc.get("confidence") {
            None | Some(Value::Null) => defaults.confidence,
            Some(v) => v.as_f64().filter(|c| *c > 0.0 && *c < 1.0).ok_or_else(|| {
                invalid("confidence", "must be a number between 0 and 1, e.g. 0.95")
            })?,
        };
        let (_, set) = self.stored_set(caller, set_id).await?;
        if set.items.len() > self.limits.max_items_per_job {
            return Err(Error::TooLarge {
                what: "calibration run",
                detail: format!(
                    "{} items; the limit is {} (server.max_items_per_job)",
                    set.items.len(),
                    self.limits.max_items_per_job
                ),
                field: Some("set".into()),
            });
        }
        self.check_job_quota(caller).await?;
        let mut rubrics = std::collections::BTreeMap::new();
        for it in &set.items {
            if let Some(crate::calibration::set::Task {
                criterion: crate::calibration::set::TaskCriterion::Reference { rubric, .. },
                ..
            }) = &it.task
            {
                if rubrics.contains_key(rubric) {
                    continue;
                }
                let (id, version) = crate::item::parse_rubric_reference(rubric)
                    .map_err(|m| invalid("set", format!("rubric \"{rubric}\": {m}")))?;
                let r = self
                    .grader
                    .resolve(&RubricSource::Reference { id, version })
                    .await?;
                self.check_criteria(r.criteria.len(), "set")?;
                rubrics.insert(rubric.clone(), r);
            }
        }
        let plan = live::plan(&set, &rubrics, self.grader.simulated())
            .map_err(|e| errors_under("set", e))?;
        let opts = RunOptions::from_plan(
            &plan,
            &ReportOptions {
                seed,
                resamples,
                confidence,
            },
        );
        let run = CalibrationRunRecord {
            id: uuid::Uuid::now_v7().to_string(),
            set_id: set_id.to_owned(),
            options: serde_json::to_string(&opts).map_err(|e| Error::Internal(e.to_string()))?,
            report: None,
            finished_at: None,
        };
        self.store
            .create_calibration_run(&run, seed, caller.owner(), &plan.rows)
            .await?;
        self.jobs.start(&run.id);
        self.calibration_run(caller, &run.id).await
    }

    /// A run the caller may see, with its job.
    async fn stored_run(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(CalibrationRunRecord, crate::store::JobRecord), Error> {
        caller.require(Action::ReadCalibration)?;
        let run = self
            .store
            .calibration_run(id)
            .await?
            .ok_or_else(|| run_not_found(id))?;
        let job = self.job_record(id).await?;
        if !caller.sees(Owned::Calibration, job.owner.as_deref()) {
            return Err(run_not_found(id));
        }
        Ok((run, job))
    }

    /// A run: its job's progress and, once finished, the agreement report.
    pub async fn calibration_run(&self, caller: &Caller, id: &str) -> Result<Value, Error> {
        let (run, job) = self.stored_run(caller, id).await?;
        let report: Value = match &run.report {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| corrupt(format_args!("report of calibration run {id}"), e))?,
            None => Value::Null,
        };
        Ok(json!({
            "id": run.id,
            "set": run.set_id,
            "owner": job.owner,
            "state": job.state.as_str(),
            "job": super::job_json(&job),
            "finished_at": run.finished_at,
            "report": report,
        }))
    }

    /// Items where the committee or a judge differs from the human majority, with the
    /// judges' explanations, in item order after `after` (a `seq`).
    pub async fn calibration_disagreements(
        &self,
        caller: &Caller,
        id: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Value, Error> {
        use crate::calibration::{live, report::human_majority, run};
        let (rec, _) = self.stored_run(caller, id).await?;
        let opts: run::RunOptions = serde_json::from_str(&rec.options)
            .map_err(|e| corrupt(format_args!("options of calibration run {id}"), e))?;
        // The run was visible, so its set is read as the service (a client's run may
        // be over a set it could see when it started the run).
        let (_, stored) = self.stored_set(&Caller::local_admin(), &rec.set_id).await?;
        let plan = run::stored_plan(&stored, &opts)?;
        let limit = limit.clamp(1, 500) as usize;
        let name = |c: Option<usize>| c.and_then(|c| plan.set.categories.get(c)).cloned();
        let mut items = Vec::new();
        let mut cursor = after;
        let mut more = false;
        'pages: loop {
            let page = self.store.results_by_seq(id, cursor, 500).await?;
            let Some(last) = page.last().map(|(s, _)| *s) else {
                break;
            };
            for (seq, text) in page {
                if items.len() == limit {
                    more = true;
                    break 'pages;
                }
                cursor = Some(seq);
                let Some(&i) = usize::try_from(seq).ok().and_then(|s| plan.items.get(s)) else {
                    continue;
                };
                let report: Value = serde_json::from_str(&text)
                    .map_err(|e| corrupt(format_args!("calibration run {id} result {seq}"), e))?;
                let Some(majority) = human_majority(&plan.set, i) else {
                    continue;
                };
                let readings = live::readings(&report, plan.map);
                if readings
                    .iter()
                    .all(|r| r.category.is_none_or(|c| c == majority))
                {
                    continue;
                }
                let it = &plan.set.items[i];
                let committee = readings.iter().find(|r| r.rater == live::COMMITTEE);
                items.push(json!({
                    "seq": seq,
                    "item": it.id,
                    "category": it.category,
                    "criterion": it.criterion,
                    "response": it.task.as_ref().map(|t| t.response.as_str()),
                    "human_majority": name(Some(majority)),
                    "humans": it.labels.iter().filter(|l| l.kind == RaterKind::Human).map(|l| json!({
                        "rater": l.rater,
                        "label": label_value_json(&plan.set, &l.value),
                    })).collect::<Vec<_>>(),
                    "committee": committee.and_then(|r| name(r.category)),
                    "judges": readings.iter().filter(|r| r.rater != live::COMMITTEE).map(|r| json!({
                        "judge": r.rater,
                        "label": name(r.category),
                        "agrees": r.category.map(|c| c == majority),
                        "explanations": r.explanations,
                    })).collect::<Vec<_>>(),
                }));
            }
            cursor = Some(last);
        }
        let next = if more { cursor } else { None };
        Ok(json!({"run": id, "binarized": plan.binarized, "items": items, "next": next}))
    }
}

/// The CSV column mapping of an upload: `{"map": "...", "scale"?, "categories"?, "met"?, "name"?}`.
fn csv_mapping(v: &Value) -> Result<crate::calibration::set::CsvMapping, Error> {
    let Some(spec) = v.get("map").and_then(Value::as_str) else {
        return Err(invalid(
            "csv.map",
            "missing: a CSV upload needs a column mapping such as \"id=row,human:alice=label_a,judge:gpt=label_g\"",
        ));
    };
    let mut m =
        crate::calibration::set::parse_csv_mapping(spec).map_err(|e| invalid("csv.map", e))?;
    if let Some(s) = v.get("scale").and_then(Value::as_str) {
        m.scale = crate::calibration::Scale::parse(s)
            .ok_or_else(|| invalid("csv.scale", "use nominal, ordinal or interval"))?;
    }
    if let Some(c) = v.get("categories").and_then(Value::as_array) {
        m.categories = Some(
            c.iter()
                .map(|x| x.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid("csv.categories", "must be a list of strings"))?,
        );
    }
    if let Some(s) = v.get("met").and_then(Value::as_str) {
        m.met = Some(s.to_owned());
    }
    if let Some(s) = v.get("name").and_then(Value::as_str) {
        m.name = s.to_owned();
    }
    Ok(m)
}
