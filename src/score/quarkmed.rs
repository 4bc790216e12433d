//! QuarkMedBench hierarchical score (technical report section 2.2, Eq. 1-4). Tier
//! credit: essential / important / highlight earn 0, 0.5 or 1 each (the report's judge
//! grades 0 / 1 / 2 halved); a pitfall's severity (none 0, minor 0.5, major 1) is
//! subtracted. Pure; must not know about judges or aggregates.
//!
//! ```text
//! E, P           = earned essential / pitfall credit;  E*, P* = their maxima (counts)
//! B_t            = weighted important + highlight credit of tag group t (w_I, w_H)
//! rejected       = E < r_essential * E*  or  P > r_pitfall * P*            (Eq. 3)
//! bonus          = rejected ? 0 : min(sum_t min(B_t, L), cap(E))           (Eq. 4)
//! cap(e)         = factor * e                 (earned_essential, published: factor 2)
//!                = factor * w_E * E*          (essential_max, tribunal's earlier rule;
//!                                              no cap when there is no essential)
//! score          = (w_E*E + bonus - w_P*P) / (w_E*R_E + R_bonus - w_P*R_P)   (Eq. 2)
//! ```
//!
//! `R_*` are the same quantities for the reference (ideal) response: every positive
//! criterion fully met and no pitfall present, so `R_E = E*`, `R_P = 0` and `R_bonus =
//! min(sum_t min(B*_t, L), cap(E*))`. That is how the pitfall term in Eq. 2's
//! denominator is read (README "Scoring" says why). The result is clamped to [0, 1].

use std::collections::BTreeMap;

use super::Undefined;
use crate::rubric::{Criterion, CriterionKind, QuarkMedParams, Saturation, Tier, Verdict};

/// Earned and maximum credit of one tier or tag group.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    earned: f64,
    max: f64,
}

/// The pieces of Eq. 2-4 for one set of graded criteria, exposed so tests can check
/// the saturation and rejection properties directly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Parts {
    /// Earned essential credit `E` (unweighted).
    pub essential: f64,
    /// The saturated, possibly rejected bonus added to the numerator.
    pub bonus: f64,
    /// Eq. 3 fired: important and highlight credit was zeroed.
    pub rejected: bool,
    pub numerator: f64,
    pub denominator: f64,
}

/// The bonus group of a criterion for the per-tag cap `L`: its first tag; untagged
/// criteria share one group.
fn group_of(c: &Criterion) -> &str {
    c.tags.first().map_or("", String::as_str)
}

pub(crate) fn parts(p: &QuarkMedParams, graded: &[(&Criterion, Verdict)]) -> Parts {
    let mut essential = Tally::default();
    let mut pitfall = Tally::default();
    let mut groups: BTreeMap<&str, Tally> = BTreeMap::new();
    for (c, v) in graded {
        let CriterionKind::Tier(tier) = c.kind else {
            // Validation keeps points out of quarkmed rubrics; a stray one counts nothing.
            continue;
        };
        let credit = v.presence();
        match tier {
            Tier::Essential => {
                essential.earned += credit;
                essential.max += 1.0;
            }
            Tier::Pitfall => {
                pitfall.earned += credit;
                pitfall.max += 1.0;
            }
            Tier::Important | Tier::Highlight => {
                let w = if tier == Tier::Important {
                    p.w_important
                } else {
                    p.w_highlight
                };
                let g = groups.entry(group_of(c)).or_default();
                g.earned += w * credit;
                g.max += w;
            }
        }
    }
    let per_tag = |x: f64| p.tag_cap.map_or(x, |l| x.min(l));
    let cap = |e: f64| match p.saturation {
        Saturation::EarnedEssential => p.saturation_factor * e,
        Saturation::EssentialMax if essential.max > 0.0 => {
            p.saturation_factor * p.w_essential * essential.max
        }
        Saturation::EssentialMax => f64::INFINITY,
    };
    let bonus_earned: f64 = groups.values().map(|g| per_tag(g.earned)).sum();
    let bonus_max: f64 = groups.values().map(|g| per_tag(g.max)).sum();
    // Eq. 3. A rubric without essentials (or pitfalls) has nothing to fall short on.
    let rejected = (essential.max > 0.0 && essential.earned < p.r_essential * essential.max)
        || (pitfall.max > 0.0 && pitfall.earned > p.r_pitfall * pitfall.max);
    let bonus = if rejected {
        0.0
    } else {
        bonus_earned.min(cap(essential.earned))
    };
    let reference_bonus = bonus_max.min(cap(essential.max));
    Parts {
        essential: essential.earned,
        bonus,
        rejected,
        numerator: p.w_essential * essential.earned + bonus - p.w_pitfall * pitfall.earned,
        // The reference response triggers no pitfall: R_P = 0.
        denominator: p.w_essential * essential.max + reference_bonus,
    }
}

pub(super) fn score(
    p: &QuarkMedParams,
    graded: &[(&Criterion, Verdict)],
) -> Result<f64, Undefined> {
    let has_positive = graded
        .iter()
        .any(|(c, _)| matches!(c.kind, CriterionKind::Tier(t) if t != Tier::Pitfall));
    if !has_positive {
        return Err(Undefined::NoPositiveTiers);
    }
    let parts = parts(p, graded);
    if parts.denominator <= 0.0 {
        // Only the published cap can get here: without essential criteria twice the
        // earned essential credit is 0, so no bonus can ever count.
        return Err(Undefined::NoEssentialCriteria);
    }
    Ok((parts.numerator / parts.denominator).clamp(0.0, 1.0))
}
