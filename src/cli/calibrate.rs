//! `tribunal calibrate`: judge-human agreement on a calibration set read in any
//! supported format, offline (the judge labels in the file) or live (the configured
//! committee judges the set's items through the normal cached, rate-limited path).
//! Must not compute statistics itself (`calibration` does) or touch a store. A live run
//! printed to a terminal ends with the report's table and the judges' usage; JSON otherwise.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use futures::StreamExt;

use super::shared::{Failure, Format, Usage, format_for, load_config, open, runtime};
use crate::grader::Grader;
use crate::item::parse_line;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CalibrationInput {
    /// `calibration.v1` JSONL (header line + items).
    Calibration,
    /// K-QA `NLI_medical_annotator.csv` (three physicians per row).
    Kqa,
    /// HealthBench meta-eval JSONL (`binary_labels`, `anonymized_physician_ids`).
    HealthbenchMeta,
    /// Any CSV with a header row, read through --map.
    Csv,
}

#[derive(Debug, Parser)]
#[command(after_help = "CSV input: --map names the columns, e.g.
  --input csv --map id=row_id,category=topic,criterion=claim,case=question,response=answer,human:alice=label_a,human:bob=label_b,judge:gpt4=gpt_label
Keys: id, category, criterion, case, response, human:RATER, judge:RATER (at least one label column).
Empty label cells are missing labels. See calibration/README.md.")]
pub struct CalibrateArgs {
    /// The calibration set (format per --input); `-` reads standard input.
    pub file: PathBuf,
    /// Use the judge labels already in the file (no model calls). Without it, the
    /// configured committee judges every item that has a case, response and criterion.
    #[arg(long)]
    pub offline: bool,
    /// Config file for live runs (default: the built-in simulated committee).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Items judged concurrently in a live run, as an explicit cap; by default the
    /// committee's call budget (twice the widest judge's max_concurrency), so the
    /// judges' own limits are the only throttle.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub concurrency: Option<u64>,
    #[arg(long, value_enum, default_value_t = CalibrationInput::Calibration)]
    pub input: CalibrationInput,
    /// CSV column mapping, KEY=COLUMN,... (required with --input csv; see below).
    #[arg(long, value_name = "SPEC", required_if_eq("input", "csv"))]
    pub map: Option<String>,
    /// The set's scale: overrides the file's; for --input csv, declares it (default nominal).
    #[arg(long, value_parser = ["nominal", "ordinal", "interval"])]
    pub scale: Option<String>,
    /// CSV categories in order, low to high (required for an ordinal scale; by default
    /// the sorted distinct label values).
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    pub categories: Option<Vec<String>>,
    /// CSV: the category that means "criterion met".
    #[arg(long, value_name = "CATEGORY")]
    pub met: Option<String>,
    /// CSV: the set's name (default: the file name without its extension).
    #[arg(long)]
    pub name: Option<String>,
    /// Default: JSON, except a live run printed to a terminal, which gets the table.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Bootstrap resamples per coefficient.
    #[arg(long, default_value_t = 1000)]
    pub resamples: usize,
    /// The fewest items two humans must both have labelled for their pair to count in
    /// the human band (default: the set header's `min_pair_items`, else 20).
    #[arg(long)]
    pub min_pair_items: Option<usize>,
}

pub(crate) fn run(args: &CalibrateArgs) -> Result<(), Failure> {
    use crate::calibration::{
        ReportOptions,
        agreement::report::{agreement_report_doc, report_table},
        set,
    };
    let mut text = String::new();
    open(&args.file)?
        .read_to_string(&mut text)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", args.file.display()))?;
    let csv_only = [
        ("--map", args.map.is_some()),
        ("--categories", args.categories.is_some()),
        ("--met", args.met.is_some()),
        ("--name", args.name.is_some()),
    ];
    let parsed = match (args.input, &args.map) {
        (CalibrationInput::Csv, Some(spec)) => {
            let mut m = set::parse_csv_mapping(spec)
                .map_err(|e| Failure::Invalid(vec![format!("--map: {e}")]))?;
            m.scale = args
                .scale
                .as_deref()
                .and_then(set::Scale::parse)
                .unwrap_or(set::Scale::Nominal);
            m.categories.clone_from(&args.categories);
            m.met.clone_from(&args.met);
            m.name = match (&args.name, args.file.file_stem()) {
                // The server's rule for set names (`names`), so a name the CLI accepts
                // is one the server accepts too.
                (Some(n), _) => crate::names::name(n)
                    .map_err(|e| Failure::Invalid(vec![format!("--name: {e}")]))?,
                (None, Some(stem)) if args.file.as_os_str() != "-" => {
                    stem.to_string_lossy().into_owned()
                }
                (None, _) => "csv".to_owned(),
            };
            set::import_csv(&text, &m)
        }
        // clap requires --map with --input csv.
        (CalibrationInput::Csv, None) => Err(vec!["--map: required with --input csv".into()]),
        (input, _) if csv_only.iter().any(|(_, given)| *given) => {
            let flags: Vec<&str> = csv_only
                .iter()
                .filter(|(_, given)| *given)
                .map(|(f, _)| *f)
                .collect();
            return Err(Failure::Invalid(vec![format!(
                "{}: only for --input csv (this is --input {})",
                flags.join(", "),
                input
                    .to_possible_value()
                    .map_or_else(String::new, |v| v.get_name().to_owned())
            )]));
        }
        (CalibrationInput::Calibration, _) => set::parse_set(&text),
        (CalibrationInput::Kqa, _) => set::import_kqa(&text),
        (CalibrationInput::HealthbenchMeta, _) => set::import_healthbench_meta(&text),
    };
    let mut set = parsed.map_err(Failure::Invalid)?;
    if let Some(s) = args.scale.as_deref().and_then(set::Scale::parse) {
        if s == set::Scale::Interval && set.scale != set::Scale::Interval {
            return Err(Failure::Invalid(vec![
                "--scale interval: this set has category labels, not numbers".into(),
            ]));
        }
        set.scale = s;
    }
    let opts = ReportOptions {
        seed: args.seed,
        resamples: args.resamples,
        min_pair_items: args.min_pair_items,
        ..ReportOptions::default()
    };
    // Offline reports stay JSON by default, as they always were (scripts read them);
    // a live run is a person waiting on judges, so a terminal gets the table.
    let (report, usage, format) = if args.offline {
        let format = args.format.unwrap_or(Format::Json);
        (agreement_report_doc(&set, &opts), None, format)
    } else {
        let (report, usage) = run_live(&set, args.config.as_deref(), args.concurrency, &opts)?;
        let format = format_for(args.format, std::io::stdout().is_terminal());
        (report, Some(usage), format)
    };
    let text = match format {
        Format::Json => format!(
            "{}\n",
            serde_json::to_string(&report).map_err(|e| anyhow::anyhow!("report: {e}"))?
        ),
        Format::Table => format!(
            "{}{}",
            report_table(&report),
            usage.map(|u| u.line()).unwrap_or_default()
        ),
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| anyhow::anyhow!("writing output: {e}"))?;
    Ok(())
}

/// `tribunal calibrate SET --config FILE` without `--offline`: runs the configured
/// committee over the set's items through the normal cached, rate-limited path, then
/// returns the agreement report on the judges' fresh labels (plus the committee's).
fn run_live(
    set: &crate::calibration::CalibrationSet,
    config: Option<&Path>,
    concurrency: Option<u64>,
    opts: &crate::calibration::ReportOptions,
) -> Result<(crate::calibration::report::AgreementReport, Usage), Failure> {
    use crate::calibration::{live, report};
    let cfg = load_config(config)?;
    let grader =
        Arc::new(Grader::from_config(&cfg).map_err(|e| Failure::Runtime(anyhow::anyhow!("{e}")))?);
    if set.items.iter().any(|i| {
        matches!(
            i.task.as_ref().map(|t| &t.criterion),
            Some(crate::calibration::set::TaskCriterion::Reference { .. })
        )
    }) {
        return Err(Failure::Invalid(vec![
            "items name criteria by `rubric` + `criterion_id`; the CLI has no rubric store, so write the criterion inline (`criterion`) or run the set on the server (POST /v1/calibration/runs)".into(),
        ]));
    }
    let plan = live::plan(set, &std::collections::BTreeMap::new(), grader.simulated())
        .map_err(Failure::Invalid)?;
    let names = super::shared::member_names(&cfg);
    eprintln!(
        "tribunal: calibrating committee [{}]{} on {} items ({} without a case, response and criterion skipped)",
        names,
        if grader.simulated() {
            " (SIMULATED: each judge is handed the human majority as its reference label)"
        } else {
            ""
        },
        plan.rows.len(),
        plan.skipped
    );
    // Each calibration item asks one criterion, so an item is one call per judge.
    let concurrency = concurrency.map_or_else(
        || grader.committee.call_budget(),
        |c| usize::try_from(c).unwrap_or(usize::MAX),
    );
    let runtime = runtime()?;
    let (results, failed) = runtime.block_on(async {
        let graded: Vec<(u64, Result<live::ReportView, String>)> =
            futures::stream::iter(plan.rows.iter().enumerate())
                .map(|(seq, (_, line))| {
                    let grader = Arc::clone(&grader);
                    async move {
                        let out = match parse_line(line) {
                            Ok((_, item)) => grader
                                .grade(&item)
                                .await
                                .map(|r| live::ReportView::from(&r.to_doc()))
                                .map_err(|e| e.to_string()),
                            Err(inv) => Err(inv.to_string()),
                        };
                        (seq as u64, out)
                    }
                })
                .buffer_unordered(concurrency.max(1))
                .collect()
                .await;
        let mut ok = Vec::with_capacity(graded.len());
        let mut failed = Vec::new();
        for (seq, r) in graded {
            match r {
                Ok(v) => ok.push((seq, v)),
                Err(e) => failed.push((seq, e)),
            }
        }
        (ok, failed)
    });
    for (seq, e) in failed.iter().take(5) {
        let id = usize::try_from(*seq)
            .ok()
            .and_then(|s| plan.items.get(s))
            .map_or("?", |i| set.items[*i].id.as_str());
        eprintln!("tribunal: item {id} was not graded: {e}");
    }
    let labelled = live::labelled_set(&plan, results);
    let mut doc = report::agreement_report_doc(&labelled, opts);
    doc.run = Some(report::RunInfo {
        id: None,
        items_run: plan.rows.len(),
        items_skipped: plan.skipped,
        items_failed: Some(failed.len()),
        binarized: plan.binarized,
        simulated: Some(grader.simulated()),
    });
    Ok((doc, Usage::of(&grader)))
}
