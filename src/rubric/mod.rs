//! The rubric model: `Rubric`, `Criterion`, verdict scales, scoring parameters and veto rules.
//! Owns turning unvalidated input (`raw`) into validated types; pure, no IO, no async.
//! Must not know about judges, transports or storage.

pub mod bounded;
mod raw;
pub mod schema;
mod verdict;

use std::collections::BTreeSet;
use std::fmt;

pub use raw::{RawConsensus, RawCriterion, RawRubric, RawScoring, derive_criterion_ids};
pub use verdict::{Credit, Severity, Verdict, json_kind as json_kind_of};

/// The wire/persisted format tag of a rubric document.
pub const RUBRIC_FORMAT: &str = "rubric.v1";

/// One problem found while validating input, located by a field path such as
/// `criteria[3].points`. Validation collects every problem, not just the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Re-roots the path under `prefix` (`rubric` + `criteria[1].text` -> `rubric.criteria[1].text`).
    #[must_use]
    pub fn under(mut self, prefix: &str) -> Self {
        if prefix.is_empty() {
            return self;
        }
        self.field = if self.field.is_empty() {
            prefix.to_owned()
        } else if self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Decodes with serde, naming the path of the offending field (`rubrics[3].points`), or
/// an empty path when the problem is the document itself. The one place decode errors
/// become `FieldError`s, for JSON inputs and the TOML config alike.
pub fn decode_at<'de, D, T>(d: D) -> Result<T, FieldError>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde_path_to_error::deserialize(d).map_err(|e| {
        let path = e.path().to_string();
        let mut field = if path == "." { String::new() } else { path };
        let message = e.into_inner().to_string();
        // serde reports a missing field at the object holding it; name the field itself.
        if let Some(name) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(name);
        }
        FieldError::new(field, message)
    })
}

/// Every problem found in one document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid(pub Vec<FieldError>);

impl Invalid {
    pub fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![FieldError::new(field, message)])
    }

    #[must_use]
    pub fn under(self, prefix: &str) -> Self {
        Self(self.0.into_iter().map(|e| e.under(prefix)).collect())
    }

    /// The first offending field, for error bodies that carry a single `field`.
    pub fn first_field(&self) -> Option<&str> {
        self.0.first().map(|e| e.field.as_str())
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for e in &self.0 {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A criterion identifier, unique within its rubric.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct CriterionId(pub String);

impl fmt::Display for CriterionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// QuarkMedBench criterion tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Essential,
    Important,
    Highlight,
    Pitfall,
}

impl Tier {
    pub const ALL: [Tier; 4] = [
        Tier::Essential,
        Tier::Important,
        Tier::Highlight,
        Tier::Pitfall,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Essential => "essential",
            Tier::Important => "important",
            Tier::Highlight => "highlight",
            Tier::Pitfall => "pitfall",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// How a criterion is graded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CriterionKind {
    /// HealthBench style: signed points, nonzero, in [-10, 10]. Negative means an
    /// undesirable behaviour: "met" means the response did the bad thing.
    Points(i8),
    /// QuarkMed style tier; positive tiers take a `Credit`, pitfalls a `Severity`.
    Tier(Tier),
}

impl CriterionKind {
    /// True when the criterion describes something the response should not do.
    pub fn is_negative(self) -> bool {
        match self {
            CriterionKind::Points(p) => p < 0,
            CriterionKind::Tier(t) => t == Tier::Pitfall,
        }
    }
}

/// One validated criterion.
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    pub id: CriterionId,
    pub text: String,
    pub kind: CriterionKind,
    pub tags: Vec<String>,
    pub veto: bool,
    /// Weight for the `weighted` policy; `None` means the policy's default.
    pub weight: Option<f64>,
}

impl Criterion {
    /// Checks that `verdict` is on this criterion's scale, coercing a boolean onto a
    /// graded scale (true = full credit / major, false = none).
    pub fn accept(&self, verdict: Verdict) -> Result<Verdict, String> {
        match (self.kind, verdict) {
            (CriterionKind::Points(_), Verdict::Met(_)) => Ok(verdict),
            (CriterionKind::Points(_), other) => Err(format!(
                "a points criterion takes true or false, got {}",
                other.describe()
            )),
            (CriterionKind::Tier(Tier::Pitfall), Verdict::Severity(_)) => Ok(verdict),
            (CriterionKind::Tier(Tier::Pitfall), Verdict::Met(m)) => Ok(Verdict::Severity(if m {
                Severity::Major
            } else {
                Severity::None
            })),
            (CriterionKind::Tier(Tier::Pitfall), other) => Err(format!(
                "a pitfall criterion takes \"none\", \"minor\" or \"major\", got {}",
                other.describe()
            )),
            (CriterionKind::Tier(_), Verdict::Credit(_)) => Ok(verdict),
            (CriterionKind::Tier(_), Verdict::Met(m)) => {
                Ok(Verdict::Credit(if m { Credit::Full } else { Credit::None }))
            }
            (CriterionKind::Tier(_), other) => Err(format!(
                "a positive-tier criterion takes 0, 0.5 or 1, got {}",
                other.describe()
            )),
        }
    }

    /// A veto criterion is violated when a negative one is present (met / minor / major)
    /// or a positive one is not met at all (false / credit 0).
    pub fn violates_veto(&self, verdict: Verdict) -> bool {
        self.veto
            && if self.kind.is_negative() {
                verdict.presence() > 0.0
            } else {
                verdict.presence() == 0.0
            }
    }
}

/// Scoring policy and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    HealthBench,
    /// LiveMedBench (`evaluate/metric_calc.py`): HealthBench's per-case formula, but a
    /// case without positive points scores 0 instead of being undefined.
    LiveMedBench,
    QuarkMed(QuarkMedParams),
    Weighted,
}

impl Policy {
    pub fn name(&self) -> &'static str {
        match self {
            Policy::HealthBench => "healthbench",
            Policy::LiveMedBench => "livemedbench",
            Policy::QuarkMed(_) => "quarkmed",
            Policy::Weighted => "weighted",
        }
    }

    /// A policy by name with default parameters.
    pub fn by_name(name: &str) -> Option<Policy> {
        match name {
            "healthbench" => Some(Policy::HealthBench),
            "livemedbench" => Some(Policy::LiveMedBench),
            "quarkmed" => Some(Policy::QuarkMed(QuarkMedParams::default())),
            "weighted" => Some(Policy::Weighted),
            _ => None,
        }
    }

    /// Scores signed `points` criteria (HealthBench-style rubrics), as opposed to tiers.
    pub fn scores_points(&self) -> bool {
        matches!(self, Policy::HealthBench | Policy::LiveMedBench)
    }
}

pub const POLICY_NAMES: [&str; 4] = ["healthbench", "livemedbench", "quarkmed", "weighted"];

/// How the bonus (important + highlight credit) of a QuarkMed score saturates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saturation {
    /// QuarkMedBench report Eq. 4 (published): the bonus counts at most `factor` x the
    /// *earned* essential credit (factor 2 in the report).
    EarnedEssential,
    /// tribunal's rule before the report was available: the bonus counts at most
    /// `factor` x the *weighted essential maximum* (factor 1), and a rubric without
    /// essentials has no cap.
    EssentialMax,
}

impl Saturation {
    pub fn as_str(self) -> &'static str {
        match self {
            Saturation::EarnedEssential => "earned_essential",
            Saturation::EssentialMax => "essential_max",
        }
    }

    /// The factor each rule uses when the rubric gives none.
    pub fn default_factor(self) -> f64 {
        match self {
            Saturation::EarnedEssential => 2.0,
            Saturation::EssentialMax => 1.0,
        }
    }
}

/// Parameters of the QuarkMedBench policy (technical report section 2.2, Eq. 1-4). The
/// report publishes the weights (2:1:1:2, Table 3) and the saturation rule (twice the
/// earned essential score); the hard-rejection ratios and the per-tag cap `L` are not
/// published and keep tribunal's documented defaults (see README "Scoring").
#[derive(Debug, Clone, PartialEq)]
pub struct QuarkMedParams {
    pub w_essential: f64,
    pub w_important: f64,
    pub w_highlight: f64,
    pub w_pitfall: f64,
    /// Eq. 3: important + highlight credit is zeroed when essential earned <
    /// r_essential x essential max ...
    pub r_essential: f64,
    /// ... or when pitfall earned > r_pitfall x pitfall max.
    pub r_pitfall: f64,
    /// Eq. 4's outer cap.
    pub saturation: Saturation,
    /// The multiple of the saturation base (earned essential credit, or the weighted
    /// essential maximum for `EssentialMax`).
    pub saturation_factor: f64,
    /// Eq. 4's per-tag cap `L` on each tag's weighted important + highlight credit, in
    /// tribunal credit units (a fully met criterion of weight 1 earns 1); `None` = no cap.
    pub tag_cap: Option<f64>,
}

impl Default for QuarkMedParams {
    fn default() -> Self {
        Self {
            w_essential: 2.0,
            w_important: 1.0,
            w_highlight: 1.0,
            w_pitfall: 2.0,
            r_essential: 0.5,
            r_pitfall: 0.0,
            saturation: Saturation::EarnedEssential,
            saturation_factor: Saturation::EarnedEssential.default_factor(),
            tag_cap: None,
        }
    }
}

/// What to do with an example where some criterion has no verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnAbstention {
    /// Mark the example incomplete: scored for information only, excluded from aggregates.
    #[default]
    Incomplete,
    /// Drop abstained criteria from numerator and denominator and keep the example.
    Renormalize,
    /// Count an abstained criterion as not met (a pitfall as absent), as LiveMedBench's
    /// evaluation code does with a failed judge call. Opt-in only, to reproduce published
    /// figures; every report and summary that uses it says so.
    AsNotMet,
}

impl OnAbstention {
    pub const NAMES: [&'static str; 3] = ["incomplete", "renormalize", "as_not_met"];

    pub fn as_str(self) -> &'static str {
        match self {
            OnAbstention::Incomplete => "incomplete",
            OnAbstention::Renormalize => "renormalize",
            OnAbstention::AsNotMet => "as_not_met",
        }
    }

    pub fn parse(s: &str) -> Option<OnAbstention> {
        match s {
            "incomplete" => Some(OnAbstention::Incomplete),
            "renormalize" => Some(OnAbstention::Renormalize),
            "as_not_met" => Some(OnAbstention::AsNotMet),
            _ => None,
        }
    }
}

/// HealthBench Professional's length adjustment (simple-evals
/// `calculate_length_adjusted_score`): `adjusted = score - penalty_per_500_chars x
/// (chars - center) / 500`, where `chars` counts Unicode code points of the response.
/// Two-sided (shorter answers gain) and never clipped per example.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LengthAdjustment {
    /// Response length (Unicode code points) at which the adjustment is zero.
    #[schema(minimum = 0)]
    pub center: f64,
    /// Score change per 500 code points away from `center`.
    #[schema(minimum = 0)]
    pub penalty_per_500_chars: f64,
}

impl LengthAdjustment {
    /// The published HealthBench Professional constants (simple-evals
    /// `--healthbench-professional-mode`; paper arXiv 2604.27470 section 4.1).
    pub const PROFESSIONAL: LengthAdjustment = LengthAdjustment {
        center: 2000.0,
        penalty_per_500_chars: 0.0147,
    };

    /// Checks both constants (finite, >= 0); the message names the fix.
    pub fn new(center: f64, penalty_per_500_chars: f64) -> Result<LengthAdjustment, String> {
        for (name, v) in [
            ("center", center),
            ("penalty_per_500_chars", penalty_per_500_chars),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} {v} must be a finite number >= 0"));
            }
        }
        Ok(LengthAdjustment {
            center,
            penalty_per_500_chars,
        })
    }

    /// By preset name (`professional`) or as `CENTER,PENALTY_PER_500_CHARS`.
    pub fn parse(s: &str) -> Result<LengthAdjustment, String> {
        if s == "professional" {
            return Ok(LengthAdjustment::PROFESSIONAL);
        }
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let [c, p] = parts.as_slice() else {
            return Err(format!(
                "\"{s}\" is not a length adjustment; use \"professional\" or CENTER,PENALTY_PER_500_CHARS (e.g. 2000,0.0147)"
            ));
        };
        let num = |v: &str, name: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{name} \"{v}\" is not a number"))
        };
        LengthAdjustment::new(num(c, "center")?, num(p, "penalty_per_500_chars")?)
    }

    /// The amount subtracted from a score for a response of `chars` code points.
    pub fn shift(&self, chars: u64) -> f64 {
        #[expect(
            clippy::cast_precision_loss,
            reason = "response lengths are far below 2^52 code points"
        )]
        let n = chars as f64;
        self.penalty_per_500_chars * ((n - self.center) / 500.0)
    }

    pub fn adjust(&self, score: f64, chars: u64) -> f64 {
        score - self.shift(chars)
    }
}

/// The length of a response as the length adjustment counts it: Unicode code points
/// (Python's `len(str)`), not bytes.
pub fn response_chars(response: &str) -> u64 {
    u64::try_from(response.chars().count()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scoring {
    pub policy: Policy,
    /// Final score of an example on which a veto criterion is violated.
    pub veto_score: f64,
    pub on_abstention: OnAbstention,
    /// Length adjustment reported beside the raw figures; off (`None`) by default.
    pub length_adjustment: Option<LengthAdjustment>,
}

impl Default for Scoring {
    fn default() -> Self {
        Self {
            policy: Policy::HealthBench,
            veto_score: 0.0,
            on_abstention: OnAbstention::Incomplete,
            length_adjustment: None,
        }
    }
}

/// Consensus rule names a rubric may choose (the committee maps them to its rules).
pub const CONSENSUS_RULES: [&str; 7] = [
    "majority",
    "weighted",
    "unanimous",
    "any",
    "mean",
    "median",
    "dawid_skene",
];
pub const TIE_RULES: [&str; 3] = ["not_met", "met", "escalate"];

/// A rubric's own consensus choice, overriding the committee's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsensusSpec {
    /// Rule for ordinary criteria (`None`: the committee's `consensus`).
    pub rule: Option<&'static str>,
    pub tie: &'static str,
    pub k: usize,
    /// Rule for veto criteria (`None`: the committee's `veto_consensus`).
    pub veto_rule: Option<&'static str>,
    pub veto_k: usize,
}

/// A validated rubric. Invariants: at least one criterion; criterion ids unique;
/// every criterion's kind fits the policy (tiers need no points and vice versa is allowed
/// only as the policy documents).
#[derive(Debug, Clone, PartialEq)]
pub struct Rubric {
    pub id: String,
    pub version: u32,
    pub title: String,
    pub scoring: Scoring,
    pub consensus: Option<ConsensusSpec>,
    pub criteria: Vec<Criterion>,
}

impl Rubric {
    /// Distinct rubric-level tags, in order.
    pub fn tags(&self) -> BTreeSet<&str> {
        self.criteria
            .iter()
            .flat_map(|c| c.tags.iter().map(String::as_str))
            .collect()
    }

    pub fn criterion(&self, id: &str) -> Option<(usize, &Criterion)> {
        self.criteria.iter().enumerate().find(|(_, c)| c.id.0 == id)
    }

    /// `id@version`, the reference form used by cases and the store.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }
}

/// Checks a rubric or criterion identifier: letters, digits and `._:-`, 1..=128 chars.
pub fn valid_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crit(kind: CriterionKind, veto: bool) -> Criterion {
        Criterion {
            id: CriterionId("c".into()),
            text: "t".into(),
            kind,
            tags: vec![],
            veto,
            weight: None,
        }
    }

    #[test]
    fn veto_violation_table() {
        let cases = [
            (CriterionKind::Points(5), Verdict::Met(false), true),
            (CriterionKind::Points(5), Verdict::Met(true), false),
            (CriterionKind::Points(-5), Verdict::Met(true), true),
            (CriterionKind::Points(-5), Verdict::Met(false), false),
            (
                CriterionKind::Tier(Tier::Essential),
                Verdict::Credit(Credit::None),
                true,
            ),
            (
                CriterionKind::Tier(Tier::Essential),
                Verdict::Credit(Credit::Partial),
                false,
            ),
            (
                CriterionKind::Tier(Tier::Pitfall),
                Verdict::Severity(Severity::Minor),
                true,
            ),
            (
                CriterionKind::Tier(Tier::Pitfall),
                Verdict::Severity(Severity::None),
                false,
            ),
        ];
        for (kind, verdict, expected) in cases {
            assert_eq!(
                crit(kind, true).violates_veto(verdict),
                expected,
                "{kind:?} {verdict:?}"
            );
            assert!(!crit(kind, false).violates_veto(verdict));
        }
    }

    #[test]
    fn accept_coerces_booleans_onto_graded_scales() {
        let pit = crit(CriterionKind::Tier(Tier::Pitfall), false);
        assert_eq!(
            pit.accept(Verdict::Met(true)),
            Ok(Verdict::Severity(Severity::Major))
        );
        assert!(pit.accept(Verdict::Credit(Credit::Full)).is_err());
        let pts = crit(CriterionKind::Points(3), false);
        assert!(pts.accept(Verdict::Credit(Credit::Partial)).is_err());
    }
}
