//! Calibration: how well judges agree with humans, and humans with each other.
//! Pure: `set.rs` (calibration.v1 sets read and written, K-QA, HealthBench meta-eval
//! and column-mapped CSV importers, label additions), `stats.rs` (agreement
//! statistics), `report.rs` (the agreement report), `live.rs` (set items -> gradable
//! rows, grade reports -> judge labels), `reliability.rs` (Dawid-Skene reliability and
//! suggested committee weights). Effectful: `run.rs` alone, which finishes a server
//! calibration run through the `Store` trait. Nothing here calls judges.

pub mod live;
pub mod reliability;
pub mod report;
pub mod run;
pub mod set;
pub mod stats;

pub use report::{ReportOptions, agreement_report};
pub use set::{
    CalItem, CalibrationSet, CsvMapping, Label, LabelValue, LabelsAdded, NewLabel, RaterKind,
    Scale, Task, TaskCriterion,
};
