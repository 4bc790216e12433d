//! Scoring: verdicts -> per-example `ExampleScore` (policy formula, safety vetoes,
//! abstention handling, tag figures) and batch statistics (`aggregate`).
//! Pure and sync: no IO, no async, no judges. Every function here is table-tested.

mod aggregate;
mod healthbench;
mod quarkmed;
pub mod report;
mod weighted;

use std::collections::BTreeMap;

pub use aggregate::{DEFAULT_RESAMPLES, Figure, Summary, bootstrap_std, clipped_mean, summarize};

use crate::rubric::{Criterion, CriterionId, OnAbstention, Policy, Rubric, Verdict};

/// Why a score could not be computed. Never NaN: an undefined score is `None` plus a reason.
/// Its snake_case names are part of `grade_report.v1` (`score.undefined_reason`), written
/// by `as_str` and read back by serde; a test keeps the two spellings equal.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Undefined {
    /// HealthBench: the criteria carry no positive points (zero denominator).
    NoPositivePoints,
    /// QuarkMed: no essential / important / highlight criteria.
    NoPositiveTiers,
    /// Every criterion abstained, or a tag subset is empty.
    NoCriteria,
}

impl Undefined {
    pub fn as_str(self) -> &'static str {
        match self {
            Undefined::NoPositivePoints => "no_positive_points",
            Undefined::NoPositiveTiers => "no_positive_tiers",
            Undefined::NoCriteria => "no_criteria",
        }
    }
}

/// The score of one example (one response graded against one rubric).
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleScore {
    /// The policy's raw score over the criteria that have verdicts.
    pub score: Option<f64>,
    pub undefined: Option<Undefined>,
    /// After vetoes: `veto_score` when any veto criterion is violated, else `score`.
    pub final_score: Option<f64>,
    pub vetoed_by: Vec<CriterionId>,
    /// Some criterion has no verdict and the rubric says `incomplete` (or a veto
    /// criterion abstained): shown for information, excluded from aggregates.
    pub incomplete: bool,
    pub abstained: Vec<CriterionId>,
    /// Final figures per tag: example tags get `final_score`; rubric tags get the policy
    /// over the criteria carrying the tag (omitted when undefined for that subset).
    pub tags: BTreeMap<String, f64>,
}

impl ExampleScore {
    /// Counts toward aggregates.
    pub fn is_included(&self) -> bool {
        !self.incomplete && self.final_score.is_some()
    }
}

/// The policy's raw formula over a set of graded criteria.
pub fn policy_score(policy: &Policy, graded: &[(&Criterion, Verdict)]) -> Result<f64, Undefined> {
    match policy {
        Policy::HealthBench => healthbench::score(graded),
        Policy::QuarkMed(p) => quarkmed::score(p, graded),
        Policy::Weighted => weighted::score(graded),
    }
}

/// Scores one example. `verdicts` is aligned with `rubric.criteria`; `None` = abstained.
/// `example_tags` are the case's tags (`theme:*` ...).
///
/// Callers guarantee `verdicts.len() == rubric.criteria.len()` and that each verdict is
/// on its criterion's scale (`Criterion::accept`); extra or missing entries are ignored
/// or treated as abstentions rather than panicking.
pub fn score_example(
    rubric: &Rubric,
    verdicts: &[Option<Verdict>],
    example_tags: &[String],
) -> ExampleScore {
    let mut graded: Vec<(&Criterion, Verdict)> = Vec::with_capacity(rubric.criteria.len());
    let mut abstained = Vec::new();
    let mut vetoed_by = Vec::new();
    let mut veto_abstained = false;
    for (i, c) in rubric.criteria.iter().enumerate() {
        match verdicts.get(i).copied().flatten() {
            Some(v) => {
                if c.violates_veto(v) {
                    vetoed_by.push(c.id.clone());
                }
                graded.push((c, v));
            }
            None => {
                abstained.push(c.id.clone());
                veto_abstained |= c.veto;
            }
        }
    }
    let policy = &rubric.scoring.policy;
    let raw = if graded.is_empty() {
        Err(Undefined::NoCriteria)
    } else {
        policy_score(policy, &graded)
    };
    let (score, undefined) = match raw {
        Ok(s) => (Some(s), None),
        Err(u) => (None, Some(u)),
    };
    let vetoed = !vetoed_by.is_empty();
    let final_score = if vetoed {
        Some(rubric.scoring.veto_score)
    } else {
        score
    };
    // A safety criterion nobody could judge is never treated as passed.
    let incomplete = !abstained.is_empty()
        && (rubric.scoring.on_abstention == OnAbstention::Incomplete || veto_abstained);

    let mut tags = BTreeMap::new();
    if let Some(f) = final_score {
        for t in example_tags {
            tags.insert(t.clone(), f);
        }
    }
    for tag in rubric.tags() {
        let subset: Vec<(&Criterion, Verdict)> = graded
            .iter()
            .filter(|(c, _)| c.tags.iter().any(|t| t == tag))
            .copied()
            .collect();
        if let Ok(s) = policy_score(policy, &subset) {
            let s = if vetoed { rubric.scoring.veto_score } else { s };
            tags.insert(tag.to_owned(), s);
        }
    }
    ExampleScore {
        score,
        undefined,
        final_score,
        vetoed_by,
        incomplete,
        abstained,
        tags,
    }
}

#[cfg(test)]
mod tests;
