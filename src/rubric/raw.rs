//! `RawRubric` (the `rubric.v1` document as written by users) and its one-way
//! validation into `Rubric`. Every problem is collected with its field path.
//! Pure: no IO.

use serde::{Deserialize, Serialize};

use super::{
    CONSENSUS_RULES, ConsensusSpec, Criterion, CriterionId, CriterionKind, FieldError, Invalid,
    LengthAdjustment, OnAbstention, Policy, QuarkMedParams, RUBRIC_FORMAT, Rubric, Saturation,
    Scoring, TIE_RULES, Tier, valid_identifier,
};

/// A `rubric.v1` document before validation. The OpenAPI schema derived here states
/// only what `validate` enforces (cross-field rules, such as unique criterion ids or
/// points vs tiers by policy, are checked there and answered with 400).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Rubric)]
pub struct RawRubric {
    #[schema(value_type = RubricFormat)]
    pub format: String,
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    pub id: String,
    #[schema(minimum = 1)]
    pub version: u32,
    #[schema(min_length = 1)]
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub scoring: RawScoring,
    /// Optional consensus rules for this rubric (else the committee's defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consensus: Option<RawConsensus>,
    #[schema(min_items = 1)]
    pub criteria: Vec<RawCriterion>,
}

/// The format name of a rubric document.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[expect(dead_code, reason = "documents the OpenAPI schema only")]
pub enum RubricFormat {
    #[schema(rename = "rubric.v1")]
    RubricV1,
}

/// Consensus rule names (`CONSENSUS_RULES`).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[expect(dead_code, reason = "documents the OpenAPI schema only")]
pub enum ConsensusRuleName {
    Majority,
    Weighted,
    Unanimous,
    Any,
    Mean,
    Median,
    DawidSkene,
}

/// Tie rule names (`TIE_RULES`).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[expect(dead_code, reason = "documents the OpenAPI schema only")]
pub enum TieRuleName {
    NotMet,
    Met,
    Escalate,
}

/// Scoring policy names.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[expect(dead_code, reason = "documents the OpenAPI schema only")]
pub enum PolicyName {
    Healthbench,
    Livemedbench,
    Quarkmed,
    Weighted,
}

/// QuarkMed saturation rules (`Saturation`).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[expect(dead_code, reason = "documents the OpenAPI schema only")]
pub enum SaturationName {
    EarnedEssential,
    EssentialMax,
}

/// What an abstained criterion does to the example.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[expect(dead_code, reason = "documents the OpenAPI schema only")]
pub enum OnAbstentionName {
    Incomplete,
    Renormalize,
    AsNotMet,
}

/// QuarkMed tier names.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[expect(dead_code, reason = "documents the OpenAPI schema only")]
pub enum TierName {
    Essential,
    Important,
    Highlight,
    Pitfall,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RubricConsensus)]
pub struct RawConsensus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<ConsensusRuleName>)]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<TieRuleName>)]
    pub tie: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub k: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<ConsensusRuleName>)]
    pub veto_rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub veto_k: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TierWeights)]
pub struct RawWeights {
    #[schema(exclusive_minimum = 0)]
    pub essential: Option<f64>,
    #[schema(exclusive_minimum = 0)]
    pub important: Option<f64>,
    #[schema(exclusive_minimum = 0)]
    pub highlight: Option<f64>,
    #[schema(exclusive_minimum = 0)]
    pub pitfall: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RubricScoring)]
pub struct RawScoring {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<PolicyName>)]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<RawWeights>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1)]
    pub r_essential: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1)]
    pub r_pitfall: Option<f64>,
    /// Legacy spelling of `saturation = "essential_max"` with this factor (documents
    /// written before the QuarkMedBench report keep their meaning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub bonus_cap: Option<f64>,
    /// QuarkMed Eq. 4 outer cap: `earned_essential` (published, default) or `essential_max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<SaturationName>)]
    pub saturation: Option<String>,
    /// Multiple of the saturation base (default 2 for earned_essential, 1 for essential_max).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub saturation_factor: Option<f64>,
    /// QuarkMed Eq. 4 per-tag cap L in tribunal credit units (default: no cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub tag_cap: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1)]
    pub veto_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<OnAbstentionName>)]
    pub on_abstention: Option<String>,
    /// HealthBench Professional length adjustment; both keys or neither. Off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length_adjustment: Option<LengthAdjustment>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RubricCriterion)]
pub struct RawCriterion {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    pub id: Option<String>,
    #[schema(min_length = 1)]
    pub text: String,
    /// HealthBench style: a nonzero integer in [-10, 10].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>, minimum = -10, maximum = 10)]
    pub points: Option<f64>,
    /// QuarkMed style.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<TierName>)]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub veto: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0)]
    pub weight: Option<f64>,
}

/// Ids for criteria that have none: `c-` + 12 hex digits of blake3(text). Identical
/// texts within one rubric get `-2`, `-3`, ... in order, so ids stay stable for a
/// given rubric and unique within it.
pub fn derive_criterion_ids<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    texts
        .into_iter()
        .map(|t| {
            let hex = blake3::hash(t.as_bytes()).to_hex();
            let base = format!("c-{}", &hex.as_str()[..12]);
            let n = seen.entry(base.clone()).or_insert(0);
            *n += 1;
            if *n == 1 { base } else { format!("{base}-{n}") }
        })
        .collect()
}

impl RawRubric {
    /// Validates into a `Rubric`, reporting every problem. `criteria_field` names the
    /// criteria array in error paths (`criteria` for rubric.v1, `rubrics` for HealthBench rows).
    pub fn validate(&self, criteria_field: &str) -> Result<Rubric, Invalid> {
        let mut errs = Vec::new();
        if self.format != RUBRIC_FORMAT {
            errs.push(FieldError::new(
                "format",
                format!(
                    "\"{}\" is not supported; use \"{RUBRIC_FORMAT}\"",
                    self.format
                ),
            ));
        }
        if !valid_identifier(&self.id) {
            errs.push(FieldError::new(
                "id",
                format!(
                    "\"{}\" is not a valid id; use 1-128 letters, digits or . _ : -",
                    self.id
                ),
            ));
        }
        if self.version == 0 {
            errs.push(FieldError::new("version", "must be 1 or more"));
        }
        // The schema allows 500 characters; `names` adds NFC, trimming and no
        // control or invisible format characters.
        let title = crate::names::title(&self.title, 500).unwrap_or_else(|e| {
            errs.push(FieldError::new("title", e));
            String::new()
        });
        let scoring = validate_scoring(&self.scoring, &mut errs);
        let consensus = self
            .consensus
            .as_ref()
            .map(|c| validate_consensus(c, &mut errs));
        if self.criteria.is_empty() {
            errs.push(FieldError::new(
                criteria_field,
                "a rubric needs at least one criterion",
            ));
        }
        let derived = derive_criterion_ids(self.criteria.iter().map(|c| c.text.as_str()));
        let mut criteria = Vec::with_capacity(self.criteria.len());
        let mut ids: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (i, (rc, derived_id)) in self.criteria.iter().zip(derived).enumerate() {
            let at = format!("{criteria_field}[{i}]");
            if let Some(c) = validate_criterion(rc, derived_id, &at, &scoring, &mut errs) {
                if let Some(first) = ids.insert(c.id.0.clone(), i) {
                    errs.push(FieldError::new(
                        format!("{at}.id"),
                        format!(
                            "duplicate criterion id \"{}\" (also {criteria_field}[{first}]); ids must be unique within a rubric",
                            c.id
                        ),
                    ));
                }
                criteria.push(c);
            }
        }
        if !errs.is_empty() {
            return Err(Invalid(errs));
        }
        Ok(Rubric {
            id: self.id.clone(),
            version: self.version,
            title,
            scoring,
            consensus,
            criteria,
        })
    }
}

fn validate_scoring(raw: &RawScoring, errs: &mut Vec<FieldError>) -> Scoring {
    let mut scoring = Scoring::default();
    let name = raw.policy.as_deref().unwrap_or("healthbench");
    match Policy::by_name(name) {
        Some(p) => scoring.policy = p,
        None => errs.push(FieldError::new(
            "scoring.policy",
            format!(
                "unknown policy \"{name}\"; use one of {}",
                super::POLICY_NAMES.join(", ")
            ),
        )),
    }
    let quark_only = [
        ("weights", raw.weights.is_some()),
        ("r_essential", raw.r_essential.is_some()),
        ("r_pitfall", raw.r_pitfall.is_some()),
        ("bonus_cap", raw.bonus_cap.is_some()),
        ("saturation", raw.saturation.is_some()),
        ("saturation_factor", raw.saturation_factor.is_some()),
        ("tag_cap", raw.tag_cap.is_some()),
    ];
    if let Policy::QuarkMed(params) = &mut scoring.policy {
        let w = raw.weights.clone().unwrap_or_default();
        for (field, value, slot) in [
            ("essential", w.essential, &mut params.w_essential),
            ("important", w.important, &mut params.w_important),
            ("highlight", w.highlight, &mut params.w_highlight),
            ("pitfall", w.pitfall, &mut params.w_pitfall),
        ] {
            if let Some(v) = value {
                if v.is_finite() && v > 0.0 {
                    *slot = v;
                } else {
                    errs.push(FieldError::new(
                        format!("scoring.weights.{field}"),
                        format!("{v} must be a positive number"),
                    ));
                }
            }
        }
        set_unit(
            raw.r_essential,
            "scoring.r_essential",
            &mut params.r_essential,
            errs,
        );
        set_unit(
            raw.r_pitfall,
            "scoring.r_pitfall",
            &mut params.r_pitfall,
            errs,
        );
        validate_saturation(raw, params, errs);
    } else {
        for (field, present) in quark_only {
            if present {
                errs.push(FieldError::new(
                    format!("scoring.{field}"),
                    "only applies to the quarkmed policy; remove it or set scoring.policy = \"quarkmed\"",
                ));
            }
        }
    }
    if let Some(la) = raw.length_adjustment {
        match LengthAdjustment::new(la.center, la.penalty_per_500_chars) {
            Ok(la) => scoring.length_adjustment = Some(la),
            Err(m) => errs.push(FieldError::new("scoring.length_adjustment", m)),
        }
    }
    set_unit(
        raw.veto_score,
        "scoring.veto_score",
        &mut scoring.veto_score,
        errs,
    );
    match raw.on_abstention.as_deref() {
        None => {}
        Some(name) => match OnAbstention::parse(name) {
            Some(o) => scoring.on_abstention = o,
            None => errs.push(FieldError::new(
                "scoring.on_abstention",
                format!(
                    "unknown value \"{name}\"; use \"incomplete\", \"renormalize\" or \"as_not_met\""
                ),
            )),
        },
    }
    scoring
}

/// QuarkMed Eq. 4: the saturation rule, its factor and the per-tag cap. The legacy key
/// `bonus_cap` means tribunal's earlier rule (`essential_max`) with that factor, so
/// documents written before the report keep their meaning.
fn validate_saturation(raw: &RawScoring, params: &mut QuarkMedParams, errs: &mut Vec<FieldError>) {
    let rule = match (raw.bonus_cap, raw.saturation.as_deref()) {
        (Some(_), Some(_)) => {
            errs.push(FieldError::new(
                "scoring.bonus_cap",
                "give either `bonus_cap` (legacy: essential_max with that factor) or `saturation`, not both",
            ));
            return;
        }
        (Some(_), None) => Saturation::EssentialMax,
        (None, None | Some("earned_essential")) => Saturation::EarnedEssential,
        (None, Some("essential_max")) => Saturation::EssentialMax,
        (None, Some(other)) => {
            errs.push(FieldError::new(
                "scoring.saturation",
                format!(
                    "unknown rule \"{other}\"; use \"earned_essential\" (published) or \"essential_max\""
                ),
            ));
            return;
        }
    };
    if raw.bonus_cap.is_some() && raw.saturation_factor.is_some() {
        errs.push(FieldError::new(
            "scoring.saturation_factor",
            "`bonus_cap` already is the factor; remove one of them",
        ));
        return;
    }
    params.saturation = rule;
    params.saturation_factor = rule.default_factor();
    for (field, value) in [
        ("scoring.bonus_cap", raw.bonus_cap),
        ("scoring.saturation_factor", raw.saturation_factor),
    ] {
        if let Some(v) = value {
            if v.is_finite() && v >= 0.0 {
                params.saturation_factor = v;
            } else {
                errs.push(FieldError::new(field, format!("{v} must be a number >= 0")));
            }
        }
    }
    if let Some(l) = raw.tag_cap {
        if l.is_finite() && l >= 0.0 {
            params.tag_cap = Some(l);
        } else {
            errs.push(FieldError::new(
                "scoring.tag_cap",
                format!("{l} must be a number >= 0"),
            ));
        }
    }
}

fn validate_consensus(c: &RawConsensus, errs: &mut Vec<FieldError>) -> ConsensusSpec {
    let name =
        |v: &Option<String>, field: &str, errs: &mut Vec<FieldError>| -> Option<&'static str> {
            let v = v.as_deref()?;
            let found = CONSENSUS_RULES.iter().find(|r| **r == v).copied();
            if found.is_none() {
                errs.push(FieldError::new(
                    field,
                    format!(
                        "unknown rule \"{v}\"; use one of {}",
                        CONSENSUS_RULES.join(", ")
                    ),
                ));
            }
            found
        };
    let rule = name(&c.rule, "consensus.rule", errs);
    let veto_rule = name(&c.veto_rule, "consensus.veto_rule", errs);
    let tie = match c.tie.as_deref() {
        None => "not_met",
        Some(t) => match TIE_RULES.iter().find(|r| **r == t) {
            Some(r) => r,
            None => {
                errs.push(FieldError::new(
                    "consensus.tie",
                    format!("unknown tie rule \"{t}\"; use not_met, met or escalate"),
                ));
                "not_met"
            }
        },
    };
    for (field, k) in [("consensus.k", c.k), ("consensus.veto_k", c.veto_k)] {
        if k == Some(0) {
            errs.push(FieldError::new(field, "must be at least 1"));
        }
    }
    ConsensusSpec {
        rule,
        tie,
        k: c.k.unwrap_or(1).max(1),
        veto_rule,
        veto_k: c.veto_k.unwrap_or(1).max(1),
    }
}

fn set_unit(value: Option<f64>, field: &str, slot: &mut f64, errs: &mut Vec<FieldError>) {
    if let Some(v) = value {
        if (0.0..=1.0).contains(&v) {
            *slot = v;
        } else {
            errs.push(FieldError::new(field, format!("{v} is outside [0, 1]")));
        }
    }
}

fn validate_criterion(
    rc: &RawCriterion,
    derived_id: String,
    at: &str,
    scoring: &Scoring,
    errs: &mut Vec<FieldError>,
) -> Option<Criterion> {
    let before = errs.len();
    let id = match &rc.id {
        Some(id) if !valid_identifier(id) => {
            errs.push(FieldError::new(
                format!("{at}.id"),
                format!("\"{id}\" is not a valid id; use 1-128 letters, digits or . _ : -"),
            ));
            id.clone()
        }
        Some(id) => id.clone(),
        None => derived_id,
    };
    if rc.text.trim().is_empty() {
        errs.push(FieldError::new(format!("{at}.text"), "must not be empty"));
    }
    let kind = match (rc.points, rc.tier.as_deref()) {
        (Some(_), Some(_)) => {
            errs.push(FieldError::new(
                at,
                "give either `points` or `tier`, not both",
            ));
            None
        }
        (None, None) => {
            errs.push(FieldError::new(
                at,
                "missing `points` (HealthBench style, -10..10) or `tier` (essential | important | highlight | pitfall)",
            ));
            None
        }
        (Some(p), None) => {
            check_points(p, &format!("{at}.points"), errs).map(CriterionKind::Points)
        }
        (None, Some(t)) => match Tier::parse(t) {
            Some(t) => Some(CriterionKind::Tier(t)),
            None => {
                errs.push(FieldError::new(
                    format!("{at}.tier"),
                    format!("unknown tier \"{t}\"; use essential, important, highlight or pitfall"),
                ));
                None
            }
        },
    };
    match (&scoring.policy, kind) {
        (p, Some(CriterionKind::Tier(_))) if p.scores_points() => errs.push(FieldError::new(
            format!("{at}.tier"),
            format!(
                "the {} policy scores `points`; give points or use scoring.policy \"quarkmed\" or \"weighted\"",
                p.name()
            ),
        )),
        (Policy::QuarkMed(_), Some(CriterionKind::Points(_))) => errs.push(FieldError::new(
            format!("{at}.points"),
            "the quarkmed policy scores tiers; give `tier` or use scoring.policy \"healthbench\" or \"weighted\"",
        )),
        _ => {}
    }
    let mut tags_seen = std::collections::HashSet::new();
    for (j, tag) in rc.tags.iter().enumerate() {
        if tag.trim().is_empty() {
            errs.push(FieldError::new(
                format!("{at}.tags[{j}]"),
                "must not be empty",
            ));
        } else if !tags_seen.insert(tag.as_str()) {
            errs.push(FieldError::new(
                format!("{at}.tags[{j}]"),
                format!("duplicate tag \"{tag}\""),
            ));
        }
    }
    if let Some(w) = rc.weight {
        if !(w.is_finite() && w > 0.0) {
            errs.push(FieldError::new(
                format!("{at}.weight"),
                format!("{w} must be a positive number"),
            ));
        }
    }
    if errs.len() != before {
        return None;
    }
    Some(Criterion {
        id: CriterionId(id),
        text: rc.text.clone(),
        kind: kind?,
        tags: rc.tags.clone(),
        veto: rc.veto,
        weight: rc.weight,
    })
}

/// Points must be a nonzero integer in [-10, 10].
pub(crate) fn check_points(p: f64, field: &str, errs: &mut Vec<FieldError>) -> Option<i8> {
    if !p.is_finite() || p.fract() != 0.0 {
        errs.push(FieldError::new(field, format!("{p} is not an integer")));
        return None;
    }
    if !(-10.0..=10.0).contains(&p) {
        errs.push(FieldError::new(field, format!("{p} is outside [-10, 10]")));
        return None;
    }
    if p == 0.0 {
        errs.push(FieldError::new(
            field,
            "0 points is not allowed; use a nonzero integer in [-10, 10]",
        ));
        return None;
    }
    // In range and integral, so the cast is exact.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "checked to be an integer in [-10, 10]"
    )]
    Some(p as i8)
}

impl Rubric {
    /// The canonical `rubric.v1` document for this rubric, with every id filled in.
    pub fn to_raw(&self) -> RawRubric {
        let mut scoring = RawScoring {
            policy: Some(self.scoring.policy.name().to_owned()),
            veto_score: Some(self.scoring.veto_score),
            on_abstention: Some(self.scoring.on_abstention.as_str().to_owned()),
            length_adjustment: self.scoring.length_adjustment,
            ..RawScoring::default()
        };
        if let Policy::QuarkMed(QuarkMedParams {
            w_essential,
            w_important,
            w_highlight,
            w_pitfall,
            r_essential,
            r_pitfall,
            saturation,
            saturation_factor,
            tag_cap,
        }) = &self.scoring.policy
        {
            scoring.weights = Some(super::raw::RawWeights {
                essential: Some(*w_essential),
                important: Some(*w_important),
                highlight: Some(*w_highlight),
                pitfall: Some(*w_pitfall),
            });
            scoring.r_essential = Some(*r_essential);
            scoring.r_pitfall = Some(*r_pitfall);
            scoring.saturation = Some(saturation.as_str().to_owned());
            scoring.saturation_factor = Some(*saturation_factor);
            scoring.tag_cap = *tag_cap;
        }
        RawRubric {
            format: RUBRIC_FORMAT.to_owned(),
            id: self.id.clone(),
            version: self.version,
            title: self.title.clone(),
            description: None,
            scoring,
            consensus: self.consensus.as_ref().map(|c| RawConsensus {
                rule: c.rule.map(str::to_owned),
                tie: Some(c.tie.to_owned()),
                k: Some(c.k),
                veto_rule: c.veto_rule.map(str::to_owned),
                veto_k: Some(c.veto_k),
            }),
            criteria: self
                .criteria
                .iter()
                .map(|c| RawCriterion {
                    id: Some(c.id.0.clone()),
                    text: c.text.clone(),
                    points: match c.kind {
                        CriterionKind::Points(p) => Some(f64::from(p)),
                        CriterionKind::Tier(_) => None,
                    },
                    tier: match c.kind {
                        CriterionKind::Tier(t) => Some(t.as_str().to_owned()),
                        CriterionKind::Points(_) => None,
                    },
                    tags: c.tags.clone(),
                    veto: c.veto,
                    weight: c.weight,
                })
                .collect(),
        }
    }

    /// This rubric scored under another policy (e.g. `tribunal score --policy`).
    pub fn with_policy(&self, policy: Policy) -> Result<Rubric, Invalid> {
        let mut raw = self.to_raw();
        raw.scoring.policy = Some(policy.name().to_owned());
        if !matches!(policy, Policy::QuarkMed(_)) {
            raw.scoring.weights = None;
            raw.scoring.r_essential = None;
            raw.scoring.r_pitfall = None;
            raw.scoring.bonus_cap = None;
            raw.scoring.saturation = None;
            raw.scoring.saturation_factor = None;
            raw.scoring.tag_cap = None;
        }
        raw.validate("criteria")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crit(text: &str, points: f64) -> RawCriterion {
        RawCriterion {
            id: None,
            text: text.into(),
            points: Some(points),
            tier: None,
            tags: vec![],
            veto: false,
            weight: None,
        }
    }

    fn rubric(criteria: Vec<RawCriterion>) -> RawRubric {
        RawRubric {
            format: "rubric.v1".into(),
            id: "r".into(),
            version: 1,
            title: "t".into(),
            description: None,
            scoring: RawScoring::default(),
            consensus: None,
            criteria,
        }
    }

    fn fields(r: &RawRubric) -> Vec<String> {
        match r.validate("criteria") {
            Ok(_) => vec![],
            Err(Invalid(errs)) => errs.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn derived_ids_are_stable_and_unique() {
        let ids = derive_criterion_ids(["a", "b", "a"]);
        assert_eq!(ids[0], derive_criterion_ids(["a"])[0]);
        assert_eq!(ids[2], format!("{}-2", ids[0]));
        assert_ne!(ids[0], ids[1]);
    }

    #[test]
    fn validation_errors_name_fields() {
        let cases: Vec<(RawRubric, Vec<&str>)> = vec![
            (
                rubric(vec![crit("x", 12.0)]),
                vec!["criteria[0].points: 12 is outside [-10, 10]"],
            ),
            (
                rubric(vec![crit("x", 0.0)]),
                vec![
                    "criteria[0].points: 0 points is not allowed; use a nonzero integer in [-10, 10]",
                ],
            ),
            (
                rubric(vec![crit("x", 2.5)]),
                vec!["criteria[0].points: 2.5 is not an integer"],
            ),
            (
                rubric(vec![]),
                vec!["criteria: a rubric needs at least one criterion"],
            ),
            (
                rubric(vec![
                    RawCriterion {
                        id: Some("a".into()),
                        ..crit("x", 1.0)
                    },
                    RawCriterion {
                        id: Some("a".into()),
                        ..crit("y", 1.0)
                    },
                ]),
                vec![
                    "criteria[1].id: duplicate criterion id \"a\" (also criteria[0]); ids must be unique within a rubric",
                ],
            ),
            (
                rubric(vec![RawCriterion {
                    tier: Some("vital".into()),
                    points: None,
                    ..crit("x", 1.0)
                }]),
                vec![
                    "criteria[0].tier: unknown tier \"vital\"; use essential, important, highlight or pitfall",
                ],
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(fields(&input), expected);
        }
    }

    fn scoring(json: serde_json::Value) -> Result<Scoring, Vec<String>> {
        let mut r = rubric(vec![RawCriterion {
            points: None,
            tier: Some("essential".into()),
            ..crit("x", 1.0)
        }]);
        r.scoring = serde_json::from_value(json).map_err(|e| vec![e.to_string()])?;
        r.validate("criteria")
            .map(|r| r.scoring)
            .map_err(|Invalid(es)| es.into_iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn quarkmed_saturation_keys() {
        use serde_json::json;
        let params = |j| match scoring(j) {
            Ok(Scoring {
                policy: Policy::QuarkMed(p),
                ..
            }) => Ok((p.saturation, p.saturation_factor, p.tag_cap)),
            Ok(other) => Err(vec![format!("not quarkmed: {other:?}")]),
            Err(e) => Err(e),
        };
        let table = [
            // The published rule is the default.
            (
                json!({"policy": "quarkmed"}),
                Ok((Saturation::EarnedEssential, 2.0, None)),
            ),
            (
                json!({"policy": "quarkmed", "saturation": "essential_max"}),
                Ok((Saturation::EssentialMax, 1.0, None)),
            ),
            (
                json!({"policy": "quarkmed", "saturation_factor": 3, "tag_cap": 1.5}),
                Ok((Saturation::EarnedEssential, 3.0, Some(1.5))),
            ),
            // Documents written before the report keep their meaning.
            (
                json!({"policy": "quarkmed", "bonus_cap": 1.0}),
                Ok((Saturation::EssentialMax, 1.0, None)),
            ),
            (
                json!({"policy": "quarkmed", "bonus_cap": 1.0, "saturation": "essential_max"}),
                Err(vec![
                    "scoring.bonus_cap: give either `bonus_cap` (legacy: essential_max with that factor) or `saturation`, not both".to_owned(),
                ]),
            ),
            (
                json!({"policy": "quarkmed", "saturation": "twice"}),
                Err(vec![
                    "scoring.saturation: unknown rule \"twice\"; use \"earned_essential\" (published) or \"essential_max\"".to_owned(),
                ]),
            ),
            (
                json!({"policy": "quarkmed", "tag_cap": -1}),
                Err(vec!["scoring.tag_cap: -1 must be a number >= 0".to_owned()]),
            ),
        ];
        for (input, expected) in table {
            assert_eq!(params(input.clone()), expected, "{input}");
        }
        assert_eq!(
            scoring(json!({"policy": "weighted", "tag_cap": 1})).unwrap_err(),
            vec![
                "scoring.tag_cap: only applies to the quarkmed policy; remove it or set scoring.policy = \"quarkmed\""
            ]
        );
    }

    #[test]
    fn length_adjustment_and_as_not_met_keys() {
        use serde_json::json;
        let r = |j: serde_json::Value| {
            let mut r = rubric(vec![crit("x", 3.0)]);
            r.scoring = serde_json::from_value(j)?;
            Ok::<_, serde_json::Error>(r.validate("criteria"))
        };
        let s = r(json!({"length_adjustment": {"center": 2000, "penalty_per_500_chars": 0.0147}, "on_abstention": "as_not_met", "policy": "livemedbench"}))
            .unwrap()
            .unwrap()
            .scoring;
        assert_eq!(s.length_adjustment, Some(LengthAdjustment::PROFESSIONAL));
        assert_eq!(s.on_abstention, OnAbstention::AsNotMet);
        assert_eq!(s.policy, Policy::LiveMedBench);
        // Both constants or neither.
        let missing = r(json!({"length_adjustment": {"center": 2000}})).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("missing field `penalty_per_500_chars`"),
            "{missing}"
        );
        let negative =
            r(json!({"length_adjustment": {"center": 2000, "penalty_per_500_chars": -1}}))
                .unwrap()
                .unwrap_err();
        assert_eq!(
            negative.to_string(),
            "scoring.length_adjustment: penalty_per_500_chars -1 must be a finite number >= 0"
        );
        // Default: off, and abstentions make the example incomplete.
        let d = r(json!({})).unwrap().unwrap().scoring;
        assert_eq!(d.length_adjustment, None);
        assert_eq!(d.on_abstention, OnAbstention::Incomplete);
        // LiveMedBench scores points, not tiers.
        let mut tiers = rubric(vec![RawCriterion {
            points: None,
            tier: Some("essential".into()),
            ..crit("x", 1.0)
        }]);
        tiers.scoring.policy = Some("livemedbench".into());
        assert_eq!(
            fields(&tiers),
            vec![
                "criteria[0].tier: the livemedbench policy scores `points`; give points or use scoring.policy \"quarkmed\" or \"weighted\""
            ]
        );
    }

    #[test]
    fn to_raw_round_trips_new_parameters() {
        let mut raw = rubric(vec![RawCriterion {
            points: None,
            tier: Some("essential".into()),
            tags: vec!["t".into()],
            ..crit("x", 1.0)
        }]);
        raw.scoring.policy = Some("quarkmed".into());
        raw.scoring.tag_cap = Some(1.5);
        raw.scoring.on_abstention = Some("as_not_met".into());
        raw.scoring.length_adjustment = Some(LengthAdjustment::PROFESSIONAL);
        let r = raw.validate("criteria").unwrap();
        assert_eq!(r.to_raw().validate("criteria").unwrap(), r);
        let legacy = {
            let mut l = raw.clone();
            l.scoring.bonus_cap = Some(1.0);
            l.validate("criteria").unwrap()
        };
        assert_eq!(legacy.to_raw().validate("criteria").unwrap(), legacy);
    }

    #[test]
    fn to_raw_round_trips() {
        let mut raw = rubric(vec![crit("x", 3.0), crit("y", -2.0)]);
        raw.scoring.veto_score = Some(0.0);
        let r = raw.validate("criteria").unwrap();
        assert_eq!(r.to_raw().validate("criteria").unwrap(), r);
    }
}
