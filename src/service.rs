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
