//! Configuration: `RawConfig` (TOML, strict, `deny_unknown_fields`) + env overrides
//! `TRIBUNAL__SECTION__KEY` -> validated `Config`, with every problem reported at once.
//! The file names the env var that holds an API key, never the key; keys are `secrecy`
//! types. Pure: parses the text and values handed to it and validates. Must not read
//! files (the caller reads the config file and the files it names, see
//! `app::LoadConfig`, and hands in their text and interpreted values), depend on
//! `calibration`, build judges or open connections (that is `app`'s job).

mod raw;
mod render;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;

pub use raw::{RawApiKey, RawCommittee, RawConfig, RawJudge, RawRedis, RawServer, RawSim};
pub use render::render_resolved_toml;

use crate::committee::dawid_skene::Reliability;
use crate::committee::vote::{Rule, TieRule};
use crate::rubric::{FieldError, Invalid};

/// How a judge is reached.
#[derive(Debug, Clone)]
pub enum ProviderConfig {
    OpenAi(OpenAiConfig),
    Sim(SimConfig),
}

#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Base URL up to and including `/v1`; `/chat/completions` is appended.
    pub base_url: String,
    pub api_key_env: Option<String>,
    /// Read from `api_key_env` at start-up; absent is fine for local servers.
    pub api_key: Option<SecretString>,
    pub headers: Vec<(String, String)>,
    /// Send `response_format` with a JSON schema (servers that support structured output).
    pub structured_output: bool,
}

/// The simulated provider: deterministic for a seed.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    pub seed: u64,
    /// Latency: uniform in [latency_ms - jitter, latency_ms + jitter].
    pub latency_ms: u64,
    pub latency_jitter_ms: u64,
    /// Probability of agreeing with a reference label when one is supplied.
    pub accuracy: f64,
    /// Probability the simulated judge says "met" / gives high credit without a label.
    pub met_rate: f64,
    pub rate_429: f64,
    pub retry_after_ms: u64,
    pub rate_500: f64,
    pub rate_timeout: f64,
    pub rate_malformed: f64,
    pub rate_refusal: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            latency_ms: 0,
            latency_jitter_ms: 0,
            accuracy: 0.9,
            met_rate: 0.5,
            rate_429: 0.0,
            retry_after_ms: 1000,
            rate_500: 0.0,
            rate_timeout: 0.0,
            rate_malformed: 0.0,
            rate_refusal: 0.0,
        }
    }
}

/// Sampling parameters sent to the model; all part of the cache key.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
    pub seed: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    pub max_concurrency: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub max_parse_retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

#[derive(Debug, Clone)]
pub struct JudgeConfig {
    pub name: String,
    pub model: String,
    pub provider: ProviderConfig,
    pub sampling: Sampling,
    pub limits: LimitsConfig,
    pub retry: RetryConfig,
    /// Deadline of one HTTP attempt.
    pub timeout: Duration,
    /// USD per million tokens.
    pub price_input_per_mtok: f64,
    /// USD per million input tokens the provider served from its prefix cache
    /// (`price_cached_input_per_mtok`; defaults to the input price, i.e. no discount).
    pub price_cached_input_per_mtok: f64,
    pub price_output_per_mtok: f64,
    /// Provider Batch API for job calls (`batch = true`); `None` sends every call live.
    pub batch: Option<BatchConfig>,
}

/// Requests per batch file the OpenAI Batch API accepts at most.
pub const BATCH_MAX_REQUESTS_LIMIT: usize = 50_000;

/// `server.failed_keys_per_address` when unset: unknown keys one address may send
/// before it is slowed down (README "Security").
pub const DEFAULT_FAILED_KEYS_PER_ADDRESS: u32 = 5;
/// The only completion window the OpenAI Batch API offers.
pub const BATCH_COMPLETION_WINDOW: &str = "24h";

/// How a batch judge groups its pending calls into batch files and waits for them.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    /// A batch file is sent as soon as it holds this many requests (`batch_max_requests`).
    pub max_requests: usize,
    /// ... or this long after its first request arrived (`batch_max_wait_ms`).
    pub max_wait: Duration,
    /// Interval between status polls of a submitted batch (`batch_poll_ms`).
    pub poll: Duration,
    /// The provider's completion window (`batch_completion_window`, only "24h").
    pub completion_window: Duration,
    /// Multiplies the judge's prices for batched calls (`batch_price_factor`).
    pub price_factor: f64,
    /// Batches one request is submitted in (the first and the retries of failed or
    /// expired entries) before it abstains (`batch_max_attempts`).
    pub max_attempts: u32,
}

impl Default for BatchConfig {
    /// Batch files of up to 1,000 requests or 60 s of waiting, polled every 30 s, at
    /// OpenAI's published half price, with one retry of failed or expired entries.
    fn default() -> Self {
        BatchConfig {
            max_requests: 1_000,
            max_wait: Duration::from_secs(60),
            poll: Duration::from_secs(30),
            completion_window: Duration::from_secs(24 * 3600),
            price_factor: 0.5,
            max_attempts: 2,
        }
    }
}

impl BatchConfig {
    /// How long one batched call may take before it abstains: every attempt may wait for
    /// its batch to fill, for the provider's completion window, and for one more poll.
    /// This, not the judge's `timeout_ms` or the committee's `request_timeout_ms`,
    /// bounds a batched call.
    pub fn call_bound(&self) -> Duration {
        (self.max_wait + self.completion_window + self.poll * 2).saturating_mul(self.max_attempts)
    }
}

impl JudgeConfig {
    pub fn simulated(&self) -> bool {
        matches!(self.provider, ProviderConfig::Sim(_))
    }
}

/// Per-criterion or batched prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptMode {
    PerCriterion,
    Batched,
}

#[derive(Debug, Clone)]
pub struct CommitteeConfig {
    /// (judge name, weight), in order.
    pub members: Vec<(String, f64)>,
    pub n_samples: u32,
    /// `consensus = "majority" | "weighted" | "unanimous" | "any" | "mean" | "median" |
    /// "dawid_skene"` (default majority), with `consensus_tie` (majority, weighted and
    /// dawid_skene) and `consensus_k` (any). `dawid_skene` decides by each judge's
    /// confusion matrix (`committee::dawid_skene`); without matrices it is an unweighted
    /// majority.
    pub consensus: Rule,
    /// Rule for `veto` criteria (`veto_consensus`, same names; default `any` with k = 1):
    /// flags a violation when at least k judges see it.
    pub veto_consensus: Rule,
    pub quorum: usize,
    pub escalation: Option<String>,
    /// Escalate when the consensus agreement is below this (0 disables).
    pub min_agreement: f64,
    pub prompt_mode: PromptMode,
    /// Overall deadline of one graded item (longer than any judge call's).
    pub request_timeout: Duration,
    /// Built-in template set (`prompts = "v1" | "v2" | "v3"`, default v3, laid out for
    /// provider prefix caching); ignored when `prompts_dir` names a custom set.
    pub prompts: crate::judge::prompt::BuiltinPrompts,
    /// Custom template directory; `None` = the built-in set `prompts`.
    pub prompts_dir: Option<std::path::PathBuf>,
    /// `explanations = false` asks judges for the verdict alone (default true: an
    /// explanation and the verdict). Cuts the output tokens of every call to a few
    /// (README "Judge cost"); needs v3 or a custom set that reads `explain`.
    pub explanations: bool,
    /// Judge confusion matrices for `dawid_skene` (`reliability = "FILE"`: a saved
    /// agreement report, calibration run or reliability object), read and interpreted by
    /// the loader at load time (`LoadedFiles`).
    pub reliability: Option<std::sync::Arc<Reliability>>,
    /// The report member weights were taken from (`weights_from = "FILE"`), if any; the
    /// weights themselves are already in `members`.
    pub weights_from: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub max_bytes: u64,
    pub ttl: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// What an API key may do (README "Security"). The permission table itself lives in
/// `service::auth`, which every transport calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Grades, runs jobs and calibration runs, and sees only its own jobs and sets.
    #[default]
    Client,
    /// Reads every calibration set, run and report and adds labels; no grading or jobs.
    Annotator,
    /// Everything, including every owner's resources.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Client, Role::Annotator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Annotator => "annotator",
            Role::Admin => "admin",
        }
    }
}

/// An API key: its name (owner of what it creates, quotas, logs), its role and the
/// blake3 hash of the key.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyConfig {
    pub name: String,
    pub role: Role,
    pub blake3: String,
    pub requests_per_minute: Option<u32>,
    pub max_concurrent_jobs: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub http_addr: std::net::SocketAddr,
    pub grpc_addr: std::net::SocketAddr,
    /// `sqlite:...` (embedded, one process) or `postgres://...` (shared by replicas).
    pub database_url: String,
    /// How long a replica's claim on a job item lasts (Postgres): renewed every third
    /// of it while the item is graded; a crashed replica's items are reclaimed by the
    /// others once it passes.
    pub job_lease: std::time::Duration,
    pub max_body_bytes: usize,
    pub max_items_per_job: usize,
    pub max_criteria_per_rubric: usize,
    /// The longest JSON string (value or key) a request document may hold, in bytes;
    /// checked while the body is scanned, before it is parsed.
    pub max_string_bytes: usize,
    /// An explicit cap on items graded concurrently per job. Unset (the default):
    /// items are admitted while the judges have calls to spare (the committee's call
    /// budget, shared by every job), so the judges' own limits are the only throttle.
    pub job_concurrency: Option<usize>,
    pub log_format: LogFormat,
    /// Empty: no authentication (then only loopback addresses may be bound).
    pub api_keys: Vec<ApiKeyConfig>,
    /// Host names, besides loopback ones, that requests may name in `Host` (HTTP) or
    /// `:authority` (gRPC). Checked on a keyless server always, and with keys once
    /// this list is non-empty (README "Security").
    pub allowed_hosts: Vec<String>,
    /// A request's headers (HTTP/1), or a gRPC connection's preface, must arrive
    /// within this; a half-sent request is then cut off.
    pub header_read_timeout: std::time::Duration,
    /// The longest pause while a request body is received (both transports).
    pub body_idle_timeout: std::time::Duration,
    /// Unknown keys one client address may send before each further one closes it
    /// for a while (README "Security"); 0 turns this off.
    pub failed_keys_per_address: u32,
}

/// A URL for display: any userinfo (`user:password@`) and query string are replaced
/// by `***`, since either may hold a credential. Not a URL parser: anything without
/// `scheme://` is shown as it is.
pub fn mask_url(url: &str) -> String {
    masked(url, true)
}

/// A URL for display with only its userinfo replaced by `***@`, the query kept: for a
/// URL whose query carries settings that must survive a round trip through
/// `config check` (a database URL's `?mode=`).
pub fn mask_userinfo(url: &str) -> String {
    masked(url, false)
}

fn masked(url: &str, hide_query: bool) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, _)) if hide_query => (r, "?***".to_owned()),
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{path}{query}")
}

/// Which store `server.database_url` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl DatabaseKind {
    /// The engine a URL names, or None for a URL neither store opens.
    pub fn of(url: &str) -> Option<DatabaseKind> {
        if url.starts_with("sqlite:") {
            Some(DatabaseKind::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(DatabaseKind::Postgres)
        } else {
            None
        }
    }
}

impl ServerConfig {
    /// The database URL with any password replaced by `***`, for logs and banners.
    pub fn database_display(&self) -> String {
        let url = &self.database_url;
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.clone();
        };
        match rest.split_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => url.clone(),
            },
            None => url.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub judges: BTreeMap<String, JudgeConfig>,
    pub committee: CommitteeConfig,
    pub cache: CacheConfig,
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    /// `[redis]`: absent, nothing is shared between replicas.
    pub redis: Option<RedisConfig>,
}

/// `[redis]`: the verdict cache tier and the rate limits every replica shares.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// May hold a password, hence secret.
    pub url: SecretString,
    /// Replicas sharing the limits; each enforces `limit / replicas` while Redis is
    /// unreachable.
    pub replicas: u32,
    pub key_prefix: String,
    /// Deadline of one command.
    pub timeout: Duration,
    /// Single-flight lease of one verdict cache key.
    pub lease: Duration,
}

impl RedisConfig {
    /// The URL with any password replaced by `***`, for `config check` and logs.
    pub fn url_display(&self) -> String {
        use secrecy::ExposeSecret;
        let url = self.url.expose_secret();
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.to_owned();
        };
        match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split_once(':').map_or("", |(u, _)| u);
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_owned(),
        }
    }
}

/// `[telemetry]`: trace export. With no `otlp_endpoint` nothing is exported and no
/// exporter or background task exists; spans still reach the local log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP (protobuf) traces URL, ending in `/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute of exported spans.
    pub service_name: String,
}

impl Config {
    /// True when every committee member (and the escalation judge) is simulated.
    pub fn simulated(&self) -> bool {
        self.committee
            .members
            .iter()
            .map(|(n, _)| n)
            .chain(self.committee.escalation.iter())
            .all(|n| self.judges.get(n).is_some_and(JudgeConfig::simulated))
    }
    /// Parses TOML text and applies `TRIBUNAL__*` overrides from `env`; the result
    /// names the files its validation needs (`ParsedConfig::files`). Reads no file.
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<ParsedConfig, ConfigError> {
        let mut doc: toml::Table = toml::from_str(text)
            .map_err(|e| ConfigError::Invalid(Invalid::one("", format!("not valid TOML: {e}"))))?;
        // One environment for everything: overrides and the secrets named by
        // `api_key_env` / `key_env` (callers pass `std::env::vars()`).
        let vars: HashMap<String, String> = env.into_iter().collect();
        raw::apply_env_overrides(&mut doc, vars.clone()).map_err(ConfigError::Invalid)?;
        keep_simulated_committee(&mut doc);
        let raw: RawConfig = raw::decode(doc).map_err(ConfigError::Invalid)?;
        Ok(ParsedConfig { raw, vars })
    }

    /// The built-in configuration: a committee of three simulated judges.
    pub fn default_simulated() -> Result<Config, ConfigError> {
        Config::parse(DEFAULT_CONFIG, std::iter::empty())?.validate(LoadedFiles::default())
    }
}

/// A file that defines neither `[judges]` nor `[committee]` (only `[server]`, say)
/// keeps the built-in simulated committee of [`DEFAULT_CONFIG`], as running without a
/// file does; start-up output says SIMULATED. A file with one of the two must define
/// both, so a half-written committee is an error, not silently simulated.
fn keep_simulated_committee(doc: &mut toml::Table) {
    if doc.contains_key("judges") || doc.contains_key("committee") {
        return;
    }
    if let Ok(default) = toml::from_str::<toml::Table>(DEFAULT_CONFIG) {
        for (k, v) in default {
            doc.entry(k).or_insert(v);
        }
    }
}

/// A config decoded strictly from TOML with its overrides applied, not yet validated.
/// Validation needs the files it names read and interpreted by the caller first, so
/// that `config` itself never touches the file system.
pub struct ParsedConfig {
    raw: RawConfig,
    /// The whole environment, secrets included: never printed (no derived `Debug`).
    vars: HashMap<String, String>,
}

impl std::fmt::Debug for ParsedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedConfig")
            .field("raw", &self.raw)
            .finish_non_exhaustive()
    }
}

/// The files a config names (after env overrides), for the caller to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NamedFiles<'a> {
    /// `committee.reliability`: judge confusion matrices for `dawid_skene`.
    pub reliability: Option<&'a Path>,
    /// `committee.weights_from`: a report whose suggested weights set member weights.
    pub weights_from: Option<&'a Path>,
}

/// What the caller made of the files a config names: each one's interpreted value, or
/// its problem as a full sentence naming the file (reported at the field that names
/// it, with every other problem). `None` for a file the config does not name.
#[derive(Debug, Default)]
pub struct LoadedFiles {
    pub reliability: Option<Result<Reliability, String>>,
    /// Weights by judge name.
    pub weights_from: Option<Result<BTreeMap<String, f64>, String>>,
}

impl ParsedConfig {
    pub fn files(&self) -> NamedFiles<'_> {
        let committee = self.raw.committee.as_ref();
        NamedFiles {
            reliability: committee.and_then(|c| c.reliability.as_deref()),
            weights_from: committee.and_then(|c| c.weights_from.as_deref()),
        }
    }

    /// Validates the whole config with the files it names already interpreted,
    /// reporting every problem at once.
    pub fn validate(self, files: LoadedFiles) -> Result<Config, ConfigError> {
        let vars = self.vars;
        self.raw
            .validate(&|name| vars.get(name).cloned(), files)
            .map_err(ConfigError::Invalid)
    }
}

/// The configuration used when no file is given: three simulated judges, so a fresh
/// machine works offline. Start-up output says "simulated" so nobody mistakes it.
pub const DEFAULT_CONFIG: &str = r#"
[judges.sim-a]
provider = "sim"
model = "sim-a"
[judges.sim-a.sim]
seed = 1

[judges.sim-b]
provider = "sim"
model = "sim-b"
[judges.sim-b.sim]
seed = 2

[judges.sim-c]
provider = "sim"
model = "sim-c"
[judges.sim-c.sim]
seed = 3

[committee]
members = ["sim-a", "sim-b", "sim-c"]
consensus = "majority"
quorum = 2
"#;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {message}")]
    Io { path: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(Invalid),
}

impl ConfigError {
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Io { .. } => vec![self.to_string()],
            ConfigError::Invalid(inv) => inv.0.iter().map(ToString::to_string).collect(),
        }
    }
}

pub(crate) fn rule_from(
    name: &str,
    tie: Option<&str>,
    k: Option<usize>,
    field: &str,
    errs: &mut Vec<FieldError>,
) -> Option<Rule> {
    let tie = match tie.unwrap_or("not_met") {
        "not_met" => TieRule::NotMet,
        "met" => TieRule::Met,
        "escalate" => TieRule::Escalate,
        other => {
            errs.push(FieldError::new(
                format!("{field}_tie"),
                format!("unknown tie rule \"{other}\"; use not_met, met or escalate"),
            ));
            return None;
        }
    };
    let rule = Rule::from_name(name, tie, k.unwrap_or(1).max(1));
    if rule.is_none() {
        errs.push(FieldError::new(
            field,
            format!(
                "unknown consensus \"{name}\"; use one of {}",
                Rule::NAMES.join(", ")
            ),
        ));
    }
    rule
}

#[cfg(test)]
mod tests;
