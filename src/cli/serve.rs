//! `tribunal serve`: resolves the config (CLI flags over env over file), binds the
//! HTTP and gRPC listeners, starts the server through `app` and stops it gracefully
//! on Ctrl-C or SIGTERM. Must not build the store, judges or routers itself (`app`
//! does).

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;

use super::shared::{Failure, load_config_with, runtime};

#[derive(Debug, Parser)]
pub struct ServeArgs {
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// HTTP listen address (default 127.0.0.1:8080).
    #[arg(long)]
    pub http_addr: Option<String>,
    /// gRPC listen address (default 127.0.0.1:50051).
    #[arg(long)]
    pub grpc_addr: Option<String>,
    /// Database URL (default sqlite://tribunal.db).
    #[arg(long)]
    pub database: Option<String>,
}

pub(crate) fn run(args: &ServeArgs) -> Result<(), Failure> {
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    // CLI flags win over the file and the environment.
    for (key, value) in [
        ("TRIBUNAL__SERVER__HTTP_ADDR", &args.http_addr),
        ("TRIBUNAL__SERVER__GRPC_ADDR", &args.grpc_addr),
        ("TRIBUNAL__SERVER__DATABASE_URL", &args.database),
    ] {
        if let Some(v) = value {
            env.push((key.to_owned(), format!("\"{}\"", v.replace('"', ""))));
        }
    }
    let cfg = load_config_with(args.config.as_deref(), env)?;
    // Declared before the runtime so that it is dropped after it: the guard flushes
    // buffered spans when it drops, which must happen outside async code.
    let telemetry = crate::telemetry::init(cfg.server.log_format, &cfg.telemetry).map_err(|e| {
        Failure::Runtime(anyhow::anyhow!(
            "cannot export traces to {} (telemetry.otlp_endpoint): {e}",
            cfg.telemetry
                .otlp_endpoint
                .as_deref()
                .map_or_else(|| "-".to_owned(), crate::config::mask_url)
        ))
    })?;
    let runtime = runtime()?;
    runtime.block_on(async {
        let http = tokio::net::TcpListener::bind(cfg.server.http_addr)
            .await
            .map_err(|e| {
                Failure::Runtime(anyhow::anyhow!(
                    "cannot listen on {} (server.http_addr): {e}",
                    cfg.server.http_addr
                ))
            })?;
        let grpc = tokio::net::TcpListener::bind(cfg.server.grpc_addr)
            .await
            .map_err(|e| {
                Failure::Runtime(anyhow::anyhow!(
                    "cannot listen on {} (server.grpc_addr): {e}",
                    cfg.server.grpc_addr
                ))
            })?;
        let running = crate::app::start(&cfg, http, Some(grpc))
            .await
            .map_err(|e| match e {
                crate::Error::Invalid(inv) => {
                    Failure::Invalid(inv.0.iter().map(|p| format!("config: {p}")).collect())
                }
                other => Failure::Runtime(anyhow::anyhow!("{other}")),
            })?;
        let names = super::shared::member_names(&cfg);
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "tribunal serving HTTP on http://{} and gRPC on {}; store {}; committee [{}]{}",
            running.http_addr,
            running
                .grpc_addr
                .map_or_else(|| "-".to_owned(), |a| a.to_string()),
            cfg.server.database_display(),
            names,
            simulated_note(cfg.simulated(), args.config.as_deref())
        );
        drop(err);
        tracing::info!(
            http = %running.http_addr,
            simulated = cfg.simulated(),
            otlp = telemetry.exporting(),
            "tribunal started"
        );
        let token = running.shutdown.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: no new requests; recording in-flight job items");
            token.cancel();
        });
        running.wait().await;
        Ok::<(), Failure>(())
    })
}

/// The banner's word on a simulated committee, right for each case: no file (give
/// one with --config), or a file whose judges are simulated (it defines no real
/// `[judges]`, or uses `provider = "sim"`).
fn simulated_note(simulated: bool, config: Option<&std::path::Path>) -> String {
    match (simulated, config) {
        (false, _) => String::new(),
        (true, None) => {
            " is SIMULATED: grades are not real judgements (no --config given: configure real judges in a file, see README \"Configuration\")".to_owned()
        }
        (true, Some(path)) => format!(
            " is SIMULATED: grades are not real judgements ({} defines no real judges: add [judges] with provider = \"openai\", see README \"Configuration\")",
            path.display()
        ),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::simulated_note;

    #[test]
    fn the_banner_says_what_to_do_in_each_case() {
        assert_eq!(simulated_note(false, None), "");
        assert_eq!(
            simulated_note(false, Some(std::path::Path::new("t.toml"))),
            ""
        );
        let none = simulated_note(true, None);
        assert!(
            none.contains("SIMULATED") && none.contains("no --config given"),
            "{none}"
        );
        let file = simulated_note(true, Some(std::path::Path::new("team.toml")));
        assert!(
            file.contains("SIMULATED") && file.contains("team.toml defines no real judges"),
            "{file}"
        );
        assert!(!file.contains("configure judges with --config"), "{file}");
    }
}
