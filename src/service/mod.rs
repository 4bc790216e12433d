//! The domain facade both transports call. Every method takes the `Caller` (from
//! `auth`) and applies the role table, ownership and quotas itself, so a rule written
//! here holds for HTTP, gRPC and anything else that reaches the same operation.
//! Split by concern: `grading` (grade, judges), `jobs` (submit, status, lists,
//! results stream, summaries), `rubrics`, `calibration`. Documents keep their
//! versioned formats, so HTTP and gRPC give identical answers. Must not know about
//! axum, tonic or HTTP status codes.

pub mod auth;
pub mod calibration;
pub mod grading;
mod jobs;
mod rubrics;

use std::sync::Arc;

use crate::error::Error;
use crate::grader::Grader;
use crate::jobs::Jobs;
use crate::rubric::Invalid;
use crate::store::{Admission, Store};

pub use crate::grader::GradeReportDoc;
pub use crate::store::JobState;
pub use auth::{Action, Auth, Caller, Owned, Role};
pub use calibration::{
    CsvUpload, NewCalibrationRun, NewCalibrationSet, NewLabels, ScaleName, SetFormat,
};
pub use jobs::{
    JobEstimate, JobList, JobStatus, JobSummary, JudgeCostEstimate, JudgeFailures, ResultPage,
    ResultRow, SummaryJob, SummaryStream, keep_job_figures,
};
pub use rubrics::{Problem, RubricList, RubricSummary, RubricValidation, RubricVersions};

/// Limits applied at the edge of the domain.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_items_per_job: usize,
    pub max_criteria_per_rubric: usize,
    /// `server.max_string_bytes` and `server.max_body_bytes`: the bounds a request
    /// document is scanned under (see `rubric::bounded`).
    pub max_string_bytes: usize,
    pub max_body_bytes: usize,
}

pub struct Service {
    grader: Arc<Grader>,
    store: Arc<dyn Store>,
    jobs: Arc<Jobs>,
    auth: Auth,
    limits: Limits,
    /// Serialises calibration set uploads (set names are unique). Label writes do not
    /// take it: they lock their own set only (`label_locks`).
    calibration_lock: tokio::sync::Mutex<()>,
    /// One lock per calibration set for label writes and undos, so writes to one set
    /// keep its kept parse and history in step, and never wait for another set's.
    label_locks: SetLocks,
    /// Parsed calibration sets and reports kept between requests (see `calibration`).
    calibration_cache: calibration::CalibrationCache,
}

impl Service {
    pub fn new(
        grader: Arc<Grader>,
        store: Arc<dyn Store>,
        jobs: Arc<Jobs>,
        auth: Auth,
        limits: Limits,
    ) -> Service {
        Service {
            grader,
            store,
            jobs,
            auth,
            limits,
            calibration_lock: tokio::sync::Mutex::new(()),
            label_locks: SetLocks::default(),
            calibration_cache: calibration::CalibrationCache::default(),
        }
    }

    /// The caller presenting `authorization` (`Bearer <key>`), for every transport.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, Error> {
        self.auth.authenticate(authorization).await
    }

    /// `authenticate` for a client at `peer`: an address that keeps sending unknown
    /// keys is refused for a while (`auth::Guesses`), on every transport and the UI.
    pub async fn authenticate_from(
        &self,
        authorization: Option<&str>,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Caller, Error> {
        self.auth.authenticate_from(authorization, peer).await
    }

    /// Spends one request of `caller`'s per-minute quota, for requests made under an
    /// earlier `authenticate` (the UI's session): the same budget the API spends.
    pub async fn spend_request(&self, caller: &Caller) -> Result<(), Error> {
        self.auth.spend_for(caller).await
    }

    /// Moves the per-key request quotas to a store every replica shares.
    pub fn share_quotas(&self, store: std::sync::Arc<dyn crate::limits::BucketStore>) {
        self.auth.share(store);
    }

    /// Whether API keys are configured.
    pub fn auth_enabled(&self) -> bool {
        self.auth.enabled()
    }

    /// Readiness: the store answers. Returns whether judges are simulated.
    pub async fn ready(&self) -> Result<bool, Error> {
        self.store.ping().await?;
        Ok(self.grader.simulated())
    }

    /// The health of the tier the replicas share (Redis), when configured. Not part of
    /// readiness: without Redis a replica still grades, on local limit shares and its
    /// local cache, so it stays ready and reports itself degraded.
    pub async fn shared_status(&self) -> Option<crate::cache::SharedStatus> {
        self.grader.committee.cache.shared_status().await
    }

    /// Refreshes the job gauges from the store (before a metrics scrape). A store
    /// error leaves the previous values: a scrape must not fail on it.
    pub async fn refresh_job_gauges(&self) {
        if let Ok((by_state, pending)) = self.store.job_counts().await {
            let states: Vec<(&'static str, i64)> = by_state
                .into_iter()
                .map(|(st, n)| (st.as_str(), n))
                .collect();
            crate::metrics::jobs(&states, pending);
        }
    }

    fn check_criteria(&self, n: usize, field: &str) -> Result<(), Error> {
        if n > self.limits.max_criteria_per_rubric {
            return Err(Error::TooLarge {
                what: "rubric",
                detail: format!(
                    "{n} criteria; the limit is {} (server.max_criteria_per_rubric)",
                    self.limits.max_criteria_per_rubric
                ),
                field: Some(field.to_owned()),
            });
        }
        Ok(())
    }

    /// The caller's concurrent-jobs quota as the store takes it with a new job
    /// (`Store::stage_job_under_quota`, `create_calibration_run_under_quota`):
    /// calibration runs are jobs too. `None`: no quota applies.
    fn job_quota(&self, caller: &Caller) -> Option<u64> {
        caller.owner()?;
        self.auth
            .max_concurrent_jobs(caller)
            .map(|max| u64::try_from(max).unwrap_or(u64::MAX))
    }

    /// The store's verdict on a new job under `job_quota`: a refusal is
    /// `rate_limited` (nothing was stored).
    fn admitted(caller: &Caller, admission: Admission) -> Result<(), Error> {
        match admission {
            Admission::Admitted => Ok(()),
            Admission::Refused { .. } => {
                if let Some(owner) = caller.owner() {
                    crate::metrics::quota_rejection(owner);
                }
                Err(Error::RateLimited {
                    retry_after: std::time::Duration::from_secs(30),
                })
            }
        }
    }
}

/// Locks by set id, made on first use and dropped when nobody holds or waits for them.
#[derive(Debug, Default)]
struct SetLocks(std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl SetLocks {
    async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            // Held for a map lookup only; a panic cannot leave the map half-changed.
            let mut map = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // A lock only the map holds has no holder and no waiter.
            map.retain(|_, l| Arc::strong_count(l) > 1);
            map.entry(id.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::Invalid(Invalid::one(field, message))
}

/// A stored document that does not decode: `internal` (the data needs looking at).
fn corrupt(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("{what}: {e}"))
}
