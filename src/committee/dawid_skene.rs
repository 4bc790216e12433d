//! Dawid–Skene judge reliability (Dawid & Skene 1979): per-judge confusion matrices and a
//! class prior (`Reliability`, a persisted format), their EM estimate from unlabelled
//! committee votes, the posterior over true classes for one item, and log-odds committee
//! weights from a calibration run. Pure: no IO, no async. Classes are plain indices; this
//! module must not know about verdicts, scales, config or storage (`vote` maps verdicts
//! onto classes, the calibration runner supplies the counts).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Accuracy assumed for a judge the model has no matrix for: it says the true class with
/// this probability and each other class with an equal share of the rest. Any value above
/// chance makes unknown judges count as equal, independent voters, so a committee of
/// unknown judges decides exactly as an unweighted majority; 0.7 is a deliberately modest
/// "better than chance, far from reliable" guess for an uncalibrated LLM judge.
pub const DEFAULT_ACCURACY: f64 = 0.7;

/// The smallest weight [`log_odds_weight`] returns. Judges at or below chance would get a
/// log-odds weight of zero or less, which config rejects (weights must be > 0); this floor
/// keeps them positive yet too light to swing a decision among judges with evidence of
/// skill (a 60%-accurate judge on 100 items already weighs about 0.4).
pub const MIN_WEIGHT: f64 = 0.01;

/// How far a probability row or the prior may sum from 1 in [`Reliability::validate`].
const SUM_TOLERANCE: f64 = 1e-6;

/// Judge reliability under the Dawid–Skene model.
///
/// Persisted (JSON) inside calibration run results, so the field names are a stable
/// format: do not rename them; new fields need `#[serde(default)]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reliability {
    /// The number of true classes K: 2 for binary criteria (0 = not met, 1 = met), 3 for
    /// three-level scales (0, 1, 2 from lowest to highest presence).
    pub classes: usize,
    /// `prior[c]` = P(true class = c): K entries summing to 1.
    pub prior: Vec<f64>,
    /// Judge name -> K x K matrix with `confusion[judge][c][l]` = P(the judge says l | the
    /// true class is c): rows are true classes, columns are said classes, each row sums
    /// to 1.
    pub confusion: BTreeMap<String, Vec<Vec<f64>>>,
}

impl Reliability {
    /// A model that knows nothing: a uniform prior and no judges, so every judge gets the
    /// [`DEFAULT_ACCURACY`] matrix and the posterior's argmax is the plurality vote.
    pub fn uninformed(classes: usize) -> Reliability {
        Reliability {
            classes,
            prior: normalize(vec![1.0; classes]),
            confusion: BTreeMap::new(),
        }
    }

    /// Checks the invariants the fields document: at least two classes, a K-entry prior
    /// and K x K matrices whose entries are finite probabilities and whose rows (and the
    /// prior) sum to 1 within 1e-6. Reports every problem, joined by "; ".
    pub fn validate(&self) -> Result<(), String> {
        let k = self.classes;
        let mut problems = Vec::new();
        if k < 2 {
            problems.push(format!("classes is {k}; need at least 2"));
        }
        if let Some(p) = distribution_problem(&self.prior, k) {
            problems.push(format!("prior {p}"));
        }
        for (judge, matrix) in &self.confusion {
            if matrix.len() != k {
                problems.push(format!(
                    "confusion[{judge}] has {} rows; need {k}",
                    matrix.len()
                ));
            }
            for (c, row) in matrix.iter().enumerate() {
                if let Some(p) = distribution_problem(row, k) {
                    problems.push(format!("confusion[{judge}][{c}] {p}"));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Builds a model from counts, e.g. judge-vs-human-majority confusion counts from a
    /// calibration run: `prior_counts[c]` items of true class c, and
    /// `confusion_counts[judge][c][l]` items of true class c the judge called l.
    ///
    /// K is `prior_counts.len()`; missing cells count 0 and extra ones are ignored.
    /// `smoothing` is added to every cell (a symmetric Dirichlet prior) so that no
    /// probability is 0 when it is positive. Negative or non-finite counts (and
    /// smoothing) count as 0; a row with nothing in it becomes uniform.
    pub fn from_counts(
        prior_counts: &[f64],
        confusion_counts: &BTreeMap<String, Vec<Vec<f64>>>,
        smoothing: f64,
    ) -> Reliability {
        let k = prior_counts.len();
        let s = non_negative(smoothing);
        let confusion = confusion_counts
            .iter()
            .map(|(judge, rows)| {
                let matrix = (0..k)
                    .map(|c| {
                        let row = rows.get(c);
                        smoothed(
                            (0..k).map(|l| row.and_then(|r| r.get(l)).copied().unwrap_or(0.0)),
                            s,
                        )
                    })
                    .collect();
                (judge.clone(), matrix)
            })
            .collect();
        Reliability {
            classes: k,
            prior: smoothed(prior_counts.iter().copied(), s),
            confusion,
        }
    }
}

/// Why `p` is not a probability distribution over `k` classes, if it is not one.
fn distribution_problem(p: &[f64], k: usize) -> Option<String> {
    if p.len() != k {
        return Some(format!("has {} entries; need {k}", p.len()));
    }
    if let Some(x) = p
        .iter()
        .find(|x| !(x.is_finite() && (0.0..=1.0).contains(*x)))
    {
        return Some(format!("has {x}, not a probability"));
    }
    let sum: f64 = p.iter().sum();
    ((sum - 1.0).abs() > SUM_TOLERANCE).then(|| format!("sums to {sum}, not 1"))
}

/// EM settings for [`estimate`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmOptions {
    /// At most this many EM iterations (an M-step followed by an E-step) after the start.
    pub max_iter: usize,
    /// Stop once the mean log-likelihood per voted item changes by at most this much.
    pub tolerance: f64,
    /// Added to every prior and confusion count in the M-step (a symmetric Dirichlet
    /// prior), so a class or vote never seen gets a small probability instead of 0.
    pub smoothing: f64,
}

impl Default for EmOptions {
    fn default() -> Self {
        Self {
            max_iter: 100,
            tolerance: 1e-8,
            smoothing: 0.01,
        }
    }
}

/// What [`estimate`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct EmResult {
    /// The estimated prior and one confusion matrix per judge name.
    pub reliability: Reliability,
    /// `posteriors[i][c]` = P(item i's true class is c | its votes) under `reliability`;
    /// items nobody voted on get the prior.
    pub posteriors: Vec<Vec<f64>>,
    /// EM iterations run after the start (0 when `max_iter` is 0).
    pub iterations: usize,
    /// Whether the log-likelihood settled within `tolerance` before `max_iter`.
    pub converged: bool,
    /// Mean log-likelihood ln P(votes) per item with at least one vote (0 when none).
    pub log_likelihood: f64,
}

/// Model parameters during EM: `theta[j][c][l]` is judge j's confusion matrix.
struct Params {
    prior: Vec<f64>,
    theta: Vec<Vec<Vec<f64>>>,
}

/// Estimates the prior and each judge's confusion matrix from unlabelled votes by EM.
///
/// `items[i][j]` is judge `judges[j]`'s class on item i, None when it abstained; votes
/// for classes >= `classes` and columns beyond `judges` are ignored as abstentions. The
/// start is `seed` when given and its `classes` matches (judges it lacks get the
/// [`DEFAULT_ACCURACY`] matrix), otherwise soft majority-vote posteriors (the standard
/// Dawid–Skene start). Items nobody voted on get the prior as posterior and count toward
/// neither the prior nor any matrix. Judge names should be unique: a repeated name keeps
/// the matrix of its last column. Deterministic, and never NaN.
///
/// With fewer than two judges who carry information about the truth, the model is not
/// identifiable from votes alone (any one judge could be "the" truth); seed it from a
/// calibration run then.
pub fn estimate(
    classes: usize,
    judges: &[String],
    items: &[Vec<Option<usize>>],
    seed: Option<&Reliability>,
    opts: &EmOptions,
) -> EmResult {
    let k = classes;
    let votes: Vec<Vec<(usize, usize)>> = items
        .iter()
        .map(|row| {
            row.iter()
                .take(judges.len())
                .enumerate()
                .filter_map(|(j, v)| v.filter(|l| *l < k).map(|l| (j, l)))
                .collect()
        })
        .collect();
    let smoothing = non_negative(opts.smoothing);
    let tolerance = non_negative(opts.tolerance);

    let mut params = match seed.filter(|s| s.classes == k) {
        Some(seed) => seeded(seed, judges),
        None => m_step(
            k,
            judges.len(),
            &votes,
            &soft_majority(k, &votes),
            smoothing,
        ),
    };
    let (mut posteriors, mut log_likelihood) = e_step(&params, &votes);
    let mut iterations = 0;
    let mut converged = false;
    while iterations < opts.max_iter {
        let next = m_step(k, judges.len(), &votes, &posteriors, smoothing);
        let (next_posteriors, next_ll) = e_step(&next, &votes);
        iterations += 1;
        let change = (next_ll - log_likelihood).abs();
        params = next;
        posteriors = next_posteriors;
        log_likelihood = next_ll;
        if change <= tolerance {
            converged = true;
            break;
        }
    }
    EmResult {
        reliability: Reliability {
            classes: k,
            prior: params.prior,
            confusion: judges.iter().cloned().zip(params.theta).collect(),
        },
        posteriors,
        iterations,
        converged,
        log_likelihood,
    }
}

/// The posterior over true classes of one item given `(judge, class)` votes: K entries,
/// finite, summing to 1. Judges `rel` has no K x K matrix for count with the
/// [`DEFAULT_ACCURACY`] matrix; votes for classes >= K are ignored. With no votes it is
/// the prior.
pub fn posterior(rel: &Reliability, votes: &[(&str, usize)]) -> Vec<f64> {
    let k = rel.classes;
    let default = symmetric(k);
    let mut scores: Vec<f64> = if rel.prior.len() == k {
        rel.prior.iter().copied().map(safe_ln).collect()
    } else {
        vec![0.0; k]
    };
    for (judge, said) in votes {
        if *said >= k {
            continue;
        }
        let matrix = rel
            .confusion
            .get(*judge)
            .filter(|m| is_square(m, k))
            .unwrap_or(&default);
        add_vote(&mut scores, matrix, *said);
    }
    softmax(scores).0
}

/// A committee weight for a judge from a calibration run in which it was right on
/// `correct` of `n` items: with the Laplace-smoothed accuracy p = (correct+1)/(n+2), the
/// weight is ln(p / (1-p)), the optimal weight for independent voters (Nitzan & Paroush
/// 1982), floored at [`MIN_WEIGHT`] for judges at or below chance. `correct` above `n`
/// counts as `n`. Always finite and positive.
pub fn log_odds_weight(correct: u64, n: u64) -> f64 {
    let correct = correct.min(n);
    // p / (1-p) = (correct+1) / (n-correct+1); the log of each count keeps this exact
    // where p itself would round to 1 for huge n.
    let w = (count(correct) + 1.0).ln() - (count(n - correct) + 1.0).ln();
    if w.is_finite() && w > MIN_WEIGHT {
        w
    } else {
        MIN_WEIGHT
    }
}

/// Counts far below 2^52 convert to `f64` exactly; larger ones only lose digits no
/// weight depends on.
fn count(x: u64) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "vote counts are far below 2^52")]
    let v = x as f64;
    v
}

fn count_usize(x: usize) -> f64 {
    count(u64::try_from(x).unwrap_or(u64::MAX))
}

/// The [`DEFAULT_ACCURACY`] matrix on `k` classes (the identity for one class).
fn symmetric(k: usize) -> Vec<Vec<f64>> {
    let off = if k > 1 {
        (1.0 - DEFAULT_ACCURACY) / count_usize(k - 1)
    } else {
        0.0
    };
    let on = if k > 1 { DEFAULT_ACCURACY } else { 1.0 };
    (0..k)
        .map(|c| (0..k).map(|l| if c == l { on } else { off }).collect())
        .collect()
}

fn is_square(m: &[Vec<f64>], k: usize) -> bool {
    m.len() == k && m.iter().all(|row| row.len() == k)
}

/// ln p, with every non-positive or non-finite p as -inf, so scores are never NaN or +inf.
fn safe_ln(p: f64) -> f64 {
    if p.is_finite() && p > 0.0 {
        p.ln()
    } else {
        f64::NEG_INFINITY
    }
}

/// Adds the log-likelihood of a judge saying `said` under each true class.
fn add_vote(scores: &mut [f64], matrix: &[Vec<f64>], said: usize) {
    for (score, row) in scores.iter_mut().zip(matrix) {
        *score += safe_ln(row.get(said).copied().unwrap_or(0.0));
    }
}

/// Normalises log-scores into probabilities; also returns ln of their sum (the item's
/// log-likelihood). Scores that are all -inf (no class possible) give the uniform
/// distribution and -inf.
fn softmax(scores: Vec<f64>) -> (Vec<f64>, f64) {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return (normalize(vec![1.0; scores.len()]), f64::NEG_INFINITY);
    }
    let exps: Vec<f64> = scores.into_iter().map(|s| (s - max).exp()).collect();
    // The largest term is exp(0) = 1, so the sum is at least 1 and the log is finite.
    let sum: f64 = exps.iter().sum();
    (normalize(exps), max + sum.ln())
}

fn non_negative(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 { x } else { 0.0 }
}

/// Counts plus `smoothing`, normalised (negative or non-finite counts count as 0).
fn smoothed(counts: impl Iterator<Item = f64>, smoothing: f64) -> Vec<f64> {
    normalize(counts.map(|x| non_negative(x) + smoothing).collect())
}

/// Scales non-negative finite weights to sum to 1; all zero (or anything not finite)
/// becomes uniform. Dividing by the largest first keeps huge counts from overflowing.
fn normalize(mut v: Vec<f64>) -> Vec<f64> {
    let max = v.iter().copied().fold(0.0, f64::max);
    let ok = max > 0.0 && max.is_finite() && v.iter().all(|x| x.is_finite() && *x >= 0.0);
    if ok {
        let sum: f64 = v.iter().map(|x| x / max).sum();
        for x in &mut v {
            *x = *x / max / sum;
        }
    } else if !v.is_empty() {
        let u = 1.0 / count_usize(v.len());
        v.iter_mut().for_each(|x| *x = u);
    }
    v
}

/// Start parameters from a seed of matching `classes`: its prior and matrices
/// (renormalised), the default matrix for judges it lacks or has in the wrong shape.
fn seeded(seed: &Reliability, judges: &[String]) -> Params {
    let k = seed.classes;
    let prior = if seed.prior.len() == k {
        smoothed(seed.prior.iter().copied(), 0.0)
    } else {
        normalize(vec![1.0; k])
    };
    let theta = judges
        .iter()
        .map(
            |judge| match seed.confusion.get(judge).filter(|m| is_square(m, k)) {
                Some(m) => m
                    .iter()
                    .map(|row| smoothed(row.iter().copied(), 0.0))
                    .collect(),
                None => symmetric(k),
            },
        )
        .collect();
    Params { prior, theta }
}

/// The standard start: each voted item's share of votes per class.
fn soft_majority(k: usize, votes: &[Vec<(usize, usize)>]) -> Vec<Vec<f64>> {
    votes
        .iter()
        .map(|vs| {
            let mut tally = vec![0.0; k];
            for (_, said) in vs {
                if let Some(t) = tally.get_mut(*said) {
                    *t += 1.0;
                }
            }
            normalize(tally)
        })
        .collect()
}

/// Posterior-weighted counts -> smoothed prior and matrices. Items without votes are
/// skipped, so they count toward neither.
fn m_step(
    k: usize,
    n_judges: usize,
    votes: &[Vec<(usize, usize)>],
    posteriors: &[Vec<f64>],
    smoothing: f64,
) -> Params {
    let mut prior = vec![0.0; k];
    let mut theta = vec![vec![vec![0.0; k]; k]; n_judges];
    for (vs, post) in votes.iter().zip(posteriors) {
        if vs.is_empty() {
            continue;
        }
        for (p, w) in prior.iter_mut().zip(post) {
            *p += w;
        }
        for (j, said) in vs {
            let Some(matrix) = theta.get_mut(*j) else {
                continue;
            };
            for (row, w) in matrix.iter_mut().zip(post) {
                if let Some(cell) = row.get_mut(*said) {
                    *cell += w;
                }
            }
        }
    }
    Params {
        prior: smoothed(prior.into_iter(), smoothing),
        theta: theta
            .into_iter()
            .map(|m| {
                m.into_iter()
                    .map(|row| smoothed(row.into_iter(), smoothing))
                    .collect()
            })
            .collect(),
    }
}

/// Posteriors of every item under `params`, and the mean log-likelihood per voted item.
fn e_step(params: &Params, votes: &[Vec<(usize, usize)>]) -> (Vec<Vec<f64>>, f64) {
    let log_prior: Vec<f64> = params.prior.iter().copied().map(safe_ln).collect();
    let mut total = 0.0;
    let mut voted = 0usize;
    let posteriors = votes
        .iter()
        .map(|vs| {
            if vs.is_empty() {
                return params.prior.clone();
            }
            let mut scores = log_prior.clone();
            for (j, said) in vs {
                if let Some(matrix) = params.theta.get(*j) {
                    add_vote(&mut scores, matrix, *said);
                }
            }
            let (post, ll) = softmax(scores);
            // Unreachable after a smoothed M-step (every probability is positive), and
            // without smoothing each item's own weight keeps its likeliest class possible;
            // the guard only keeps an impossible item from turning the mean into -inf.
            if ll.is_finite() {
                total += ll;
                voted += 1;
            }
            post
        })
        .collect();
    let mean = if voted > 0 {
        total / count_usize(voted)
    } else {
        0.0
    };
    (posteriors, mean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|j| format!("judge-{j}")).collect()
    }

    /// Votes of judges with the given symmetric accuracies on binary items whose true
    /// class is 1 with probability `prior1`; each vote is missing with `abstain`.
    /// A judge with accuracy `None` flips a fair coin regardless of the truth.
    fn synthetic(
        seed: u64,
        n: usize,
        prior1: f64,
        accuracies: &[Option<f64>],
        abstain: f64,
    ) -> (Vec<usize>, Vec<Vec<Option<usize>>>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut truth = Vec::with_capacity(n);
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            let t = usize::from(rng.random::<f64>() < prior1);
            let row = accuracies
                .iter()
                .map(|acc| {
                    let said = match acc {
                        Some(a) if rng.random::<f64>() < *a => t,
                        Some(_) => 1 - t,
                        None => usize::from(rng.random::<bool>()),
                    };
                    (rng.random::<f64>() >= abstain).then_some(said)
                })
                .collect();
            truth.push(t);
            items.push(row);
        }
        (truth, items)
    }

    fn argmax(p: &[f64]) -> usize {
        p.iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |(bi, bp), (i, x)| {
                if *x > bp { (i, *x) } else { (bi, bp) }
            })
            .0
    }

    fn assert_distribution(p: &[f64], what: &str) {
        assert!(
            p.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x)),
            "{what}: {p:?}"
        );
        let sum: f64 = p.iter().sum();
        assert!((sum - 1.0).abs() < 1e-9, "{what}: sums to {sum}");
    }

    #[test]
    fn em_recovers_accuracies_and_prior() {
        let accuracies = [0.9, 0.75, 0.6];
        let (_, items) = synthetic(7, 2000, 0.3, &accuracies.map(Some), 0.05);
        let judges = names(3);
        // Three binary judges, one of them weak, leave the likelihood flat near its
        // maximum: EM needs several hundred iterations here (about 550), more than the
        // default 100, before the mean log-likelihood settles within 1e-8.
        let opts = EmOptions {
            max_iter: 1000,
            ..EmOptions::default()
        };
        let r = estimate(2, &judges, &items, None, &opts);
        assert!(r.converged, "{} iterations", r.iterations);
        r.reliability.validate().unwrap();
        let prior1 = r.reliability.prior[1];
        assert!((prior1 - 0.3).abs() < 0.05, "prior {prior1}");
        for (judge, acc) in judges.iter().zip(accuracies) {
            let m = &r.reliability.confusion[judge];
            // Both per-class accuracies and the overall one.
            for c in 0..2 {
                assert!(
                    (m[c][c] - acc).abs() < 0.05,
                    "{judge} class {c}: {m:?} vs {acc}"
                );
            }
            let overall = r.reliability.prior[0] * m[0][0] + prior1 * m[1][1];
            assert!((overall - acc).abs() < 0.05, "{judge}: {overall} vs {acc}");
        }
    }

    #[test]
    fn em_is_deterministic() {
        let (_, items) = synthetic(3, 300, 0.5, &[Some(0.8), Some(0.7), Some(0.65)], 0.2);
        let judges = names(3);
        let a = estimate(2, &judges, &items, None, &EmOptions::default());
        let b = estimate(2, &judges, &items, None, &EmOptions::default());
        assert_eq!(a, b);
    }

    #[test]
    fn all_abstain_items_get_the_prior_and_change_nothing() {
        let (_, mut items) = synthetic(11, 400, 0.4, &[Some(0.85), Some(0.8), Some(0.7)], 0.1);
        let judges = names(3);
        let opts = EmOptions::default();
        let base = estimate(2, &judges, &items, None, &opts);
        items.insert(0, vec![None; 3]);
        items.push(vec![]);
        // A vote for a class beyond K is an abstention too.
        items.push(vec![Some(5), None, None]);
        let more = estimate(2, &judges, &items, None, &opts);
        assert_eq!(more.reliability, base.reliability);
        assert_eq!(more.iterations, base.iterations);
        assert_eq!(more.log_likelihood, base.log_likelihood);
        for i in [0, items.len() - 2, items.len() - 1] {
            assert_eq!(more.posteriors[i], more.reliability.prior, "item {i}");
        }
    }

    #[test]
    fn reliable_judge_outvotes_two_coin_flippers() {
        // Unseeded EM cannot tell one informative judge from two noise judges (each could
        // be "the" truth), so two ways of making it identifiable: a fourth, moderately
        // reliable judge, or a seed from a small labelled calibration run.
        let opts = EmOptions::default();

        let (_, items) = synthetic(5, 2000, 0.5, &[Some(0.95), None, None, Some(0.8)], 0.0);
        let r = estimate(2, &names(4), &items, None, &opts).reliability;
        for said in [0, 1] {
            let votes = [
                ("judge-0", said),
                ("judge-1", 1 - said),
                ("judge-2", 1 - said),
            ];
            assert_eq!(
                argmax(&posterior(&r, &votes)),
                said,
                "four judges, said {said}: {r:?}"
            );
        }

        let judges = names(3);
        let (truth, labelled) = synthetic(6, 60, 0.5, &[Some(0.95), None, None], 0.0);
        let mut counts: BTreeMap<String, Vec<Vec<f64>>> = judges
            .iter()
            .map(|j| (j.clone(), vec![vec![0.0; 2]; 2]))
            .collect();
        let mut prior_counts = vec![0.0; 2];
        for (t, row) in truth.iter().zip(&labelled) {
            prior_counts[*t] += 1.0;
            for (judge, said) in judges.iter().zip(row) {
                if let Some(l) = said {
                    counts.get_mut(judge).unwrap()[*t][*l] += 1.0;
                }
            }
        }
        let seed = Reliability::from_counts(&prior_counts, &counts, 1.0);
        let (_, items) = synthetic(8, 2000, 0.5, &[Some(0.95), None, None], 0.0);
        let r = estimate(2, &judges, &items, Some(&seed), &opts).reliability;
        for said in [0, 1] {
            let votes = [
                ("judge-0", said),
                ("judge-1", 1 - said),
                ("judge-2", 1 - said),
            ];
            assert_eq!(
                argmax(&posterior(&r, &votes)),
                said,
                "seeded, said {said}: {r:?}"
            );
        }
        assert!(r.confusion["judge-0"][1][1] > 0.9, "{r:?}");
    }

    #[test]
    fn seeded_and_unseeded_agree_on_separated_data() {
        let (_, items) = synthetic(
            13,
            1000,
            0.4,
            &[Some(0.95), Some(0.9), Some(0.85), Some(0.9)],
            0.1,
        );
        let judges = names(4);
        let opts = EmOptions::default();
        let unseeded = estimate(2, &judges, &items, None, &opts);
        // A rough seed that knows two of the judges; the others start at the default.
        let mut rough = BTreeMap::new();
        rough.insert("judge-0".to_owned(), vec![vec![0.8, 0.2], vec![0.3, 0.7]]);
        rough.insert("judge-3".to_owned(), vec![vec![0.6, 0.4], vec![0.4, 0.6]]);
        let seed = Reliability {
            classes: 2,
            prior: vec![0.5, 0.5],
            confusion: rough,
        };
        let seeded = estimate(2, &judges, &items, Some(&seed), &opts);
        assert!(unseeded.converged && seeded.converged);
        for (a, b) in unseeded.posteriors.iter().zip(&seeded.posteriors) {
            assert_eq!(argmax(a), argmax(b));
            assert!((a[1] - b[1]).abs() < 1e-3, "{a:?} vs {b:?}");
        }
        for judge in &judges {
            let (a, b) = (
                &unseeded.reliability.confusion[judge],
                &seeded.reliability.confusion[judge],
            );
            for c in 0..2 {
                assert!((a[c][c] - b[c][c]).abs() < 1e-3, "{judge}: {a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn seed_of_other_classes_is_ignored() {
        let (_, items) = synthetic(17, 200, 0.5, &[Some(0.9), Some(0.8), Some(0.7)], 0.0);
        let judges = names(3);
        let opts = EmOptions::default();
        let plain = estimate(2, &judges, &items, None, &opts);
        let three = Reliability::uninformed(3);
        assert_eq!(estimate(2, &judges, &items, Some(&three), &opts), plain);
    }

    #[test]
    fn zero_iterations_and_degenerate_shapes() {
        let judges = names(2);
        let items = vec![vec![Some(0), Some(1)], vec![Some(1), Some(1)]];
        let opts = EmOptions {
            max_iter: 0,
            ..EmOptions::default()
        };
        let r = estimate(2, &judges, &items, None, &opts);
        assert_eq!((r.iterations, r.converged), (0, false));
        r.reliability.validate().unwrap();

        let none = estimate(2, &judges, &[], None, &EmOptions::default());
        assert_eq!(none.posteriors, Vec::<Vec<f64>>::new());
        assert_eq!(none.log_likelihood, 0.0);
        assert_eq!(none.reliability.prior, vec![0.5, 0.5]);

        let zero = estimate(0, &judges, &items, None, &EmOptions::default());
        assert!(zero.posteriors.iter().all(Vec::is_empty));
        assert!(zero.reliability.validate().is_err());

        // More columns than judges: the extra votes are ignored.
        let wide = vec![vec![Some(0), Some(0), Some(1)]];
        let r = estimate(2, &judges, &wide, None, &EmOptions::default());
        assert_eq!(r.reliability.confusion.len(), 2);
    }

    #[test]
    fn posterior_table() {
        let rel = Reliability {
            classes: 2,
            prior: vec![0.3, 0.7],
            confusion: BTreeMap::from([
                ("good".to_owned(), vec![vec![0.9, 0.1], vec![0.1, 0.9]]),
                ("yes-man".to_owned(), vec![vec![0.0, 1.0], vec![0.0, 1.0]]),
                ("ragged".to_owned(), vec![vec![0.9, 0.1]]),
            ]),
        };
        // (case, votes, expected posterior of class 1)
        let def = DEFAULT_ACCURACY / (1.0 - DEFAULT_ACCURACY);
        let cases: &[(&str, &[(&str, usize)], f64)] = &[
            ("no votes: the prior", &[], 0.7),
            (
                "good says 1",
                &[("good", 1)],
                0.7 * 0.9 / (0.7 * 0.9 + 0.3 * 0.1),
            ),
            (
                "good says 0",
                &[("good", 0)],
                0.7 * 0.1 / (0.7 * 0.1 + 0.3 * 0.9),
            ),
            ("yes-man's yes carries nothing", &[("yes-man", 1)], 0.7),
            (
                "unknown judge: default accuracy",
                &[("stranger", 1)],
                0.7 * def / (0.7 * def + 0.3),
            ),
            (
                "wrong shape: default accuracy",
                &[("ragged", 1)],
                0.7 * def / (0.7 * def + 0.3),
            ),
            ("class out of range ignored", &[("good", 2)], 0.7),
            // The yes-man never says 0, so a 0 from it is impossible under either class;
            // the posterior stays a distribution (uniform) instead of NaN.
            ("impossible vote", &[("yes-man", 0)], 0.5),
        ];
        for (name, votes, want) in cases {
            let p = posterior(&rel, votes);
            assert_distribution(&p, name);
            assert!((p[1] - want).abs() < 1e-12, "{name}: {p:?}, want {want}");
        }
        assert_eq!(
            posterior(&Reliability::uninformed(0), &[("a", 0)]),
            Vec::<f64>::new()
        );
        // A prior of the wrong length counts as uniform.
        let bad_prior = Reliability {
            prior: vec![1.0],
            ..Reliability::uninformed(2)
        };
        assert_eq!(posterior(&bad_prior, &[]), vec![0.5, 0.5]);
    }

    #[test]
    fn uninformed_posterior_is_plurality() {
        let rel = Reliability::uninformed(3);
        let votes = [("a", 2), ("b", 2), ("c", 0), ("d", 1)];
        assert_eq!(argmax(&posterior(&rel, &votes)), 2);
        let tie = posterior(&rel, &[("a", 0), ("b", 2)]);
        assert!(
            (tie[0] - tie[2]).abs() < 1e-12 && tie[1] < tie[0],
            "{tie:?}"
        );
    }

    #[test]
    fn from_counts_table() {
        let counts = |rows: Vec<Vec<f64>>| BTreeMap::from([("j".to_owned(), rows)]);
        // (case, prior counts, judge rows, smoothing, expected matrix)
        type Case = (&'static str, Vec<f64>, Vec<Vec<f64>>, f64, Vec<Vec<f64>>);
        let cases: Vec<Case> = vec![
            (
                "plain",
                vec![3.0, 1.0],
                vec![vec![3.0, 1.0], vec![0.0, 4.0]],
                0.0,
                vec![vec![0.75, 0.25], vec![0.0, 1.0]],
            ),
            (
                "smoothed",
                vec![3.0, 1.0],
                vec![vec![3.0, 1.0], vec![0.0, 4.0]],
                1.0,
                vec![vec![4.0 / 6.0, 2.0 / 6.0], vec![1.0 / 6.0, 5.0 / 6.0]],
            ),
            (
                "empty row uniform",
                vec![1.0, 1.0],
                vec![vec![2.0, 2.0], vec![0.0, 0.0]],
                0.0,
                vec![vec![0.5, 0.5], vec![0.5, 0.5]],
            ),
            (
                "missing row and cells",
                vec![1.0, 1.0],
                vec![vec![4.0]],
                0.0,
                vec![vec![1.0, 0.0], vec![0.5, 0.5]],
            ),
            (
                "extra cells ignored",
                vec![1.0, 1.0],
                vec![vec![1.0, 3.0, 9.0], vec![1.0, 1.0], vec![5.0]],
                0.0,
                vec![vec![0.25, 0.75], vec![0.5, 0.5]],
            ),
            (
                "bad counts as 0",
                vec![1.0, 1.0],
                vec![vec![f64::NAN, 1.0], vec![-3.0, f64::INFINITY]],
                0.0,
                vec![vec![0.0, 1.0], vec![0.5, 0.5]],
            ),
            (
                "bad smoothing as 0",
                vec![1.0, 1.0],
                vec![vec![1.0, 1.0], vec![1.0, 3.0]],
                f64::NAN,
                vec![vec![0.5, 0.5], vec![0.25, 0.75]],
            ),
            (
                "huge counts",
                vec![1.0, 1.0],
                vec![vec![1e308, 1e308], vec![1e308, 0.0]],
                0.0,
                vec![vec![0.5, 0.5], vec![1.0, 0.0]],
            ),
        ];
        for (name, prior, rows, smoothing, want) in cases {
            let r = Reliability::from_counts(&prior, &counts(rows), smoothing);
            assert_eq!(r.classes, 2, "{name}");
            assert_distribution(&r.prior, name);
            let m = &r.confusion["j"];
            for (row, want_row) in m.iter().zip(&want) {
                assert_distribution(row, name);
                for (x, y) in row.iter().zip(want_row) {
                    assert!((x - y).abs() < 1e-12, "{name}: {m:?}, want {want:?}");
                }
            }
            r.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let r = Reliability::from_counts(
            &[5.0, 0.0],
            &counts(vec![vec![5.0, 0.0], vec![0.0, 0.0]]),
            0.5,
        );
        assert!(
            r.prior[1] > 0.0 && r.confusion["j"][0][1] > 0.0,
            "smoothing leaves no zero: {r:?}"
        );
    }

    #[test]
    fn validate_table() {
        let good = Reliability {
            classes: 2,
            prior: vec![0.25, 0.75],
            confusion: BTreeMap::from([("a".to_owned(), vec![vec![0.9, 0.1], vec![0.2, 0.8]])]),
        };
        good.validate().unwrap();
        let with = |f: &dyn Fn(&mut Reliability)| {
            let mut r = good.clone();
            f(&mut r);
            r
        };
        // (case, model, needle in the problem)
        let cases = [
            ("one class", with(&|r| r.classes = 1), "classes is 1"),
            (
                "prior length",
                with(&|r| r.prior = vec![1.0]),
                "prior has 1 entries",
            ),
            (
                "prior sum",
                with(&|r| r.prior = vec![0.5, 0.6]),
                "prior sums to",
            ),
            (
                "prior NaN",
                with(&|r| r.prior = vec![f64::NAN, 1.0]),
                "prior has NaN",
            ),
            (
                "negative",
                with(&|r| r.prior = vec![-0.5, 1.5]),
                "not a probability",
            ),
            (
                "rows",
                with(&|r| {
                    r.confusion.insert("b".into(), vec![vec![1.0, 0.0]]);
                }),
                "confusion[b] has 1 rows",
            ),
            (
                "row length",
                with(&|r| {
                    r.confusion
                        .insert("b".into(), vec![vec![1.0], vec![0.0, 1.0]]);
                }),
                "confusion[b][0] has 1 entries",
            ),
            (
                "row sum",
                with(&|r| {
                    r.confusion
                        .insert("b".into(), vec![vec![0.5, 0.4], vec![0.0, 1.0]]);
                }),
                "confusion[b][0] sums to",
            ),
            (
                "row inf",
                with(&|r| {
                    r.confusion
                        .insert("b".into(), vec![vec![0.5, 0.5], vec![0.0, f64::INFINITY]]);
                }),
                "confusion[b][1] has inf",
            ),
        ];
        for (name, r, needle) in cases {
            let err = r.validate().expect_err(name);
            assert!(err.contains(needle), "{name}: {err}");
        }
        // Within tolerance is fine.
        with(&|r| r.prior = vec![0.25 + 1e-7, 0.75])
            .validate()
            .unwrap();
        // Every problem is reported.
        let err = with(&|r| {
            r.prior = vec![0.5];
            r.confusion.insert("b".into(), vec![]);
        })
        .validate()
        .unwrap_err();
        assert!(
            err.contains("prior") && err.contains("confusion[b]"),
            "{err}"
        );
    }

    #[test]
    fn persisted_field_names_are_stable() {
        let r = Reliability {
            classes: 2,
            prior: vec![0.5, 0.5],
            confusion: BTreeMap::from([("a".to_owned(), vec![vec![1.0, 0.0], vec![0.0, 1.0]])]),
        };
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "classes": 2,
                "prior": [0.5, 0.5],
                "confusion": {"a": [[1.0, 0.0], [0.0, 1.0]]},
            })
        );
        assert_eq!(serde_json::from_value::<Reliability>(json).unwrap(), r);
    }

    #[test]
    fn log_odds_weight_table() {
        let cases = [
            (9, 10, 5.0f64.ln()),
            (0, 0, MIN_WEIGHT),
            (5, 10, MIN_WEIGHT),
            (1, 10, MIN_WEIGHT),
            (6, 10, (7.0f64 / 5.0).ln()),
            (20, 10, 11.0f64.ln()),
            (u64::MAX, u64::MAX, count(u64::MAX).ln()),
        ];
        for (correct, n, want) in cases {
            let w = log_odds_weight(correct, n);
            assert!((w - want).abs() < 1e-9, "{correct}/{n}: {w}, want {want}");
        }
        for n in 0..60u64 {
            let mut last = 0.0;
            for correct in 0..=n {
                let w = log_odds_weight(correct, n);
                assert!(w.is_finite() && w >= MIN_WEIGHT, "{correct}/{n}: {w}");
                assert!(w >= last, "{correct}/{n}: {w} < {last}");
                if 2 * correct > n + 1 {
                    assert!(w > last, "{correct}/{n}: strictly above chance");
                }
                last = w;
            }
        }
        // The same accuracy on more items is more evidence.
        assert!(log_odds_weight(90, 100) > log_odds_weight(9, 10));
    }

    /// Random vote matrices: some items nobody voted on, some judges that always say one
    /// class, K from 2 to 4.
    fn vote_matrix() -> impl Strategy<Value = (usize, Vec<Vec<Option<usize>>>)> {
        (2usize..5, 1usize..5).prop_flat_map(|(k, n_judges)| {
            let vote = prop::option::weighted(0.7, 0..k);
            let rows = prop::collection::vec(prop::collection::vec(vote, n_judges), 0..25);
            let constant = prop::collection::vec(prop::option::of(0..k), n_judges);
            (Just(k), rows, constant, 0usize..3).prop_map(|(k, mut rows, constant, empty)| {
                for row in &mut rows {
                    for (v, c) in row.iter_mut().zip(&constant) {
                        if let (Some(v), Some(c)) = (v.as_mut(), c) {
                            *v = *c;
                        }
                    }
                }
                let width = constant.len();
                rows.extend(std::iter::repeat_n(vec![None; width], empty));
                (k, rows)
            })
        })
    }

    fn any_options() -> impl Strategy<Value = EmOptions> {
        (
            0usize..40,
            prop::sample::select(vec![0.0, 1e-8, 1e-3]),
            prop::sample::select(vec![0.0, 0.01, 1.0]),
        )
            .prop_map(|(max_iter, tolerance, smoothing)| EmOptions {
                max_iter,
                tolerance,
                smoothing,
            })
    }

    proptest! {
        #[test]
        fn em_outputs_are_distributions((k, items) in vote_matrix(), opts in any_options(), seed_it in any::<bool>()) {
            let judges = names(items.first().map_or(3, Vec::len));
            let seed = Reliability::uninformed(k);
            let r = estimate(k, &judges, &items, seed_it.then_some(&seed), &opts);
            prop_assert_eq!(r.posteriors.len(), items.len());
            prop_assert!(r.log_likelihood.is_finite() && r.log_likelihood <= 1e-12, "{}", r.log_likelihood);
            prop_assert!(r.iterations <= opts.max_iter);
            for (p, row) in r.posteriors.iter().zip(&items) {
                prop_assert_eq!(p.len(), k);
                let sum: f64 = p.iter().sum();
                prop_assert!(p.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x)), "{:?}", p);
                prop_assert!((sum - 1.0).abs() < 1e-9, "{:?}", p);
                if row.iter().all(Option::is_none) {
                    prop_assert_eq!(p, &r.reliability.prior);
                }
            }
            prop_assert!(r.reliability.validate().is_ok(), "{:?}", r.reliability.validate());
            if opts.smoothing > 0.0 {
                let all: Vec<f64> = r.reliability.confusion.values().flatten().flatten().copied().collect();
                prop_assert!(all.iter().all(|x| *x > 0.0), "smoothing leaves no zero: {:?}", all);
            }
        }

        #[test]
        fn posterior_is_a_distribution(
            (k, items) in vote_matrix(),
            opts in any_options(),
            votes in prop::collection::vec((0usize..6, 0usize..5), 0..8),
        ) {
            let judges = names(items.first().map_or(3, Vec::len));
            let rel = estimate(k, &judges, &items, None, &opts).reliability;
            let named: Vec<String> = votes.iter().map(|(j, _)| format!("judge-{j}")).collect();
            let votes: Vec<(&str, usize)> = named.iter().map(String::as_str).zip(votes.iter().map(|(_, l)| *l)).collect();
            let p = posterior(&rel, &votes);
            prop_assert_eq!(p.len(), k);
            let sum: f64 = p.iter().sum();
            prop_assert!(p.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x)), "{:?}", p);
            prop_assert!((sum - 1.0).abs() < 1e-9, "{:?}", p);
        }

        #[test]
        fn from_counts_rows_sum_to_one(
            prior in prop::collection::vec(prop_oneof![0.0f64..1e6, Just(0.0), Just(f64::NAN)], 2..5),
            cells in prop::collection::vec(prop_oneof![0.0f64..1e6, Just(0.0), Just(-1.0)], 0..30),
            smoothing in prop_oneof![Just(0.0), 0.0f64..2.0],
        ) {
            let k = prior.len();
            let rows: Vec<Vec<f64>> = cells.chunks(k).map(<[f64]>::to_vec).collect();
            let counts = BTreeMap::from([("j".to_owned(), rows)]);
            let r = Reliability::from_counts(&prior, &counts, smoothing);
            prop_assert!(r.validate().is_ok(), "{:?}", r.validate());
        }
    }
}
