//! Judge reliability from a calibration set: the report's `dawid_skene` section (each
//! judge's confusion matrix, seeded from its agreement with the human majority and
//! refined by Dawid-Skene EM over every item, labelled or not) and `suggested_weights`
//! (log-odds committee weights from each judge's accuracy against the human majority).
//! Also reads those back from a saved report for the committee config. Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::COMMITTEE;
use super::majority::human_majority;
use crate::calibration::set::{CalibrationSet, LabelValue, RaterKind, Scale};
use crate::committee::dawid_skene::{self, EmOptions, Reliability};

/// Smoothing of the seed counts (add-one: a judge never seen saying a class still may).
const SEED_SMOOTHING: f64 = 1.0;

/// Category index -> class (0 = not met .. highest presence), when the set's categories
/// map onto a judge scale: two categories with `met`, or three ordinal ones.
pub fn class_map(set: &CalibrationSet) -> Result<Vec<usize>, &'static str> {
    let k = set.categories.len();
    let met = set
        .met
        .as_ref()
        .and_then(|m| set.categories.iter().position(|c| c == m));
    match (set.scale, k, met) {
        (Scale::Nominal | Scale::Ordinal, 2, Some(m)) => {
            Ok((0..2).map(|c| usize::from(c == m)).collect())
        }
        (Scale::Ordinal, 3, _) => Ok(vec![0, 1, 2]),
        _ => Err("categories_not_a_judge_scale"),
    }
}

fn category(v: LabelValue) -> Option<usize> {
    match v {
        LabelValue::Category(c) => Some(c),
        LabelValue::Number(_) => None,
    }
}

/// The report's `dawid_skene` section: the estimate, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum DawidSkene {
    Estimated(DawidSkeneEstimate),
    Undefined(DawidSkeneUndefined),
}

/// Dawid-Skene EM over every item, seeded from the judges' agreement with the humans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DawidSkeneEstimate {
    /// Class names, from 0 (not met) to the highest presence.
    pub classes: Vec<String>,
    pub seeded_from: SeededFrom,
    pub items: usize,
    pub iterations: usize,
    pub converged: bool,
    pub log_likelihood: f64,
    /// Each judge's estimated accuracy, by judge name.
    pub accuracy: BTreeMap<String, f64>,
    /// The estimated reliability, as the committee config reads it back.
    #[schema(value_type = Object)]
    pub reliability: Reliability,
}

/// What the EM started from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SeededFrom {
    HumanMajority,
    MajorityVote,
}

/// No estimate: `reliability` is always null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DawidSkeneUndefined {
    #[schema(value_type = Option<Object>)]
    pub reliability: NoReliability,
    pub reason: ReliabilityUndefined,
}

/// A JSON null: the reliability of a set that has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoReliability;

/// Why a set has no Dawid-Skene estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReliabilityUndefined {
    /// The categories are neither two with `met` nor three ordinal ones.
    CategoriesNotAJudgeScale,
    NoJudges,
}

/// A judge's suggested committee weight and the counts it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SuggestedWeight {
    pub weight: f64,
    pub correct: u64,
    pub n: u64,
}

/// [`reliability_sections`] as JSON values.
pub fn sections(set: &CalibrationSet) -> (Value, Value) {
    let (ds, weights) = reliability_sections(set);
    // Neither can fail to serialise: every map key is a string.
    (
        serde_json::to_value(ds).unwrap_or_default(),
        serde_json::to_value(weights).unwrap_or_default(),
    )
}

/// The `dawid_skene` and `suggested_weights` sections for a set with judge labels.
pub fn reliability_sections(
    set: &CalibrationSet,
) -> (DawidSkene, BTreeMap<String, SuggestedWeight>) {
    let undefined = |reason| {
        DawidSkene::Undefined(DawidSkeneUndefined {
            reliability: NoReliability,
            reason,
        })
    };
    let Ok(classes) = class_map(set) else {
        return (
            undefined(ReliabilityUndefined::CategoriesNotAJudgeScale),
            BTreeMap::new(),
        );
    };
    let k = classes.iter().max().map_or(0, |m| m + 1);
    let judges: Vec<String> = set
        .raters(RaterKind::Judge)
        .into_iter()
        .filter(|j| j != COMMITTEE)
        .collect();
    if judges.is_empty() {
        return (undefined(ReliabilityUndefined::NoJudges), BTreeMap::new());
    }
    let index: BTreeMap<&str, usize> = judges
        .iter()
        .enumerate()
        .map(|(i, j)| (j.as_str(), i))
        .collect();
    let mut prior = vec![0.0; k];
    let mut confusion: BTreeMap<String, Vec<Vec<f64>>> = judges
        .iter()
        .map(|j| (j.clone(), vec![vec![0.0; k]; k]))
        .collect();
    let mut correct: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut items = Vec::with_capacity(set.items.len());
    for (i, it) in set.items.iter().enumerate() {
        let truth = human_majority(set, i).and_then(|c| classes.get(c).copied());
        if let Some(t) = truth {
            prior[t] += 1.0;
        }
        let mut row = vec![None; judges.len()];
        for l in it.labels.iter().filter(|l| l.kind == RaterKind::Judge) {
            let (Some(&j), Some(said)) = (
                index.get(l.rater.as_str()),
                category(l.value).and_then(|c| classes.get(c).copied()),
            ) else {
                continue;
            };
            if row[j].is_some() {
                continue;
            }
            row[j] = Some(said);
            if let Some(t) = truth {
                if let Some(m) = confusion.get_mut(&l.rater) {
                    m[t][said] += 1.0;
                }
                let e = correct.entry(judges[j].as_str()).or_default();
                e.0 += u64::from(t == said);
                e.1 += 1;
            }
        }
        items.push(row);
    }
    let seeded = prior.iter().sum::<f64>() > 0.0;
    let seed = seeded.then(|| Reliability::from_counts(&prior, &confusion, SEED_SMOOTHING));
    let em = dawid_skene::estimate(k, &judges, &items, seed.as_ref(), &EmOptions::default());
    let names: Vec<&str> = (0..k)
        .map(|c| {
            classes
                .iter()
                .position(|x| *x == c)
                .and_then(|i| set.categories.get(i))
                .map_or("", String::as_str)
        })
        .collect();
    let accuracy: BTreeMap<String, f64> = em
        .reliability
        .confusion
        .iter()
        .map(|(j, m)| {
            let acc = (0..k)
                .map(|c| em.reliability.prior.get(c).copied().unwrap_or(0.0) * m[c][c])
                .sum::<f64>();
            (j.clone(), acc)
        })
        .collect();
    let section = DawidSkene::Estimated(DawidSkeneEstimate {
        classes: names.into_iter().map(str::to_owned).collect(),
        seeded_from: if seeded {
            SeededFrom::HumanMajority
        } else {
            SeededFrom::MajorityVote
        },
        items: items.len(),
        iterations: em.iterations,
        converged: em.converged,
        log_likelihood: em.log_likelihood,
        accuracy,
        reliability: em.reliability,
    });
    let weights = correct
        .iter()
        .map(|(j, (c, n))| {
            (
                (*j).to_owned(),
                SuggestedWeight {
                    weight: dawid_skene::log_odds_weight(*c, *n),
                    correct: *c,
                    n: *n,
                },
            )
        })
        .collect();
    (section, weights)
}

/// The reliability in a saved document: a `Reliability` itself, an agreement report
/// (`dawid_skene.reliability`) or a calibration run (`report.dawid_skene.reliability`).
pub fn reliability_in(doc: &Value) -> Result<Reliability, String> {
    let found = [
        doc,
        &doc["dawid_skene"]["reliability"],
        &doc["report"]["dawid_skene"]["reliability"],
    ]
    .into_iter()
    .find(|v| v.get("classes").is_some())
    .ok_or("no reliability found: expected a reliability object, an agreement report or a calibration run with `dawid_skene.reliability`")?;
    let r: Reliability = serde_json::from_value(found.clone()).map_err(|e| e.to_string())?;
    r.validate()?;
    Ok(r)
}

/// Suggested committee weights in a saved report or run, by judge name.
pub fn weights_in(doc: &Value) -> Result<BTreeMap<String, f64>, String> {
    let w = [
        &doc["suggested_weights"],
        &doc["report"]["suggested_weights"],
    ]
    .into_iter()
    .find_map(Value::as_object)
    .ok_or("no suggested_weights found: expected an agreement report or a calibration run")?;
    w.iter()
        .map(|(j, v)| {
            v["weight"]
                .as_f64()
                .filter(|x| x.is_finite() && *x > 0.0)
                .map(|x| (j.clone(), x))
                .ok_or_else(|| format!("suggested_weights.{j}.weight must be a positive number"))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::calibration::set::parse_set;
    use serde_json::json;

    /// Humans agree; judge `good` matches them, `bad` says the opposite on every item.
    /// (The report's fixture tests reuse it.)
    pub(crate) fn set() -> CalibrationSet {
        let mut text = String::from(
            r#"{"format": "calibration.v1", "name": "t", "scale": "nominal", "categories": ["no", "yes"], "met": "yes"}"#,
        );
        for i in 0..40 {
            let truth = if i % 3 == 0 { "yes" } else { "no" };
            let other = if truth == "yes" { "no" } else { "yes" };
            let good = if i % 10 == 0 { other } else { truth };
            text.push_str(&format!(
                "\n{{\"id\": \"i{i}\", \"labels\": [{{\"rater\": \"h1\", \"kind\": \"human\", \"value\": \"{truth}\"}}, {{\"rater\": \"h2\", \"kind\": \"human\", \"value\": \"{truth}\"}}, {{\"rater\": \"good\", \"kind\": \"judge\", \"value\": \"{good}\"}}, {{\"rater\": \"bad\", \"kind\": \"judge\", \"value\": \"{other}\"}}, {{\"rater\": \"committee\", \"kind\": \"judge\", \"value\": \"{truth}\"}}]}}"
            ));
        }
        parse_set(&text).unwrap()
    }

    #[test]
    fn seeds_from_humans_and_weights_by_accuracy() {
        let (ds, weights) = sections(&set());
        assert_eq!(ds["seeded_from"], "human_majority");
        assert_eq!(ds["classes"], json!(["no", "yes"]));
        let rel = reliability_in(&json!({"dawid_skene": ds})).unwrap();
        assert!(
            !rel.confusion.contains_key(COMMITTEE),
            "the committee is not a judge"
        );
        // Seeded by the humans, EM keeps `bad` as an inverted judge rather than
        // swapping the classes.
        assert!(rel.confusion["good"][1][1] > 0.8, "{rel:?}");
        assert!(rel.confusion["bad"][1][0] > 0.9, "{rel:?}");
        let w = weights_in(&json!({"report": {"suggested_weights": weights}})).unwrap();
        assert!(w["good"] > 1.0 && (w["bad"] - dawid_skene::MIN_WEIGHT).abs() < 1e-12);
        assert_eq!(weights["good"]["n"], 40);
        assert_eq!(weights["good"]["correct"], 36);
    }

    #[test]
    fn explains_what_it_cannot_do() {
        let mut s = set();
        s.met = None;
        assert_eq!(sections(&s).0["reason"], "categories_not_a_judge_scale");
        let mut s = set();
        for it in &mut s.items {
            it.labels.retain(|l| l.kind == RaterKind::Human);
        }
        assert_eq!(sections(&s).0["reason"], "no_judges");
        assert!(reliability_in(&json!({"x": 1})).is_err());
        assert!(weights_in(&json!({"suggested_weights": {"a": {"weight": -1}}})).is_err());
    }
}
