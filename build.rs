//! Compiles proto/tribunal/v1/*.proto with protox (pure Rust), so no system protoc
//! is needed, and writes the descriptor set used by gRPC server reflection. Also
//! records the commit being built for `tribunal_build_info`, which must work without
//! git (a source tarball, a container without git): then the commit is `unknown`.

use std::path::PathBuf;
use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    build_commit();
    let fds = protox::compile(["tribunal/v1/tribunal.proto"], ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor = out.join("tribunal_descriptor.bin");
    std::fs::write(&descriptor, prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

/// Runs git and returns its trimmed stdout, or `None` when git is missing, this is
/// not a repository, or the command fails for any other reason.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// Sets `TRIBUNAL_BUILD_COMMIT`: the `TRIBUNAL_BUILD_COMMIT` env var if a packager set
/// it, else the short hash of HEAD, else `unknown`.
fn build_commit() {
    println!("cargo:rerun-if-env-changed=TRIBUNAL_BUILD_COMMIT");
    let commit = std::env::var("TRIBUNAL_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    // Only label-safe characters reach the metric, whatever the env var held.
    let commit: String = commit
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect();
    println!("cargo:rustc-env=TRIBUNAL_BUILD_COMMIT={commit}");
    // Rebuild when HEAD moves: HEAD itself (a branch switch or a detached checkout),
    // the branch it points to, and packed-refs (where `git gc` moves branch refs).
    // Paths come from git so that worktrees, whose HEAD lives apart from the refs,
    // work too. A path that does not exist is not named: cargo would rerun the build
    // script on every build.
    let mut watch = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watch.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watch.into_iter().flatten() {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
