//! Verdict cache: moka (bounded by bytes, with TTL) in front of an optional tier shared
//! by every replica (`SharedTier`, Redis) and an optional persistent tier (the store).
//! Owns cache-key construction. Concurrent identical lookups coalesce into one provider
//! call: in a process through moka's `or_try_insert_with`, across replicas through a
//! short lease per key in the shared tier (one leader calls, the others poll and take
//! over if the lease lapses; the first value written wins). Abstentions and errors are
//! never cached: the init future returns `Err` and nothing is stored. Must not know
//! Redis commands (that is `crate::redis`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use crate::limits::SharedError;

use crate::config::{
    CacheConfig, JudgeConfig, LimitsConfig, OpenAiConfig, ProviderConfig, RetryConfig, Sampling,
    SimConfig,
};
use crate::item::{Case, Message};
#[cfg(test)]
use crate::judge::AbstainReason;
use crate::judge::{Parsed, Usage};
use crate::rubric::{Criterion, CriterionKind, Verdict};

pub type CacheKey = [u8; 32];

/// What a successful judge call produced, as cached and stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAnswer {
    /// One per criterion asked (one for per-criterion prompts).
    pub answers: Vec<Parsed>,
    pub usage: Usage,
    pub template_hash: String,
}

impl CachedAnswer {
    /// The persisted form (second tier). Versioned by the `v` key.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "v": 1,
            "answers": self.answers.iter().map(|a| serde_json::json!({
                "verdict": a.verdict.to_json(),
                "explanation": a.explanation,
            })).collect::<Vec<_>>(),
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
            "template_hash": self.template_hash,
        })
        .to_string()
    }

    /// Reads the persisted form; `None` for anything unreadable (treated as a miss).
    pub fn from_json(text: &str) -> Option<CachedAnswer> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        if v.get("v")?.as_u64()? != 1 {
            return None;
        }
        let answers = v
            .get("answers")?
            .as_array()?
            .iter()
            .map(|a| {
                Some(Parsed {
                    verdict: Verdict::from_json(a.get("verdict")?).ok()?,
                    explanation: a.get("explanation")?.as_str()?.to_owned(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(CachedAnswer {
            answers,
            usage: Usage {
                input_tokens: v.get("input_tokens")?.as_u64()?,
                output_tokens: v.get("output_tokens")?.as_u64()?,
                ..Usage::default()
            },
            template_hash: v.get("template_hash")?.as_str()?.to_owned(),
        })
    }

    /// Approximate resident bytes of one cache entry, so `max_bytes` bounds real
    /// memory: the value and its heap parts, the key, and moka's per-entry bookkeeping
    /// (hash-map slot, access-order and expiry deque nodes, entry info), measured at
    /// about 300 bytes.
    fn weight(&self) -> u32 {
        const ENTRY_OVERHEAD: usize = 300;
        let answers: usize = self
            .answers
            .iter()
            .map(|a| std::mem::size_of::<Parsed>() + a.explanation.capacity())
            .sum();
        let total = ENTRY_OVERHEAD
            + std::mem::size_of::<CacheKey>()
            + std::mem::size_of::<CachedAnswer>()
            + answers
            + self.template_hash.capacity();
        u32::try_from(total).unwrap_or(u32::MAX)
    }
}

/// A persistent tier under the in-memory cache (the store implements it), so a restart
/// never pays twice for the same judge call.
#[async_trait::async_trait]
pub trait SecondTier: Send + Sync {
    async fn get(&self, key: &CacheKey) -> Option<CachedAnswer>;
    async fn put(&self, key: &CacheKey, value: &CachedAnswer);
}

/// A tier every replica sees (Redis), which also hosts the cross-replica single-flight
/// lease of each key. Every method may fail (the server is unreachable): the cache then
/// behaves as if the tier were absent.
#[async_trait::async_trait]
pub trait SharedTier: Send + Sync {
    async fn get(&self, key: &CacheKey) -> Result<Option<CachedAnswer>, SharedError>;
    /// Stores `value` unless the key already holds one. Returns the value already
    /// there when another writer was first (`None` when this one was stored), so every
    /// replica ends up with one verdict per key.
    async fn put_first(
        &self,
        key: &CacheKey,
        value: &CachedAnswer,
    ) -> Result<Option<CachedAnswer>, SharedError>;
    /// Takes the key's lease for `ttl` if nobody holds it; true when `token` holds it.
    async fn lease(&self, key: &CacheKey, token: &str, ttl: Duration) -> Result<bool, SharedError>;
    /// Extends the lease if `token` still holds it.
    async fn renew(&self, key: &CacheKey, token: &str, ttl: Duration) -> Result<bool, SharedError>;
    /// Drops the lease if `token` still holds it (never another holder's).
    async fn release(&self, key: &CacheKey, token: &str) -> Result<(), SharedError>;
    /// Whether the tier answers now (for `/readyz`).
    async fn probe(&self) -> SharedStatus {
        SharedStatus {
            up: true,
            last_error: None,
        }
    }
}

/// The shared tier's health as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedStatus {
    pub up: bool,
    /// The last failure while it is down.
    pub last_error: Option<String>,
}

/// How the cross-replica single flight is paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlightConfig {
    /// How long a lease lasts without renewal: a crashed leader's waiters take over
    /// after at most this long. The leader renews every third of it while it calls.
    pub lease: Duration,
    /// The first poll interval of a waiter; it doubles up to `max_poll`.
    pub poll: Duration,
    pub max_poll: Duration,
}

impl Default for FlightConfig {
    fn default() -> Self {
        FlightConfig {
            lease: Duration::from_secs(5),
            poll: Duration::from_millis(10),
            max_poll: Duration::from_millis(200),
        }
    }
}

/// An in-process `SharedTier` with the same contract as Redis (values, first writer
/// wins, expiring leases held by a token): several `VerdictCache`s in one process share
/// it as replicas share Redis, which the conformance suite runs on.
#[derive(Default)]
pub struct LocalShared {
    values: Mutex<HashMap<CacheKey, String>>,
    leases: Mutex<HashMap<CacheKey, (String, Instant)>>,
}

impl LocalShared {
    fn poisoned() -> SharedError {
        SharedError("local shared tier lock poisoned".into())
    }
}

#[async_trait::async_trait]
impl SharedTier for LocalShared {
    async fn get(&self, key: &CacheKey) -> Result<Option<CachedAnswer>, SharedError> {
        let v = self.values.lock().map_err(|_| Self::poisoned())?;
        Ok(v.get(key).and_then(|t| CachedAnswer::from_json(t)))
    }

    async fn put_first(
        &self,
        key: &CacheKey,
        value: &CachedAnswer,
    ) -> Result<Option<CachedAnswer>, SharedError> {
        let mut v = self.values.lock().map_err(|_| Self::poisoned())?;
        match v.get(key) {
            Some(t) => Ok(CachedAnswer::from_json(t)),
            None => {
                v.insert(*key, value.to_json());
                Ok(None)
            }
        }
    }

    async fn lease(&self, key: &CacheKey, token: &str, ttl: Duration) -> Result<bool, SharedError> {
        let mut l = self.leases.lock().map_err(|_| Self::poisoned())?;
        let now = Instant::now();
        match l.get(key) {
            Some((holder, until)) if *until > now => Ok(holder == token),
            _ => {
                l.insert(*key, (token.to_owned(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn renew(&self, key: &CacheKey, token: &str, ttl: Duration) -> Result<bool, SharedError> {
        let mut l = self.leases.lock().map_err(|_| Self::poisoned())?;
        match l.get_mut(key) {
            Some((holder, until)) if holder == token && *until > Instant::now() => {
                *until = Instant::now() + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, key: &CacheKey, token: &str) -> Result<(), SharedError> {
        let mut l = self.leases.lock().map_err(|_| Self::poisoned())?;
        if l.get(key).is_some_and(|(holder, _)| holder == token) {
            l.remove(key);
        }
        Ok(())
    }
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Memory,
    /// The tier shared by the replicas (another replica, or an earlier life, paid).
    Shared,
    Persistent,
    Upstream,
}

#[derive(Debug, Default)]
pub struct CacheStats {
    pub memory_hits: AtomicU64,
    pub shared_hits: AtomicU64,
    pub persistent_hits: AtomicU64,
    pub misses: AtomicU64,
}

pub struct VerdictCache {
    mem: moka::future::Cache<CacheKey, Arc<CachedAnswer>>,
    second: Option<Arc<dyn SecondTier>>,
    /// Set once at start-up when Redis is configured.
    shared: OnceLock<(Arc<dyn SharedTier>, FlightConfig)>,
    pub stats: CacheStats,
}

/// What the cross-replica flight decided for a key this process missed.
enum Flight {
    /// This caller holds the lease: it calls the judge. `took_over` when it waited
    /// for another holder first.
    Lead { took_over: bool },
    /// Another replica's verdict arrived in the shared tier.
    Followed(CachedAnswer),
    /// The shared tier failed: call locally (the cache degrades to this process).
    Local,
}

impl VerdictCache {
    pub fn new(cfg: &CacheConfig, second: Option<Arc<dyn SecondTier>>) -> Self {
        let mem = moka::future::Cache::builder()
            .max_capacity(cfg.max_bytes)
            .weigher(|_k: &CacheKey, v: &Arc<CachedAnswer>| v.weight())
            .time_to_live(cfg.ttl)
            .build();
        Self {
            mem,
            second,
            shared: OnceLock::new(),
            stats: CacheStats::default(),
        }
    }

    /// From now on misses consult `tier` and coalesce across every cache sharing it
    /// (set once, at start-up). Returns false if a shared tier was already set.
    pub fn share(&self, tier: Arc<dyn SharedTier>, flight: FlightConfig) -> bool {
        self.shared.set((tier, flight)).is_ok()
    }

    /// The shared tier's health, asked now; `None` without one.
    pub async fn shared_status(&self) -> Option<SharedStatus> {
        match self.shared.get() {
            Some((t, _)) => Some(t.probe().await),
            None => None,
        }
    }

    /// Waits for the key's lease or for another holder's verdict.
    async fn decide(
        &self,
        tier: &dyn SharedTier,
        f: FlightConfig,
        key: &CacheKey,
        token: &str,
    ) -> Flight {
        let mut poll = f.poll;
        let mut waited = false;
        loop {
            match tier.lease(key, token, f.lease).await {
                Ok(true) => return Flight::Lead { took_over: waited },
                Ok(false) => {}
                Err(e) => return Self::degrade("lease", &e),
            }
            // Another replica (or cache) holds the lease: poll for its verdict. A
            // holder that crashes stops renewing, its lease lapses, and the `lease`
            // above takes over.
            waited = true;
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(f.max_poll);
            match tier.get(key).await {
                Ok(Some(v)) => return Flight::Followed(v),
                Ok(None) => {}
                Err(e) => return Self::degrade("poll", &e),
            }
        }
    }

    fn degrade(what: &str, e: &SharedError) -> Flight {
        tracing::debug!(error = %e, what, "shared cache unavailable; calling locally");
        crate::metrics::redis_fallback("cache");
        Flight::Local
    }

    /// Runs `call` as the lease holder, renewing the lease every third of its length
    /// until the call ends, then publishes the verdict (first writer wins) and drops
    /// the lease.
    async fn lead<F, E>(
        tier: &dyn SharedTier,
        f: FlightConfig,
        key: &CacheKey,
        token: &str,
        call: F,
    ) -> Result<CachedAnswer, E>
    where
        F: Future<Output = Result<CachedAnswer, E>>,
    {
        let mut call = std::pin::pin!(call);
        let mut renew = tokio::time::interval_at(
            tokio::time::Instant::now() + f.lease / 3,
            (f.lease / 3).max(Duration::from_millis(1)),
        );
        let result = loop {
            tokio::select! {
                r = &mut call => break r,
                _ = renew.tick() => {
                    if let Err(e) = tier.renew(key, token, f.lease).await {
                        tracing::debug!(error = %e, "cache lease renewal failed");
                    }
                }
            }
        };
        let result = match result {
            Ok(v) => match tier.put_first(key, &v).await {
                // Someone wrote first (a holder whose lease lapsed under a slow call):
                // everyone takes that verdict.
                Ok(Some(winner)) => Ok(winner),
                Ok(None) => Ok(v),
                Err(e) => {
                    tracing::debug!(error = %e, "shared cache write failed");
                    Ok(v)
                }
            },
            Err(e) => Err(e),
        };
        // Dropped on failure too, so a waiter takes over at once instead of after the
        // lease; failures are never cached.
        if let Err(e) = tier.release(key, token).await {
            tracing::debug!(error = %e, "cache lease release failed");
        }
        result
    }

    /// Returns the cached answer, or runs `call` once for all concurrent callers of the
    /// same key. An `Err` from `call` (an abstention, or a partly failed batch) reaches
    /// every waiting caller and is not stored.
    pub async fn get_or_call<F, E>(
        &self,
        key: CacheKey,
        call: F,
    ) -> (Result<Arc<CachedAnswer>, Arc<E>>, Source)
    where
        F: Future<Output = Result<CachedAnswer, E>>,
        E: Send + Sync + 'static,
    {
        // Memory first, then the persistent tier, both outside the single-flight
        // section: no storage IO runs inside moka's init future, so a slow store can
        // never hold a key's waiters (or a pool connection) while another waits.
        if let Some(hit) = self.mem.get(&key).await {
            crate::metrics::cache_lookup("memory", "hit");
            self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
            return (Ok(hit), Source::Memory);
        }
        crate::metrics::cache_lookup("memory", "miss");
        let shared = self.shared.get();
        if let Some((tier, _)) = shared {
            match tier.get(&key).await {
                Ok(Some(hit)) => {
                    crate::metrics::cache_lookup("shared", "hit");
                    self.stats.shared_hits.fetch_add(1, Ordering::Relaxed);
                    let hit = Arc::new(hit);
                    self.mem.insert(key, Arc::clone(&hit)).await;
                    return (Ok(hit), Source::Shared);
                }
                Ok(None) => crate::metrics::cache_lookup("shared", "miss"),
                Err(e) => {
                    tracing::debug!(error = %e, "shared cache read failed; treating as a miss");
                    crate::metrics::redis_fallback("cache");
                }
            }
        }
        if let Some(second) = &self.second {
            if let Some(hit) = second.get(&key).await {
                crate::metrics::cache_lookup("persistent", "hit");
                self.stats.persistent_hits.fetch_add(1, Ordering::Relaxed);
                if let Some((tier, _)) = shared {
                    // Other replicas need not reach their own stores for it.
                    if let Err(e) = tier.put_first(&key, &hit).await {
                        tracing::debug!(error = %e, "shared cache write failed");
                    }
                }
                let hit = Arc::new(hit);
                self.mem.insert(key, Arc::clone(&hit)).await;
                return (Ok(hit), Source::Persistent);
            }
            crate::metrics::cache_lookup("persistent", "miss");
        }
        // Which way the fresh value came, for the one caller that ran `init`.
        let followed = std::sync::atomic::AtomicBool::new(false);
        let init = async {
            let Some((tier, f)) = shared else {
                return call.await.map(Arc::new);
            };
            let token = uuid::Uuid::now_v7().to_string();
            match self.decide(&**tier, *f, &key, &token).await {
                Flight::Lead { took_over } => {
                    crate::metrics::cache_flight(if took_over { "takeover" } else { "leader" });
                    Self::lead(&**tier, *f, &key, &token, call)
                        .await
                        .map(Arc::new)
                }
                Flight::Followed(v) => {
                    crate::metrics::cache_flight("follower");
                    followed.store(true, Ordering::Relaxed);
                    Ok(Arc::new(v))
                }
                Flight::Local => call.await.map(Arc::new),
            }
        };
        match self.mem.entry(key).or_try_insert_with(init).await {
            Ok(e) if !e.is_fresh() => {
                // Coalesced with a concurrent identical call.
                self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
                (Ok(e.into_value()), Source::Memory)
            }
            Ok(e) => {
                let value = e.into_value();
                if let Some(second) = &self.second {
                    second.put(&key, &value).await;
                }
                if followed.load(Ordering::Relaxed) {
                    self.stats.shared_hits.fetch_add(1, Ordering::Relaxed);
                    (Ok(value), Source::Shared)
                } else {
                    self.stats.misses.fetch_add(1, Ordering::Relaxed);
                    (Ok(value), Source::Upstream)
                }
            }
            Err(failure) => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                (Err(failure), Source::Upstream)
            }
        }
    }

    pub fn entry_count(&self) -> u64 {
        self.mem.entry_count()
    }
}

/// Everything that determines a judge's answer. Built by destructuring, so a new field
/// in any of these types is a compile error here until it is either hashed or
/// explicitly declared irrelevant.
pub struct KeyInputs<'a> {
    /// The judge's whole configuration; `cache_key` decides field by field what counts.
    pub judge: &'a JudgeConfig,
    pub template_hash: &'a str,
    pub case: &'a Case,
    pub response: &'a str,
    pub criteria: &'a [&'a Criterion],
    pub sample: u32,
    /// Calibration labels (only the simulated provider reads them).
    pub reference: Option<&'a [Option<Verdict>]>,
}

/// Header names that carry credentials. Like `api_key` they say who is calling, not
/// which model answers, so they stay out of the key (and their secret values out of
/// the hasher).
const CREDENTIAL_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "api-key",
    "x-api-key",
    "cookie",
];

fn is_credential_header(name: &str) -> bool {
    CREDENTIAL_HEADERS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name.trim()))
}

/// blake3 over length-prefixed parts, each followed by a separator.
struct KeyHasher(blake3::Hasher);

impl KeyHasher {
    fn part(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self.0.update(b"\x1e");
    }

    fn count(&mut self, n: usize) {
        self.part(&(n as u64).to_le_bytes());
    }

    /// Exact bits, so 0.1 and 0.1000000001 never share a key.
    fn f64(&mut self, x: f64) {
        self.part(&x.to_bits().to_le_bytes());
    }

    /// A tag part, then the value's part when present: `None` and every `Some` differ.
    fn opt<const N: usize>(&mut self, bytes: Option<[u8; N]>) {
        match bytes {
            None => self.part(b"none"),
            Some(b) => {
                self.part(b"some");
                self.part(&b);
            }
        }
    }

    /// The judge's identity: everything in its configuration that can change a
    /// verdict. Every field is named, so a new one is a compile error until it is
    /// hashed here or ignored with a reason.
    fn judge(&mut self, judge: &JudgeConfig) {
        let JudgeConfig {
            // The name never reaches the provider, but two committee members configured
            // alike (the same model sampled twice at temperature > 0) are meant to be
            // independent ballots: sharing one cached answer would count it twice. So
            // the name is part of the identity; renaming a judge starts its cache anew.
            name,
            model,
            provider,
            sampling,
            // Rate and concurrency limits decide when a call is sent, never its answer.
            limits:
                LimitsConfig {
                    requests_per_minute: _,
                    tokens_per_minute: _,
                    max_concurrency: _,
                },
            // Retries and re-asks decide whether an answer arrives, not which answer the
            // model gives to this prompt; the failures they end in are never cached.
            retry:
                RetryConfig {
                    max_attempts: _,
                    max_parse_retries: _,
                    backoff_base: _,
                    backoff_max: _,
                },
            // A deadline ends a call as an abstention (never cached), not another verdict.
            timeout: _,
            // Prices only turn token counts into cost.
            price_input_per_mtok: _,
            price_cached_input_per_mtok: _,
            price_output_per_mtok: _,
            // The Batch API delivers the same chat completion as a live call; only how
            // it is sent and billed differs.
            batch: _,
        } = judge;
        self.part(b"judge");
        self.part(name.as_bytes());
        self.part(model.as_bytes());
        match provider {
            ProviderConfig::OpenAi(OpenAiConfig {
                base_url,
                // The name of the variable holding the key: who is calling, not which
                // model answers (base_url, model and headers say that). Keeping it out
                // means renaming the variable or rotating the key keeps the cache.
                api_key_env: _,
                // A secret: never hashed, raw or otherwise, for the same reason.
                api_key: _,
                headers,
                structured_output,
            }) => {
                self.part(b"openai");
                self.part(base_url.as_bytes());
                // `response_format` changes what the model may answer.
                self.part(&[u8::from(*structured_output)]);
                let sent: Vec<&(String, String)> = headers
                    .iter()
                    .filter(|(name, _)| !is_credential_header(name))
                    .collect();
                self.count(sent.len());
                for (name, value) in sent {
                    self.part(name.as_bytes());
                    self.part(value.as_bytes());
                }
            }
            ProviderConfig::Sim(SimConfig {
                seed,
                // Latency and injected faults decide when and whether an answer
                // arrives (faults end as abstentions or retries, never cached), not
                // which verdict it carries.
                latency_ms: _,
                latency_jitter_ms: _,
                accuracy,
                met_rate,
                rate_429: _,
                retry_after_ms: _,
                rate_500: _,
                rate_timeout: _,
                rate_malformed: _,
                rate_refusal: _,
            }) => {
                self.part(b"sim");
                self.part(&seed.to_le_bytes());
                self.f64(*accuracy);
                self.f64(*met_rate);
            }
        }
        // Every sampling parameter is sent to the model.
        let Sampling {
            temperature,
            top_p,
            max_tokens,
            seed,
        } = sampling;
        self.opt(temperature.map(|t| t.to_bits().to_le_bytes()));
        self.opt(top_p.map(|t| t.to_bits().to_le_bytes()));
        self.opt(max_tokens.map(u32::to_le_bytes));
        self.opt(seed.map(i64::to_le_bytes));
    }
}

/// blake3 over the destructured inputs with a field separator after each part.
pub fn cache_key(k: &KeyInputs<'_>) -> CacheKey {
    let KeyInputs {
        judge,
        template_hash,
        case,
        response,
        criteria,
        sample,
        reference,
    } = k;
    // The case id, tags and reference answers never reach the prompt.
    let Case {
        id: _,
        conversation,
        tags: _,
        reference_responses: _,
    } = case;
    let mut h = KeyHasher(blake3::Hasher::new());
    // v2: the judge part is the destructured `JudgeConfig` (v1 was a display string
    // that left out headers and structured output).
    h.part(b"tribunal.cache.v2");
    h.judge(judge);
    h.part(template_hash.as_bytes());
    h.count(conversation.len());
    for Message { role, content } in conversation {
        h.part(role.as_str().as_bytes());
        h.part(content.as_bytes());
    }
    h.part(response.as_bytes());
    h.count(criteria.len());
    for c in criteria.iter() {
        let Criterion {
            id,
            text,
            kind,
            tags: _,
            veto: _,
            weight: _,
        } = c;
        h.part(id.0.as_bytes());
        h.part(text.as_bytes());
        let kind = match kind {
            CriterionKind::Points(p) => format!("points:{p}"),
            CriterionKind::Tier(t) => format!("tier:{}", t.as_str()),
        };
        h.part(kind.as_bytes());
    }
    h.part(&sample.to_le_bytes());
    match reference {
        None => h.part(b"no-reference"),
        Some(r) => h.part(format!("{r:?}").as_bytes()),
    }
    *h.0.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::Role;
    use crate::rubric::CriterionId;

    fn case() -> Case {
        Case {
            id: "a".into(),
            conversation: vec![Message {
                role: Role::User,
                content: "hi".into(),
            }],
            tags: vec![],
            reference_responses: vec![],
        }
    }

    fn crit(text: &str) -> Criterion {
        Criterion {
            id: CriterionId("c".into()),
            text: text.into(),
            kind: CriterionKind::Points(5),
            tags: vec![],
            veto: false,
            weight: None,
        }
    }

    fn openai_judge() -> JudgeConfig {
        JudgeConfig {
            name: "a".into(),
            model: "gpt-x".into(),
            provider: ProviderConfig::OpenAi(OpenAiConfig {
                base_url: "https://llm.example/v1".into(),
                api_key_env: Some("JUDGE_KEY".into()),
                api_key: Some(secrecy::SecretString::from("sk-one")),
                headers: vec![
                    ("Authorization".into(), "Bearer sk-header-one".into()),
                    ("OpenAI-Organization".into(), "org-1".into()),
                    ("X-Route".into(), "eu".into()),
                ],
                structured_output: false,
            }),
            sampling: Sampling {
                temperature: Some(0.0),
                top_p: None,
                max_tokens: Some(512),
                seed: None,
            },
            limits: LimitsConfig {
                requests_per_minute: Some(60),
                tokens_per_minute: None,
                max_concurrency: 4,
            },
            retry: RetryConfig {
                max_attempts: 3,
                max_parse_retries: 1,
                backoff_base: std::time::Duration::from_millis(100),
                backoff_max: std::time::Duration::from_secs(5),
            },
            timeout: std::time::Duration::from_secs(30),
            price_input_per_mtok: 1.0,
            price_cached_input_per_mtok: 0.25,
            price_output_per_mtok: 2.0,
            batch: None,
        }
    }

    fn sim_judge() -> JudgeConfig {
        JudgeConfig {
            provider: ProviderConfig::Sim(SimConfig::default()),
            ..openai_judge()
        }
    }

    fn openai(j: &mut JudgeConfig) -> &mut OpenAiConfig {
        match &mut j.provider {
            ProviderConfig::OpenAi(o) => o,
            ProviderConfig::Sim(_) => panic!("not an openai judge"),
        }
    }

    fn sim(j: &mut JudgeConfig) -> &mut SimConfig {
        match &mut j.provider {
            ProviderConfig::Sim(s) => s,
            ProviderConfig::OpenAi(_) => panic!("not a sim judge"),
        }
    }

    fn header<'a>(j: &'a mut JudgeConfig, name: &str) -> &'a mut String {
        let h = openai(j).headers.iter_mut().find(|(n, _)| n == name);
        &mut h.unwrap_or_else(|| panic!("no header {name}")).1
    }

    fn key_for(judge: &JudgeConfig) -> CacheKey {
        let c = crit("x");
        cache_key(&KeyInputs {
            judge,
            template_hash: "t",
            case: &case(),
            response: "r",
            criteria: &[&c],
            sample: 0,
            reference: None,
        })
    }

    type Edit = fn(&mut JudgeConfig);

    /// Applies each edit to `base` alone: `(name, true, _)` must give a key of its own
    /// (distinct from the base and from every other such edit), `(name, false, _)` the
    /// base key.
    fn check_judge_edits(base: &JudgeConfig, cases: &[(&str, bool, Edit)]) {
        let k0 = key_for(base);
        let mut seen = std::collections::HashMap::from([(k0, "base")]);
        for (name, changes, edit) in cases {
            let mut j = base.clone();
            edit(&mut j);
            let k = key_for(&j);
            if *changes {
                if let Some(other) = seen.insert(k, name) {
                    panic!("{name}: same key as {other}");
                }
            } else {
                assert_eq!(k, k0, "{name}: must not change the key");
            }
        }
    }

    #[test]
    fn openai_judge_identity_is_every_field_that_can_change_a_verdict() {
        check_judge_edits(
            &openai_judge(),
            &[
                ("model", true, |j| j.model = "gpt-y".into()),
                ("base_url", true, |j| {
                    openai(j).base_url = "https://other.example/v1".into();
                }),
                ("structured_output", true, |j| {
                    openai(j).structured_output = true;
                }),
                ("header OpenAI-Organization", true, |j| {
                    *header(j, "OpenAI-Organization") = "org-2".into();
                }),
                ("header X-Route", true, |j| {
                    *header(j, "X-Route") = "us".into()
                }),
                ("header renamed", true, |j| {
                    openai(j).headers[2].0 = "X-Region".into();
                }),
                ("header boundary moved", true, |j| {
                    openai(j).headers[2] = ("X-Routee".into(), "u".into());
                }),
                ("header added", true, |j| {
                    openai(j).headers.push(("X-Tier".into(), "gold".into()));
                }),
                ("header removed", true, |j| {
                    openai(j).headers.remove(1);
                }),
                ("temperature", true, |j| j.sampling.temperature = Some(0.7)),
                ("temperature unset", true, |j| j.sampling.temperature = None),
                ("top_p", true, |j| j.sampling.top_p = Some(0.9)),
                ("max_tokens", true, |j| j.sampling.max_tokens = Some(256)),
                ("seed", true, |j| j.sampling.seed = Some(7)),
                ("provider", true, |j| {
                    j.provider = ProviderConfig::Sim(SimConfig::default());
                }),
                // Excluded: labels, pacing, cost and credentials.
                ("name", true, |j| j.name = "b".into()),
                ("requests_per_minute", false, |j| {
                    j.limits.requests_per_minute = None;
                }),
                ("tokens_per_minute", false, |j| {
                    j.limits.tokens_per_minute = Some(1000);
                }),
                ("max_concurrency", false, |j| j.limits.max_concurrency = 1),
                ("max_attempts", false, |j| j.retry.max_attempts = 9),
                ("max_parse_retries", false, |j| {
                    j.retry.max_parse_retries = 0
                }),
                ("backoff_base", false, |j| {
                    j.retry.backoff_base = std::time::Duration::from_millis(1);
                }),
                ("backoff_max", false, |j| {
                    j.retry.backoff_max = std::time::Duration::from_secs(60);
                }),
                ("timeout", false, |j| {
                    j.timeout = std::time::Duration::from_secs(1);
                }),
                ("price_input_per_mtok", false, |j| {
                    j.price_input_per_mtok = 9.0
                }),
                ("price_output_per_mtok", false, |j| {
                    j.price_output_per_mtok = 9.0;
                }),
                ("api_key_env", false, |j| {
                    openai(j).api_key_env = Some("OTHER_KEY".into());
                }),
                ("api_key", false, |j| {
                    openai(j).api_key = Some(secrecy::SecretString::from("sk-two"));
                }),
                ("header Authorization", false, |j| {
                    *header(j, "Authorization") = "Bearer sk-header-two".into();
                }),
                ("credential header added", false, |j| {
                    openai(j)
                        .headers
                        .push(("x-api-key".into(), "sk-three".into()));
                }),
            ],
        );
    }

    #[test]
    fn sim_judge_identity_is_what_draws_its_verdicts() {
        check_judge_edits(
            &sim_judge(),
            &[
                ("seed", true, |j| sim(j).seed = 1),
                ("accuracy", true, |j| sim(j).accuracy = 0.8),
                ("met_rate", true, |j| sim(j).met_rate = 0.4),
                ("model", true, |j| j.model = "sim-y".into()),
                ("temperature", true, |j| j.sampling.temperature = Some(1.0)),
                // Latency and faults decide when and whether, never which.
                ("latency_ms", false, |j| sim(j).latency_ms = 50),
                ("latency_jitter_ms", false, |j| sim(j).latency_jitter_ms = 5),
                ("rate_429", false, |j| sim(j).rate_429 = 0.1),
                ("retry_after_ms", false, |j| sim(j).retry_after_ms = 10),
                ("rate_500", false, |j| sim(j).rate_500 = 0.1),
                ("rate_timeout", false, |j| sim(j).rate_timeout = 0.1),
                ("rate_malformed", false, |j| sim(j).rate_malformed = 0.1),
                ("rate_refusal", false, |j| sim(j).rate_refusal = 0.1),
                ("name", true, |j| j.name = "b".into()),
            ],
        );
    }

    #[test]
    fn key_covers_every_input_that_reaches_the_prompt() {
        let judge = openai_judge();
        let c = crit("x");
        let cs = [&c];
        let base = KeyInputs {
            judge: &judge,
            template_hash: "t",
            case: &case(),
            response: "r",
            criteria: &cs,
            sample: 0,
            reference: None,
        };
        let k0 = cache_key(&base);
        let mut other_case = case();
        other_case.id = "different id, same prompt".into();
        assert_eq!(
            k0,
            cache_key(&KeyInputs {
                case: &other_case,
                ..base
            })
        );
        let mut judge2 = openai_judge();
        judge2.model = "gpt-y".into();
        let c2 = crit("y");
        let cs2 = [&c2];
        let mut case3 = case();
        case3.conversation[0].content = "ho".into();
        let labels = [Some(Verdict::Met(true))];
        for changed in [
            KeyInputs {
                judge: &judge2,
                ..base
            },
            KeyInputs {
                template_hash: "u",
                ..base
            },
            KeyInputs {
                case: &case3,
                ..base
            },
            KeyInputs {
                response: "r2",
                ..base
            },
            KeyInputs {
                criteria: &cs2,
                ..base
            },
            KeyInputs { sample: 1, ..base },
            KeyInputs {
                reference: Some(&labels),
                ..base
            },
        ] {
            assert_ne!(k0, cache_key(&changed));
        }
    }

    #[tokio::test]
    async fn abstentions_are_not_cached_and_calls_coalesce() {
        let cache = Arc::new(VerdictCache::new(
            &CacheConfig {
                max_bytes: 1 << 20,
                ttl: std::time::Duration::from_secs(60),
            },
            None,
        ));
        let calls = Arc::new(AtomicU64::new(0));
        let (r, src) = cache
            .get_or_call([1; 32], async { Err(AbstainReason::Timeout) })
            .await;
        assert_eq!(
            (r.err().map(|e| *e), src),
            (Some(AbstainReason::Timeout), Source::Upstream)
        );
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let cache = Arc::clone(&cache);
            let calls = Arc::clone(&calls);
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_call::<_, AbstainReason>([1; 32], async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        Ok(CachedAnswer {
                            answers: vec![],
                            usage: Usage::default(),
                            template_hash: "t".into(),
                        })
                    })
                    .await
                    .1
            }));
        }
        let mut upstream = 0;
        for t in tasks {
            if t.await.unwrap() == Source::Upstream {
                upstream += 1;
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "single flight");
        assert_eq!(upstream, 1);
    }
}
