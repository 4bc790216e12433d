//! The command line: `score`, `rubric check`, `rubric from-healthbench`.
//! Translates arguments and files into calls on the pure modules and prints results.
//! Exit codes: 0 success, 1 runtime failure (IO), 2 usage error, 3 invalid input data.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::item::{Item, parse_line};
use crate::rubric::{Invalid, Policy, Rubric, schema::parse_rubric};
use crate::score::{self, DEFAULT_RESAMPLES, ExampleScore, report};

#[derive(Debug, Parser)]
#[command(
    name = "tribunal",
    version,
    about = "Grade LLM responses against rubrics with a committee of LLM judges"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Score verdicts offline (no judges): HealthBench rows with `criteria_met` on each
    /// rubric item, or case.v1 rows with `verdicts`. Prints the aggregate and per-example scores.
    Score(ScoreArgs),
    /// Run the HTTP and gRPC server (embedded SQLite; the built-in simulated committee
    /// unless --config names real judges).
    Serve(ServeArgs),
    /// Grade responses with the judge committee: one GradeReport per line, then a
    /// summary in the shape of `score --format json`.
    Grade(GradeArgs),
    /// Judge-human agreement on a calibration set (kappa, alpha, CIs).
    Calibrate(CalibrateArgs),
    /// Rubric tools.
    #[command(subcommand)]
    Rubric(RubricCommand),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Parser)]
pub struct ServeArgs {
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// HTTP listen address (default 127.0.0.1:8080).
    #[arg(long)]
    pub http_addr: Option<String>,
    /// gRPC listen address (default 127.0.0.1:50051).
    #[arg(long)]
    pub grpc_addr: Option<String>,
    /// Database URL (default sqlite://tribunal.db).
    #[arg(long)]
    pub database: Option<String>,
}

#[derive(Debug, Parser)]
pub struct GradeArgs {
    /// JSON Lines input: HealthBench rows plus `response`, or case.v1 rows.
    pub input: PathBuf,
    /// TOML configuration; without it, the built-in simulated committee is used.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Where to write GradeReports (JSONL); default standard output.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Skip items whose case id already has a report in OUTPUT.
    #[arg(long, requires = "output")]
    pub resume: bool,
    /// Write the summary here instead of standard output (standard error when the
    /// reports themselves go to standard output).
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// For rows without `response`, grade the first reference answer (HealthBench
    /// ideal completion); rows with neither are skipped and counted.
    #[arg(long)]
    pub use_reference: bool,
    /// Items graded concurrently.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Seed for the summary's bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

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
    /// Items judged concurrently in a live run.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
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
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Bootstrap resamples per coefficient.
    #[arg(long, default_value_t = 1000)]
    pub resamples: usize,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration (all problems listed) and print it resolved, secrets masked.
    Check {
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Json,
    Table,
}

#[derive(Debug, Parser)]
pub struct ScoreArgs {
    /// JSON Lines file to score; `-` reads standard input.
    pub file: PathBuf,
    /// Score every row with this policy instead of the rubric's own.
    #[arg(long, value_parser = ["healthbench", "quarkmed", "weighted"])]
    pub policy: Option<String>,
    /// Seed for the bootstrap resampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Bootstrap resamples per figure.
    #[arg(long, default_value_t = DEFAULT_RESAMPLES)]
    pub resamples: usize,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

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

/// Exit code for invalid input data (distinct from clap's 2 for usage errors).
pub const EXIT_INVALID: u8 = 3;

pub fn run(cli: Cli) -> ExitCode {
    let outcome = match cli.command {
        Command::Score(args) => score_cmd(&args),
        Command::Serve(args) => crate::cli_grade::serve(&args),
        Command::Grade(args) => crate::cli_grade::run(&args),
        Command::Config(ConfigCommand::Check { config }) => {
            crate::cli_grade::config_check(config.as_deref())
        }
        Command::Calibrate(args) => calibrate(&args),
        Command::Rubric(RubricCommand::Check { files }) => rubric_check(&files),
        Command::Rubric(RubricCommand::FromHealthbench { file }) => from_healthbench(&file),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid(lines)) => {
            let mut err = std::io::stderr().lock();
            const SHOWN: usize = 50;
            for l in lines.iter().take(SHOWN) {
                let _ = writeln!(err, "error: {l}");
            }
            if lines.len() > SHOWN {
                let _ = writeln!(err, "error: ... and {} more", lines.len() - SHOWN);
            }
            ExitCode::from(EXIT_INVALID)
        }
        Err(Failure::Runtime(e)) => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// How a command failed: bad data (every problem listed) or a runtime failure.
pub(crate) enum Failure {
    Invalid(Vec<String>),
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

fn open(path: &Path) -> anyhow::Result<Box<dyn BufRead>> {
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

fn score_cmd(args: &ScoreArgs) -> Result<(), Failure> {
    let policy = args
        .policy
        .as_deref()
        .map(|p| {
            Policy::by_name(p)
                .ok_or_else(|| Failure::Invalid(vec![format!("--policy: unknown policy \"{p}\"")]))
        })
        .transpose()?;
    let mut errors = Vec::new();
    let mut scored: Vec<(String, ExampleScore)> = Vec::new();
    let mut seen = std::collections::HashMap::new();
    let mut duplicates = 0usize;
    for_each_line(&args.file, |n, text| {
        match text.map(|t| score_line(t, policy.as_ref())) {
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
    let examples: Vec<ExampleScore> = scored.iter().map(|(_, s)| s.clone()).collect();
    let summary = score::summarize(&examples, args.seed, args.resamples);
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

fn score_line(text: &str, policy: Option<&Policy>) -> Result<(String, ExampleScore), Invalid> {
    let (_, item) = parse_line(text)?;
    let rubric = rubric_for(&item, policy)?;
    let verdicts = item.aligned_verdicts(&rubric)?;
    let s = score::score_example(&rubric, &verdicts, &item.case.tags);
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

fn calibrate(args: &CalibrateArgs) -> Result<(), Failure> {
    use crate::calibration::{ReportOptions, agreement_report, report::report_table, set};
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
                (Some(n), _) => n.clone(),
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
        ..ReportOptions::default()
    };
    let report = if args.offline {
        agreement_report(&set, &opts)
    } else {
        crate::cli_grade::calibrate_live(&set, args.config.as_deref(), args.concurrency, &opts)?
    };
    let text = match args.format {
        Format::Json => format!("{report}\n"),
        Format::Table => report_table(&report),
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| anyhow::anyhow!("writing output: {e}"))?;
    Ok(())
}

fn rubric_check(files: &[PathBuf]) -> Result<(), Failure> {
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
