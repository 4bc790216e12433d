//! Integration tests: one binary, one module per boundary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod auth;
mod boundary;
mod calibration;
mod calibration_live;
mod cancel;
mod cli_grade;
mod cli_score;
mod crash;
mod failures;
mod hardening;
mod healthbench_real;
mod judge_batch;
mod judge_cost;
mod judges;
mod labels;
mod mock_openai;
mod ops;
mod parity;
mod parsing;
mod published_methods;
mod quota_race;
mod redis_conformance;
mod replicas;
mod schema_examples;
mod server;
mod spawn;
mod store_conformance;
mod ui;
mod ui_browser;
mod uploads;

use std::path::{Path, PathBuf};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/data/<sub>` when present; tests print `skipped` and return when absent.
pub fn shared_data(sub: &str) -> Option<PathBuf> {
    let p = root().join("..").join("shared").join("data").join(sub);
    p.is_dir().then_some(p)
}

/// The `examples[]` entry of `summary` for `id`.
pub fn summary_example<'a>(summary: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    summary["examples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["prompt_id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {summary}"))
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the real `tribunal` binary.
pub fn tribunal(args: &[&str], cwd: &Path) -> Run {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tribunal"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run tribunal");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
