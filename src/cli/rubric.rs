//! `tribunal rubric check` and `tribunal rubric from-healthbench`: validates rubric.v1
//! documents and converts HealthBench rows into them. Must not call judges or load a
//! config.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::shared::{Failure, for_each_line, invalid_lines, open};
use crate::item::parse_line;
use crate::rubric::schema::parse_rubric;

#[derive(Debug, Subcommand)]
pub enum RubricCommand {
    /// Validate rubric.v1 documents (JSON files); every problem is listed with its field.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Convert HealthBench rows (JSONL) into rubric.v1 documents, one per line.
    FromHealthbench { file: PathBuf },
}

pub(crate) fn run(command: &RubricCommand) -> Result<(), Failure> {
    match command {
        RubricCommand::Check { files } => check(files),
        RubricCommand::FromHealthbench { file } => from_healthbench(file),
    }
}

fn check(files: &[PathBuf]) -> Result<(), Failure> {
    let mut errors = Vec::new();
    for path in files {
        let mut text = String::new();
        open(path)?
            .read_to_string(&mut text)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let doc: serde_json::Value = match serde_json::from_str(&text) {
            Ok(d) => d,
            Err(e) => {
                errors.push(format!("{}: not valid JSON: {e}", path.display()));
                continue;
            }
        };
        match parse_rubric(&doc) {
            Ok(r) => println!(
                "ok: {} {} ({} criteria, policy {})",
                path.display(),
                r.reference(),
                r.criteria.len(),
                r.scoring.policy.name()
            ),
            Err(inv) => errors.extend(inv.0.iter().map(|e| format!("{}: {e}", path.display()))),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::Invalid(errors))
    }
}

fn from_healthbench(path: &Path) -> Result<(), Failure> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for_each_line(path, |n, text| {
        let text = match text {
            Ok(t) => t,
            Err(e) => return errors.push(e),
        };
        match parse_line(text).and_then(|(_, item)| item.inline_rubric().map(|r| r.to_raw())) {
            Ok(raw) => match serde_json::to_string(&raw) {
                Ok(s) => out.push(s),
                Err(e) => errors.push(format!("line {n}: {e}")),
            },
            Err(inv) => errors.extend(invalid_lines(n, &inv)),
        }
    })?;
    if !errors.is_empty() {
        return Err(Failure::Invalid(errors));
    }
    let mut stdout = std::io::stdout().lock();
    for line in out {
        writeln!(stdout, "{line}").map_err(|e| anyhow::anyhow!("writing output: {e}"))?;
    }
    Ok(())
}
