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

use crate::rubric::{
    Credit, Criterion, CriterionId, CriterionKind, LengthAdjustment, OnAbstention, Policy, Rubric,
    Severity, Tier, Verdict,
};

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
    /// QuarkMed with the published saturation (`earned_essential`): without essential
    /// criteria the bonus cap is 0, so nothing can be earned.
    NoEssentialCriteria,
}

impl Undefined {
    pub fn as_str(self) -> &'static str {
        match self {
            Undefined::NoPositivePoints => "no_positive_points",
            Undefined::NoPositiveTiers => "no_positive_tiers",
            Undefined::NoCriteria => "no_criteria",
            Undefined::NoEssentialCriteria => "no_essential_criteria",
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
    /// The graded response's length in Unicode code points, when the response is known.
    pub response_chars: Option<u64>,
    /// The length adjustment the figures report beside the raw ones (from the rubric,
    /// or set by the caller for a whole summary); `None` = no adjusted figures.
    pub length_adjustment: Option<LengthAdjustment>,
    /// Scored under `on_abstention = "as_not_met"` (set whenever the rubric says so, even
    /// with nothing abstained, so every such report is flagged): the criteria in
    /// `abstained` counted as not met, except veto criteria, which still make the
    /// example incomplete.
    pub abstentions_as_not_met: bool,
}

impl ExampleScore {
    /// Counts toward aggregates.
    pub fn is_included(&self) -> bool {
        !self.incomplete && self.final_score.is_some()
    }

    /// The amount the length adjustment subtracts from this example's figures; `None`
    /// without an adjustment or without a response length.
    pub fn length_shift(&self) -> Option<f64> {
        Some(self.length_adjustment?.shift(self.response_chars?))
    }

    /// `final_score` after the length adjustment (not clipped: simple-evals clips only
    /// the mean).
    pub fn length_adjusted_score(&self) -> Option<f64> {
        Some(self.final_score? - self.length_shift()?)
    }
}

/// Sets one length adjustment on every example (`--length-adjustment`, or a job
/// summary's option), replacing what their rubrics said.
pub fn apply_length_adjustment(examples: &mut [ExampleScore], adjustment: LengthAdjustment) {
    for e in examples {
        e.length_adjustment = Some(adjustment);
    }
}

/// The policy's raw formula over a set of graded criteria.
pub fn policy_score(policy: &Policy, graded: &[(&Criterion, Verdict)]) -> Result<f64, Undefined> {
    match policy {
        Policy::HealthBench => healthbench::score(graded),
        Policy::LiveMedBench => healthbench::livemedbench_score(graded),
        Policy::QuarkMed(p) => quarkmed::score(p, graded),
        Policy::Weighted => weighted::score(graded),
    }
}

/// The formula for a rubric-tag subset. LiveMedBench publishes no tag figures, so its
/// tags follow HealthBench: a subset without positive points is omitted, not 0.
fn subset_score(policy: &Policy, graded: &[(&Criterion, Verdict)]) -> Result<f64, Undefined> {
    match policy {
        Policy::LiveMedBench => healthbench::score(graded),
        other => policy_score(other, graded),
    }
}

/// The verdict an abstention stands for under `on_abstention = "as_not_met"`: not met,
/// no credit, or (for a pitfall) not present.
fn not_met(c: &Criterion) -> Verdict {
    match c.kind {
        CriterionKind::Points(_) => Verdict::Met(false),
        CriterionKind::Tier(Tier::Pitfall) => Verdict::Severity(Severity::None),
        CriterionKind::Tier(_) => Verdict::Credit(Credit::None),
    }
}

/// Scores one example whose response is unknown (no length adjustment possible).
pub fn score_example(
    rubric: &Rubric,
    verdicts: &[Option<Verdict>],
    example_tags: &[String],
) -> ExampleScore {
    score_response(rubric, verdicts, example_tags, None)
}

/// Scores one example. `verdicts` is aligned with `rubric.criteria`; `None` = abstained.
/// `example_tags` are the case's tags (`theme:*` ...); `response` is the graded text,
/// whose length (Unicode code points) the length adjustment needs.
///
/// Callers guarantee `verdicts.len() == rubric.criteria.len()` and that each verdict is
/// on its criterion's scale (`Criterion::accept`); extra or missing entries are ignored
/// or treated as abstentions rather than panicking.
pub fn score_response(
    rubric: &Rubric,
    verdicts: &[Option<Verdict>],
    example_tags: &[String],
    response: Option<&str>,
) -> ExampleScore {
    let as_not_met = rubric.scoring.on_abstention == OnAbstention::AsNotMet;
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
                // A veto criterion is never filled in: the example stays incomplete.
                if as_not_met && !c.veto {
                    graded.push((c, not_met(c)));
                }
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
        if let Ok(s) = subset_score(policy, &subset) {
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
        response_chars: response.map(crate::rubric::response_chars),
        length_adjustment: rubric.scoring.length_adjustment,
        abstentions_as_not_met: as_not_met,
    }
}

#[cfg(test)]
mod tests;
