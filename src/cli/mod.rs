//! The command line: clap definitions of every command and the dispatch to their
//! files, one per command (`score`, `serve`, `grade`, `calibrate`, `rubric`,
//! `config`), which share only `shared` and never use each other. Turns a command's
//! outcome into an exit code: 0 success, 1 runtime failure (IO), 2 usage error
//! (clap), 3 invalid input data; `grade` adds 4 (some items failed or were excluded
//! for a judge failure) and 5 (nothing graded). Must not hold a command's code itself.

mod calibrate;
mod config;
mod grade;
mod rubric;
mod score;
mod serve;
mod shared;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use calibrate::{CalibrateArgs, CalibrationInput};
pub use config::ConfigCommand;
pub use grade::GradeArgs;
pub use rubric::RubricCommand;
pub use score::ScoreArgs;
pub use serve::ServeArgs;
use shared::Failure;
pub use shared::Format;
pub use shared::{EXIT_ITEMS_FAILED, EXIT_NOTHING_GRADED};

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

/// Exit code for invalid input data (distinct from clap's 2 for usage errors).
pub const EXIT_INVALID: u8 = 3;

pub fn run(cli: Cli) -> ExitCode {
    let outcome = match cli.command {
        Command::Score(args) => score::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Grade(args) => grade::run(&args),
        Command::Calibrate(args) => calibrate::run(&args),
        Command::Rubric(command) => rubric::run(&command),
        Command::Config(command) => config::run(&command),
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
        Err(Failure::Incomplete { code, message }) => {
            let _ = writeln!(std::io::stderr(), "error: {message}");
            ExitCode::from(code)
        }
    }
}
