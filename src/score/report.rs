//! The stable JSON shape of a scoring summary, shared by `tribunal score --format json`
//! and the summary `tribunal grade` prints. Other tools parse it: add keys, never
//! rename or remove them.

use serde_json::{Value, json};

use super::{ExampleScore, Figure, Summary};

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
