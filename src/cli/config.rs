//! `tribunal config check`: validates a configuration (every problem listed) and prints
//! it resolved, secrets masked. Builds judges and calls them only with `--probe` (one
//! tiny call per judge).

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
        /// Also make one tiny call per judge and report its model, latency and the
        /// exact error; exits 1 when any judge fails.
        #[arg(long)]
        probe: bool,
    },
}

pub(crate) fn run(command: &ConfigCommand) -> Result<(), Failure> {
    match command {
        ConfigCommand::Check { config, probe } => {
            check(config.as_deref())?;
            if *probe {
                probe_judges(config.as_deref())
            } else {
                Ok(())
            }
        }
    }
}

/// `--probe`: one call per configured judge, in name order, each reported on its own
/// line (`probe judge NAME (model M): ok in N ms` or `... FAILED after N ms: ERROR`).
fn probe_judges(path: Option<&Path>) -> Result<(), Failure> {
    use std::sync::Arc;

    use crate::judge::Provider;
    use crate::judge::call::JudgeClient;

    let cfg = load_config(path)?;
    let runtime = super::shared::runtime()?;
    let mut failed = Vec::new();
    for (name, j) in &cfg.judges {
        let provider: Arc<dyn Provider> = match &j.provider {
            crate::config::ProviderConfig::OpenAi(o) => {
                match crate::judge::provider::OpenAiProvider::new(j, o) {
                    Ok(p) => Arc::new(p),
                    Err(e) => {
                        println!("probe judge {name} (model {}): FAILED: {e}", j.model);
                        failed.push(name.clone());
                        continue;
                    }
                }
            }
            crate::config::ProviderConfig::Sim(s) => {
                Arc::new(crate::judge::sim::SimProvider::new(s.clone()))
            }
        };
        let client = JudgeClient::new(j.clone(), provider);
        let where_ = client
            .endpoint()
            .map_or_else(|| "simulated".to_owned(), |u| format!("at {u}"));
        match runtime.block_on(client.probe()) {
            Ok((took, parsed)) => println!(
                "probe judge {name} (model {}, {where_}): ok in {} ms{}",
                j.model,
                took.as_millis(),
                if parsed {
                    ""
                } else {
                    "; but its answer was not the JSON asked for (check the model and structured_output)"
                }
            ),
            Err((took, e)) => {
                println!(
                    "probe judge {name} (model {}, {where_}): FAILED after {} ms: {e}",
                    j.model,
                    took.as_millis()
                );
                failed.push(name.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Incomplete {
            code: 1,
            message: format!(
                "{} of {} judge(s) failed the probe: {}",
                failed.len(),
                cfg.judges.len(),
                failed.join(", ")
            ),
        })
    }
}

/// Notes on a judge's prices: none configured (reports then show `cost_usd: null` with
/// `unpriced: true`), or cached input billed at the full input price because
/// `price_cached_input_per_mtok` is unset (or equal to the input price).
fn price_notes(cfg: &Config) -> String {
    let mut out = String::new();
    for (name, j) in &cfg.judges {
        if j.simulated() {
            continue;
        }
        let unpriced = j.price_input_per_mtok == 0.0
            && j.price_cached_input_per_mtok == 0.0
            && j.price_output_per_mtok == 0.0;
        if unpriced {
            out.push_str(&format!(
                "NOTE: judge {name}: no price configured (price_input_per_mtok, price_output_per_mtok); reports show cost_usd null with unpriced: true\n"
            ));
        } else if j.price_input_per_mtok > 0.0
            && j.price_cached_input_per_mtok == j.price_input_per_mtok
        {
            out.push_str(&format!(
                "NOTE: judge {name}: cached input is priced at the full input price ({} per million tokens) because price_cached_input_per_mtok is unset; set it to the provider's cached price, or costs of prefix-cached prompts are overstated\n",
                j.price_input_per_mtok
            ));
        }
    }
    out
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
    notes.push_str(&price_notes(cfg));
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
