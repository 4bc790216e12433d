//! Judges: the `Judge` trait and the values a judge call produces.
//! `provider.rs` is the only importer of async-openai (wire types) and reqwest;
//! `prompt.rs` renders minijinja templates; `parse.rs` turns model text into a
//! `Verdict` (pure); `sim.rs` is the built-in simulated provider.
//! Must not know about committees, scoring policies, caches or storage.

pub mod parse;
pub mod prompt;

use std::fmt;

use crate::rubric::{CriterionKind, Tier, Verdict};

/// The answer scale a criterion asks a judge for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scale {
    /// `criteria_met: true | false` (HealthBench points criteria).
    Binary,
    /// `credit: 0 | 0.5 | 1` (essential / important / highlight tiers).
    Credit,
    /// `severity: "none" | "minor" | "major"` (pitfall tier).
    Severity,
}

impl Scale {
    pub fn of(kind: CriterionKind) -> Scale {
        match kind {
            CriterionKind::Points(_) => Scale::Binary,
            CriterionKind::Tier(Tier::Pitfall) => Scale::Severity,
            CriterionKind::Tier(_) => Scale::Credit,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scale::Binary => "binary",
            Scale::Credit => "credit",
            Scale::Severity => "severity",
        }
    }

    /// The JSON field the judge must fill for this scale.
    pub fn field(self) -> &'static str {
        match self {
            Scale::Binary => "criteria_met",
            Scale::Credit => "credit",
            Scale::Severity => "severity",
        }
    }
}

/// Why a ballot carries no verdict. An abstention is never turned into met / not met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbstainReason {
    /// The answer could not be parsed after `max_parse_retries` re-asks.
    Unparseable,
    /// The model declined to judge.
    Refusal,
    /// A non-retryable 4xx (bad request, auth, model not found ...).
    ClientError,
    /// 429 / 5xx / connection errors persisted through `max_attempts`.
    RetriesExhausted,
    /// The call's deadline passed.
    Timeout,
    /// The request was cancelled (shutdown, job cancel, request deadline).
    Cancelled,
}

impl AbstainReason {
    pub const ALL: [AbstainReason; 6] = [
        AbstainReason::Unparseable,
        AbstainReason::Refusal,
        AbstainReason::ClientError,
        AbstainReason::RetriesExhausted,
        AbstainReason::Timeout,
        AbstainReason::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AbstainReason::Unparseable => "unparseable",
            AbstainReason::Refusal => "refusal",
            AbstainReason::ClientError => "client_error",
            AbstainReason::RetriesExhausted => "retries_exhausted",
            AbstainReason::Timeout => "timeout",
            AbstainReason::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for AbstainReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed judge answer for one criterion.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub verdict: Verdict,
    pub explanation: String,
}
