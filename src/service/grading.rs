//! Grading one item and describing the committee. Must not touch jobs or storage
//! beyond rubric resolution.

use serde_json::Value;

use super::{Action, Caller, Service};
use crate::error::Error;
use crate::grader::GradeReportDoc;
use crate::item::parse_item;

impl Service {
    /// Grades one item document; returns a `grade_report.v1`.
    pub async fn grade(&self, caller: &Caller, doc: &Value) -> Result<GradeReportDoc, Error> {
        caller.require(Action::Grade)?;
        let (_, item) = parse_item(doc)?;
        let rubric = self.grader.resolve(&item.rubric).await?;
        self.check_criteria(rubric.criteria.len(), "rubric.criteria")?;
        Ok(self.grader.grade_with(&item, &rubric).await?.to_doc())
    }

    /// The committee, its limits and live per-judge counters.
    pub fn judges(&self, caller: &Caller) -> Result<Judges, Error> {
        use std::sync::atomic::Ordering::Relaxed;
        caller.require(Action::ReadJudges)?;
        let c = &self.grader.committee;
        let judge = |j: &crate::judge::call::JudgeClient, role: JudgeRole, weight: Option<f64>| {
            let s = &j.stats;
            JudgeDoc {
                name: j.name().to_owned(),
                role,
                weight,
                model: j.cfg.model.clone(),
                simulated: j.simulated(),
                limits: JudgeLimits {
                    requests_per_minute: j.cfg.limits.requests_per_minute,
                    tokens_per_minute: j.cfg.limits.tokens_per_minute,
                    max_concurrency: j.cfg.limits.max_concurrency,
                    timeout_ms: u64::try_from(j.cfg.timeout.as_millis()).unwrap_or(u64::MAX),
                },
                health: JudgeHealth {
                    calls: s.calls.load(Relaxed),
                    retries: s.retries.load(Relaxed),
                    parse_retries: s.parse_retries.load(Relaxed),
                    limiter_waits: j.limiter.waits.load(Relaxed),
                    input_tokens: s.input_tokens.load(Relaxed),
                    output_tokens: s.output_tokens.load(Relaxed),
                    batches: j.batcher.as_ref().map(|b| JudgeBatches {
                        submitted: b.stats.submitted.load(Relaxed),
                        completed: b.stats.completed.load(Relaxed),
                        failed: b.stats.failed.load(Relaxed),
                        requests: b.stats.requests.load(Relaxed),
                        cancel_requested: b.stats.cancelled.load(Relaxed),
                        dropped: b.stats.dropped.load(Relaxed),
                    }),
                },
            }
        };
        let mut judges: Vec<JudgeDoc> = c
            .members
            .iter()
            .map(|m| judge(&m.client, JudgeRole::Member, Some(m.weight)))
            .collect();
        if let Some(e) = &c.escalation {
            judges.push(judge(e, JudgeRole::Escalation, None));
        }
        Ok(Judges {
            simulated: self.grader.simulated(),
            committee: CommitteeDoc {
                consensus: c.cfg.consensus.name().to_owned(),
                veto_consensus: c.cfg.veto_consensus.name().to_owned(),
                quorum: c.cfg.quorum,
                n_samples: c.cfg.n_samples,
                prompt_mode: match c.cfg.prompt_mode {
                    crate::config::PromptMode::PerCriterion => PromptModeName::PerCriterion,
                    crate::config::PromptMode::Batched => PromptModeName::Batched,
                },
                // A custom set's directory is a server path: callers learn only that
                // the set is custom (its template ids are in every ballot's hash).
                prompts: if c.cfg.prompts_dir.is_some() {
                    "custom".to_owned()
                } else {
                    c.cfg.prompts.as_str().to_owned()
                },
                explanations: c.cfg.explanations,
            },
            judges,
        })
    }
}

/// `GET /v1/judges`: the committee and each judge's limits and live counters.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Judges {
    /// Every judge is simulated: grades are not real judgements.
    pub simulated: bool,
    pub committee: CommitteeDoc,
    pub judges: Vec<JudgeDoc>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CommitteeDoc {
    pub consensus: String,
    pub veto_consensus: String,
    pub quorum: usize,
    pub n_samples: u32,
    pub prompt_mode: PromptModeName,
    /// The built-in prompt set (`v1`, `v2`, `v3`), or `custom` for `prompts_dir`.
    pub prompts: String,
    /// False when judges are asked for verdicts alone (`committee.explanations`):
    /// ballots then carry an empty `explanation`.
    pub explanations: bool,
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PromptModeName {
    PerCriterion,
    Batched,
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JudgeRole {
    Member,
    Escalation,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct JudgeDoc {
    pub name: String,
    pub role: JudgeRole,
    /// Vote weight (members only).
    pub weight: Option<f64>,
    pub model: String,
    pub simulated: bool,
    pub limits: JudgeLimits,
    pub health: JudgeHealth,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct JudgeLimits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    pub max_concurrency: usize,
    pub timeout_ms: u64,
}

/// Counters since the server started.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct JudgeHealth {
    pub calls: u64,
    pub retries: u64,
    pub parse_retries: u64,
    pub limiter_waits: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Provider Batch API counters; null for a judge without `batch = true`.
    pub batches: Option<JudgeBatches>,
}

/// A batch judge's batches since the server started.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct JudgeBatches {
    pub submitted: u64,
    pub completed: u64,
    /// Failed, expired or cancelled at the provider, or outliving the completion window.
    pub failed: u64,
    /// Requests sent in batch files, resubmissions included.
    pub requests: u64,
    /// Batches this process asked the provider to cancel because every job with an entry
    /// in them was cancelled.
    pub cancel_requested: u64,
    /// Requests left out of a batch file because every caller had gone (a cancelled job)
    /// before the file was sent.
    pub dropped: u64,
}
