//! The agreement report for a calibration set: humans among themselves (Fleiss' kappa,
//! Krippendorff's alpha, every human pair's Cohen's kappa), and every judge against the
//! human majority and against each human, each figure with a bootstrap CI and `n`, plus
//! where the judge falls relative to the human-human band; the same again per item category
//! and per criterion. Pure: it must not touch IO, async or storage.
//!
//! Stable JSON paths (other tools read them): `humans.fleiss_kappa.value`,
//! `humans.pairwise[].{a,b,n,cohen_kappa.value}`, `judges[].judge`,
//! `judges[].vs_human_majority.cohen_kappa.{value,ci_low,ci_high,n}`,
//! `judges[].vs_human_majority.{confusion,confusion_labels}` (rows are the human majority's
//! category, columns the judge's, both in `confusion_labels` order),
//! `judges[].vs_each_human[].{human,cohen_kappa.value,n}`,
//! `by_category.<category>.{items,humans,judges}` and `by_criterion.<criterion>.{items,humans,
//! judges}` (each `humans` / `judges` shaped as the top-level ones), and
//! `by_criterion_skipped.{criteria,items}`: the criteria with fewer than the minimum number of
//! items (see [`agreement_report_with`]) and how many items they hold, left out so that a set
//! with thousands of one-item criteria stays small and fast.
//!
//! The report is a typed document, [`AgreementReport`] (format
//! [`AGREEMENT_REPORT_FORMAT`]): its field order is the JSON key order, so the types must
//! not be reordered; `tests/fixtures/agreement-report-*.json` pin the serialised form.
//!
//! Cost: labels are read once into a dense item x rater [`Grid`]; every section then indexes
//! it. Each bootstrap resamples the counts of distinct item patterns (contingency cells,
//! Fleiss count rows, alpha units) rather than the items, see [`stats::bootstrap_ci_counts`],
//! so a resample costs the same for 100 items as for 100,000.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::majority::{cat, majority_of};
pub use super::reliability::{
    DawidSkene, DawidSkeneEstimate, DawidSkeneUndefined, NoReliability, ReliabilityUndefined,
    SeededFrom, SuggestedWeight,
};
// The old path of `majority::human_majority`, kept for `src/service` (owned elsewhere).
pub use super::majority::human_majority;
use super::stats::{self, Level, Stat, Weights};
use crate::calibration::set::{CalibrationSet, LabelValue, RaterKind, Scale};

#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub seed: u64,
    pub resamples: usize,
    pub confidence: f64,
    /// The fewest items two humans must both have labelled for their pair to count in
    /// the human band (and a human to count in Fleiss' kappa and Krippendorff's alpha);
    /// smaller pairs are listed with `too_few_items`. `None`: the set's
    /// `min_pair_items`, else [`DEFAULT_MIN_PAIR_ITEMS`].
    pub min_pair_items: Option<usize>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            resamples: 1000,
            confidence: 0.95,
            min_pair_items: None,
        }
    }
}

/// The default of [`ReportOptions::min_pair_items`]: below about 20 shared items a
/// pair's kappa is too noisy to bound anything (with 2 items it is -1, 0 or 1).
pub const DEFAULT_MIN_PAIR_ITEMS: usize = 20;

/// The Landis and Koch (1977) reading of a kappa: `poor` below 0, then `slight` (to
/// 0.20), `fair` (0.40), `moderate` (0.60), `substantial` (0.80), `almost perfect`.
pub fn kappa_reading(kappa: f64) -> &'static str {
    match kappa {
        k if k < 0.0 => "poor",
        k if k <= 0.20 => "slight",
        k if k <= 0.40 => "fair",
        k if k <= 0.60 => "moderate",
        k if k <= 0.80 => "substantial",
        _ => "almost perfect",
    }
}

/// Each category's share of the human majority labels the judge was compared on
/// (the rows of its confusion matrix), in `confusion_labels` order; empty when `n` is
/// 0. Kappa depends on it: the same agreement means a lower kappa when one category
/// dominates.
pub fn majority_prevalence(m: &VsHumanMajority) -> Vec<(String, f64)> {
    let total: u64 = m.confusion.iter().flatten().sum();
    if total == 0 {
        return Vec::new();
    }
    m.confusion_labels
        .iter()
        .zip(&m.confusion)
        .map(|(label, row)| {
            #[expect(clippy::cast_precision_loss, reason = "label counts are small")]
            let share = row.iter().sum::<u64>() as f64 / total as f64;
            (label.clone(), share)
        })
        .collect()
}

/// The fewest items a criterion needs to get its own `by_criterion` entry in
/// [`agreement_report`].
pub const DEFAULT_MIN_CRITERION_ITEMS: usize = 20;

/// The version of the agreement report format these types describe. It is not a key of
/// the JSON (adding one would change every stored report); a breaking change to the
/// types below must bump it and say so in calibration/README.md.
pub const AGREEMENT_REPORT_FORMAT: &str = "agreement_report.v1";

/// The agreement report of a calibration set (see the module docs for the stable paths).
/// Serialised once, when it is printed or stored; the field order is the JSON key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgreementReport {
    /// The set's name.
    pub set: String,
    pub scale: ReportScale,
    /// The set's declared categories, in label-index order.
    pub categories: Vec<String>,
    /// Items in the set.
    pub items: usize,
    /// Bootstrap seed, resamples per coefficient and CI level.
    pub seed: u64,
    pub resamples: usize,
    pub confidence: f64,
    pub humans: HumansSection,
    pub judges: Vec<JudgeSection>,
    /// Per item category, in category order.
    pub by_category: BTreeMap<String, Breakdown>,
    /// Per criterion with enough items, in criterion order.
    pub by_criterion: BTreeMap<String, Breakdown>,
    pub by_criterion_skipped: SkippedCriteria,
    pub dawid_skene: DawidSkene,
    /// Log-odds committee weights by judge name, in name order.
    pub suggested_weights: BTreeMap<String, SuggestedWeight>,
    /// How a live or server run produced the judge labels; absent for an offline report.
    /// Last, so that a report without it serialises as it always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunInfo>,
}

/// The set's measurement scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportScale {
    Nominal,
    Ordinal,
    Interval,
}

impl ReportScale {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        Scale::from(self).as_str()
    }
}

impl From<ReportScale> for Scale {
    fn from(s: ReportScale) -> Self {
        match s {
            ReportScale::Nominal => Self::Nominal,
            ReportScale::Ordinal => Self::Ordinal,
            ReportScale::Interval => Self::Interval,
        }
    }
}

impl From<Scale> for ReportScale {
    fn from(s: Scale) -> Self {
        match s {
            Scale::Nominal => Self::Nominal,
            Scale::Ordinal => Self::Ordinal,
            Scale::Interval => Self::Interval,
        }
    }
}

/// One coefficient: its value or the reason it is undefined, its bootstrap CI and `n`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Estimate {
    /// Null when undefined (then `reason` says why).
    pub value: Option<f64>,
    pub reason: Option<UndefinedReason>,
    /// Null when undefined or when the bootstrap has no interval (no resamples).
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub n: usize,
}

/// Why a coefficient has no value: the statistics' own reasons (and `not_finite`).
pub use stats::Undefined as UndefinedReason;

/// Fleiss' kappa, with the number of raters per item it was computed over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FleissEstimate {
    #[serde(flatten)]
    pub estimate: Estimate,
    pub raters_per_item: u64,
}

/// The humans among themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HumansSection {
    /// Human rater names, sorted.
    pub raters: Vec<String>,
    pub fleiss_kappa: FleissEstimate,
    pub krippendorff_alpha: Estimate,
    pub pairwise: Vec<HumanPair>,
    /// The range of the pairwise Cohen's kappas.
    pub band: Band,
    pub majority: MajorityCoverage,
}

/// Two humans' agreement over the items both labelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HumanPair {
    pub a: String,
    pub b: String,
    pub n: usize,
    pub cohen_kappa: Estimate,
    pub percent_agreement: Estimate,
    /// Ordinal sets only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighted_kappa_linear: Option<Estimate>,
    /// Ordinal sets only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighted_kappa_quadratic: Option<Estimate>,
    /// Fewer than `min_pair_items` shared items: listed, but out of the human band
    /// (absent when false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub too_few_items: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The lowest and highest defined human-pair Cohen's kappa over the pairs with at
/// least `min_pair_items` shared items; null without one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Band {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// How many items have a human majority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MajorityCoverage {
    pub items: usize,
    pub excluded_no_majority: usize,
}

/// One judge against the human majority, each human and every human label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JudgeSection {
    pub judge: String,
    pub vs_human_majority: VsHumanMajority,
    pub vs_each_human: Vec<VsHuman>,
    pub vs_human_labels: VsHumanLabels,
    pub human_band_position: BandPosition,
}

/// The judge against the human majority, over the items with one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VsHumanMajority {
    pub n: usize,
    pub cohen_kappa: Estimate,
    pub percent_agreement: Estimate,
    pub macro_f1: Estimate,
    pub classes: Vec<ClassFigures>,
    /// Rows are the human majority's category, columns the judge's, both in
    /// `confusion_labels` order.
    pub confusion: Vec<Vec<u64>>,
    pub confusion_labels: Vec<String>,
}

/// One class's precision, recall and F1; null where the ratio is 0/0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClassFigures {
    /// The category name; null when the class index has no declared category.
    pub class: Option<String>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub support: u64,
}

/// The judge against one human, over the items both labelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VsHuman {
    pub human: String,
    pub n: usize,
    pub cohen_kappa: Estimate,
    pub percent_agreement: Estimate,
    pub macro_f1: Estimate,
}

/// The judge against every human label in turn (the HealthBench meta-eval figure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VsHumanLabels {
    /// Label pairs.
    pub n: usize,
    /// Items with at least one pair.
    pub items: usize,
    pub percent_agreement: Estimate,
    pub macro_f1: Estimate,
    pub classes: Vec<ClassFigures>,
}

/// Where the judge's kappa against the human majority falls relative to the human band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BandPosition {
    Below,
    Within,
    Above,
    /// The judge's kappa or the band is undefined.
    Undefined,
}

impl BandPosition {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Below => "below",
            Self::Within => "within",
            Self::Above => "above",
            Self::Undefined => "undefined",
        }
    }
}

/// A `by_category` or `by_criterion` entry: the humans and judges over its items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Breakdown {
    pub items: usize,
    pub humans: HumansSection,
    pub judges: Vec<JudgeSection>,
}

/// The criteria left out of `by_criterion` for having too few items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SkippedCriteria {
    pub criteria: usize,
    pub items: usize,
}

/// How the judge labels of a live (CLI) or server run were produced. The server writes
/// `id`; the CLI writes `items_failed` and `simulated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunInfo {
    /// The run's id (server runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub items_run: usize,
    pub items_skipped: usize,
    /// Items whose grading failed (CLI runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_failed: Option<usize>,
    pub binarized: bool,
    /// Whether the judges were simulated (CLI runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulated: Option<bool>,
}

/// One coefficient: value or the reason it is undefined, its CI and `n`.
fn estimate(n: usize, point: Stat, ci: Option<(f64, f64)>) -> Estimate {
    let undefined = |reason| Estimate {
        value: None,
        reason: Some(reason),
        ci_low: None,
        ci_high: None,
        n,
    };
    match point {
        Ok(v) if v.is_finite() => Estimate {
            value: Some(v),
            reason: None,
            ci_low: ci.map(|c| c.0),
            ci_high: ci.map(|c| c.1),
            n,
        },
        Ok(_) => undefined(UndefinedReason::NotFinite),
        Err(u) => undefined(u),
    }
}

fn seed(base: u64, salt: &str) -> u64 {
    let h = blake3::hash(format!("{base}\u{1f}{salt}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

/// Two aligned label columns as a contingency table, built once and shared by every
/// coefficient of the pair; the occupied cells are the patterns a bootstrap resamples.
struct PairTable {
    cells: Vec<u64>,
    k: usize,
    n: usize,
    /// Indices of the non-empty cells, and their counts.
    occupied: Vec<usize>,
    counts: Vec<u64>,
}

impl PairTable {
    fn new(a: &[usize], b: &[usize], k: usize) -> Self {
        // The columns are built pairwise, so their lengths match and the table exists; an
        // empty table would make every coefficient NoPairs.
        let (cells, k) = stats::contingency_table(a, b, k).unwrap_or_default();
        let (occupied, counts) = cells
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (i, *c))
            .unzip();
        Self {
            cells,
            k,
            n: a.len(),
            occupied,
            counts,
        }
    }

    /// The `k` rows of the table.
    fn rows(&self) -> Vec<&[u64]> {
        if self.k == 0 {
            return Vec::new();
        }
        self.cells.chunks(self.k).collect()
    }
}

/// A statistic of a contingency table (`cells`, `k` x `k`, `n` items), with a bootstrap CI
/// over items: `counts` are the items' pattern counts and `refill` writes the table of one
/// resample from its drawn pattern counts.
#[expect(
    clippy::too_many_arguments,
    reason = "one table and its resampling, spelled out"
)]
fn table_estimate(
    cells: &[u64],
    k: usize,
    n: usize,
    counts: &[u64],
    opts: &ReportOptions,
    salt: &str,
    f: impl Fn(&[u64], usize) -> Stat,
    mut refill: impl FnMut(&[u64], &mut [u64]),
) -> Estimate {
    let point = f(cells, k);
    let ci = if point.is_ok() {
        let mut table = vec![0u64; cells.len()];
        stats::bootstrap_ci_counts(
            counts,
            opts.resamples,
            seed(opts.seed, salt),
            opts.confidence,
            |draw| {
                refill(draw, &mut table);
                f(&table, k)
            },
        )
    } else {
        None
    };
    estimate(n, point, ci)
}

/// A statistic of a two-rater table, with a bootstrap CI over items.
fn paired(
    t: &PairTable,
    opts: &ReportOptions,
    salt: &str,
    f: impl Fn(&[u64], usize) -> Stat,
) -> Estimate {
    // Every occupied cell is rewritten on each resample and the others stay 0.
    table_estimate(
        &t.cells,
        t.k,
        t.n,
        &t.counts,
        opts,
        salt,
        f,
        |draw, cells| {
            for (&cell, &c) in t.occupied.iter().zip(draw) {
                cells[cell] = c;
            }
        },
    )
}

/// One judge against every human label in turn: a contingency table with one count per
/// (item, human) pair, whose bootstrap resamples items (each with all of its pairs), so the
/// several labels of one item are never treated as independent draws.
struct PooledTable {
    cells: Vec<u64>,
    k: usize,
    /// Label pairs in the table.
    n: usize,
    /// Items with at least one pair.
    items: usize,
    /// Each distinct per-item contribution: its (cell, count) list, and how many items share it.
    contributions: Vec<Vec<(usize, u64)>>,
    counts: Vec<u64>,
}

impl PooledTable {
    fn new(grid: &Grid, items: &[usize], judge: usize) -> Self {
        let k = grid.k;
        let per_item = items.iter().filter_map(|&i| {
            let pred = grid
                .label(i, Rater::Judge(judge))
                .and_then(cat)
                .filter(|c| *c < k)?;
            let mut cells: BTreeMap<usize, u64> = BTreeMap::new();
            for truth in grid.human_row(i).iter().flatten().filter_map(|v| cat(*v)) {
                if truth < k {
                    *cells.entry(truth * k + pred).or_default() += 1;
                }
            }
            (!cells.is_empty()).then(|| cells.into_iter().collect::<Vec<_>>())
        });
        let (contributions, counts) = stats::patterns(per_item);
        let mut cells = vec![0u64; k * k];
        fill(&contributions, &counts, &mut cells);
        let n = usize::try_from(cells.iter().sum::<u64>()).unwrap_or(usize::MAX);
        let items = usize::try_from(counts.iter().sum::<u64>()).unwrap_or(usize::MAX);
        Self {
            cells,
            k,
            n,
            items,
            contributions,
            counts,
        }
    }

    /// A statistic of the table, with a bootstrap CI over items.
    fn estimate(
        &self,
        opts: &ReportOptions,
        salt: &str,
        f: impl Fn(&[u64], usize) -> Stat,
    ) -> Estimate {
        table_estimate(
            &self.cells,
            self.k,
            self.n,
            &self.counts,
            opts,
            salt,
            f,
            |draw, cells| fill(&self.contributions, draw, cells),
        )
    }
}

/// The pooled table of items whose distinct contributions occur `times` times each.
fn fill(contributions: &[Vec<(usize, u64)>], times: &[u64], cells: &mut [u64]) {
    cells.fill(0);
    for (contribution, &t) in contributions.iter().zip(times) {
        for &(cell, c) in contribution {
            cells[cell] += c * t;
        }
    }
}

/// A rater, as a column of the [`Grid`].
#[derive(Clone, Copy)]
enum Rater {
    Human(usize),
    Judge(usize),
}

/// Every item's first label from every rater, read once into dense item x rater tables, with
/// each item's human majority. Sections over any subset of items index it.
struct Grid {
    /// Declared categories.
    k: usize,
    /// Sorted rater names; a column index is a position here.
    humans: Vec<String>,
    judges: Vec<String>,
    /// `human[item * humans.len() + h]`, likewise `judge`.
    human: Vec<Option<LabelValue>>,
    judge: Vec<Option<LabelValue>>,
    majority: Vec<Option<usize>>,
}

impl Grid {
    fn new(set: &CalibrationSet) -> Self {
        let humans = set.raters(RaterKind::Human);
        let judges = set.raters(RaterKind::Judge);
        let column = |names: &[String]| -> BTreeMap<String, usize> {
            names
                .iter()
                .enumerate()
                .map(|(c, n)| (n.clone(), c))
                .collect()
        };
        let (hcol, jcol) = (column(&humans), column(&judges));
        let (nh, nj) = (humans.len(), judges.len());
        let mut human = vec![None; set.items.len() * nh];
        let mut judge = vec![None; set.items.len() * nj];
        for (i, it) in set.items.iter().enumerate() {
            for l in &it.labels {
                let (cols, table, width) = match l.kind {
                    RaterKind::Human => (&hcol, &mut human, nh),
                    RaterKind::Judge => (&jcol, &mut judge, nj),
                };
                // Every rater is in its column map (both come from the same labels).
                if let Some(slot) = cols
                    .get(l.rater.as_str())
                    .and_then(|c| table.get_mut(i * width + c))
                {
                    slot.get_or_insert(l.value);
                }
            }
        }
        let k = set.categories.len();
        let majority = (0..set.items.len())
            .map(|i| majority_of(human[i * nh..(i + 1) * nh].iter().flatten().copied(), k))
            .collect();
        Self {
            k,
            humans,
            judges,
            human,
            judge,
            majority,
        }
    }

    fn human_row(&self, item: usize) -> &[Option<LabelValue>] {
        let w = self.humans.len();
        &self.human[item * w..(item + 1) * w]
    }

    fn label(&self, item: usize, r: Rater) -> Option<LabelValue> {
        match r {
            Rater::Human(h) => self.human[item * self.humans.len() + h],
            Rater::Judge(j) => self.judge[item * self.judges.len() + j],
        }
    }
}

/// Pairs of category labels from two raters over the items both labelled.
fn pairs(grid: &Grid, items: &[usize], a: Rater, b: Rater) -> (Vec<usize>, Vec<usize>) {
    items
        .iter()
        .filter_map(|&i| {
            Some((
                grid.label(i, a).and_then(cat)?,
                grid.label(i, b).and_then(cat)?,
            ))
        })
        .unzip()
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

/// Fleiss' kappa over the items with the most common number of human labels, with a CI
/// that resamples the distinct per-item count rows. Fleiss needs the same number of
/// raters on every item, not the same raters: so one annotator adding a few labels (or
/// skipping a few items) shrinks `n` a little instead of leaving only the items everyone
/// labelled.
fn fleiss(
    set: &CalibrationSet,
    grid: &Grid,
    items: &[usize],
    keep: &[bool],
    opts: &ReportOptions,
    salt: &str,
) -> FleissEstimate {
    let k = grid.k;
    let all: Vec<Vec<u64>> = items
        .iter()
        .map(|&i| {
            let mut counts = vec![0u64; k];
            let kept = grid.human_row(i).iter().zip(keep).filter(|(_, k)| **k);
            for c in kept.filter_map(|(v, _)| *v).filter_map(cat) {
                if let Some(n) = counts.get_mut(c) {
                    *n += 1;
                }
            }
            counts
        })
        .filter(|row| row.iter().sum::<u64>() >= 2)
        .collect();
    let mut sizes: BTreeMap<u64, usize> = BTreeMap::new();
    for row in &all {
        *sizes.entry(row.iter().sum()).or_default() += 1;
    }
    // The most common number of raters per item; on a tie, the larger one.
    let raters = sizes
        .iter()
        .max_by_key(|(m, n)| (**n, **m))
        .map_or(0, |(m, _)| *m);
    let rows: Vec<Vec<u64>> = all
        .into_iter()
        .filter(|row| row.iter().sum::<u64>() == raters)
        .collect();
    let point = if set.scale == Scale::Interval {
        Err(stats::Undefined::ZeroVariance)
    } else {
        stats::fleiss_kappa(&rows)
    };
    let ci = point.ok().and_then(|_| {
        let (distinct, weights) = stats::patterns(rows.iter());
        let distinct: Vec<Vec<u64>> = distinct.into_iter().cloned().collect();
        stats::bootstrap_ci_counts(
            &weights,
            opts.resamples,
            seed(opts.seed, &format!("{salt}fleiss")),
            opts.confidence,
            |w| stats::fleiss_kappa_from_patterns(&distinct, w),
        )
    });
    FleissEstimate {
        estimate: estimate(rows.len(), point, ci),
        raters_per_item: raters,
    }
}

/// Krippendorff's alpha over the humans' values, with a CI that resamples the distinct units.
fn alpha(
    set: &CalibrationSet,
    grid: &Grid,
    items: &[usize],
    keep: &[bool],
    opts: &ReportOptions,
    salt: &str,
) -> Estimate {
    let units: Vec<Vec<Option<f64>>> = items
        .iter()
        .map(|&i| {
            let kept = grid.human_row(i).iter().zip(keep).filter(|(_, k)| **k);
            kept.map(|(v, _)| v.map(value_f64)).collect()
        })
        .collect();
    let level = level(set.scale);
    let point = stats::krippendorff_alpha(&units, level);
    let ci = point.ok().and_then(|_| {
        // A unit matters only through the multiset of its finite values, and not at all with
        // fewer than two of them, so units are grouped by their sorted value bits.
        let keys = units.iter().map(|u| {
            let mut v: Vec<f64> = u
                .iter()
                .flatten()
                .copied()
                .filter(|x| x.is_finite())
                .collect();
            if v.len() < 2 {
                v.clear();
            }
            v.sort_by(f64::total_cmp);
            v.into_iter().map(f64::to_bits).collect::<Vec<u64>>()
        });
        let (distinct, weights) = stats::patterns(keys);
        let distinct: Vec<Vec<Option<f64>>> = distinct
            .iter()
            .map(|k| k.iter().map(|b| Some(f64::from_bits(*b))).collect())
            .collect();
        // Per-unit contributions computed once; resamples only add them up.
        let prep = stats::AlphaPrep::new(&distinct, level);
        stats::bootstrap_ci_counts(
            &weights,
            opts.resamples,
            seed(opts.seed, &format!("{salt}alpha")),
            opts.confidence,
            |w| prep.alpha_counts(w),
        )
    });
    estimate(units.len(), point, ci)
}

fn humans_section(
    set: &CalibrationSet,
    grid: &Grid,
    items: &[usize],
    opts: &ReportOptions,
    salt: &str,
) -> (HumansSection, Vec<f64>) {
    let humans = &grid.humans;
    let min_pair_items = opts
        .min_pair_items
        .or(set.min_pair_items)
        .unwrap_or(DEFAULT_MIN_PAIR_ITEMS);
    let mut pairwise = Vec::new();
    let mut band = Vec::new();
    for (x, a) in humans.iter().enumerate() {
        for (y, b) in humans.iter().enumerate().skip(x + 1) {
            let (la, lb) = pairs(grid, items, Rater::Human(x), Rater::Human(y));
            let t = PairTable::new(&la, &lb, grid.k);
            let kappa = paired(
                &t,
                opts,
                &format!("{salt}{a}|{b}"),
                stats::cohen_kappa_from_table,
            );
            let too_few_items = t.n < min_pair_items;
            if let (Some(v), false) = (kappa.value, too_few_items) {
                band.push(v);
            }
            let percent_agreement = paired(
                &t,
                opts,
                &format!("{salt}{a}|{b}|pa"),
                stats::percent_agreement_from_table,
            );
            let ordinal = set.scale == Scale::Ordinal;
            let weighted = |suffix: &str, w: Weights| {
                ordinal.then(|| {
                    paired(&t, opts, &format!("{salt}{a}|{b}|{suffix}"), |c, k| {
                        stats::weighted_kappa_from_table(c, k, w)
                    })
                })
            };
            pairwise.push(HumanPair {
                a: a.clone(),
                b: b.clone(),
                n: t.n,
                cohen_kappa: kappa,
                percent_agreement,
                weighted_kappa_linear: weighted("lin", Weights::Linear),
                weighted_kappa_quadratic: weighted("quad", Weights::Quadratic),
                too_few_items,
            });
        }
    }
    // A human whose every pair has too few shared items stays out of Fleiss' kappa and
    // Krippendorff's alpha too (a few labels would drop items from Fleiss' most common
    // rater count and add noise to alpha), unless no pair has enough: then the
    // whole-set figures are all there is, over everyone.
    let mut keep = vec![false; humans.len()];
    for p in pairwise.iter().filter(|p| !p.too_few_items) {
        for (h, name) in humans.iter().enumerate() {
            if *name == p.a || *name == p.b {
                keep[h] = true;
            }
        }
    }
    if !keep.contains(&true) {
        keep.fill(true);
    }
    let with_majority = items
        .iter()
        .filter(|&&i| grid.majority[i].is_some())
        .count();
    (
        HumansSection {
            raters: humans.clone(),
            fleiss_kappa: fleiss(set, grid, items, &keep, opts, salt),
            krippendorff_alpha: alpha(set, grid, items, &keep, opts, salt),
            pairwise,
            band: Band {
                min: band.iter().copied().reduce(f64::min),
                max: band.iter().copied().reduce(f64::max),
            },
            majority: MajorityCoverage {
                items: with_majority,
                excluded_no_majority: items.len() - with_majority,
            },
        },
        band,
    )
}

fn judges_section(
    set: &CalibrationSet,
    grid: &Grid,
    items: &[usize],
    band: &[f64],
    opts: &ReportOptions,
    salt: &str,
) -> Vec<JudgeSection> {
    let k = grid.k;
    let class_figures = |scores: &[stats::ClassScore]| -> Vec<ClassFigures> {
        scores
            .iter()
            .map(|c| ClassFigures {
                class: set.categories.get(c.class).cloned(),
                precision: c.precision,
                recall: c.recall,
                f1: c.f1,
                support: c.support,
            })
            .collect()
    };
    grid.judges
        .iter()
        .enumerate()
        .map(|(jx, j)| {
            let (truth, pred): (Vec<usize>, Vec<usize>) = items
                .iter()
                .filter_map(|&i| {
                    Some((
                        grid.majority[i]?,
                        grid.label(i, Rater::Judge(jx)).and_then(cat)?,
                    ))
                })
                .unzip();
            let t = PairTable::new(&truth, &pred, k);
            let kappa = paired(
                &t,
                opts,
                &format!("{salt}{j}|maj"),
                stats::cohen_kappa_from_table,
            );
            let classes = stats::class_scores_from_table(&t.cells, t.k);
            let macro_f1 = paired(&t, opts, &format!("{salt}{j}|f1"), |c, k| {
                stats::macro_f1(&stats::class_scores_from_table(c, k))
            });
            let position = match (
                kappa.value,
                band.iter().copied().reduce(f64::min),
                band.iter().copied().reduce(f64::max),
            ) {
                (Some(v), Some(lo), Some(_)) if v < lo => BandPosition::Below,
                (Some(v), Some(_), Some(hi)) if v > hi => BandPosition::Above,
                (Some(_), Some(_), Some(_)) => BandPosition::Within,
                _ => BandPosition::Undefined,
            };
            let each: Vec<VsHuman> = grid
                .humans
                .iter()
                .enumerate()
                .map(|(hx, h)| {
                    let (a, b) = pairs(grid, items, Rater::Human(hx), Rater::Judge(jx));
                    let t = PairTable::new(&a, &b, k);
                    VsHuman {
                        human: h.clone(),
                        n: t.n,
                        cohen_kappa: paired(
                            &t,
                            opts,
                            &format!("{salt}{j}|{h}"),
                            stats::cohen_kappa_from_table,
                        ),
                        percent_agreement: paired(
                            &t,
                            opts,
                            &format!("{salt}{j}|{h}|pa"),
                            stats::percent_agreement_from_table,
                        ),
                        macro_f1: paired(&t, opts, &format!("{salt}{j}|{h}|f1"), |c, k| {
                            stats::macro_f1(&stats::class_scores_from_table(c, k))
                        }),
                    }
                })
                .collect();
            // The HealthBench meta-eval figure: the judge against every human label in
            // turn (one pair per item and human), per-class precision / recall / F1 and
            // their macro average. Its CI resamples items, each with all of its pairs.
            let pooled = PooledTable::new(grid, items, jx);
            JudgeSection {
                judge: j.clone(),
                vs_human_majority: VsHumanMajority {
                    n: t.n,
                    percent_agreement: paired(
                        &t,
                        opts,
                        &format!("{salt}{j}|pa"),
                        stats::percent_agreement_from_table,
                    ),
                    cohen_kappa: kappa,
                    macro_f1,
                    classes: class_figures(&classes),
                    confusion: t.rows().into_iter().map(<[u64]>::to_vec).collect(),
                    confusion_labels: (0..t.k)
                        .map(|c| {
                            set.categories
                                .get(c)
                                .cloned()
                                .unwrap_or_else(|| c.to_string())
                        })
                        .collect(),
                },
                vs_each_human: each,
                vs_human_labels: VsHumanLabels {
                    n: pooled.n,
                    items: pooled.items,
                    percent_agreement: pooled.estimate(
                        opts,
                        &format!("{salt}{j}|pooled|pa"),
                        stats::percent_agreement_from_table,
                    ),
                    macro_f1: pooled.estimate(opts, &format!("{salt}{j}|pooled|f1"), |c, k| {
                        stats::macro_f1(&stats::class_scores_from_table(c, k))
                    }),
                    classes: class_figures(&stats::class_scores_from_table(&pooled.cells, k)),
                },
                human_band_position: position,
            }
        })
        .collect()
}

/// The humans and judges sections over a subset of items, as one `by_category` /
/// `by_criterion` entry.
fn breakdown(
    set: &CalibrationSet,
    grid: &Grid,
    items: &[usize],
    opts: &ReportOptions,
    salt: &str,
) -> Breakdown {
    let (humans, band) = humans_section(set, grid, items, opts, salt);
    let judges = judges_section(set, grid, items, &band, opts, salt);
    Breakdown {
        items: items.len(),
        humans,
        judges,
    }
}

/// Item indices grouped by a key, in key order; items without a key are left out.
fn group_by<'a>(keys: impl Iterator<Item = Option<&'a str>>) -> BTreeMap<&'a str, Vec<usize>> {
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, key) in keys.enumerate() {
        if let Some(key) = key {
            groups.entry(key).or_default().push(i);
        }
    }
    groups
}

/// The full report (see the module docs for the stable paths), with a `by_criterion` entry
/// for every criterion that has at least [`DEFAULT_MIN_CRITERION_ITEMS`] items.
pub fn agreement_report_doc(set: &CalibrationSet, opts: &ReportOptions) -> AgreementReport {
    agreement_report_doc_with(set, opts, DEFAULT_MIN_CRITERION_ITEMS)
}

/// [`agreement_report_doc`] as a JSON value.
pub fn agreement_report(set: &CalibrationSet, opts: &ReportOptions) -> Value {
    agreement_report_with(set, opts, DEFAULT_MIN_CRITERION_ITEMS)
}

/// [`agreement_report_doc_with`] as a JSON value.
pub fn agreement_report_with(
    set: &CalibrationSet,
    opts: &ReportOptions,
    min_criterion_items: usize,
) -> Value {
    // Cannot fail: every map key is a string and no type has a fallible serialiser.
    serde_json::to_value(agreement_report_doc_with(set, opts, min_criterion_items))
        .unwrap_or_default()
}

/// [`agreement_report_doc`] with `by_criterion` entries for criteria with at least
/// `min_criterion_items` items; smaller criteria are only counted in `by_criterion_skipped`.
pub fn agreement_report_doc_with(
    set: &CalibrationSet,
    opts: &ReportOptions,
    min_criterion_items: usize,
) -> AgreementReport {
    let grid = Grid::new(set);
    let all: Vec<usize> = (0..set.items.len()).collect();
    let (humans, band) = humans_section(set, &grid, &all, opts, "");
    let judges = judges_section(set, &grid, &all, &band, opts, "");
    let mut by_category = BTreeMap::new();
    for (c, idx) in group_by(set.items.iter().map(|it| it.category.as_deref())) {
        by_category.insert(c.to_owned(), breakdown(set, &grid, &idx, opts, c));
    }
    let mut by_criterion = BTreeMap::new();
    let (mut skipped_criteria, mut skipped_items) = (0usize, 0usize);
    for (c, idx) in group_by(set.items.iter().map(|it| it.criterion.as_deref())) {
        if idx.len() < min_criterion_items {
            skipped_criteria += 1;
            skipped_items += idx.len();
            continue;
        }
        // A separate salt keeps a criterion's draws apart from a category of the same name.
        let salt = format!("criterion\u{1f}{c}\u{1f}");
        by_criterion.insert(c.to_owned(), breakdown(set, &grid, &idx, opts, &salt));
    }
    let (dawid_skene, suggested_weights) = super::reliability::reliability_sections(set);
    AgreementReport {
        set: set.name.clone(),
        scale: set.scale.into(),
        categories: set.categories.clone(),
        items: set.items.len(),
        seed: opts.seed,
        resamples: opts.resamples,
        confidence: opts.confidence,
        humans,
        judges,
        by_category,
        by_criterion,
        by_criterion_skipped: SkippedCriteria {
            criteria: skipped_criteria,
            items: skipped_items,
        },
        dawid_skene,
        suggested_weights,
        run: None,
    }
}

/// A human-readable summary of the report: the humans (pairs with too few shared
/// items marked, the band they leave), each judge with the plain-language reading of
/// its kappa and the prevalence of each category, then the same per item category.
pub fn report_table(r: &AgreementReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "set {} ({} items, {} scale)",
        r.set,
        r.items,
        r.scale.as_str()
    );
    humans_table(&mut out, &r.humans, "");
    judges_table(&mut out, &r.judges, "");
    if !r.by_category.is_empty() {
        let _ = writeln!(out, "by category:");
    }
    for (c, b) in &r.by_category {
        let _ = writeln!(out, "  {c} ({} items)", b.items);
        humans_table(&mut out, &b.humans, "    ");
        judges_table(&mut out, &b.judges, "    ");
    }
    let (reported, skipped) = (r.by_criterion.len(), &r.by_criterion_skipped);
    if reported > 0 || skipped.criteria > 0 {
        let _ = writeln!(
            out,
            "by criterion: {reported} criteria reported, {} with too few items skipped ({} items)",
            skipped.criteria, skipped.items
        );
    }
    out
}

/// An estimate as `0.412 [0.201, 0.598]`, or `- (reason)`.
fn fmt_estimate(v: &Estimate) -> String {
    v.value.map_or_else(
        || format!("- ({})", v.reason.map_or("", UndefinedReason::as_str)),
        |x| match (v.ci_low, v.ci_high) {
            (Some(lo), Some(hi)) => format!("{x:.3} [{lo:.3}, {hi:.3}]"),
            _ => format!("{x:.3}"),
        },
    )
}

/// A kappa estimate with its Landis-Koch reading: `0.412 [...] (moderate)`.
fn fmt_kappa(v: &Estimate) -> String {
    match v.value {
        Some(x) => format!("{} ({})", fmt_estimate(v), kappa_reading(x)),
        None => fmt_estimate(v),
    }
}

fn humans_table(out: &mut String, h: &HumansSection, indent: &str) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "{indent}humans: Fleiss kappa {}  Krippendorff alpha {}",
        fmt_kappa(&h.fleiss_kappa.estimate),
        fmt_estimate(&h.krippendorff_alpha)
    );
    for p in &h.pairwise {
        let _ = writeln!(
            out,
            "{indent}  {} vs {}: Cohen kappa {}  n {}{}",
            p.a,
            p.b,
            fmt_kappa(&p.cohen_kappa),
            p.n,
            if p.too_few_items {
                "  (too few shared items: not in the band)"
            } else {
                ""
            }
        );
    }
    let _ = match (h.band.min, h.band.max) {
        (Some(lo), Some(hi)) => writeln!(out, "{indent}  human band: {lo:.3} to {hi:.3}"),
        _ => writeln!(
            out,
            "{indent}  human band: undefined (no human pair with enough shared items)"
        ),
    };
}

fn judges_table(out: &mut String, judges: &[JudgeSection], indent: &str) {
    use std::fmt::Write as _;
    for j in judges {
        let m = &j.vs_human_majority;
        let _ = writeln!(
            out,
            "{indent}judge {}: vs human majority kappa {}  agreement {}  macro-F1 {}  n {}  ({} the human band)",
            j.judge,
            fmt_kappa(&m.cohen_kappa),
            fmt_estimate(&m.percent_agreement),
            fmt_estimate(&m.macro_f1),
            m.n,
            j.human_band_position.as_str()
        );
        let prevalence = majority_prevalence(m);
        if !prevalence.is_empty() {
            let shares: Vec<String> = prevalence
                .iter()
                .map(|(c, p)| format!("{c} {:.1}%", p * 100.0))
                .collect();
            let _ = writeln!(
                out,
                "{indent}  prevalence (human majority): {}",
                shares.join(", ")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibration::set::{CalItem, Label};
    use serde_json::json;

    /// An item with a category, a criterion and `(rater, kind, category index)` labels.
    fn item(
        category: Option<&str>,
        criterion: Option<&str>,
        labels: &[(&str, RaterKind, usize)],
    ) -> CalItem {
        CalItem {
            id: String::new(),
            category: category.map(str::to_owned),
            criterion: criterion.map(str::to_owned),
            task: None,
            labels: labels
                .iter()
                .map(|&(rater, kind, c)| Label {
                    rater: rater.to_owned(),
                    kind,
                    value: LabelValue::Category(c),
                })
                .collect(),
        }
    }

    fn set(items: Vec<CalItem>) -> CalibrationSet {
        CalibrationSet {
            name: "t".into(),
            description: None,
            scale: Scale::Nominal,
            categories: vec!["no".into(), "maybe".into(), "yes".into()],
            met: None,
            min_pair_items: None,
            items,
        }
    }

    const H: RaterKind = RaterKind::Human;
    const J: RaterKind = RaterKind::Judge;

    /// Worked by hand: h1 = [1,1,0,0], h2 = [1,0,0,0], judge = [1,1,1,0] give the pooled
    /// pairs (1,1) x3, (0,1) x3, (0,0) x2: class 1 P 0.5 R 1 F1 2/3, class 0 P 1 R 0.4
    /// F1 4/7, macro (2/3 + 4/7) / 2, agreement 5/8.
    #[test]
    fn pooled_human_labels_figure() {
        let labels = [(1, 1, 1), (1, 0, 1), (0, 0, 1), (0, 0, 0)];
        let items = labels
            .iter()
            .map(|&(a, b, j)| item(None, None, &[("h1", H, a), ("h2", H, b), ("j", J, j)]))
            .collect();
        let mut s = set(items);
        s.categories = vec!["no".into(), "yes".into()];
        let r = agreement_report(
            &s,
            &ReportOptions {
                resamples: 0,
                ..ReportOptions::default()
            },
        );
        let pooled = &r["judges"][0]["vs_human_labels"];
        assert_eq!(pooled["n"], 8);
        assert_eq!(pooled["items"], 4);
        let macro_f1 = pooled["macro_f1"]["value"].as_f64().unwrap();
        assert!(
            (macro_f1 - (2.0 / 3.0 + 4.0 / 7.0) / 2.0).abs() < 1e-12,
            "{pooled}"
        );
        assert_eq!(pooled["percent_agreement"]["value"], 0.625);
        assert_eq!(pooled["classes"][1]["precision"], 0.5);
    }

    /// The pooled figure's CI resamples items, each with all of its label pairs: with one
    /// item every resample is that item, so the interval collapses to the point (a bootstrap
    /// over the three pairs would spread from 0 to 1).
    #[test]
    fn pooled_ci_resamples_items_not_pairs() {
        let one = item(
            None,
            None,
            &[("h1", H, 1), ("h2", H, 1), ("h3", H, 0), ("j", J, 1)],
        );
        let mut s = set(vec![one]);
        s.categories = vec!["no".into(), "yes".into()];
        let r = agreement_report(&s, &ReportOptions::default());
        let pa = &r["judges"][0]["vs_human_labels"]["percent_agreement"];
        assert_eq!(pa["n"], 3);
        let value = pa["value"].as_f64().unwrap();
        assert!((value - 2.0 / 3.0).abs() < 1e-12, "{pa}");
        assert_eq!(pa["ci_low"], pa["value"], "{pa}");
        assert_eq!(pa["ci_high"], pa["value"], "{pa}");
    }

    /// Fleiss needs equal rater counts per item, not the same raters: a fourth annotator
    /// on one item leaves the other items in.
    #[test]
    fn fleiss_uses_the_most_common_rater_count() {
        let mut items: Vec<CalItem> = (0..6)
            .map(|i| {
                item(
                    None,
                    None,
                    &[("a", H, i % 2), ("b", H, i % 2), ("c", H, (i / 2) % 2)],
                )
            })
            .collect();
        let full = agreement_report(&set(items.clone()), &ReportOptions::default());
        items[0].labels.push(Label {
            rater: "d".into(),
            kind: H,
            value: LabelValue::Category(0),
        });
        let extra = agreement_report(&set(items), &ReportOptions::default());
        assert_eq!(full["humans"]["fleiss_kappa"]["n"], 6);
        assert_eq!(extra["humans"]["fleiss_kappa"]["n"], 5);
        assert_eq!(extra["humans"]["fleiss_kappa"]["raters_per_item"], 3);
        assert!(extra["humans"]["fleiss_kappa"]["value"].is_number());
    }

    #[test]
    fn human_majority_cases() {
        let table: [(&str, &[(&str, RaterKind, usize)], Option<usize>); 7] = [
            (
                "two of three",
                &[("a", H, 2), ("b", H, 2), ("c", H, 0)],
                Some(2),
            ),
            (
                "plurality",
                &[("a", H, 0), ("b", H, 1), ("c", H, 1), ("d", H, 2)],
                Some(1),
            ),
            ("tie", &[("a", H, 0), ("b", H, 2)], None),
            ("one human", &[("a", H, 1)], Some(1)),
            // Judges do not vote.
            (
                "judges ignored",
                &[("a", H, 0), ("j", J, 2), ("k", J, 2)],
                Some(0),
            ),
            // A rater's second label is ignored, so this is a 1-1 tie, not 2-1.
            (
                "first label wins",
                &[("a", H, 2), ("a", H, 2), ("b", H, 0)],
                None,
            ),
            ("no humans", &[("j", J, 1)], None),
        ];
        let s = set(table.iter().map(|(_, l, _)| item(None, None, l)).collect());
        let grid = Grid::new(&s);
        for (i, (name, _, want)) in table.iter().enumerate() {
            assert_eq!(human_majority(&s, i), *want, "{name}");
            assert_eq!(grid.majority[i], *want, "{name}: grid");
        }
        assert_eq!(human_majority(&s, table.len()), None, "no such item");
    }

    #[test]
    fn confusion_rows_are_the_majority_and_columns_the_judge() {
        // (human labels a, b; judge): majorities 2, 2, 0, 1 and one tie that is left out.
        let rows: [(usize, usize, usize, &str); 5] = [
            (2, 2, 2, "x"),
            (2, 2, 0, "x"),
            (0, 0, 0, "y"),
            (1, 1, 2, "y"),
            (0, 2, 1, "y"),
        ];
        let s = set(rows
            .iter()
            .map(|&(a, b, j, c)| item(Some(c), None, &[("a", H, a), ("b", H, b), ("j", J, j)]))
            .collect());
        let r = agreement_report(
            &s,
            &ReportOptions {
                resamples: 20,
                ..ReportOptions::default()
            },
        );
        let table: [(&str, &Value, Value); 3] = [
            (
                "overall",
                &r["judges"][0],
                json!([[1, 0, 0], [0, 0, 1], [1, 0, 1]]),
            ),
            (
                "category x",
                &r["by_category"]["x"]["judges"][0],
                json!([[0, 0, 0], [0, 0, 0], [1, 0, 1]]),
            ),
            (
                "category y",
                &r["by_category"]["y"]["judges"][0],
                json!([[1, 0, 0], [0, 0, 1], [0, 0, 0]]),
            ),
        ];
        for (name, judge, want) in table {
            let m = &judge["vs_human_majority"];
            assert_eq!(m["confusion"], want, "{name}");
            assert_eq!(
                m["confusion_labels"],
                json!(["no", "maybe", "yes"]),
                "{name}"
            );
            let total: u64 = want
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| r.as_array().into_iter().flatten())
                .filter_map(Value::as_u64)
                .sum();
            assert_eq!(m["n"], total, "{name}: n counts the matrix");
        }
    }

    #[test]
    fn by_criterion_keeps_criteria_with_enough_items() {
        // Criterion "big" has 4 items, "mid" 2, "tiny" 1; one item has no criterion.
        let mut items = Vec::new();
        for (crit, n) in [
            (Some("big"), 4),
            (Some("mid"), 2),
            (Some("tiny"), 1),
            (None, 1),
        ] {
            for i in 0..n {
                items.push(item(
                    None,
                    crit,
                    &[("a", H, i % 2), ("b", H, 0), ("j", J, i % 2)],
                ));
            }
        }
        let s = set(items);
        let opts = ReportOptions {
            resamples: 10,
            ..ReportOptions::default()
        };
        let table: [(usize, &[(&str, u64)], Value); 4] = [
            (
                1,
                &[("big", 4), ("mid", 2), ("tiny", 1)],
                json!({"criteria": 0, "items": 0}),
            ),
            (
                2,
                &[("big", 4), ("mid", 2)],
                json!({"criteria": 1, "items": 1}),
            ),
            (4, &[("big", 4)], json!({"criteria": 2, "items": 3})),
            (
                DEFAULT_MIN_CRITERION_ITEMS,
                &[],
                json!({"criteria": 3, "items": 7}),
            ),
        ];
        for (min, kept, skipped) in table {
            let r = agreement_report_with(&s, &opts, min);
            let got: Vec<(&str, u64)> = r["by_criterion"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(c, v)| (c.as_str(), v["items"].as_u64().unwrap_or(0)))
                .collect();
            assert_eq!(got, kept, "min {min}");
            assert_eq!(r["by_criterion_skipped"], skipped, "min {min}");
            for (c, _) in kept {
                let entry = &r["by_criterion"][c];
                // Same shape as a by_category entry.
                for path in ["humans", "judges"] {
                    assert!(!entry[path].is_null(), "min {min}: {c}.{path}");
                }
                assert!(entry["judges"][0]["vs_human_majority"]["confusion"].is_array());
            }
        }
        assert_eq!(
            agreement_report(&s, &opts),
            agreement_report_with(&s, &opts, DEFAULT_MIN_CRITERION_ITEMS)
        );
        let text = report_table(&agreement_report_doc_with(&s, &opts, 2));
        assert!(
            text.contains(
                "by criterion: 2 criteria reported, 1 with too few items skipped (1 items)"
            ),
            "{text}"
        );
    }

    #[test]
    fn same_seed_same_report() {
        let s = set((0..30)
            .map(|i| {
                item(
                    None,
                    None,
                    &[("a", H, i % 3), ("b", H, (i / 2) % 3), ("j", J, i % 3)],
                )
            })
            .collect());
        let opts = ReportOptions {
            resamples: 200,
            seed: 9,
            ..ReportOptions::default()
        };
        let r = agreement_report(&s, &opts);
        assert_eq!(r, agreement_report(&s, &opts));
        assert!(r["humans"]["pairwise"][0]["cohen_kappa"]["ci_low"].is_f64());
        assert_ne!(r, agreement_report(&s, &ReportOptions { seed: 10, ..opts }));
    }

    /// Every report the tests build, by fixture name: the example sets (JSONL and, through
    /// the importer, CSV), the sets of the tests above and of `reliability`'s tests, and an
    /// interval set, each with the options its test uses.
    fn fixture_cases() -> Vec<(String, CalibrationSet, ReportOptions, usize)> {
        use crate::calibration::set::{Label, import_csv, parse_csv_mapping, parse_set};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let examples = root.join("calibration/examples");
        let triage =
            parse_set(&std::fs::read_to_string(examples.join("triage-small.jsonl")).unwrap())
                .unwrap();
        let mut m = parse_csv_mapping(
            "id=row_id,category=topic,criterion=claim,case=question,response=answer,human:alice=label_a,human:bob=label_b,judge:gpt4=gpt_label",
        )
        .unwrap();
        m.categories = Some(vec!["no".into(), "partly".into(), "yes".into()]);
        m.scale = Scale::Ordinal;
        m.met = Some("yes".into());
        m.name = "sleep-advice".into();
        let sleep = import_csv(
            &std::fs::read_to_string(examples.join("sleep-advice.csv")).unwrap(),
            &m,
        )
        .unwrap();
        // The fixtures were written before `min_pair_items`; with 0 every pair counts,
        // as it did then (`pairs_with_too_few_items_stay_out_of_the_band` covers it).
        let d = ReportOptions {
            min_pair_items: Some(0),
            ..ReportOptions::default()
        };
        let with = |resamples: usize, seed: u64| ReportOptions {
            resamples,
            seed,
            ..d.clone()
        };
        let mut out = vec![
            (
                "triage-small".to_owned(),
                triage.clone(),
                d.clone(),
                DEFAULT_MIN_CRITERION_ITEMS,
            ),
            (
                "triage-small-by-criterion".to_owned(),
                triage,
                with(200, 3),
                1,
            ),
            (
                "sleep-advice".to_owned(),
                sleep.clone(),
                d.clone(),
                DEFAULT_MIN_CRITERION_ITEMS,
            ),
            (
                "sleep-advice-by-criterion".to_owned(),
                sleep,
                with(100, 5),
                1,
            ),
        ];
        // pooled_human_labels_figure
        let labels = [(1, 1, 1), (1, 0, 1), (0, 0, 1), (0, 0, 0)];
        let mut s = set(labels
            .iter()
            .map(|&(a, b, j)| item(None, None, &[("h1", H, a), ("h2", H, b), ("j", J, j)]))
            .collect());
        s.categories = vec!["no".into(), "yes".into()];
        out.push(("pooled".into(), s, with(0, 0), DEFAULT_MIN_CRITERION_ITEMS));
        // pooled_ci_resamples_items_not_pairs
        let mut s = set(vec![item(
            None,
            None,
            &[("h1", H, 1), ("h2", H, 1), ("h3", H, 0), ("j", J, 1)],
        )]);
        s.categories = vec!["no".into(), "yes".into()];
        out.push((
            "pooled-one-item".into(),
            s,
            d.clone(),
            DEFAULT_MIN_CRITERION_ITEMS,
        ));
        // fleiss_uses_the_most_common_rater_count
        let mut items: Vec<CalItem> = (0..6)
            .map(|i| {
                item(
                    None,
                    None,
                    &[("a", H, i % 2), ("b", H, i % 2), ("c", H, (i / 2) % 2)],
                )
            })
            .collect();
        out.push((
            "fleiss-full".into(),
            set(items.clone()),
            d.clone(),
            DEFAULT_MIN_CRITERION_ITEMS,
        ));
        items[0].labels.push(Label {
            rater: "d".into(),
            kind: H,
            value: LabelValue::Category(0),
        });
        out.push((
            "fleiss-extra".into(),
            set(items),
            d.clone(),
            DEFAULT_MIN_CRITERION_ITEMS,
        ));
        // confusion_rows_are_the_majority_and_columns_the_judge
        let rows: [(usize, usize, usize, &str); 5] = [
            (2, 2, 2, "x"),
            (2, 2, 0, "x"),
            (0, 0, 0, "y"),
            (1, 1, 2, "y"),
            (0, 2, 1, "y"),
        ];
        let s = set(rows
            .iter()
            .map(|&(a, b, j, c)| item(Some(c), None, &[("a", H, a), ("b", H, b), ("j", J, j)]))
            .collect());
        out.push((
            "confusion".into(),
            s,
            with(20, 0),
            DEFAULT_MIN_CRITERION_ITEMS,
        ));
        // by_criterion_keeps_criteria_with_enough_items
        let mut items = Vec::new();
        for (crit, n) in [
            (Some("big"), 4),
            (Some("mid"), 2),
            (Some("tiny"), 1),
            (None, 1),
        ] {
            for i in 0..n {
                items.push(item(
                    None,
                    crit,
                    &[("a", H, i % 2), ("b", H, 0), ("j", J, i % 2)],
                ));
            }
        }
        for min in [1, 2, 4, DEFAULT_MIN_CRITERION_ITEMS] {
            out.push((
                format!("by-criterion-min-{min}"),
                set(items.clone()),
                with(10, 0),
                min,
            ));
        }
        // same_seed_same_report
        let s = set((0..30)
            .map(|i| {
                item(
                    None,
                    None,
                    &[("a", H, i % 3), ("b", H, (i / 2) % 3), ("j", J, i % 3)],
                )
            })
            .collect());
        out.push((
            "seed-9".into(),
            s.clone(),
            with(200, 9),
            DEFAULT_MIN_CRITERION_ITEMS,
        ));
        out.push((
            "seed-10".into(),
            s,
            with(200, 10),
            DEFAULT_MIN_CRITERION_ITEMS,
        ));
        // reliability's tests: a binary set with `met`, two judges and the committee.
        out.push((
            "reliability".into(),
            super::super::reliability::tests::set(),
            d.clone(),
            DEFAULT_MIN_CRITERION_ITEMS,
        ));
        // An interval set: numbers, no categories, three humans and a judge.
        let mut s = set((0..12)
            .map(|i| {
                let mut it = item(Some(if i % 2 == 0 { "even" } else { "odd" }), None, &[]);
                let x = (i % 5) as f64 * 0.5;
                for (r, kind, v) in [
                    ("a", H, x),
                    ("b", H, x + 0.25),
                    ("c", H, 2.0 - x),
                    ("j", J, x),
                ] {
                    it.labels.push(Label {
                        rater: r.into(),
                        kind,
                        value: LabelValue::Number(v),
                    });
                }
                it
            })
            .collect());
        s.scale = Scale::Interval;
        s.categories = Vec::new();
        out.push((
            "interval".into(),
            s,
            with(50, 1),
            DEFAULT_MIN_CRITERION_ITEMS,
        ));
        out
    }

    /// 36 items, three annotators on all of them (mostly agreeing), a judge that
    /// mostly disagrees, and `late` labelling only the first two items: the two-item
    /// pairs are listed with `too_few_items` and leave the band, Fleiss' kappa and
    /// alpha as they were without `late`, so the judge stays below the band.
    #[test]
    fn pairs_with_too_few_items_stay_out_of_the_band() {
        let build = |with_late: bool| {
            let items: Vec<CalItem> = (0..36)
                .map(|i| {
                    let truth = usize::from(i % 3 != 0);
                    let mut labels = vec![
                        ("a", H, truth),
                        ("b", H, if i % 9 == 4 { 1 - truth } else { truth }),
                        ("c", H, if i % 12 == 7 { 1 - truth } else { truth }),
                        ("j", J, if i % 5 < 3 { 1 - truth } else { truth }),
                    ];
                    if with_late && i < 2 {
                        labels.push(("late", H, 1 - truth));
                    }
                    item(Some(if i % 2 == 0 { "even" } else { "odd" }), None, &labels)
                })
                .collect();
            let mut s = set(items);
            s.categories = vec!["no".into(), "yes".into()];
            s
        };
        let opts = ReportOptions {
            resamples: 0,
            ..ReportOptions::default()
        };
        let without = agreement_report_doc(&build(false), &opts);
        let with = agreement_report_doc(&build(true), &opts);
        let late: Vec<&HumanPair> = with
            .humans
            .pairwise
            .iter()
            .filter(|p| p.a == "late" || p.b == "late")
            .collect();
        assert_eq!(late.len(), 3);
        for p in &late {
            assert_eq!(p.n, 2);
            assert!(p.too_few_items, "{p:?}");
        }
        assert!(
            with.humans
                .pairwise
                .iter()
                .filter(|p| !p.too_few_items)
                .count()
                == 3
        );
        assert_eq!(with.humans.band, without.humans.band);
        assert!(without.humans.band.min.is_some());
        assert_eq!(with.humans.fleiss_kappa, without.humans.fleiss_kappa);
        assert_eq!(
            with.humans.krippendorff_alpha,
            without.humans.krippendorff_alpha
        );
        assert_eq!(with.judges[0].human_band_position, BandPosition::Below);
        let json = serde_json::to_value(&with).unwrap();
        let pair = |a: &str, b: &str| {
            json["humans"]["pairwise"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["a"] == a && p["b"] == b)
                .cloned()
                .unwrap()
        };
        assert_eq!(pair("a", "late")["too_few_items"], true, "{json}");
        // The counted pairs carry no flag, as before.
        assert!(pair("a", "b").get("too_few_items").is_none(), "{json}");

        // Without the minimum (a run's min_pair_items = 1), the two labels widen the
        // band to -1 and the judge moves "within" it: what the minimum prevents.
        let loose = agreement_report_doc(
            &build(true),
            &ReportOptions {
                min_pair_items: Some(1),
                ..opts.clone()
            },
        );
        assert_eq!(loose.humans.band.min, Some(-1.0));
        assert_eq!(loose.judges[0].human_band_position, BandPosition::Within);
        // The set's own setting applies when the run gives none; the run's wins.
        let mut per_set = build(true);
        per_set.min_pair_items = Some(1);
        assert_eq!(
            agreement_report_doc(&per_set, &opts).humans.band,
            loose.humans.band
        );
        let run_wins = ReportOptions {
            min_pair_items: Some(20),
            ..opts.clone()
        };
        assert_eq!(
            agreement_report_doc(&per_set, &run_wins).humans.band,
            without.humans.band
        );

        // The table marks the pairs, reads each kappa, gives the prevalence and the
        // figures per category.
        let table = report_table(&with);
        for want in [
            "a vs late: Cohen kappa",
            "(too few shared items: not in the band)",
            "(below the human band)",
            "prevalence (human majority): no 33.3%, yes 66.7%",
            "by category:",
            "  even (18 items)",
            "  odd (18 items)",
            "(poor)",
            "human band: ",
        ] {
            assert!(table.contains(want), "{want}:\n{table}");
        }
    }

    #[test]
    fn kappa_readings_follow_landis_and_koch() {
        for (k, want) in [
            (-0.222, "poor"),
            (0.0, "slight"),
            (0.2, "slight"),
            (0.21, "fair"),
            (0.4, "fair"),
            (0.41, "moderate"),
            (0.6, "moderate"),
            (0.61, "substantial"),
            (0.8, "substantial"),
            (0.81, "almost perfect"),
            (1.0, "almost perfect"),
        ] {
            assert_eq!(kappa_reading(k), want, "{k}");
        }
    }

    fn fixture_path(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/agreement-report-{name}.json"))
    }

    /// The typed report serialises to exactly the JSON the `json!`-built report gave
    /// (the fixtures were written by that code before the types existed), and reads back
    /// to itself, as the server does with a stored report.
    #[test]
    fn typed_report_matches_the_json_built_report() {
        let cases = fixture_cases();
        assert!(cases.len() >= 17);
        for (name, s, opts, min) in cases {
            let want = std::fs::read_to_string(fixture_path(&name)).unwrap();
            let doc = agreement_report_doc_with(&s, &opts, min);
            let got = format!("{}\n", serde_json::to_string(&doc).unwrap());
            assert!(got == want, "{name}: typed report differs from its fixture");
            let back: AgreementReport = serde_json::from_str(&want).unwrap();
            assert_eq!(back, doc, "{name}: fixture reads back to the report");
            assert_eq!(
                format!("{}\n", agreement_report_with(&s, &opts, min)),
                want,
                "{name}: Value wrapper"
            );
        }
    }

    /// A run's `run` section serialises last, as `report["run"] = ...` appended it.
    #[test]
    fn run_info_is_the_last_key() {
        let (_, s, opts, min) = fixture_cases().swap_remove(0);
        let mut old = agreement_report_with(&s, &opts, min);
        old["run"] = json!({"id": "r1", "items_run": 3, "items_skipped": 1, "binarized": true});
        let mut doc = agreement_report_doc_with(&s, &opts, min);
        doc.run = Some(RunInfo {
            id: Some("r1".into()),
            items_run: 3,
            items_skipped: 1,
            items_failed: None,
            binarized: true,
            simulated: None,
        });
        assert_eq!(serde_json::to_string(&doc).unwrap(), old.to_string());
        old["run"] = json!({"items_run": 3, "items_skipped": 1, "items_failed": 0, "binarized": false, "simulated": true});
        doc.run = Some(RunInfo {
            id: None,
            items_run: 3,
            items_skipped: 1,
            items_failed: Some(0),
            binarized: false,
            simulated: Some(true),
        });
        assert_eq!(serde_json::to_string(&doc).unwrap(), old.to_string());
        let back: AgreementReport = serde_json::from_str(&old.to_string()).unwrap();
        assert_eq!(back, doc);
    }
}
