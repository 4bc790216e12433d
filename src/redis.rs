//! Redis: the one connection (redis-rs' tokio `ConnectionManager`, which reconnects on
//! its own) and the two things replicas share through it: token buckets
//! (`RedisBuckets`, one Lua script on Redis' clock) and the verdict cache tier with its
//! single-flight leases (`RedisTier`). Every command has a deadline; a failure marks
//! Redis down for a second (`Health`) so callers fall back at once instead of paying a
//! timeout per call. Owns every Redis key and command; must not decide policy (what
//! happens when Redis is down is `limits::Failover`'s and `cache`'s).
//!
//! Keys, all under `redis.key_prefix` (default `tribunal`):
//! - `<prefix>:limit:v1:{<judge>}:rpm` / `:tpm`: a hash `level`, `at` (µs of Redis'
//!   clock). The braces are a hash tag: one judge's buckets share a cluster slot, as
//!   one script touching several keys requires.
//! - `<prefix>:verdict:v1:<blake3 hex>`: a cached answer (`CachedAnswer::to_json`, itself
//!   versioned), expiring after `[cache] ttl_secs`.
//! - `<prefix>:verdict-lease:v1:<blake3 hex>`: the single-flight lease, holding the
//!   leader's random token, expiring after `redis.lease_ms` unless renewed.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{RedisResult, Script};
use secrecy::ExposeSecret;

use crate::cache::{CacheKey, CachedAnswer, SharedStatus, SharedTier};
use crate::config::RedisConfig;
use crate::limits::{Admit, BucketStore, SharedError, Take};

/// Whether Redis answered lately.
#[derive(Debug)]
pub struct Health {
    epoch: Instant,
    down: AtomicBool,
    /// Milliseconds since `epoch` before which a down Redis is not tried again.
    retry_at_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Health {
    /// How long a failed Redis is left alone before commands try it again.
    pub const RETRY_AFTER: Duration = Duration::from_secs(1);

    fn new() -> Health {
        Health {
            epoch: Instant::now(),
            down: AtomicBool::new(false),
            retry_at_ms: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn should_try(&self) -> bool {
        !self.down.load(Ordering::Relaxed)
            || self.now_ms() >= self.retry_at_ms.load(Ordering::Relaxed)
    }

    fn ok(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("redis reachable again");
        }
        crate::metrics::redis_up(true);
    }

    fn fail(&self, error: &str) {
        let retry = Self::RETRY_AFTER.as_millis() as u64;
        self.retry_at_ms
            .store(self.now_ms() + retry, Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error.to_owned());
        }
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(error, "redis unreachable");
        }
        crate::metrics::redis_up(false);
    }

    pub fn status(&self) -> SharedStatus {
        SharedStatus {
            up: !self.down.load(Ordering::Relaxed),
            last_error: if self.down.load(Ordering::Relaxed) {
                self.last_error.lock().ok().and_then(|e| e.clone())
            } else {
                None
            },
        }
    }
}

/// The connection and its health, shared by the buckets and the cache tier.
pub struct Redis {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    pub health: Health,
}

impl Redis {
    /// Builds the connection without waiting for the server: a replica starts (and
    /// grades, with local limits and cache) while Redis is still down, and the manager
    /// connects when it comes up. Fails only on a URL redis-rs cannot read.
    pub fn connect(cfg: &RedisConfig) -> Result<Arc<Redis>, String> {
        let client = ::redis::Client::open(cfg.url.expose_secret()).map_err(|e| {
            format!(
                "redis.url cannot be used ({:?}); expected redis://host:port",
                e.kind()
            )
        })?;
        let manager_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.timeout))
            .set_response_timeout(Some(cfg.timeout))
            // Reconnect attempts happen inside a failing command; one is enough, the
            // next command tries again.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, manager_cfg)
            .map_err(|e| format!("redis connection manager: {e}"))?;
        Ok(Arc::new(Redis {
            conn,
            prefix: cfg.key_prefix.clone(),
            timeout: cfg.timeout,
            health: Health::new(),
        }))
    }

    /// Runs one command (built by `f` on its own handle of the connection) with the
    /// deadline, recording the outcome in `health` and the metrics. While Redis is
    /// known to be down it fails at once.
    async fn run<T, F, Fut>(&self, component: &'static str, f: F) -> Result<T, SharedError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if !self.health.should_try() {
            return Err(SharedError("redis is down (retrying each second)".into()));
        }
        let outcome = tokio::time::timeout(self.timeout, f(self.conn.clone())).await;
        let error = match outcome {
            Ok(Ok(v)) => {
                self.health.ok();
                return Ok(v);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", self.timeout),
        };
        crate::metrics::redis_error(component);
        self.health.fail(&error);
        Err(SharedError(error))
    }

    /// `PING`, for readiness checks and tests.
    pub async fn ping(&self) -> Result<(), SharedError> {
        self.run("health", |mut c| async move {
            ::redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await
        .map(|_| ())
    }

    fn verdict_key(&self, key: &CacheKey) -> String {
        format!("{}:verdict:v1:{}", self.prefix, hex(key))
    }

    fn lease_key(&self, key: &CacheKey) -> String {
        format!("{}:verdict-lease:v1:{}", self.prefix, hex(key))
    }

    /// `<judge>:rpm` -> `<prefix>:limit:v1:{<judge>}:rpm`.
    fn bucket_key(&self, key: &str) -> String {
        match key.rsplit_once(':') {
            Some((group, which)) => format!("{}:limit:v1:{{{group}}}:{which}", self.prefix),
            None => format!("{}:limit:v1:{{{key}}}", self.prefix),
        }
    }
}

fn hex(key: &CacheKey) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// Takes from (mode `take`) or charges (mode `charge`) several token buckets at once,
/// on Redis' clock. `take` is all or nothing: it returns `{0, µs to wait}` (or
/// `{0, -1}` when a cost exceeds a capacity) and changes nothing unless every bucket
/// holds its cost; then it charges all of them and returns `{1, 0}`. `charge` always
/// applies (a positive cost may leave debt; a refund stops at capacity).
/// ARGV: mode, then per key: capacity, refill per µs, cost. Same arithmetic as
/// `limits::refill` and `limits::wait_for`.
static BUCKETS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local mode = ARGV[1]
local levels, ats = {}, {}
local wait = 0
for i = 1, #KEYS do
  local cap = tonumber(ARGV[3 * i - 1])
  local rate = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  local s = redis.call('HMGET', KEYS[i], 'level', 'at')
  local level, at = tonumber(s[1]), tonumber(s[2])
  if level == nil or at == nil then
    level, at = cap, now
  end
  -- A clock that went back (failover to a lagging host) refills nothing.
  if now > at then
    level = math.min(cap, level + (now - at) * rate)
    at = now
  end
  levels[i], ats[i] = level, at
  if mode == 'take' and level < cost then
    if cost > cap or rate <= 0 then
      return {0, -1}
    end
    local w = math.ceil((cost - level) / rate)
    if w > wait then
      wait = w
    end
  end
end
if wait > 0 then
  return {0, wait}
end
for i = 1, #KEYS do
  local cap = tonumber(ARGV[3 * i - 1])
  local rate = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  local level = math.min(cap, levels[i] - cost)
  redis.call('HSET', KEYS[i], 'level', string.format('%.17g', level), 'at', string.format('%.17g', ats[i]))
  if rate > 0 then
    -- A bucket that has refilled is the same as no bucket: let it expire then.
    redis.call('PEXPIRE', KEYS[i], math.ceil((cap - level) / rate / 1000) + 1000)
  end
end
return {1, 0}
"#,
    )
});

/// Token buckets every replica shares.
pub struct RedisBuckets(pub Arc<Redis>);

impl RedisBuckets {
    async fn invoke(&self, mode: &'static str, takes: &[Take]) -> Result<Vec<i64>, SharedError> {
        let keys: Vec<String> = takes.iter().map(|t| self.0.bucket_key(&t.key)).collect();
        let mut args: Vec<String> = vec![mode.to_owned()];
        for t in takes {
            let s = t.limit.spec();
            args.push(s.capacity.to_string());
            args.push(s.per_us().to_string());
            args.push(t.cost.to_string());
        }
        self.0
            .run("limiter", |mut c| async move {
                let mut inv = BUCKETS.prepare_invoke();
                for k in &keys {
                    inv.key(k);
                }
                for a in &args {
                    inv.arg(a);
                }
                inv.invoke_async::<Vec<i64>>(&mut c).await
            })
            .await
    }
}

#[async_trait::async_trait]
impl BucketStore for RedisBuckets {
    async fn take(&self, takes: &[Take]) -> Result<Admit, SharedError> {
        match self.invoke("take", takes).await?.as_slice() {
            [1, _] => Ok(Admit::Taken),
            [0, w] if *w >= 0 => Ok(Admit::Wait(Duration::from_micros(w.unsigned_abs()))),
            [0, _] => Ok(Admit::Never),
            other => Err(SharedError(format!(
                "unexpected limiter script reply {other:?}"
            ))),
        }
    }

    async fn charge(&self, take: &Take) -> Result<(), SharedError> {
        self.invoke("charge", std::slice::from_ref(take))
            .await
            .map(|_| ())
    }
}

/// `SET NX PX` the answer, or return the one already there (first writer wins).
static PUT_FIRST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
return redis.call('GET', KEYS[1])
"#,
    )
});

/// Extends the lease only for its holder.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#,
    )
});

/// Deletes the lease only for its holder (a lapsed holder must not drop its
/// successor's lease).
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
    )
});

/// The verdict cache tier every replica shares.
pub struct RedisTier {
    pub redis: Arc<Redis>,
    /// `[cache] ttl_secs`.
    pub ttl: Duration,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait::async_trait]
impl SharedTier for RedisTier {
    async fn get(&self, key: &CacheKey) -> Result<Option<CachedAnswer>, SharedError> {
        let k = self.redis.verdict_key(key);
        let text = self
            .redis
            .run("cache", |mut c| async move {
                ::redis::cmd("GET")
                    .arg(&k)
                    .query_async::<Option<String>>(&mut c)
                    .await
            })
            .await?;
        // Unreadable (another version's format) reads as a miss.
        Ok(text.and_then(|t| CachedAnswer::from_json(&t)))
    }

    async fn put_first(
        &self,
        key: &CacheKey,
        value: &CachedAnswer,
    ) -> Result<Option<CachedAnswer>, SharedError> {
        let k = self.redis.verdict_key(key);
        let v = value.to_json();
        let ttl = millis(self.ttl);
        let existing = self
            .redis
            .run("cache", |mut c| async move {
                PUT_FIRST
                    .key(&k)
                    .arg(&v)
                    .arg(ttl)
                    .invoke_async::<Option<String>>(&mut c)
                    .await
            })
            .await?;
        Ok(existing.and_then(|t| CachedAnswer::from_json(&t)))
    }

    async fn lease(&self, key: &CacheKey, token: &str, ttl: Duration) -> Result<bool, SharedError> {
        let k = self.redis.lease_key(key);
        let token = token.to_owned();
        let ms = millis(ttl);
        let set = self
            .redis
            .run("cache", |mut c| async move {
                ::redis::cmd("SET")
                    .arg(&k)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .query_async::<Option<String>>(&mut c)
                    .await
            })
            .await?;
        Ok(set.is_some())
    }

    async fn renew(&self, key: &CacheKey, token: &str, ttl: Duration) -> Result<bool, SharedError> {
        let k = self.redis.lease_key(key);
        let token = token.to_owned();
        let ms = millis(ttl);
        let n = self
            .redis
            .run("cache", |mut c| async move {
                RENEW
                    .key(&k)
                    .arg(&token)
                    .arg(ms)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await?;
        Ok(n == 1)
    }

    async fn release(&self, key: &CacheKey, token: &str) -> Result<(), SharedError> {
        let k = self.redis.lease_key(key);
        let token = token.to_owned();
        self.redis
            .run("cache", |mut c| async move {
                RELEASE
                    .key(&k)
                    .arg(&token)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await
            .map(|_| ())
    }

    async fn probe(&self) -> SharedStatus {
        // A PING now, so readiness reports Redis as it is, not as the last command
        // found it (during a back-off it fails at once and reports the last error).
        let _ = self.redis.ping().await;
        self.redis.health.status()
    }
}
