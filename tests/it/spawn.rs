//! Starts the real `tribunal serve` binary on loopback ports chosen by the OS and reads
//! its URL from the start-up line. Shared by the crash test and the server bench.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Server {
    pub child: Child,
    pub url: String,
    /// `http://host:port` of the gRPC listener.
    pub grpc_url: String,
}

pub fn serve(cfg: &std::path::Path) -> Server {
    serve_binary(std::path::Path::new(env!("CARGO_BIN_EXE_tribunal")), cfg)
}

/// `serve` with another build of the binary (a bench comparing two commits).
pub fn serve_binary(bin: &std::path::Path, cfg: &std::path::Path) -> Server {
    let mut child = Command::new(bin)
        .args([
            "serve",
            "-c",
            cfg.to_str().unwrap(),
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("tribunal serving HTTP on ") {
                let mut words = rest.split_whitespace();
                let url = words.next().unwrap_or_default().to_owned();
                // "... and gRPC on <addr>;"
                let grpc = words
                    .skip_while(|w| *w != "on")
                    .nth(1)
                    .unwrap_or_default()
                    .trim_end_matches(';')
                    .to_owned();
                let _ = tx.send((url, format!("http://{grpc}")));
            }
        }
    });
    let (url, grpc_url) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server did not start");
    Server {
        child,
        url,
        grpc_url,
    }
}
