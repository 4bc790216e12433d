//! Prometheus metrics. Every metric name and label key is spelled here and nowhere
//! else; callers use the typed functions below. Label values come from bounded sets
//! only: judge names and API key names (from the config), enums, route templates,
//! status codes. Never request ids, case ids or text.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder, exponential_buckets,
};

pub struct Metrics {
    pub registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    judge_calls: IntCounterVec,
    judge_duration: HistogramVec,
    judge_tokens: IntCounterVec,
    judge_cost: prometheus::CounterVec,
    judge_in_flight: IntGaugeVec,
    judge_retries: IntCounterVec,
    judge_batches: IntCounterVec,
    judge_batch_requests: IntCounterVec,
    limiter_waits: IntCounterVec,
    quota_rejections: IntCounterVec,
    cache_lookups: IntCounterVec,
    abstentions: IntCounterVec,
    consensus: IntCounterVec,
    vetoes: IntCounterVec,
    jobs: IntGaugeVec,
    job_items_pending: IntGauge,
    grade_duration: Histogram,
    agreement_kappa: prometheus::GaugeVec,
    agreement_alpha: prometheus::GaugeVec,
    agreement_band: prometheus::GaugeVec,
    ballots: IntCounterVec,
    redis_errors: IntCounterVec,
    redis_fallbacks: IntCounterVec,
    redis_up: IntGauge,
    cache_flights: IntCounterVec,
    store_pool: IntGaugeVec,
    store_errors: IntCounterVec,
}

/// The commit the binary was built from, or `unknown` (set by build.rs).
pub const BUILD_COMMIT: &str = env!("TRIBUNAL_BUILD_COMMIT");

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let counter =
        |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
    let latency = exponential_buckets(0.001, 2.0, 17)?;
    let http_duration = HistogramVec::new(
        HistogramOpts::new(
            "tribunal_http_request_duration_seconds",
            "HTTP request latency",
        )
        .buckets(latency.clone()),
        &["route", "method"],
    )?;
    registry.register(Box::new(http_duration.clone()))?;
    let judge_duration = HistogramVec::new(
        HistogramOpts::new(
            "tribunal_judge_call_duration_seconds",
            "Latency of one judge HTTP attempt",
        )
        .buckets(latency.clone()),
        &["judge"],
    )?;
    registry.register(Box::new(judge_duration.clone()))?;
    let grade_duration = Histogram::with_opts(
        HistogramOpts::new("tribunal_grade_duration_seconds", "Time to grade one item")
            .buckets(latency),
    )?;
    registry.register(Box::new(grade_duration.clone()))?;
    let judge_cost = prometheus::CounterVec::new(
        Opts::new(
            "tribunal_judge_cost_usd_total",
            "Judge spend in USD at configured prices",
        ),
        &["judge"],
    )?;
    registry.register(Box::new(judge_cost.clone()))?;
    let judge_in_flight = IntGaugeVec::new(
        Opts::new("tribunal_judge_calls_in_flight", "Judge calls in flight"),
        &["judge"],
    )?;
    registry.register(Box::new(judge_in_flight.clone()))?;
    let jobs = IntGaugeVec::new(Opts::new("tribunal_jobs", "Jobs by state"), &["state"])?;
    registry.register(Box::new(jobs.clone()))?;
    let job_items_pending =
        IntGauge::new("tribunal_job_items_pending", "Job items not yet graded")?;
    registry.register(Box::new(job_items_pending.clone()))?;
    let agreement_kappa = prometheus::GaugeVec::new(
        Opts::new(
            "tribunal_agreement_kappa",
            "Cohen's kappa of a judge (or the committee) against the human majority in the last finished calibration run of a set; rater=\"humans\" is the humans' Fleiss kappa",
        ),
        &["set_id", "rater"],
    )?;
    registry.register(Box::new(agreement_kappa.clone()))?;
    let agreement_alpha = prometheus::GaugeVec::new(
        Opts::new(
            "tribunal_agreement_alpha",
            "Krippendorff's alpha among the humans of a set (rater=\"humans\") in its last finished calibration run",
        ),
        &["set_id", "rater"],
    )?;
    registry.register(Box::new(agreement_alpha.clone()))?;
    let agreement_band = prometheus::GaugeVec::new(
        Opts::new(
            "tribunal_agreement_human_band",
            "Lowest (bound=\"min\") and highest (bound=\"max\") Cohen's kappa between two humans of a set in its last finished calibration run",
        ),
        &["set_id", "bound"],
    )?;
    registry.register(Box::new(agreement_band.clone()))?;
    // A constant 1 whose labels say which build is running, so dashboards can show
    // versions and alerts can be joined to them; it is never a request-path metric.
    let build_info = IntGaugeVec::new(
        Opts::new(
            "tribunal_build_info",
            "Always 1; the labels name the running build",
        ),
        &["version", "commit"],
    )?;
    registry.register(Box::new(build_info.clone()))?;
    let store_pool = IntGaugeVec::new(
        Opts::new(
            "tribunal_store_pool_connections",
            "Postgres pool connections by state (in_use, idle) and the pool's max, refreshed before each scrape (absent on SQLite)",
        ),
        &["state"],
    )?;
    registry.register(Box::new(store_pool.clone()))?;
    let redis_up = IntGauge::new(
        "tribunal_redis_up",
        "1 while the last Redis command succeeded, 0 during an outage (absent without [redis])",
    )?;
    registry.register(Box::new(redis_up.clone()))?;
    build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION"), BUILD_COMMIT])
        .set(1);
    // The standard process_* metrics (memory, CPU, file descriptors, start time) come
    // from /proc, which only Linux has; elsewhere they are simply absent.
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    Ok(Metrics {
        http_requests: counter(
            "tribunal_http_requests_total",
            "HTTP requests",
            &["route", "method", "status"],
        )?,
        http_duration,
        judge_calls: counter(
            "tribunal_judge_calls_total",
            "Judge HTTP attempts by outcome",
            &["judge", "outcome"],
        )?,
        judge_duration,
        judge_tokens: counter(
            "tribunal_judge_tokens_total",
            "Judge tokens",
            &["judge", "direction"],
        )?,
        judge_cost,
        judge_in_flight,
        judge_retries: counter(
            "tribunal_judge_retries_total",
            "Judge call retries",
            &["judge"],
        )?,
        judge_batches: counter(
            "tribunal_judge_batches_total",
            "Provider Batch API batches by outcome (submitted | completed | failed)",
            &["judge", "outcome"],
        )?,
        judge_batch_requests: counter(
            "tribunal_judge_batch_requests_total",
            "Requests in provider Batch API batches by outcome (submitted | completed | failed)",
            &["judge", "outcome"],
        )?,
        limiter_waits: counter(
            "tribunal_limiter_waits_total",
            "Outbound limiter acquisitions that waited",
            &["judge"],
        )?,
        quota_rejections: counter(
            "tribunal_quota_rejections_total",
            "Inbound requests refused by a quota",
            &["key"],
        )?,
        cache_lookups: counter(
            "tribunal_cache_lookups_total",
            "Verdict cache lookups",
            &["tier", "result"],
        )?,
        abstentions: counter(
            "tribunal_abstentions_total",
            "Abstained ballots by reason",
            &["judge", "reason"],
        )?,
        consensus: counter(
            "tribunal_consensus_total",
            "Criterion consensus outcomes (split, escalated ...)",
            &["kind"],
        )?,
        vetoes: counter(
            "tribunal_vetoes_total",
            "Examples whose final score was set by a veto",
            &["policy"],
        )?,
        jobs,
        job_items_pending,
        grade_duration,
        agreement_kappa,
        agreement_alpha,
        agreement_band,
        ballots: counter(
            "tribunal_ballots_total",
            "Ballots cast by a judge (answered or abstained), the denominator of its abstention ratio",
            &["judge"],
        )?,
        redis_errors: counter(
            "tribunal_redis_errors_total",
            "Redis commands that failed or timed out, by the component that sent them",
            &["component"],
        )?,
        redis_fallbacks: counter(
            "tribunal_redis_fallbacks_total",
            "Operations served locally because Redis was unreachable (limits at their per-replica share, cache from memory)",
            &["component"],
        )?,
        redis_up,
        store_pool,
        store_errors: counter(
            "tribunal_store_errors_total",
            "Store (database) operations that failed, by kind: pool_timeout (no connection within the acquire timeout), connection, database, other",
            &["kind"],
        )?,
        cache_flights: counter(
            "tribunal_cache_flights_total",
            "Cross-replica single-flight outcomes of verdict cache misses",
            &["role"],
        )?,
        registry,
    })
}

static METRICS: LazyLock<Option<Metrics>> = LazyLock::new(|| match build() {
    Ok(m) => Some(m),
    Err(e) => {
        // Metrics must never take the service down; log once and run without them.
        tracing::error!(error = %e, "metrics registry failed to build; metrics disabled");
        None
    }
});

fn with(f: impl FnOnce(&Metrics)) {
    if let Some(m) = METRICS.as_ref() {
        f(m);
    }
}

pub fn http_request(route: &str, method: &str, status: u16, seconds: f64) {
    with(|m| {
        m.http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        m.http_duration
            .with_label_values(&[route, method])
            .observe(seconds);
    });
}

/// Outcome of one judge HTTP attempt: `ok`, `rate_limited`, `server_error`, `timeout`,
/// `connect_error`, `client_error`, `decode_error`.
pub fn judge_call(judge: &str, outcome: &'static str, seconds: f64) {
    with(|m| {
        m.judge_calls.with_label_values(&[judge, outcome]).inc();
        m.judge_duration
            .with_label_values(&[judge])
            .observe(seconds);
    });
}

/// Tokens by direction: `input` (every prompt token), `cached_input` (the part of
/// `input` the provider billed at its cached price), `output` (every completion
/// token) and `reasoning` (the part of `output` spent on hidden reasoning).
pub fn judge_usage(judge: &str, usage: crate::judge::Usage, cost_usd: f64) {
    with(|m| {
        for (direction, n) in [
            ("input", usage.input_tokens),
            ("cached_input", usage.cached_input_tokens),
            ("output", usage.output_tokens),
            ("reasoning", usage.reasoning_tokens),
        ] {
            m.judge_tokens
                .with_label_values(&[judge, direction])
                .inc_by(n);
        }
        m.judge_cost
            .with_label_values(&[judge])
            .inc_by(cost_usd.max(0.0));
    });
}

pub fn judge_in_flight(judge: &str, delta: i64) {
    with(|m| m.judge_in_flight.with_label_values(&[judge]).add(delta));
}

pub fn judge_retry(judge: &str) {
    with(|m| m.judge_retries.with_label_values(&[judge]).inc());
}

/// A judge batch of `requests` entries: `outcome` submitted | completed | failed.
pub fn judge_batch(judge: &str, outcome: &'static str, requests: usize) {
    with(|m| {
        m.judge_batches.with_label_values(&[judge, outcome]).inc();
        m.judge_batch_requests
            .with_label_values(&[judge, outcome])
            .inc_by(requests as u64);
    });
}

pub fn limiter_wait(judge: &str) {
    with(|m| m.limiter_waits.with_label_values(&[judge]).inc());
}

/// `component`: limiter (judge limits and key quotas) | cache | health.
pub fn redis_error(component: &'static str) {
    with(|m| m.redis_errors.with_label_values(&[component]).inc());
}

/// `component`: limiter (judge limits and key quotas) | cache | health.
pub fn redis_fallback(component: &'static str) {
    with(|m| m.redis_fallbacks.with_label_values(&[component]).inc());
}

pub fn redis_up(up: bool) {
    with(|m| m.redis_up.set(i64::from(up)));
}

/// `role`: leader (held the lease and called the judge), follower (got the leader's
/// verdict), takeover (the lease expired or was dropped and this caller led instead).
pub fn cache_flight(role: &'static str) {
    with(|m| m.cache_flights.with_label_values(&[role]).inc());
}

/// The Postgres pool's connections: `size` open, `idle` of them idle, `max` allowed.
/// A pool with no idle connection at its max makes requests wait for one (up to the
/// acquire timeout, then `pool_timeout` errors).
pub fn store_pool(size: u32, idle: usize, max: u32) {
    with(|m| {
        let idle = i64::try_from(idle).unwrap_or(i64::MAX);
        let size = i64::from(size);
        m.store_pool
            .with_label_values(&["in_use"])
            .set((size - idle).max(0));
        m.store_pool.with_label_values(&["idle"]).set(idle);
        m.store_pool.with_label_values(&["max"]).set(i64::from(max));
    });
}

/// One failed store operation (any engine), by a bounded kind.
pub fn store_error(e: &sqlx::Error) {
    let kind = match e {
        sqlx::Error::PoolTimedOut => "pool_timeout",
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolClosed => "connection",
        sqlx::Error::Database(_) => "database",
        _ => "other",
    };
    with(|m| m.store_errors.with_label_values(&[kind]).inc());
}

pub fn quota_rejection(key: &str) {
    with(|m| m.quota_rejections.with_label_values(&[key]).inc());
}

/// `tier`: memory | persistent; `result`: hit | miss.
pub fn cache_lookup(tier: &'static str, result: &'static str) {
    with(|m| m.cache_lookups.with_label_values(&[tier, result]).inc());
}

pub fn abstention(judge: &str, reason: &'static str) {
    with(|m| m.abstentions.with_label_values(&[judge, reason]).inc());
}

/// One ballot of `judge`, whether it holds a verdict or an abstention.
pub fn ballot(judge: &str) {
    with(|m| m.ballots.with_label_values(&[judge]).inc());
}

pub fn consensus(kind: &'static str) {
    with(|m| m.consensus.with_label_values(&[kind]).inc());
}

pub fn veto(policy: &'static str) {
    with(|m| m.vetoes.with_label_values(&[policy]).inc());
}

pub fn grade_duration(seconds: f64) {
    with(|m| m.grade_duration.observe(seconds));
}

/// Job gauges, set at scrape time from the store.
pub fn jobs(by_state: &[(&'static str, i64)], pending_items: i64) {
    with(|m| {
        for (state, n) in by_state {
            m.jobs.with_label_values(&[state]).set(*n);
        }
        m.job_items_pending.set(pending_items);
    });
}

/// Which agreement gauge a calibration figure goes to.
#[derive(Debug, Clone, Copy)]
pub enum Agreement {
    Kappa,
    Alpha,
}

/// Sets (or, for an undefined coefficient, removes) one agreement gauge. Label values:
/// calibration set ids (server-made UUIDs, never the set's free-text name: `/metrics`
/// is unauthenticated) and the committee's judge names, `committee` or `humans`.
pub fn agreement(which: Agreement, set_id: &str, rater: &str, value: Option<f64>) {
    with(|m| {
        let g = match which {
            Agreement::Kappa => &m.agreement_kappa,
            Agreement::Alpha => &m.agreement_alpha,
        };
        match value.filter(|v| v.is_finite()) {
            Some(v) => g.with_label_values(&[set_id, rater]).set(v),
            None => {
                let _ = g.remove_label_values(&[set_id, rater]);
            }
        }
    });
}

/// Sets (or, when undefined, removes) the human-human kappa band of a set.
pub fn agreement_band(set_id: &str, min: Option<f64>, max: Option<f64>) {
    with(|m| {
        for (bound, value) in [("min", min), ("max", max)] {
            match value.filter(|v| v.is_finite()) {
                Some(v) => m.agreement_band.with_label_values(&[set_id, bound]).set(v),
                None => {
                    let _ = m.agreement_band.remove_label_values(&[set_id, bound]);
                }
            }
        }
    });
}

/// The text exposition of every metric.
pub fn render() -> String {
    let Some(m) = METRICS.as_ref() else {
        return String::new();
    };
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&m.registry.gather(), &mut buf) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    String::from_utf8(buf).unwrap_or_default()
}
