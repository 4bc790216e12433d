use proptest::prelude::*;

use super::*;
use crate::rubric::{
    Credit, Criterion, CriterionId, CriterionKind, LengthAdjustment, OnAbstention, Policy,
    QuarkMedParams, Rubric, Saturation, Scoring, Severity, Tier, Verdict,
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

/// tribunal's rule before the QuarkMedBench report: the bonus is capped at 1 x the
/// weighted essential maximum (kept as `saturation = "essential_max"`).
fn essential_max() -> QuarkMedParams {
    QuarkMedParams {
        saturation: Saturation::EssentialMax,
        saturation_factor: 1.0,
        ..QuarkMedParams::default()
    }
}

#[test]
fn quarkmed_essential_max_rule_is_unchanged() {
    use Tier::{Essential as E, Highlight as H, Important as I, Pitfall as P};
    let full = Verdict::Credit(Credit::Full);
    let half = Verdict::Credit(Credit::Partial);
    let zero = Verdict::Credit(Credit::None);
    let none = Verdict::Severity(Severity::None);
    let minor = Verdict::Severity(Severity::Minor);
    let major = Verdict::Severity(Severity::Major);
    let d = essential_max();
    let no_cap = QuarkMedParams {
        saturation_factor: 100.0,
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
        // Saturation: 6 important+highlight credits capped at factor * w_E * E* = 1 * 2 * 1.
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

#[test]
fn weighted_policy_survives_weights_whose_sum_overflows() {
    // Two criteria of weight 1e308: their sum is infinite, the mean is not.
    let mut a = tagged(points(1), "a", &[]);
    a.weight = Some(1e308);
    let mut b = tagged(points(1), "b", &[]);
    b.weight = Some(1e308);
    let mut c = tagged(points(1), "c", &[]);
    c.weight = Some(f64::MAX);
    let r = rubric(Policy::Weighted, vec![a, b, c]);
    let ratio = 1e308 / f64::MAX;
    for (verdicts, expected) in [
        ([true, true, true], 1.0),
        ([false, false, false], 0.0),
        ([true, true, false], 2.0 * ratio / (2.0 * ratio + 1.0)),
    ] {
        let v: Vec<_> = verdicts.iter().map(|m| Some(Verdict::Met(*m))).collect();
        let s = score_example(&r, &v, &[]);
        assert!(s.undefined.is_none(), "{verdicts:?}: {s:?}");
        let got = s.score.unwrap();
        assert!(got.is_finite(), "{verdicts:?}: {got}");
        assert!(
            (got - expected).abs() < 1e-12,
            "{verdicts:?}: {got} != {expected}"
        );
    }
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
        // Under the published rule the cap is factor x the *unweighted* earned essential
        // credit, so scaling every weight needs the factor scaled too.
        let d = QuarkMedParams::default();
        let scaled = QuarkMedParams {
            w_essential: d.w_essential * k,
            w_important: d.w_important * k,
            w_highlight: d.w_highlight * k,
            w_pitfall: d.w_pitfall * k,
            saturation_factor: d.saturation_factor * k,
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
            Undefined::NoPositivePoints
            | Undefined::NoPositiveTiers
            | Undefined::NoCriteria
            | Undefined::NoEssentialCriteria => {}
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
    check(Undefined::NoEssentialCriteria);
    assert!(serde_json::from_value::<Undefined>(serde_json::json!("NoCriteria")).is_err());
}

#[test]
fn length_adjustment_published_test_values() {
    let p = LengthAdjustment::PROFESSIONAL;
    assert_eq!((p.center, p.penalty_per_500_chars), (2000.0, 0.0147));
    // (score, response, expected): values from public re-implementations, plus a
    // single-example run reported at raw 50% and adjusted 24.704240% (10,604 chars).
    let ascii = |n: usize| "a".repeat(n);
    let table: Vec<(f64, String, f64)> = vec![
        (1.0, ascii(2500), 0.9853),
        (1.0, ascii(1500), 1.0147),
        (1.0, ascii(2000), 1.0),
        (0.5, ascii(10_604), 0.247_042_4),
        (0.0, String::new(), 0.0588),
        // Code points, not bytes: 2,500 two-byte characters count 2,500.
        (1.0, "\u{e9}".repeat(2500), 0.9853),
        // Four-byte characters (emoji) count one each, as Python's len does.
        (1.0, "\u{1f642}".repeat(1500), 1.0147),
    ];
    for (score, response, want) in table {
        let chars = crate::rubric::response_chars(&response);
        let got = p.adjust(score, chars);
        assert!(
            (got - want).abs() < 1e-12,
            "{score} at {chars} chars: {got} != {want}"
        );
    }
}

#[test]
fn length_adjustment_parses_presets_and_pairs() {
    assert_eq!(
        LengthAdjustment::parse("professional"),
        Ok(LengthAdjustment::PROFESSIONAL)
    );
    assert_eq!(
        LengthAdjustment::parse("1000, 0.02"),
        Ok(LengthAdjustment {
            center: 1000.0,
            penalty_per_500_chars: 0.02
        })
    );
    for bad in ["", "pro", "1000", "1000,x", "-1,0.01", "1000,-0.5", "1,2,3"] {
        assert!(LengthAdjustment::parse(bad).is_err(), "{bad}");
    }
}

fn professional(points_met: &[(i8, bool)], response: &str, tags: &[&str]) -> ExampleScore {
    let (mut r, v) = hb(&points_met
        .iter()
        .map(|(p, m)| (*p, Some(*m)))
        .collect::<Vec<_>>());
    r.scoring.length_adjustment = Some(LengthAdjustment::PROFESSIONAL);
    let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
    score_response(&r, &v, &tags, Some(response))
}

#[test]
fn length_adjusted_figures_sit_beside_the_raw_ones() {
    // A 1.0 answer at 2,500 chars and a 0.0 answer at 1,500 chars.
    let a = professional(&[(5, true)], &"x".repeat(2500), &["use_case:a"]);
    let b = professional(&[(5, false)], &"x".repeat(1500), &["use_case:a"]);
    assert!(close(a.length_adjusted_score(), Some(0.9853)));
    assert!(close(b.length_adjusted_score(), Some(0.0147)));
    // The raw score is untouched.
    assert!(close(a.final_score, Some(1.0)));
    let s = summarize(&[a.clone(), b.clone()], 0, 50);
    assert!(close(s.overall.score, Some(0.5)));
    let adj = s.overall_length_adjusted.clone().unwrap();
    assert!(close(adj.score, Some(0.5)));
    assert_eq!(adj.n, 2);
    assert!(close(s.tags_length_adjusted["use_case:a"].score, Some(0.5)));
    assert_eq!(s.length_adjustment, Some(LengthAdjustment::PROFESSIONAL));

    // Not clipped per example, clipped as a mean: a long wrong answer goes below 0 ...
    let long = professional(&[(5, false)], &"x".repeat(7000), &[]);
    assert!(close(long.length_adjusted_score(), Some(-0.147)));
    // ... and a mean above 1 is clipped.
    let short = professional(&[(5, true)], "", &[]);
    assert!(close(short.length_adjusted_score(), Some(1.0588)));
    let s = summarize(std::slice::from_ref(&short), 0, 10);
    assert!(close(s.overall_length_adjusted.unwrap().score, Some(1.0)));
    let s = summarize(&[short, long], 0, 10);
    assert!(close(
        s.overall_length_adjusted.unwrap().score,
        Some((1.0588 - 0.147) / 2.0)
    ));

    // Without an adjustment there is no adjusted figure; without a response the example
    // is left out of it and counted.
    let (r, v) = hb(&[(5, Some(true))]);
    let plain = score_response(&r, &v, &[], Some("abc"));
    assert_eq!(
        summarize(std::slice::from_ref(&plain), 0, 10).overall_length_adjusted,
        None
    );
    let mut unknown = plain;
    unknown.response_chars = None;
    unknown.length_adjustment = Some(LengthAdjustment::PROFESSIONAL);
    let s = summarize(&[a, unknown], 0, 10);
    assert_eq!(s.missing_response_length, 1);
    assert_eq!(s.overall.n, 2);
    assert_eq!(s.overall_length_adjusted.unwrap().n, 1);
}

#[test]
fn livemedbench_scores_zero_without_positive_points() {
    let (mut r, v) = hb(&[(-3, Some(true)), (-4, Some(false))]);
    r.scoring.policy = Policy::LiveMedBench;
    let s = score_example(&r, &v, &["theme:x".into()]);
    assert_eq!(s.score, Some(0.0));
    assert_eq!(s.undefined, None);
    // Otherwise HealthBench's formula, unclipped per example.
    let (mut r, v) = hb(&[(2, Some(false)), (-8, Some(true))]);
    r.scoring.policy = Policy::LiveMedBench;
    assert_eq!(score_example(&r, &v, &[]).score, Some(-4.0));
    // The mean is clipped (their metric_calc clips the means, not the cases).
    let (mut r, _) = hb(&[(5, Some(true)), (-5, Some(true))]);
    r.scoring.policy = Policy::LiveMedBench;
    let neg = score_example(
        &r,
        &[Some(Verdict::Met(false)), Some(Verdict::Met(true))],
        &[],
    );
    let pos = score_example(
        &r,
        &[Some(Verdict::Met(true)), Some(Verdict::Met(false))],
        &[],
    );
    assert_eq!(neg.score, Some(-1.0));
    assert!(close(
        summarize(&[neg, pos], 0, 10).overall.score,
        Some(0.0)
    ));
}

#[test]
fn livemedbench_tag_subsets_without_positive_points_are_omitted() {
    let mut r = rubric(
        Policy::LiveMedBench,
        vec![
            tagged(points(6), "a", &["axis:accuracy"]),
            tagged(points(-5), "b", &["axis:communication_quality"]),
        ],
    );
    r.scoring.on_abstention = OnAbstention::Incomplete;
    let s = score_example(
        &r,
        &[Some(Verdict::Met(true)), Some(Verdict::Met(true))],
        &[],
    );
    assert!(close(s.score, Some(1.0 / 6.0)));
    assert!(s.tags.contains_key("axis:accuracy"));
    assert!(!s.tags.contains_key("axis:communication_quality"));
}

#[test]
fn as_not_met_counts_abstentions_as_not_met_and_says_so() {
    let (mut r, v) = hb(&[(5, Some(true)), (5, None), (-5, None)]);
    r.scoring.on_abstention = OnAbstention::AsNotMet;
    let s = score_example(&r, &v, &[]);
    // 5 of 10: the abstained positive earns nothing, the abstained negative costs nothing.
    assert!(close(s.score, Some(0.5)));
    assert!(!s.incomplete && s.is_included());
    assert!(s.abstentions_as_not_met);
    assert_eq!(s.abstained.len(), 2);
    let sum = summarize(&[s], 0, 10);
    assert_eq!((sum.as_not_met_examples, sum.as_not_met_criteria), (1, 2));

    // Flagged even when nothing abstained, so every report under the option says so.
    let (mut r, v) = hb(&[(5, Some(true))]);
    r.scoring.on_abstention = OnAbstention::AsNotMet;
    assert!(score_example(&r, &v, &[]).abstentions_as_not_met);
    // Never by default.
    let (r, v) = hb(&[(5, Some(true)), (5, None)]);
    let s = score_example(&r, &v, &[]);
    assert!(!s.abstentions_as_not_met && s.incomplete);

    // An abstained veto criterion is still never passed.
    let (mut r, v) = hb(&[(5, Some(true)), (5, None)]);
    r.scoring.on_abstention = OnAbstention::AsNotMet;
    r.criteria[1].veto = true;
    assert!(score_example(&r, &v, &[]).incomplete);

    // Tiers: an abstained positive tier earns 0, an abstained pitfall is absent.
    let r = Rubric {
        scoring: Scoring {
            policy: Policy::QuarkMed(QuarkMedParams::default()),
            on_abstention: OnAbstention::AsNotMet,
            ..Scoring::default()
        },
        ..rubric(
            Policy::HealthBench,
            vec![
                tier(Tier::Essential, "e1"),
                tier(Tier::Essential, "e2"),
                tier(Tier::Pitfall, "p"),
            ],
        )
    };
    let s = score_example(&r, &[Some(Verdict::Credit(Credit::Full)), None, None], &[]);
    assert!(close(s.score, Some(0.5)));
}

/// The report's grades: 0 / 1 / 2 (not met / partial / full; pitfalls none / minor /
/// major) become tribunal's 0 / 0.5 / 1.
fn grade(t: Tier, g: u8) -> Verdict {
    if t == Tier::Pitfall {
        Verdict::Severity([Severity::None, Severity::Minor, Severity::Major][usize::from(g)])
    } else {
        Verdict::Credit([Credit::None, Credit::Partial, Credit::Full][usize::from(g)])
    }
}

fn qm_tagged(params: QuarkMedParams, spec: &[(Tier, u8, &str)]) -> Option<f64> {
    let criteria = spec
        .iter()
        .enumerate()
        .map(|(i, (t, _, tag))| {
            let c = tier(*t, &format!("q{i}"));
            if tag.is_empty() {
                c
            } else {
                tagged(c, &format!("q{i}"), &[tag])
            }
        })
        .collect();
    let r = rubric(Policy::QuarkMed(params), criteria);
    let v: Vec<_> = spec.iter().map(|(t, g, _)| Some(grade(*t, *g))).collect();
    score_example(&r, &v, &[]).score
}

#[test]
fn quarkmed_published_equations() {
    use Tier::{Essential as E, Highlight as H, Important as I, Pitfall as P};
    let d = QuarkMedParams::default();
    // Published constants: weights 2:1:1:2 (Table 3), cap 2 x earned essential (Eq. 4).
    assert_eq!(
        (d.w_essential, d.w_important, d.w_highlight, d.w_pitfall),
        (2.0, 1.0, 1.0, 2.0)
    );
    assert_eq!(
        (d.saturation, d.saturation_factor),
        (Saturation::EarnedEssential, 2.0)
    );
    // Chosen (unpublished) constants keep tribunal's documented defaults.
    assert_eq!((d.r_essential, d.r_pitfall, d.tag_cap), (0.5, 0.0, None));
    let l1 = QuarkMedParams {
        tag_cap: Some(1.0),
        ..d.clone()
    };
    // Computed in the report's 0/1/2 units: numerator and denominator both scale by 2.
    let table: Vec<(&str, QuarkMedParams, Vec<(Tier, u8, &str)>, Option<f64>)> = vec![
        (
            "perfect",
            d.clone(),
            vec![(E, 2, ""), (I, 2, ""), (H, 2, ""), (P, 0, "")],
            Some(1.0),
        ),
        // (2*2 + 1 + 0) / (2*2 + 4) in grade units.
        (
            "partial",
            d.clone(),
            vec![(E, 2, ""), (I, 1, ""), (H, 0, "")],
            Some(5.0 / 8.0),
        ),
        // Saturation binds on earned essential: E = 1 (grade) of 2 passes Eq. 3 at
        // r = 0.5; bonus 4 capped at 2 x 1; reference bonus 4 capped at 2 x 2.
        (
            "cap is twice the earned essential",
            d.clone(),
            vec![(E, 1, ""), (I, 2, ""), (H, 2, "")],
            Some((2.0 * 1.0 + 2.0) / (2.0 * 2.0 + 4.0)),
        ),
        // Six full important/highlight against one full essential: bonus 12 capped at
        // 4 in both numerator and denominator.
        (
            "cap saturates the reference too",
            d.clone(),
            vec![
                (E, 2, ""),
                (I, 2, ""),
                (I, 2, ""),
                (I, 2, ""),
                (H, 2, ""),
                (H, 2, ""),
                (H, 2, ""),
            ],
            Some(1.0),
        ),
        (
            "cap binds on a partial answer",
            d.clone(),
            vec![
                (E, 2, ""),
                (I, 2, ""),
                (I, 2, ""),
                (I, 2, ""),
                (H, 0, ""),
                (H, 0, ""),
                (H, 0, ""),
            ],
            Some((4.0 + 4.0) / (4.0 + 4.0)),
        ),
        // Eq. 3 essential: E = 1 of 4 (grades) < 0.5 x 4: bonus zeroed.
        (
            "hard rejection by essential",
            d.clone(),
            vec![(E, 1, ""), (E, 0, ""), (I, 2, ""), (H, 2, "")],
            Some(2.0 / (8.0 + 4.0)),
        ),
        // Eq. 3 pitfall (r_pitfall = 0): any pitfall zeroes the bonus and is subtracted.
        (
            "hard rejection by pitfall",
            d.clone(),
            vec![(E, 2, ""), (I, 2, ""), (P, 1, "")],
            Some((4.0 - 2.0) / (4.0 + 2.0)),
        ),
        (
            "floored at 0",
            d.clone(),
            vec![(E, 1, ""), (P, 2, "")],
            Some(0.0),
        ),
        // Per-tag cap L = 1 tribunal unit = 2 grade units: tag a earns 4 -> 2, tag b 2.
        (
            "per-tag cap",
            l1.clone(),
            vec![
                (E, 2, ""),
                (E, 2, ""),
                (I, 2, "a"),
                (I, 2, "a"),
                (H, 2, "b"),
            ],
            Some((8.0 + 4.0) / (8.0 + 4.0)),
        ),
        (
            "per-tag cap, partial",
            l1,
            vec![
                (E, 2, ""),
                (E, 2, ""),
                (I, 2, "a"),
                (I, 2, "a"),
                (H, 0, "b"),
            ],
            Some((8.0 + 2.0) / (8.0 + 4.0)),
        ),
        // Without essentials the published cap is 0: nothing can be earned.
        (
            "no essentials",
            d.clone(),
            vec![(I, 2, ""), (H, 0, "")],
            None,
        ),
        ("pitfalls only", d, vec![(P, 0, "")], None),
    ];
    for (name, params, spec, expected) in table {
        let got = qm_tagged(params, &spec);
        assert!(close(got, expected), "{name}: {got:?} != {expected:?}");
    }
    let r = rubric(
        Policy::QuarkMed(QuarkMedParams::default()),
        vec![tier(Tier::Important, "i")],
    );
    assert_eq!(
        score_example(&r, &[Some(Verdict::Credit(Credit::Full))], &[]).undefined,
        Some(Undefined::NoEssentialCriteria)
    );
}

fn arb_tiers() -> impl Strategy<Value = Vec<(Tier, Verdict, usize)>> {
    prop::collection::vec((0usize..4, 0u8..3, 0usize..3), 1..16).prop_map(|v| {
        v.into_iter()
            .map(|(t, g, tag)| {
                let t = Tier::ALL[t];
                (t, grade(t, g), tag)
            })
            .collect()
    })
}

fn arb_params() -> impl Strategy<Value = QuarkMedParams> {
    (
        0.0f64..=1.0,
        0.0f64..=1.0,
        prop::option::of(0.0f64..3.0),
        prop::bool::ANY,
    )
        .prop_map(
            |(r_essential, r_pitfall, tag_cap, published)| QuarkMedParams {
                r_essential,
                r_pitfall,
                tag_cap,
                ..if published {
                    QuarkMedParams::default()
                } else {
                    essential_max()
                }
            },
        )
}

fn tier_criteria(spec: &[(Tier, Verdict, usize)]) -> Vec<Criterion> {
    spec.iter()
        .enumerate()
        .map(|(i, (t, _, tag))| tagged(tier(*t, "x"), &format!("q{i}"), &[&format!("t{tag}")]))
        .collect()
}

proptest! {
    #[test]
    fn length_adjustment_is_linear_with_the_published_slope(
        score in -2.0f64..2.0,
        a in 0u64..20_000,
        b in 0u64..20_000,
    ) {
        let p = LengthAdjustment::PROFESSIONAL;
        let (sa, sb) = (p.adjust(score, a), p.adjust(score, b));
        // Slope: -0.0147 per 500 code points, on either side of the center.
        #[expect(clippy::cast_precision_loss, reason = "small test lengths")]
        let dx = b as f64 - a as f64;
        prop_assert!(((sb - sa) - (-0.0147 / 500.0) * dx).abs() < 1e-9);
        prop_assert!((p.adjust(score, 2000) - score).abs() < 1e-12);
    }

    #[test]
    fn quarkmed_published_bonus_never_exceeds_twice_earned_essential(spec in arb_tiers(), p in arb_params()) {
        let p = QuarkMedParams { saturation: Saturation::EarnedEssential, saturation_factor: 2.0, ..p };
        let criteria = tier_criteria(&spec);
        let graded: Vec<(&Criterion, Verdict)> = criteria.iter().zip(&spec).map(|(c, (_, v, _))| (c, *v)).collect();
        let parts = quarkmed::parts(&p, &graded);
        prop_assert!(parts.bonus <= 2.0 * parts.essential + 1e-12, "{:?}", parts);
        prop_assert!(parts.bonus >= 0.0);
        if let Some(l) = p.tag_cap {
            let groups = criteria.iter().filter(|c| matches!(c.kind, CriterionKind::Tier(Tier::Important | Tier::Highlight))).map(|c| c.tags[0].clone()).collect::<std::collections::BTreeSet<_>>();
            #[expect(clippy::cast_precision_loss, reason = "few groups")]
            let most = l * groups.len() as f64;
            prop_assert!(parts.bonus <= most + 1e-12);
        }
    }

    #[test]
    fn quarkmed_hard_rejection_always_zeroes_important_and_highlight(spec in arb_tiers(), p in arb_params()) {
        let criteria = tier_criteria(&spec);
        let graded: Vec<(&Criterion, Verdict)> = criteria.iter().zip(&spec).map(|(c, (_, v, _))| (c, *v)).collect();
        let parts = quarkmed::parts(&p, &graded);
        let sum = |t: Tier| spec.iter().filter(|(x, _, _)| *x == t).map(|(_, v, _)| v.presence()).sum::<f64>();
        #[expect(clippy::cast_precision_loss, reason = "few criteria")]
        let count = |t: Tier| spec.iter().filter(|(x, _, _)| *x == t).count() as f64;
        let should_reject = (count(Tier::Essential) > 0.0 && sum(Tier::Essential) < p.r_essential * count(Tier::Essential))
            || (count(Tier::Pitfall) > 0.0 && sum(Tier::Pitfall) > p.r_pitfall * count(Tier::Pitfall));
        prop_assert_eq!(parts.rejected, should_reject);
        if parts.rejected {
            prop_assert_eq!(parts.bonus, 0.0);
            // Changing any important/highlight verdict cannot change a rejected score.
            let flipped: Vec<(&Criterion, Verdict)> = graded.iter().map(|(c, v)| match c.kind {
                CriterionKind::Tier(Tier::Important | Tier::Highlight) => (*c, Verdict::Credit(Credit::Full)),
                _ => (*c, *v),
            }).collect();
            prop_assert_eq!(quarkmed::parts(&p, &flipped).numerator, parts.numerator);
        }
    }
}
