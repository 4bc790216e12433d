//! The resolved configuration as TOML (`tribunal config check`): every key with the
//! value in force (defaults filled in, env overrides applied), in the file's own key
//! names, secrets masked. Without secrets in it, the text loads back to the same
//! configuration (`committee.reliability` and `weights_from` excepted: their files
//! were read already and are only named).

use toml::{Table, Value};

use super::{Config, JudgeConfig, LogFormat, PromptMode, ProviderConfig, ServerConfig};
use crate::committee::vote::Rule;

/// What a masked secret reads as.
const MASK: &str = "***";

fn ms(d: std::time::Duration) -> Value {
    Value::Integer(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn int(n: impl TryInto<i64>) -> Value {
    Value::Integer(n.try_into().unwrap_or(i64::MAX))
}

fn put(t: &mut Table, key: &str, v: impl Into<Value>) {
    t.insert(key.to_owned(), v.into());
}

/// The rule's name and its tie rule / k, under `prefix` (`consensus`, `veto_consensus`).
fn put_rule(t: &mut Table, prefix: &str, rule: &Rule) {
    put(t, prefix, rule.name());
    match rule {
        Rule::Majority { tie } | Rule::Weighted { tie } | Rule::DawidSkene { tie } => {
            put(t, &format!("{prefix}_tie"), tie.name());
        }
        Rule::Any { k } => {
            t.insert(format!("{prefix}_k"), int(*k));
        }
        Rule::Unanimous | Rule::Mean | Rule::Median => {}
    }
}

fn judge_table(j: &JudgeConfig) -> Table {
    let mut t = Table::new();
    match &j.provider {
        ProviderConfig::OpenAi(o) => {
            put(&mut t, "provider", "openai");
            put(&mut t, "model", j.model.as_str());
            put(&mut t, "base_url", super::mask_url(&o.base_url));
            if let Some(env) = &o.api_key_env {
                put(&mut t, "api_key_env", env.as_str());
            }
            if o.structured_output {
                put(&mut t, "structured_output", true);
            }
            if !o.headers.is_empty() {
                // Header values are often credentials: names only.
                let headers: Table = o
                    .headers
                    .iter()
                    .map(|(k, _)| (k.clone(), Value::from(MASK)))
                    .collect();
                t.insert("headers".into(), Value::Table(headers));
            }
        }
        ProviderConfig::Sim(_) => {
            put(&mut t, "provider", "sim");
            put(&mut t, "model", j.model.as_str());
        }
    }
    if let Some(x) = j.sampling.temperature {
        put(&mut t, "temperature", x);
    }
    if let Some(x) = j.sampling.top_p {
        put(&mut t, "top_p", x);
    }
    if let Some(x) = j.sampling.max_tokens {
        t.insert("max_tokens".into(), int(x));
    }
    if let Some(x) = j.sampling.seed {
        put(&mut t, "seed", x);
    }
    t.insert("timeout_ms".into(), ms(j.timeout));
    put(&mut t, "price_input_per_mtok", j.price_input_per_mtok);
    put(
        &mut t,
        "price_cached_input_per_mtok",
        j.price_cached_input_per_mtok,
    );
    put(&mut t, "price_output_per_mtok", j.price_output_per_mtok);
    if let Some(x) = j.limits.requests_per_minute {
        t.insert("requests_per_minute".into(), int(x));
    }
    if let Some(x) = j.limits.tokens_per_minute {
        t.insert("tokens_per_minute".into(), int(x));
    }
    t.insert("max_concurrency".into(), int(j.limits.max_concurrency));
    t.insert("max_attempts".into(), int(j.retry.max_attempts));
    t.insert("max_parse_retries".into(), int(j.retry.max_parse_retries));
    t.insert("backoff_base_ms".into(), ms(j.retry.backoff_base));
    t.insert("backoff_max_ms".into(), ms(j.retry.backoff_max));
    if let Some(b) = &j.batch {
        put(&mut t, "batch", true);
        t.insert("batch_max_requests".into(), int(b.max_requests));
        t.insert("batch_max_wait_ms".into(), ms(b.max_wait));
        t.insert("batch_poll_ms".into(), ms(b.poll));
        put(
            &mut t,
            "batch_completion_window",
            super::BATCH_COMPLETION_WINDOW,
        );
        put(&mut t, "batch_price_factor", b.price_factor);
        t.insert("batch_max_attempts".into(), int(b.max_attempts));
    }
    if let ProviderConfig::Sim(s) = &j.provider {
        let mut sim = Table::new();
        sim.insert("seed".into(), int(s.seed));
        sim.insert("latency_ms".into(), int(s.latency_ms));
        sim.insert("latency_jitter_ms".into(), int(s.latency_jitter_ms));
        put(&mut sim, "accuracy", s.accuracy);
        put(&mut sim, "met_rate", s.met_rate);
        put(&mut sim, "rate_429", s.rate_429);
        sim.insert("retry_after_ms".into(), int(s.retry_after_ms));
        put(&mut sim, "rate_500", s.rate_500);
        put(&mut sim, "rate_timeout", s.rate_timeout);
        put(&mut sim, "rate_malformed", s.rate_malformed);
        put(&mut sim, "rate_refusal", s.rate_refusal);
        t.insert("sim".into(), Value::Table(sim));
    }
    t
}

fn server_table(s: &ServerConfig) -> Table {
    let mut t = Table::new();
    put(&mut t, "http_addr", s.http_addr.to_string());
    put(&mut t, "grpc_addr", s.grpc_addr.to_string());
    put(
        &mut t,
        "database_url",
        super::mask_userinfo(&s.database_url),
    );
    t.insert("max_body_bytes".into(), int(s.max_body_bytes));
    t.insert("max_items_per_job".into(), int(s.max_items_per_job));
    t.insert(
        "max_criteria_per_rubric".into(),
        int(s.max_criteria_per_rubric),
    );
    if let Some(c) = s.job_concurrency {
        t.insert("job_concurrency".into(), int(c));
    }
    t.insert("job_lease_seconds".into(), int(s.job_lease.as_secs()));
    put(
        &mut t,
        "log_format",
        match s.log_format {
            LogFormat::Pretty => "pretty",
            LogFormat::Json => "json",
        },
    );
    let keys: Vec<Value> = s
        .api_keys
        .iter()
        .map(|k| {
            let mut e = Table::new();
            put(&mut e, "name", k.name.as_str());
            put(&mut e, "role", k.role.as_str());
            // A hash, not the key, but still nothing to paste around.
            put(&mut e, "blake3", MASK);
            if let Some(r) = k.requests_per_minute {
                e.insert("requests_per_minute".into(), int(r));
            }
            if let Some(j) = k.max_concurrent_jobs {
                e.insert("max_concurrent_jobs".into(), int(j));
            }
            Value::Table(e)
        })
        .collect();
    if !keys.is_empty() {
        t.insert("api_keys".into(), Value::Array(keys));
    }
    t
}

/// The resolved configuration as TOML, secrets masked: URL userinfo (judge
/// `base_url`, `database_url`, `redis.url`, `telemetry.otlp_endpoint`), header values
/// and API key hashes read `***`; judge keys appear only as the env var that holds them.
pub fn render_resolved_toml(cfg: &Config) -> String {
    let mut doc = Table::new();
    let judges: Table = cfg
        .judges
        .iter()
        .map(|(name, j)| (name.clone(), Value::Table(judge_table(j))))
        .collect();
    doc.insert("judges".into(), Value::Table(judges));

    let c = &cfg.committee;
    let mut committee = Table::new();
    let members: Vec<Value> = c
        .members
        .iter()
        .map(|(name, w)| {
            let mut m = Table::new();
            put(&mut m, "judge", name.as_str());
            put(&mut m, "weight", *w);
            Value::Table(m)
        })
        .collect();
    committee.insert("members".into(), Value::Array(members));
    committee.insert("n_samples".into(), int(c.n_samples));
    put_rule(&mut committee, "consensus", &c.consensus);
    put_rule(&mut committee, "veto_consensus", &c.veto_consensus);
    committee.insert("quorum".into(), int(c.quorum));
    if let Some(e) = &c.escalation {
        put(&mut committee, "escalation", e.as_str());
    }
    put(&mut committee, "min_agreement", c.min_agreement);
    put(
        &mut committee,
        "prompt_mode",
        match c.prompt_mode {
            PromptMode::PerCriterion => "per_criterion",
            PromptMode::Batched => "batched",
        },
    );
    committee.insert("request_timeout_ms".into(), ms(c.request_timeout));
    put(&mut committee, "prompts", c.prompts.as_str());
    if let Some(d) = &c.prompts_dir {
        put(&mut committee, "prompts_dir", d.display().to_string());
    }
    put(&mut committee, "explanations", c.explanations);
    if let Some(p) = &c.weights_from {
        put(&mut committee, "weights_from", p.display().to_string());
    }
    doc.insert("committee".into(), Value::Table(committee));

    let mut cache = Table::new();
    cache.insert("max_bytes".into(), int(cfg.cache.max_bytes));
    cache.insert("ttl_secs".into(), int(cfg.cache.ttl.as_secs()));
    doc.insert("cache".into(), Value::Table(cache));
    doc.insert("server".into(), Value::Table(server_table(&cfg.server)));

    let mut telemetry = Table::new();
    if let Some(e) = &cfg.telemetry.otlp_endpoint {
        put(&mut telemetry, "otlp_endpoint", super::mask_url(e));
    }
    put(
        &mut telemetry,
        "service_name",
        cfg.telemetry.service_name.as_str(),
    );
    doc.insert("telemetry".into(), Value::Table(telemetry));

    if let Some(r) = &cfg.redis {
        let mut redis = Table::new();
        put(&mut redis, "url", r.url_display());
        redis.insert("replicas".into(), int(r.replicas));
        put(&mut redis, "key_prefix", r.key_prefix.as_str());
        redis.insert("timeout_ms".into(), ms(r.timeout));
        redis.insert("lease_ms".into(), ms(r.lease));
        doc.insert("redis".into(), Value::Table(redis));
    }
    toml::to_string(&doc).unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
}
