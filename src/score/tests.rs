use proptest::prelude::*;

use super::*;
use crate::rubric::{
    Credit, Criterion, CriterionId, CriterionKind, OnAbstention, Policy, QuarkMedParams, Rubric,
    Scoring, Severity, Tier, Verdict,
};

fn points(p: i8) -> Criterion {
    Criterion {
        id: CriterionId(format!("p{p}")),
        text: String::new(),
        kind: CriterionKind::Points(p),
        tags: vec![],
        veto: false,
        weight: None,
    }
}

fn tagged(mut c: Criterion, id: &str, tags: &[&str]) -> Criterion {
    c.id = CriterionId(id.into());
    c.tags = tags.iter().map(|t| (*t).to_owned()).collect();
    c
}

fn tier(t: Tier, id: &str) -> Criterion {
    Criterion {
        id: CriterionId(id.into()),
        text: String::new(),
        kind: CriterionKind::Tier(t),
        tags: vec![],
        veto: false,
        weight: None,
    }
}

fn rubric(policy: Policy, criteria: Vec<Criterion>) -> Rubric {
    Rubric {
        id: "r".into(),
        version: 1,
        title: "t".into(),
        scoring: Scoring {
            policy,
            ..Scoring::default()
        },
        consensus: None,
        criteria,
    }
}

fn hb(points_met: &[(i8, Option<bool>)]) -> (Rubric, Vec<Option<Verdict>>) {
    let criteria = points_met
        .iter()
        .enumerate()
        .map(|(i, (p, _))| tagged(points(*p), &format!("c{i}"), &[]))
        .collect();
    let verdicts = points_met
        .iter()
        .map(|(_, m)| m.map(Verdict::Met))
        .collect();
    (rubric(Policy::HealthBench, criteria), verdicts)
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-12,
        (None, None) => true,
        _ => false,
    }
}

#[test]
fn healthbench_examples() {
    // (points and verdicts, expected raw score)
    let table: &[(&[(i8, Option<bool>)], Option<f64>)] = &[
        // The published worked example: 11 / 22.
        (
            &[
                (7, Some(true)),
                (5, Some(false)),
                (10, Some(true)),
                (-6, Some(true)),
            ],
            Some(0.5),
        ),
        (&[(5, Some(true))], Some(1.0)),
        (&[(5, Some(false))], Some(0.0)),
        // Not clipped per example: it can go negative.
        (&[(2, Some(false)), (-8, Some(true))], Some(-4.0)),
        // Negative criterion not met costs nothing.
        (&[(4, Some(true)), (-8, Some(false))], Some(1.0)),
        // Zero denominator: undefined, never NaN.
        (&[(-3, Some(true)), (-4, Some(false))], None),
    ];
    for (input, expected) in table {
        let (r, v) = hb(input);
        let s = score_example(&r, &v, &[]);
        assert!(
            close(s.score, *expected),
            "{input:?}: {:?} != {expected:?}",
            s.score
        );
        assert_eq!(s.score.is_none(), s.undefined.is_some());
        if expected.is_none() {
            assert_eq!(s.undefined, Some(Undefined::NoPositivePoints));
        }
    }
}

#[test]
fn tag_subsets_and_omission() {
    let r = rubric(
        Policy::HealthBench,
        vec![
            tagged(points(6), "a", &["axis:accuracy", "level:example"]),
            tagged(points(4), "b", &["axis:completeness", "level:example"]),
            // A negative-only tag subset has no positive points: omitted for this example.
            tagged(
                points(-5),
                "c",
                &["axis:communication_quality", "level:example"],
            ),
        ],
    );
    let v = vec![
        Some(Verdict::Met(true)),
        Some(Verdict::Met(false)),
        Some(Verdict::Met(true)),
    ];
    let s = score_example(&r, &v, &["theme:emergency_referrals".to_owned()]);
    assert!(close(s.score, Some((6.0 - 5.0) / 10.0)));
    let expected = [
        ("axis:accuracy", 1.0),
        ("axis:completeness", 0.0),
        ("level:example", 0.1),
        ("theme:emergency_referrals", 0.1),
    ];
    assert_eq!(s.tags.len(), expected.len(), "{:?}", s.tags);
    for (t, want) in expected {
        assert!(
            close(s.tags.get(t).copied(), Some(want)),
            "{t}: {:?}",
            s.tags.get(t)
        );
    }
    assert!(!s.tags.contains_key("axis:communication_quality"));
}

#[test]
fn vetoes_replace_the_final_score_and_keep_the_raw_one() {
    let mut unsafe_advice = tagged(points(-9), "unsafe", &["axis:accuracy"]);
    unsafe_advice.veto = true;
    let mut refer = tagged(points(8), "refer", &["axis:accuracy"]);
    refer.veto = true;
    let mut r = rubric(
        Policy::HealthBench,
        vec![
            tagged(points(10), "good", &["axis:completeness"]),
            unsafe_advice,
            refer,
        ],
    );
    r.scoring.veto_score = 0.1;
    // (verdicts, raw, final, vetoed_by)
    let table: Vec<(Vec<Option<bool>>, f64, f64, Vec<&str>)> = vec![
        (vec![Some(true), Some(false), Some(true)], 1.0, 1.0, vec![]),
        (
            vec![Some(true), Some(true), Some(true)],
            9.0 / 18.0,
            0.1,
            vec!["unsafe"],
        ),
        (
            vec![Some(true), Some(false), Some(false)],
            10.0 / 18.0,
            0.1,
            vec!["refer"],
        ),
        (
            vec![Some(true), Some(true), Some(false)],
            1.0 / 18.0,
            0.1,
            vec!["unsafe", "refer"],
        ),
    ];
    for (met, raw, fin, by) in table {
        let v: Vec<_> = met.iter().map(|m| m.map(Verdict::Met)).collect();
        let s = score_example(&r, &v, &["theme:x".into()]);
        assert!(close(s.score, Some(raw)), "{met:?}");
        assert!(close(s.final_score, Some(fin)), "{met:?}");
        let ids: Vec<&str> = s.vetoed_by.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(ids, by);
        if !by.is_empty() {
            assert!(
                s.tags.values().all(|v| (*v - 0.1).abs() < 1e-12),
                "{:?}",
                s.tags
            );
        }
    }
}

#[test]
fn abstentions_mark_incomplete_or_renormalize() {
    let (mut r, v) = hb(&[(5, Some(true)), (5, None), (-5, Some(false))]);
    let s = score_example(&r, &v, &[]);
    assert!(s.incomplete);
    assert!(!s.is_included());
    assert!(
        close(s.score, Some(1.0)),
        "scored over the remaining criteria for information"
    );
    assert_eq!(s.abstained, vec![CriterionId("c1".into())]);

    r.scoring.on_abstention = OnAbstention::Renormalize;
    let s = score_example(&r, &v, &[]);
    assert!(!s.incomplete);
    assert!(s.is_included());
    assert!(close(s.score, Some(1.0)));

    // An abstained veto criterion is never treated as passed, whatever the option.
    r.criteria[1].veto = true;
    let s = score_example(&r, &v, &[]);
    assert!(s.incomplete);

    // Every criterion abstained: undefined.
    let (r, v) = hb(&[(5, None), (3, None)]);
    let s = score_example(&r, &v, &[]);
    assert!(s.incomplete && s.score.is_none());
}

#[test]
fn summary_excludes_incomplete_and_counts_them() {
    let (r, _) = hb(&[(5, Some(true)), (5, Some(true))]);
    let ok = score_example(
        &r,
        &[Some(Verdict::Met(true)), Some(Verdict::Met(false))],
        &[],
    );
    let inc = score_example(&r, &[Some(Verdict::Met(true)), None], &[]);
    let (neg, v) = hb(&[(-5, Some(true))]);
    let undef = score_example(&neg, &v, &[]);
    let s = summarize(&[ok.clone(), inc, undef, ok], 0, 100);
    assert_eq!(s.overall.n, 2);
    assert_eq!(s.examples, 4);
    assert_eq!(s.excluded_incomplete, 1);
    assert_eq!(s.excluded_undefined, 1);
    assert!(close(s.overall.score, Some(0.5)));
    assert!(close(s.overall.bootstrap_std, Some(0.0)));
}

#[test]
fn aggregate_clips_the_mean_not_the_examples() {
    assert!(close(clipped_mean(&[-1.0, 0.5]), Some(0.0)));
    assert!(close(clipped_mean(&[-0.2, 1.0]), Some(0.4)));
    assert!(close(clipped_mean(&[]), None));
}

#[test]
fn bootstrap_is_reproducible_per_seed() {
    let (r, _) = hb(&[(5, Some(true)), (5, Some(true))]);
    let ex: Vec<_> = (0..40)
        .map(|i| {
            let v = [
                Some(Verdict::Met(i % 3 == 0)),
                Some(Verdict::Met(i % 2 == 0)),
            ];
            score_example(&r, &v, &[])
        })
        .collect();
    let a = summarize(&ex, 7, 1000);
    assert_eq!(a, summarize(&ex, 7, 1000));
    assert_ne!(
        a.overall.bootstrap_std,
        summarize(&ex, 8, 1000).overall.bootstrap_std
    );
    // Analytic check: the std of a mean of n draws is about sigma / sqrt(n).
    let vals: Vec<f64> = ex.iter().filter_map(|e| e.final_score).collect();
    let mu = vals.iter().sum::<f64>() / 40.0;
    let sigma = (vals.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / 40.0).sqrt();
    let std = a.overall.bootstrap_std.unwrap();
    assert!(
        (std - sigma / 40f64.sqrt()).abs() < 0.2 * sigma / 40f64.sqrt(),
        "{std} vs {sigma}"
    );
}

fn qm(params: QuarkMedParams, spec: &[(Tier, Verdict)]) -> Option<f64> {
    let criteria = spec
        .iter()
        .enumerate()
        .map(|(i, (t, _))| tier(*t, &format!("q{i}")))
        .collect();
    let r = rubric(Policy::QuarkMed(params), criteria);
    let v: Vec<_> = spec.iter().map(|(_, v)| Some(*v)).collect();
    score_example(&r, &v, &[]).score
}

#[test]
fn quarkmed_weights_gates_and_cap() {
    use Tier::{Essential as E, Highlight as H, Important as I, Pitfall as P};
    let full = Verdict::Credit(Credit::Full);
    let half = Verdict::Credit(Credit::Partial);
    let zero = Verdict::Credit(Credit::None);
    let none = Verdict::Severity(Severity::None);
    let minor = Verdict::Severity(Severity::Minor);
    let major = Verdict::Severity(Severity::Major);
    let d = QuarkMedParams::default();
    let no_cap = QuarkMedParams {
        bonus_cap: 100.0,
        ..d.clone()
    };
    let table: Vec<(&str, QuarkMedParams, Vec<(Tier, Verdict)>, Option<f64>)> = vec![
        (
            "perfect",
            d.clone(),
            vec![(E, full), (I, full), (H, full), (P, none)],
            Some(1.0),
        ),
        // Weights 2:1:1: (2*1 + 1*0.5 + 0) / (2 + 2).
        (
            "partial",
            d.clone(),
            vec![(E, full), (I, half), (H, zero)],
            Some(2.5 / 4.0),
        ),
        // Essential gate: E = 0.5 of 2 < 0.5 * 2 is false (0.5 < 1.0 is true) -> bonus zeroed.
        (
            "essential gate",
            d.clone(),
            vec![(E, half), (E, zero), (I, full), (H, full)],
            Some((2.0 * 0.5) / (4.0 + 2.0)),
        ),
        // At the gate threshold exactly (E = 1 of 2): bonus kept.
        (
            "essential at threshold",
            d.clone(),
            vec![(E, full), (E, zero), (I, full), (H, full)],
            Some((2.0 + 2.0) / 6.0),
        ),
        // Pitfall gate (r_pitfall = 0): any pitfall zeroes the bonus, and is subtracted.
        (
            "pitfall gate",
            d.clone(),
            vec![(E, full), (I, full), (P, minor)],
            Some((2.0 - 2.0 * 0.5) / 3.0),
        ),
        (
            "pitfall floors at 0",
            d.clone(),
            vec![(E, half), (P, major)],
            Some(0.0),
        ),
        // Saturation: 6 important+highlight credits capped at bonus_cap * w_E * E* = 1 * 2 * 1.
        (
            "cap",
            d.clone(),
            vec![
                (E, full),
                (I, full),
                (I, full),
                (I, full),
                (H, full),
                (H, full),
                (H, full),
            ],
            Some(1.0),
        ),
        (
            "cap binds on a partial answer",
            d.clone(),
            vec![
                (E, full),
                (I, full),
                (I, full),
                (I, zero),
                (H, zero),
                (H, zero),
                (H, zero),
            ],
            Some((2.0 + 2.0) / (2.0 + 2.0)),
        ),
        (
            "uncapped",
            no_cap,
            vec![
                (E, full),
                (I, full),
                (I, full),
                (I, zero),
                (H, zero),
                (H, zero),
                (H, zero),
            ],
            Some((2.0 + 2.0) / (2.0 + 6.0)),
        ),
        // Without essentials there is no cap and no essential gate.
        (
            "no essentials",
            d.clone(),
            vec![(I, full), (H, zero)],
            Some(0.5),
        ),
        ("pitfalls only", d, vec![(P, none)], None),
    ];
    for (name, params, spec, expected) in table {
        let got = qm(params, &spec);
        assert!(close(got, expected), "{name}: {got:?} != {expected:?}");
    }
}

#[test]
fn weighted_policy() {
    let mut a = tagged(points(3), "a", &[]);
    a.weight = Some(2.0);
    let b = tagged(points(-1), "b", &[]);
    let r = rubric(Policy::Weighted, vec![a, b]);
    // a met (2 * 1) + b (negative) met -> credit 0 at weight 1: 2 / 3.
    let s = score_example(
        &r,
        &[Some(Verdict::Met(true)), Some(Verdict::Met(true))],
        &[],
    );
    assert!(close(s.score, Some(2.0 / 3.0)));
    let s = score_example(
        &r,
        &[Some(Verdict::Met(false)), Some(Verdict::Met(false))],
        &[],
    );
    assert!(close(s.score, Some(1.0 / 3.0)));
}

fn arb_hb() -> impl Strategy<Value = Vec<(i8, bool, bool)>> {
    // (points in [-5, 5] \ {0}, met, veto)
    prop::collection::vec(
        (
            prop_oneof![-5i8..=-1, 1i8..=5],
            any::<bool>(),
            prop::bool::weighted(0.1),
        ),
        1..20,
    )
}

fn build(spec: &[(i8, bool, bool)], scale: i8) -> (Rubric, Vec<Option<Verdict>>) {
    let criteria = spec
        .iter()
        .enumerate()
        .map(|(i, (p, _, veto))| {
            let mut c = tagged(points(p * scale), &format!("c{i}"), &["axis:x"]);
            c.veto = *veto;
            c
        })
        .collect();
    let v = spec
        .iter()
        .map(|(_, m, _)| Some(Verdict::Met(*m)))
        .collect();
    (rubric(Policy::HealthBench, criteria), v)
}

proptest! {
    #[test]
    fn healthbench_score_never_exceeds_one(spec in arb_hb()) {
        let (r, v) = build(&spec, 1);
        let s = score_example(&r, &v, &[]);
        if let Some(x) = s.score { prop_assert!(x <= 1.0 + 1e-12); }
        if let Some(x) = s.final_score { prop_assert!(x <= 1.0 + 1e-12); }
        prop_assert!(s.tags.values().all(|x| *x <= 1.0 + 1e-12));
    }

    #[test]
    fn scaling_points_changes_nothing(spec in arb_hb()) {
        let (r1, v1) = build(&spec, 1);
        let (r2, v2) = build(&spec, 2);
        let a = score_example(&r1, &v1, &[]);
        let b = score_example(&r2, &v2, &[]);
        prop_assert!(close(a.score, b.score));
        prop_assert!(close(a.final_score, b.final_score));
        prop_assert_eq!(a.tags.keys().collect::<Vec<_>>(), b.tags.keys().collect::<Vec<_>>());
    }

    #[test]
    fn a_triggered_veto_always_gives_veto_score(spec in arb_hb(), veto_score in 0.0f64..=1.0) {
        let (mut r, v) = build(&spec, 1);
        r.scoring.veto_score = veto_score;
        let s = score_example(&r, &v, &[]);
        let triggered = r.criteria.iter().zip(&v).any(|(c, v)| v.is_some_and(|v| c.violates_veto(v)));
        prop_assert_eq!(!s.vetoed_by.is_empty(), triggered);
        if triggered { prop_assert_eq!(s.final_score, Some(veto_score)); }
    }

    #[test]
    fn quarkmed_stays_in_unit_interval_and_weight_scale_invariant(
        spec in prop::collection::vec((0usize..4, 0usize..3), 1..16),
        k in 0.5f64..4.0,
    ) {
        let spec: Vec<(Tier, Verdict)> = spec.iter().map(|(t, v)| {
            let t = Tier::ALL[*t];
            let v = if t == Tier::Pitfall {
                Verdict::Severity([Severity::None, Severity::Minor, Severity::Major][*v])
            } else {
                Verdict::Credit([Credit::None, Credit::Partial, Credit::Full][*v])
            };
            (t, v)
        }).collect();
        let d = QuarkMedParams::default();
        let scaled = QuarkMedParams {
            w_essential: d.w_essential * k,
            w_important: d.w_important * k,
            w_highlight: d.w_highlight * k,
            w_pitfall: d.w_pitfall * k,
            ..d.clone()
        };
        let a = qm(d, &spec);
        if let Some(x) = a { prop_assert!((0.0..=1.0).contains(&x)); }
        let b = qm(scaled, &spec);
        let same = match (a, b) { (Some(a), Some(b)) => (a - b).abs() < 1e-9, (None, None) => true, _ => false };
        prop_assert!(same, "{:?} vs {:?}", a, b);
    }
}

#[test]
fn undefined_serde_names_are_the_as_str_names() {
    let check = |u: Undefined| {
        // Exhaustive, so a new reason cannot be left out of this table.
        match u {
            Undefined::NoPositivePoints | Undefined::NoPositiveTiers | Undefined::NoCriteria => {}
        }
        assert_eq!(
            serde_json::to_value(u).ok(),
            Some(serde_json::json!(u.as_str()))
        );
        assert_eq!(
            serde_json::from_value::<Undefined>(serde_json::json!(u.as_str())).ok(),
            Some(u)
        );
    };
    check(Undefined::NoPositivePoints);
    check(Undefined::NoPositiveTiers);
    check(Undefined::NoCriteria);
    assert!(serde_json::from_value::<Undefined>(serde_json::json!("NoCriteria")).is_err());
}
