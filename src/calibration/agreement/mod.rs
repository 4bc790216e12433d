//! Agreement, the pure core of calibration: how well judges agree with humans and
//! humans with each other, computed from a `CalibrationSet`'s labels. `stats` (kappas,
//! alpha, per-class scores, bootstrap intervals), `majority` (the human majority),
//! `reliability` (Dawid-Skene judge reliability and suggested committee weights, and
//! reading them back from a saved report), `report` (the agreement report, which uses
//! the other three). Sync functions only: must not do IO, async or storage, and must
//! not use the run side (`live`, `run`), which uses this.

pub mod majority;
pub mod reliability;
pub mod report;
pub mod stats;

pub use report::{AgreementReport, ReportOptions, RunInfo, agreement_report, agreement_report_doc};

/// The rater name of the committee's consensus among a set's judge labels: live runs
/// label items with it, and reliability leaves it out (the committee is not a judge).
pub const COMMITTEE: &str = "committee";
