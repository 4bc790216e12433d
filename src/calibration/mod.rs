//! Calibration: how well judges agree with humans, and humans with each other.
//! `set.rs` reads calibration sets (`calibration.v1` JSONL) and imports K-QA and
//! HealthBench meta-eval files; `stats.rs` holds the agreement statistics (pure);
//! `report.rs` builds the agreement report. Pure: no IO beyond parsing given text,
//! no async, no judges.

pub mod report;
pub mod set;
pub mod stats;

pub use report::{ReportOptions, agreement_report};
pub use set::{CalibrationSet, LabelValue, RaterKind, Scale};
