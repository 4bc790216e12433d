//! `tribunal config check`: validates a configuration (every problem listed) and prints
//! it resolved, secrets masked. Must not build judges or open connections.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::shared::{Failure, load_config};
use crate::config::{Config, ProviderConfig};

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
    let mut out = String::new();
    for (name, j) in &cfg.judges {
        let provider = match &j.provider {
            ProviderConfig::OpenAi(o) => format!(
                "openai base_url={} api_key={} (from {})",
                crate::config::mask_url(o.base_url.as_str()),
                if o.api_key.is_some() { "****" } else { "none" },
                o.api_key_env.as_deref().unwrap_or("-")
            ),
            ProviderConfig::Sim(s) => format!("sim (SIMULATED) {s:?}"),
        };
        out.push_str(&format!(
            "judge {name}: model={} {provider} timeout={:?} limits={:?} retry={:?} sampling={:?}\n",
            j.model, j.timeout, j.limits, j.retry, j.sampling
        ));
    }
    let c = &cfg.committee;
    out.push_str(&format!(
        "committee: members={:?} n_samples={} consensus={:?} veto_consensus={:?} quorum={} escalation={:?} min_agreement={} prompt_mode={:?} prompts={} explanations={} request_timeout={:?}\ncache: {:?}\n",
        c.members, c.n_samples, c.consensus, c.veto_consensus, c.quorum, c.escalation, c.min_agreement, c.prompt_mode, c.prompts_dir.as_ref().map_or_else(|| c.prompts.as_str().to_owned(), |d| d.display().to_string()), c.explanations, c.request_timeout, cfg.cache
    ));
    if let Some(p) = &c.weights_from {
        out.push_str(&format!("committee weights from: {}\n", p.display()));
    }
    if let Some(r) = &c.reliability {
        out.push_str(&format!(
            "committee reliability (dawid_skene): {} classes, judges {:?}\n",
            r.classes,
            r.confusion.keys().collect::<Vec<_>>()
        ));
    }
    out.push_str(&format!(
        "telemetry: otlp_endpoint={} service_name={}\n",
        cfg.telemetry
            .otlp_endpoint
            .as_deref()
            .map_or_else(|| "off".to_owned(), crate::config::mask_url),
        cfg.telemetry.service_name
    ));
    out.push_str(&redis_section(&cfg));
    if cfg.simulated() {
        out.push_str("NOTE: every judge is simulated; grades are not real.\n");
    }
    print!("{out}");
    Ok(())
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
