//! `tribunal score`: scores verdicts already in the file (no judges) and prints the
//! aggregate and per-example scores. Must not call judges or load a config.

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;

use super::shared::{Failure, Format, for_each_line, invalid_lines};
use crate::item::{Item, parse_line};
use crate::rubric::{Invalid, LengthAdjustment, OnAbstention, Policy, Rubric};
use crate::score::{self, DEFAULT_RESAMPLES, ExampleScore, report};

#[derive(Debug, Parser)]
pub struct ScoreArgs {
    /// JSON Lines file to score; `-` reads standard input.
    pub file: PathBuf,
    /// Score every row with this policy instead of the rubric's own.
    #[arg(long, value_parser = ["healthbench", "livemedbench", "quarkmed", "weighted"])]
    pub policy: Option<String>,
    /// Report length-adjusted figures beside the raw ones: `professional` (HealthBench
    /// Professional: center 2000, penalty 0.0147 per 500 chars) or CENTER,PENALTY.
    /// Replaces any adjustment the rubrics set.
    #[arg(long, value_parser = LengthAdjustment::parse)]
    pub length_adjustment: Option<LengthAdjustment>,
    /// Treat abstentions this way on every row instead of the rubric's own rule;
    /// `as_not_met` reproduces LiveMedBench's published figures and is flagged in the
    /// output.
    #[arg(long, value_parser = ["incomplete", "renormalize", "as_not_met"])]
    pub on_abstention: Option<String>,
    /// Seed for the bootstrap resampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Bootstrap resamples per figure.
    #[arg(long, default_value_t = DEFAULT_RESAMPLES)]
    pub resamples: usize,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

pub(crate) fn run(args: &ScoreArgs) -> Result<(), Failure> {
    let policy = args
        .policy
        .as_deref()
        .map(|p| {
            Policy::by_name(p)
                .ok_or_else(|| Failure::Invalid(vec![format!("--policy: unknown policy \"{p}\"")]))
        })
        .transpose()?;
    let on_abstention = args.on_abstention.as_deref().and_then(OnAbstention::parse);
    let mut errors = Vec::new();
    let mut scored: Vec<(String, ExampleScore)> = Vec::new();
    let mut seen = std::collections::HashMap::new();
    let mut duplicates = 0usize;
    for_each_line(&args.file, |n, text| {
        match text.map(|t| score_line(t, policy.as_ref(), on_abstention)) {
            Err(e) => errors.push(e),
            Ok(Ok((id, s))) => {
                if seen.insert(id.clone(), n).is_some() {
                    duplicates += 1;
                }
                scored.push((id, s));
            }
            Ok(Err(inv)) => errors.extend(invalid_lines(n, &inv)),
        }
    })?;
    if !errors.is_empty() {
        return Err(Failure::Invalid(errors));
    }
    if scored.is_empty() {
        return Err(Failure::Invalid(vec![format!(
            "{}: no rows to score (the file is empty)",
            args.file.display()
        )]));
    }
    if duplicates > 0 {
        let _ = writeln!(
            std::io::stderr(),
            "warning: {duplicates} rows repeat an earlier prompt_id; each row counts as its own example"
        );
    }
    if let Some(la) = args.length_adjustment {
        for (_, s) in &mut scored {
            s.length_adjustment = Some(la);
        }
    }
    let examples: Vec<ExampleScore> = scored.iter().map(|(_, s)| s.clone()).collect();
    let summary = score::summarize(&examples, args.seed, args.resamples);
    if summary.missing_response_length > 0 {
        let _ = writeln!(
            std::io::stderr(),
            "warning: {} rows have no `response`, so their length is unknown; they are left out of the length-adjusted figures",
            summary.missing_response_length
        );
    }
    if summary.as_not_met_criteria > 0 {
        let _ = writeln!(
            std::io::stderr(),
            "warning: on_abstention = as_not_met: {} abstained criteria counted as not met ({} rows scored under it)",
            summary.as_not_met_criteria,
            summary.as_not_met_examples
        );
    }
    let mut out = std::io::stdout().lock();
    let text = match args.format {
        Format::Json => {
            let v = report::summary_json(
                &summary,
                scored.iter().map(|(id, s)| (id.as_str(), s)),
                args.seed,
                args.resamples,
            );
            format!("{v}\n")
        }
        Format::Table => {
            let note = match &args.policy {
                Some(p) => format!("policy {p} (forced)"),
                None => "policy from each rubric".to_owned(),
            };
            report::summary_table(&summary, &note, args.seed)
        }
    };
    out.write_all(text.as_bytes())
        .map_err(|e| anyhow::anyhow!("writing output: {e}"))?;
    Ok(())
}

fn score_line(
    text: &str,
    policy: Option<&Policy>,
    on_abstention: Option<OnAbstention>,
) -> Result<(String, ExampleScore), Invalid> {
    let (_, item) = parse_line(text)?;
    let mut rubric = rubric_for(&item, policy)?;
    if let Some(o) = on_abstention {
        rubric.scoring.on_abstention = o;
    }
    let verdicts = item.aligned_verdicts(&rubric)?;
    let s = score::score_response(
        &rubric,
        &verdicts,
        &item.case.tags,
        item.response.as_deref(),
    );
    Ok((item.case.id, s))
}

fn rubric_for(item: &Item, policy: Option<&Policy>) -> Result<Rubric, Invalid> {
    let rubric = item.inline_rubric()?;
    match policy {
        None => Ok((**rubric).clone()),
        Some(p) => rubric.with_policy(p.clone()).map_err(|inv| {
            Invalid(
                inv.0
                    .into_iter()
                    .map(|mut e| {
                        e.message = format!("{} (with --policy {})", e.message, p.name());
                        e
                    })
                    .collect(),
            )
        }),
    }
}
