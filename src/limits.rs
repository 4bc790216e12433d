//! Rate limits: outbound per judge (requests and tokens per minute, plus a per-replica
//! concurrency cap) as token buckets that several buckets consume together, all or
//! nothing. The bucket arithmetic lives here once (`BucketSpec`, `refill`); a
//! `BucketStore` keeps the levels, either in this process (`LocalBuckets`) or shared
//! by every replica (`crate::redis::RedisBuckets`, the same arithmetic in one Lua
//! script on Redis' clock). `Failover` chooses between them when Redis is unreachable.
//! Waiting for a permit is normal, not an error. Must not know about Redis commands.
//!
//! ## Sizing: why no window ever holds more than the limit
//! A limit of `L` per window `W` (60 s) becomes a bucket of capacity `C` (1 <= C <= L)
//! refilled at `r = (L - C) / W`. In any window `[t, t + W]` the calls admitted spend
//! at most the level at `t` (<= C) plus what flows in during the window (`r * W`), so
//! at most `C + r * W = C + (L - C) = L`: the limit holds in every sliding window, not
//! only in aligned ones (no fixed-window 2x at the edges). The price is a sustained
//! rate of `L - C` per window, so `C` is small: two requests for RPM (99.7% of 600
//! RPM; a single one would lose every instant a waiter wakes late), a tenth of TPM for
//! tokens (so one large prompt fits; 90% sustained).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::LimitsConfig;

/// The one window every limit in this crate is configured over.
pub const MINUTE: Duration = Duration::from_secs(60);

/// A limit of `per_window` units per `window`, with `burst` of them available at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub per_window: f64,
    pub window: Duration,
    pub burst: f64,
}

impl Limit {
    pub fn per_minute(per_window: u32, burst: f64) -> Limit {
        Limit {
            per_window: f64::from(per_window),
            window: MINUTE,
            burst,
        }
    }

    /// The bucket that never admits more than `per_window` in any window (module docs).
    pub fn spec(&self) -> BucketSpec {
        let capacity = self
            .burst
            .clamp(1.0_f64.min(self.per_window), self.per_window);
        let secs = self.window.as_secs_f64();
        if secs <= 0.0 {
            return BucketSpec {
                capacity,
                per_sec: 0.0,
            };
        }
        // A limit of at most one call per window leaves nothing to refill once one call
        // is held at once; it is enforced as one call per window instead (then only a
        // closed window's two ends may both hold one).
        let per_sec = if self.per_window <= 1.0 {
            self.per_window / secs
        } else {
            (self.per_window - capacity) / secs
        };
        BucketSpec { capacity, per_sec }
    }

    /// This replica's share when `replicas` processes each enforce the limit alone:
    /// the rate and the burst are both divided, so the sum over replicas is the limit.
    pub fn share(&self, replicas: u32) -> Limit {
        let n = f64::from(replicas.max(1));
        Limit {
            per_window: self.per_window / n,
            window: self.window,
            burst: (self.burst / n).max(1.0_f64.min(self.per_window / n)),
        }
    }
}

/// A token bucket: at most `capacity` units, refilled at `per_sec`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketSpec {
    pub capacity: f64,
    pub per_sec: f64,
}

impl BucketSpec {
    /// Refill per microsecond, the unit of the clocks (Redis `TIME` gives microseconds).
    pub fn per_us(&self) -> f64 {
        self.per_sec / 1e6
    }
}

/// A bucket's level after refilling from `at_us` to `now_us`. A clock that went back
/// (a Redis failover to a host whose clock lags) refills nothing rather than draining.
pub fn refill(spec: BucketSpec, level: f64, at_us: i64, now_us: i64) -> f64 {
    let elapsed = (now_us - at_us).max(0) as f64;
    (level + elapsed * spec.per_us()).min(spec.capacity)
}

/// How long until `cost` is available at `level`, or `None` if it never will be.
pub fn wait_for(spec: BucketSpec, level: f64, cost: f64) -> Option<Duration> {
    if level >= cost {
        return Some(Duration::ZERO);
    }
    if cost > spec.capacity || spec.per_sec <= 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64((cost - level) / spec.per_sec))
}

/// One bucket to consume from: its key (shared by every replica for shared buckets),
/// its shape and the amount.
#[derive(Debug, Clone, PartialEq)]
pub struct Take {
    pub key: String,
    pub limit: Limit,
    pub cost: f64,
}

/// The outcome of an all-or-nothing take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Every bucket was charged.
    Taken,
    /// Nothing was charged; the slowest bucket has enough after this long.
    Wait(Duration),
    /// Nothing was charged and never will be (a cost above a bucket's capacity).
    Never,
}

/// A shared store did not answer (Redis down, timed out, or a script error).
#[derive(Debug, Clone, thiserror::Error)]
#[error("shared limiter unavailable: {0}")]
pub struct SharedError(pub String);

/// Where bucket levels live. `take` is atomic over all of its buckets: either every
/// one is charged or none is, so a request never holds tokens it cannot use.
#[async_trait::async_trait]
pub trait BucketStore: Send + Sync {
    async fn take(&self, takes: &[Take]) -> Result<Admit, SharedError>;
    /// Charges `delta` (reconciling an estimate with real usage): positive spends and
    /// may leave the bucket in debt, which later takes wait out; negative refunds, up
    /// to capacity.
    async fn charge(&self, take: &Take) -> Result<(), SharedError>;

    /// Settles `taken` (the take as asked for, its cost the estimate) with the `actual`
    /// usage. The difference is computed against what this store took for it: a store
    /// that clamped the cost (a fallback's smaller bucket) refunds only what it took.
    async fn settle(&self, taken: &Take, actual: f64) -> Result<(), SharedError> {
        let delta = actual - taken.cost;
        if delta == 0.0 {
            return Ok(());
        }
        self.charge(&Take {
            cost: delta,
            ..taken.clone()
        })
        .await
    }
}

/// Buckets in this process, on the monotonic clock.
pub struct LocalBuckets {
    epoch: Instant,
    /// Key -> (level, last update in µs since `epoch`).
    levels: Mutex<HashMap<String, (f64, i64)>>,
    /// New buckets start empty instead of full (a fallback that takes over from a
    /// shared bucket must not add a fresh burst to what the shared one just allowed).
    start_empty: bool,
}

impl LocalBuckets {
    pub fn new() -> LocalBuckets {
        Self::with_start(false)
    }

    fn with_start(start_empty: bool) -> LocalBuckets {
        LocalBuckets {
            epoch: Instant::now(),
            levels: Mutex::new(HashMap::new()),
            start_empty,
        }
    }

    fn now_us(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(i64::MAX)
    }

    /// Forgets every level (the next use starts each bucket as at creation).
    fn reset(&self) {
        if let Ok(mut l) = self.levels.lock() {
            l.clear();
        }
    }

    fn level(&self, map: &HashMap<String, (f64, i64)>, t: &Take, now: i64) -> f64 {
        let spec = t.limit.spec();
        match map.get(&t.key) {
            Some(&(level, at)) => refill(spec, level, at, now),
            None if self.start_empty => 0.0,
            None => spec.capacity,
        }
    }
}

impl Default for LocalBuckets {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl BucketStore for LocalBuckets {
    async fn take(&self, takes: &[Take]) -> Result<Admit, SharedError> {
        let now = self.now_us();
        let mut map = self
            .levels
            .lock()
            .map_err(|_| SharedError("local limiter lock poisoned".into()))?;
        let mut wait = Duration::ZERO;
        let mut levels = Vec::with_capacity(takes.len());
        for t in takes {
            let level = self.level(&map, t, now);
            match wait_for(t.limit.spec(), level, t.cost) {
                Some(w) => wait = wait.max(w),
                None => return Ok(Admit::Never),
            }
            levels.push(level);
        }
        if wait > Duration::ZERO {
            if self.start_empty {
                // An empty bucket fills from its first use, not from its first take.
                for t in takes {
                    map.entry(t.key.clone()).or_insert((0.0, now));
                }
            }
            return Ok(Admit::Wait(wait));
        }
        for (t, level) in takes.iter().zip(levels) {
            map.insert(t.key.clone(), (level - t.cost, now));
        }
        Ok(Admit::Taken)
    }

    async fn charge(&self, t: &Take) -> Result<(), SharedError> {
        let now = self.now_us();
        let mut map = self
            .levels
            .lock()
            .map_err(|_| SharedError("local limiter lock poisoned".into()))?;
        let level = self.level(&map, t, now);
        let cap = t.limit.spec().capacity;
        map.insert(t.key.clone(), ((level - t.cost).min(cap), now));
        Ok(())
    }
}

/// A shared bucket store with a local fallback at `limit / replicas`.
///
/// Why fall back instead of failing closed: Redis is optional infrastructure for
/// sharing, not the system of record, and a Redis outage should slow grading, not stop
/// it. Each replica then enforces its share of every limit, so with `replicas` set to
/// the real number of replicas the fleet as a whole stays within the limit. The
/// fallback buckets start empty each time an outage begins, so a window that spans the
/// switch holds at most what the shared bucket admitted before it plus the shares'
/// refill after it: still at most the limit (module docs). The exception is a partial
/// partition (some replicas reach Redis, some do not): the cut-off replicas add at most
/// their shares on top.
pub struct Failover {
    shared: Arc<dyn BucketStore>,
    fallback: LocalBuckets,
    replicas: u32,
    /// True while the last shared call failed (the fallback is in use).
    falling_back: AtomicBool,
}

impl Failover {
    /// The shared store is expected to fail fast while it is known to be down (the
    /// Redis store skips the server during its back-off), so a fallback costs no
    /// timeout per call.
    pub fn new(shared: Arc<dyn BucketStore>, replicas: u32) -> Failover {
        Failover {
            shared,
            fallback: LocalBuckets::with_start(true),
            replicas: replicas.max(1),
            falling_back: AtomicBool::new(false),
        }
    }

    fn shares(&self, takes: &[Take]) -> Vec<Take> {
        takes
            .iter()
            .map(|t| Take {
                key: t.key.clone(),
                limit: t.limit.share(self.replicas),
                cost: t.cost.min(t.limit.share(self.replicas).spec().capacity),
            })
            .collect()
    }

    fn failed(&self, e: &SharedError) {
        if !self.falling_back.swap(true, Ordering::Relaxed) {
            // An outage begins: the shares start empty (see the type's docs).
            tracing::warn!(error = %e, replicas = self.replicas, "shared limits unavailable; each replica enforces limit / replicas");
            self.fallback.reset();
        }
    }

    fn recovered(&self) {
        if self.falling_back.swap(false, Ordering::Relaxed) {
            tracing::info!("shared limits available again");
        }
    }
}

#[async_trait::async_trait]
impl BucketStore for Failover {
    async fn take(&self, takes: &[Take]) -> Result<Admit, SharedError> {
        match self.shared.take(takes).await {
            Ok(a) => {
                self.recovered();
                return Ok(a);
            }
            Err(e) => self.failed(&e),
        }
        crate::metrics::redis_fallback("limiter");
        self.fallback.take(&self.shares(takes)).await
    }

    async fn charge(&self, t: &Take) -> Result<(), SharedError> {
        match self.shared.charge(t).await {
            Ok(()) => {
                self.recovered();
                return Ok(());
            }
            Err(e) => self.failed(&e),
        }
        let share = self.shares(std::slice::from_ref(t));
        match share.first() {
            Some(s) => self.fallback.charge(s).await,
            None => Ok(()),
        }
    }

    async fn settle(&self, taken: &Take, actual: f64) -> Result<(), SharedError> {
        match self.shared.settle(taken, actual).await {
            Ok(()) => {
                self.recovered();
                return Ok(());
            }
            Err(e) => self.failed(&e),
        }
        // The share took at most its own capacity for this call (`shares`), so the
        // refund is reckoned from that, not from the full bucket's clamp: otherwise a
        // large estimate would refund tokens the share never gave out.
        match self.shares(std::slice::from_ref(taken)).first() {
            Some(s) => self.fallback.settle(s, actual).await,
            None => Ok(()),
        }
    }
}

/// The outbound limits of one judge.
pub struct JudgeLimiter {
    rpm: Option<Limit>,
    tpm: Option<Limit>,
    /// Per replica: how many calls this process has open at once.
    concurrency: Arc<Semaphore>,
    local: LocalBuckets,
    /// Set once at start-up when Redis is configured: the judge's name (bucket keys are
    /// `<judge>:rpm` and `<judge>:tpm`, which the shared store prefixes and hash-tags)
    /// and the store every replica shares.
    shared: OnceLock<(String, Arc<dyn BucketStore>)>,
    /// Acquisitions that had to wait (for metrics and progress).
    pub waits: AtomicU64,
}

/// Held for the duration of one upstream call.
pub struct Permit {
    /// `None` only if the semaphore were closed, which this module never does.
    _slot: Option<OwnedSemaphorePermit>,
}

/// The longest a waiter sleeps before asking again: other waiters may leave, and a
/// shared bucket's level changes under other replicas' takes.
const MAX_NAP: Duration = Duration::from_millis(500);

impl JudgeLimiter {
    /// Limits kept in this process until `share` moves them to a shared store.
    pub fn new(cfg: &LimitsConfig) -> Self {
        Self {
            // Two requests of burst: calls are spaced evenly, and a waiter that wakes
            // a little late (scheduling, a Redis round trip) finds the next request
            // banked instead of lost, so the sustained rate stays at (L - 2) / L of
            // the limit; one when the limit is too small to keep two and still refill.
            rpm: cfg
                .requests_per_minute
                .filter(|r| *r > 0)
                .map(|r| Limit::per_minute(r, if r >= 4 { 2.0 } else { 1.0 })),
            // A tenth of a minute's tokens at once, so one large prompt fits.
            tpm: cfg
                .tokens_per_minute
                .filter(|t| *t > 0)
                .map(|t| Limit::per_minute(t, (f64::from(t) / 10.0).floor().max(1.0))),
            concurrency: Arc::new(Semaphore::new(cfg.max_concurrency.max(1))),
            local: LocalBuckets::new(),
            shared: OnceLock::new(),
            waits: AtomicU64::new(0),
        }
    }

    /// From now on judge `name`'s buckets live in `store`, shared by every replica
    /// (set once, at start-up, before any call). Returns false if already shared.
    pub fn share(&self, name: &str, store: Arc<dyn BucketStore>) -> bool {
        self.shared.set((name.to_owned(), store)).is_ok()
    }

    fn store(&self) -> &dyn BucketStore {
        match self.shared.get() {
            Some((_, s)) => &**s,
            None => &self.local,
        }
    }

    fn key(&self, which: &str) -> String {
        match self.shared.get() {
            Some((name, _)) => format!("{name}:{which}"),
            None => which.to_owned(),
        }
    }

    /// The takes for one call of `est_tokens`: one request and the estimate (clamped to
    /// the token bucket's capacity, so a huge prompt waits for a full bucket instead of
    /// never running; `reconcile` charges the rest).
    fn takes(&self, est_tokens: u64) -> Vec<Take> {
        let mut takes = Vec::with_capacity(2);
        if let Some(l) = self.rpm {
            takes.push(Take {
                key: self.key("rpm"),
                limit: l,
                cost: 1.0_f64.min(l.spec().capacity),
            });
        }
        if let Some(l) = self.tpm {
            takes.push(Take {
                key: self.key("tpm"),
                limit: l,
                cost: (est_tokens.max(1) as f64).min(l.spec().capacity),
            });
        }
        takes
    }

    /// Waits for a concurrency slot, then for one request and `est_tokens` tokens,
    /// taken together.
    pub async fn acquire(&self, est_tokens: u64) -> Permit {
        let mut waited = false;
        let slot = match Arc::clone(&self.concurrency).try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                waited = true;
                Arc::clone(&self.concurrency).acquire_owned().await.ok()
            }
        };
        let takes = self.takes(est_tokens);
        if !takes.is_empty() {
            loop {
                let nap = match self.store().take(&takes).await {
                    Ok(Admit::Taken) => break,
                    Ok(Admit::Wait(w)) => w,
                    // Costs are clamped to capacity, so this is a store's own failure
                    // (the local store cannot fail): retry shortly.
                    Ok(Admit::Never) | Err(_) => MAX_NAP,
                };
                waited = true;
                // A little past the computed instant, so a shared bucket (on another
                // host's clock) has surely refilled when this waiter asks again.
                tokio::time::sleep(nap.min(MAX_NAP) + Duration::from_millis(1)).await;
            }
        }
        if waited {
            self.waits.fetch_add(1, Ordering::Relaxed);
        }
        Permit { _slot: slot }
    }

    /// Settles the token estimate with the usage the server reported: spends what was
    /// used beyond it (the bucket may go into debt, which later calls wait out) and
    /// refunds what was not used.
    pub async fn reconcile(&self, estimated: u64, actual: u64) {
        let Some(l) = self.tpm else { return };
        // The take `acquire` made; the store works out what it took for it.
        let taken = Take {
            key: self.key("tpm"),
            limit: l,
            cost: (estimated.max(1) as f64).min(l.spec().capacity),
        };
        if let Err(e) = self.store().settle(&taken, actual as f64).await {
            tracing::debug!(error = %e, "token reconcile lost");
        }
    }
}

/// Rough token estimate for limiter accounting before the server reports usage.
pub fn estimate_tokens(chars: usize, max_output: Option<u32>) -> u64 {
    (chars as u64).div_ceil(4) + u64::from(max_output.unwrap_or(256))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_window_admits_more_than_the_limit() {
        // Capacity plus a window's refill is the limit, for every burst.
        for (limit, burst) in [
            (600, 1.0),
            (60, 1.0),
            (2, 1.0),
            (100_000, 10_000.0),
            (5, 50.0),
        ] {
            let l = Limit::per_minute(limit, burst);
            let s = l.spec();
            let total = s.capacity + s.per_sec * 60.0;
            assert!((total - f64::from(limit)).abs() < 1e-6, "{limit} {burst}");
            assert!(s.capacity >= 1.0 && s.capacity <= f64::from(limit));
        }
        // One call per window: one call at once, refilled once a window.
        let one = Limit::per_minute(1, 1.0).spec();
        assert_eq!((one.capacity, one.per_sec * 60.0), (1.0, 1.0));
        // Shares add up to the limit.
        let l = Limit::per_minute(600, 30.0).share(3);
        let s = l.spec();
        assert!((3.0 * (s.capacity + s.per_sec * 60.0) - 600.0).abs() < 1e-6);
    }

    /// A shared store that is always down.
    struct Down;

    #[async_trait::async_trait]
    impl BucketStore for Down {
        async fn take(&self, _: &[Take]) -> Result<Admit, SharedError> {
            Err(SharedError("down".into()))
        }
        async fn charge(&self, _: &Take) -> Result<(), SharedError> {
            Err(SharedError("down".into()))
        }
    }

    #[tokio::test]
    async fn a_fallback_refunds_against_its_own_share() {
        // 3,000 tokens a minute with a burst of 300; three replicas: each share is a
        // bucket of 100 refilled at 15 a second.
        let limit = Limit::per_minute(3000, 300.0);
        let store = Failover::new(Arc::new(Down), 3);
        let full = Take {
            key: "j:tpm".into(),
            limit,
            cost: 250.0,
        };
        // The outage begins: the share starts empty.
        assert!(matches!(
            store.take(std::slice::from_ref(&full)).await,
            Ok(Admit::Wait(_))
        ));
        // A call estimated at 250 (the share would have clamped it to its 100) used
        // 10: the share gets 90 back, not 240 (which would fill it to its capacity).
        store.settle(&full, 10.0).await.unwrap();
        let ninety_five = Take {
            cost: 95.0,
            ..full.clone()
        };
        match store.take(&[ninety_five]).await.unwrap() {
            Admit::Wait(w) => assert!(w > Duration::from_millis(200), "{w:?}"),
            other => panic!("the share holds 90 (+ refill), not 95: {other:?}"),
        }
        let ninety = Take { cost: 90.0, ..full };
        assert_eq!(store.take(&[ninety]).await.unwrap(), Admit::Taken);
    }

    #[test]
    fn refill_never_exceeds_capacity_nor_runs_backwards() {
        let s = BucketSpec {
            capacity: 10.0,
            per_sec: 1.0,
        };
        assert_eq!(refill(s, 2.0, 0, 3_000_000), 5.0);
        assert_eq!(refill(s, 2.0, 0, 60_000_000), 10.0);
        assert_eq!(refill(s, 2.0, 5_000_000, 0), 2.0);
        assert_eq!(wait_for(s, 2.0, 4.0), Some(Duration::from_secs(2)));
        assert_eq!(wait_for(s, 2.0, 11.0), None);
    }
}
