//! Judges: the `Judge` trait and the values a judge call produces.
//! `provider.rs` is the only importer of async-openai (wire types) and reqwest;
//! `prompt.rs` renders minijinja templates; `parse.rs` turns model text into a
//! `Verdict` (pure); `sim.rs` is the built-in simulated provider; `batch.rs` groups
//! job calls into provider Batch API files.
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
/// Its snake_case names are part of `grade_report.v1` and the metrics labels.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
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
    /// The provider's Batch API failed or expired the request (or its whole batch) in
    /// every one of the judge's `batch_max_attempts` batches.
    BatchFailed,
}

impl AbstainReason {
    pub const ALL: [AbstainReason; 7] = [
        AbstainReason::Unparseable,
        AbstainReason::Refusal,
        AbstainReason::ClientError,
        AbstainReason::RetriesExhausted,
        AbstainReason::Timeout,
        AbstainReason::Cancelled,
        AbstainReason::BatchFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AbstainReason::Unparseable => "unparseable",
            AbstainReason::Refusal => "refusal",
            AbstainReason::ClientError => "client_error",
            AbstainReason::RetriesExhausted => "retries_exhausted",
            AbstainReason::Timeout => "timeout",
            AbstainReason::Cancelled => "cancelled",
            AbstainReason::BatchFailed => "batch_failed",
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

pub mod batch;
pub mod call;
pub mod provider;
pub mod sim;

/// Who says a message sent to a judge model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

/// What the answer must contain, so providers can ask for structured output and the
/// simulated provider can answer in kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    One(Scale),
    /// Batched prompt: (criterion id, scale) in rubric order.
    Batch(Vec<(String, Scale)>),
}

/// One chat call to a judge model.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub messages: Vec<(ChatRole, String)>,
    pub expect: Expect,
    /// The prompt asks for an explanation with each verdict (`committee.explanations`);
    /// when false, a structured-output schema allows the verdict field alone.
    pub explain: bool,
    /// Content hash of the destructured inputs (not of the nonce'd text) with a
    /// wording-neutral template identity (`prompt::wording_neutral_hash`): the simulated
    /// provider derives its deterministic answers from it.
    pub content_key: [u8; 32],
    /// Self-consistency sample index.
    pub sample: u32,
    /// A human label for calibration items; only the simulated provider reads it.
    pub reference: Option<Vec<Option<crate::rubric::Verdict>>>,
}

/// Tokens a call used, as the server reported them (or as estimated when it did not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Every prompt token, cached ones included (OpenAI `prompt_tokens`).
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The part of `input_tokens` the provider served from its prefix cache and bills at
    /// the cached price (`prompt_tokens_details.cached_tokens`).
    pub cached_input_tokens: u64,
    /// The part of `output_tokens` spent on hidden reasoning
    /// (`completion_tokens_details.reasoning_tokens`); billed as output, reported apart.
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Adds another call's tokens (re-asks and retries of one logical call).
    pub fn add(&mut self, other: Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
    }
}

/// A model's raw answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    /// The provider's own refusal field (OpenAI `message.refusal`), when set.
    pub refusal: Option<String>,
    pub usage: Option<Usage>,
}

/// A failed call, classified for the retry policy.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    #[error("HTTP 429 (rate limited)")]
    RateLimited {
        retry_after: Option<std::time::Duration>,
    },
    #[error("HTTP {status} (server error)")]
    Server {
        status: u16,
        retry_after: Option<std::time::Duration>,
    },
    #[error("timed out")]
    Timeout,
    /// The transport's failure with its cause chain and the (redacted) URL.
    #[error("{0}")]
    Connect(String),
    /// A non-retryable 4xx; `message` names the (redacted) URL and starts the body.
    #[error("HTTP {status} {message}")]
    Client { status: u16, message: String },
    #[error("undecodable response: {0}")]
    Decode(String),
}

impl ProviderError {
    /// 429, 5xx, timeouts and connection errors are worth another attempt.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited { .. }
                | ProviderError::Server { .. }
                | ProviderError::Timeout
                | ProviderError::Connect(_)
        )
    }

    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ProviderError::RateLimited { retry_after }
            | ProviderError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A chat-completions backend: the OpenAI-compatible client or the simulator.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    async fn complete(&self, req: &ChatRequest) -> Result<Completion, ProviderError>;
    fn simulated(&self) -> bool;
    /// The URL calls go to, without secrets (userinfo, query), for failure details;
    /// `None` for the simulated provider.
    fn endpoint(&self) -> Option<&str> {
        None
    }
    /// The provider's Batch API, when it has one (OpenAI-compatible servers).
    fn batch_api(self: std::sync::Arc<Self>) -> Option<std::sync::Arc<dyn batch::BatchApi>> {
        None
    }
}
