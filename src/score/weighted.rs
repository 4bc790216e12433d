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
    let mut total = 0.0;
    let mut earned = 0.0;
    for (c, v) in graded {
        let w = weight_of(c);
        let credit = if c.kind.is_negative() {
            1.0 - v.presence()
        } else {
            v.presence()
        };
        total += w;
        earned += w * credit;
    }
    if total > 0.0 {
        Ok(earned / total)
    } else {
        Err(Undefined::NoCriteria)
    }
}
