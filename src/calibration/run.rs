//! Calibration runs on the server: a run is a job (same id) over a stored set's items;
//! when the job finishes, `finish` reads the grade reports back into judge labels,
//! computes the agreement report, stores it once and updates the agreement gauges.
//! Talks to the `Store` trait only; must not call judges (the job runner did) or know
//! about transports.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::agreement::ReportOptions;
use super::agreement::report::{AgreementReport, RunInfo, agreement_report_doc};
use super::live::{self, LabelMap};
use super::set::{CalibrationSet, parse_set};
use crate::error::Error;
use crate::store::Store;

/// What a run stores beside its job, enough to read its results back without the
/// rubrics it was planned with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunOptions {
    pub seed: u64,
    pub resamples: usize,
    pub confidence: f64,
    pub binarized: bool,
    /// `[met, not_met]` for binary criteria, or the three level categories.
    pub categories: Vec<usize>,
    /// `items[seq]`: the set item the job's item `seq` grades.
    pub items: Vec<usize>,
    pub skipped: usize,
    /// The run's `min_pair_items` (absent: the set's, else the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_pair_items: Option<usize>,
}

impl RunOptions {
    pub fn map(&self) -> Option<LabelMap> {
        match self.categories.as_slice() {
            [met, not_met] => Some(LabelMap::Binary {
                met: *met,
                not_met: *not_met,
            }),
            [a, b, c] => Some(LabelMap::Levels([*a, *b, *c])),
            _ => None,
        }
    }

    pub fn from_plan(plan: &live::Plan, report: &ReportOptions) -> RunOptions {
        RunOptions {
            seed: report.seed,
            resamples: report.resamples,
            confidence: report.confidence,
            binarized: plan.binarized,
            categories: match plan.map {
                LabelMap::Binary { met, not_met } => vec![met, not_met],
                LabelMap::Levels(c) => c.to_vec(),
            },
            items: plan.items.clone(),
            skipped: plan.skipped,
            min_pair_items: report.min_pair_items,
        }
    }

    pub fn report_options(&self) -> ReportOptions {
        ReportOptions {
            seed: self.seed,
            resamples: self.resamples,
            confidence: self.confidence,
            min_pair_items: self.min_pair_items,
        }
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("{what}: {e}"))
}

/// The plan a stored run was made with, rebuilt on the set as it is now (labels added
/// since the run started count).
pub fn stored_plan(set: &CalibrationSet, opts: &RunOptions) -> Result<live::Plan, Error> {
    let map = opts
        .map()
        .ok_or_else(|| corrupt("calibration run options", "no category mapping"))?;
    Ok(live::Plan {
        set: live::base_set(set, opts.binarized),
        map,
        rows: Vec::new(),
        items: opts.items.clone(),
        skipped: opts.skipped,
        binarized: opts.binarized,
    })
}

/// Reads every result of a run's job, in item order.
pub async fn results(store: &dyn Store, id: &str) -> Result<Vec<(u64, live::ReportView)>, Error> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .items_by_seq(id, crate::store::Finished::DoneOnly, after, 1000)
            .await?;
        let Some(last) = page.last().map(|(s, _)| *s) else {
            break;
        };
        after = Some(last);
        for (seq, text) in page {
            out.extend(
                stored_report(&text)
                    .map_err(|e| corrupt("job result", e))?
                    .map(|r| (seq, r)),
            );
        }
    }
    Ok(out)
}

/// A stored result line read for a calibration run: `None` for a failed item's line
/// (`{"case_id", "error"}`), the report's view otherwise; anything else is an error.
pub fn stored_report(text: &str) -> Result<Option<live::ReportView>, serde_json::Error> {
    let v: Value = serde_json::from_str(text)?;
    if v.get("error").is_some() {
        return Ok(None);
    }
    live::ReportView::deserialize(&v).map(Some)
}

/// A stored set with its labels: the stored document (items only) parsed, and the
/// set's label rows attached in their stored order. `None` when there is no such set.
pub async fn stored_set(
    store: &dyn Store,
    id: &str,
) -> Result<Option<(crate::store::CalibrationSetRecord, CalibrationSet)>, Error> {
    let Some(record) = store.calibration_set(id).await? else {
        return Ok(None);
    };
    let rows = store.calibration_labels(id).await?;
    let mut set = parse_set(&record.document)
        .map_err(|e| corrupt(&format!("calibration set {id}"), e.join("; ")))?;
    set.attach_labels(
        rows.iter()
            .map(|r| (r.item.as_str(), r.rater.as_str(), r.kind.as_str(), &r.value)),
    )
    .map_err(|e| corrupt(&format!("labels of calibration set {id}"), e))?;
    Ok(Some((record, set)))
}

/// Computes, stores and publishes the report of a finished calibration run. Returns
/// false when `id` is not a calibration run or its report was already written.
pub async fn finish(store: &dyn Store, id: &str) -> Result<bool, Error> {
    let Some(run) = store.calibration_run(id).await? else {
        return Ok(false);
    };
    if run.report.is_some() {
        return Ok(false);
    }
    let opts: RunOptions =
        serde_json::from_str(&run.options).map_err(|e| corrupt("calibration run options", e))?;
    let (_, set) = stored_set(store, &run.set_id)
        .await?
        .ok_or_else(|| corrupt("calibration run", format!("set {} is missing", run.set_id)))?;
    let plan = stored_plan(&set, &opts)?;
    let results = results(store, id).await?;
    let simulated = results.iter().any(|(_, r)| r.simulated);
    let report_opts = opts.report_options();
    let run_id = id.to_owned();
    // The report is CPU work (bootstrap CIs); keep it off the async workers.
    let report = tokio::task::spawn_blocking(move || {
        let set = live::labelled_set(&plan, results);
        let mut report = agreement_report_doc(&set, &report_opts);
        report.run = Some(RunInfo {
            id: Some(run_id),
            items_run: plan.items.len(),
            items_skipped: plan.skipped,
            items_failed: None,
            binarized: plan.binarized,
            simulated: Some(simulated),
        });
        report
    })
    .await
    .map_err(|e| Error::Internal(format!("calibration report task: {e}")))?;
    let text = serde_json::to_string(&report)
        .map_err(|e| Error::Internal(format!("calibration report: {e}")))?;
    let written = store.finish_calibration_run(id, &text).await?;
    if written {
        // By id: set names are free text, and `/metrics` is unauthenticated.
        publish(&run.set_id, &report);
    }
    Ok(written)
}

/// Sets the agreement gauges from a report: each judge's (and the committee's) kappa
/// against the human majority, the humans' Fleiss kappa and Krippendorff alpha.
pub fn publish(set_id: &str, report: &AgreementReport) {
    let set = set_id;
    use crate::metrics::{Agreement, agreement};
    agreement(
        Agreement::Kappa,
        set,
        "humans",
        report.humans.fleiss_kappa.estimate.value,
    );
    agreement(
        Agreement::Alpha,
        set,
        "humans",
        report.humans.krippendorff_alpha.value,
    );
    crate::metrics::agreement_band(set, report.humans.band.min, report.humans.band.max);
    for j in &report.judges {
        agreement(
            Agreement::Kappa,
            set,
            &j.judge,
            j.vs_human_majority.cohen_kappa.value,
        );
    }
}
