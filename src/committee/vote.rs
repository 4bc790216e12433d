//! Consensus per criterion from judge verdicts: collapses each judge's samples, checks
//! quorum, applies the committee's voting `Rule` and measures agreement.
//! Pure: no IO, no async. Must not know about judges' providers, caches, scoring or storage;
//! abstentions have already been filtered out by the caller.

use super::dawid_skene::{self, Reliability};
use crate::judge::Scale;
use crate::rubric::Verdict;

/// Two floating-point weights or means closer than this are treated as equal, so that a
/// tie written in config (`0.1 + 0.2` vs `0.3`) is still a tie after rounding error.
const EPS: f64 = 1e-9;

/// What a tie between equally supported verdicts resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TieRule {
    /// Resolve toward "not met" (the lowest tied presence).
    NotMet,
    /// Resolve toward "met" (the highest tied presence).
    Met,
    /// Do not resolve: the committee split and the caller escalates or abstains.
    Escalate,
}

impl TieRule {
    pub fn name(&self) -> &'static str {
        match self {
            TieRule::NotMet => "not_met",
            TieRule::Met => "met",
            TieRule::Escalate => "escalate",
        }
    }

    /// Inverse of [`TieRule::name`], for config.
    pub fn from_name(name: &str) -> Option<TieRule> {
        match name {
            "not_met" => Some(TieRule::NotMet),
            "met" => Some(TieRule::Met),
            "escalate" => Some(TieRule::Escalate),
            _ => None,
        }
    }
}

/// How the committee turns the judges' collapsed verdicts into one verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// The most common verdict.
    Majority { tie: TieRule },
    /// Binary: the verdict with the larger summed weight; graded: the weighted mean presence.
    Weighted { tie: TieRule },
    /// Every judge must agree, otherwise the committee split.
    Unanimous,
    /// k-of-n: the k-th highest presence (the default for safety and veto criteria).
    Any { k: usize },
    /// The mean presence rounded half up onto the scale.
    Mean,
    /// The lower median presence.
    Median,
    /// The class with the largest Dawid–Skene posterior given each judge's confusion
    /// matrix ([`VoteInput::reliability`]); without matrices, an unweighted majority.
    DawidSkene { tie: TieRule },
}

impl Rule {
    /// Every rule's config name, in the order error messages list them.
    pub const NAMES: [&'static str; 7] = [
        "majority",
        "weighted",
        "unanimous",
        "any",
        "mean",
        "median",
        "dawid_skene",
    ];

    /// The rule's config name: one of [`Rule::NAMES`]. The tie rule and k are configured
    /// separately (see [`Rule::from_name`]).
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Majority { .. } => "majority",
            Rule::Weighted { .. } => "weighted",
            Rule::Unanimous => "unanimous",
            Rule::Any { .. } => "any",
            Rule::Mean => "mean",
            Rule::Median => "median",
            Rule::DawidSkene { .. } => "dawid_skene",
        }
    }

    /// Inverse of [`Rule::name`], for config: `tie` is used by majority, weighted and
    /// dawid_skene, `k` by any; the others ignore them. None for an unknown name.
    pub fn from_name(name: &str, tie: TieRule, k: usize) -> Option<Rule> {
        match name {
            "majority" => Some(Rule::Majority { tie }),
            "weighted" => Some(Rule::Weighted { tie }),
            "unanimous" => Some(Rule::Unanimous),
            "any" => Some(Rule::Any { k }),
            "mean" => Some(Rule::Mean),
            "median" => Some(Rule::Median),
            "dawid_skene" => Some(Rule::DawidSkene { tie }),
            _ => None,
        }
    }
}

/// One judge's non-abstaining verdicts for one criterion.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeVotes {
    pub judge: String,
    pub weight: f64,
    pub verdicts: Vec<Verdict>,
}

/// Everything the committee needs to decide one criterion.
#[derive(Debug, Clone, PartialEq)]
pub struct VoteInput<'a> {
    pub scale: Scale,
    pub rule: Rule,
    pub quorum: usize,
    /// Decisions whose agreement falls below this become `Split`; 0.0 disables the check.
    pub min_agreement: f64,
    pub judges: &'a [JudgeVotes],
    /// Judges' confusion matrices for `Rule::DawidSkene` (ignored by the other rules).
    /// None, or a model whose `classes` does not fit the scale, means every judge gets
    /// the default matrix, which makes the rule an unweighted majority.
    pub reliability: Option<&'a Reliability>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `agreement` is the (weight) share of judges whose collapsed verdict is `verdict`.
    Decided {
        verdict: Verdict,
        agreement: f64,
    },
    /// The committee split (tie with Escalate, Unanimous disagreement, agreement below
    /// min_agreement, binary mean/median exactly 0.5). `agreement` is the largest bloc's share.
    Split {
        agreement: f64,
    },
    NoQuorum {
        have: usize,
        need: usize,
    },
}

/// A presence on the three-point grid counted in halves (0, 1 or 2), so that counting,
/// sorting and unweighted means are exact integer arithmetic rather than float comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Level(u8);

impl Level {
    const NONE: Level = Level(0);
    const HALF: Level = Level(1);
    const FULL: Level = Level(2);
    const ALL: [Level; 3] = [Level::NONE, Level::HALF, Level::FULL];

    fn of(verdict: Verdict) -> Level {
        // Derived from `presence()` so the verdict table stays in one place (verdict.rs).
        let p = verdict.presence();
        if p < 0.25 {
            Level::NONE
        } else if p < 0.75 {
            Level::HALF
        } else {
            Level::FULL
        }
    }

    fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Whether `verdict` belongs to `scale`; verdicts from another scale are ignored, not fatal.
fn fits(scale: Scale, verdict: Verdict) -> bool {
    matches!(
        (scale, verdict),
        (Scale::Binary, Verdict::Met(_))
            | (Scale::Credit, Verdict::Credit(_))
            | (Scale::Severity, Verdict::Severity(_))
    )
}

/// The verdict at `level` on `scale`; None for the midpoint of the binary scale.
fn verdict_at(scale: Scale, level: Level) -> Option<Verdict> {
    use crate::rubric::{Credit, Severity};
    let verdict = match (scale, level) {
        (Scale::Binary, Level::NONE) => Verdict::Met(false),
        (Scale::Binary, Level::FULL) => Verdict::Met(true),
        (Scale::Credit, Level::NONE) => Verdict::Credit(Credit::None),
        (Scale::Credit, Level::HALF) => Verdict::Credit(Credit::Partial),
        (Scale::Credit, Level::FULL) => Verdict::Credit(Credit::Full),
        (Scale::Severity, Level::NONE) => Verdict::Severity(Severity::None),
        (Scale::Severity, Level::HALF) => Verdict::Severity(Severity::Minor),
        (Scale::Severity, Level::FULL) => Verdict::Severity(Severity::Major),
        _ => return None,
    };
    Some(verdict)
}

/// Maps a presence in [0,1] onto `scale` (Binary: 1.0 -> Met(true), 0.0 -> Met(false);
/// Credit: 0/0.5/1; Severity: none/minor/major). None for values not exactly on the scale.
pub fn on_scale(scale: Scale, presence: f64) -> Option<Verdict> {
    let level = if presence == 0.0 {
        Level::NONE
    } else if presence == 0.5 {
        Level::HALF
    } else if presence == 1.0 {
        Level::FULL
    } else {
        return None;
    };
    verdict_at(scale, level)
}

/// One judge's samples after step 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collapsed {
    /// No on-scale verdicts: the judge abstained and takes no part, not even in agreement.
    Absent,
    /// A binary judge whose samples tied: it dilutes agreement but does not vote.
    Split,
    Voted(Level),
}

fn collapse_levels(scale: Scale, verdicts: &[Verdict]) -> Collapsed {
    let mut levels: Vec<Level> = verdicts
        .iter()
        .copied()
        .filter(|v| fits(scale, *v))
        .map(Level::of)
        .collect();
    if levels.is_empty() {
        return Collapsed::Absent;
    }
    if scale == Scale::Binary {
        let met = levels.iter().filter(|l| **l == Level::FULL).count();
        let not_met = levels.len() - met;
        return match met.cmp(&not_met) {
            std::cmp::Ordering::Greater => Collapsed::Voted(Level::FULL),
            std::cmp::Ordering::Less => Collapsed::Voted(Level::NONE),
            std::cmp::Ordering::Equal => Collapsed::Split,
        };
    }
    // Lower median, so an even split between two values never invents a value between them.
    levels.sort_unstable();
    levels
        .get((levels.len() - 1) / 2)
        .copied()
        .map_or(Collapsed::Absent, Collapsed::Voted)
}

/// Collapses one judge's samples (step 1). None when the judge gave no verdicts or split
/// evenly (binary).
pub fn collapse(scale: Scale, verdicts: &[Verdict]) -> Option<Verdict> {
    match collapse_levels(scale, verdicts) {
        Collapsed::Voted(level) => verdict_at(scale, level),
        Collapsed::Absent | Collapsed::Split => None,
    }
}

/// A judge that took part: its collapsed level (None when split) and its weight.
struct Ballot<'a> {
    judge: &'a str,
    level: Option<Level>,
    weight: f64,
}

/// A judge whose collapsed samples gave a level.
struct Voter<'a> {
    judge: &'a str,
    level: Level,
    weight: f64,
}

/// Resolves a tie between `low` and `high` per the tie rule; None means escalate.
fn break_tie(tie: TieRule, low: Level, high: Level) -> Option<Level> {
    match tie {
        TieRule::NotMet => Some(low),
        TieRule::Met => Some(high),
        TieRule::Escalate => None,
    }
}

/// The level with the largest tally; ties between levels go to the tie rule.
fn plurality(tally: [f64; 3], tie: TieRule) -> Option<Level> {
    let max = tally.iter().copied().fold(0.0, f64::max);
    let tied: Vec<Level> = Level::ALL
        .into_iter()
        .filter(|l| tally[l.index()] > 0.0 && tally[l.index()] >= max - EPS)
        .collect();
    match tied.as_slice() {
        [] => None,
        [only] => Some(*only),
        [low, .., high] => break_tie(tie, *low, *high),
    }
}

/// Weighted mean presence (in halves) rounded to the nearest grid point; exact midpoints
/// go to the tie rule.
fn round_weighted(halves: f64, tie: TieRule) -> Option<Level> {
    if (halves - 0.5).abs() <= EPS {
        break_tie(tie, Level::NONE, Level::HALF)
    } else if (halves - 1.5).abs() <= EPS {
        break_tie(tie, Level::HALF, Level::FULL)
    } else if halves < 0.5 {
        Some(Level::NONE)
    } else if halves < 1.5 {
        Some(Level::HALF)
    } else {
        Some(Level::FULL)
    }
}

/// The Dawid–Skene classes of a scale, in class order: binary not met = 0, met = 1;
/// three-level scales use the level itself (0, 1, 2).
fn classes(scale: Scale) -> &'static [Level] {
    match scale {
        Scale::Binary => &[Level::NONE, Level::FULL],
        Scale::Credit | Scale::Severity => &Level::ALL,
    }
}

/// The level whose class has the largest posterior; ties go to the tie rule exactly as
/// under `Majority`, by running the posteriors through the same plurality.
fn dawid_skene_level(
    scale: Scale,
    tie: TieRule,
    reliability: Option<&Reliability>,
    voters: &[Voter<'_>],
) -> Option<Level> {
    let levels = classes(scale);
    let uninformed;
    let rel = match reliability.filter(|r| r.classes == levels.len()) {
        Some(rel) => rel,
        None => {
            uninformed = Reliability::uninformed(levels.len());
            &uninformed
        }
    };
    // Every voter's level is on the scale (collapse filtered the rest), so it has a class.
    let votes: Vec<(&str, usize)> = voters
        .iter()
        .filter_map(|v| {
            let class = levels.iter().position(|l| *l == v.level)?;
            Some((v.judge, class))
        })
        .collect();
    let posterior = dawid_skene::posterior(rel, &votes);
    let mut tally = [0.0; 3];
    for (level, p) in levels.iter().zip(&posterior) {
        tally[level.index()] = *p;
    }
    plurality(tally, tie)
}

/// Step 3: the rule applied to the voting levels and weights.
/// None means the committee split.
fn apply_rule(
    scale: Scale,
    rule: Rule,
    reliability: Option<&Reliability>,
    voters: &[Voter<'_>],
) -> Option<Level> {
    let mut levels: Vec<Level> = voters.iter().map(|v| v.level).collect();
    levels.sort_unstable();
    let n = levels.len();
    if n == 0 {
        // Quorum is at least one, so this is unreachable from `decide`; it keeps the
        // arithmetic below (`n - k`, `n - 1`) free of underflow by construction.
        return None;
    }
    let binary = scale == Scale::Binary;
    match rule {
        Rule::Majority { tie } => {
            let mut tally = [0.0; 3];
            for level in &levels {
                tally[level.index()] += 1.0;
            }
            plurality(tally, tie)
        }
        Rule::Weighted { tie } if binary => {
            let mut tally = [0.0; 3];
            for v in voters {
                tally[v.level.index()] += v.weight;
            }
            plurality(tally, tie)
        }
        Rule::Weighted { tie } => {
            let total: f64 = voters.iter().map(|v| v.weight).sum();
            if total <= 0.0 {
                return None;
            }
            let sum: f64 = voters.iter().map(|v| f64::from(v.level.0) * v.weight).sum();
            round_weighted(sum / total, tie)
        }
        Rule::Unanimous => {
            let first = *levels.first()?;
            levels.iter().all(|l| *l == first).then_some(first)
        }
        Rule::Any { k } => {
            // k counts from the top; a k larger than the committee means "all of them".
            let k = k.clamp(1, n);
            levels.get(n - k).copied()
        }
        Rule::Mean => {
            // The mean in halves is sum / n; comparing 2 * sum with n (0.25) and 3n (0.75)
            // keeps the rounding exact, and `<` makes both midpoints round half up.
            let sum: usize = levels.iter().map(|l| l.index()).sum();
            if binary {
                match sum.cmp(&n) {
                    std::cmp::Ordering::Greater => Some(Level::FULL),
                    std::cmp::Ordering::Less => Some(Level::NONE),
                    std::cmp::Ordering::Equal => None,
                }
            } else if 2 * sum < n {
                Some(Level::NONE)
            } else if 2 * sum < 3 * n {
                Some(Level::HALF)
            } else {
                Some(Level::FULL)
            }
        }
        Rule::Median => {
            let met = levels.iter().filter(|l| **l == Level::FULL).count();
            if binary && 2 * met == n {
                None
            } else {
                levels.get((n - 1) / 2).copied()
            }
        }
        Rule::DawidSkene { tie } => dawid_skene_level(scale, tie, reliability, voters),
    }
}

/// Judge weights only count under `Weighted` (`DawidSkene` weighs judges by their
/// confusion matrices instead, so its agreement is an unweighted share); a weight that is
/// not a positive finite number (config should have rejected it) counts as zero rather
/// than poisoning the sums.
fn weight_of(rule: Rule, judge: &JudgeVotes) -> f64 {
    match rule {
        Rule::Weighted { .. } if judge.weight.is_finite() && judge.weight > 0.0 => judge.weight,
        Rule::Weighted { .. } => 0.0,
        _ => 1.0,
    }
}

/// Share of the participating weight held by judges whose collapsed level is `level`.
fn share(ballots: &[Ballot<'_>], level: Level) -> f64 {
    let total: f64 = ballots.iter().map(|b| b.weight).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let bloc: f64 = ballots
        .iter()
        .filter(|b| b.level == Some(level))
        .map(|b| b.weight)
        .sum();
    (bloc / total).clamp(0.0, 1.0)
}

/// Forms the committee's consensus for one criterion (steps 1 to 3 plus the agreement
/// threshold).
pub fn decide(input: &VoteInput<'_>) -> Outcome {
    let ballots: Vec<Ballot> = input
        .judges
        .iter()
        .filter_map(|judge| {
            let level = match collapse_levels(input.scale, &judge.verdicts) {
                Collapsed::Absent => return None,
                Collapsed::Split => None,
                Collapsed::Voted(level) => Some(level),
            };
            Some(Ballot {
                judge: &judge.judge,
                level,
                weight: weight_of(input.rule, judge),
            })
        })
        .collect();
    let voters: Vec<Voter<'_>> = ballots
        .iter()
        .filter_map(|b| {
            b.level.map(|level| Voter {
                judge: b.judge,
                level,
                weight: b.weight,
            })
        })
        .collect();

    // With no voters there is nothing to decide, so a configured quorum of 0 still needs one.
    let need = input.quorum.max(1);
    if voters.len() < need {
        return Outcome::NoQuorum {
            have: voters.len(),
            need,
        };
    }

    let decided = apply_rule(input.scale, input.rule, input.reliability, &voters)
        .and_then(|level| verdict_at(input.scale, level).map(|v| (level, v)));
    match decided {
        Some((level, verdict)) => {
            let agreement = share(&ballots, level);
            // The tolerance keeps a threshold written as the exact share (e.g. 0.6 for 3 of 5)
            // from failing on rounding error in the weight sums.
            if agreement < input.min_agreement - EPS {
                Outcome::Split { agreement }
            } else {
                Outcome::Decided { verdict, agreement }
            }
        }
        None => {
            let agreement = Level::ALL
                .into_iter()
                .map(|l| share(&ballots, l))
                .fold(0.0, f64::max);
            Outcome::Split { agreement }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rubric::{Credit, Severity};
    use proptest::prelude::*;

    const Y: Verdict = Verdict::Met(true);
    const N: Verdict = Verdict::Met(false);
    const C0: Verdict = Verdict::Credit(Credit::None);
    const CH: Verdict = Verdict::Credit(Credit::Partial);
    const C1: Verdict = Verdict::Credit(Credit::Full);
    const S0: Verdict = Verdict::Severity(Severity::None);
    const S1: Verdict = Verdict::Severity(Severity::Minor);
    const S2: Verdict = Verdict::Severity(Severity::Major);

    const MAJ_NOT: Rule = Rule::Majority {
        tie: TieRule::NotMet,
    };
    const MAJ_MET: Rule = Rule::Majority { tie: TieRule::Met };
    const MAJ_ESC: Rule = Rule::Majority {
        tie: TieRule::Escalate,
    };
    const W_NOT: Rule = Rule::Weighted {
        tie: TieRule::NotMet,
    };
    const W_MET: Rule = Rule::Weighted { tie: TieRule::Met };
    const W_ESC: Rule = Rule::Weighted {
        tie: TieRule::Escalate,
    };

    fn d(verdict: Verdict, agreement: f64) -> Outcome {
        Outcome::Decided { verdict, agreement }
    }

    fn split(agreement: f64) -> Outcome {
        Outcome::Split { agreement }
    }

    fn nq(have: usize, need: usize) -> Outcome {
        Outcome::NoQuorum { have, need }
    }

    fn judges(weighted: &[(f64, Vec<Verdict>)]) -> Vec<JudgeVotes> {
        weighted
            .iter()
            .enumerate()
            .map(|(i, (weight, verdicts))| JudgeVotes {
                judge: format!("judge-{i}"),
                weight: *weight,
                verdicts: verdicts.clone(),
            })
            .collect()
    }

    /// Rows of unit-weight judges.
    fn unit(verdicts: &[&[Verdict]]) -> Vec<(f64, Vec<Verdict>)> {
        verdicts.iter().map(|v| (1.0, v.to_vec())).collect()
    }

    /// Rows of judges with the given weights.
    fn wj(weights: &[f64], verdicts: &[&[Verdict]]) -> Vec<(f64, Vec<Verdict>)> {
        weights
            .iter()
            .zip(verdicts)
            .map(|(w, v)| (*w, v.to_vec()))
            .collect()
    }

    fn outcome_close(got: &Outcome, want: &Outcome) -> bool {
        match (got, want) {
            (
                Outcome::Decided {
                    verdict: a,
                    agreement: x,
                },
                Outcome::Decided {
                    verdict: b,
                    agreement: y,
                },
            ) => a == b && (x - y).abs() < 1e-9,
            (Outcome::Split { agreement: x }, Outcome::Split { agreement: y }) => {
                (x - y).abs() < 1e-9
            }
            _ => got == want,
        }
    }

    struct Case {
        name: &'static str,
        scale: Scale,
        rule: Rule,
        quorum: usize,
        min_agreement: f64,
        judges: Vec<(f64, Vec<Verdict>)>,
        expected: Outcome,
    }

    fn case(
        name: &'static str,
        scale: Scale,
        rule: Rule,
        quorum: usize,
        judges: Vec<(f64, Vec<Verdict>)>,
        expected: Outcome,
    ) -> Case {
        Case {
            name,
            scale,
            rule,
            quorum,
            min_agreement: 0.0,
            judges,
            expected,
        }
    }

    fn check(c: &Case) {
        let judges = judges(&c.judges);
        let input = VoteInput {
            scale: c.scale,
            rule: c.rule,
            quorum: c.quorum,
            min_agreement: c.min_agreement,
            judges: &judges,
            reliability: None,
        };
        let got = decide(&input);
        assert!(
            outcome_close(&got, &c.expected),
            "{}: got {got:?}, want {:?}",
            c.name,
            c.expected
        );
    }

    const B: Scale = Scale::Binary;
    const CR: Scale = Scale::Credit;
    const SV: Scale = Scale::Severity;
    const TWO_THIRDS: f64 = 2.0 / 3.0;

    #[test]
    fn decide_table() {
        #[rustfmt::skip]
        let cases = vec![
            // Majority, binary.
            case("majority 2-1 met", B, MAJ_NOT, 1, unit(&[&[Y], &[Y], &[N]]), d(Y, TWO_THIRDS)),
            case("majority 1-2 not met", B, MAJ_MET, 1, unit(&[&[Y], &[N], &[N]]), d(N, TWO_THIRDS)),
            case("majority tie -> not met", B, MAJ_NOT, 1, unit(&[&[Y], &[N]]), d(N, 0.5)),
            case("majority tie -> met", B, MAJ_MET, 1, unit(&[&[Y], &[N]]), d(Y, 0.5)),
            case("majority tie -> escalate", B, MAJ_ESC, 1, unit(&[&[Y], &[N]]), split(0.5)),
            case("unanimous committee", B, MAJ_ESC, 3, unit(&[&[Y], &[Y], &[Y]]), d(Y, 1.0)),
            // Within-judge self-consistency: 2-1 samples collapse to the majority sample.
            case("self-consistency 2-1", B, MAJ_ESC, 2, unit(&[&[Y, N, Y], &[N, Y, Y], &[N, N, Y]]), d(Y, TWO_THIRDS)),
            // A judge split 1-1 does not vote but dilutes agreement.
            case("within-judge split", B, MAJ_ESC, 2, unit(&[&[Y, N], &[Y], &[Y]]), d(Y, TWO_THIRDS)),
            case("within-judge split loses quorum", B, MAJ_ESC, 3, unit(&[&[Y, N], &[Y], &[Y]]), nq(2, 3)),
            case("empty judge loses quorum", B, MAJ_ESC, 2, unit(&[&[], &[Y]]), nq(1, 2)),
            case("empty judge not in agreement", B, MAJ_ESC, 1, unit(&[&[], &[Y]]), d(Y, 1.0)),
            case("nobody voted, quorum 0", B, MAJ_ESC, 0, unit(&[&[], &[Y, N]]), nq(0, 1)),
            case("off-scale verdicts ignored", B, MAJ_ESC, 2, unit(&[&[C1, S2], &[Y]]), nq(1, 2)),
            case("off-scale sample dropped", B, MAJ_ESC, 1, unit(&[&[C1, N], &[N]]), d(N, 1.0)),
            // Majority, graded: the most common value.
            case("graded majority", CR, MAJ_ESC, 1, unit(&[&[CH], &[CH], &[C1]]), d(CH, TWO_THIRDS)),
            case("graded tie -> lowest", SV, MAJ_NOT, 1, unit(&[&[S1], &[S2], &[S0], &[S2], &[S1]]), d(S1, 0.4)),
            case("graded tie -> highest", SV, MAJ_MET, 1, unit(&[&[S1], &[S2], &[S0], &[S2], &[S1]]), d(S2, 0.4)),
            case("graded tie -> escalate", CR, MAJ_ESC, 1, unit(&[&[C0], &[C1]]), split(0.5)),
            case("graded median sample", CR, MAJ_ESC, 1, unit(&[&[C0, C1, CH]]), d(CH, 1.0)),
            case("graded lower median sample", CR, MAJ_ESC, 1, unit(&[&[C1, CH, C1, C0]]), d(CH, 1.0)),
            // Weighted, binary.
            case("heavy judge outvotes two light", B, W_ESC, 1, wj(&[3.0, 1.0, 1.0], &[&[Y], &[N], &[N]]), d(Y, 0.6)),
            case("weights ignored by majority", B, MAJ_ESC, 1, wj(&[3.0, 1.0, 1.0], &[&[Y], &[N], &[N]]), d(N, TWO_THIRDS)),
            case("weighted tie -> not met", B, W_NOT, 1, wj(&[2.0, 1.0, 1.0], &[&[Y], &[N], &[N]]), d(N, 0.5)),
            case("weighted tie -> met", B, W_MET, 1, wj(&[2.0, 1.0, 1.0], &[&[Y], &[N], &[N]]), d(Y, 0.5)),
            case("weighted tie within eps", B, W_ESC, 1, wj(&[0.3, 0.1, 0.2], &[&[Y], &[N], &[N]]), split(0.5)),
            case("weighted split judge dilutes", B, W_ESC, 1, wj(&[3.0, 1.0], &[&[Y], &[N, Y]]), d(Y, 0.75)),
            case("bad weight counts as zero", B, W_ESC, 2, wj(&[f64::NAN, 1.0], &[&[N], &[Y]]), d(Y, 1.0)),
            // Weighted, graded: weighted mean rounded to the nearest point.
            case("weighted mean rounds up", CR, W_ESC, 1, wj(&[5.0, 1.0, 1.0], &[&[C1], &[C0], &[CH]]), d(C1, 5.0 / 7.0)),
            case("weighted mean rounds to half", CR, W_ESC, 1, wj(&[3.0, 1.0, 1.0], &[&[C1], &[C0], &[CH]]), d(CH, 0.2)),
            case("weighted mean to half", SV, W_ESC, 1, wj(&[1.0, 1.0, 1.0], &[&[S2], &[S0], &[S1]]), d(S1, 1.0 / 3.0)),
            case("weighted .75 -> up", CR, W_MET, 1, wj(&[1.0, 1.0], &[&[C1], &[CH]]), d(C1, 0.5)),
            case("weighted .75 -> down", CR, W_NOT, 1, wj(&[1.0, 1.0], &[&[C1], &[CH]]), d(CH, 0.5)),
            case("weighted .25 -> escalate", CR, W_ESC, 1, wj(&[1.0, 1.0], &[&[C0], &[CH]]), split(0.5)),
            case("weighted .25 -> down", SV, W_NOT, 1, wj(&[3.0, 1.0], &[&[S0], &[S2]]), d(S0, 0.75)),
            // Unanimous.
            case("unanimous agrees", B, Rule::Unanimous, 1, unit(&[&[N], &[N]]), d(N, 1.0)),
            case("unanimous disagrees", B, Rule::Unanimous, 1, unit(&[&[N], &[N], &[Y]]), split(TWO_THIRDS)),
            case("unanimous graded", SV, Rule::Unanimous, 1, unit(&[&[S1], &[S1, S1, S2]]), d(S1, 1.0)),
            case("unanimous ignores split judge", B, Rule::Unanimous, 1, unit(&[&[Y], &[Y], &[N, Y]]), d(Y, TWO_THIRDS)),
            // Any (k-of-n).
            case("any k=1 on 1-of-3", B, Rule::Any { k: 1 }, 1, unit(&[&[N], &[Y], &[N]]), d(Y, 1.0 / 3.0)),
            case("any k=2 on 1-of-3", B, Rule::Any { k: 2 }, 1, unit(&[&[N], &[Y], &[N]]), d(N, TWO_THIRDS)),
            case("any k=2 on 2-of-3", B, Rule::Any { k: 2 }, 1, unit(&[&[Y], &[N], &[Y]]), d(Y, TWO_THIRDS)),
            case("any k above n -> all", B, Rule::Any { k: 5 }, 1, unit(&[&[Y], &[N], &[Y]]), d(N, 1.0 / 3.0)),
            case("any k=0 as k=1", B, Rule::Any { k: 0 }, 1, unit(&[&[N], &[Y]]), d(Y, 0.5)),
            case("any graded k=1", SV, Rule::Any { k: 1 }, 1, unit(&[&[S0], &[S1], &[S0]]), d(S1, 1.0 / 3.0)),
            case("any graded k=2", SV, Rule::Any { k: 2 }, 1, unit(&[&[S2], &[S1], &[S0]]), d(S1, 1.0 / 3.0)),
            // Mean.
            case("mean binary met", B, Rule::Mean, 1, unit(&[&[Y], &[Y], &[N]]), d(Y, TWO_THIRDS)),
            case("mean binary 0.5 splits", B, Rule::Mean, 1, unit(&[&[Y], &[N]]), split(0.5)),
            case("mean graded rounds up", CR, Rule::Mean, 1, unit(&[&[C1], &[C1], &[C1], &[C1], &[C0]]), d(C1, 0.8)),
            case("mean graded rounds to half", CR, Rule::Mean, 1, unit(&[&[C1], &[C1], &[C0]]), d(CH, 0.0)),
            case("mean graded .25 half up", CR, Rule::Mean, 1, unit(&[&[CH], &[C0]]), d(CH, 0.5)),
            case("mean graded .75 half up", SV, Rule::Mean, 1, unit(&[&[S1], &[S2]]), d(S2, 0.5)),
            case("mean graded to none", SV, Rule::Mean, 1, unit(&[&[S0], &[S0], &[S0], &[S1]]), d(S0, 0.75)),
            case("mean graded no bloc", CR, Rule::Mean, 1, unit(&[&[C0], &[C1]]), d(CH, 0.0)),
            // Median.
            case("median graded odd", CR, Rule::Median, 1, unit(&[&[C1], &[C0], &[CH]]), d(CH, 1.0 / 3.0)),
            case("median graded lower", SV, Rule::Median, 1, unit(&[&[S2], &[S0], &[S1], &[S2]]), d(S1, 0.25)),
            case("median binary", B, Rule::Median, 1, unit(&[&[Y], &[N], &[Y], &[Y]]), d(Y, 0.75)),
            case("median binary even split", B, Rule::Median, 1, unit(&[&[Y], &[N], &[Y], &[N]]), split(0.5)),
        ];
        for c in &cases {
            check(c);
        }
    }

    #[test]
    fn min_agreement() {
        let two_one = unit(&[&[Y], &[Y], &[N]]);
        let cases = [
            (0.0, d(Y, TWO_THIRDS)),
            (0.6, d(Y, TWO_THIRDS)),
            (TWO_THIRDS, d(Y, TWO_THIRDS)),
            (0.75, split(TWO_THIRDS)),
            (1.0, split(TWO_THIRDS)),
        ];
        for (threshold, expected) in cases {
            check(&Case {
                name: "min_agreement on 2-1",
                scale: B,
                rule: MAJ_ESC,
                quorum: 1,
                min_agreement: threshold,
                judges: two_one.clone(),
                expected,
            });
        }
        // Weight sums with rounding error still meet a threshold equal to the exact share.
        check(&Case {
            name: "min_agreement within eps",
            scale: B,
            rule: W_ESC,
            quorum: 1,
            min_agreement: 0.75,
            judges: wj(&[0.1, 0.2, 0.1], &[&[Y], &[Y], &[N]]),
            expected: d(Y, 0.75),
        });
    }

    #[test]
    fn collapse_table() {
        let cases: [(Scale, &[Verdict], Option<Verdict>); 10] = [
            (B, &[], None),
            (B, &[Y], Some(Y)),
            (B, &[Y, N], None),
            (B, &[Y, N, N], Some(N)),
            (B, &[Y, C1, S2], Some(Y)),
            (CR, &[Y, N], None),
            (CR, &[C1, C0], Some(C0)),
            (CR, &[C1, CH, C1], Some(C1)),
            (SV, &[S2, S0, S1, S1], Some(S1)),
            (SV, &[S2, S0, C1], Some(S0)),
        ];
        for (scale, verdicts, expected) in cases {
            assert_eq!(
                collapse(scale, verdicts),
                expected,
                "{scale:?} {verdicts:?}"
            );
        }
    }

    #[test]
    fn on_scale_table() {
        let cases = [
            (B, 0.0, Some(N)),
            (B, 1.0, Some(Y)),
            (B, 0.5, None),
            (B, 0.3, None),
            (CR, 0.0, Some(C0)),
            (CR, 0.5, Some(CH)),
            (CR, 1.0, Some(C1)),
            (CR, 0.75, None),
            (SV, 0.0, Some(S0)),
            (SV, 0.5, Some(S1)),
            (SV, 1.0, Some(S2)),
            (SV, f64::NAN, None),
            (SV, -1.0, None),
        ];
        for (scale, presence, expected) in cases {
            assert_eq!(on_scale(scale, presence), expected, "{scale:?} {presence}");
        }
        // on_scale inverts presence for every verdict on its own scale.
        for (scale, v) in [
            (B, Y),
            (B, N),
            (CR, C0),
            (CR, CH),
            (CR, C1),
            (SV, S0),
            (SV, S1),
            (SV, S2),
        ] {
            assert_eq!(on_scale(scale, v.presence()), Some(v));
        }
    }

    #[test]
    fn names_round_trip() {
        let rules = [
            MAJ_ESC,
            Rule::Weighted { tie: TieRule::Met },
            Rule::Unanimous,
            Rule::Any { k: 2 },
            Rule::Mean,
            Rule::Median,
            Rule::DawidSkene {
                tie: TieRule::Escalate,
            },
        ];
        assert_eq!(rules.map(|r| r.name()), Rule::NAMES);
        for rule in rules {
            let (tie, k) = match rule {
                Rule::Majority { tie } | Rule::Weighted { tie } | Rule::DawidSkene { tie } => {
                    (tie, 1)
                }
                Rule::Any { k } => (TieRule::NotMet, k),
                _ => (TieRule::NotMet, 1),
            };
            assert_eq!(Rule::from_name(rule.name(), tie, k), Some(rule));
        }
        for tie in [TieRule::NotMet, TieRule::Met, TieRule::Escalate] {
            assert_eq!(TieRule::from_name(tie.name()), Some(tie));
        }
        assert_eq!(Rule::from_name("plurality", TieRule::Met, 1), None);
        assert_eq!(TieRule::from_name("coin_flip"), None);
    }

    fn any_verdict() -> impl Strategy<Value = Verdict> {
        prop::sample::select(vec![Y, N, C0, CH, C1, S0, S1, S2])
    }

    fn any_scale() -> impl Strategy<Value = Scale> {
        prop::sample::select(vec![B, CR, SV])
    }

    fn any_tie() -> impl Strategy<Value = TieRule> {
        prop::sample::select(vec![TieRule::NotMet, TieRule::Met, TieRule::Escalate])
    }

    fn any_rule() -> impl Strategy<Value = Rule> {
        prop_oneof![
            any_tie().prop_map(|tie| Rule::Majority { tie }),
            any_tie().prop_map(|tie| Rule::Weighted { tie }),
            Just(Rule::Unanimous),
            (0usize..6).prop_map(|k| Rule::Any { k }),
            Just(Rule::Mean),
            Just(Rule::Median),
            any_tie().prop_map(|tie| Rule::DawidSkene { tie }),
        ]
    }

    /// Judges whose verdicts mostly fit `scale`, with some off-scale noise and bad weights.
    fn any_judges(scale: Scale) -> impl Strategy<Value = Vec<JudgeVotes>> {
        let on_scale: Vec<Verdict> = [Y, N, C0, CH, C1, S0, S1, S2]
            .into_iter()
            .filter(|v| fits(scale, *v))
            .collect();
        let verdict = prop_oneof![4 => prop::sample::select(on_scale), 1 => any_verdict()];
        let weight = prop_oneof![8 => 0.01f64..10.0, 1 => Just(0.0), 1 => Just(f64::NAN)];
        prop::collection::vec((weight, prop::collection::vec(verdict, 0..4)), 0..7).prop_map(
            |rows| {
                rows.into_iter()
                    .enumerate()
                    .map(|(i, (weight, verdicts))| JudgeVotes {
                        judge: format!("judge-{i}"),
                        weight,
                        verdicts,
                    })
                    .collect()
            },
        )
    }

    fn scale_and_judges() -> impl Strategy<Value = (Scale, Vec<JudgeVotes>)> {
        any_scale().prop_flat_map(|scale| (Just(scale), any_judges(scale)))
    }

    const DS_NOT: Rule = Rule::DawidSkene {
        tie: TieRule::NotMet,
    };
    const DS_MET: Rule = Rule::DawidSkene { tie: TieRule::Met };
    const DS_ESC: Rule = Rule::DawidSkene {
        tie: TieRule::Escalate,
    };

    /// judge-0 is right 95% of the time, judge-1 and judge-2 flip coins; `prior` is the
    /// prior over classes, which also sets the model's number of classes.
    fn reliability(prior: &[f64]) -> Reliability {
        let k = prior.len();
        let reliable: Vec<Vec<f64>> = (0..k)
            .map(|c| {
                (0..k)
                    .map(|l| if c == l { 0.95 } else { 0.05 / (k - 1) as f64 })
                    .collect()
            })
            .collect();
        let coin = vec![vec![1.0 / k as f64; k]; k];
        let confusion = [
            ("judge-0", reliable),
            ("judge-1", coin.clone()),
            ("judge-2", coin),
        ]
        .into_iter()
        .map(|(j, m)| (j.to_owned(), m))
        .collect();
        let rel = Reliability {
            classes: k,
            prior: prior.to_vec(),
            confusion,
        };
        assert_eq!(rel.validate(), Ok(()));
        rel
    }

    #[test]
    fn dawid_skene_table() {
        let even2 = reliability(&[0.5, 0.5]);
        let even3 = reliability(&[1.0 / 3.0; 3]);
        let skewed = Reliability {
            prior: vec![0.9, 0.1],
            ..Reliability::uninformed(2)
        };
        let third = 1.0 / 3.0;
        // (case, scale, rule, min_agreement, reliability, judges, expected)
        type Row<'a> = (
            &'a str,
            Scale,
            Rule,
            f64,
            Option<&'a Reliability>,
            Vec<(f64, Vec<Verdict>)>,
            Outcome,
        );
        #[rustfmt::skip]
        let cases: Vec<Row> = vec![
            ("reliable judge outvotes two coins", B, DS_ESC, 0.0, Some(&even2), unit(&[&[Y], &[N], &[N]]), d(Y, third)),
            ("reliable judge says not met", B, DS_ESC, 0.0, Some(&even2), unit(&[&[N], &[Y], &[Y]]), d(N, third)),
            ("no reliability: majority", B, DS_ESC, 0.0, None, unit(&[&[Y], &[N], &[N]]), d(N, TWO_THIRDS)),
            ("classes do not fit: majority", B, DS_ESC, 0.0, Some(&even3), unit(&[&[Y], &[N], &[N]]), d(N, TWO_THIRDS)),
            ("weights ignored", B, DS_ESC, 0.0, None, wj(&[5.0, 1.0, 1.0], &[&[Y], &[N], &[N]]), d(N, TWO_THIRDS)),
            ("coins alone tie -> escalate", B, DS_ESC, 0.0, Some(&even2), unit(&[&[], &[Y], &[N]]), split(0.5)),
            ("coins alone tie -> not met", B, DS_NOT, 0.0, Some(&even2), unit(&[&[], &[Y], &[N]]), d(N, 0.5)),
            ("coins alone tie -> met", B, DS_MET, 0.0, Some(&even2), unit(&[&[], &[Y], &[N]]), d(Y, 0.5)),
            ("one coin: the prior", B, DS_ESC, 0.0, Some(&even2), unit(&[&[], &[Y]]), split(1.0)),
            ("prior outweighs one unknown judge", B, DS_ESC, 0.0, Some(&skewed), unit(&[&[Y]]), d(N, 0.0)),
            ("min_agreement splits", B, DS_ESC, 0.5, Some(&even2), unit(&[&[Y], &[N], &[N]]), split(third)),
            ("within-judge split dilutes", B, DS_ESC, 0.0, None, unit(&[&[Y, N], &[Y]]), d(Y, 0.5)),
            ("graded reliable judge", CR, DS_ESC, 0.0, Some(&even3), unit(&[&[C1], &[C0], &[C0]]), d(C1, third)),
            ("graded reliable partial", SV, DS_ESC, 0.0, Some(&even3), unit(&[&[S1], &[S2], &[S0]]), d(S1, third)),
            ("graded no reliability", CR, DS_ESC, 0.0, None, unit(&[&[CH], &[CH], &[C1]]), d(CH, TWO_THIRDS)),
            ("graded binary model: majority", SV, DS_ESC, 0.0, Some(&even2), unit(&[&[S1], &[S2], &[S2]]), d(S2, TWO_THIRDS)),
            ("graded tie -> lowest", SV, DS_NOT, 0.0, None, unit(&[&[S1], &[S2], &[S0], &[S2], &[S1]]), d(S1, 0.4)),
            ("graded tie -> highest", SV, DS_MET, 0.0, None, unit(&[&[S1], &[S2], &[S0], &[S2], &[S1]]), d(S2, 0.4)),
            ("graded three-way tie -> highest", CR, DS_MET, 0.0, None, unit(&[&[C0], &[CH], &[C1]]), d(C1, third)),
        ];
        for (name, scale, rule, min_agreement, reliability, rows, expected) in cases {
            let judges = judges(&rows);
            let input = VoteInput {
                scale,
                rule,
                quorum: 1,
                min_agreement,
                judges: &judges,
                reliability,
            };
            let got = decide(&input);
            assert!(
                outcome_close(&got, &expected),
                "{name}: got {got:?}, want {expected:?}"
            );
        }
    }

    proptest! {
        /// Without usable matrices every judge is an equal, independent voter, so the
        /// rule is an unweighted majority with the same tie rule.
        #[test]
        fn dawid_skene_without_reliability_is_majority(
            (scale, judges) in scale_and_judges(),
            tie in any_tie(),
            quorum in 0usize..4,
            min_agreement in 0.0f64..1.0,
            mismatched in any::<bool>(),
        ) {
            let other = match scale {
                Scale::Binary => Reliability::uninformed(3),
                Scale::Credit | Scale::Severity => reliability(&[0.5, 0.5]),
            };
            let majority = VoteInput {
                scale,
                rule: Rule::Majority { tie },
                quorum,
                min_agreement,
                judges: &judges,
                reliability: None,
            };
            let ds = VoteInput {
                rule: Rule::DawidSkene { tie },
                reliability: mismatched.then_some(&other),
                ..majority.clone()
            };
            let (want, got) = (decide(&majority), decide(&ds));
            prop_assert!(outcome_close(&got, &want), "{got:?} vs majority {want:?}");
        }

        #[test]
        fn agreement_in_unit_interval(
            (scale, judges) in scale_and_judges(),
            rule in any_rule(),
            quorum in 0usize..4,
            min_agreement in 0.0f64..1.0,
        ) {
            let input = VoteInput { scale, rule, quorum, min_agreement, judges: &judges, reliability: None };
            match decide(&input) {
                Outcome::Decided { verdict, agreement } => {
                    prop_assert!((0.0..=1.0).contains(&agreement), "{agreement}");
                    prop_assert!(fits(scale, verdict), "{verdict:?} off {scale:?}");
                }
                Outcome::Split { agreement } => {
                    prop_assert!((0.0..=1.0).contains(&agreement), "{agreement}");
                }
                Outcome::NoQuorum { have, need } => prop_assert!(have < need),
            }
        }

        #[test]
        fn unanimous_all_equal_decides(
            v in any_verdict(),
            samples in prop::collection::vec(1usize..4, 1..6),
        ) {
            let scale = match v {
                Verdict::Met(_) => B,
                Verdict::Credit(_) => CR,
                Verdict::Severity(_) => SV,
            };
            let judges: Vec<JudgeVotes> = samples
                .iter()
                .enumerate()
                .map(|(i, n)| JudgeVotes { judge: format!("judge-{i}"), weight: 1.0, verdicts: vec![v; *n] })
                .collect();
            let input = VoteInput {
                scale,
                rule: Rule::Unanimous,
                quorum: judges.len(),
                min_agreement: 1.0,
                judges: &judges,
                reliability: None,
            };
            prop_assert_eq!(decide(&input), Outcome::Decided { verdict: v, agreement: 1.0 });
        }

        #[test]
        fn order_invariant(
            (scale, judges, shuffled) in scale_and_judges().prop_flat_map(|(scale, judges)| {
                (Just(scale), Just(judges.clone()), Just(judges).prop_shuffle())
            }),
            rule in prop_oneof![
                any_tie().prop_map(|tie| Rule::Majority { tie }),
                (0usize..6).prop_map(|k| Rule::Any { k }),
                Just(Rule::Median),
                any_tie().prop_map(|tie| Rule::DawidSkene { tie }),
            ],
            quorum in 0usize..4,
        ) {
            let a = VoteInput { scale, rule, quorum, min_agreement: 0.0, judges: &judges, reliability: None };
            let b = VoteInput { judges: &shuffled, ..a.clone() };
            let (x, y) = (decide(&a), decide(&b));
            prop_assert!(outcome_close(&x, &y), "{x:?} vs {y:?}");
        }
    }
}
