//! Calibration: how well judges agree with humans, and humans with each other.
//! `set.rs` holds calibration sets: it reads and writes `calibration.v1` JSONL,
//! imports K-QA, HealthBench meta-eval and column-mapped CSV files, and adds labels;
//! `stats.rs` holds the agreement statistics (pure); `report.rs` builds the agreement
//! report. Pure: no IO beyond parsing given text, no async, no judges.

pub mod report;
pub mod set;
pub mod stats;

pub use report::{ReportOptions, agreement_report};
pub use set::{
    CalItem, CalibrationSet, CsvMapping, Label, LabelValue, LabelsAdded, NewLabel, RaterKind,
    Scale, Task, TaskCriterion,
};
