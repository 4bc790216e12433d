//! The rubric model: `Rubric`, `Criterion`, verdict scales, scoring parameters and veto rules.
//! Owns turning unvalidated input (`raw`) into validated types; pure, no IO, no async.
//! Must not know about judges, transports or storage.

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
    QuarkMed(QuarkMedParams),
    Weighted,
}

impl Policy {
    pub fn name(&self) -> &'static str {
        match self {
            Policy::HealthBench => "healthbench",
            Policy::QuarkMed(_) => "quarkmed",
            Policy::Weighted => "weighted",
        }
    }

    /// A policy by name with default parameters.
    pub fn by_name(name: &str) -> Option<Policy> {
        match name {
            "healthbench" => Some(Policy::HealthBench),
            "quarkmed" => Some(Policy::QuarkMed(QuarkMedParams::default())),
            "weighted" => Some(Policy::Weighted),
            _ => None,
        }
    }
}

pub const POLICY_NAMES: [&str; 3] = ["healthbench", "quarkmed", "weighted"];

/// Parameters of the QuarkMedBench-style policy. The paper fixes the weights
/// (2:1:1:2) but not the gate ratios or the saturation constant; see README.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarkMedParams {
    pub w_essential: f64,
    pub w_important: f64,
    pub w_highlight: f64,
    pub w_pitfall: f64,
    /// Important + highlight credit is zeroed when essential earned < r_essential x essential max.
    pub r_essential: f64,
    /// ... or when pitfall earned > r_pitfall x pitfall max.
    pub r_pitfall: f64,
    /// Saturation cap L: weighted important + highlight credit counts at most
    /// `bonus_cap` x the weighted essential maximum.
    pub bonus_cap: f64,
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
            bonus_cap: 1.0,
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
}

impl OnAbstention {
    pub fn as_str(self) -> &'static str {
        match self {
            OnAbstention::Incomplete => "incomplete",
            OnAbstention::Renormalize => "renormalize",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scoring {
    pub policy: Policy,
    /// Final score of an example on which a veto criterion is violated.
    pub veto_score: f64,
    pub on_abstention: OnAbstention,
}

impl Default for Scoring {
    fn default() -> Self {
        Self {
            policy: Policy::HealthBench,
            veto_score: 0.0,
            on_abstention: OnAbstention::Incomplete,
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
