//! The stable JSON shape of a scoring summary, shared by `tribunal score --format json`
//! and the summary `tribunal grade` prints. Other tools parse it: add keys, never
//! rename or remove them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ExampleScore, Figure, Summary, Undefined};
use crate::rubric::{CriterionId, LengthAdjustment};

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
    /// The mean of the length-adjusted example scores, beside the unchanged raw
    /// `overall`; null when no length adjustment applies.
    #[serde(default)]
    pub overall_length_adjusted: Option<FigureEntry>,
    /// Length-adjusted figures by tag (empty when no length adjustment applies).
    #[serde(default)]
    pub tags_length_adjusted: BTreeMap<String, FigureEntry>,
    /// The adjustment's constants, when every adjusted example used the same ones.
    #[serde(default)]
    pub length_adjustment: Option<LengthAdjustment>,
    /// Included examples with a length adjustment but no known response length, left out
    /// of the length-adjusted figures.
    #[serde(default)]
    pub missing_response_length: usize,
    /// Abstentions counted as not met (`on_abstention = "as_not_met"`, opt-in only).
    #[serde(default)]
    pub abstentions_as_not_met: AsNotMetCount,
}

/// How much of a summary rests on abstentions counted as not met.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AsNotMetCount {
    /// Included examples scored under `on_abstention = "as_not_met"`.
    pub examples: usize,
    /// Abstained criteria those examples counted as not met.
    pub criteria: usize,
}

/// The per-example entry; `prompt_id` carries the case id for case.v1 rows too.
pub fn example_json(id: &str, e: &ExampleScore) -> Value {
    serde_json::to_value(ExampleEntry::new(id, e)).unwrap_or(Value::Null)
}

/// An `example_json` object read back. Every original key is required (an absent
/// `Option` is an error, not `None`) and an unknown key or `undefined_reason` is an
/// error, so a stored entry that does not match the writer fails loudly instead of
/// becoming a different score. Keys added later (`response_chars`, `length_adjustment`,
/// `length_adjusted_score`, `abstentions_as_not_met`) default when absent, so reports
/// stored before them still read. A key added to `example_json` must be added here too
/// (the round-trip test in `grader` fails until it is).
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
    /// The graded response's length in Unicode code points (what the length adjustment
    /// counts); null when the response is unknown.
    #[serde(default)]
    pub response_chars: Option<u64>,
    /// The rubric's length adjustment (null: none).
    #[serde(default)]
    pub length_adjustment: Option<LengthAdjustment>,
    /// `final_score` after the length adjustment, not clipped; derived from the fields
    /// above (null without an adjustment or a response length).
    #[serde(default)]
    pub length_adjusted_score: Option<f64>,
    /// Scored under `on_abstention = "as_not_met"`: the `abstained` criteria counted as
    /// not met (LiveMedBench's convention, never the default).
    #[serde(default)]
    pub abstentions_as_not_met: bool,
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
            response_chars: e.response_chars,
            length_adjustment: e.length_adjustment,
            length_adjusted_score: e.length_adjusted_score(),
            abstentions_as_not_met: e.abstentions_as_not_met,
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
            response_chars,
            length_adjustment,
            // Derived from the other fields; recomputed by `ExampleScore`.
            length_adjusted_score: _,
            abstentions_as_not_met,
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
            response_chars,
            length_adjustment,
            abstentions_as_not_met,
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
        overall_length_adjusted: summary.overall_length_adjusted.as_ref().map(Into::into),
        tags_length_adjusted: summary
            .tags_length_adjusted
            .iter()
            .map(|(t, f)| (t.clone(), f.into()))
            .collect(),
        length_adjustment: summary.length_adjustment,
        missing_response_length: summary.missing_response_length,
        abstentions_as_not_met: AsNotMetCount {
            examples: summary.as_not_met_examples,
            criteria: summary.as_not_met_criteria,
        },
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
    let row = |out: &mut String, name: &str, f: &Figure| {
        let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |x| format!("{x:.4}"));
        let _ = writeln!(
            out,
            "{name:<width$}  {:>7}  {:>7}  {:>6}",
            fmt(f.score),
            fmt(f.bootstrap_std),
            f.n
        );
    };
    row(&mut out, "overall", &summary.overall);
    for (t, f) in &summary.tags {
        row(&mut out, t, f);
    }
    if let Some(f) = &summary.overall_length_adjusted {
        let _ = writeln!(
            out,
            "length-adjusted ({}); missing response length: {}",
            summary.length_adjustment.map_or_else(
                || "mixed constants".to_owned(),
                |la| format!(
                    "center {}, penalty {} per 500 chars",
                    la.center, la.penalty_per_500_chars
                )
            ),
            summary.missing_response_length
        );
        row(&mut out, "overall", f);
        for (t, f) in &summary.tags_length_adjusted {
            row(&mut out, t, f);
        }
    }
    if summary.as_not_met_examples > 0 {
        let _ = writeln!(
            out,
            "WARNING: on_abstention = as_not_met: {} abstained criteria counted as not met ({} examples scored under it)",
            summary.as_not_met_criteria, summary.as_not_met_examples
        );
    }
    out
}

/// The figure rows of a summary's tags (raw, then length-adjusted), under a header:
/// what `tribunal grade --by-tag` prints above the headline. Empty without tags.
pub fn tag_rows(summary: &Summary) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if summary.tags.is_empty() {
        return out;
    }
    let width = summary
        .tags
        .keys()
        .chain(summary.tags_length_adjusted.keys())
        .map(String::len)
        .chain(std::iter::once("tag".len()))
        .max()
        .unwrap_or(3);
    let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |x| format!("{x:.4}"));
    let _ = writeln!(
        out,
        "{:<width$}  {:>7}  {:>7}  {:>6}",
        "tag", "score", "std", "n"
    );
    for (t, f) in &summary.tags {
        let _ = writeln!(
            out,
            "{t:<width$}  {:>7}  {:>7}  {:>6}",
            fmt(f.score),
            fmt(f.bootstrap_std),
            f.n
        );
    }
    for (t, f) in &summary.tags_length_adjusted {
        let name = format!("{t} (length-adjusted)");
        let _ = writeln!(
            out,
            "{name:<width$}  {:>7}  {:>7}  {:>6}",
            fmt(f.score),
            fmt(f.bootstrap_std),
            f.n
        );
    }
    out
}

/// `overall 0.4444 (95% CI 0.3900 to 0.4988, bootstrap std 0.0278), n 25`: the figure
/// with a normal-approximation 95% interval from its bootstrap std (clipped to [0, 1]).
pub fn figure_with_ci(name: &str, f: &Figure) -> String {
    match (f.score, f.bootstrap_std) {
        (Some(s), Some(sd)) => format!(
            "{name} {s:.4} (95% CI {:.4} to {:.4}, bootstrap std {sd:.4}), n {}",
            (s - 1.96 * sd).max(0.0),
            (s + 1.96 * sd).min(1.0),
            f.n
        ),
        (Some(s), None) => format!("{name} {s:.4}, n {}", f.n),
        (None, _) => format!("{name} - (no example counts), n {}", f.n),
    }
}

/// The headline of a run's end, meant to be the last lines a person sees: the overall
/// figure with its interval, what was included and excluded (with why), the
/// length-adjusted overall when asked for, and the `as_not_met` warning.
pub fn headline(summary: &Summary, policy_note: &str, seed: u64) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let excluded = summary.excluded_incomplete + summary.excluded_undefined;
    let mut why = Vec::new();
    if summary.excluded_incomplete > 0 {
        why.push(format!(
            "{} incomplete: a criterion abstained",
            summary.excluded_incomplete
        ));
    }
    if summary.excluded_undefined > 0 {
        why.push(format!(
            "{} undefined: no positive points and no veto",
            summary.excluded_undefined
        ));
    }
    let _ = writeln!(
        out,
        "{} examples: {} included, {excluded} excluded{}; {policy_note}; seed {seed}",
        summary.examples,
        summary.overall.n,
        if why.is_empty() {
            String::new()
        } else {
            format!(" ({})", why.join(", "))
        }
    );
    if let Some(f) = &summary.overall_length_adjusted {
        let _ = writeln!(
            out,
            "{}; missing response length: {}",
            figure_with_ci("overall length-adjusted", f),
            summary.missing_response_length
        );
    }
    if summary.as_not_met_examples > 0 {
        let _ = writeln!(
            out,
            "WARNING: on_abstention = as_not_met: {} abstained criteria counted as not met ({} examples scored under it)",
            summary.as_not_met_criteria, summary.as_not_met_examples
        );
    }
    let _ = writeln!(out, "{}", figure_with_ci("overall", &summary.overall));
    out
}

#[cfg(test)]
mod headline_tests {
    use super::*;

    fn figure(score: Option<f64>, std: Option<f64>, n: usize) -> Figure {
        Figure {
            score,
            bootstrap_std: std,
            n,
        }
    }

    #[test]
    fn headline_ends_with_the_overall_figure_and_its_interval() {
        let summary = Summary {
            overall: figure(Some(0.5), Some(0.1), 3),
            tags: [("axis:accuracy".to_owned(), figure(Some(0.25), None, 1))]
                .into_iter()
                .collect(),
            examples: 5,
            excluded_incomplete: 2,
            excluded_undefined: 0,
            overall_length_adjusted: None,
            tags_length_adjusted: BTreeMap::new(),
            length_adjustment: None,
            missing_response_length: 0,
            as_not_met_examples: 0,
            as_not_met_criteria: 0,
        };
        let text = headline(&summary, "policy healthbench", 7);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "5 examples: 3 included, 2 excluded (2 incomplete: a criterion abstained); policy healthbench; seed 7",
                "overall 0.5000 (95% CI 0.3040 to 0.6960, bootstrap std 0.1000), n 3",
            ]
        );
        assert!(!text.contains("axis:accuracy"));
        let tags = tag_rows(&summary);
        assert!(tags.starts_with("tag "), "{tags}");
        assert!(
            tags.contains("axis:accuracy   0.2500        -       1"),
            "{tags}"
        );
        let rows = [
            (
                figure(Some(0.9), Some(0.1), 2),
                "x 0.9000 (95% CI 0.7040 to 1.0000, bootstrap std 0.1000), n 2",
            ),
            (figure(Some(0.9), None, 2), "x 0.9000, n 2"),
            (figure(None, None, 0), "x - (no example counts), n 0"),
        ];
        for (f, want) in rows {
            assert_eq!(figure_with_ci("x", &f), want);
        }
    }
}
