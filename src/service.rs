//! The domain facade both transports call (STYLE's "grader facade"): grade, jobs,
//! results, summaries, rubrics, judges. Takes validated or raw JSON documents and
//! returns documents in their versioned formats, so HTTP and gRPC give identical
//! answers. Must not know about axum, tonic or HTTP status codes.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::Error;
use crate::grader::{Grader, example_score_from_report};
use crate::item::{RubricSource, parse_item, parse_line};
use crate::jobs::Jobs;
use crate::rubric::schema::parse_rubric;
use crate::rubric::{FieldError, Invalid};
use crate::score::{self, DEFAULT_RESAMPLES, report};
use crate::store::{JobRecord, RubricEntry, Store, now_ms};

/// Limits applied at the edge of the domain.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_items_per_job: usize,
    pub max_criteria_per_rubric: usize,
}

pub struct Service {
    pub grader: Arc<Grader>,
    pub store: Arc<dyn Store>,
    pub jobs: Arc<Jobs>,
    pub limits: Limits,
    /// Serialises calibration set writes (unique names; read, add labels, write back).
    pub calibration_lock: tokio::sync::Mutex<()>,
}

/// One page of results.
pub struct ResultPage {
    /// `(finished_seq, seq, result_json)`.
    pub rows: Vec<(u64, u64, String)>,
}

impl Service {
    fn check_criteria(&self, n: usize, field: &str) -> Result<(), Error> {
        if n > self.limits.max_criteria_per_rubric {
            return Err(Error::TooLarge {
                what: "rubric",
                detail: format!(
                    "{n} criteria; the limit is {} (server.max_criteria_per_rubric)",
                    self.limits.max_criteria_per_rubric
                ),
                field: Some(field.to_owned()),
            });
        }
        Ok(())
    }

    /// Grades one item document; returns a `grade_report.v1`.
    pub async fn grade(&self, doc: &Value) -> Result<Value, Error> {
        let (_, item) = parse_item(doc)?;
        let rubric = self.grader.resolve(&item.rubric).await?;
        self.check_criteria(rubric.criteria.len(), "rubric.criteria")?;
        Ok(self.grader.grade_with(&item, &rubric).await?.to_json())
    }

    /// Stores and starts a job from item lines (JSON documents). Every item is
    /// validated first; nothing is stored if any is invalid.
    pub async fn submit_job(
        &self,
        lines: Vec<String>,
        seed: u64,
        owner: Option<&str>,
    ) -> Result<JobRecord, Error> {
        if lines.is_empty() {
            return Err(Error::Invalid(Invalid::one(
                "items",
                "a job needs at least one item",
            )));
        }
        if lines.len() > self.limits.max_items_per_job {
            return Err(Error::TooLarge {
                what: "job",
                detail: format!(
                    "{} items; the limit is {} (server.max_items_per_job)",
                    lines.len(),
                    self.limits.max_items_per_job
                ),
                field: Some("items".into()),
            });
        }
        let mut errs = Vec::new();
        let mut rows = Vec::with_capacity(lines.len());
        for (i, line) in lines.into_iter().enumerate() {
            match parse_line(&line) {
                Ok((_, item)) => {
                    if let RubricSource::Reference { .. } = &item.rubric {
                        if let Err(e) = self.grader.resolve(&item.rubric).await {
                            errs.push(FieldError::new(format!("items[{i}].rubric"), e.to_string()));
                            continue;
                        }
                    }
                    if item.response.is_none() {
                        errs.push(FieldError::new(
                            format!("items[{i}].response"),
                            "missing: the text to grade goes in `response`",
                        ));
                        continue;
                    }
                    rows.push((item.case.id, line));
                }
                Err(inv) => errs.extend(inv.under(&format!("items[{i}]")).0),
            }
            if errs.len() >= 100 {
                break;
            }
        }
        if !errs.is_empty() {
            return Err(Error::Invalid(Invalid(errs)));
        }
        let id = uuid::Uuid::now_v7().to_string();
        self.store.create_job(&id, seed, owner, &rows).await?;
        self.jobs.start(&id);
        self.job(&id).await
    }

    pub async fn job(&self, id: &str) -> Result<JobRecord, Error> {
        self.store.job(id).await?.ok_or_else(|| Error::NotFound {
            what: "job",
            name: id.to_owned(),
        })
    }

    pub async fn list_jobs(
        &self,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<JobRecord>, Option<String>), Error> {
        let before = match cursor {
            None | Some("") => None,
            Some(c) => {
                let (t, id) = c
                    .split_once('_')
                    .and_then(|(t, id)| Some((t.parse::<i64>().ok()?, id.to_owned())))
                    .ok_or_else(|| {
                        Error::Invalid(Invalid::one("after", "not a cursor from a previous page"))
                    })?;
                Some((t, id))
            }
        };
        let limit = limit.clamp(1, 500);
        let jobs = self.store.list_jobs(before, limit).await?;
        let next = (jobs.len() == limit as usize)
            .then(|| jobs.last().map(|j| format!("{}_{}", j.created_at, j.id)))
            .flatten();
        Ok((jobs, next))
    }

    pub async fn cancel_job(&self, id: &str) -> Result<JobRecord, Error> {
        let job = self.job(id).await?;
        if !job.state.is_final() {
            self.jobs.cancel(id).await?;
        }
        self.job(id).await
    }

    /// Finished results after `after` (completion order).
    pub async fn results(&self, id: &str, after: u64, limit: u32) -> Result<ResultPage, Error> {
        self.job(id).await?;
        Ok(ResultPage {
            rows: self.store.results(id, after, limit).await?,
        })
    }

    /// The aggregate of a job's reports, in the shape of `tribunal score --format json`.
    pub async fn summary(&self, id: &str) -> Result<Value, Error> {
        let job = self.job(id).await?;
        let mut scores = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.results_by_seq(id, after, 1000).await?;
            let Some(last) = page.last().map(|(s, _)| *s) else {
                break;
            };
            after = Some(last);
            for (_, text) in page {
                let v: Value =
                    serde_json::from_str(&text).map_err(|e| Error::Store(e.to_string()))?;
                if let Some(s) = example_score_from_report(&v) {
                    scores.push(s);
                }
            }
        }
        let examples: Vec<_> = scores.iter().map(|(_, s)| s.clone()).collect();
        let summary = score::summarize(&examples, job.seed, DEFAULT_RESAMPLES);
        let mut v = report::summary_json(
            &summary,
            scores.iter().map(|(id, s)| (id.as_str(), s)),
            job.seed,
            DEFAULT_RESAMPLES,
        );
        v["job"] = json!({"id": job.id, "state": job.state.as_str(), "failed": job.failed, "pending": job.pending()});
        Ok(v)
    }

    /// Validates and stores a rubric version; `created` is false when identical
    /// content was already stored under that version.
    pub async fn create_rubric(&self, doc: &Value) -> Result<(Value, bool), Error> {
        let rubric = parse_rubric(doc)?;
        self.check_criteria(rubric.criteria.len(), "criteria")?;
        let created = self.store.put_rubric(&rubric).await?;
        Ok((to_value(&rubric.to_raw())?, created))
    }

    pub fn validate_rubric(&self, doc: &Value) -> Result<Value, Invalid> {
        let rubric = parse_rubric(doc)?;
        to_value(&rubric.to_raw()).map_err(|e| Invalid::one("", e.to_string()))
    }

    pub async fn rubric(&self, id: &str, version: Option<u32>) -> Result<Value, Error> {
        let r = self
            .store
            .get_rubric(id, version)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "rubric",
                name: version.map_or_else(|| id.to_owned(), |v| format!("{id}@{v}")),
            })?;
        to_value(&r.to_raw())
    }

    pub async fn rubrics(&self) -> Result<Value, Error> {
        Ok(
            json!({"rubrics": self.store.list_rubrics().await?.iter().map(entry_json).collect::<Vec<_>>()}),
        )
    }

    pub async fn rubric_versions(&self, id: &str) -> Result<Value, Error> {
        let versions = self.store.rubric_versions(id).await?;
        if versions.is_empty() {
            return Err(Error::NotFound {
                what: "rubric",
                name: id.to_owned(),
            });
        }
        Ok(json!({"id": id, "versions": versions.iter().map(entry_json).collect::<Vec<_>>()}))
    }

    /// The committee, its limits and live per-judge counters.
    pub fn judges(&self) -> Value {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.grader.committee;
        let judge = |j: &crate::judge::call::JudgeClient, role: &str, weight: Option<f64>| {
            let s = &j.stats;
            json!({
                "name": j.name(),
                "role": role,
                "weight": weight,
                "model": j.cfg.model,
                "simulated": j.simulated(),
                "limits": {
                    "requests_per_minute": j.cfg.limits.requests_per_minute,
                    "tokens_per_minute": j.cfg.limits.tokens_per_minute,
                    "max_concurrency": j.cfg.limits.max_concurrency,
                    "timeout_ms": u64::try_from(j.cfg.timeout.as_millis()).unwrap_or(u64::MAX),
                },
                "health": {
                    "calls": s.calls.load(Relaxed),
                    "retries": s.retries.load(Relaxed),
                    "parse_retries": s.parse_retries.load(Relaxed),
                    "limiter_waits": j.limiter.waits.load(Relaxed),
                    "input_tokens": s.input_tokens.load(Relaxed),
                    "output_tokens": s.output_tokens.load(Relaxed),
                },
            })
        };
        let mut judges: Vec<Value> = c
            .members
            .iter()
            .map(|m| judge(&m.client, "member", Some(m.weight)))
            .collect();
        if let Some(e) = &c.escalation {
            judges.push(judge(e, "escalation", None));
        }
        json!({
            "simulated": self.grader.simulated(),
            "committee": {
                "consensus": c.cfg.consensus.name(),
                "veto_consensus": c.cfg.veto_consensus.name(),
                "quorum": c.cfg.quorum,
                "n_samples": c.cfg.n_samples,
                "prompt_mode": match c.cfg.prompt_mode {
                    crate::config::PromptMode::PerCriterion => "per_criterion",
                    crate::config::PromptMode::Batched => "batched",
                },
            },
            "judges": judges,
        })
    }
}

fn entry_json(e: &RubricEntry) -> Value {
    json!({"id": e.id, "version": e.version, "title": e.title, "criteria": e.criteria, "created_at": e.created_at})
}

fn to_value<T: serde::Serialize>(t: &T) -> Result<Value, Error> {
    serde_json::to_value(t).map_err(|e| Error::Internal(e.to_string()))
}

/// The job status document shared by both transports.
pub fn job_json(j: &JobRecord) -> Value {
    json!({
        "id": j.id,
        "state": j.state.as_str(),
        "total": j.total,
        "done": j.done,
        "abstained": j.abstained,
        "failed": j.failed,
        "pending": j.pending(),
        "calls": j.calls,
        "input_tokens": j.input_tokens,
        "output_tokens": j.output_tokens,
        "cost_usd": j.cost_usd,
        "eta_seconds": j.eta_seconds(now_ms()),
        "created_at": j.created_at,
        "started_at": j.started_at,
        "finished_at": j.finished_at,
    })
}

/// Largest bootstrap a calibration run may ask for (CPU per report).
const MAX_RESAMPLES: usize = 10_000;

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::Invalid(Invalid::one(field, message))
}

/// Importer errors (`line N: field: message`) as field errors under `content`.
fn set_errors(errors: Vec<String>) -> Error {
    Error::Invalid(Invalid(
        errors
            .into_iter()
            .map(|e| FieldError::new("content", e))
            .collect(),
    ))
}

fn set_json(
    rec: &crate::store::CalibrationSetRecord,
    set: Option<&crate::calibration::CalibrationSet>,
) -> Value {
    use crate::calibration::RaterKind;
    let mut v = json!({
        "id": rec.id,
        "name": rec.name,
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

fn label_count(set: &crate::calibration::CalibrationSet) -> u64 {
    set.items.iter().map(|i| i.labels.len() as u64).sum()
}

/// Calibration: sets, labels, runs and disagreements.
impl Service {
    /// Uploads a set: `{"format", "content", "name"?, "csv"?}`; stored as calibration.v1.
    pub async fn create_calibration_set(&self, doc: &Value) -> Result<Value, Error> {
        use crate::calibration::set;
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
        .map_err(set_errors)?;
        if let Some(name) = doc.get("name").and_then(Value::as_str) {
            if name.trim().is_empty() {
                return Err(invalid("name", "must not be empty"));
            }
            parsed.name = name.to_owned();
        }
        // Set names label the agreement gauges, so they are unique.
        let _guard = self.calibration_lock.lock().await;
        if let Some(other) = self
            .store
            .list_calibration_sets()
            .await?
            .into_iter()
            .find(|s| s.name == parsed.name)
        {
            return Err(Error::Conflict(format!(
                "a calibration set named \"{}\" exists (id {}); pass another `name` (set names label the agreement metrics) or add labels to that set",
                other.name, other.id
            )));
        }
        let now = now_ms();
        let rec = crate::store::CalibrationSetRecord {
            id: uuid::Uuid::now_v7().to_string(),
            name: parsed.name.clone(),
            document: parsed.to_jsonl(),
            items: parsed.items.len() as u64,
            labels: label_count(&parsed),
            created_at: now,
            updated_at: now,
        };
        self.store.put_calibration_set(&rec).await?;
        Ok(set_json(&rec, Some(&parsed)))
    }

    async fn stored_set(
        &self,
        id: &str,
    ) -> Result<
        (
            crate::store::CalibrationSetRecord,
            crate::calibration::CalibrationSet,
        ),
        Error,
    > {
        let rec = self
            .store
            .calibration_set(id)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "calibration set",
                name: id.to_owned(),
            })?;
        let set = crate::calibration::set::parse_set(&rec.document)
            .map_err(|e| Error::Store(format!("stored calibration set {id}: {}", e.join("; "))))?;
        Ok((rec, set))
    }

    pub async fn calibration_set(&self, id: &str) -> Result<Value, Error> {
        let (rec, set) = self.stored_set(id).await?;
        Ok(set_json(&rec, Some(&set)))
    }

    pub async fn calibration_sets(&self) -> Result<Value, Error> {
        let sets = self.store.list_calibration_sets().await?;
        Ok(json!({"sets": sets.iter().map(|s| set_json(s, None)).collect::<Vec<_>>()}))
    }

    /// Adds (or corrects) labels: `{"labels": [{"item", "rater", "kind", "value"}]}`.
    /// All or nothing: one invalid label changes nothing.
    pub async fn add_calibration_labels(&self, id: &str, doc: &Value) -> Result<Value, Error> {
        use crate::calibration::set::parse_new_labels;
        let labels = parse_new_labels(doc).map_err(|e| {
            Error::Invalid(Invalid(
                e.into_iter()
                    .map(|m| FieldError::new("labels", m))
                    .collect(),
            ))
        })?;
        // Read-modify-write of one set at a time, so two annotators never lose a label.
        let _guard = self.calibration_lock.lock().await;
        let (rec, mut set) = self.stored_set(id).await?;
        let added = set.add_labels(&labels).map_err(|e| {
            Error::Invalid(Invalid(
                e.into_iter()
                    .map(|m| FieldError::new("labels", m))
                    .collect(),
            ))
        })?;
        let rec = crate::store::CalibrationSetRecord {
            document: set.to_jsonl(),
            items: set.items.len() as u64,
            labels: label_count(&set),
            updated_at: now_ms(),
            ..rec
        };
        self.store
            .update_calibration_set(id, &rec.document, rec.items, rec.labels)
            .await?;
        Ok(
            json!({"added": added.added, "replaced": added.replaced, "set": set_json(&rec, Some(&set))}),
        )
    }

    /// Starts a calibration run over a stored set: `{"set", "seed"?, "resamples"?,
    /// "confidence"?}`. The run is a job; its report is written when the job finishes.
    pub async fn start_calibration_run(
        &self,
        doc: &Value,
        owner: Option<&str>,
    ) -> Result<Value, Error> {
        use crate::calibration::{ReportOptions, live, run::RunOptions};
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
        let (_, set) = self.stored_set(set_id).await?;
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
                rubrics.insert(rubric.clone(), r);
            }
        }
        let plan = live::plan(&set, &rubrics, self.grader.simulated()).map_err(|e| {
            Error::Invalid(Invalid(
                e.into_iter().map(|m| FieldError::new("set", m)).collect(),
            ))
        })?;
        let opts = RunOptions::from_plan(
            &plan,
            &ReportOptions {
                seed,
                resamples,
                confidence,
            },
        );
        let run = crate::store::CalibrationRunRecord {
            id: uuid::Uuid::now_v7().to_string(),
            set_id: set_id.to_owned(),
            options: serde_json::to_string(&opts).map_err(|e| Error::Internal(e.to_string()))?,
            report: None,
            finished_at: None,
        };
        self.store
            .create_calibration_run(&run, seed, owner, &plan.rows)
            .await?;
        self.jobs.start(&run.id);
        self.calibration_run(&run.id).await
    }

    /// A run: its job's progress and, once finished, the agreement report.
    pub async fn calibration_run(&self, id: &str) -> Result<Value, Error> {
        let run = self
            .store
            .calibration_run(id)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "calibration run",
                name: id.to_owned(),
            })?;
        let job = self.job(id).await?;
        let report: Value = match &run.report {
            Some(text) => serde_json::from_str(text).map_err(|e| Error::Store(e.to_string()))?,
            None => Value::Null,
        };
        Ok(json!({
            "id": run.id,
            "set": run.set_id,
            "state": job.state.as_str(),
            "job": job_json(&job),
            "finished_at": run.finished_at,
            "report": report,
        }))
    }

    /// Items where the committee or a judge differs from the human majority, with the
    /// judges' explanations, in item order after `after` (a `seq`).
    pub async fn calibration_disagreements(
        &self,
        id: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Value, Error> {
        use crate::calibration::{RaterKind, live, report::human_majority, run};
        let rec = self
            .store
            .calibration_run(id)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "calibration run",
                name: id.to_owned(),
            })?;
        let opts: run::RunOptions =
            serde_json::from_str(&rec.options).map_err(|e| Error::Store(e.to_string()))?;
        let (_, stored) = self.stored_set(&rec.set_id).await?;
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
                let report: Value =
                    serde_json::from_str(&text).map_err(|e| Error::Store(e.to_string()))?;
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
                        "label": match l.value {
                            crate::calibration::LabelValue::Category(c) => name(Some(c)).map(Value::from).unwrap_or(Value::Null),
                            crate::calibration::LabelValue::Number(x) => json!(x),
                        },
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
