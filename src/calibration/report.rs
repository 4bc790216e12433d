//! The agreement report for a calibration set: humans among themselves (Fleiss' kappa,
//! Krippendorff's alpha, every human pair's Cohen's kappa), and every judge against the
//! human majority and against each human, each figure with a bootstrap CI and `n`, plus
//! where the judge falls relative to the human-human band. Pure.
//!
//! Stable JSON paths (other tools read them): `humans.fleiss_kappa.value`,
//! `humans.pairwise[].{a,b,n,cohen_kappa.value}`, `judges[].judge`,
//! `judges[].vs_human_majority.cohen_kappa.{value,ci_low,ci_high,n}`,
//! `judges[].vs_each_human[].{human,cohen_kappa.value,n}`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::set::{CalibrationSet, LabelValue, RaterKind, Scale};
use super::stats::{self, Level, Stat, Weights};

#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub seed: u64,
    pub resamples: usize,
    pub confidence: f64,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            resamples: 1000,
            confidence: 0.95,
        }
    }
}

/// One coefficient: value or the reason it is undefined, its CI and `n`.
fn estimate(n: usize, point: Stat, ci: Option<(f64, f64)>) -> Value {
    match point {
        Ok(v) if v.is_finite() => {
            json!({"value": v, "reason": null, "ci_low": ci.map(|c| c.0), "ci_high": ci.map(|c| c.1), "n": n})
        }
        Ok(_) => {
            json!({"value": null, "reason": "not_finite", "ci_low": null, "ci_high": null, "n": n})
        }
        Err(u) => {
            json!({"value": null, "reason": u.as_str(), "ci_low": null, "ci_high": null, "n": n})
        }
    }
}

/// A statistic of two aligned label columns, with a bootstrap CI over items.
fn paired(
    a: &[usize],
    b: &[usize],
    opts: &ReportOptions,
    salt: &str,
    f: impl Fn(&[usize], &[usize]) -> Stat,
) -> Value {
    let point = f(a, b);
    let bufs = std::cell::RefCell::new((Vec::with_capacity(a.len()), Vec::with_capacity(b.len())));
    let ci = if point.is_ok() {
        stats::bootstrap_ci(
            a.len(),
            opts.resamples,
            seed(opts.seed, salt),
            opts.confidence,
            |idx| {
                // Two buffers reused across resamples instead of two allocations each.
                let mut guard = bufs.borrow_mut();
                let (ra, rb) = &mut *guard;
                ra.clear();
                rb.clear();
                ra.extend(idx.iter().map(|i| a[*i]));
                rb.extend(idx.iter().map(|i| b[*i]));
                f(ra, rb)
            },
        )
    } else {
        None
    };
    estimate(a.len(), point, ci)
}

fn seed(base: u64, salt: &str) -> u64 {
    let h = blake3::hash(format!("{base}\u{1f}{salt}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

/// rater -> value for one item (first label wins if a rater labelled twice).
fn by_rater(item: &super::set::CalItem, kind: RaterKind) -> BTreeMap<&str, LabelValue> {
    let mut m = BTreeMap::new();
    for l in item.labels.iter().filter(|l| l.kind == kind) {
        m.entry(l.rater.as_str()).or_insert(l.value);
    }
    m
}

fn cat(v: LabelValue) -> Option<usize> {
    match v {
        LabelValue::Category(c) => Some(c),
        LabelValue::Number(_) => None,
    }
}

/// The strict plurality of the human labels, if one exists.
fn majority(humans: &BTreeMap<&str, LabelValue>, k: usize) -> Option<usize> {
    let mut counts = vec![0usize; k];
    for v in humans.values() {
        if let Some(c) = cat(*v).filter(|c| *c < k) {
            counts[c] += 1;
        }
    }
    let max = *counts.iter().max()?;
    if max == 0 || counts.iter().filter(|c| **c == max).count() > 1 {
        return None;
    }
    counts.iter().position(|c| *c == max)
}

/// Pairs of category labels from two raters over the items both labelled.
fn pairs(
    set: &CalibrationSet,
    items: &[usize],
    a: (&str, RaterKind),
    b: (&str, RaterKind),
) -> (Vec<usize>, Vec<usize>) {
    let mut xa = Vec::new();
    let mut xb = Vec::new();
    for &i in items {
        let it = &set.items[i];
        let va = by_rater(it, a.1).get(a.0).copied().and_then(cat);
        let vb = by_rater(it, b.1).get(b.0).copied().and_then(cat);
        if let (Some(x), Some(y)) = (va, vb) {
            xa.push(x);
            xb.push(y);
        }
    }
    (xa, xb)
}

fn level(scale: Scale) -> Level {
    match scale {
        Scale::Nominal => Level::Nominal,
        Scale::Ordinal => Level::Ordinal,
        Scale::Interval => Level::Interval,
    }
}

fn value_f64(v: LabelValue) -> f64 {
    match v {
        #[expect(clippy::cast_precision_loss, reason = "category indices are small")]
        LabelValue::Category(c) => c as f64,
        LabelValue::Number(x) => x,
    }
}

fn humans_section(
    set: &CalibrationSet,
    items: &[usize],
    opts: &ReportOptions,
    salt: &str,
) -> (Value, Vec<f64>) {
    let k = set.categories.len();
    let humans = set.raters(RaterKind::Human);
    // Fleiss needs the same number of raters on every item: use items labelled by all.
    let full: Vec<usize> = items
        .iter()
        .copied()
        .filter(|i| by_rater(&set.items[*i], RaterKind::Human).len() == humans.len())
        .collect();
    // Category counts per fully labelled item, built once; resamples only index them.
    let full_counts: Vec<Vec<u64>> = full
        .iter()
        .map(|i| {
            let mut row = vec![0u64; k];
            for v in by_rater(&set.items[*i], RaterKind::Human).values() {
                if let Some(c) = cat(*v).filter(|c| *c < k) {
                    row[c] += 1;
                }
            }
            row
        })
        .collect();
    let counts =
        |idx: &[usize]| -> Vec<Vec<u64>> { idx.iter().map(|i| full_counts[*i].clone()).collect() };
    let all: Vec<usize> = (0..full.len()).collect();
    let fleiss = if set.scale == Scale::Interval {
        Err(stats::Undefined::ZeroVariance)
    } else {
        stats::fleiss_kappa(&counts(&all))
    };
    let fleiss_ci = fleiss.ok().and_then(|_| {
        stats::bootstrap_ci(
            full.len(),
            opts.resamples,
            seed(opts.seed, &format!("{salt}fleiss")),
            opts.confidence,
            |idx| stats::fleiss_kappa(&counts(idx)),
        )
    });
    let units: Vec<Vec<Option<f64>>> = items
        .iter()
        .map(|i| {
            let m = by_rater(&set.items[*i], RaterKind::Human);
            humans
                .iter()
                .map(|h| m.get(h.as_str()).copied().map(value_f64))
                .collect()
        })
        .collect();
    let alpha = stats::krippendorff_alpha(&units, level(set.scale));
    let alpha_ci = alpha.ok().and_then(|_| {
        // Per-unit contributions computed once; resamples only add them up.
        let prep = stats::AlphaPrep::new(&units, level(set.scale));
        stats::bootstrap_ci(
            units.len(),
            opts.resamples,
            seed(opts.seed, &format!("{salt}alpha")),
            opts.confidence,
            |idx| prep.alpha(idx),
        )
    });
    let mut pairwise = Vec::new();
    let mut band = Vec::new();
    for (x, a) in humans.iter().enumerate() {
        for b in humans.iter().skip(x + 1) {
            let (la, lb) = pairs(set, items, (a, RaterKind::Human), (b, RaterKind::Human));
            let kappa = paired(&la, &lb, opts, &format!("{salt}{a}|{b}"), |p, q| {
                stats::cohen_kappa(p, q, k)
            });
            if let Some(v) = kappa["value"].as_f64() {
                band.push(v);
            }
            let mut entry = json!({
                "a": a, "b": b, "n": la.len(),
                "cohen_kappa": kappa,
                "percent_agreement": paired(&la, &lb, opts, &format!("{salt}{a}|{b}|pa"), stats::percent_agreement),
            });
            if set.scale == Scale::Ordinal {
                entry["weighted_kappa_linear"] =
                    paired(&la, &lb, opts, &format!("{salt}{a}|{b}|lin"), |p, q| {
                        stats::weighted_kappa(p, q, k, Weights::Linear)
                    });
                entry["weighted_kappa_quadratic"] =
                    paired(&la, &lb, opts, &format!("{salt}{a}|{b}|quad"), |p, q| {
                        stats::weighted_kappa(p, q, k, Weights::Quadratic)
                    });
            }
            pairwise.push(entry);
        }
    }
    let with_majority = items
        .iter()
        .filter(|i| majority(&by_rater(&set.items[**i], RaterKind::Human), k).is_some())
        .count();
    (
        json!({
            "raters": humans,
            "fleiss_kappa": estimate(full.len(), fleiss, fleiss_ci),
            "krippendorff_alpha": estimate(units.len(), alpha, alpha_ci),
            "pairwise": pairwise,
            "band": {
                "min": band.iter().copied().reduce(f64::min),
                "max": band.iter().copied().reduce(f64::max),
            },
            "majority": {"items": with_majority, "excluded_no_majority": items.len() - with_majority},
        }),
        band,
    )
}

fn judges_section(
    set: &CalibrationSet,
    items: &[usize],
    band: &[f64],
    opts: &ReportOptions,
    salt: &str,
) -> Vec<Value> {
    let k = set.categories.len();
    let humans = set.raters(RaterKind::Human);
    set.raters(RaterKind::Judge)
        .iter()
        .map(|j| {
            let mut truth = Vec::new();
            let mut pred = Vec::new();
            for &i in items {
                let it = &set.items[i];
                let Some(m) = majority(&by_rater(it, RaterKind::Human), k) else { continue };
                if let Some(p) = by_rater(it, RaterKind::Judge).get(j.as_str()).copied().and_then(cat) {
                    truth.push(m);
                    pred.push(p);
                }
            }
            let kappa = paired(&truth, &pred, opts, &format!("{salt}{j}|maj"), |p, q| stats::cohen_kappa(p, q, k));
            let classes = stats::class_scores(&truth, &pred, k);
            let macro_f1 = paired(&truth, &pred, opts, &format!("{salt}{j}|f1"), |p, q| stats::macro_f1(&stats::class_scores(p, q, k)));
            let position = match (kappa["value"].as_f64(), band.iter().copied().reduce(f64::min), band.iter().copied().reduce(f64::max)) {
                (Some(v), Some(lo), Some(_)) if v < lo => "below",
                (Some(v), Some(_), Some(hi)) if v > hi => "above",
                (Some(_), Some(_), Some(_)) => "within",
                _ => "undefined",
            };
            let each: Vec<Value> = humans
                .iter()
                .map(|h| {
                    let (a, b) = pairs(set, items, (h, RaterKind::Human), (j, RaterKind::Judge));
                    json!({"human": h, "n": a.len(), "cohen_kappa": paired(&a, &b, opts, &format!("{salt}{j}|{h}"), |p, q| stats::cohen_kappa(p, q, k))})
                })
                .collect();
            json!({
                "judge": j,
                "vs_human_majority": {
                    "n": truth.len(),
                    "cohen_kappa": kappa,
                    "percent_agreement": paired(&truth, &pred, opts, &format!("{salt}{j}|pa"), stats::percent_agreement),
                    "macro_f1": macro_f1,
                    "classes": classes.iter().map(|c| json!({
                        "class": set.categories.get(c.class), "precision": c.precision, "recall": c.recall, "f1": c.f1, "support": c.support,
                    })).collect::<Vec<_>>(),
                },
                "vs_each_human": each,
                "human_band_position": position,
            })
        })
        .collect()
}

/// The full report (see the module docs for the stable paths).
pub fn agreement_report(set: &CalibrationSet, opts: &ReportOptions) -> Value {
    let all: Vec<usize> = (0..set.items.len()).collect();
    let (humans, band) = humans_section(set, &all, opts, "");
    let judges = judges_section(set, &all, &band, opts, "");
    let mut by_category = serde_json::Map::new();
    let mut cats: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, it) in set.items.iter().enumerate() {
        if let Some(c) = &it.category {
            cats.entry(c.as_str()).or_default().push(i);
        }
    }
    for (c, idx) in cats {
        let (h, b) = humans_section(set, &idx, opts, c);
        let j = judges_section(set, &idx, &b, opts, c);
        by_category.insert(
            c.to_owned(),
            json!({"items": idx.len(), "humans": h, "judges": j}),
        );
    }
    let (dawid_skene, suggested_weights) = super::reliability::sections(set);
    json!({
        "set": set.name,
        "scale": set.scale.as_str(),
        "categories": set.categories,
        "items": set.items.len(),
        "seed": opts.seed,
        "resamples": opts.resamples,
        "confidence": opts.confidence,
        "humans": humans,
        "judges": judges,
        "by_category": by_category,
        "dawid_skene": dawid_skene,
        "suggested_weights": suggested_weights,
    })
}

/// A human-readable summary of the report.
pub fn report_table(r: &Value) -> String {
    use std::fmt::Write as _;
    let f = |v: &Value| {
        v["value"].as_f64().map_or_else(
            || format!("- ({})", v["reason"].as_str().unwrap_or("")),
            |x| match (v["ci_low"].as_f64(), v["ci_high"].as_f64()) {
                (Some(lo), Some(hi)) => format!("{x:.3} [{lo:.3}, {hi:.3}]"),
                _ => format!("{x:.3}"),
            },
        )
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "set {} ({} items, {} scale)",
        r["set"].as_str().unwrap_or(""),
        r["items"],
        r["scale"].as_str().unwrap_or("")
    );
    let _ = writeln!(
        out,
        "humans: Fleiss kappa {}  Krippendorff alpha {}",
        f(&r["humans"]["fleiss_kappa"]),
        f(&r["humans"]["krippendorff_alpha"])
    );
    for p in r["humans"]["pairwise"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {} vs {}: Cohen kappa {}  n {}",
            p["a"].as_str().unwrap_or(""),
            p["b"].as_str().unwrap_or(""),
            f(&p["cohen_kappa"]),
            p["n"]
        );
    }
    for j in r["judges"].as_array().into_iter().flatten() {
        let m = &j["vs_human_majority"];
        let _ = writeln!(
            out,
            "judge {}: vs human majority kappa {}  agreement {}  macro-F1 {}  n {}  ({} the human band)",
            j["judge"].as_str().unwrap_or(""),
            f(&m["cohen_kappa"]),
            f(&m["percent_agreement"]),
            f(&m["macro_f1"]),
            m["n"],
            j["human_band_position"].as_str().unwrap_or("")
        );
    }
    out
}

/// The strict plurality of an item's human labels (temporary; replaced by the merge).
pub fn human_majority(set: &CalibrationSet, item: usize) -> Option<usize> {
    let it = set.items.get(item)?;
    majority(&by_rater(it, RaterKind::Human), set.categories.len())
}
