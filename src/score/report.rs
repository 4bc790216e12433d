//! The stable JSON shape of a scoring summary, shared by `tribunal score --format json`
//! and the summary `tribunal grade` prints. Other tools parse it: add keys, never
//! rename or remove them.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{ExampleScore, Figure, Summary, Undefined};
use crate::rubric::CriterionId;

fn figure_json(f: &Figure) -> Value {
    json!({ "score": f.score, "bootstrap_std": f.bootstrap_std, "n": f.n })
}

/// The per-example entry; `prompt_id` carries the case id for case.v1 rows too.
pub fn example_json(id: &str, e: &ExampleScore) -> Value {
    json!({
        "prompt_id": id,
        "score": e.score,
        "final_score": e.final_score,
        "vetoed_by": e.vetoed_by,
        "incomplete": e.incomplete,
        "abstained": e.abstained,
        "undefined_reason": e.undefined.map(|u| u.as_str()),
    })
}

/// An `example_json` object read back. Every key is required (an absent `Option` is an
/// error, not `None`) and an unknown key or `undefined_reason` is an error, so a stored
/// entry that does not match the writer fails loudly instead of becoming a different
/// score. A key added to `example_json` must be added here too (the round-trip test in
/// `grader` fails until it is).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExampleEntry {
    pub prompt_id: String,
    #[serde(deserialize_with = "Option::deserialize")]
    pub score: Option<f64>,
    #[serde(deserialize_with = "Option::deserialize")]
    pub final_score: Option<f64>,
    pub vetoed_by: Vec<CriterionId>,
    pub incomplete: bool,
    pub abstained: Vec<CriterionId>,
    #[serde(deserialize_with = "Option::deserialize")]
    pub undefined_reason: Option<Undefined>,
}

impl ExampleEntry {
    /// The `ExampleScore` this entry was written from; `tags` are stored beside the
    /// entry (in the report), not in it. A score that is neither a number nor undefined
    /// (or both) was not written by `example_json` and is refused.
    pub fn into_score(self, tags: BTreeMap<String, f64>) -> Result<ExampleScore, String> {
        let ExampleEntry {
            prompt_id: _,
            score,
            final_score,
            vetoed_by,
            incomplete,
            abstained,
            undefined_reason,
        } = self;
        if score.is_some() == undefined_reason.is_some() {
            return Err(format!(
                "score {score:?} with undefined_reason {:?}: exactly one must be set",
                undefined_reason.map(Undefined::as_str)
            ));
        }
        Ok(ExampleScore {
            score,
            undefined: undefined_reason,
            final_score,
            vetoed_by,
            incomplete,
            abstained,
            tags,
        })
    }
}

/// `{"overall", "tags", "examples", "excluded", "seed", "resamples"}`.
pub fn summary_json<'a>(
    summary: &Summary,
    examples: impl IntoIterator<Item = (&'a str, &'a ExampleScore)>,
    seed: u64,
    resamples: usize,
) -> Value {
    let tags: serde_json::Map<String, Value> = summary
        .tags
        .iter()
        .map(|(t, f)| (t.clone(), figure_json(f)))
        .collect();
    json!({
        "overall": figure_json(&summary.overall),
        "tags": tags,
        "examples": examples.into_iter().map(|(id, e)| example_json(id, e)).collect::<Vec<_>>(),
        "excluded": {
            "incomplete": summary.excluded_incomplete,
            "undefined": summary.excluded_undefined,
        },
        "seed": seed,
        "resamples": resamples,
    })
}

/// A human-readable table of the summary.
pub fn summary_table(summary: &Summary, policy_note: &str, seed: u64) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} examples, {} included, {} excluded ({} incomplete, {} undefined); {policy_note}; seed {seed}",
        summary.examples,
        summary.overall.n,
        summary.excluded_incomplete + summary.excluded_undefined,
        summary.excluded_incomplete,
        summary.excluded_undefined,
    );
    let width = summary
        .tags
        .keys()
        .map(String::len)
        .chain(std::iter::once("overall".len()))
        .max()
        .unwrap_or(7);
    let _ = writeln!(
        out,
        "{:<width$}  {:>7}  {:>7}  {:>6}",
        "figure", "score", "std", "n"
    );
    let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |x| format!("{x:.4}"));
    let mut row = |name: &str, f: &Figure| {
        let _ = writeln!(
            out,
            "{name:<width$}  {:>7}  {:>7}  {:>6}",
            fmt(f.score),
            fmt(f.bootstrap_std),
            f.n
        );
    };
    row("overall", &summary.overall);
    for (t, f) in &summary.tags {
        row(t, f);
    }
    out
}
