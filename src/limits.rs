//! Outbound limits per judge: requests per minute and tokens per minute (governor
//! GCRA limiters) and a concurrency cap (semaphore). Waiting for a permit is normal,
//! not an error. Inbound per-API-key quotas will live here too.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::LimitsConfig;

pub struct JudgeLimiter {
    /// Burst 1: requests are spaced at 60/RPM seconds, so the achieved rate can never
    /// exceed the configured one (at most RPM + 1 starts in any closed 60 s window).
    rpm: Option<DefaultDirectRateLimiter>,
    /// Burst of TPM/10 tokens (six seconds' worth), so one large prompt fits.
    tpm: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
    concurrency: Arc<Semaphore>,
    /// Acquisitions that had to wait (for metrics and progress).
    pub waits: AtomicU64,
}

/// Held for the duration of one upstream call.
pub struct Permit {
    /// `None` only if the semaphore were closed, which this module never does.
    _slot: Option<OwnedSemaphorePermit>,
}

impl JudgeLimiter {
    pub fn new(cfg: &LimitsConfig) -> Self {
        let rpm = cfg
            .requests_per_minute
            .and_then(NonZeroU32::new)
            .map(|r| RateLimiter::direct(Quota::per_minute(r).allow_burst(NonZeroU32::MIN)));
        let tpm = cfg.tokens_per_minute.and_then(NonZeroU32::new).map(|t| {
            let burst = NonZeroU32::new(t.get() / 10).unwrap_or(NonZeroU32::MIN);
            (
                RateLimiter::direct(Quota::per_minute(t).allow_burst(burst)),
                burst,
            )
        });
        Self {
            rpm,
            tpm,
            concurrency: Arc::new(Semaphore::new(cfg.max_concurrency.max(1))),
            waits: AtomicU64::new(0),
        }
    }

    /// Waits for a concurrency slot, a request cell and `est_tokens` token cells.
    pub async fn acquire(&self, est_tokens: u64) -> Permit {
        let mut waited = false;
        let slot = match Arc::clone(&self.concurrency).try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                waited = true;
                Arc::clone(&self.concurrency).acquire_owned().await.ok()
            }
        };
        if let Some(l) = &self.rpm {
            if l.check().is_err() {
                waited = true;
                l.until_ready().await;
            }
        }
        if let Some((l, burst)) = &self.tpm {
            self.take_tokens(l, *burst, est_tokens, &mut waited).await;
        }
        if waited {
            self.waits.fetch_add(1, Ordering::Relaxed);
        }
        Permit { _slot: slot }
    }

    async fn take_tokens(
        &self,
        l: &DefaultDirectRateLimiter,
        burst: NonZeroU32,
        tokens: u64,
        waited: &mut bool,
    ) {
        let n = u32::try_from(tokens)
            .unwrap_or(u32::MAX)
            .clamp(1, burst.get());
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        if !matches!(l.check_n(n), Ok(Ok(()))) {
            *waited = true;
            // n <= burst, so capacity is never insufficient.
            let _ = l.until_n_ready(n).await;
        }
    }

    /// Charges tokens the server reported beyond the estimate (GCRA cannot refund an
    /// over-estimate; it only errs on the safe side).
    pub async fn reconcile(&self, estimated: u64, actual: u64) {
        if let Some((l, burst)) = &self.tpm {
            if actual > estimated {
                let mut waited = false;
                self.take_tokens(l, *burst, actual - estimated, &mut waited)
                    .await;
            }
        }
    }
}

/// Rough token estimate for limiter accounting before the server reports usage.
pub fn estimate_tokens(chars: usize, max_output: Option<u32>) -> u64 {
    (chars as u64).div_ceil(4) + u64::from(max_output.unwrap_or(256))
}
