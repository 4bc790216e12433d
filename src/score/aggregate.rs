//! Batch statistics over example scores, as simple-evals aggregates HealthBench:
//! mean then clip to [0, 1]; bootstrap std = population std of the clipped means of
//! `resamples` resamples (with replacement) of the per-example values. Every figure
//! reports its `n`. The RNG is ChaCha8 seeded per figure from (seed, figure name), so
//! results are reproducible and adding a tag never changes another tag's figure.
//! Length-adjusted figures (HealthBench Professional) are the same statistics over the
//! per-example adjusted values, reported beside the raw ones, never instead of them.

use std::collections::BTreeMap;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::ExampleScore;
use crate::rubric::LengthAdjustment;

pub const DEFAULT_RESAMPLES: usize = 1000;

/// One aggregate figure. `score` and `bootstrap_std` are `None` when `n == 0`.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub score: Option<f64>,
    pub bootstrap_std: Option<f64>,
    pub n: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub overall: Figure,
    pub tags: BTreeMap<String, Figure>,
    /// Examples in the input.
    pub examples: usize,
    /// Excluded because a criterion abstained (`incomplete`).
    pub excluded_incomplete: usize,
    /// Excluded because the score is undefined (e.g. no positive points) and not vetoed.
    pub excluded_undefined: usize,
    /// The mean of the length-adjusted example scores (clipped like `overall`); `None`
    /// when no included example has a length adjustment.
    pub overall_length_adjusted: Option<Figure>,
    /// Length-adjusted figures per tag: each tag value minus its example's shift.
    pub tags_length_adjusted: BTreeMap<String, Figure>,
    /// The adjustment's constants when every adjusted example used the same ones.
    pub length_adjustment: Option<LengthAdjustment>,
    /// Included examples with an adjustment but no known response length, left out of
    /// the length-adjusted figures (their `n` says so too).
    pub missing_response_length: usize,
    /// Included examples scored under `on_abstention = "as_not_met"` ...
    pub as_not_met_examples: usize,
    /// ... and the abstained criteria those examples counted as not met.
    pub as_not_met_criteria: usize,
}

/// Mean clipped to [0, 1]; `None` for no values.
pub fn clipped_mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    #[expect(
        clippy::cast_precision_loss,
        reason = "example counts are far below 2^52"
    )]
    let n = values.len() as f64;
    Some((values.iter().sum::<f64>() / n).clamp(0.0, 1.0))
}

/// Population std of clipped means of bootstrap resamples; `None` for no values.
pub fn bootstrap_std(values: &[f64], resamples: usize, rng: &mut ChaCha8Rng) -> Option<f64> {
    if values.is_empty() || resamples == 0 {
        return None;
    }
    let n = values.len();
    let mut means = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let mut sum = 0.0;
        for _ in 0..n {
            sum += values[rng.random_range(0..n)];
        }
        #[expect(
            clippy::cast_precision_loss,
            reason = "example counts are far below 2^52"
        )]
        means.push((sum / n as f64).clamp(0.0, 1.0));
    }
    #[expect(
        clippy::cast_precision_loss,
        reason = "resample counts are far below 2^52"
    )]
    let k = means.len() as f64;
    let mean = means.iter().sum::<f64>() / k;
    let var = means.iter().map(|m| (m - mean) * (m - mean)).sum::<f64>() / k;
    Some(var.sqrt())
}

fn figure_rng(seed: u64, name: &str) -> ChaCha8Rng {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(b"\x1f");
    h.update(name.as_bytes());
    ChaCha8Rng::from_seed(*h.finalize().as_bytes())
}

fn figure(values: &[f64], seed: u64, name: &str, resamples: usize) -> Figure {
    Figure {
        score: clipped_mean(values),
        bootstrap_std: bootstrap_std(values, resamples, &mut figure_rng(seed, name)),
        n: values.len(),
    }
}

/// Aggregates examples: only included examples (`ExampleScore::is_included`) count.
pub fn summarize(examples: &[ExampleScore], seed: u64, resamples: usize) -> Summary {
    let mut overall = Vec::with_capacity(examples.len());
    let mut by_tag: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut excluded_incomplete = 0;
    let mut excluded_undefined = 0;
    let mut adjusted = Vec::new();
    let mut adjusted_by_tag: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut any_adjustment = false;
    let mut constants: Vec<LengthAdjustment> = Vec::new();
    let mut missing_response_length = 0;
    let mut as_not_met_examples = 0;
    let mut as_not_met_criteria = 0;
    for e in examples {
        if e.incomplete {
            excluded_incomplete += 1;
            continue;
        }
        let Some(f) = e.final_score else {
            excluded_undefined += 1;
            continue;
        };
        overall.push(f);
        for (tag, v) in &e.tags {
            by_tag.entry(tag.as_str()).or_default().push(*v);
        }
        if e.abstentions_as_not_met {
            as_not_met_examples += 1;
            as_not_met_criteria += e.abstained.len();
        }
        if let Some(la) = e.length_adjustment {
            any_adjustment = true;
            if !constants.contains(&la) {
                constants.push(la);
            }
            match e.length_shift() {
                Some(shift) => {
                    adjusted.push(f - shift);
                    for (tag, v) in &e.tags {
                        adjusted_by_tag
                            .entry(tag.as_str())
                            .or_default()
                            .push(v - shift);
                    }
                }
                None => missing_response_length += 1,
            }
        }
    }
    Summary {
        overall: figure(&overall, seed, "overall", resamples),
        tags: by_tag
            .into_iter()
            .map(|(t, v)| (t.to_owned(), figure(&v, seed, t, resamples)))
            .collect(),
        examples: examples.len(),
        excluded_incomplete,
        excluded_undefined,
        overall_length_adjusted: any_adjustment
            .then(|| figure(&adjusted, seed, "overall\u{1f}length_adjusted", resamples)),
        tags_length_adjusted: adjusted_by_tag
            .into_iter()
            .map(|(t, v)| {
                let name = format!("{t}\u{1f}length_adjusted");
                (t.to_owned(), figure(&v, seed, &name, resamples))
            })
            .collect(),
        length_adjustment: match constants.as_slice() {
            [one] => Some(*one),
            _ => None,
        },
        missing_response_length,
        as_not_met_examples,
        as_not_met_criteria,
    }
}
