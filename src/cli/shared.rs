//! Helpers every command shares: how a command fails (`Failure`), reading JSON Lines
//! and whole inputs (`-` is standard input), loading the config with every problem
//! listed, and starting the async runtime. Must not know any command: command files
//! use this, never each other.

use std::io::{BufRead, BufReader};
use std::path::Path;

use clap::ValueEnum;

use crate::app::LoadConfig as _;
use crate::config::Config;
use crate::rubric::Invalid;

/// Output format of `score`, `grade` and `calibrate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Table,
}

/// How a command failed: bad data (every problem listed), a runtime failure, or a
/// run that finished but did not do all it was asked (its own exit code and message).
pub(crate) enum Failure {
    Invalid(Vec<String>),
    Runtime(anyhow::Error),
    Incomplete { code: u8, message: String },
}

/// `tribunal grade`: some items failed (judges unavailable, quorum lost) or were
/// excluded because a judge abstained; the reports and summary are still written.
pub const EXIT_ITEMS_FAILED: u8 = 4;
/// `tribunal grade`: nothing was graded (every row failed or was skipped, e.g. rows
/// without a `response` and no `--use-reference`).
pub const EXIT_NOTHING_GRADED: u8 = 5;

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

pub(crate) fn open(path: &Path) -> anyhow::Result<Box<dyn BufRead>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let f = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    Ok(Box::new(BufReader::new(f)))
}

/// Reads JSON Lines, calling `f(line_number, text)` for each non-blank line. Lines
/// that are not UTF-8 are passed on as errors, not skipped.
pub(crate) fn for_each_line(
    path: &Path,
    mut f: impl FnMut(usize, Result<&str, String>),
) -> anyhow::Result<()> {
    let reader = open(path)?;
    for (i, line) in reader.split(b'\n').enumerate() {
        let n = i + 1;
        let bytes =
            line.map_err(|e| anyhow::anyhow!("reading {} line {n}: {e}", path.display()))?;
        match std::str::from_utf8(&bytes) {
            Ok(text) if text.trim().is_empty() => {}
            Ok(text) => f(n, Ok(text)),
            Err(e) => f(n, Err(format!("line {n}: not UTF-8 text ({e})"))),
        }
    }
    Ok(())
}

pub(crate) fn invalid_lines(n: usize, inv: &Invalid) -> impl Iterator<Item = String> + '_ {
    inv.0.iter().map(move |e| format!("line {n}: {e}"))
}

pub(crate) fn load_config(path: Option<&Path>) -> Result<Config, Failure> {
    load_config_with(path, std::env::vars())
}

/// Loads and validates the config against `env`, listing every problem.
pub(crate) fn load_config_with(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, Failure> {
    Config::load(path, env).map_err(|e| {
        Failure::Invalid(
            e.problems()
                .into_iter()
                .map(|p| format!("config: {p}"))
                .collect(),
        )
    })
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot start the async runtime: {e}")))
}

/// The committee's member names, for start-up lines.
pub fn member_names(cfg: &crate::config::Config) -> String {
    cfg.committee
        .members
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The format a summary is written in: the one asked for, else a table for a person
/// (the destination is a terminal) and JSON for a program (a pipe or a file).
pub(crate) fn format_for(asked: Option<Format>, terminal: bool) -> Format {
    match (asked, terminal) {
        (Some(f), _) => f,
        (None, true) => Format::Table,
        (None, false) => Format::Json,
    }
}

/// What the committee's members have spent so far, summed over members.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_micro_usd: u64,
}

impl Usage {
    pub(crate) fn of(grader: &crate::grader::Grader) -> Usage {
        use std::sync::atomic::Ordering::Relaxed;
        grader
            .committee
            .members
            .iter()
            .fold(Usage::default(), |acc, m| {
                let s = &m.client.stats;
                Usage {
                    calls: acc.calls + s.calls.load(Relaxed),
                    input_tokens: acc.input_tokens + s.input_tokens.load(Relaxed),
                    output_tokens: acc.output_tokens + s.output_tokens.load(Relaxed),
                    cost_micro_usd: acc.cost_micro_usd + s.cost_micro_usd.load(Relaxed),
                }
            })
    }

    /// The line that ends a human table: `judge calls 12, tokens 3400 (2800 in, 600 out), cost $0.0123`.
    pub(crate) fn line(&self) -> String {
        #[expect(clippy::cast_precision_loss, reason = "display only")]
        let usd = self.cost_micro_usd as f64 / 1e6;
        format!(
            "judge calls {}, tokens {} ({} in, {} out), cost ${usd:.4}\n",
            self.calls,
            self.input_tokens + self.output_tokens,
            self.input_tokens,
            self.output_tokens
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_gets_a_table_and_a_pipe_json_unless_asked() {
        let cases = [
            (None, true, Format::Table),
            (None, false, Format::Json),
            (Some(Format::Json), true, Format::Json),
            (Some(Format::Table), false, Format::Table),
        ];
        for (asked, terminal, want) in cases {
            assert_eq!(
                format_for(asked, terminal),
                want,
                "{asked:?} terminal={terminal}"
            );
        }
    }

    #[test]
    fn the_usage_line_sums_tokens_and_shows_dollars() {
        let u = Usage {
            calls: 12,
            input_tokens: 2800,
            output_tokens: 600,
            cost_micro_usd: 12_300,
        };
        assert_eq!(
            u.line(),
            "judge calls 12, tokens 3400 (2800 in, 600 out), cost $0.0123\n"
        );
    }
}
