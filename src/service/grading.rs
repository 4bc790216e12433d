//! Grading one item and describing the committee. Must not touch jobs or storage
//! beyond rubric resolution.

use serde_json::{Value, json};

use super::{Action, Caller, Service};
use crate::error::Error;
use crate::item::parse_item;

impl Service {
    /// Grades one item document; returns a `grade_report.v1`.
    pub async fn grade(&self, caller: &Caller, doc: &Value) -> Result<Value, Error> {
        caller.require(Action::Grade)?;
        let (_, item) = parse_item(doc)?;
        let rubric = self.grader.resolve(&item.rubric).await?;
        self.check_criteria(rubric.criteria.len(), "rubric.criteria")?;
        Ok(self.grader.grade_with(&item, &rubric).await?.to_json())
    }

    /// The committee, its limits and live per-judge counters.
    pub fn judges(&self, caller: &Caller) -> Result<Value, Error> {
        use std::sync::atomic::Ordering::Relaxed;
        caller.require(Action::ReadJudges)?;
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
        Ok(json!({
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
        }))
    }
}
