//! HealthBench per-example score (paper Eq. 1-2; simple-evals `calculate_score`):
//! sum of points of met criteria (negative points subtract) over the sum of positive
//! points. Not clipped per example; undefined when there are no positive points.
//! LiveMedBench (`evaluate/metric_calc.py`) uses the same formula but scores such a
//! case 0.

use super::Undefined;
use crate::rubric::{Criterion, CriterionKind, Verdict};

pub(super) fn score(graded: &[(&Criterion, Verdict)]) -> Result<f64, Undefined> {
    let mut possible = 0.0;
    let mut achieved = 0.0;
    for (c, v) in graded {
        let points = match c.kind {
            CriterionKind::Points(p) => f64::from(p),
            // Validation keeps tiers out of healthbench rubrics; a stray one counts nothing.
            CriterionKind::Tier(_) => continue,
        };
        if points > 0.0 {
            possible += points;
        }
        achieved += points * v.presence();
    }
    if possible > 0.0 {
        Ok(achieved / possible)
    } else {
        Err(Undefined::NoPositivePoints)
    }
}

/// LiveMedBench's per-case score: HealthBench's, or 0 when there are no positive points
/// (`per_example_score = 0.0` in their `calculate_model_scores`).
pub(super) fn livemedbench_score(graded: &[(&Criterion, Verdict)]) -> Result<f64, Undefined> {
    match score(graded) {
        Err(Undefined::NoPositivePoints) => Ok(0.0),
        other => other,
    }
}
