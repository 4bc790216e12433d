//! `RawConfig`: the TOML shape, decoded strictly, and its validation into `Config`.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::{
    ApiKeyConfig, BATCH_COMPLETION_WINDOW, BATCH_MAX_REQUESTS_LIMIT, BatchConfig, CacheConfig,
    CommitteeConfig, Config, JudgeConfig, LimitsConfig, LoadedFiles, LogFormat, OpenAiConfig,
    PromptMode, ProviderConfig, RedisConfig, RetryConfig, Sampling, ServerConfig, SimConfig,
    TelemetryConfig, rule_from,
};
use crate::committee::vote::{Rule, TieRule};
use crate::rubric::{FieldError, Invalid};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub judges: BTreeMap<String, RawJudge>,
    pub committee: Option<RawCommittee>,
    #[serde(default)]
    pub cache: RawCache,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    /// Optional: state shared by replicas (verdict cache tier, rate limits).
    pub redis: Option<RawRedis>,
}

/// `[redis]`: what replicas share through Redis (README "Deployment: Redis").
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://[:password@]host[:port][/db]` or `redis+unix:///path`.
    pub url: Option<String>,
    /// How many replicas share the limits: while Redis is unreachable each enforces
    /// `limit / replicas` on its own.
    pub replicas: Option<u32>,
    /// Prefix of every key (several deployments may share one Redis).
    pub key_prefix: Option<String>,
    /// Deadline of one Redis command; past it the command counts as failed.
    pub timeout_ms: Option<u64>,
    /// Single-flight lease of a verdict cache key (renewed while the judge is called).
    pub lease_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub http_addr: Option<String>,
    pub grpc_addr: Option<String>,
    pub database_url: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub max_items_per_job: Option<usize>,
    pub max_criteria_per_rubric: Option<usize>,
    pub max_string_bytes: Option<usize>,
    pub job_concurrency: Option<usize>,
    /// How long a replica's claim on a job item lasts without a heartbeat (Postgres).
    pub job_lease_seconds: Option<u64>,
    pub log_format: Option<String>,
    /// Host names (besides loopback ones) the HTTP and gRPC servers answer to.
    pub allowed_hosts: Option<Vec<String>>,
    /// Deadline for a request's headers to arrive whole (HTTP/1, and the gRPC
    /// connection preface).
    pub header_read_timeout_ms: Option<u64>,
    /// Longest pause while a request body is being received.
    pub body_idle_timeout_ms: Option<u64>,
    /// Unknown keys one client address may send before it is slowed down (0: never).
    pub failed_keys_per_address: Option<u32>,
    #[serde(default)]
    pub api_keys: Vec<RawApiKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    pub name: String,
    /// `client` (default), `annotator` or `admin`.
    #[serde(default)]
    pub role: super::Role,
    /// Env var holding the key.
    pub key_env: Option<String>,
    /// Or: hex blake3 of the key.
    pub blake3: Option<String>,
    pub requests_per_minute: Option<u32>,
    pub max_concurrent_jobs: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJudge {
    pub provider: String,
    pub model: Option<String>,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
    pub seed: Option<i64>,
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub structured_output: bool,
    pub price_input_per_mtok: Option<f64>,
    pub price_cached_input_per_mtok: Option<f64>,
    pub price_output_per_mtok: Option<f64>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    pub max_concurrency: Option<usize>,
    pub max_attempts: Option<u32>,
    pub max_parse_retries: Option<u32>,
    pub backoff_base_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    /// Send this judge's job calls through the provider's Batch API (`batch = true`).
    #[serde(default)]
    pub batch: bool,
    pub batch_max_requests: Option<usize>,
    pub batch_max_wait_ms: Option<u64>,
    pub batch_poll_ms: Option<u64>,
    pub batch_completion_window: Option<String>,
    pub batch_price_factor: Option<f64>,
    pub batch_max_attempts: Option<u32>,
    pub sim: Option<RawSim>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSim {
    pub seed: Option<u64>,
    pub latency_ms: Option<u64>,
    pub latency_jitter_ms: Option<u64>,
    pub accuracy: Option<f64>,
    pub met_rate: Option<f64>,
    pub rate_429: Option<f64>,
    pub retry_after_ms: Option<u64>,
    pub rate_500: Option<f64>,
    pub rate_timeout: Option<f64>,
    pub rate_malformed: Option<f64>,
    pub rate_refusal: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawMember {
    Name(String),
    Weighted { judge: String, weight: f64 },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommittee {
    pub members: Vec<RawMember>,
    pub n_samples: Option<u32>,
    pub consensus: Option<String>,
    pub consensus_tie: Option<String>,
    pub consensus_k: Option<usize>,
    pub veto_consensus: Option<String>,
    pub veto_consensus_tie: Option<String>,
    pub veto_consensus_k: Option<usize>,
    pub quorum: Option<usize>,
    pub escalation: Option<String>,
    pub min_agreement: Option<f64>,
    pub prompt_mode: Option<String>,
    pub request_timeout_ms: Option<u64>,
    pub prompts: Option<String>,
    pub prompts_dir: Option<std::path::PathBuf>,
    pub explanations: Option<bool>,
    pub reliability: Option<std::path::PathBuf>,
    pub weights_from: Option<std::path::PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub max_bytes: Option<u64>,
    pub ttl_secs: Option<u64>,
}

/// Decodes the TOML table strictly, naming the offending key path.
pub(super) fn decode(doc: toml::Table) -> Result<RawConfig, Invalid> {
    crate::rubric::decode_at(toml::Value::Table(doc)).map_err(|mut e| {
        // TOML errors span several lines; a problem is reported on one.
        e.message = e.message.split_whitespace().collect::<Vec<_>>().join(" ");
        Invalid(vec![e])
    })
}

/// Applies `TRIBUNAL__SECTION__KEY=value` overrides: the path is lower-cased and split
/// on `__`; the value is read as a TOML value when it parses as one, else as a string.
pub(super) fn apply_env_overrides(
    doc: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), Invalid> {
    let mut errs = Vec::new();
    for (k, v) in env {
        let Some(path) = k.strip_prefix("TRIBUNAL__") else {
            continue;
        };
        let parts: Vec<String> = path.split("__").map(str::to_lowercase).collect();
        if parts.iter().any(String::is_empty) {
            errs.push(FieldError::new(k.clone(), "empty path segment in override"));
            continue;
        }
        let value = format!("v = {v}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(v));
        if let Err(m) = set_path(doc, &parts, value) {
            errs.push(FieldError::new(k.clone(), m));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Invalid(errs))
    }
}

fn set_path(table: &mut toml::Table, parts: &[String], value: toml::Value) -> Result<(), String> {
    match parts {
        [] => Ok(()),
        [last] => {
            let key = existing_key(table, last);
            table.insert(key, value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(existing_key(table, first))
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => set_path(t, rest, value),
                _ => Err(format!(
                    "`{first}` is not a table, cannot override below it"
                )),
            }
        }
    }
}

/// Env var names are upper-case; match an existing key case-insensitively so
/// `TRIBUNAL__JUDGES__GPT__MODEL` reaches `[judges.GPT]`.
fn existing_key(table: &toml::Table, lower: &str) -> String {
    table
        .keys()
        .find(|k| k.eq_ignore_ascii_case(lower))
        .cloned()
        .unwrap_or_else(|| lower.to_owned())
}

fn unit(v: Option<f64>, default: f64, field: &str, errs: &mut Vec<FieldError>) -> f64 {
    match v {
        Some(x) if (0.0..=1.0).contains(&x) => x,
        Some(x) => {
            errs.push(FieldError::new(field, format!("{x} is outside [0, 1]")));
            default
        }
        None => default,
    }
}

impl RawConfig {
    /// Validates against `env` (the lookup of the env vars named by `api_key_env` /
    /// `key_env`) and the files this config names, already interpreted by the caller.
    pub fn validate(
        self,
        env: &dyn Fn(&str) -> Option<String>,
        files: LoadedFiles,
    ) -> Result<Config, Invalid> {
        let mut errs = Vec::new();
        let mut judges = BTreeMap::new();
        let defined: std::collections::BTreeSet<String> = self.judges.keys().cloned().collect();
        if self.judges.is_empty() {
            errs.push(FieldError::new(
                "judges",
                "define at least one judge, e.g. [judges.a]",
            ));
        }
        for (name, j) in self.judges {
            if let Some(cfg) = validate_judge(&name, j, env, &mut errs) {
                judges.insert(name, cfg);
            }
        }
        let committee = match self.committee {
            None => {
                errs.push(FieldError::new(
                    "committee",
                    "missing [committee] with `members`",
                ));
                None
            }
            Some(c) => validate_committee(c, &judges, &defined, files, &mut errs),
        };
        let server = validate_server(self.server, env, &mut errs);
        let telemetry = validate_telemetry(self.telemetry, &mut errs);
        let redis = self.redis.and_then(|r| validate_redis(r, &mut errs));
        if let Some(r) = &redis {
            check_limit_shares(r.replicas, &judges, &server, &mut errs);
        }
        let cache = CacheConfig {
            max_bytes: self.cache.max_bytes.unwrap_or(64 * 1024 * 1024),
            ttl: Duration::from_secs(self.cache.ttl_secs.unwrap_or(7 * 24 * 3600)),
        };
        match committee {
            Some(committee) if errs.is_empty() => Ok(Config {
                judges,
                committee,
                cache,
                server,
                telemetry,
                redis,
            }),
            _ => Err(Invalid(errs)),
        }
    }
}

/// With `[redis]`, every shared limit must hold at least one unit per replica: while
/// Redis is unreachable each replica enforces `limit / replicas` alone, and a share
/// below one would be a bucket that admits nothing (a judge that never gets called, a
/// key that is always refused). Named per field, with both ways out.
fn check_limit_shares(
    replicas: u32,
    judges: &BTreeMap<String, JudgeConfig>,
    server: &ServerConfig,
    errs: &mut Vec<FieldError>,
) {
    let mut check = |field: String, limit: Option<u32>| {
        if let Some(l) = limit.filter(|l| *l < replicas) {
            errs.push(FieldError::new(
                field,
                format!(
                    "is {l}, below redis.replicas = {replicas}: while Redis is unreachable each \
                     replica enforces limit / replicas, which would admit nothing; raise it to \
                     at least {replicas} or lower redis.replicas"
                ),
            ));
        }
    };
    for (name, j) in judges {
        check(
            format!("judges.{name}.requests_per_minute"),
            j.limits.requests_per_minute,
        );
        check(
            format!("judges.{name}.tokens_per_minute"),
            j.limits.tokens_per_minute,
        );
    }
    for (i, k) in server.api_keys.iter().enumerate() {
        check(
            format!("server.api_keys[{i}].requests_per_minute"),
            k.requests_per_minute,
        );
    }
}

fn validate_redis(r: RawRedis, errs: &mut Vec<FieldError>) -> Option<RedisConfig> {
    let url = match r.url.map(|u| u.trim().to_owned()) {
        None => {
            errs.push(FieldError::new(
                "redis.url",
                "missing; set url = \"redis://127.0.0.1:6379\" or remove [redis]",
            ));
            None
        }
        Some(u)
            if u.starts_with("redis://")
                || u.starts_with("redis+unix://")
                || u.starts_with("unix://") =>
        {
            Some(u)
        }
        Some(_) => {
            // The value may hold a password, so it is not echoed.
            errs.push(FieldError::new(
                "redis.url",
                "must start with redis:// (or redis+unix:// for a socket), e.g. redis://127.0.0.1:6379",
            ));
            None
        }
    };
    let replicas = match r.replicas {
        Some(0) => {
            errs.push(FieldError::new(
                "redis.replicas",
                "must be at least 1 (the number of tribunal replicas sharing this Redis)",
            ));
            1
        }
        Some(n) => n,
        None => 1,
    };
    let key_prefix = r.key_prefix.unwrap_or_else(|| "tribunal".into());
    if key_prefix.is_empty() || key_prefix.contains(['{', '}', ' ']) {
        errs.push(FieldError::new(
            "redis.key_prefix",
            "must be non-empty without spaces or braces (braces are the key's hash tag)",
        ));
    }
    let positive = |v: Option<u64>, default: u64, field: &str, errs: &mut Vec<FieldError>| match v {
        Some(0) => {
            errs.push(FieldError::new(field, "must be at least 1 ms"));
            default
        }
        Some(ms) => ms,
        None => default,
    };
    let timeout = positive(r.timeout_ms, 500, "redis.timeout_ms", errs);
    let lease = positive(r.lease_ms, 5000, "redis.lease_ms", errs);
    if lease < 30 {
        errs.push(FieldError::new(
            "redis.lease_ms",
            "must be at least 30 ms (the holder renews every third of it)",
        ));
    }
    Some(RedisConfig {
        url: SecretString::from(url?),
        replicas,
        key_prefix,
        timeout: Duration::from_millis(timeout),
        lease: Duration::from_millis(lease),
    })
}

fn validate_telemetry(t: RawTelemetry, errs: &mut Vec<FieldError>) -> TelemetryConfig {
    let otlp_endpoint = match t.otlp_endpoint.map(|e| e.trim().to_owned()) {
        None => None,
        Some(e) if e.is_empty() => None,
        Some(e) if (e.starts_with("http://") || e.starts_with("https://")) && e.len() > 8 => {
            let base = e.trim_end_matches('/');
            // The OTLP/HTTP traces path is appended here, once, so that both a
            // collector's base URL and its full traces URL are accepted.
            Some(if base.ends_with("/v1/traces") {
                base.to_owned()
            } else {
                format!("{base}/v1/traces")
            })
        }
        Some(e) => {
            errs.push(FieldError::new(
                "telemetry.otlp_endpoint",
                format!(
                    "\"{e}\" must be an OTLP/HTTP URL like http://127.0.0.1:4318 (http:// or https://)"
                ),
            ));
            None
        }
    };
    let service_name = match t.service_name {
        None => "tribunal".to_owned(),
        Some(n) if !n.trim().is_empty() => n.trim().to_owned(),
        Some(_) => {
            errs.push(FieldError::new(
                "telemetry.service_name",
                "must not be empty",
            ));
            "tribunal".to_owned()
        }
    };
    TelemetryConfig {
        otlp_endpoint,
        service_name,
    }
}

fn validate_server(
    s: RawServer,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Vec<FieldError>,
) -> ServerConfig {
    let addr = |v: Option<String>, default: &str, field: &str, errs: &mut Vec<FieldError>| {
        let text = v.unwrap_or_else(|| default.to_owned());
        match text.parse::<std::net::SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                errs.push(FieldError::new(
                    field,
                    format!("\"{text}\" is not an address like 127.0.0.1:8080"),
                ));
                default
                    .parse()
                    .unwrap_or(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            }
        }
    };
    let http_addr = addr(s.http_addr, "127.0.0.1:8080", "server.http_addr", errs);
    let grpc_addr = addr(s.grpc_addr, "127.0.0.1:50051", "server.grpc_addr", errs);
    let log_format = match s.log_format.as_deref().unwrap_or("pretty") {
        "pretty" => LogFormat::Pretty,
        "json" => LogFormat::Json,
        other => {
            errs.push(FieldError::new(
                "server.log_format",
                format!("unknown format \"{other}\"; use pretty or json"),
            ));
            LogFormat::Pretty
        }
    };
    let mut api_keys = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, k) in s.api_keys.into_iter().enumerate() {
        let at = format!("server.api_keys[{i}]");
        if !names.insert(k.name.clone()) {
            errs.push(FieldError::new(
                format!("{at}.name"),
                format!("\"{}\" is used twice", k.name),
            ));
        }
        let hash = match (&k.key_env, &k.blake3) {
            (Some(var), None) => match env(var) {
                Some(key) if !key.is_empty() => blake3::hash(key.as_bytes()).to_hex().to_string(),
                _ => {
                    errs.push(FieldError::new(format!("{at}.key_env"), format!("env var {var} is not set; the server refuses to start with a key it cannot check")));
                    continue;
                }
            },
            (None, Some(h)) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                h.to_ascii_lowercase()
            }
            (None, Some(_)) => {
                errs.push(FieldError::new(
                    format!("{at}.blake3"),
                    "must be 64 hex digits (b3sum of the key)",
                ));
                continue;
            }
            _ => {
                errs.push(FieldError::new(at, "give exactly one of key_env or blake3"));
                continue;
            }
        };
        api_keys.push(ApiKeyConfig {
            name: k.name,
            role: k.role,
            blake3: hash,
            requests_per_minute: k.requests_per_minute,
            max_concurrent_jobs: k.max_concurrent_jobs,
        });
    }
    for (field, v) in [
        ("server.max_body_bytes", s.max_body_bytes),
        ("server.max_items_per_job", s.max_items_per_job),
        ("server.max_criteria_per_rubric", s.max_criteria_per_rubric),
        ("server.max_string_bytes", s.max_string_bytes),
        ("server.job_concurrency", s.job_concurrency),
    ] {
        if v == Some(0) {
            errs.push(FieldError::new(field, "must be at least 1"));
        }
    }
    let database_url = s
        .database_url
        .unwrap_or_else(|| "sqlite://tribunal.db".to_owned());
    if super::DatabaseKind::of(&database_url).is_none() {
        errs.push(FieldError::new(
            "server.database_url",
            "must start with sqlite: (one process, embedded) or postgres:// (shared by replicas)",
        ));
    }
    let allowed_hosts = validate_allowed_hosts(s.allowed_hosts.unwrap_or_default(), errs);
    for (field, v) in [
        ("server.header_read_timeout_ms", s.header_read_timeout_ms),
        ("server.body_idle_timeout_ms", s.body_idle_timeout_ms),
    ] {
        if v == Some(0) {
            errs.push(FieldError::new(
                field,
                "must be at least 1 (a slow or stalled client is cut off after it)",
            ));
        }
    }
    if s.job_lease_seconds == Some(0) {
        errs.push(FieldError::new(
            "server.job_lease_seconds",
            "must be at least 1 (a lease renewed every third of it)",
        ));
    }
    ServerConfig {
        http_addr,
        grpc_addr,
        database_url,
        job_lease: std::time::Duration::from_secs(s.job_lease_seconds.unwrap_or(30).max(1)),
        max_body_bytes: s.max_body_bytes.unwrap_or(64 * 1024 * 1024),
        max_items_per_job: s.max_items_per_job.unwrap_or(1_000_000),
        max_criteria_per_rubric: s.max_criteria_per_rubric.unwrap_or(500),
        max_string_bytes: s.max_string_bytes.unwrap_or(1024 * 1024),
        job_concurrency: s.job_concurrency,
        log_format,
        api_keys,
        allowed_hosts,
        header_read_timeout: std::time::Duration::from_millis(
            s.header_read_timeout_ms.unwrap_or(30_000).max(1),
        ),
        body_idle_timeout: std::time::Duration::from_millis(
            s.body_idle_timeout_ms.unwrap_or(60_000).max(1),
        ),
        failed_keys_per_address: s
            .failed_keys_per_address
            .unwrap_or(super::DEFAULT_FAILED_KEYS_PER_ADDRESS),
    }
}

/// `server.allowed_hosts`: bare host names or addresses (no scheme, no port, no
/// path), lower-cased; a port in the `Host` header is ignored when matching.
fn validate_allowed_hosts(hosts: Vec<String>, errs: &mut Vec<FieldError>) -> Vec<String> {
    let mut out = Vec::with_capacity(hosts.len());
    for (i, h) in hosts.into_iter().enumerate() {
        let h = h.trim().to_ascii_lowercase();
        let ok = !h.is_empty()
            && h.len() <= 253
            && h.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':')
            })
            && (h.starts_with('[') || !h.contains(':'));
        if ok {
            out.push(h);
        } else {
            errs.push(FieldError::new(
                format!("server.allowed_hosts[{i}]"),
                format!(
                    "\"{h}\" is not a host name; give the bare name clients use, like \"tribunal.example.org\" (no scheme, port or path)"
                ),
            ));
        }
    }
    out
}

fn validate_judge(
    name: &str,
    mut j: RawJudge,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Vec<FieldError>,
) -> Option<JudgeConfig> {
    let at = |k: &str| format!("judges.{name}.{k}");
    let before = errs.len();
    if !crate::rubric::valid_identifier(name) {
        errs.push(FieldError::new(
            format!("judges.{name}"),
            "judge names use letters, digits or . _ : -",
        ));
    }
    let provider = match j.provider.as_str() {
        "openai" => {
            if j.sim.is_some() {
                errs.push(FieldError::new(at("sim"), "only for provider = \"sim\""));
            }
            let base_url = match &j.base_url {
                Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                    u.trim_end_matches('/').to_owned()
                }
                Some(u) => {
                    errs.push(FieldError::new(
                        at("base_url"),
                        format!("\"{u}\" must start with http:// or https://"),
                    ));
                    String::new()
                }
                None => {
                    errs.push(FieldError::new(
                        at("base_url"),
                        "required for provider \"openai\", e.g. \"https://api.openai.com/v1\"",
                    ));
                    String::new()
                }
            };
            if j.model.as_deref().is_none_or(|m| m.trim().is_empty()) {
                errs.push(FieldError::new(
                    at("model"),
                    "required for provider \"openai\"",
                ));
            }
            let api_key = j
                .api_key_env
                .as_deref()
                .and_then(env)
                .map(SecretString::from);
            ProviderConfig::OpenAi(OpenAiConfig {
                base_url,
                api_key_env: j.api_key_env.clone(),
                api_key,
                headers: j.headers.clone().into_iter().collect(),
                structured_output: j.structured_output,
            })
        }
        "sim" => {
            for (k, present) in [
                ("base_url", j.base_url.is_some()),
                ("api_key_env", j.api_key_env.is_some()),
                ("structured_output", j.structured_output),
            ] {
                if present {
                    errs.push(FieldError::new(
                        at(k),
                        "not used by provider \"sim\"; remove it",
                    ));
                }
            }
            let s = j.sim.take().unwrap_or_default();
            let d = SimConfig::default();
            let f = |k: &str| format!("judges.{name}.sim.{k}");
            let sim = SimConfig {
                seed: s.seed.unwrap_or(d.seed),
                latency_ms: s.latency_ms.unwrap_or(d.latency_ms),
                latency_jitter_ms: s.latency_jitter_ms.unwrap_or(d.latency_jitter_ms),
                accuracy: unit(s.accuracy, d.accuracy, &f("accuracy"), errs),
                met_rate: unit(s.met_rate, d.met_rate, &f("met_rate"), errs),
                rate_429: unit(s.rate_429, 0.0, &f("rate_429"), errs),
                retry_after_ms: s.retry_after_ms.unwrap_or(d.retry_after_ms),
                rate_500: unit(s.rate_500, 0.0, &f("rate_500"), errs),
                rate_timeout: unit(s.rate_timeout, 0.0, &f("rate_timeout"), errs),
                rate_malformed: unit(s.rate_malformed, 0.0, &f("rate_malformed"), errs),
                rate_refusal: unit(s.rate_refusal, 0.0, &f("rate_refusal"), errs),
            };
            if sim.rate_429
                + sim.rate_500
                + sim.rate_timeout
                + sim.rate_malformed
                + sim.rate_refusal
                > 1.0
            {
                errs.push(FieldError::new(
                    format!("judges.{name}.sim"),
                    "error rates add up to more than 1",
                ));
            }
            ProviderConfig::Sim(sim)
        }
        other => {
            errs.push(FieldError::new(
                at("provider"),
                format!("unknown provider \"{other}\"; use \"openai\" or \"sim\""),
            ));
            return None;
        }
    };
    if let Some(t) = j.temperature {
        if !(0.0..=2.0).contains(&t) {
            errs.push(FieldError::new(
                at("temperature"),
                format!("{t} is outside [0, 2]"),
            ));
        }
    }
    if let Some(t) = j.top_p {
        if !(0.0..=1.0).contains(&t) || t == 0.0 {
            errs.push(FieldError::new(
                at("top_p"),
                format!("{t} is outside (0, 1]"),
            ));
        }
    }
    for (k, v) in [
        ("requests_per_minute", j.requests_per_minute),
        ("tokens_per_minute", j.tokens_per_minute),
        ("max_tokens", j.max_tokens),
    ] {
        if v == Some(0) {
            errs.push(FieldError::new(
                at(k),
                "must be at least 1 (omit it for no limit)",
            ));
        }
    }
    if j.max_concurrency == Some(0) {
        errs.push(FieldError::new(at("max_concurrency"), "must be at least 1"));
    }
    if j.max_attempts == Some(0) {
        errs.push(FieldError::new(at("max_attempts"), "must be at least 1"));
    }
    if j.timeout_ms == Some(0) {
        errs.push(FieldError::new(at("timeout_ms"), "must be at least 1"));
    }
    for (k, v) in [
        ("price_input_per_mtok", j.price_input_per_mtok),
        ("price_cached_input_per_mtok", j.price_cached_input_per_mtok),
        ("price_output_per_mtok", j.price_output_per_mtok),
    ] {
        if v.is_some_and(|p| !(p.is_finite() && p >= 0.0)) {
            errs.push(FieldError::new(at(k), "must be a number >= 0"));
        }
    }
    let batch = validate_batch(&j, name, errs);
    let backoff_base = Duration::from_millis(j.backoff_base_ms.unwrap_or(250));
    let backoff_max = Duration::from_millis(j.backoff_max_ms.unwrap_or(20_000));
    if backoff_max < backoff_base {
        errs.push(FieldError::new(
            at("backoff_max_ms"),
            "must be >= backoff_base_ms",
        ));
    }
    if errs.len() != before {
        return None;
    }
    Some(JudgeConfig {
        name: name.to_owned(),
        model: j.model.unwrap_or_else(|| name.to_owned()),
        provider,
        sampling: Sampling {
            temperature: j.temperature,
            top_p: j.top_p,
            max_tokens: j.max_tokens,
            seed: j.seed,
        },
        limits: LimitsConfig {
            requests_per_minute: j.requests_per_minute,
            tokens_per_minute: j.tokens_per_minute,
            max_concurrency: j.max_concurrency.unwrap_or(32),
        },
        retry: RetryConfig {
            max_attempts: j.max_attempts.unwrap_or(4),
            max_parse_retries: j.max_parse_retries.unwrap_or(2),
            backoff_base,
            backoff_max,
        },
        timeout: Duration::from_millis(j.timeout_ms.unwrap_or(30_000)),
        price_input_per_mtok: j.price_input_per_mtok.unwrap_or(0.0),
        // Without a cached price the cached tokens cost what other input costs: a
        // bill is never under-reported for a provider whose discount is unknown.
        price_cached_input_per_mtok: j
            .price_cached_input_per_mtok
            .or(j.price_input_per_mtok)
            .unwrap_or(0.0),
        price_output_per_mtok: j.price_output_per_mtok.unwrap_or(0.0),
        batch,
    })
}

/// The Batch API options of one judge: `Some` only with `batch = true`. Batch options
/// without `batch = true` are an error rather than silently unused, and the simulated
/// provider has no Batch API.
fn validate_batch(j: &RawJudge, name: &str, errs: &mut Vec<FieldError>) -> Option<BatchConfig> {
    let at = |k: &str| format!("judges.{name}.{k}");
    let d = BatchConfig::default();
    if !j.batch {
        for (k, present) in [
            ("batch_max_requests", j.batch_max_requests.is_some()),
            ("batch_max_wait_ms", j.batch_max_wait_ms.is_some()),
            ("batch_poll_ms", j.batch_poll_ms.is_some()),
            (
                "batch_completion_window",
                j.batch_completion_window.is_some(),
            ),
            ("batch_price_factor", j.batch_price_factor.is_some()),
            ("batch_max_attempts", j.batch_max_attempts.is_some()),
        ] {
            if present {
                errs.push(FieldError::new(
                    at(k),
                    "only used with `batch = true`; set it or remove this option",
                ));
            }
        }
        return None;
    }
    if j.provider == "sim" {
        errs.push(FieldError::new(
            at("batch"),
            "the simulated provider has no Batch API; use provider = \"openai\" or remove `batch`",
        ));
    }
    let max_requests = j.batch_max_requests.unwrap_or(d.max_requests);
    if !(1..=BATCH_MAX_REQUESTS_LIMIT).contains(&max_requests) {
        errs.push(FieldError::new(
            at("batch_max_requests"),
            format!(
                "{max_requests} is outside 1..={BATCH_MAX_REQUESTS_LIMIT} (the provider's limit of requests per batch file)"
            ),
        ));
    }
    for (k, v) in [
        ("batch_max_wait_ms", j.batch_max_wait_ms),
        ("batch_poll_ms", j.batch_poll_ms),
    ] {
        if v == Some(0) {
            errs.push(FieldError::new(at(k), "must be at least 1 (milliseconds)"));
        }
    }
    let window = j
        .batch_completion_window
        .as_deref()
        .unwrap_or(BATCH_COMPLETION_WINDOW);
    if window != BATCH_COMPLETION_WINDOW {
        errs.push(FieldError::new(
            at("batch_completion_window"),
            format!("\"{window}\" is not supported; the Batch API accepts only \"{BATCH_COMPLETION_WINDOW}\""),
        ));
    }
    let price_factor = j.batch_price_factor.unwrap_or(d.price_factor);
    if !(price_factor.is_finite() && (0.0..=1.0).contains(&price_factor)) {
        errs.push(FieldError::new(
            at("batch_price_factor"),
            format!("{price_factor} is outside [0, 1] (0.5 is OpenAI's batch discount)"),
        ));
    }
    if j.batch_max_attempts == Some(0) {
        errs.push(FieldError::new(
            at("batch_max_attempts"),
            "must be at least 1 (batches a request is submitted in before it abstains)",
        ));
    }
    Some(BatchConfig {
        max_requests,
        max_wait: j
            .batch_max_wait_ms
            .map_or(d.max_wait, Duration::from_millis),
        poll: j.batch_poll_ms.map_or(d.poll, Duration::from_millis),
        completion_window: d.completion_window,
        price_factor,
        max_attempts: j.batch_max_attempts.unwrap_or(d.max_attempts),
    })
}

fn validate_committee(
    c: RawCommittee,
    judges: &BTreeMap<String, JudgeConfig>,
    defined: &std::collections::BTreeSet<String>,
    files: LoadedFiles,
    errs: &mut Vec<FieldError>,
) -> Option<CommitteeConfig> {
    let before = errs.len();
    let mut members = Vec::new();
    let mut seen = std::collections::HashSet::new();
    if c.members.is_empty() {
        errs.push(FieldError::new(
            "committee.members",
            "name at least one judge",
        ));
    }
    for (i, m) in c.members.into_iter().enumerate() {
        let (name, weight) = match m {
            RawMember::Name(n) => (n, 1.0),
            RawMember::Weighted { judge, weight } => (judge, weight),
        };
        let at = format!("committee.members[{i}]");
        // Check against every defined judge: an invalid judge has its own errors and
        // must not also be reported as undefined here.
        if !defined.contains(&name) {
            errs.push(FieldError::new(
                at.clone(),
                format!("no judge \"{name}\"; define [judges.{name}]"),
            ));
        }
        if !(weight.is_finite() && weight > 0.0) {
            errs.push(FieldError::new(
                at.clone(),
                format!("weight {weight} must be > 0"),
            ));
        }
        if !seen.insert(name.clone()) {
            errs.push(FieldError::new(at, format!("\"{name}\" is listed twice")));
        }
        members.push((name, weight));
    }
    let consensus = rule_from(
        c.consensus.as_deref().unwrap_or("majority"),
        c.consensus_tie.as_deref(),
        c.consensus_k,
        "committee.consensus",
        errs,
    );
    let veto_consensus = rule_from(
        c.veto_consensus.as_deref().unwrap_or("any"),
        c.veto_consensus_tie.as_deref(),
        c.veto_consensus_k,
        "committee.veto_consensus",
        errs,
    );
    let reliability = interpreted(
        c.reliability.as_deref(),
        files.reliability,
        "committee.reliability",
        errs,
    )
    .map(std::sync::Arc::new);
    if c.weights_from.is_some() && !matches!(consensus, Some(Rule::Weighted { .. })) {
        errs.push(FieldError::new(
            "committee.weights_from",
            "derived weights are only used by the weighted consensus; set consensus = \"weighted\"",
        ));
    }
    if let Some(w) = interpreted(
        c.weights_from.as_deref(),
        files.weights_from,
        "committee.weights_from",
        errs,
    ) {
        for (name, weight) in &mut members {
            if let Some(x) = w.get(name.as_str()) {
                *weight = *x;
            }
        }
    }
    let quorum = c.quorum.unwrap_or(members.len().div_ceil(2).max(1));
    if quorum == 0 || quorum > members.len() {
        errs.push(FieldError::new(
            "committee.quorum",
            format!(
                "{quorum} must be between 1 and the number of members ({})",
                members.len()
            ),
        ));
    }
    let n_samples = c.n_samples.unwrap_or(1);
    if n_samples == 0 || n_samples > 16 {
        errs.push(FieldError::new(
            "committee.n_samples",
            "must be between 1 and 16",
        ));
    }
    if let Some(e) = &c.escalation {
        if !defined.contains(e) {
            errs.push(FieldError::new(
                "committee.escalation",
                format!("no judge \"{e}\"; define [judges.{e}]"),
            ));
        }
        if seen.contains(e) {
            errs.push(FieldError::new(
                "committee.escalation",
                "the escalation judge must not also be a member (it would break its own ties)",
            ));
        }
    }
    let escalates = matches!(
        consensus,
        Some(
            Rule::Majority {
                tie: TieRule::Escalate
            } | Rule::Weighted {
                tie: TieRule::Escalate
            } | Rule::DawidSkene {
                tie: TieRule::Escalate
            }
        )
    );
    if escalates && c.escalation.is_none() {
        errs.push(FieldError::new(
            "committee.consensus_tie",
            "\"escalate\" needs committee.escalation = \"<judge>\"",
        ));
    }
    let min_agreement = unit(c.min_agreement, 0.0, "committee.min_agreement", errs);
    let prompt_mode = match c.prompt_mode.as_deref().unwrap_or("per_criterion") {
        "per_criterion" => PromptMode::PerCriterion,
        "batched" => PromptMode::Batched,
        other => {
            errs.push(FieldError::new(
                "committee.prompt_mode",
                format!("unknown mode \"{other}\"; use per_criterion or batched"),
            ));
            PromptMode::PerCriterion
        }
    };
    let prompts = match c.prompts.as_deref() {
        None => crate::judge::prompt::BuiltinPrompts::default(),
        Some(name) => match crate::judge::prompt::BuiltinPrompts::from_name(name) {
            Some(_) if c.prompts_dir.is_some() => {
                errs.push(FieldError::new(
                    "committee.prompts",
                    "set either prompts (a built-in set) or prompts_dir (a custom set), not both",
                ));
                crate::judge::prompt::BuiltinPrompts::default()
            }
            Some(v) => v,
            None => {
                errs.push(FieldError::new(
                    "committee.prompts",
                    format!("unknown built-in prompt set \"{name}\"; use v1, v2 or v3"),
                ));
                crate::judge::prompt::BuiltinPrompts::default()
            }
        },
    };
    let explanations = c.explanations.unwrap_or(true);
    if !explanations
        && c.prompts_dir.is_none()
        && prompts != crate::judge::prompt::BuiltinPrompts::V3
    {
        errs.push(FieldError::new(
            "committee.explanations",
            format!(
                "false needs prompts = \"v3\" (the {} templates always ask for an explanation) or a custom set in prompts_dir whose templates read `explain`; set prompts = \"v3\" or remove explanations",
                prompts.as_str()
            ),
        ));
    }
    let request_timeout = Duration::from_millis(c.request_timeout_ms.unwrap_or(300_000));
    let longest_call = members
        .iter()
        .map(|(n, _)| n)
        .chain(c.escalation.iter())
        .filter_map(|n| judges.get(n))
        .map(|j| j.timeout)
        .max()
        .unwrap_or_default();
    if request_timeout <= longest_call {
        errs.push(FieldError::new(
            "committee.request_timeout_ms",
            format!(
                "{} ms must be longer than the longest judge timeout_ms ({} ms)",
                request_timeout.as_millis(),
                longest_call.as_millis()
            ),
        ));
    }
    if errs.len() != before {
        return None;
    }
    Some(CommitteeConfig {
        members,
        n_samples,
        consensus: consensus?,
        veto_consensus: veto_consensus?,
        quorum,
        escalation: c.escalation,
        min_agreement,
        prompt_mode,
        request_timeout,
        prompts,
        prompts_dir: c.prompts_dir,
        explanations,
        reliability,
        weights_from: c.weights_from,
    })
}

/// The value the caller made of the file a config field names, or its problem reported
/// at `field`. A named file the caller did not hand in is a problem too (a loader
/// bug), never silently ignored.
fn interpreted<T>(
    named: Option<&std::path::Path>,
    loaded: Option<Result<T, String>>,
    field: &str,
    errs: &mut Vec<FieldError>,
) -> Option<T> {
    let path = named?;
    match loaded {
        Some(Ok(v)) => Some(v),
        Some(Err(m)) => {
            errs.push(FieldError::new(field, m));
            None
        }
        None => {
            errs.push(FieldError::new(
                field,
                format!("{}: the file was not read", path.display()),
            ));
            None
        }
    }
}
