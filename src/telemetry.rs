//! The tracing subscriber: pretty or JSON logs on stderr, filtered by `RUST_LOG`
//! (default `info`), and, when `[telemetry] otlp_endpoint` is set, the same spans
//! exported over OTLP/HTTP. Request ids are added by the HTTP middleware's span. Owns
//! the exporter's lifetime; must not name metrics (that is `metrics`).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::{LogFormat, TelemetryConfig};

/// Keeps the trace exporter alive; dropping it flushes the spans still buffered and
/// stops the exporter's thread. Must be dropped outside the tokio runtime: the
/// exporter's blocking HTTP client cannot shut down inside async code.
#[must_use = "dropping the guard stops trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// True when spans are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            // The subscriber may still log: this reaches stderr, not the exporter.
            tracing::warn!(error = %e, "flushing OTLP spans at shutdown failed");
        }
    }
}

/// Installs the global subscriber once; later calls install nothing (and export
/// nothing). Without an `otlp_endpoint` no exporter is built and no thread started.
/// An exporter that cannot be built is an error: like an invalid config, it stops
/// start-up rather than running silently without the traces that were asked for.
pub fn init(
    format: LogFormat,
    telemetry: &TelemetryConfig,
) -> Result<Telemetry, opentelemetry_otlp::ExporterBuildError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: a log redirected to a file or
    // collected by a supervisor gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = log_layer(format, std::io::stderr, ansi).with_filter(filter);
    let provider = telemetry
        .otlp_endpoint
        .as_deref()
        .map(|e| exporter(e, telemetry))
        .transpose()?;
    // Traces keep tribunal's own spans at info and above whatever `RUST_LOG` says for
    // the log, so quieting the log does not blind the traces; the exporter's HTTP
    // client is excluded so that exporting cannot trace itself.
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("tribunal"))
            .with_filter(
                Targets::new()
                    .with_target("tribunal", LevelFilter::INFO)
                    .with_default(LevelFilter::OFF),
            )
    });
    let installed = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .is_ok();
    Ok(Telemetry {
        provider: if installed { provider } else { None },
    })
}

/// The log layer: compact lines or JSON objects on `writer`, with ANSI colours only
/// when `ansi`. Span fields (the request span's `request_id`, method, route) appear
/// once per line, from the span; events must not repeat them.
pub fn log_layer<S, W>(
    format: LogFormat,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        // Every enclosing span once, in `spans` (`span` repeated the innermost one).
        LogFormat::Json => fmt.json().with_current_span(false).boxed(),
        LogFormat::Pretty => fmt.compact().boxed(),
    }
}

fn exporter(
    endpoint: &str,
    telemetry: &TelemetryConfig,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(telemetry.service_name.clone())
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION"),
                ))
                .build(),
        )
        .build())
}
