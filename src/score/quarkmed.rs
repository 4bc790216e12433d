//! QuarkMedBench-style hierarchical score. Tier credit: essential / important /
//! highlight earn 0, 0.5 or 1 each; a pitfall's severity (none 0, minor 0.5, major 1)
//! is subtracted.
//!
//! ```text
//! E, I, H, P   = earned credit per tier;  E*, I*, H* = tier maxima (criterion counts)
//! gate         = E >= r_essential * E*  and  P <= r_pitfall * P*
//! cap          = bonus_cap * w_E * E*            (no cap when there is no essential)
//! bonus        = gate ? min(w_I*I + w_H*H, cap) : 0
//! bonus_max    = min(w_I*I* + w_H*H*, cap)
//! score        = clamp((w_E*E + bonus - w_P*P) / (w_E*E* + bonus_max), 0, 1)
//! ```

use super::Undefined;
use crate::rubric::{Criterion, CriterionKind, QuarkMedParams, Tier, Verdict};

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    earned: f64,
    max: f64,
}

pub(super) fn score(
    p: &QuarkMedParams,
    graded: &[(&Criterion, Verdict)],
) -> Result<f64, Undefined> {
    let mut t = [Tally::default(); 4];
    for (c, v) in graded {
        let CriterionKind::Tier(tier) = c.kind else {
            // Validation keeps points out of quarkmed rubrics; a stray one counts nothing.
            continue;
        };
        let slot = &mut t[tier as usize];
        slot.earned += v.presence();
        slot.max += 1.0;
    }
    let [e, i, h, pit] = t;
    let essential_max_w = p.w_essential * e.max;
    let bonus_max_raw = p.w_important * i.max + p.w_highlight * h.max;
    let cap = if e.max > 0.0 {
        p.bonus_cap * essential_max_w
    } else {
        f64::INFINITY
    };
    let bonus_max = bonus_max_raw.min(cap);
    let denominator = essential_max_w + bonus_max;
    if denominator <= 0.0 {
        return Err(Undefined::NoPositiveTiers);
    }
    let essential_ok = e.max == 0.0 || e.earned >= p.r_essential * e.max;
    let pitfall_ok = pit.max == 0.0 || pit.earned <= p.r_pitfall * pit.max;
    let bonus = if essential_ok && pitfall_ok {
        (p.w_important * i.earned + p.w_highlight * h.earned).min(cap)
    } else {
        0.0
    };
    let raw = (p.w_essential * e.earned + bonus - p.w_pitfall * pit.earned) / denominator;
    Ok(raw.clamp(0.0, 1.0))
}

const _: () = {
    // The tally array is indexed by tier discriminant.
    assert!(Tier::Essential as usize == 0 && Tier::Pitfall as usize == 3);
};
