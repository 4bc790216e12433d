//! Calibration: how well judges agree with humans, and humans with each other.
//! The pure core, which the run side uses and never the other way:
//! - `set` (calibration.v1 sets read and written, K-QA, HealthBench meta-eval and
//!   column-mapped CSV importers, label additions): parses given text.
//! - `agreement` (statistics, the agreement report, human majority, Dawid-Skene
//!   reliability and suggested weights): sync math on a set.
//!
//! The run side: `live` (set items -> gradable rows, grade reports -> judge labels;
//! no IO itself, used by the CLI and the server) and `run`, the only effectful part,
//! which finishes a server calibration run through the `Store` trait. Nothing here
//! calls judges.

pub mod agreement;
pub mod live;
pub mod run;
pub mod set;

pub use agreement::{ReportOptions, agreement_report};
// The old path of `agreement::report`, kept for `src/service` (owned elsewhere); new
// code names `agreement::report`.
pub use agreement::report;
pub use set::{
    CalItem, CalibrationSet, CsvMapping, Label, LabelValue, LabelsAdded, NewLabel, RaterKind,
    Scale, Task, TaskCriterion,
};
