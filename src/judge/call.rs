//! One judge's calls: limiter permit, provider call with a per-attempt deadline,
//! retries with capped exponential backoff and full jitter (honouring Retry-After),
//! and re-asking when the answer cannot be parsed. Every failure ends as an explicit
//! `AbstainReason`, never as a verdict. A cancel token (the job's) is checked before
//! every attempt and raced against limiter and backoff waits: once it fires no request
//! starts (the call abstains as `cancelled`); a request already sent is awaited up to its
//! deadline, so what the provider bills is counted. A batch judge's job calls go through its
//! `Batcher` instead (no permit, no per-attempt deadline: the Batch API's completion
//! window bounds them) and come back through the same parse, usage and cost path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::RngExt;
use tokio_util::sync::CancellationToken;

use super::batch::{self, Batcher};
use super::parse::{ParseError, parse_answer, parse_batch};
use super::{AbstainReason, ChatRequest, ChatRole, Expect, Parsed, Provider, ProviderError, Usage};
use crate::config::JudgeConfig;
use crate::limits::{JudgeLimiter, estimate_tokens};

/// Counters for one judge, read by progress output and metrics.
#[derive(Debug, Default)]
pub struct JudgeStats {
    pub calls: AtomicU64,
    pub retries: AtomicU64,
    pub parse_retries: AtomicU64,
    pub input_tokens: AtomicU64,
    pub output_tokens: AtomicU64,
    /// Part of `input_tokens` billed at the cached price.
    pub cached_input_tokens: AtomicU64,
    /// Part of `output_tokens` spent on reasoning.
    pub reasoning_tokens: AtomicU64,
    /// Micro-dollars, so it can be an atomic integer.
    pub cost_micro_usd: AtomicU64,
}

/// What one logical call produced (after retries and re-asks).
#[derive(Debug, Clone)]
pub struct CallResult {
    /// Per asked criterion: a parsed answer or why it abstained.
    pub answers: Vec<Result<Parsed, AbstainReason>>,
    pub usage: Usage,
    pub attempts: u32,
    pub latency: Duration,
    /// Why the abstaining answers abstained, in words: the HTTP status, the URL without
    /// secrets and the start of the provider's error body, the transport error, the
    /// timeout, or the parse problem. `None` when every answer has a verdict.
    pub detail: Option<String>,
}

impl CallResult {
    fn abstain(
        n: usize,
        (reason, detail): (AbstainReason, String),
        usage: Usage,
        attempts: u32,
        started: Instant,
    ) -> Self {
        CallResult {
            answers: vec![Err(reason); n],
            usage,
            attempts,
            latency: started.elapsed(),
            detail: Some(detail),
        }
    }
}

/// An abstention with its detail (see `CallResult::detail`).
type Abstain = (AbstainReason, String);

/// The abstention of a call stopped by its job's cancel or the server's shutdown
/// before a request was sent.
fn cancelled() -> Abstain {
    (
        AbstainReason::Cancelled,
        "stopped before the request was sent: the job was cancelled or the server is shutting down"
            .to_owned(),
    )
}

/// How often the same judge's same abstention reason is logged again: the first one
/// at once, then at most one line per this period, with the count in between.
pub const ABSTENTION_LOG_PERIOD: Duration = Duration::from_secs(60);

/// The rate limiter of abstention log lines: per reason, when the last line was
/// written and how many abstentions went unlogged since.
#[derive(Debug, Default)]
pub struct AbstentionLog {
    seen: std::sync::Mutex<std::collections::HashMap<AbstainReason, (Instant, u64)>>,
}

impl AbstentionLog {
    /// Whether to log this abstention now, and how many of the same reason were
    /// suppressed since the last line (they are reported in this one).
    pub fn admit(&self, reason: AbstainReason, now: Instant) -> Option<u64> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match seen.get_mut(&reason) {
            None => {
                seen.insert(reason, (now, 0));
                Some(0)
            }
            Some((last, suppressed)) => {
                if now.saturating_duration_since(*last) >= ABSTENTION_LOG_PERIOD {
                    let n = *suppressed;
                    *last = now;
                    *suppressed = 0;
                    Some(n)
                } else {
                    *suppressed += 1;
                    None
                }
            }
        }
    }
}

pub struct JudgeClient {
    pub cfg: JudgeConfig,
    provider: Arc<dyn Provider>,
    pub limiter: JudgeLimiter,
    pub stats: JudgeStats,
    /// The Batch API collector, for a `batch = true` judge whose provider has one.
    pub batcher: Option<Arc<Batcher>>,
    /// Rate limit of this judge's abstention `warn` lines.
    pub abstention_log: AbstentionLog,
    /// Abstained ballots by reason, with the first detail seen (`note_abstention`).
    abstentions: std::sync::Mutex<std::collections::BTreeMap<AbstainReason, (u64, String)>>,
}

impl JudgeClient {
    pub fn new(cfg: JudgeConfig, provider: Arc<dyn Provider>) -> Self {
        let batcher = cfg.batch.clone().and_then(|b| {
            Arc::clone(&provider)
                .batch_api()
                .map(|api| Arc::new(Batcher::new(&cfg.name, b, api)))
        });
        Self {
            limiter: JudgeLimiter::new(&cfg.limits),
            cfg,
            provider,
            stats: JudgeStats::default(),
            batcher,
            abstention_log: AbstentionLog::default(),
            abstentions: Default::default(),
        }
    }

    /// Gives the batch collector a place to remember submitted batches across restarts.
    pub fn attach_batch_ledger(&self, ledger: Arc<dyn batch::BatchLedger>) {
        if let Some(b) = &self.batcher {
            b.attach_ledger(ledger);
        }
    }

    /// Whether calls made now go through the Batch API: a batch judge, called from job
    /// work (`batch::scope`).
    pub fn batching(&self) -> bool {
        self.batcher.is_some() && batch::in_scope()
    }

    /// The deadline of a call the committee makes now under an item deadline: a batched
    /// call is bounded by its batch configuration (`BatchConfig::call_bound`), not by the
    /// item's `request_timeout_ms`, which a batch's hours-long wait would always exceed.
    pub fn call_deadline(&self, item_deadline: Instant) -> Instant {
        match (&self.batcher, self.batching()) {
            (Some(b), true) => item_deadline.max(Instant::now() + b.cfg.call_bound()),
            _ => item_deadline,
        }
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn simulated(&self) -> bool {
        self.provider.simulated()
    }

    /// A real (not simulated) judge with no price configured: its calls cost an
    /// unknown amount, which reports show as `cost_usd: null` with `unpriced: true`
    /// (a simulated judge is free: 0).
    pub fn unpriced(&self) -> bool {
        !self.simulated()
            && self.cfg.price_input_per_mtok == 0.0
            && self.cfg.price_cached_input_per_mtok == 0.0
            && self.cfg.price_output_per_mtok == 0.0
    }

    /// The URL this judge calls, without secrets (`None` when simulated).
    pub fn endpoint(&self) -> Option<&str> {
        self.provider.endpoint()
    }

    /// Counts `ballots` abstained ballots of one call (for run summaries) and logs the
    /// abstention at `warn` with its detail: the first of each reason at once, then at
    /// most one line per `ABSTENTION_LOG_PERIOD` with how many went unlogged since.
    /// Cancellations are expected (shutdown, job cancel) and stay at `debug`.
    pub fn note_abstention(&self, reason: AbstainReason, detail: &str, ballots: u64) {
        {
            let mut tally = self
                .abstentions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let entry = tally
                .entry(reason)
                .or_insert_with(|| (0, detail.to_owned()));
            entry.0 += ballots;
        }
        if reason == AbstainReason::Cancelled {
            tracing::debug!(judge = %self.cfg.name, reason = %reason, detail, "judge abstained");
            return;
        }
        if let Some(suppressed) = self.abstention_log.admit(reason, Instant::now()) {
            tracing::warn!(
                judge = %self.cfg.name,
                model = %self.cfg.model,
                reason = %reason,
                suppressed_since_last = suppressed,
                "judge abstained: {detail}"
            );
        }
    }

    /// Abstained ballots so far by reason, each with the first detail seen.
    pub fn abstentions(&self) -> Vec<(AbstainReason, u64, String)> {
        let tally = self
            .abstentions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tally
            .iter()
            .map(|(r, (n, d))| (*r, *n, d.clone()))
            .collect()
    }

    /// USD cost of `usage` at this judge's prices, times `batch_price_factor` for a
    /// batched call (the provider's batch discount), so it is what the provider bills.
    pub fn cost(&self, usage: Usage) -> f64 {
        let full = cost_of(&self.cfg, usage);
        match (&self.batcher, self.batching()) {
            (Some(b), true) => full * b.cfg.price_factor,
            _ => full,
        }
    }

    /// Runs a call to completion or abstention before `deadline`. Once `cancel` fires
    /// no new request (attempt, retry, re-ask) starts: the call abstains as
    /// `AbstainReason::Cancelled`.
    #[tracing::instrument(name = "judge_call", skip_all, fields(judge = %self.cfg.name, model = %self.cfg.model))]
    pub async fn call(
        &self,
        mut req: ChatRequest,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> CallResult {
        let started = Instant::now();
        let n = match &req.expect {
            Expect::One(_) => 1,
            Expect::Batch(items) => items.len(),
        };
        let mut usage = Usage::default();
        let mut attempts = 0;
        let mut reasks = 0;
        loop {
            let sent = match &self.batcher {
                Some(b) if self.batching() => {
                    self.send_batched(b, &req, &mut attempts, &mut usage, cancel)
                        .await
                }
                _ => {
                    self.send(&req, deadline, &mut attempts, &mut usage, cancel)
                        .await
                }
            };
            let completion = match sent {
                Ok(c) => c,
                Err(reason) => return CallResult::abstain(n, reason, usage, attempts, started),
            };
            if let Some(refusal) = &completion.refusal {
                let detail = format!(
                    "the model refused: {}",
                    super::provider::body_excerpt(refusal.as_bytes())
                );
                return CallResult::abstain(
                    n,
                    (AbstainReason::Refusal, detail),
                    usage,
                    attempts,
                    started,
                );
            }
            let parsed: Result<Vec<Result<Parsed, ParseError>>, ParseError> = match &req.expect {
                Expect::One(scale) => Ok(vec![parse_answer(&completion.text, *scale)]),
                Expect::Batch(items) => {
                    let expected: Vec<(&str, super::Scale)> =
                        items.iter().map(|(id, s)| (id.as_str(), *s)).collect();
                    parse_batch(&completion.text, &expected)
                }
            };
            let first_problem = match &parsed {
                Err(e) => Some(e.clone()),
                Ok(v) => v.iter().find_map(|r| r.as_ref().err().cloned()),
            };
            let Some(problem) = first_problem else {
                let answers = parsed
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| r.map_err(|_| AbstainReason::Unparseable))
                    .collect();
                return CallResult {
                    answers,
                    usage,
                    attempts,
                    latency: started.elapsed(),
                    detail: None,
                };
            };
            if problem.is_refusal() {
                let detail = format!("the model refused: {problem}");
                return CallResult::abstain(
                    n,
                    (AbstainReason::Refusal, detail),
                    usage,
                    attempts,
                    started,
                );
            }
            if reasks >= self.cfg.retry.max_parse_retries {
                // Keep what did parse (batched prompts); the rest abstain as unparseable.
                let answers = match parsed {
                    Ok(v) => v
                        .into_iter()
                        .map(|r| {
                            r.map_err(|e| {
                                if e.is_refusal() {
                                    AbstainReason::Refusal
                                } else {
                                    AbstainReason::Unparseable
                                }
                            })
                        })
                        .collect(),
                    Err(_) => vec![Err(AbstainReason::Unparseable); n],
                };
                let detail = format!("answer not usable after {} re-ask(s): {problem}", reasks);
                return CallResult {
                    answers,
                    usage,
                    attempts,
                    latency: started.elapsed(),
                    detail: Some(detail),
                };
            }
            reasks += 1;
            self.stats.parse_retries.fetch_add(1, Ordering::Relaxed);
            req.messages.push((ChatRole::Assistant, completion.text));
            req.messages.push((
                ChatRole::User,
                format!(
                    "Your answer could not be used: {problem}. Reply again with only the JSON object described above, and nothing else."
                ),
            ));
        }
    }

    /// A provider error in words, with the (redacted) URL where the error does not
    /// already name it; `budget` is the attempt's deadline, for timeouts.
    pub fn describe(&self, e: &ProviderError, budget: Duration) -> String {
        let url = self.endpoint().unwrap_or("the simulated provider");
        match e {
            ProviderError::Timeout => {
                format!("timed out after {} ms ({url})", budget.as_millis())
            }
            ProviderError::RateLimited { .. }
            | ProviderError::Server { .. }
            | ProviderError::Decode(_) => format!("{e} from {url}"),
            ProviderError::Connect(_) | ProviderError::Client { .. } => e.to_string(),
        }
    }

    /// One tiny call (a one-line prompt asking for `{"criteria_met": true}`), one
    /// attempt, no retries, no limiter, no accounting: what `config check --probe`
    /// reports. `Ok` carries the latency and whether the answer parsed; `Err` the
    /// latency and the exact error.
    pub async fn probe(&self) -> Result<(Duration, bool), (Duration, String)> {
        let req = ChatRequest {
            messages: vec![
                (
                    ChatRole::System,
                    "You check whether a statement holds. Answer with JSON only.".to_owned(),
                ),
                (
                    ChatRole::User,
                    "Statement: 2 + 2 = 4. Reply with exactly {\"criteria_met\": true}".to_owned(),
                ),
            ],
            expect: Expect::One(super::Scale::Binary),
            explain: false,
            content_key: [0; 32],
            sample: 0,
            reference: None,
        };
        let started = Instant::now();
        let budget = self.cfg.timeout;
        let outcome = match tokio::time::timeout(budget, self.provider.complete(&req)).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::Timeout),
        };
        let took = started.elapsed();
        match outcome {
            Ok(c) => Ok((
                took,
                c.refusal.is_none() && parse_answer(&c.text, super::Scale::Binary).is_ok(),
            )),
            Err(e) => Err((took, self.describe(&e, budget))),
        }
    }

    /// One request with transport retries. Returns the completion or the abstention
    /// reason once attempts or time run out, or `Cancelled` when `cancel` fires before
    /// a request is sent (waiting for a permit or a backoff included).
    async fn send(
        &self,
        req: &ChatRequest,
        deadline: Instant,
        attempts: &mut u32,
        usage: &mut Usage,
        cancel: &CancellationToken,
    ) -> Result<super::Completion, Abstain> {
        let retry = &self.cfg.retry;
        let describe = |e: &ProviderError, budget: Duration| self.describe(e, budget);
        let out_of_time = |attempts: u32, last: Option<&str>| {
            (
                AbstainReason::Timeout,
                match last {
                    Some(l) => format!(
                        "the item's deadline passed after {attempts} attempt(s); last error: {l}"
                    ),
                    None => "the item's deadline passed before the call could be made".to_owned(),
                },
            )
        };
        let mut last_detail: Option<String> = None;
        let chars: usize = req.messages.iter().map(|(_, t)| t.len()).sum();
        let estimate = estimate_tokens(chars, self.cfg.sampling.max_tokens);
        let mut last = ProviderError::Timeout;
        for attempt in 0..retry.max_attempts {
            let now = Instant::now();
            if cancel.is_cancelled() {
                return Err(cancelled());
            }
            if now >= deadline {
                return Err(out_of_time(*attempts, last_detail.as_deref()));
            }
            *attempts += 1;
            let waits_before = self.limiter.waits.load(Ordering::Relaxed);
            let permit = tokio::select! {
                // A permit and the cancel ready together: the cancel wins, so nothing
                // is sent for a cancelled job.
                biased;
                () = cancel.cancelled() => return Err(cancelled()),
                p = tokio::time::timeout_at(deadline.into(), self.limiter.acquire(estimate)) => p,
            };
            let Ok(_permit) = permit else {
                return Err((
                    AbstainReason::Timeout,
                    "the item's deadline passed while waiting for the judge's rate limit (requests_per_minute / tokens_per_minute / max_concurrency)".to_owned(),
                ));
            };
            if self.limiter.waits.load(Ordering::Relaxed) != waits_before {
                crate::metrics::limiter_wait(&self.cfg.name);
            }
            self.stats.calls.fetch_add(1, Ordering::Relaxed);
            let budget = self
                .cfg
                .timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            let attempt_started = Instant::now();
            crate::metrics::judge_in_flight(&self.cfg.name, 1);
            let outcome = match tokio::time::timeout(budget, self.provider.complete(req)).await {
                Ok(r) => r,
                Err(_) => Err(ProviderError::Timeout),
            };
            crate::metrics::judge_in_flight(&self.cfg.name, -1);
            crate::metrics::judge_call(
                &self.cfg.name,
                match &outcome {
                    Ok(_) => "ok",
                    Err(ProviderError::RateLimited { .. }) => "rate_limited",
                    Err(ProviderError::Server { .. }) => "server_error",
                    Err(ProviderError::Timeout) => "timeout",
                    Err(ProviderError::Connect(_)) => "connect_error",
                    Err(ProviderError::Client { .. }) => "client_error",
                    Err(ProviderError::Decode(_)) => "decode_error",
                },
                attempt_started.elapsed().as_secs_f64(),
            );
            match outcome {
                Ok(c) => {
                    let u = c.usage.unwrap_or(Usage {
                        input_tokens: estimate,
                        ..Usage::default()
                    });
                    self.account(u);
                    usage.add(u);
                    self.limiter
                        .reconcile(estimate, u.input_tokens + u.output_tokens)
                        .await;
                    return Ok(c);
                }
                Err(e) if !e.retryable() => {
                    let detail = describe(&e, budget);
                    return Err(match e {
                        ProviderError::Client { .. } => (AbstainReason::ClientError, detail),
                        _ => (AbstainReason::RetriesExhausted, detail),
                    });
                }
                Err(e) => {
                    last_detail = Some(describe(&e, budget));
                    if attempt + 1 >= retry.max_attempts {
                        last = e;
                        break;
                    }
                    let wait = e.retry_after().unwrap_or_else(|| {
                        full_jitter(retry.backoff_base, retry.backoff_max, attempt)
                    });
                    if Instant::now() + wait >= deadline {
                        return Err(out_of_time(*attempts, last_detail.as_deref()));
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::judge_retry(&self.cfg.name);
                    last = e;
                    tokio::select! {
                        () = cancel.cancelled() => return Err(cancelled()),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        let detail = format!(
            "{} attempt(s) failed; last: {}",
            *attempts,
            last_detail.unwrap_or_else(|| last.to_string())
        );
        Err(match last {
            ProviderError::Timeout => (AbstainReason::Timeout, detail),
            _ => (AbstainReason::RetriesExhausted, detail),
        })
    }

    /// One request through the Batch API, resubmitted in a later batch when its entry
    /// (or its whole batch) failed or expired, up to `batch_max_attempts` batches.
    async fn send_batched(
        &self,
        batcher: &Arc<Batcher>,
        req: &ChatRequest,
        attempts: &mut u32,
        usage: &mut Usage,
        cancel: &CancellationToken,
    ) -> Result<super::Completion, Abstain> {
        let chars: usize = req.messages.iter().map(|(_, t)| t.len()).sum();
        let estimate = estimate_tokens(chars, self.cfg.sampling.max_tokens);
        let mut last_error = String::new();
        let custom_id = batch::custom_id(&self.cfg, req);
        let body = batcher.request_body(req);
        for attempt in 0..batcher.cfg.max_attempts {
            if cancel.is_cancelled() {
                return Err(cancelled());
            }
            if attempt > 0 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                crate::metrics::judge_retry(&self.cfg.name);
            }
            *attempts += 1;
            self.stats.calls.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let entry = batcher.submit(custom_id.clone(), body.clone()).await;
            crate::metrics::judge_call(
                &self.cfg.name,
                match &entry {
                    Ok(_) => "ok",
                    Err(e) if e.retryable => "batch_failed",
                    Err(_) => "client_error",
                },
                started.elapsed().as_secs_f64(),
            );
            match entry {
                Ok(c) => {
                    let u = c.usage.unwrap_or(Usage {
                        input_tokens: estimate,
                        ..Usage::default()
                    });
                    self.account(u);
                    usage.add(u);
                    return Ok(c);
                }
                Err(e) if !e.retryable => {
                    tracing::debug!(judge = %self.cfg.name, error = %e.message, "batch entry failed for good");
                    return Err((AbstainReason::ClientError, e.message));
                }
                Err(e) => {
                    tracing::debug!(judge = %self.cfg.name, attempt, error = %e.message, "batch entry failed; retrying in a later batch");
                    last_error = e.message;
                }
            }
        }
        Err((
            AbstainReason::BatchFailed,
            format!(
                "{} batch(es) failed; last: {last_error}",
                batcher.cfg.max_attempts
            ),
        ))
    }

    fn account(&self, u: Usage) {
        crate::metrics::judge_usage(&self.cfg.name, u, self.cost(u));
        self.stats
            .input_tokens
            .fetch_add(u.input_tokens, Ordering::Relaxed);
        self.stats
            .output_tokens
            .fetch_add(u.output_tokens, Ordering::Relaxed);
        self.stats
            .cached_input_tokens
            .fetch_add(u.cached_input_tokens, Ordering::Relaxed);
        self.stats
            .reasoning_tokens
            .fetch_add(u.reasoning_tokens, Ordering::Relaxed);
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "non-negative micro-dollars"
        )]
        let micro = (self.cost(u) * 1e6).round() as u64;
        self.stats
            .cost_micro_usd
            .fetch_add(micro, Ordering::Relaxed);
    }
}

/// USD cost of `usage` at `cfg`'s prices, as an OpenAI-style provider bills it: uncached
/// input at the input price, cached input at the cached price, and every output token
/// (reasoning included, since `completion_tokens` already counts it) at the output price.
pub fn cost_of(cfg: &JudgeConfig, usage: Usage) -> f64 {
    let cached = usage.cached_input_tokens.min(usage.input_tokens);
    #[expect(
        clippy::cast_precision_loss,
        reason = "token counts are far below 2^52"
    )]
    let (fresh, cached, o) = (
        (usage.input_tokens - cached) as f64,
        cached as f64,
        usage.output_tokens as f64,
    );
    (fresh * cfg.price_input_per_mtok
        + cached * cfg.price_cached_input_per_mtok
        + o * cfg.price_output_per_mtok)
        / 1e6
}

/// Full-jitter backoff: uniform in [0, min(max, base * 2^attempt)].
pub fn full_jitter(base: Duration, max: Duration, attempt: u32) -> Duration {
    let cap = base
        .saturating_mul(2u32.saturating_pow(attempt.min(20)))
        .min(max);
    let ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstention_log_lines_are_rate_limited_per_reason() {
        let log = AbstentionLog::default();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // (reason, seconds after t0, expected: logged with this many suppressed)
        let rows = [
            (AbstainReason::ClientError, 0, Some(0)),
            (AbstainReason::ClientError, 1, None),
            (AbstainReason::ClientError, 30, None),
            (AbstainReason::Timeout, 30, Some(0)),
            (AbstainReason::ClientError, 59, None),
            (AbstainReason::ClientError, 60, Some(3)),
            (AbstainReason::ClientError, 61, None),
            (AbstainReason::ClientError, 121, Some(1)),
            (AbstainReason::Timeout, 31, None),
        ];
        for (reason, at, want) in rows {
            assert_eq!(log.admit(reason, t0 + s(at)), want, "{reason} at {at}s");
        }
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        for attempt in 0..30 {
            let d = full_jitter(Duration::from_millis(100), Duration::from_secs(2), attempt);
            assert!(d <= Duration::from_secs(2));
            assert!(d <= Duration::from_millis(100) * 2u32.pow(attempt.min(10)));
        }
    }
}
