//! Agreement statistics between judges and human labels: kappas, alpha, per-class scores and
//! bootstrap intervals. Pure math only; it must not touch IO, async, storage or serialisation.
//!
//! Every coefficient returns a [`Stat`]: a finite number, or the reason it is undefined. No
//! function here returns NaN or infinity, so callers can serialise `null` plus a reason string.
//!
//! Category labels are indices `0..k`. `k` is the declared number of categories; it matters for
//! statistics that count categories nobody used (PABAK, per-class scores). A label `>= k`
//! widens the category set to `max label + 1` instead of being dropped, so that no rating is
//! silently lost.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution};

/// Why a coefficient is undefined. Never NaN/inf: callers serialise `null` + reason.
/// Its snake_case names are the `reason` of the agreement report's estimates.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[schema(as = UndefinedReason)]
pub enum Undefined {
    /// Fewer items than the statistic needs (usually two).
    TooFewItems,
    /// Every rating fell in one category, so chance agreement is 1 and the ratio is 0/0.
    OneCategory,
    /// Interval data with a single distinct value: expected disagreement is 0.
    ZeroVariance,
    /// Items were rated by different numbers of raters where the statistic needs equal counts.
    UnequalRaters,
    /// Nothing could be paired: mismatched or empty label lists, fewer than two raters, or
    /// (for the binary indices) labels that are not 0/1.
    NoPairs,
    /// A formula gave an infinite or NaN value (the report's guard; the functions
    /// here return one of the reasons above instead).
    NotFinite,
}

impl Undefined {
    /// The stable wire spelling of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooFewItems => "too_few_items",
            Self::OneCategory => "one_category",
            Self::ZeroVariance => "zero_variance",
            Self::UnequalRaters => "unequal_raters",
            Self::NoPairs => "no_pairs",
            Self::NotFinite => "not_finite",
        }
    }
}

/// A coefficient, or why it is undefined.
pub type Stat = Result<f64, Undefined>;

/// Counts and rates are far below 2^52, so converting them to `f64` is exact.
fn f(x: impl Into<u64>) -> f64 {
    #[expect(
        clippy::cast_precision_loss,
        reason = "counts in agreement data are far below 2^52"
    )]
    let v = x.into() as f64;
    v
}

fn fu(x: usize) -> f64 {
    f(x as u64)
}

/// A two-rater contingency table over the effective category set, borrowed from the caller so
/// that a bootstrap can refill one buffer per resample.
struct Table<'a> {
    /// `cells[i * k + j]` = items rater A put in `i` and rater B put in `j`.
    cells: &'a [u64],
    k: usize,
    n: u64,
}

impl<'a> Table<'a> {
    /// Needs a `k x k` table with at least one item (else NoPairs).
    fn new(cells: &'a [u64], k: usize) -> Result<Self, Undefined> {
        if k.checked_mul(k) != Some(cells.len()) {
            return Err(Undefined::NoPairs);
        }
        let n = cells.iter().sum();
        if n == 0 {
            return Err(Undefined::NoPairs);
        }
        Ok(Self { cells, k, n })
    }

    fn cell(&self, i: usize, j: usize) -> u64 {
        self.cells[i * self.k + j]
    }

    fn rows(&self) -> Vec<u64> {
        (0..self.k)
            .map(|i| (0..self.k).map(|j| self.cell(i, j)).sum())
            .collect()
    }

    fn cols(&self) -> Vec<u64> {
        (0..self.k)
            .map(|j| (0..self.k).map(|i| self.cell(i, j)).sum())
            .collect()
    }

    fn agreements(&self) -> u64 {
        (0..self.k).map(|i| self.cell(i, i)).sum()
    }

    fn observed(&self) -> f64 {
        f(self.agreements()) / f(self.n)
    }

    /// Chance agreement is exactly 1 only when both raters used one and the same category;
    /// checking counts avoids comparing a float against 1.
    fn one_shared_category(&self) -> bool {
        (0..self.k).any(|i| self.cell(i, i) == self.n)
    }
}

fn effective_k(a: &[usize], b: &[usize], k: usize) -> usize {
    let top = a.iter().chain(b).copied().max().map_or(0, |m| m + 1);
    k.max(top)
}

/// The two-rater contingency table of aligned label lists, row-major over the effective
/// category set, and that set's size: `(cells, k)` with `cells[i * k + j]` counting items rater
/// A put in `i` and rater B in `j`. Every two-rater coefficient below depends on the labels only
/// through this table, which is what lets a bootstrap resample tables instead of items.
/// Mismatched lengths are NoPairs; empty lists give an all-zero table.
pub fn contingency_table(
    a: &[usize],
    b: &[usize],
    k: usize,
) -> Result<(Vec<u64>, usize), Undefined> {
    if a.len() != b.len() {
        return Err(Undefined::NoPairs);
    }
    let k = effective_k(a, b, k);
    let mut cells = vec![0u64; k * k];
    for (&i, &j) in a.iter().zip(b) {
        cells[i * k + j] += 1;
    }
    Ok((cells, k))
}

/// Fraction of items on which the two raters agree. Needs at least one item.
pub fn percent_agreement(a: &[usize], b: &[usize]) -> Stat {
    if a.len() != b.len() || a.is_empty() {
        return Err(Undefined::NoPairs);
    }
    // The diagonal of the table, counted without building it (labels need not be small here).
    let agree = a.iter().zip(b).filter(|(x, y)| x == y).count();
    Ok(fu(agree) / fu(a.len()))
}

/// [`percent_agreement`] from a [`contingency_table`].
pub fn percent_agreement_from_table(cells: &[u64], k: usize) -> Stat {
    let t = Table::new(cells, k)?;
    Ok(t.observed())
}

/// The shared preconditions of the chance-corrected two-rater coefficients.
fn chance_corrected(cells: &[u64], k: usize) -> Result<Table<'_>, Undefined> {
    let t = Table::new(cells, k)?;
    if t.n < 2 {
        return Err(Undefined::TooFewItems);
    }
    if t.one_shared_category() {
        return Err(Undefined::OneCategory);
    }
    Ok(t)
}

/// Cohen's kappa: `(po - pe) / (1 - pe)` with chance agreement from each rater's own marginals.
pub fn cohen_kappa(a: &[usize], b: &[usize], k: usize) -> Stat {
    let (cells, k) = contingency_table(a, b, k)?;
    cohen_kappa_from_table(&cells, k)
}

/// [`cohen_kappa`] from a [`contingency_table`].
pub fn cohen_kappa_from_table(cells: &[u64], k: usize) -> Stat {
    let t = chance_corrected(cells, k)?;
    let n = f(t.n);
    let pe: f64 = t
        .rows()
        .iter()
        .zip(t.cols())
        .map(|(&r, c)| f(r) * f(c) / (n * n))
        .sum();
    Ok((t.observed() - pe) / (1.0 - pe))
}

/// Disagreement weights for [`weighted_kappa`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    /// `|i - j| / (k - 1)`.
    Linear,
    /// `((i - j) / (k - 1))^2`.
    Quadratic,
}

/// Weighted kappa `1 - sum(w * observed) / sum(w * expected)`, as sklearn's
/// `cohen_kappa_score(weights=...)`. The `1 / (k - 1)` scaling cancels in the ratio; it is kept
/// so the weights match the textbook definition.
pub fn weighted_kappa(a: &[usize], b: &[usize], k: usize, w: Weights) -> Stat {
    let (cells, k) = contingency_table(a, b, k)?;
    weighted_kappa_from_table(&cells, k, w)
}

/// [`weighted_kappa`] from a [`contingency_table`].
pub fn weighted_kappa_from_table(cells: &[u64], k: usize, w: Weights) -> Stat {
    let t = chance_corrected(cells, k)?;
    // `chance_corrected` rejects a single shared category, so at least two categories
    // exist and `k - 1 >= 1`.
    let span = fu(t.k - 1);
    let weight = |i: usize, j: usize| {
        let d = fu(i.abs_diff(j)) / span;
        match w {
            Weights::Linear => d,
            Weights::Quadratic => d * d,
        }
    };
    let (rows, cols, n) = (t.rows(), t.cols(), f(t.n));
    let mut observed = 0.0;
    let mut expected = 0.0;
    for (i, &r) in rows.iter().enumerate() {
        for (j, &c) in cols.iter().enumerate() {
            observed += weight(i, j) * f(t.cell(i, j));
            expected += weight(i, j) * f(r) * f(c) / n;
        }
    }
    // Expected weighted disagreement is zero only when both raters used one shared category,
    // which was rejected above; the guard keeps a float 0/0 impossible regardless.
    if expected <= 0.0 {
        return Err(Undefined::OneCategory);
    }
    Ok(1.0 - observed / expected)
}

/// Scott's pi: like Cohen's kappa but chance agreement comes from the pooled marginals of both
/// raters, so it assumes the raters share one distribution.
pub fn scotts_pi(a: &[usize], b: &[usize], k: usize) -> Stat {
    let (cells, k) = contingency_table(a, b, k)?;
    scotts_pi_from_table(&cells, k)
}

/// [`scotts_pi`] from a [`contingency_table`].
pub fn scotts_pi_from_table(cells: &[u64], k: usize) -> Stat {
    let t = chance_corrected(cells, k)?;
    let total = 2.0 * f(t.n);
    let pe: f64 = t
        .rows()
        .iter()
        .zip(t.cols())
        .map(|(&r, c)| {
            let p = (f(r) + f(c)) / total;
            p * p
        })
        .sum();
    Ok((t.observed() - pe) / (1.0 - pe))
}

/// Prevalence- and bias-adjusted kappa `(k * po - 1) / (k - 1)`: kappa with chance agreement
/// fixed at `1/k`. Needs at least one item and at least two categories.
pub fn pabak(a: &[usize], b: &[usize], k: usize) -> Stat {
    let po = percent_agreement(a, b)?;
    let k = effective_k(a, b, k);
    if k < 2 {
        return Err(Undefined::OneCategory);
    }
    let k = fu(k);
    Ok((k * po - 1.0) / (k - 1.0))
}

/// The 2x2 table `(both 1, a=1 b=0, a=0 b=1, both 0, n)` in Byrt et al.'s `a, b, c, d` order.
fn binary_table(a: &[usize], b: &[usize]) -> Result<[f64; 5], Undefined> {
    if a.len() != b.len() || a.is_empty() || a.iter().chain(b).any(|&x| x > 1) {
        return Err(Undefined::NoPairs);
    }
    let count = |x: usize, y: usize| a.iter().zip(b).filter(|p| *p == (&x, &y)).count();
    Ok([
        fu(count(1, 1)),
        fu(count(1, 0)),
        fu(count(0, 1)),
        fu(count(0, 0)),
        fu(a.len()),
    ])
}

/// Binary only (k == 2): prevalence index `|a - d| / n` from the 2x2 table, where `a` counts
/// items both raters called 1 and `d` items both called 0.
pub fn prevalence_index(a: &[usize], b: &[usize]) -> Stat {
    let [yy, _, _, nn, n] = binary_table(a, b)?;
    Ok((yy - nn).abs() / n)
}

/// Binary only (k == 2): bias index `|b - c| / n` from the 2x2 table, where `b` and `c` count
/// the two kinds of disagreement.
pub fn bias_index(a: &[usize], b: &[usize]) -> Stat {
    let [_, yn, ny, _, n] = binary_table(a, b)?;
    Ok((yn - ny).abs() / n)
}

/// Confusion counts indexed `[truth][pred]`. Pairs are zipped, so callers validate equal
/// lengths; labels `>= k` widen the matrix rather than being dropped.
pub fn confusion(truth: &[usize], pred: &[usize], k: usize) -> Vec<Vec<u64>> {
    let n = truth.len().min(pred.len());
    let (truth, pred) = (&truth[..n], &pred[..n]);
    let k = effective_k(truth, pred, k);
    let mut m = vec![vec![0u64; k]; k];
    for (&t, &p) in truth.iter().zip(pred) {
        m[t][p] += 1;
    }
    m
}

/// One class's precision, recall and F1, with `None` where the ratio is 0/0.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassScore {
    pub class: usize,
    /// `None` when nothing was predicted as this class.
    pub precision: Option<f64>,
    /// `None` when the class never occurs in the truth (`support == 0`).
    pub recall: Option<f64>,
    /// `2tp / (2tp + fp + fn)`, which equals the harmonic mean of precision and recall when both
    /// are defined and is 0 (not undefined) when the class occurs but is never predicted
    /// correctly. `None` only when the class is absent from both truth and predictions.
    pub f1: Option<f64>,
    /// How many truth labels are this class.
    pub support: u64,
}

/// Per-class scores for every class in the effective category set, in class order.
pub fn class_scores(truth: &[usize], pred: &[usize], k: usize) -> Vec<ClassScore> {
    let n = truth.len().min(pred.len());
    let (truth, pred) = (&truth[..n], &pred[..n]);
    // Lengths are equal after the cut, so the table always exists.
    contingency_table(truth, pred, k)
        .map(|(cells, k)| class_scores_from_table(&cells, k))
        .unwrap_or_default()
}

/// [`class_scores`] from a [`contingency_table`] with truth as rows and predictions as
/// columns. A table that is not `k x k` gives no classes.
pub fn class_scores_from_table(cells: &[u64], k: usize) -> Vec<ClassScore> {
    if k.checked_mul(k) != Some(cells.len()) {
        return Vec::new();
    }
    let cell = |i: usize, j: usize| cells[i * k + j];
    let ratio = |num: u64, den: u64| (den > 0).then(|| f(num) / f(den));
    (0..k)
        .map(|c| {
            let tp = cell(c, c);
            let support: u64 = (0..k).map(|j| cell(c, j)).sum();
            let predicted: u64 = (0..k).map(|i| cell(i, c)).sum();
            let (fp, fn_) = (predicted - tp, support - tp);
            ClassScore {
                class: c,
                precision: ratio(tp, predicted),
                recall: ratio(tp, support),
                f1: ratio(2 * tp, 2 * tp + fp + fn_),
                support,
            }
        })
        .collect()
}

/// Macro-averaged F1: the unweighted mean of F1 over classes with `support > 0`.
///
/// Classes absent from the truth are left out (sklearn would also count classes that were only
/// predicted), because a label set in which a class never occurs says nothing about how well it
/// is recognised, and the HealthBench meta-evaluation macro-averages exactly the classes being
/// graded. Every class with support has a defined F1 (see [`ClassScore::f1`]), so a class that
/// occurs but is never predicted counts as 0 rather than being skipped.
pub fn macro_f1(scores: &[ClassScore]) -> Stat {
    let f1s: Vec<f64> = scores
        .iter()
        .filter(|s| s.support > 0)
        .filter_map(|s| s.f1)
        .collect();
    if f1s.is_empty() {
        return Err(Undefined::NoPairs);
    }
    Ok(f1s.iter().sum::<f64>() / fu(f1s.len()))
}

/// Fleiss' kappa; `counts[i][j]` = raters who put item i in category j. Every item must have the
/// same rater count (else UnequalRaters) >= 2 (else NoPairs), and there must be >= 2 items.
/// Rows may have different lengths; missing trailing categories count as 0.
pub fn fleiss_kappa(counts: &[Vec<u64>]) -> Stat {
    fleiss_kappa_from_patterns(counts, &vec![1; counts.len()])
}

/// [`fleiss_kappa`] over distinct count rows: `weights[p]` items have the row `rows[p]`. Rows
/// with weight 0 are absent; with every weight 1 this is exactly the per-item computation, in
/// the same order. Lists of different lengths are NoPairs.
pub fn fleiss_kappa_from_patterns(rows: &[Vec<u64>], weights: &[u64]) -> Stat {
    if rows.len() != weights.len() {
        return Err(Undefined::NoPairs);
    }
    let present = || rows.iter().zip(weights).filter(|(_, w)| **w > 0);
    let items: u64 = weights.iter().sum();
    let Some((first, _)) = present().next().filter(|_| items >= 2) else {
        return Err(Undefined::TooFewItems);
    };
    let raters: u64 = first.iter().sum();
    if present().any(|(row, _)| row.iter().sum::<u64>() != raters) {
        return Err(Undefined::UnequalRaters);
    }
    if raters < 2 {
        return Err(Undefined::NoPairs);
    }
    let k = present().map(|(row, _)| row.len()).max().unwrap_or(0);
    let mut totals = vec![0u64; k];
    for (row, &w) in present() {
        for (t, &c) in totals.iter_mut().zip(row) {
            *t += w * c;
        }
    }
    let all = f(raters) * f(items);
    // Checking the counts keeps `1 - pe` from being a float that is merely close to 0.
    if totals.iter().any(|&t| f(t) == all) {
        return Err(Undefined::OneCategory);
    }
    let r = f(raters);
    let p_bar = present()
        .map(|(row, &w)| {
            f(w) * (row.iter().map(|&c| f(c) * (f(c) - 1.0)).sum::<f64>() / (r * (r - 1.0)))
        })
        .sum::<f64>()
        / f(items);
    let pe: f64 = totals.iter().map(|&t| (f(t) / all) * (f(t) / all)).sum();
    Ok((p_bar - pe) / (1.0 - pe))
}

/// Measurement level for [`krippendorff_alpha`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Nominal,
    Ordinal,
    Interval,
}

/// Krippendorff's alpha; `units[i][r]` = rater r's value for item i, None = missing. Items with
/// < 2 values are not pairable and are skipped. Nominal compares values for equality; Ordinal
/// uses the rank-based metric (cumulative frequencies of the values present, as in Krippendorff
/// 2011); Interval uses squared difference. Non-finite values are treated as missing.
///
/// Computed as `1 - (n - 1) * sum(o_ck * d_ck) / sum(n_c * n_k * d_ck)` over the coincidence
/// matrix `o`, where `n` is the number of pairable values. Undefined with no pairable item
/// (NoPairs) or when all pairable values are equal (OneCategory, or ZeroVariance for interval).
pub fn krippendorff_alpha(units: &[Vec<Option<f64>>], level: Level) -> Stat {
    let units: Vec<Vec<f64>> = units
        .iter()
        .map(|u| {
            let mut v: Vec<f64> = u
                .iter()
                .flatten()
                .copied()
                .filter(|x| x.is_finite())
                .collect();
            v.sort_by(f64::total_cmp);
            v
        })
        .filter(|u| u.len() >= 2)
        .collect();
    if units.is_empty() {
        return Err(Undefined::NoPairs);
    }
    let mut values: Vec<f64> = units.iter().flatten().copied().collect();
    values.sort_by(f64::total_cmp);
    // Both sums are scaled by the same factor, so only their ratio is meaningful.
    let (observed, expected) = match level {
        Level::Interval => interval_sums(&units, &values),
        Level::Nominal | Level::Ordinal => categorical_sums(&units, &values, level),
    };
    if expected <= 0.0 {
        return Err(match level {
            Level::Interval => Undefined::ZeroVariance,
            Level::Nominal | Level::Ordinal => Undefined::OneCategory,
        });
    }
    Ok(1.0 - (fu(values.len()) - 1.0) * observed / expected)
}

/// Sum of squared differences over all ordered pairs of `xs`, as `2 m * sum((x - mean)^2)`;
/// centring first avoids the cancellation of the `sum(x^2) - (sum x)^2` form.
fn pairwise_squares(xs: &[f64]) -> f64 {
    let m = fu(xs.len());
    let mean = xs.iter().sum::<f64>() / m;
    2.0 * m * xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>()
}

/// Interval sums without materialising a value-by-value matrix, since interval data may have
/// as many distinct values as ratings.
fn interval_sums(units: &[Vec<f64>], values: &[f64]) -> (f64, f64) {
    let observed = units
        .iter()
        .map(|u| pairwise_squares(u) / (fu(u.len()) - 1.0))
        .sum();
    (observed, pairwise_squares(values))
}

/// Nominal and ordinal sums over the coincidence matrix of the distinct values present.
fn categorical_sums(units: &[Vec<f64>], values: &[f64], level: Level) -> (f64, f64) {
    let mut distinct = values.to_vec();
    distinct.dedup_by(|x, y| x.total_cmp(y).is_eq());
    let v = distinct.len();
    // Every value came from `values`, so the search always succeeds; the default only keeps
    // the lookup total.
    let index = |x: f64| {
        distinct
            .binary_search_by(|d| d.total_cmp(&x))
            .unwrap_or_default()
    };
    let mut coincidence = vec![0.0f64; v * v];
    for u in units {
        let mut counts = vec![0u64; v];
        for &x in u {
            counts[index(x)] += 1;
        }
        let present: Vec<usize> = (0..v).filter(|&c| counts[c] > 0).collect();
        let scale = fu(u.len()) - 1.0;
        for &c in &present {
            for &k in &present {
                let pairs = if c == k {
                    f(counts[c]) * (f(counts[c]) - 1.0)
                } else {
                    f(counts[c]) * f(counts[k])
                };
                coincidence[c * v + k] += pairs / scale;
            }
        }
    }
    let (observed, expected, _) = coincidence_sums(&coincidence, v, level);
    (observed, expected)
}

/// Observed and expected disagreement of a v x v coincidence matrix, and its total
/// (the number of pairable values), for nominal or ordinal distance.
fn coincidence_sums(coincidence: &[f64], v: usize, level: Level) -> (f64, f64, f64) {
    let marginals: Vec<f64> = (0..v)
        .map(|c| (0..v).map(|k| coincidence[c * v + k]).sum())
        .collect();
    // Ordinal distance between ranks c < k: (sum of n_g for c <= g <= k - (n_c + n_k) / 2)^2.
    let mut prefix = vec![0.0f64; v + 1];
    for c in 0..v {
        prefix[c + 1] = prefix[c] + marginals[c];
    }
    let distance = |c: usize, k: usize| -> f64 {
        if c == k {
            return 0.0;
        }
        match level {
            Level::Ordinal => {
                let (lo, hi) = (c.min(k), c.max(k));
                let d = prefix[hi + 1] - prefix[lo] - (marginals[lo] + marginals[hi]) / 2.0;
                d * d
            }
            Level::Nominal | Level::Interval => 1.0,
        }
    };
    let mut observed = 0.0;
    let mut expected = 0.0;
    for c in 0..v {
        for k in 0..v {
            let d = distance(c, k);
            observed += coincidence[c * v + k] * d;
            expected += marginals[c] * marginals[k] * d;
        }
    }
    (observed, expected, marginals.iter().sum())
}

/// Groups items by a key: the distinct keys in first-seen order, and how many items have each.
/// The counts are what [`bootstrap_ci_counts`] resamples.
pub fn patterns<K: Ord + Clone>(keys: impl IntoIterator<Item = K>) -> (Vec<K>, Vec<u64>) {
    let mut index = std::collections::BTreeMap::new();
    let mut distinct = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    for key in keys {
        let p = *index.entry(key.clone()).or_insert_with(|| {
            distinct.push(key);
            counts.push(0);
            counts.len() - 1
        });
        counts[p] += 1;
    }
    (distinct, counts)
}

/// Percentile bootstrap CI: resample item indices with replacement `resamples` times (seeded
/// ChaCha8), evaluate `stat` on each resample, drop undefined resamples, and return the
/// `(1-c)/2` and `1-(1-c)/2` quantiles (linear interpolation between order statistics, as numpy's
/// default). `None` when fewer than half the resamples are defined, when there are no items or
/// resamples, or when `confidence` is not in (0, 1).
pub fn bootstrap_ci(
    n_items: usize,
    resamples: usize,
    seed: u64,
    confidence: f64,
    stat: impl Fn(&[usize]) -> Stat,
) -> Option<(f64, f64)> {
    if n_items == 0 || resamples == 0 || !valid_confidence(confidence) {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut sample = vec![0usize; n_items];
    let mut defined = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for slot in &mut sample {
            *slot = below(&mut rng, n_items);
        }
        // A statistic that leaks a non-finite value is treated as undefined so it cannot
        // poison the sort.
        match stat(&sample) {
            Ok(x) if x.is_finite() => defined.push(x),
            _ => {}
        }
    }
    percentile_interval(defined, resamples, confidence)
}

/// The same percentile bootstrap as [`bootstrap_ci`] for a statistic that depends on the items
/// only through how many of them show each of a few distinct patterns (the cells of a
/// contingency table, the distinct count rows of Fleiss' kappa, the distinct units of alpha).
///
/// `counts[p]` is how many of the `n` items show pattern `p`. Resampling `n` items with
/// replacement and counting patterns gives counts distributed exactly as
/// `Multinomial(n, counts / n)`, so each resample draws that multinomial directly, as a chain of
/// conditional binomials: O(patterns) per resample instead of O(n). `stat` gets the resampled
/// counts, aligned with `counts`. When patterns are many relative to items (more than
/// `n / INDEX_DRAWS_PER_BINOMIAL`: small groups, or interval data with continuous values) the
/// binomials would cost more than they save, and the resample draws `n` item indices and counts
/// their patterns instead; the law is the same.
pub fn bootstrap_ci_counts(
    counts: &[u64],
    resamples: usize,
    seed: u64,
    confidence: f64,
    mut stat: impl FnMut(&[u64]) -> Stat,
) -> Option<(f64, f64)> {
    let n: u64 = counts.iter().sum();
    if n == 0 || resamples == 0 || !valid_confidence(confidence) {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut draw = vec![0u64; counts.len()];
    let mut defined = Vec::with_capacity(resamples);
    let sampler = PatternSampler::new(counts, n);
    for _ in 0..resamples {
        sampler.draw(&mut rng, &mut draw);
        match stat(&draw) {
            Ok(x) if x.is_finite() => defined.push(x),
            _ => {}
        }
    }
    percentile_interval(defined, resamples, confidence)
}

/// How many item-index draws cost as much as one binomial draw: measured ~6 ns for an index
/// draw and its tally against ~85 ns for a `Binomial` (setup and sample) on the 2-core box, so
/// binomials pay off once a resample has about 14 items per pattern or more.
const INDEX_DRAWS_PER_BINOMIAL: u64 = 16;

/// Draws resampled pattern counts for [`bootstrap_ci_counts`].
enum PatternSampler<'a> {
    /// Conditional binomials: pattern `p` gets `Binomial(left, counts[p] / tails[p])` of the
    /// `left` draws not yet given to earlier patterns, where `tails[p]` sums `counts[p..]`.
    Binomials {
        counts: &'a [u64],
        tails: Vec<u64>,
        n: u64,
    },
    /// Item indices: item `i` (in pattern order) has pattern `pattern_of[i]`.
    Indices { pattern_of: Vec<usize> },
}

impl<'a> PatternSampler<'a> {
    fn new(counts: &'a [u64], n: u64) -> Self {
        let patterns = counts.iter().filter(|&&c| c > 0).count() as u64;
        if patterns.saturating_mul(INDEX_DRAWS_PER_BINOMIAL) > n {
            let pattern_of = counts
                .iter()
                .enumerate()
                .flat_map(|(p, &c)| std::iter::repeat_n(p, usize::try_from(c).unwrap_or(0)))
                .collect();
            return Self::Indices { pattern_of };
        }
        let mut tails = vec![0u64; counts.len()];
        let mut acc = 0u64;
        for (t, &c) in tails.iter_mut().zip(counts).rev() {
            acc += c;
            *t = acc;
        }
        Self::Binomials { counts, tails, n }
    }

    fn draw(&self, rng: &mut ChaCha8Rng, out: &mut [u64]) {
        out.fill(0);
        match self {
            Self::Binomials { counts, tails, n } => {
                let mut left = *n;
                for ((slot, &c), &tail) in out.iter_mut().zip(*counts).zip(tails) {
                    if left == 0 {
                        break;
                    }
                    if c == 0 {
                        continue;
                    }
                    if c == tail {
                        // The last pattern with items takes every remaining draw.
                        *slot = left;
                        left = 0;
                        continue;
                    }
                    // 0 < c < tail, so the probability lies in (0, 1) and `new` cannot fail;
                    // the fallback of no draws keeps the function total.
                    let x = Binomial::new(left, f(c) / f(tail)).map_or(0, |b| b.sample(rng));
                    let x = x.min(left);
                    *slot = x;
                    left -= x;
                }
            }
            Self::Indices { pattern_of } => {
                for _ in 0..pattern_of.len() {
                    if let Some(&p) = pattern_of.get(below(rng, pattern_of.len())) {
                        out[p] += 1;
                    }
                }
            }
        }
    }
}

/// A uniform draw from `0..n`. Multiply-shift maps a 64-bit draw onto `0..n` (Lemire); its bias
/// is below n / 2^64, far under bootstrap noise, and it skips `random_range`'s rejection loop,
/// which dominated large reports.
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    let hi = (u128::from(rng.next_u64()) * (n as u128)) >> 64;
    usize::try_from(hi).unwrap_or(0)
}

fn valid_confidence(confidence: f64) -> bool {
    confidence > 0.0 && confidence < 1.0
}

/// The percentile interval of the defined resample values, or `None` when fewer than half of
/// the `resamples` were defined.
fn percentile_interval(
    mut defined: Vec<f64>,
    resamples: usize,
    confidence: f64,
) -> Option<(f64, f64)> {
    if defined.is_empty() || 2 * defined.len() < resamples {
        return None;
    }
    defined.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    Some((quantile(&defined, tail), quantile(&defined, 1.0 - tail)))
}

/// Linear-interpolation quantile of sorted, non-empty `xs`.
fn quantile(xs: &[f64], q: f64) -> f64 {
    let h = q * (fu(xs.len()) - 1.0);
    let lo = h.floor();
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "h is in [0, len - 1], so its floor is a valid index"
    )]
    let i = lo as usize;
    match (xs.get(i), xs.get(i + 1)) {
        (Some(&a), Some(&b)) => a + (h - lo) * (b - a),
        (Some(&a), None) => a,
        _ => xs.last().copied().unwrap_or(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use Undefined::{NoPairs, OneCategory, TooFewItems, UnequalRaters, ZeroVariance};

    /// Compares a statistic with its expected value: exact for reasons, 1e-9 for numbers.
    fn check(name: &str, got: Stat, want: Stat) {
        match (got, want) {
            (Ok(g), Ok(w)) => assert!((g - w).abs() < 1e-9, "{name}: got {g}, want {w}"),
            (g, w) => assert_eq!(g, w, "{name}"),
        }
    }

    /// Rounds to three decimals, the precision the published examples report.
    fn check3(name: &str, got: Stat, want: f64) {
        match got {
            Ok(g) => assert!((g - want).abs() < 5e-4, "{name}: got {g}, want ~{want}"),
            Err(e) => panic!("{name}: undefined ({})", e.as_str()),
        }
    }

    /// Expands a 2x2 table (both 1, a=1 b=0, a=0 b=1, both 0) into two label lists.
    fn binary(yy: usize, yn: usize, ny: usize, nn: usize) -> (Vec<usize>, Vec<usize>) {
        let mut a = Vec::new();
        let mut b = Vec::new();
        for (count, x, y) in [(yy, 1, 1), (yn, 1, 0), (ny, 0, 1), (nn, 0, 0)] {
            a.extend(std::iter::repeat_n(x, count));
            b.extend(std::iter::repeat_n(y, count));
        }
        (a, b)
    }

    #[test]
    fn reasons_have_stable_spellings() {
        let table = [
            (TooFewItems, "too_few_items"),
            (OneCategory, "one_category"),
            (ZeroVariance, "zero_variance"),
            (UnequalRaters, "unequal_raters"),
            (NoPairs, "no_pairs"),
            (Undefined::NotFinite, "not_finite"),
        ];
        for (reason, text) in table {
            assert_eq!(reason.as_str(), text);
            assert_eq!(serde_json::to_value(reason).unwrap(), text);
        }
    }

    #[test]
    fn percent_agreement_cases() {
        let table: [(&str, &[usize], &[usize], Stat); 5] = [
            ("all agree", &[0, 1, 2], &[0, 1, 2], Ok(1.0)),
            ("half", &[0, 1, 0, 1], &[0, 0, 0, 0], Ok(0.5)),
            ("single item", &[3], &[3], Ok(1.0)),
            ("empty", &[], &[], Err(NoPairs)),
            ("length mismatch", &[0, 1], &[0], Err(NoPairs)),
        ];
        for (name, a, b, want) in table {
            check(name, percent_agreement(a, b), want);
        }
    }

    #[test]
    fn cohen_kappa_cases() {
        // Wikipedia's 2x2 example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no out of 50.
        // po = 35/50 = 0.7; A says yes 25/50, B says yes 30/50, so
        // pe = 0.5 * 0.6 + 0.5 * 0.4 = 0.5 and kappa = (0.7 - 0.5) / 0.5 = 0.4.
        let (wa, wb) = binary(20, 5, 10, 15);
        check("2x2 worked example", cohen_kappa(&wa, &wb, 2), Ok(0.4));
        let table: [(&str, &[usize], &[usize], usize, Stat); 9] = [
            ("identical", &[0, 1, 2, 1], &[0, 1, 2, 1], 3, Ok(1.0)),
            // po = 0, pe = (1/2)(1/2) * 2 = 0.5, kappa = -1.
            ("perfect swap", &[0, 1], &[1, 0], 2, Ok(-1.0)),
            // Rater A constant 0, B constant 1: pe = 0, po = 0, kappa = 0.
            ("constant but different", &[0, 0], &[1, 1], 2, Ok(0.0)),
            // Labels beyond k widen the category set; unused categories do not change kappa.
            ("label beyond k", &[0, 1, 2, 1], &[0, 1, 2, 1], 2, Ok(1.0)),
            (
                "unused categories",
                &[0, 1, 0],
                &[0, 1, 1],
                5,
                cohen_kappa(&[0, 1, 0], &[0, 1, 1], 2),
            ),
            (
                "one shared category",
                &[1, 1, 1],
                &[1, 1, 1],
                3,
                Err(OneCategory),
            ),
            ("one item", &[0], &[1], 2, Err(TooFewItems)),
            ("empty", &[], &[], 2, Err(NoPairs)),
            ("length mismatch", &[0, 1, 0], &[0, 1], 2, Err(NoPairs)),
        ];
        for (name, a, b, k, want) in table {
            check(name, cohen_kappa(a, b, k), want);
        }
    }

    #[test]
    fn weighted_kappa_cases() {
        // Hand-computed: a = [0, 1, 2], b = [0, 2, 2], k = 3. Rows [1, 1, 1], columns [1, 0, 2],
        // expected E_ij = r_i c_j / 3. Linear: sum(wO) = 0.5, sum(wE) = 2/3 + 1/2 + 1/3 = 1.5,
        // kappa = 1 - 0.5 / 1.5 = 2/3. Quadratic: sum(wO) = 0.25,
        // sum(wE) = 2/3 + 1/4 + 1/3 = 1.25, kappa = 1 - 0.25 / 1.25 = 0.8.
        let (a, b): (&[usize], &[usize]) = (&[0, 1, 2], &[0, 2, 2]);
        // Cross-checked with sklearn 1.9.1 `cohen_kappa_score`: unweighted 17/37, linear 32/57,
        // quadratic 2/3.
        let (sa, sb): (&[usize], &[usize]) = (
            &[0, 1, 2, 2, 1, 0, 3, 1, 2, 0],
            &[0, 2, 2, 1, 1, 0, 3, 3, 2, 1],
        );
        check(
            "sklearn unweighted",
            cohen_kappa(sa, sb, 4),
            Ok(17.0 / 37.0),
        );
        let table: [(&str, &[usize], &[usize], usize, Weights, Stat); 8] = [
            ("hand linear", a, b, 3, Weights::Linear, Ok(2.0 / 3.0)),
            ("hand quadratic", a, b, 3, Weights::Quadratic, Ok(0.8)),
            (
                "sklearn linear",
                sa,
                sb,
                4,
                Weights::Linear,
                Ok(32.0 / 57.0),
            ),
            (
                "sklearn quadratic",
                sa,
                sb,
                4,
                Weights::Quadratic,
                Ok(2.0 / 3.0),
            ),
            (
                "identical",
                &[0, 2, 1],
                &[0, 2, 1],
                3,
                Weights::Linear,
                Ok(1.0),
            ),
            (
                "one category",
                &[2, 2],
                &[2, 2],
                3,
                Weights::Quadratic,
                Err(OneCategory),
            ),
            ("one item", &[0], &[1], 3, Weights::Linear, Err(TooFewItems)),
            ("mismatch", &[0], &[], 3, Weights::Linear, Err(NoPairs)),
        ];
        for (name, a, b, k, w, want) in table {
            check(name, weighted_kappa(a, b, k, w), want);
        }
    }

    #[test]
    fn scotts_pi_cases() {
        // Wikipedia 2x2 example: pooled yes = (25 + 30) / 100 = 0.55, pe = 0.55^2 + 0.45^2
        // = 0.505, pi = (0.7 - 0.505) / 0.495 = 0.39393...
        let (wa, wb) = binary(20, 5, 10, 15);
        check(
            "2x2 worked example",
            scotts_pi(&wa, &wb, 2),
            Ok(0.195 / 0.495),
        );
        let table: [(&str, &[usize], &[usize], usize, Stat); 5] = [
            ("identical", &[0, 1], &[0, 1], 2, Ok(1.0)),
            // Pooled p = (0.5, 0.5), pe = 0.5, po = 0: pi = -1.
            ("constant but different", &[0, 0], &[1, 1], 2, Ok(-1.0)),
            ("one category", &[0, 0], &[0, 0], 2, Err(OneCategory)),
            ("one item", &[0], &[0], 2, Err(TooFewItems)),
            ("empty", &[], &[], 2, Err(NoPairs)),
        ];
        for (name, a, b, k, want) in table {
            check(name, scotts_pi(a, b, k), want);
        }
    }

    #[test]
    fn pabak_cases() {
        let table: [(&str, &[usize], &[usize], usize, Stat); 6] = [
            // po = 0.7 on the 2x2 example: 2 * 0.7 - 1 = 0.4.
            (
                "binary po 0.7",
                &[1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
                &[1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
                2,
                Ok(0.4),
            ),
            // po = 0.5 with k = 3: (1.5 - 1) / 2 = 0.25.
            ("three categories", &[0, 1], &[0, 2], 3, Ok(0.25)),
            // PABAK stays defined where kappa is not.
            ("one category", &[0, 0], &[0, 0], 2, Ok(1.0)),
            ("k below 2", &[0, 0], &[0, 0], 1, Err(OneCategory)),
            ("empty", &[], &[], 2, Err(NoPairs)),
            ("mismatch", &[0], &[0, 1], 2, Err(NoPairs)),
        ];
        for (name, a, b, k, want) in table {
            check(name, pabak(a, b, k), want);
        }
    }

    #[test]
    fn binary_index_cases() {
        // Wikipedia 2x2 example: |20 - 15| / 50 = 0.1 and |5 - 10| / 50 = 0.1.
        let (wa, wb) = binary(20, 5, 10, 15);
        // 40 yes/yes, 0 yes/no, 9 no/yes, 1 no/no: prevalence 39/50, bias 9/50.
        let (sa, sb) = binary(40, 0, 9, 1);
        let table: [(&str, &[usize], &[usize], Stat, Stat); 6] = [
            ("worked example", &wa, &wb, Ok(0.1), Ok(0.1)),
            ("skewed", &sa, &sb, Ok(0.78), Ok(0.18)),
            ("all disagree one way", &[1, 1], &[0, 0], Ok(0.0), Ok(1.0)),
            ("not binary", &[0, 2], &[0, 1], Err(NoPairs), Err(NoPairs)),
            ("empty", &[], &[], Err(NoPairs), Err(NoPairs)),
            ("mismatch", &[0, 1], &[1], Err(NoPairs), Err(NoPairs)),
        ];
        for (name, a, b, prevalence, bias) in table {
            check(name, prevalence_index(a, b), prevalence);
            check(name, bias_index(a, b), bias);
        }
    }

    #[test]
    fn confusion_and_class_scores() {
        let (truth, pred): (&[usize], &[usize]) = (&[0, 0, 1, 1, 1, 2], &[0, 1, 1, 1, 0, 0]);
        assert_eq!(
            confusion(truth, pred, 3),
            vec![vec![1, 1, 0], vec![1, 2, 0], vec![1, 0, 0]]
        );
        // A label beyond k widens the matrix; unequal lengths are zipped.
        assert_eq!(
            confusion(&[0, 2], &[0, 2, 1], 2),
            vec![vec![1, 0, 0], vec![0; 3], vec![0, 0, 1]]
        );
        let scores = class_scores(truth, pred, 4);
        let want = [
            // Class 0: tp 1, predicted 3, support 2 -> p 1/3, r 1/2, f1 2/(2+2+1) = 0.4.
            ClassScore {
                class: 0,
                precision: Some(1.0 / 3.0),
                recall: Some(0.5),
                f1: Some(0.4),
                support: 2,
            },
            // Class 1: tp 2, predicted 3, support 3 -> p 2/3, r 2/3, f1 4/6.
            ClassScore {
                class: 1,
                precision: Some(2.0 / 3.0),
                recall: Some(2.0 / 3.0),
                f1: Some(2.0 / 3.0),
                support: 3,
            },
            // Class 2: occurs once, never predicted -> precision undefined, F1 0.
            ClassScore {
                class: 2,
                precision: None,
                recall: Some(0.0),
                f1: Some(0.0),
                support: 1,
            },
            // Class 3: absent from truth and predictions.
            ClassScore {
                class: 3,
                precision: None,
                recall: None,
                f1: None,
                support: 0,
            },
        ];
        assert_eq!(scores.len(), want.len());
        for (got, want) in scores.iter().zip(&want) {
            let name = format!("class {}", want.class);
            assert_eq!(
                (got.class, got.support),
                (want.class, want.support),
                "{name}"
            );
            for (g, w) in [
                (got.precision, want.precision),
                (got.recall, want.recall),
                (got.f1, want.f1),
            ] {
                check(&name, g.ok_or(NoPairs), w.ok_or(NoPairs));
            }
        }
        // Macro F1 over the three supported classes: (0.4 + 2/3 + 0) / 3.
        check("macro", macro_f1(&scores), Ok((0.4 + 2.0 / 3.0) / 3.0));
        // A class that is only predicted (support 0) is left out of the macro average.
        let only_predicted = class_scores(&[0, 0], &[0, 1], 2);
        check("only predicted", macro_f1(&only_predicted), Ok(2.0 / 3.0));
        check(
            "no items",
            macro_f1(&class_scores(&[], &[], 2)),
            Err(NoPairs),
        );
        check("empty scores", macro_f1(&[]), Err(NoPairs));
    }

    #[test]
    fn fleiss_kappa_cases() {
        // The 10 items x 5 categories x 14 raters table from Wikipedia's "Fleiss' kappa" worked
        // example: P-bar = 0.378, Pe = 0.213, kappa = 0.210.
        let worked: Vec<Vec<u64>> = vec![
            vec![0, 0, 0, 0, 14],
            vec![0, 2, 6, 4, 2],
            vec![0, 0, 3, 5, 6],
            vec![0, 3, 9, 2, 0],
            vec![2, 2, 8, 1, 1],
            vec![7, 7, 0, 0, 0],
            vec![3, 2, 6, 3, 0],
            vec![2, 5, 3, 2, 2],
            vec![6, 5, 2, 1, 0],
            vec![0, 2, 2, 3, 7],
        ];
        check3("Wikipedia worked example", fleiss_kappa(&worked), 0.210);
        // Hand-computed: two raters, items [2,0], [0,2], [1,1]. P_i = 1, 1, 0 -> P-bar 2/3;
        // p = (1/2, 1/2) -> Pe = 1/2; kappa = (2/3 - 1/2) / (1/2) = 1/3.
        let hand = vec![vec![2, 0], vec![0, 2], vec![1, 1]];
        let table: [(&str, Vec<Vec<u64>>, Stat); 7] = [
            ("hand", hand, Ok(1.0 / 3.0)),
            (
                "ragged rows pad with zero",
                vec![vec![2], vec![0, 2], vec![1, 1]],
                Ok(1.0 / 3.0),
            ),
            (
                "unequal raters",
                vec![vec![2, 0], vec![1, 2]],
                Err(UnequalRaters),
            ),
            ("one rater", vec![vec![1, 0], vec![0, 1]], Err(NoPairs)),
            (
                "one category",
                vec![vec![0, 3], vec![0, 3]],
                Err(OneCategory),
            ),
            ("one item", vec![vec![1, 1]], Err(TooFewItems)),
            ("no items", vec![], Err(TooFewItems)),
        ];
        for (name, counts, want) in table {
            check(name, fleiss_kappa(&counts), want);
        }
    }

    /// Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C: four
    /// observers, twelve units, with missing values. Published: nominal 0.743, ordinal 0.815,
    /// interval 0.849.
    fn krippendorff_example() -> Vec<Vec<Option<f64>>> {
        let rows: [[Option<f64>; 12]; 4] = [
            [
                Some(1.),
                Some(2.),
                Some(3.),
                Some(3.),
                Some(2.),
                Some(1.),
                Some(4.),
                Some(1.),
                Some(2.),
                None,
                None,
                None,
            ],
            [
                Some(1.),
                Some(2.),
                Some(3.),
                Some(3.),
                Some(2.),
                Some(2.),
                Some(4.),
                Some(1.),
                Some(2.),
                Some(5.),
                None,
                Some(3.),
            ],
            [
                None,
                Some(3.),
                Some(3.),
                Some(3.),
                Some(2.),
                Some(3.),
                Some(4.),
                Some(2.),
                Some(2.),
                Some(5.),
                Some(1.),
                None,
            ],
            [
                Some(1.),
                Some(2.),
                Some(3.),
                Some(3.),
                Some(2.),
                Some(4.),
                Some(4.),
                Some(1.),
                Some(2.),
                Some(5.),
                Some(1.),
                None,
            ],
        ];
        (0..12)
            .map(|u| rows.iter().map(|r| r[u]).collect())
            .collect()
    }

    #[test]
    fn krippendorff_published_example() {
        let units = krippendorff_example();
        check3("nominal", krippendorff_alpha(&units, Level::Nominal), 0.743);
        check3("ordinal", krippendorff_alpha(&units, Level::Ordinal), 0.815);
        check3(
            "interval",
            krippendorff_alpha(&units, Level::Interval),
            0.849,
        );
    }

    #[test]
    fn krippendorff_cases() {
        let u = |v: &[Option<f64>]| v.to_vec();
        // Hand-computed nominal: units (a, a), (a, b). Values n = 4, n_a = 3, n_b = 1.
        // Observed disagreeing ordered pairs: 2 (weight 1 each); expected: 2 * 3 * 1 = 6.
        // alpha = 1 - 3 * 2 / 6 = 0.
        let nominal = vec![u(&[Some(0.), Some(0.)]), u(&[Some(0.), Some(1.)])];
        // Hand-computed interval: units (0, 2), (2, 2), one value missing on a third unit.
        // Observed: 2 * 4 = 8; pooled values 0, 2, 2, 2 with mean 1.5: 2 * 4 * 3 = 24.
        // alpha = 1 - 3 * 8 / 24 = 0.
        let interval = vec![
            u(&[Some(0.), Some(2.)]),
            u(&[Some(2.), Some(2.)]),
            u(&[Some(7.), None]),
        ];
        // Three distinct ordered values, perfect agreement: alpha = 1 at every level.
        let perfect = vec![
            u(&[Some(1.), Some(1.)]),
            u(&[Some(2.), Some(2.)]),
            u(&[Some(5.), Some(5.)]),
        ];
        let constant = vec![
            u(&[Some(3.), Some(3.), None]),
            u(&[Some(3.), Some(3.), Some(3.)]),
        ];
        let unpairable = vec![u(&[Some(1.), None]), u(&[None, Some(2.)]), u(&[])];
        let with_nan = vec![
            u(&[Some(0.), Some(0.), Some(f64::NAN)]),
            u(&[Some(0.), Some(1.)]),
        ];
        let table: [(&str, &[Vec<Option<f64>>], Level, Stat); 10] = [
            ("hand nominal", &nominal, Level::Nominal, Ok(0.0)),
            ("hand interval", &interval, Level::Interval, Ok(0.0)),
            ("perfect nominal", &perfect, Level::Nominal, Ok(1.0)),
            ("perfect ordinal", &perfect, Level::Ordinal, Ok(1.0)),
            ("perfect interval", &perfect, Level::Interval, Ok(1.0)),
            (
                "constant nominal",
                &constant,
                Level::Nominal,
                Err(OneCategory),
            ),
            (
                "constant ordinal",
                &constant,
                Level::Ordinal,
                Err(OneCategory),
            ),
            (
                "constant interval",
                &constant,
                Level::Interval,
                Err(ZeroVariance),
            ),
            (
                "nothing pairable",
                &unpairable,
                Level::Nominal,
                Err(NoPairs),
            ),
            ("NaN is missing", &with_nan, Level::Nominal, Ok(0.0)),
        ];
        for (name, units, level, want) in table {
            check(name, krippendorff_alpha(units, level), want);
        }
    }

    #[test]
    fn bootstrap_cases() {
        let values = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let mean = |idx: &[usize]| -> Stat {
            Ok(idx.iter().map(|&i| values[i]).sum::<f64>() / idx.len() as f64)
        };
        let ci = bootstrap_ci(values.len(), 2000, 7, 0.95, mean);
        let Some((lo, hi)) = ci else {
            panic!("mean is always defined")
        };
        // The sample mean is 4.5 with standard error ~0.9, so the interval is about 4.5 +- 1.8.
        assert!(lo < 4.5 && 4.5 < hi && lo > 2.0 && hi < 7.0, "{lo} {hi}");
        // Same seed, same interval; the statistic is deterministic given the resample.
        assert_eq!(bootstrap_ci(values.len(), 2000, 7, 0.95, mean), ci);
        // A wider confidence level gives a wider interval.
        let Some((lo99, hi99)) = bootstrap_ci(values.len(), 2000, 7, 0.99, mean) else {
            panic!("defined")
        };
        assert!(lo99 <= lo && hi <= hi99);
        let constant = |_: &[usize]| -> Stat { Ok(0.25) };
        assert_eq!(bootstrap_ci(5, 100, 1, 0.95, constant), Some((0.25, 0.25)));
        let never = |_: &[usize]| -> Stat { Err(OneCategory) };
        let nan = |_: &[usize]| -> Stat { Ok(f64::NAN) };
        // Defined only when resample item 0 appears: P = 1 - (1/2)^2 = 0.75 for n = 2.
        let mostly = |idx: &[usize]| -> Stat {
            if idx.contains(&0) {
                Ok(1.0)
            } else {
                Err(NoPairs)
            }
        };
        // Defined only when every index is 0: P = 1/1024 for n = 10.
        let rarely = |idx: &[usize]| -> Stat {
            if idx.iter().all(|&i| i == 0) {
                Ok(1.0)
            } else {
                Err(NoPairs)
            }
        };
        assert_eq!(bootstrap_ci(2, 400, 3, 0.95, mostly), Some((1.0, 1.0)));
        assert_eq!(bootstrap_ci(10, 400, 3, 0.95, rarely), None);
        assert_eq!(bootstrap_ci(5, 100, 1, 0.95, never), None);
        assert_eq!(bootstrap_ci(5, 100, 1, 0.95, nan), None);
        assert_eq!(bootstrap_ci(0, 100, 1, 0.95, constant), None);
        assert_eq!(bootstrap_ci(5, 0, 1, 0.95, constant), None);
        assert_eq!(bootstrap_ci(5, 100, 1, 1.0, constant), None);
        assert_eq!(bootstrap_ci(5, 100, 1, f64::NAN, constant), None);
    }

    #[test]
    fn quantile_interpolates_between_order_statistics() {
        let xs = [1.0, 2.0, 4.0, 8.0];
        // numpy.quantile(xs, q) with the default linear method.
        for (q, want) in [(0.0, 1.0), (0.25, 1.75), (0.5, 3.0), (0.9, 6.8), (1.0, 8.0)] {
            check(&format!("q={q}"), Ok(quantile(&xs, q)), Ok(want));
        }
        check("single", Ok(quantile(&[3.0], 0.3)), Ok(3.0));
    }

    /// Two equal-length label lists over `k` categories.
    fn two_raters() -> impl Strategy<Value = (Vec<usize>, Vec<usize>, usize)> {
        (2usize..6, 1usize..40).prop_flat_map(|(k, n)| {
            (
                proptest::collection::vec(0..k, n),
                proptest::collection::vec(0..k, n),
                Just(k),
            )
        })
    }

    proptest! {
        #[test]
        fn cohen_kappa_is_symmetric((a, b, k) in two_raters()) {
            check("symmetric", cohen_kappa(&a, &b, k), cohen_kappa(&b, &a, k));
        }

        #[test]
        fn cohen_kappa_is_one_on_identical_labels((a, _, k) in two_raters()) {
            let mut distinct = a.clone();
            distinct.sort_unstable();
            distinct.dedup();
            prop_assume!(distinct.len() >= 2);
            check("identical", cohen_kappa(&a, &a, k), Ok(1.0));
        }

        #[test]
        fn cohen_kappa_ignores_category_names(
            (a, b, k) in two_raters(),
            shuffle in proptest::collection::vec(any::<u32>(), 6),
        ) {
            // A permutation of 0..k from sorting the categories by random keys.
            let mut perm: Vec<usize> = (0..k).collect();
            perm.sort_by_key(|&c| shuffle[c]);
            let rename = |xs: &[usize]| xs.iter().map(|&x| perm[x]).collect::<Vec<_>>();
            check("renamed", cohen_kappa(&rename(&a), &rename(&b), k), cohen_kappa(&a, &b, k));
        }

        #[test]
        fn nominal_alpha_matches_scotts_pi((a, b, k) in two_raters()) {
            let units: Vec<Vec<Option<f64>>> = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| vec![Some(x as f64), Some(y as f64)])
                .collect();
            let n = a.len() as f64;
            if let (Ok(alpha), Ok(pi)) =
                (krippendorff_alpha(&units, Level::Nominal), scotts_pi(&a, &b, k))
            {
                let want = 1.0 - (2.0 * n - 1.0) / (2.0 * n) * (1.0 - pi);
                prop_assert!((alpha - want).abs() < 1e-9, "alpha {alpha}, want {want}");
            }
        }

        #[test]
        fn percent_agreement_is_a_fraction((a, b, _) in two_raters()) {
            let p = percent_agreement(&a, &b);
            prop_assert!(matches!(p, Ok(x) if (0.0..=1.0).contains(&x)));
        }

        #[test]
        fn bootstrap_interval_is_ordered(
            (a, b, k) in two_raters(),
            seed in any::<u64>(),
            confidence in 0.5f64..0.99,
        ) {
            let kappa = |idx: &[usize]| {
                let pick = |xs: &[usize]| idx.iter().map(|&i| xs[i]).collect::<Vec<_>>();
                cohen_kappa(&pick(&a), &pick(&b), k)
            };
            if let Some((lo, hi)) = bootstrap_ci(a.len(), 50, seed, confidence, kappa) {
                prop_assert!(lo <= hi && lo.is_finite() && hi.is_finite(), "{lo} > {hi}");
            }
        }
    }
}

/// Krippendorff's alpha prepared for resampling: each unit's contribution to the
/// coincidence matrix (or, for interval data, its sums) is computed once, so a bootstrap
/// resample only adds contributions instead of re-sorting and re-counting every unit.
/// `alpha_counts(&[1; units])` equals `krippendorff_alpha` (tested to 1e-9), and so does
/// `alpha_counts` over distinct units weighted by their multiplicities (tested to 1e-12).
pub struct AlphaPrep {
    level: Level,
    /// Distinct values of the whole data, sorted (categorical levels).
    distinct: Vec<f64>,
    /// Per unit: (start, end) into `cells`; units with < 2 values contribute nothing.
    spans: Vec<(usize, usize)>,
    /// (c, k, weight) coincidence contributions (categorical levels).
    cells: Vec<(usize, usize, f64)>,
    /// Per unit: (observed part, value count, sum, sum of squares) (interval level).
    sums: Vec<(f64, f64, f64, f64)>,
}

impl AlphaPrep {
    pub fn new(units: &[Vec<Option<f64>>], level: Level) -> AlphaPrep {
        let rows: Vec<Vec<f64>> = units
            .iter()
            .map(|u| {
                let mut v: Vec<f64> = u
                    .iter()
                    .flatten()
                    .copied()
                    .filter(|x| x.is_finite())
                    .collect();
                v.sort_by(f64::total_cmp);
                v
            })
            .collect();
        let mut distinct: Vec<f64> = rows
            .iter()
            .filter(|r| r.len() >= 2)
            .flatten()
            .copied()
            .collect();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup_by(|x, y| x.total_cmp(y).is_eq());
        let index = |x: f64| {
            distinct
                .binary_search_by(|d| d.total_cmp(&x))
                .unwrap_or_default()
        };
        let mut spans = Vec::with_capacity(rows.len());
        let mut cells = Vec::new();
        let mut sums = Vec::with_capacity(rows.len());
        for r in &rows {
            let start = cells.len();
            if r.len() >= 2 {
                let scale = fu(r.len()) - 1.0;
                match level {
                    Level::Interval => {
                        sums.push((
                            pairwise_squares(r) / scale,
                            fu(r.len()),
                            r.iter().sum(),
                            r.iter().map(|x| x * x).sum(),
                        ));
                    }
                    Level::Nominal | Level::Ordinal => {
                        sums.push((0.0, 0.0, 0.0, 0.0));
                        let mut counts: Vec<(usize, u64)> = Vec::new();
                        for &x in r {
                            let c = index(x);
                            match counts.iter_mut().find(|(k, _)| *k == c) {
                                Some(e) => e.1 += 1,
                                None => counts.push((c, 1)),
                            }
                        }
                        for &(c, nc) in &counts {
                            for &(k, nk) in &counts {
                                let pairs = if c == k {
                                    f(nc) * (f(nc) - 1.0)
                                } else {
                                    f(nc) * f(nk)
                                };
                                if pairs > 0.0 {
                                    cells.push((c, k, pairs / scale));
                                }
                            }
                        }
                    }
                }
            } else {
                sums.push((0.0, 0.0, 0.0, 0.0));
            }
            spans.push((start, cells.len()));
        }
        AlphaPrep {
            level,
            distinct,
            spans,
            cells,
            sums,
        }
    }

    /// Alpha over a multiset of the prepared units: `weights[i]` copies of unit `i` (a
    /// bootstrap resample, or distinct units with their multiplicities). Missing weights
    /// count as 0.
    pub fn alpha_counts(&self, weights: &[u64]) -> Stat {
        let present = || weights.iter().enumerate().filter(|(_, w)| **w > 0);
        match self.level {
            Level::Interval => {
                let (mut observed, mut n, mut s, mut ss) = (0.0, 0.0, 0.0, 0.0);
                for (i, &w) in present() {
                    let Some(&(o, c, x, xx)) = self.sums.get(i) else {
                        continue;
                    };
                    let w = f(w);
                    observed += w * o;
                    n += w * c;
                    s += w * x;
                    ss += w * xx;
                }
                if n < 2.0 {
                    return Err(Undefined::NoPairs);
                }
                // pairwise_squares(all values) = 2 N sum((x - mean)^2) = 2 N (ss - s^2 / N).
                let expected = 2.0 * n * (ss - s * s / n);
                if expected <= 1e-12 * (1.0 + ss.abs()) {
                    return Err(Undefined::ZeroVariance);
                }
                Ok(1.0 - (n - 1.0) * observed / expected)
            }
            Level::Nominal | Level::Ordinal => {
                let v = self.distinct.len();
                let mut coincidence = vec![0.0f64; v * v];
                for (i, &w) in present() {
                    let Some(&(a, b)) = self.spans.get(i) else {
                        continue;
                    };
                    let w = f(w);
                    for &(c, k, x) in &self.cells[a..b] {
                        coincidence[c * v + k] += w * x;
                    }
                }
                alpha_from_coincidence(&coincidence, v, self.level)
            }
        }
    }
}

/// Alpha from a v x v coincidence matrix (nominal or ordinal distance).
fn alpha_from_coincidence(coincidence: &[f64], v: usize, level: Level) -> Stat {
    let (observed, expected, total) = coincidence_sums(coincidence, v, level);
    if total <= 0.0 {
        return Err(Undefined::NoPairs);
    }
    if expected <= 0.0 {
        return Err(Undefined::OneCategory);
    }
    Ok(1.0 - (total - 1.0) * observed / expected)
}

#[cfg(test)]
mod prep_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn prepared_alpha_equals_the_exact_one(
            units in prop::collection::vec(prop::collection::vec(prop::option::of(0u8..4), 2..5), 2..40),
            level in prop_oneof![Just(Level::Nominal), Just(Level::Ordinal), Just(Level::Interval)],
        ) {
            let units: Vec<Vec<Option<f64>>> = units.iter().map(|u| u.iter().map(|x| x.map(f64::from)).collect()).collect();
            let exact = krippendorff_alpha(&units, level);
            let fast = AlphaPrep::new(&units, level).alpha_counts(&vec![1; units.len()]);
            match (exact, fast) {
                (Ok(a), Ok(b)) => prop_assert!((a - b).abs() < 1e-9, "{} vs {}", a, b),
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
            }
        }
    }
}

#[cfg(test)]
mod count_tests {
    //! The count-based statistics against the per-item ones: a resample's value must depend
    //! on the items only through its pattern counts, which is what makes resampling counts
    //! instead of items exact.
    use super::*;
    use proptest::prelude::*;

    /// Equal to 1e-12, or undefined for the same reason.
    fn same(name: &str, got: Stat, want: Stat) -> Result<(), TestCaseError> {
        match (got, want) {
            (Ok(g), Ok(w)) => prop_assert!((g - w).abs() < 1e-12, "{}: {} vs {}", name, g, w),
            (g, w) => prop_assert_eq!(g, w, "{}", name),
        }
        Ok(())
    }

    /// Cohen's kappa written out per item, independent of [`Table`].
    fn naive_kappa(a: &[usize], b: &[usize], k: usize) -> Stat {
        let n = a.len() as f64;
        let po = a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / n;
        let share = |xs: &[usize], c: usize| xs.iter().filter(|&&x| x == c).count() as f64 / n;
        let pe: f64 = (0..k).map(|c| share(a, c) * share(b, c)).sum();
        Ok((po - pe) / (1.0 - pe))
    }

    /// Label lists over `k` categories and a resample of their indices (repeats allowed).
    fn resampled() -> impl Strategy<Value = (Vec<usize>, Vec<usize>, usize, Vec<usize>)> {
        (2usize..6, 1usize..40).prop_flat_map(|(k, n)| {
            (
                proptest::collection::vec(0..k, n),
                proptest::collection::vec(0..k, n),
                Just(k),
                proptest::collection::vec(0..n, 1..60),
            )
        })
    }

    fn pick<T: Clone>(xs: &[T], idx: &[usize]) -> Vec<T> {
        idx.iter().map(|&i| xs[i].clone()).collect()
    }

    /// How many times each pattern occurs among the picked items.
    fn tally(pattern_of: &[usize], n_patterns: usize, idx: &[usize]) -> Vec<u64> {
        let mut w = vec![0u64; n_patterns];
        for &i in idx {
            w[pattern_of[i]] += 1;
        }
        w
    }

    proptest! {
        #[test]
        fn two_rater_statistics_depend_only_on_the_table((a, b, k, idx) in resampled()) {
            let (ra, rb) = (pick(&a, &idx), pick(&b, &idx));
            // The table of the resample, tallied from the pair patterns of the original items.
            let (cells, kk) = contingency_table(&a, &b, k).map_err(|e| TestCaseError::fail(e.as_str()))?;
            let pattern_of: Vec<usize> = a.iter().zip(&b).map(|(&x, &y)| x * kk + y).collect();
            let t = tally(&pattern_of, cells.len(), &idx);
            same("percent", percent_agreement_from_table(&t, kk), percent_agreement(&ra, &rb))?;
            if cohen_kappa(&ra, &rb, k).is_ok() {
                same("naive kappa", cohen_kappa_from_table(&t, kk), naive_kappa(&ra, &rb, kk))?;
            }
            same("kappa", cohen_kappa_from_table(&t, kk), cohen_kappa(&ra, &rb, k))?;
            same("pi", scotts_pi_from_table(&t, kk), scotts_pi(&ra, &rb, k))?;
            for w in [Weights::Linear, Weights::Quadratic] {
                same("weighted", weighted_kappa_from_table(&t, kk, w), weighted_kappa(&ra, &rb, k, w))?;
            }
            same(
                "macro f1",
                macro_f1(&class_scores_from_table(&t, kk)),
                macro_f1(&class_scores(&ra, &rb, k)),
            )?;
        }

        #[test]
        fn fleiss_depends_only_on_the_distinct_rows(
            rows in prop::collection::vec(prop::collection::vec(0u64..3, 3), 1..40),
            picks in prop::collection::vec(any::<prop::sample::Index>(), 1..60),
        ) {
            let idx: Vec<usize> = picks.iter().map(|p| p.index(rows.len())).collect();
            let (distinct, _) = patterns(rows.iter().cloned());
            let pattern_of: Vec<usize> = rows
                .iter()
                .map(|r| distinct.iter().position(|d| d == r).unwrap_or(0))
                .collect();
            let w = tally(&pattern_of, distinct.len(), &idx);
            same("fleiss", fleiss_kappa_from_patterns(&distinct, &w), fleiss_kappa(&pick(&rows, &idx)))?;
        }

        #[test]
        fn alpha_depends_only_on_the_distinct_units(
            units in prop::collection::vec(prop::collection::vec(prop::option::of(0u8..4), 2..5), 2..40),
            picks in prop::collection::vec(any::<prop::sample::Index>(), 1..60),
            level in prop_oneof![Just(Level::Nominal), Just(Level::Ordinal), Just(Level::Interval)],
        ) {
            let units: Vec<Vec<Option<f64>>> = units.iter().map(|u| u.iter().map(|x| x.map(f64::from)).collect()).collect();
            let idx: Vec<usize> = picks.iter().map(|p| p.index(units.len())).collect();
            let key = |u: &Vec<Option<f64>>| {
                let mut v: Vec<u64> = u.iter().flatten().map(|x| x.to_bits()).collect();
                v.sort_unstable();
                v
            };
            let (distinct, _) = patterns(units.iter().map(key));
            let pattern_of: Vec<usize> = units
                .iter()
                .map(|u| distinct.iter().position(|d| *d == key(u)).unwrap_or(0))
                .collect();
            let w = tally(&pattern_of, distinct.len(), &idx);
            let distinct_units: Vec<Vec<Option<f64>>> = distinct
                .iter()
                .map(|d| d.iter().map(|b| Some(f64::from_bits(*b))).collect())
                .collect();
            let by_pattern = AlphaPrep::new(&distinct_units, level).alpha_counts(&w);
            let by_item = AlphaPrep::new(&units, level).alpha_counts(&tally(&(0..units.len()).collect::<Vec<_>>(), units.len(), &idx));
            same("prepared", by_pattern, by_item)?;
            match (by_pattern, krippendorff_alpha(&pick(&units, &idx), level)) {
                (Ok(a), Ok(b)) => prop_assert!((a - b).abs() < 1e-12, "{} vs {}", a, b),
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
            }
        }
    }

    #[test]
    fn patterns_count_keys_in_first_seen_order() {
        let (keys, counts) = patterns(["b", "a", "b", "c", "b"]);
        assert_eq!(keys, ["b", "a", "c"]);
        assert_eq!(counts, [3, 1, 1]);
        let (keys, counts) = patterns(Vec::<u8>::new());
        assert!(keys.is_empty() && counts.is_empty());
    }

    /// Draws many resamples and checks each against the multinomial law: every draw sums to
    /// `n`, an empty pattern stays empty, and each pattern's mean and variance match
    /// `n p` and `n p (1 - p)` within five standard errors.
    fn check_law(counts: &[u64], want_binomials: bool) {
        let n: u64 = counts.iter().sum();
        let sampler = PatternSampler::new(counts, n);
        assert_eq!(
            matches!(sampler, PatternSampler::Binomials { .. }),
            want_binomials,
            "{counts:?}"
        );
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let draws = 20_000;
        let mut out = vec![0u64; counts.len()];
        let mut sum = vec![0.0f64; counts.len()];
        let mut sq = vec![0.0f64; counts.len()];
        for _ in 0..draws {
            sampler.draw(&mut rng, &mut out);
            assert_eq!(out.iter().sum::<u64>(), n, "{out:?}");
            for (p, &x) in out.iter().enumerate() {
                sum[p] += x as f64;
                sq[p] += (x * x) as f64;
            }
        }
        let (n, d) = (n as f64, draws as f64);
        for (p, &c) in counts.iter().enumerate() {
            let q = c as f64 / n;
            let (mean, var) = (sum[p] / d, sq[p] / d - (sum[p] / d).powi(2));
            let (want_mean, want_var) = (n * q, n * q * (1.0 - q));
            if c == 0 {
                assert_eq!(sum[p], 0.0, "empty pattern {p} drew items");
                continue;
            }
            let se = (want_var / d).sqrt();
            assert!(
                (mean - want_mean).abs() < 5.0 * se,
                "pattern {p}: mean {mean} vs {want_mean}"
            );
            // The sample variance of 20,000 draws is within a few percent of the truth.
            assert!(
                (var / want_var - 1.0).abs() < 0.1,
                "pattern {p}: variance {var} vs {want_var}"
            );
        }
    }

    #[test]
    fn resampled_counts_follow_the_multinomial_law() {
        // Few patterns: conditional binomials, including a rare and an empty pattern.
        check_law(&[500, 0, 300, 150, 49, 1], true);
        check_law(&[10_000, 3], true);
        // Many patterns for few items: index draws.
        check_law(&[3, 1, 2, 1, 1, 2], false);
        check_law(&[20, 15, 10, 5, 3], false);
    }

    #[test]
    fn count_bootstrap_cases() {
        // A proportion of 0.7 over 1000 items: the 95% interval is about 0.7 +- 0.028.
        let share = |w: &[u64]| -> Stat { Ok(w[0] as f64 / w.iter().sum::<u64>() as f64) };
        let ci = bootstrap_ci_counts(&[700, 300], 2000, 7, 0.95, share);
        let Some((lo, hi)) = ci else {
            panic!("a share is always defined")
        };
        assert!(
            (lo - 0.6716).abs() < 0.006 && (hi - 0.7284).abs() < 0.006,
            "{lo} {hi}"
        );
        // Same seed, same interval; another seed, another draw.
        assert_eq!(bootstrap_ci_counts(&[700, 300], 2000, 7, 0.95, share), ci);
        assert_ne!(bootstrap_ci_counts(&[700, 300], 2000, 8, 0.95, share), ci);
        // The index path (many patterns) gives the same law: 0.5 +- 1.96 * 0.5 / sqrt(40).
        let ones = [1u64; 40];
        let first_half = |w: &[u64]| -> Stat { Ok(w[..20].iter().sum::<u64>() as f64 / 40.0) };
        let Some((lo, hi)) = bootstrap_ci_counts(&ones, 4000, 3, 0.95, first_half) else {
            panic!("defined")
        };
        assert!(
            (lo - 0.345).abs() < 0.03 && (hi - 0.655).abs() < 0.03,
            "{lo} {hi}"
        );
        let constant = |_: &[u64]| -> Stat { Ok(0.25) };
        let never = |_: &[u64]| -> Stat { Err(Undefined::OneCategory) };
        assert_eq!(
            bootstrap_ci_counts(&[3, 2], 100, 1, 0.95, constant),
            Some((0.25, 0.25))
        );
        assert_eq!(bootstrap_ci_counts(&[3, 2], 100, 1, 0.95, never), None);
        assert_eq!(bootstrap_ci_counts(&[0, 0], 100, 1, 0.95, constant), None);
        assert_eq!(bootstrap_ci_counts(&[], 100, 1, 0.95, constant), None);
        assert_eq!(bootstrap_ci_counts(&[3, 2], 0, 1, 0.95, constant), None);
        assert_eq!(bootstrap_ci_counts(&[3, 2], 100, 1, 1.0, constant), None);
    }
}
