//! Plain weighted mean for non-medical rubrics. Each criterion earns credit in [0, 1]:
//! its presence for a positive criterion, one minus its presence for a negative one
//! (points < 0 or pitfall). Weight: `weight` if given, else |points|, else 1.

use super::Undefined;
use crate::rubric::{Criterion, CriterionKind, Verdict};

pub(super) fn weight_of(c: &Criterion) -> f64 {
    c.weight.unwrap_or(match c.kind {
        CriterionKind::Points(p) => f64::from(p.unsigned_abs()),
        CriterionKind::Tier(_) => 1.0,
    })
}

pub(super) fn score(graded: &[(&Criterion, Verdict)]) -> Result<f64, Undefined> {
    // Weights are finite and positive (rubric validation), but their sum may not be
    // (two weights of 1e308): the mean is taken over weights divided by the largest,
    // each in (0, 1], so it stays finite for any rubric and is the same mean.
    let largest = graded
        .iter()
        .map(|(c, _)| weight_of(c))
        .fold(0.0_f64, f64::max);
    let mut total = 0.0;
    let mut earned = 0.0;
    for (c, v) in graded {
        let w = weight_of(c) / largest;
        let credit = if c.kind.is_negative() {
            1.0 - v.presence()
        } else {
            v.presence()
        };
        total += w;
        earned += w * credit;
    }
    if total > 0.0 && largest.is_finite() {
        Ok(earned / total)
    } else {
        Err(Undefined::NoCriteria)
    }
}
