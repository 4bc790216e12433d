//! Builds everything from a `Config` (the one place that names concrete
//! implementations: the SQLite or Postgres store, providers via `Grader`, axum, tonic) and runs the
//! server with graceful shutdown: stop accepting, let job runners record the items in
//! flight, close the store. Also loads a `Config` from disk (`LoadConfig`): `config` is
//! pure, so the config file and the files it names are read and interpreted here.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::http::{HttpState, router};
use crate::config::{Config, ConfigError, DEFAULT_CONFIG, DatabaseKind, LoadedFiles};
use crate::error::Error;
use crate::grader::Grader;
use crate::jobs::{JobFinished, Jobs, SharedQueue};
use crate::service::{Auth, Limits, Service};
use crate::store::{JobQueue, PostgresStore, SqliteStore, Store};

/// Loading a `Config` from disk. A trait so callers keep writing `Config::load(..)`
/// while `config` itself reads no files.
pub trait LoadConfig: Sized {
    /// Reads a TOML file (or takes the built-in default when `path` is None), applies
    /// `TRIBUNAL__*` overrides from `env`, reads and interprets the files it names
    /// (`committee.reliability`, `committee.weights_from`), and validates the whole,
    /// every problem reported at once.
    fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError>;
}

impl LoadConfig for Config {
    fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|e| ConfigError::Io {
                path: p.display().to_string(),
                message: e.to_string(),
            })?,
            None => DEFAULT_CONFIG.to_owned(),
        };
        let parsed = Config::parse(&text, env)?;
        let named = parsed.files();
        let files = LoadedFiles {
            reliability: named.reliability.map(|p| {
                read_json(p).and_then(|doc| {
                    crate::calibration::agreement::reliability::reliability_in(&doc)
                        .map_err(|m| format!("{}: {m}", p.display()))
                })
            }),
            weights_from: named.weights_from.map(|p| {
                read_json(p).and_then(|doc| {
                    crate::calibration::agreement::reliability::weights_in(&doc)
                        .map_err(|m| format!("{}: {m}", p.display()))
                })
            }),
        };
        parsed.validate(files)
    }
}

/// A JSON file a config names, or the problem as a sentence naming the file.
fn read_json(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

/// A started server.
pub struct Running {
    pub http_addr: SocketAddr,
    pub grpc_addr: Option<SocketAddr>,
    pub service: Arc<Service>,
    pub shutdown: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, waits for in-flight job items to be recorded, closes the store.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.done.await;
    }

    /// Waits until the server stops (after `shutdown` is cancelled).
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Refuses to expose an unauthenticated server beyond this machine.
fn check_bind(cfg: &Config, addr: SocketAddr, what: &str) -> Result<(), Error> {
    if cfg.server.api_keys.is_empty() && !addr.ip().is_loopback() {
        return Err(Error::Invalid(crate::rubric::Invalid::one(
            format!("server.{what}"),
            format!(
                "{addr} is not a loopback address and no API keys are configured; add [[server.api_keys]] or bind 127.0.0.1"
            ),
        )));
    }
    Ok(())
}

/// The jobs' on-finish hook, before a job reads as done: every job's summary figures
/// are computed and kept (so reading a finished job's summary never re-runs the
/// bootstraps), and a calibration run gets its agreement report written (and the
/// agreement gauges set).
struct CalibrationFinisher {
    store: Arc<dyn Store>,
}

#[async_trait::async_trait]
impl JobFinished for CalibrationFinisher {
    async fn finished(&self, id: &str) -> crate::Result<()> {
        // Kept figures are only a shortcut: without them the summary is computed on
        // request (and reports whatever made this fail), so a failure here is logged
        // and does not hold the job back.
        if let Err(e) = crate::service::keep_job_figures(Arc::clone(&self.store), id).await {
            tracing::warn!(job = %id, error = %e, "summary figures not kept; summaries compute them on request");
        }
        match crate::calibration::run::finish(&*self.store, id).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(job = %id, error = %e, "calibration report failed; it is retried on restart");
                Err(e)
            }
        }
    }
}

/// The opened store, kept concrete for closing it at shutdown.
enum Opened {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

impl Opened {
    /// Opens the store `server.database_url` names: SQLite (one process) or Postgres
    /// (shared by replicas, with its leased work queue).
    async fn open(cfg: &Config) -> Result<Opened, Error> {
        let url = &cfg.server.database_url;
        match DatabaseKind::of(url) {
            Some(DatabaseKind::Postgres) => {
                Ok(Opened::Postgres(Arc::new(PostgresStore::open(url).await?)))
            }
            // Config validation admits only the two schemes; anything else reaching
            // here is handed to SQLite, whose error names the URL.
            Some(DatabaseKind::Sqlite) | None => {
                Ok(Opened::Sqlite(Arc::new(SqliteStore::open(url).await?)))
            }
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        match self {
            Opened::Sqlite(s) => s.clone(),
            Opened::Postgres(p) => p.clone(),
        }
    }

    fn queue(&self) -> Option<Arc<dyn JobQueue>> {
        match self {
            Opened::Sqlite(_) => None,
            Opened::Postgres(p) => Some(p.clone()),
        }
    }

    async fn close(&self) {
        match self {
            Opened::Sqlite(s) => s.close().await,
            Opened::Postgres(p) => p.close().await,
        }
    }
}

/// With `[redis]`, moves every judge's limits and the verdict cache's shared tier to
/// Redis, before any call is made, and returns the shared buckets (for the per-key
/// quotas). The connection is lazy: a replica whose Redis is still down starts anyway,
/// on local limit shares and its local cache.
fn share_through_redis(
    cfg: &Config,
    grader: &Grader,
) -> Result<Option<Arc<dyn crate::limits::BucketStore>>, Error> {
    let Some(rc) = &cfg.redis else {
        return Ok(None);
    };
    let redis = crate::redis::Redis::connect(rc)
        .map_err(|m| Error::Invalid(crate::rubric::Invalid::one("redis.url", m)))?;
    let buckets: Arc<dyn crate::limits::BucketStore> = Arc::new(crate::limits::Failover::new(
        Arc::new(crate::redis::RedisBuckets(Arc::clone(&redis))),
        rc.replicas,
    ));
    let committee = &grader.committee;
    for client in committee
        .members
        .iter()
        .map(|m| &m.client)
        .chain(committee.escalation.iter())
    {
        client.limiter.share(client.name(), Arc::clone(&buckets));
    }
    let quotas = Arc::clone(&buckets);
    committee.cache.share(
        Arc::new(crate::redis::RedisTier {
            redis,
            ttl: cfg.cache.ttl,
        }),
        crate::cache::FlightConfig {
            lease: rc.lease,
            ..crate::cache::FlightConfig::default()
        },
    );
    Ok(Some(quotas))
}

/// Opens the store, resumes unfinished jobs and serves HTTP (and gRPC when a listener
/// is given) until `shutdown` is cancelled.
pub async fn start(
    cfg: &Config,
    http: TcpListener,
    grpc: Option<TcpListener>,
) -> Result<Running, Error> {
    let http_addr = http
        .local_addr()
        .map_err(|e| Error::Internal(e.to_string()))?;
    check_bind(cfg, http_addr, "http_addr")?;
    let grpc_addr = match &grpc {
        Some(l) => {
            let a = l.local_addr().map_err(|e| Error::Internal(e.to_string()))?;
            check_bind(cfg, a, "grpc_addr")?;
            Some(a)
        }
        None => None,
    };
    let opened = Opened::open(cfg).await?;
    let store = opened.store();
    let grader = Arc::new(Grader::with_store(cfg, Arc::clone(&store))?);
    let shared_limits = share_through_redis(cfg, &grader)?;
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let jobs = Jobs::new(
        Arc::clone(&grader),
        Arc::clone(&store),
        tracker.clone(),
        shutdown.clone(),
        cfg.server.job_concurrency,
        Arc::new(CalibrationFinisher {
            store: Arc::clone(&store),
        }),
        opened.queue().map(|queue| SharedQueue {
            queue,
            lease: cfg.server.job_lease,
        }),
    );
    let service = Arc::new(Service::new(
        grader,
        store,
        Arc::clone(&jobs),
        Auth::new(&cfg.server.api_keys).with_failed_key_limit(cfg.server.failed_keys_per_address),
        Limits {
            max_items_per_job: cfg.server.max_items_per_job,
            max_criteria_per_rubric: cfg.server.max_criteria_per_rubric,
            max_string_bytes: cfg.server.max_string_bytes,
            max_body_bytes: cfg.server.max_body_bytes,
        },
    ));
    if let Some(b) = shared_limits {
        service.share_quotas(b);
    }
    let resumed = jobs.resume().await?;
    if resumed > 0 {
        tracing::info!(jobs = resumed, "resumed unfinished jobs");
    }
    let state = HttpState {
        service: Arc::clone(&service),
        max_body_bytes: cfg.server.max_body_bytes,
        edge: crate::api::http::EdgeRules {
            allowed_hosts: cfg.server.allowed_hosts.clone().into(),
            body_idle_timeout: cfg.server.body_idle_timeout,
        },
    };
    let app = router(state);
    let http_token = shutdown.clone();
    let header_read_timeout = cfg.server.header_read_timeout;
    let http_task = tokio::spawn(async move {
        crate::api::http::serve(http, app, header_read_timeout, http_token).await;
    });
    let grpc_task = grpc.map(|listener| {
        let token = shutdown.clone();
        let service = Arc::clone(&service);
        let edge = crate::api::grpc::GrpcEdge::from_config(&cfg.server);
        tokio::spawn(async move {
            if let Err(e) =
                crate::api::grpc::serve_with_incoming(listener, service, edge, async move {
                    token.cancelled().await
                })
                .await
            {
                tracing::error!(error = %e, "gRPC server failed");
            }
        })
    });
    let token = shutdown.clone();
    let done = tokio::spawn(async move {
        token.cancelled().await;
        let _ = http_task.await;
        if let Some(t) = grpc_task {
            let _ = t.await;
        }
        // Job runners stop starting items and record the ones in flight.
        tracker.close();
        tracker.wait().await;
        opened.close().await;
        tracing::info!("tribunal stopped");
    });
    Ok(Running {
        http_addr,
        grpc_addr,
        service,
        shutdown,
        done,
    })
}
