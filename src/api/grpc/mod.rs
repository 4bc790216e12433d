//! The gRPC transport: the tonic `Tribunal` service, health and reflection, and the
//! server entry points. Handlers only translate (decode, call one `Service` method,
//! encode); every domain decision stays in `service`, and no store or judge is
//! touched from here.

pub mod convert;
pub mod error;
mod preface;

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

use crate::service::{Caller, Service};
use crate::{Error, ErrorKind};

/// Generated proto types, client and server for `tribunal.v1`.
pub mod pb {
    tonic::include_proto!("tribunal.v1");
}

/// The encoded descriptor set of `tribunal.v1`, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tribunal_descriptor.bin"));

/// `ListJobs` page size when the request leaves `limit` at 0.
const DEFAULT_JOB_PAGE: u32 = 50;

/// What the gRPC edge takes from the config (`[server]`).
#[derive(Clone, Debug)]
pub struct GrpcEdge {
    /// `server.max_body_bytes`: the largest request message decoded.
    pub max_message_bytes: usize,
    /// `server.allowed_hosts`, checked against `:authority` (`service::auth::host_allowed`).
    pub allowed_hosts: Arc<[String]>,
    /// `server.header_read_timeout_ms`: the HTTP/2 preface must arrive within it, and
    /// keep-alive pings unanswered for this long close the connection.
    pub header_read_timeout: std::time::Duration,
    /// `server.body_idle_timeout_ms`: the longest pause in a request stream.
    pub body_idle_timeout: std::time::Duration,
}

impl GrpcEdge {
    pub fn from_config(server: &crate::config::ServerConfig) -> Self {
        GrpcEdge {
            max_message_bytes: server.max_body_bytes,
            allowed_hosts: server.allowed_hosts.clone().into(),
            header_read_timeout: server.header_read_timeout,
            body_idle_timeout: server.body_idle_timeout,
        }
    }
}

/// Interval of the server's HTTP/2 keep-alive pings.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// tonic's own statuses for a request message it could not decode (INTERNAL, after
/// the gRPC status-code guide) or that is over the size limit (OUT_OF_RANGE), turned
/// into what they are for the caller: INVALID_ARGUMENT and RESOURCE_EXHAUSTED naming
/// `server.max_body_bytes`. Any other status is left alone (None).
fn codec_status(s: &Status, max_message_bytes: usize) -> Option<Status> {
    let with_kind = |mut status: Status, kind: ErrorKind| {
        status.metadata_mut().insert(
            error::KIND_KEY,
            tonic::metadata::MetadataValue::from_static(kind.as_str()),
        );
        status
    };
    match s.code() {
        tonic::Code::Internal if s.message().starts_with("failed to decode Protobuf message") => {
            Some(with_kind(
                Status::invalid_argument(format!(
                    "the request message is not valid protobuf for this method ({}); check the client's .proto matches tribunal.v1",
                    crate::error::clip(s.message(), 200)
                )),
                ErrorKind::InvalidInput,
            ))
        }
        tonic::Code::OutOfRange if s.message().contains("decoded message length too large") => {
            Some(with_kind(
                Status::resource_exhausted(format!(
                    "the request message is over server.max_body_bytes ({max_message_bytes} bytes); send a smaller one (SubmitJobStream takes a job in chunks)"
                )),
                ErrorKind::TooLarge,
            ))
        }
        _ => None,
    }
}

/// The `Tribunal` gRPC service over the shared domain facade.
#[derive(Clone)]
pub struct GrpcApi {
    service: Arc<Service>,
    /// `server.max_body_bytes`, named when a streamed message is over it.
    max_message_bytes: usize,
}

impl GrpcApi {
    pub fn new(service: Arc<Service>, max_message_bytes: usize) -> Self {
        GrpcApi {
            service,
            max_message_bytes,
        }
    }
}

/// Maps a domain error to a status, logging it once here when it is the server's fault.
fn fail(rpc: &'static str, e: &Error) -> Status {
    match e.kind() {
        ErrorKind::Internal | ErrorKind::Io | ErrorKind::Unavailable => {
            tracing::error!(rpc, kind = e.kind().as_str(), error = %e, "gRPC request failed");
        }
        ErrorKind::InvalidInput
        | ErrorKind::NotFound
        | ErrorKind::Conflict
        | ErrorKind::Unauthenticated
        | ErrorKind::Forbidden
        | ErrorKind::RateLimited
        | ErrorKind::TooLarge
        | ErrorKind::Timeout => {
            tracing::debug!(rpc, kind = e.kind().as_str(), error = %e, "gRPC request rejected");
        }
    }
    error::status(e)
}

/// The caller the auth interceptor attached. Missing only if the service was mounted
/// without the interceptor: refuse rather than serve unauthenticated.
/// The client's request stream broke off: the submission cannot be complete.
fn stream_failed(s: &Status) -> Error {
    Error::Invalid(crate::rubric::Invalid::one(
        "items_json",
        format!("the request stream failed before its end: {}", s.message()),
    ))
}

fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| error::status(&Error::Unauthenticated("no caller on the request".into())))
}

/// Reads `authorization: Bearer <key>` metadata and attaches the `Caller`, through
/// the service's one transport-neutral check (the same one HTTP makes). A tower
/// service rather than a tonic interceptor because the check is async (a key's quota
/// may live in Redis); tonic hands the request's extensions on to the RPC.
#[derive(Clone)]
struct Authenticated<S> {
    inner: S,
    service: Arc<Service>,
    edge: GrpcEdge,
}

type HttpRequest = tonic::codegen::http::Request<tonic::body::Body>;
type HttpResponse = tonic::codegen::http::Response<tonic::body::Body>;

impl<S> tower::Service<HttpRequest> for Authenticated<S>
where
    S: tower::Service<HttpRequest, Response = HttpResponse, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<HttpResponse, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: HttpRequest) -> Self::Future {
        // The clone that was made ready is the one called (tower's readiness contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let service = Arc::clone(&self.service);
        let edge = self.edge.clone();
        Box::pin(async move {
            // `:authority` (or a `host` header), like HTTP's `Host` check.
            let authority = request
                .uri()
                .authority()
                .map(|a| a.as_str().to_owned())
                .or_else(|| {
                    request
                        .headers()
                        .get("host")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                });
            if let Err(e) = crate::service::auth::host_allowed(
                authority.as_deref(),
                !service.auth_enabled(),
                &edge.allowed_hosts,
            ) {
                return Ok(fail("authenticate", &e).into_http());
            }
            let header = request
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            let peer = request
                .extensions()
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(tonic::transport::server::TcpConnectInfo::remote_addr)
                .map(|a| a.ip());
            match service.authenticate_from(header.as_deref(), peer).await {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    let idle = edge.body_idle_timeout;
                    let request = request.map(|b| {
                        tonic::body::Body::new(tower_http::timeout::TimeoutBody::new(idle, b))
                    });
                    let response = inner.call(request).await?;
                    // A unary request tonic could not decode is answered at once
                    // (trailers-only), with its status in the headers.
                    let remapped = tonic::Status::from_header_map(response.headers())
                        .and_then(|s| codec_status(&s, edge.max_message_bytes));
                    Ok(remapped.map_or(response, Status::into_http))
                }
                Err(e) => Ok(fail("authenticate", &e).into_http()),
            }
        })
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

/// An empty string in a proto3 field means "not given".
fn given(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl pb::tribunal_server::Tribunal for GrpcApi {
    async fn grade(
        &self,
        request: Request<pb::GradeRequest>,
    ) -> Result<Response<pb::GradeResponse>, Status> {
        let caller = caller(&request)?;
        let doc = convert::parse_json(
            "item_json",
            &request.get_ref().item_json,
            &self.service.bounds(),
        )?;
        let report = self
            .service
            .grade(&caller, &doc)
            .await
            .map_err(|e| fail("Grade", &e))?;
        Ok(Response::new(pb::GradeResponse {
            report_json: convert::to_json(&report)?,
        }))
    }

    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        // Items stay as text: the service validates each one and reports problems
        // under `items[i]`, and stores the text as given.
        let job = self
            .service
            .submit_job(&caller, req.items_json, req.seed)
            .await
            .map_err(|e| fail("SubmitJob", &e))?;
        Ok(Response::new(convert::job(job)))
    }

    async fn estimate_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::JsonDocument>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let estimate = self
            .service
            .estimate_job_stream(
                &caller,
                futures::stream::iter(req.items_json.into_iter().map(Ok)),
            )
            .await
            .map_err(|e| fail("EstimateJob", &e))?;
        Ok(Response::new(convert::document(&estimate)?))
    }

    async fn submit_job_stream(
        &self,
        request: Request<tonic::Streaming<pb::SubmitJobChunk>>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = caller(&request)?;
        let max = self.max_message_bytes;
        let mut chunks = request.into_inner();
        let first = chunks.message().await.map_err(|s| {
            codec_status(&s, max).unwrap_or_else(|| fail("SubmitJobStream", &stream_failed(&s)))
        })?;
        let seed = first.as_ref().map_or(0, |c| c.seed);
        let head = futures::stream::iter(first.into_iter().flat_map(|c| c.items_json).map(Ok));
        // A chunk tonic could not decode (or over the size limit) is answered with
        // its own status, as for a unary call.
        let codec_failure: Arc<std::sync::Mutex<Option<Status>>> = Arc::default();
        let seen = Arc::clone(&codec_failure);
        // A broken client stream fails the whole submission (nothing is stored).
        let rest = chunks.flat_map(move |chunk| {
            let items: Vec<Result<String, Error>> = match chunk {
                Ok(c) => c.items_json.into_iter().map(Ok).collect(),
                Err(s) => {
                    if let Some(mapped) = codec_status(&s, max) {
                        *seen
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(mapped);
                    }
                    vec![Err(stream_failed(&s))]
                }
            };
            futures::stream::iter(items)
        });
        let job = self
            .service
            .submit_job_stream(&caller, head.chain(rest), seed)
            .await
            .map_err(|e| {
                codec_failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take()
                    .unwrap_or_else(|| fail("SubmitJobStream", &e))
            })?;
        Ok(Response::new(convert::job(job)))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let job = self
            .service
            .job(&caller(&request)?, &request.get_ref().id)
            .await
            .map_err(|e| fail("GetJob", &e))?;
        Ok(Response::new(convert::job(job)))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let req = request.get_ref();
        let limit = if req.limit == 0 {
            DEFAULT_JOB_PAGE
        } else {
            req.limit
        };
        let page = self
            .service
            .list_jobs(
                &caller(&request)?,
                given(&req.after),
                limit,
                given(&req.owner),
            )
            .await
            .map_err(|e| fail("ListJobs", &e))?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: page.jobs.into_iter().map(convert::job).collect(),
            next: page.next.unwrap_or_default(),
        }))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let job = self
            .service
            .cancel_job(&caller(&request)?, &request.get_ref().id)
            .await
            .map_err(|e| fail("CancelJob", &e))?;
        Ok(Response::new(convert::job(job)))
    }

    type StreamJobResultsStream = BoxStream<'static, Result<pb::JobResult, Status>>;

    async fn stream_job_results(
        &self,
        request: Request<pb::StreamJobResultsRequest>,
    ) -> Result<Response<Self::StreamJobResultsStream>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        // An unknown job is an error status on the call itself, not a stream that
        // fails after it opened. The stream is the service's; it stops when the
        // client goes away (tonic drops it).
        let pages = self
            .service
            .result_stream(&caller, &req.id, req.follow)
            .await
            .map_err(|e| fail("StreamJobResults", &e))?;
        let results = pages.flat_map(|page| {
            let messages: Vec<Result<pb::JobResult, Status>> = match page {
                Ok(rows) => rows
                    .into_iter()
                    .map(|r| {
                        Ok(pb::JobResult {
                            seq: r.seq,
                            json: r.json,
                        })
                    })
                    .collect(),
                Err(e) => vec![Err(fail("StreamJobResults", &e))],
            };
            futures::stream::iter(messages)
        });
        Ok(Response::new(Box::pin(results)))
    }

    async fn get_job_summary(
        &self,
        request: Request<pb::GetJobSummaryRequest>,
    ) -> Result<Response<pb::JsonDocument>, Status> {
        let req = request.get_ref();
        let summary = self
            .service
            .summary(
                &caller(&request)?,
                &req.id,
                Some(req.length_adjustment.as_str()),
            )
            .await
            .map_err(|e| fail("GetJobSummary", &e))?;
        Ok(Response::new(convert::document(&summary)?))
    }

    async fn create_rubric(
        &self,
        request: Request<pb::JsonDocument>,
    ) -> Result<Response<pb::JsonDocument>, Status> {
        let doc = convert::parse_json("json", &request.get_ref().json, &self.service.bounds())?;
        // `created` (new version or identical re-upload) has no place in the
        // contract's reply; both answers carry the stored rubric.
        let (rubric, _created) = self
            .service
            .create_rubric(&caller(&request)?, &doc)
            .await
            .map_err(|e| fail("CreateRubric", &e))?;
        Ok(Response::new(convert::document(&rubric)?))
    }

    async fn validate_rubric(
        &self,
        request: Request<pb::JsonDocument>,
    ) -> Result<Response<pb::ValidateRubricResponse>, Status> {
        let doc = convert::parse_json("json", &request.get_ref().json, &self.service.bounds())?;
        let checked = self
            .service
            .validate_rubric(&caller(&request)?, &doc)
            .map_err(|e| fail("ValidateRubric", &e))?;
        Ok(Response::new(convert::validation(checked)))
    }

    async fn get_rubric(
        &self,
        request: Request<pb::GetRubricRequest>,
    ) -> Result<Response<pb::JsonDocument>, Status> {
        let req = request.get_ref();
        let rubric = self
            .service
            .rubric(
                &caller(&request)?,
                &req.id,
                convert::rubric_version(req.version),
            )
            .await
            .map_err(|e| fail("GetRubric", &e))?;
        Ok(Response::new(convert::document(&rubric)?))
    }

    async fn list_rubrics(
        &self,
        request: Request<pb::ListRubricsRequest>,
    ) -> Result<Response<pb::JsonDocument>, Status> {
        let rubrics = self
            .service
            .rubrics(&caller(&request)?)
            .await
            .map_err(|e| fail("ListRubrics", &e))?;
        Ok(Response::new(convert::document(&rubrics)?))
    }

    async fn create_calibration_set(
        &self,
        request: Request<pb::JsonDocument>,
    ) -> Result<Response<pb::JsonDocument>, Status> {
        let text = &request.get_ref().json;
        let new = convert::parse_typed("json", text, &self.service.bounds()).map_err(|st| {
            if crate::service::calibration::is_unwrapped_set_file(text) {
                let hint = crate::service::calibration::UNWRAPPED_SET_HINT;
                Status::with_metadata(
                    st.code(),
                    format!("{}; {hint}", st.message()),
                    st.metadata().clone(),
                )
            } else {
                st
            }
        })?;
        let set = self
            .service
            .create_calibration_set(&caller(&request)?, &new)
            .await
            .map_err(|e| fail("CreateCalibrationSet", &e))?;
        Ok(Response::new(convert::document(&set)?))
    }

    async fn list_calibration_sets(
        &self,
        request: Request<pb::ListCalibrationSetsRequest>,
    ) -> Result<Response<pb::JsonDocument>, Status> {
        let sets = self
            .service
            .calibration_sets(&caller(&request)?, given(&request.get_ref().owner))
            .await
            .map_err(|e| fail("ListCalibrationSets", &e))?;
        Ok(Response::new(convert::document(&sets)?))
    }

    async fn get_calibration_set(
        &self,
        request: Request<pb::GetCalibrationSetRequest>,
    ) -> Result<Response<pb::JsonDocument>, Status> {
        let set = self
            .service
            .calibration_set(&caller(&request)?, &request.get_ref().id)
            .await
            .map_err(|e| fail("GetCalibrationSet", &e))?;
        Ok(Response::new(convert::document(&set)?))
    }

    async fn add_calibration_labels(
        &self,
        request: Request<pb::AddCalibrationLabelsRequest>,
    ) -> Result<Response<pb::JsonDocument>, Status> {
        let req = request.get_ref();
        let doc = convert::parse_json("json", &req.json, &self.service.bounds())?;
        let added = self
            .service
            .add_calibration_labels(&caller(&request)?, &req.set_id, &doc)
            .await
            .map_err(|e| fail("AddCalibrationLabels", &e))?;
        Ok(Response::new(convert::document(&added)?))
    }

    async fn start_calibration_run(
        &self,
        request: Request<pb::JsonDocument>,
    ) -> Result<Response<pb::JsonDocument>, Status> {
        let new = convert::parse_typed("json", &request.get_ref().json, &self.service.bounds())?;
        let run = self
            .service
            .start_calibration_run(&caller(&request)?, &new)
            .await
            .map_err(|e| fail("StartCalibrationRun", &e))?;
        Ok(Response::new(convert::document(&run)?))
    }

    async fn get_calibration_run(
        &self,
        request: Request<pb::GetCalibrationRunRequest>,
    ) -> Result<Response<pb::JsonDocument>, Status> {
        let run = self
            .service
            .calibration_run(&caller(&request)?, &request.get_ref().id)
            .await
            .map_err(|e| fail("GetCalibrationRun", &e))?;
        Ok(Response::new(convert::document(&run)?))
    }

    async fn get_label_history(
        &self,
        request: Request<pb::GetLabelHistoryRequest>,
    ) -> Result<Response<pb::JsonDocument>, Status> {
        let req = request.get_ref();
        let history = self
            .service
            .label_history(&caller(&request)?, &req.set_id, req.item.as_deref())
            .await
            .map_err(|e| fail("GetLabelHistory", &e))?;
        Ok(Response::new(convert::document(&history)?))
    }

    async fn undo_calibration_label(
        &self,
        request: Request<pb::UndoCalibrationLabelRequest>,
    ) -> Result<Response<pb::JsonDocument>, Status> {
        let undone = self
            .service
            .undo_calibration_label(&caller(&request)?, &request.get_ref().set_id)
            .await
            .map_err(|e| fail("UndoCalibrationLabel", &e))?;
        Ok(Response::new(convert::document(&undone)?))
    }

    async fn list_calibration_disagreements(
        &self,
        request: Request<pb::ListCalibrationDisagreementsRequest>,
    ) -> Result<Response<pb::JsonDocument>, Status> {
        let req = request.get_ref();
        let limit = if req.limit == 0 { 50 } else { req.limit };
        let page = self
            .service
            .calibration_disagreements(&caller(&request)?, &req.id, req.after, limit)
            .await
            .map_err(|e| fail("ListCalibrationDisagreements", &e))?;
        Ok(Response::new(convert::document(&page)?))
    }
}

/// A reflection builder that knows the Tribunal and health services' descriptors.
fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Logs a reflection service that could not be built. The descriptor sets are built
/// into the binary, so this is a build bug; serving without reflection beats not serving.
fn reflection_disabled(version: &str, error: &tonic_reflection::server::Error) {
    tracing::error!(version, error = %error, "gRPC reflection disabled: bad descriptor set");
}

/// The Tribunal service wrapped for the server, with health and reflection.
async fn router(service: Arc<Service>, edge: &GrpcEdge) -> tonic::transport::server::Router {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::tribunal_server::TribunalServer<GrpcApi>>()
        .await;
    // Both reflection protocols: grpcurl and newer tools speak v1, while Python's
    // grpcio-reflection and older GUI clients only speak v1alpha. Each builder also
    // registers the health service's descriptors, so `list` shows it next to Tribunal.
    let reflection_v1 = reflection_builder()
        .build_v1()
        .inspect_err(|e| reflection_disabled("v1", e))
        .ok();
    let reflection_v1alpha = reflection_builder()
        .build_v1alpha()
        .inspect_err(|e| reflection_disabled("v1alpha", e))
        .ok();
    let tribunal = pb::tribunal_server::TribunalServer::new(GrpcApi::new(
        Arc::clone(&service),
        edge.max_message_bytes,
    ))
    // Jobs arrive as one message; tonic's 4 MiB default would refuse large ones
    // before `max_items_per_job` could answer clearly. The HTTP body limit applies.
    .max_decoding_message_size(edge.max_message_bytes);
    // Health and reflection stay open, like `/healthz` and `/openapi.json`.
    let authenticated = Authenticated {
        inner: tribunal,
        service,
        edge: edge.clone(),
    };
    Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(edge.header_read_timeout))
        .add_service(health)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(authenticated)
}

/// Serves gRPC on `listener` until `shutdown` resolves; in-flight calls then finish.
/// Every connection must send the HTTP/2 preface within `edge.header_read_timeout`.
pub async fn serve_with_incoming(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
    edge: GrpcEdge,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let preface = edge.header_read_timeout;
    let incoming = TcpListenerStream::new(listener).map(move |conn| {
        conn.map(|stream| {
            // Like tonic's own accept loop: no Nagle delay on small replies.
            let _ = stream.set_nodelay(true);
            preface::PrefaceDeadline::new(stream, preface)
        })
    });
    router(service, &edge)
        .await
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_set_builds_reflection() {
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .with_service_name("tribunal.v1.Tribunal")
            .build_v1();
        assert!(reflection.is_ok());
    }

    mod end_to_end {
        //! One server on port 0 with the simulated committee and a temp SQLite store.

        use super::super::*;
        use crate::config::Config;
        use pb::tribunal_client::TribunalClient;
        use std::time::Duration;

        const ITEMS: &str = include_str!("../../../tests/fixtures/grade-small.jsonl");

        struct TestServer {
            client: TribunalClient<tonic::transport::Channel>,
            channel: tonic::transport::Channel,
            running: crate::app::Running,
            _dir: tempfile::TempDir,
        }

        /// The whole server as `app::start` builds it (the transport builds nothing).
        async fn spawn() -> TestServer {
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = Config::default_simulated().unwrap();
            cfg.server.database_url = format!("sqlite://{}", dir.path().join("t.db").display());
            cfg.server.max_items_per_job = 10;
            let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let running = crate::app::start(&cfg, http, Some(grpc)).await.unwrap();
            let addr = running.grpc_addr.unwrap();
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            TestServer {
                client: TribunalClient::new(channel.clone()),
                channel,
                running,
                _dir: dir,
            }
        }

        #[tokio::test]
        async fn grade_jobs_and_errors_over_the_wire() {
            let mut t = spawn().await;
            let line = ITEMS.lines().next().unwrap();

            let report = t
                .client
                .grade(pb::GradeRequest {
                    item_json: line.into(),
                })
                .await
                .unwrap()
                .into_inner();
            let v: serde_json::Value = serde_json::from_str(&report.report_json).unwrap();
            assert_eq!(v["format"], "grade_report.v1");

            let bad = t
                .client
                .grade(pb::GradeRequest {
                    item_json: "{".into(),
                })
                .await
                .unwrap_err();
            assert_eq!(bad.code(), tonic::Code::InvalidArgument);
            assert!(
                bad.message().starts_with("item_json: not valid JSON"),
                "{}",
                bad.message()
            );

            let job = t
                .client
                .submit_job(pb::SubmitJobRequest {
                    items_json: ITEMS.lines().map(str::to_owned).collect(),
                    seed: 1,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(job.total, 2);

            let mut stream = t
                .client
                .stream_job_results(pb::StreamJobResultsRequest {
                    id: job.id.clone(),
                    follow: true,
                })
                .await
                .unwrap()
                .into_inner();
            let mut seqs = Vec::new();
            while let Some(r) = tokio::time::timeout(Duration::from_secs(30), stream.next())
                .await
                .unwrap()
            {
                seqs.push(r.unwrap().seq);
            }
            seqs.sort_unstable();
            assert_eq!(seqs.len(), 2, "{seqs:?}");

            let done = t
                .client
                .get_job(pb::GetJobRequest { id: job.id.clone() })
                .await
                .unwrap()
                .into_inner();
            assert_eq!((done.state.as_str(), done.pending), ("done", 0));

            let listed = t
                .client
                .list_jobs(pb::ListJobsRequest::default())
                .await
                .unwrap()
                .into_inner();
            assert_eq!(listed.jobs.len(), 1);

            let missing = t
                .client
                .get_job(pb::GetJobRequest { id: "nope".into() })
                .await
                .unwrap_err();
            assert_eq!(missing.code(), tonic::Code::NotFound);
            assert_eq!(
                missing
                    .metadata()
                    .get(error::KIND_KEY)
                    .and_then(|v| v.to_str().ok()),
                Some("not_found")
            );
            let missing = t
                .client
                .stream_job_results(pb::StreamJobResultsRequest {
                    id: "nope".into(),
                    follow: true,
                })
                .await
                .unwrap_err();
            assert_eq!(missing.code(), tonic::Code::NotFound);

            let invalid = t
                .client
                .validate_rubric(pb::JsonDocument { json: "{}".into() })
                .await
                .unwrap()
                .into_inner();
            assert!(!invalid.valid && !invalid.problems.is_empty());

            let rubrics = t
                .client
                .list_rubrics(pb::ListRubricsRequest {})
                .await
                .unwrap()
                .into_inner();
            assert_eq!(rubrics.json, r#"{"rubrics":[]}"#);

            let mut health = tonic_health::pb::health_client::HealthClient::new(t.channel.clone());
            let served = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: "tribunal.v1.Tribunal".into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                served.status,
                tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            );
            t.running.stop().await;
        }
    }
}
