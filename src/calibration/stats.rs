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

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Why a coefficient is undefined. Never NaN/inf: callers serialise `null` + reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// A two-rater contingency table over the effective category set.
struct Table {
    /// `cells[i * k + j]` = items rater A put in `i` and rater B put in `j`.
    cells: Vec<u64>,
    k: usize,
    n: u64,
}

impl Table {
    fn new(a: &[usize], b: &[usize], k: usize) -> Result<Self, Undefined> {
        if a.len() != b.len() || a.is_empty() {
            return Err(Undefined::NoPairs);
        }
        let k = effective_k(a, b, k);
        let mut cells = vec![0u64; k * k];
        for (&i, &j) in a.iter().zip(b) {
            cells[i * k + j] += 1;
        }
        Ok(Self {
            cells,
            k,
            n: a.len() as u64,
        })
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

    fn observed(&self) -> f64 {
        let agree: u64 = (0..self.k).map(|i| self.cell(i, i)).sum();
        f(agree) / f(self.n)
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

/// Fraction of items on which the two raters agree. Needs at least one item.
pub fn percent_agreement(a: &[usize], b: &[usize]) -> Stat {
    if a.len() != b.len() || a.is_empty() {
        return Err(Undefined::NoPairs);
    }
    let agree = a.iter().zip(b).filter(|(x, y)| x == y).count();
    Ok(fu(agree) / fu(a.len()))
}

/// The shared preconditions of the chance-corrected two-rater coefficients.
fn chance_corrected_table(a: &[usize], b: &[usize], k: usize) -> Result<Table, Undefined> {
    let t = Table::new(a, b, k)?;
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
    let t = chance_corrected_table(a, b, k)?;
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
    let t = chance_corrected_table(a, b, k)?;
    // `chance_corrected_table` rejects a single shared category, so at least two categories
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
    let t = chance_corrected_table(a, b, k)?;
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
    let m = confusion(truth, pred, k);
    let ratio = |num: u64, den: u64| (den > 0).then(|| f(num) / f(den));
    (0..m.len())
        .map(|c| {
            let tp = m[c][c];
            let support: u64 = m[c].iter().sum();
            let predicted: u64 = m.iter().map(|row| row[c]).sum();
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
    if counts.len() < 2 {
        return Err(Undefined::TooFewItems);
    }
    let raters: u64 = counts[0].iter().sum();
    if counts.iter().any(|row| row.iter().sum::<u64>() != raters) {
        return Err(Undefined::UnequalRaters);
    }
    if raters < 2 {
        return Err(Undefined::NoPairs);
    }
    let k = counts.iter().map(Vec::len).max().unwrap_or(0);
    let mut totals = vec![0u64; k];
    for row in counts {
        for (t, &c) in totals.iter_mut().zip(row) {
            *t += c;
        }
    }
    let all = f(raters) * fu(counts.len());
    // Checking the counts keeps `1 - pe` from being a float that is merely close to 0.
    if totals.iter().any(|&t| f(t) == all) {
        return Err(Undefined::OneCategory);
    }
    let r = f(raters);
    let p_bar = counts
        .iter()
        .map(|row| row.iter().map(|&c| f(c) * (f(c) - 1.0)).sum::<f64>() / (r * (r - 1.0)))
        .sum::<f64>()
        / fu(counts.len());
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
    (observed, expected)
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
    if n_items == 0 || resamples == 0 || !(confidence > 0.0 && confidence < 1.0) {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut sample = vec![0usize; n_items];
    let mut defined = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for slot in &mut sample {
            *slot = rng.random_range(0..n_items);
        }
        // A statistic that leaks a non-finite value is treated as undefined so it cannot
        // poison the sort.
        if let Ok(x) = stat(&sample)
            .map_err(drop)
            .and_then(|x| if x.is_finite() { Ok(x) } else { Err(()) })
        {
            defined.push(x);
        }
    }
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
