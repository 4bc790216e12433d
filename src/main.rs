//! Entry point: parse the command line, run it, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = tribunal::cli::Cli::parse();
    tribunal::cli::run(cli)
}
