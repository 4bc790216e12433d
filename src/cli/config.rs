//! `tribunal config check`: validates a configuration (every problem listed) and prints
//! it resolved, secrets masked. Must not build judges or open connections.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::shared::{Failure, load_config};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration (all problems listed) and print it resolved, secrets masked.
    Check {
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
}

pub(crate) fn run(command: &ConfigCommand) -> Result<(), Failure> {
    match command {
        ConfigCommand::Check { config } => check(config.as_deref()),
    }
}

fn check(path: Option<&Path>) -> Result<(), Failure> {
    let cfg = load_config(path)?;
    print!("{}", check_output(&cfg));
    Ok(())
}

/// What `config check` prints: the resolved configuration as TOML (secrets masked;
/// it loads back as a config file), then notes as TOML comments.
fn check_output(cfg: &Config) -> String {
    let mut out = crate::config::render_resolved_toml(cfg);
    let mut notes = String::new();
    if let Some(r) = &cfg.committee.reliability {
        notes.push_str(&format!(
            "committee reliability (dawid_skene): {} classes, judges {:?}\n",
            r.classes,
            r.confusion.keys().collect::<Vec<_>>()
        ));
    }
    notes.push_str(&redis_section(cfg));
    if cfg.simulated() {
        notes.push_str("NOTE: every judge is simulated; grades are not real.\n");
    }
    out.push('\n');
    for line in notes.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The `[redis]` lines: the connection (password masked), what is shared, and each
/// limit's fallback share (what one replica enforces alone while Redis is unreachable).
fn redis_section(cfg: &Config) -> String {
    let Some(r) = &cfg.redis else {
        return "redis: off (limits and the verdict cache are per replica)\n".to_owned();
    };
    let mut out = format!(
        "redis: url={} replicas={} key_prefix={} timeout={:?} lease={:?}\n",
        r.url_display(),
        r.replicas,
        r.key_prefix,
        r.timeout,
        r.lease
    );
    out.push_str(
        "redis shares: judge RPM/TPM, API key quotas, verdict cache tier, single flight\n",
    );
    let share = |l: u32| f64::from(l) / f64::from(r.replicas.max(1));
    for (name, j) in &cfg.judges {
        let l = &j.limits;
        let mut parts = Vec::new();
        if let Some(rpm) = l.requests_per_minute {
            parts.push(format!("requests_per_minute {rpm} -> {:.1}", share(rpm)));
        }
        if let Some(tpm) = l.tokens_per_minute {
            parts.push(format!("tokens_per_minute {tpm} -> {:.1}", share(tpm)));
        }
        if !parts.is_empty() {
            out.push_str(&format!(
                "redis fallback share of judge {name}: {}\n",
                parts.join(", ")
            ));
        }
    }
    for k in &cfg.server.api_keys {
        if let Some(rpm) = k.requests_per_minute {
            out.push_str(&format!(
                "redis fallback share of key {}: requests_per_minute {rpm} -> {:.1}\n",
                k.name,
                share(rpm)
            ));
        }
    }
    out
}
