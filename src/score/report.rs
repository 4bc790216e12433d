//! The stable JSON shape of a scoring summary, shared by `tribunal score --format json`
//! and the summary `tribunal grade` prints. Other tools parse it: add keys, never
//! rename or remove them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ExampleScore, Figure, Summary, Undefined};
use crate::rubric::CriterionId;

/// One figure of a summary: the clipped mean, its bootstrap standard deviation and the
/// number of examples it covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FigureEntry {
    /// Null when no example counts.
    pub score: Option<f64>,
    pub bootstrap_std: Option<f64>,
    pub n: usize,
}

impl From<&Figure> for FigureEntry {
    fn from(f: &Figure) -> Self {
        FigureEntry {
            score: f.score,
            bootstrap_std: f.bootstrap_std,
            n: f.n,
        }
    }
}

/// Examples left out of the figures, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Excluded {
    /// A criterion abstained (`on_abstention = incomplete`).
    pub incomplete: usize,
    /// The score is undefined (e.g. no positive points) and no veto fired.
    pub undefined: usize,
}

/// The summary document of `tribunal score --format json`, `tribunal grade` and
/// `GET /v1/jobs/{id}/summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SummaryDoc {
    pub overall: FigureEntry,
    /// By example and criterion tag (`theme:*`, `axis:*`).
    pub tags: BTreeMap<String, FigureEntry>,
    pub examples: Vec<ExampleEntry>,
    pub excluded: Excluded,
    /// Bootstrap seed.
    pub seed: u64,
    pub resamples: usize,
}

/// The per-example entry; `prompt_id` carries the case id for case.v1 rows too.
pub fn example_json(id: &str, e: &ExampleScore) -> Value {
    serde_json::to_value(ExampleEntry::new(id, e)).unwrap_or(Value::Null)
}

/// An `example_json` object read back. Every key is required (an absent `Option` is an
/// error, not `None`) and an unknown key or `undefined_reason` is an error, so a stored
/// entry that does not match the writer fails loudly instead of becoming a different
/// score. A key added to `example_json` must be added here too (the round-trip test in
/// `grader` fails until it is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ExampleScore)]
pub struct ExampleEntry {
    /// The case id (`prompt_id` for HealthBench rows).
    pub prompt_id: String,
    /// The example's score before vetoes; null when undefined.
    #[serde(deserialize_with = "Option::deserialize")]
    pub score: Option<f64>,
    /// The score after safety vetoes (what the figures average).
    #[serde(deserialize_with = "Option::deserialize")]
    pub final_score: Option<f64>,
    #[schema(value_type = Vec<String>)]
    pub vetoed_by: Vec<CriterionId>,
    /// A criterion abstained and the policy excludes such examples.
    pub incomplete: bool,
    #[schema(value_type = Vec<String>)]
    pub abstained: Vec<CriterionId>,
    #[serde(deserialize_with = "Option::deserialize")]
    pub undefined_reason: Option<Undefined>,
}

impl ExampleEntry {
    pub fn new(id: &str, e: &ExampleScore) -> ExampleEntry {
        ExampleEntry {
            prompt_id: id.to_owned(),
            score: e.score,
            final_score: e.final_score,
            vetoed_by: e.vetoed_by.clone(),
            incomplete: e.incomplete,
            abstained: e.abstained.clone(),
            undefined_reason: e.undefined,
        }
    }

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

/// The summary document.
pub fn summary_doc<'a>(
    summary: &Summary,
    examples: impl IntoIterator<Item = (&'a str, &'a ExampleScore)>,
    seed: u64,
    resamples: usize,
) -> SummaryDoc {
    SummaryDoc {
        overall: (&summary.overall).into(),
        tags: summary
            .tags
            .iter()
            .map(|(t, f)| (t.clone(), f.into()))
            .collect(),
        examples: examples
            .into_iter()
            .map(|(id, e)| ExampleEntry::new(id, e))
            .collect(),
        excluded: Excluded {
            incomplete: summary.excluded_incomplete,
            undefined: summary.excluded_undefined,
        },
        seed,
        resamples,
    }
}

/// `summary_doc` as JSON: `{"overall", "tags", "examples", "excluded", "seed", "resamples"}`.
pub fn summary_json<'a>(
    summary: &Summary,
    examples: impl IntoIterator<Item = (&'a str, &'a ExampleScore)>,
    seed: u64,
    resamples: usize,
) -> Value {
    serde_json::to_value(summary_doc(summary, examples, seed, resamples)).unwrap_or(Value::Null)
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
