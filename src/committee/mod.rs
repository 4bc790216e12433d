//! The committee: fans each criterion out to every member judge (x `n_samples`),
//! through the verdict cache, under the item's deadline; collects `Ballot`s; forms a
//! `Consensus` per criterion with `vote` (pure); calls the escalation judge only when
//! the committee splits. A cancel token (a job's cancel) stops the fan-out: no judge
//! call starts once it fires, and the judgement as a whole is `Cancelled` (no
//! consensus, no escalation) rather than a report of abstentions. Must not know about
//! scoring policies or storage.

pub mod dawid_skene;
pub mod estimate;
pub mod vote;

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::cache::{CachedAnswer, KeyInputs, Source, VerdictCache, cache_key};
use crate::config::{CommitteeConfig, PromptMode};
use crate::item::Case;
use crate::judge::call::JudgeClient;
use crate::judge::prompt::Templates;
use crate::judge::{AbstainReason, ChatRequest, ChatRole, Expect, Scale};
use crate::rubric::{Credit, Criterion, Rubric, Severity, Verdict};
use vote::{JudgeVotes, Outcome, Rule, TieRule, VoteInput};

/// One judge's answer (or abstention) on one criterion, for one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Ballot {
    pub judge: String,
    pub sample: u32,
    pub escalation: bool,
    pub verdict: Option<Verdict>,
    pub abstained: Option<AbstainReason>,
    /// Why it abstained, in words (HTTP status, URL without secrets, the start of the
    /// provider's error body, the transport error, ...); `None` with a verdict.
    pub abstain_detail: Option<String>,
    pub explanation: String,
    pub latency_ms: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Part of `input_tokens` the provider billed at its cached price.
    pub cached_input_tokens: u64,
    /// Part of `output_tokens` spent on reasoning.
    pub reasoning_tokens: u64,
    pub cost_usd: f64,
    pub cached: bool,
    pub template_hash: String,
}

/// How the consensus on a criterion was reached (snake_case in `grade_report.v1`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ConsensusKind {
    Decided,
    /// The committee split and the escalation judge decided.
    Escalated,
    /// The committee split and nobody could decide: abstained.
    Split,
    /// Fewer than `quorum` judges gave a verdict: abstained.
    NoQuorum,
}

impl ConsensusKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsensusKind::Decided => "decided",
            ConsensusKind::Escalated => "escalated",
            ConsensusKind::Split => "split",
            ConsensusKind::NoQuorum => "no_quorum",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Consensus {
    pub criterion: String,
    pub verdict: Option<Verdict>,
    pub kind: ConsensusKind,
    /// Share of judges agreeing with the consensus (None when abstained).
    pub agreement: Option<f64>,
    pub ballots: Vec<Ballot>,
}

pub struct Member {
    pub client: Arc<JudgeClient>,
    pub weight: f64,
}

pub struct Committee {
    pub members: Vec<Member>,
    pub escalation: Option<Arc<JudgeClient>>,
    pub cfg: CommitteeConfig,
    pub templates: Arc<Templates>,
    pub cache: Arc<VerdictCache>,
    /// Judges' confusion matrices for the `dawid_skene` rule (ordinary and veto
    /// criteria alike); None gives every judge the default matrix.
    pub reliability: Option<Arc<dawid_skene::Reliability>>,
}

/// Inverts a verdict's polarity, so "any judge sees a violation" can be expressed
/// with the `any` rule for positive veto criteria too.
fn invert(v: Verdict) -> Verdict {
    match v {
        Verdict::Met(b) => Verdict::Met(!b),
        Verdict::Credit(Credit::None) => Verdict::Credit(Credit::Full),
        Verdict::Credit(Credit::Full) => Verdict::Credit(Credit::None),
        Verdict::Credit(Credit::Partial) => Verdict::Credit(Credit::Partial),
        Verdict::Severity(Severity::None) => Verdict::Severity(Severity::Major),
        Verdict::Severity(Severity::Major) => Verdict::Severity(Severity::None),
        Verdict::Severity(Severity::Minor) => Verdict::Severity(Severity::Minor),
    }
}

/// A judgement cut short by its cancel token: some judge call never started, so there is
/// no report to give (the caller leaves the item unfinished).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

/// How often a call is asked again when it shared a single flight with an identical
/// call of another (cancelled) job and got that job's cancellation instead of an answer.
const FOREIGN_CANCEL_RETRIES: usize = 3;

/// A call that did not give a verdict for every criterion it asked about. Not cached.
struct Failed {
    answers: Vec<Result<crate::judge::Parsed, AbstainReason>>,
    usage: crate::judge::Usage,
    template_hash: String,
    /// `CallResult::detail`: why the abstaining answers abstained.
    detail: Option<String>,
}

impl Failed {
    fn whole(reason: AbstainReason, n: usize, detail: String) -> Self {
        Failed {
            answers: vec![Err(reason); n.max(1)],
            usage: Default::default(),
            template_hash: String::new(),
            detail: Some(detail),
        }
    }
}

struct Ask<'a> {
    client: &'a Arc<JudgeClient>,
    escalation: bool,
    sample: u32,
    criteria: Vec<&'a Criterion>,
}

impl Committee {
    /// Judge calls worth keeping asked for at once: twice the largest judge's
    /// `max_concurrency`, so every judge's permits stay busy while answers come back,
    /// while the calls waiting for a permit stay few enough that no item's deadline runs
    /// out in the queue. Callers that admit items by this budget (`tribunal grade`,
    /// calibration runs) let the judges' own limits be the only throttle.
    ///
    /// A batch judge takes no permits for its batched calls; its batch files fill only
    /// while enough calls are outstanding, so it counts as `batch_max_requests` wide:
    /// one full file being filled while the one before it is with the provider.
    pub fn call_budget(&self) -> usize {
        let width = |c: &JudgeClient| match &c.batcher {
            Some(b) => c.cfg.limits.max_concurrency.max(b.cfg.max_requests),
            None => c.cfg.limits.max_concurrency,
        };
        let widest = self
            .members
            .iter()
            .map(|m| width(&m.client))
            .chain(self.escalation.iter().map(|e| width(e)))
            .max()
            .unwrap_or(1);
        widest.saturating_mul(2).max(1)
    }

    /// Judge calls one item asks of each member: `calls_per_member` of its criteria (a
    /// stored rubric reference not yet resolved counts as one criterion).
    pub fn item_calls(&self, item: &crate::item::Item) -> usize {
        let criteria = match &item.rubric {
            crate::item::RubricSource::Inline(r) => r.criteria.len(),
            crate::item::RubricSource::Reference { .. } => 1,
        };
        self.calls_per_member(criteria)
    }

    /// Whether any judge (member or escalation) sends job calls through provider
    /// batches, whose answers can take hours.
    pub fn batches(&self) -> bool {
        self.members.iter().any(|m| m.client.batcher.is_some())
            || self.escalation.iter().any(|e| e.batcher.is_some())
    }

    /// Calls one item with `criteria` criteria asks of each member judge.
    pub fn calls_per_member(&self, criteria: usize) -> usize {
        let per_sample = match self.cfg.prompt_mode {
            PromptMode::PerCriterion => criteria.max(1),
            PromptMode::Batched => 1,
        };
        per_sample.saturating_mul(self.cfg.n_samples.max(1) as usize)
    }

    pub fn simulated(&self) -> bool {
        self.members.iter().all(|m| m.client.simulated())
            && self.escalation.as_ref().is_none_or(|e| e.simulated())
    }

    /// Judges every criterion of `rubric` for one response. Returns one `Consensus` per
    /// criterion, in rubric order; failures are abstentions inside. `Cancelled` when
    /// `cancel` fired before every call it needed had started (calls already sent are
    /// awaited, so what they bill is counted and cached).
    pub async fn judge(
        &self,
        case: &Case,
        response: &str,
        rubric: &Rubric,
        reference: Option<&[Option<Verdict>]>,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Vec<Consensus>, Cancelled> {
        let mut asks = Vec::new();
        for m in &self.members {
            for sample in 0..self.cfg.n_samples {
                match self.cfg.prompt_mode {
                    PromptMode::PerCriterion => {
                        for c in &rubric.criteria {
                            asks.push(Ask {
                                client: &m.client,
                                escalation: false,
                                sample,
                                criteria: vec![c],
                            });
                        }
                    }
                    PromptMode::Batched => asks.push(Ask {
                        client: &m.client,
                        escalation: false,
                        sample,
                        criteria: rubric.criteria.iter().collect(),
                    }),
                }
            }
        }
        let results = futures::future::join_all(
            asks.iter()
                .map(|a| self.ask(a, case, response, rubric, reference, deadline, cancel)),
        )
        .await;
        let mut by_criterion: Vec<Vec<Ballot>> = vec![Vec::new(); rubric.criteria.len()];
        for ballots in results {
            let ballots = ballots?;
            for (idx, b) in ballots {
                if let Some(slot) = by_criterion.get_mut(idx) {
                    slot.push(b);
                }
            }
        }
        let mut out = Vec::with_capacity(rubric.criteria.len());
        for (criterion, ballots) in rubric.criteria.iter().zip(by_criterion) {
            out.push(
                self.consensus(
                    criterion, ballots, case, response, rubric, reference, deadline, cancel,
                )
                .await?,
            );
        }
        Ok(out)
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; a struct would only rename them"
    )]
    async fn consensus(
        &self,
        criterion: &Criterion,
        mut ballots: Vec<Ballot>,
        case: &Case,
        response: &str,
        rubric: &Rubric,
        reference: Option<&[Option<Verdict>]>,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Consensus, Cancelled> {
        let scale = Scale::of(criterion.kind);
        // Veto criteria use the veto rule in the safe direction: a violation counts when
        // at least k judges see it (for positive criteria, "not met" is the violation).
        // A rubric's own consensus choice overrides the committee's defaults.
        let spec = rubric.consensus.as_ref();
        let from_spec = |name: Option<&'static str>, k: usize| {
            let s = spec?;
            Rule::from_name(name?, TieRule::from_name(s.tie)?, k)
        };
        let (rule, positive_veto) = if criterion.veto {
            let r = from_spec(spec.and_then(|s| s.veto_rule), spec.map_or(1, |s| s.veto_k));
            (
                r.unwrap_or(self.cfg.veto_consensus),
                !criterion.kind.is_negative(),
            )
        } else {
            let r = from_spec(spec.and_then(|s| s.rule), spec.map_or(1, |s| s.k));
            (r.unwrap_or(self.cfg.consensus), false)
        };
        // `any` counts presence; on a positive veto criterion the violation is absence, so
        // verdicts are inverted on the way in and the decision inverted back.
        let flip = |v: Verdict| {
            if positive_veto && matches!(rule, Rule::Any { .. }) {
                invert(v)
            } else {
                v
            }
        };
        let judges: Vec<JudgeVotes> = self
            .members
            .iter()
            .map(|m| JudgeVotes {
                judge: m.client.name().to_owned(),
                weight: m.weight,
                verdicts: ballots
                    .iter()
                    .filter(|b| b.judge == m.client.name() && !b.escalation)
                    .filter_map(|b| b.verdict)
                    .map(flip)
                    .collect(),
            })
            .collect();
        let outcome = vote::decide(&VoteInput {
            scale,
            rule,
            quorum: self.cfg.quorum,
            min_agreement: self.cfg.min_agreement,
            judges: &judges,
            reliability: self.reliability.as_deref(),
        });
        let (verdict, kind, agreement) = match outcome {
            Outcome::Decided { verdict, agreement } => {
                (Some(flip(verdict)), ConsensusKind::Decided, Some(agreement))
            }
            Outcome::NoQuorum { .. } => (None, ConsensusKind::NoQuorum, None),
            Outcome::Split { agreement } => match &self.escalation {
                None => (None, ConsensusKind::Split, Some(agreement)),
                Some(esc) => {
                    let ask = Ask {
                        client: esc,
                        escalation: true,
                        sample: 0,
                        criteria: vec![criterion],
                    };
                    let extra = self
                        .ask(&ask, case, response, rubric, reference, deadline, cancel)
                        .await?;
                    let mut decided = None;
                    for (_, b) in extra {
                        decided = decided.or(b.verdict);
                        ballots.push(b);
                    }
                    match decided {
                        Some(v) => (Some(v), ConsensusKind::Escalated, Some(agreement)),
                        None => (None, ConsensusKind::Split, Some(agreement)),
                    }
                }
            },
        };
        crate::metrics::consensus(kind.as_str());
        for b in &ballots {
            crate::metrics::ballot(&b.judge);
            if let Some(r) = b.abstained {
                crate::metrics::abstention(&b.judge, r.as_str());
            }
        }
        Ok(Consensus {
            criterion: criterion.id.0.clone(),
            verdict,
            kind,
            agreement,
            ballots,
        })
    }

    /// The template hash and answer shape of one call on `criteria`: a criterion's own
    /// template when calls are per criterion (or for an escalation, which asks one
    /// criterion at a time), else the batched template. Shared with the estimate, so
    /// it renders exactly the calls grading sends.
    pub(crate) fn call_shape(&self, criteria: &[&Criterion], escalation: bool) -> (&str, Expect) {
        if criteria.len() == 1 && self.cfg.prompt_mode == PromptMode::PerCriterion || escalation {
            let scale = Scale::of(criteria[0].kind);
            (self.templates.template_hash(scale), Expect::One(scale))
        } else {
            (
                self.templates.batch_template_hash(),
                Expect::Batch(
                    criteria
                        .iter()
                        .map(|c| (c.id.0.clone(), Scale::of(c.kind)))
                        .collect(),
                ),
            )
        }
    }

    /// Renders the prompt of a call shaped by `call_shape`.
    pub(crate) fn render(
        &self,
        expect: &Expect,
        case: &Case,
        response: &str,
        criteria: &[&Criterion],
        nonce: &str,
    ) -> Result<crate::judge::prompt::RenderedPrompt, crate::judge::prompt::PromptError> {
        match expect {
            Expect::One(_) => self
                .templates
                .render_criterion(case, response, criteria[0], nonce),
            Expect::Batch(_) => self.templates.render_batch(case, response, criteria, nonce),
        }
    }

    /// One call (per-criterion or batched), through the cache. Returns ballots tagged
    /// with the criterion's index in the rubric, or `Cancelled` when `cancel` fired
    /// before the call was sent.
    #[tracing::instrument(
        name = "criterion",
        skip_all,
        fields(judge = a.client.name(), criteria = a.criteria.len(), criterion = %a.criteria.first().map(|c| c.id.0.as_str()).unwrap_or(""), sample = a.sample)
    )]
    #[expect(
        clippy::too_many_arguments,
        reason = "three call sites in this module; a struct would only rename them"
    )]
    async fn ask(
        &self,
        a: &Ask<'_>,
        case: &Case,
        response: &str,
        rubric: &Rubric,
        reference: Option<&[Option<Verdict>]>,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Vec<(usize, Ballot)>, Cancelled> {
        if cancel.is_cancelled() {
            return Err(Cancelled);
        }
        let indices: Vec<usize> = a
            .criteria
            .iter()
            .filter_map(|c| rubric.criteria.iter().position(|x| x.id == c.id))
            .collect();
        let refs: Option<Vec<Option<Verdict>>> = reference.map(|r| {
            indices
                .iter()
                .map(|i| r.get(*i).copied().flatten())
                .collect()
        });
        let (template_hash, expect) = self.call_shape(&a.criteria, a.escalation);
        let key = cache_key(&KeyInputs {
            judge: &a.client.cfg,
            template_hash,
            case,
            response,
            criteria: &a.criteria,
            sample: a.sample,
            reference: refs.as_deref(),
        });
        // The simulated provider answers from a key that leaves the template wording out
        // (it never reads the prompt), so its seeded verdicts do not change with the set.
        let content_key = cache_key(&KeyInputs {
            judge: &a.client.cfg,
            template_hash: crate::judge::prompt::wording_neutral_hash(match &expect {
                Expect::One(scale) => Some(*scale),
                Expect::Batch(_) => None,
            }),
            case,
            response,
            criteria: &a.criteria,
            sample: a.sample,
            reference: refs.as_deref(),
        });
        let started = Instant::now();
        let call = async || {
            // Checked again here: the cache lookups before it may have waited.
            if cancel.is_cancelled() {
                return Err(Failed::whole(
                    AbstainReason::Cancelled,
                    indices.len(),
                    "stopped before the request was sent: the job was cancelled or the server is shutting down".to_owned(),
                ));
            }
            // One nonce per item, so every call on it shares the prompt prefix.
            let nonce = self.templates.item_nonce(case, response);
            let rendered = self.render(&expect, case, response, &a.criteria, &nonce);
            // A template that cannot render is a configuration bug; the ballot abstains
            // (never a verdict) and the cause is logged once here.
            let rendered = rendered.map_err(|e| {
                tracing::error!(judge = a.client.name(), error = %e, "judge prompt failed to render");
                Failed::whole(
                    AbstainReason::ClientError,
                    indices.len(),
                    format!("the judge prompt failed to render: {e}"),
                )
            })?;
            let req = ChatRequest {
                messages: vec![
                    (ChatRole::System, rendered.system),
                    (ChatRole::User, rendered.user),
                ],
                expect: expect.clone(),
                explain: self.templates.explains(),
                content_key,
                sample: a.sample,
                reference: refs.clone(),
            };
            // A batched call waits for its batch, far past the item's deadline; its own
            // bound is the batch configuration's (`JudgeClient::call_deadline`).
            let deadline = a.client.call_deadline(deadline);
            let result =
                tokio::time::timeout_at(deadline.into(), a.client.call(req, deadline, cancel))
                    .await
                    .map_err(|_| {
                        let detail = format!(
                            "no answer within the item's deadline (request_timeout {} ms)",
                            self.cfg.request_timeout.as_millis()
                        );
                        Failed::whole(AbstainReason::Timeout, indices.len(), detail)
                    })?;
            if result.answers.iter().any(Result::is_err) {
                // Nothing is cached unless every criterion of the call has a verdict;
                // the ones that do still count as ballots.
                return Err(Failed {
                    answers: result.answers,
                    usage: result.usage,
                    template_hash: rendered.template_hash,
                    detail: result.detail,
                });
            }
            Ok(CachedAnswer {
                answers: result.answers.into_iter().filter_map(Result::ok).collect(),
                usage: result.usage,
                template_hash: rendered.template_hash,
            })
        };
        let mut tries = 0;
        let (outcome, source) = loop {
            let (outcome, source) = self.cache.get_or_call(key, call()).await;
            let cut_short = outcome.as_ref().is_err_and(|f| {
                f.answers
                    .iter()
                    .any(|r| matches!(r, Err(AbstainReason::Cancelled)))
            });
            if !cut_short {
                break (outcome, source);
            }
            if cancel.is_cancelled() {
                return Err(Cancelled);
            }
            // The single flight this call joined was another job's, cancelled: ask
            // again (a few times; then the ballot abstains as cancelled).
            tries += 1;
            if tries > FOREIGN_CANCEL_RETRIES {
                break (outcome, source);
            }
        };
        #[expect(clippy::cast_possible_truncation, reason = "milliseconds fit in u64")]
        let latency_ms = started.elapsed().as_millis() as u64;
        let cached = source != Source::Upstream;
        let n = indices.len().max(1) as u64;
        let detail = match &outcome {
            Ok(_) => None,
            Err(f) => f.detail.clone(),
        };
        if let Err(f) = &outcome {
            // Counted and logged (rate-limited) per judge, with the cause in words.
            let mut by_reason: Vec<(AbstainReason, u64)> = Vec::new();
            for r in f.answers.iter().filter_map(|a| a.as_ref().err()) {
                match by_reason.iter_mut().find(|(x, _)| x == r) {
                    Some((_, n)) => *n += 1,
                    None => by_reason.push((*r, 1)),
                }
            }
            for (reason, n) in by_reason {
                let text = detail
                    .clone()
                    .unwrap_or_else(|| format!("{reason} (no further detail)"));
                a.client.note_abstention(reason, &text, n);
            }
        }
        let (answers, usage, hash): (Vec<Result<&crate::judge::Parsed, AbstainReason>>, _, _) =
            match &outcome {
                Ok(answer) => (
                    answer.answers.iter().map(Ok).collect(),
                    if cached {
                        Default::default()
                    } else {
                        answer.usage
                    },
                    answer.template_hash.clone(),
                ),
                Err(f) => (
                    f.answers
                        .iter()
                        .map(|r| r.as_ref().map_err(|e| *e))
                        .collect(),
                    f.usage,
                    if f.template_hash.is_empty() {
                        template_hash.to_owned()
                    } else {
                        f.template_hash.clone()
                    },
                ),
            };
        #[expect(clippy::cast_precision_loss, reason = "criterion counts are small")]
        let cost = a.client.cost(usage) / n as f64;
        // A batched call's tokens are shared out evenly, the remainder going to the first
        // ballot, so the ballots of a report add up to exactly what the provider counted.
        let share = |total: u64, i: usize| total / n + if i == 0 { total % n } else { 0 };
        Ok(indices
            .iter()
            .zip(answers)
            .enumerate()
            .map(|(i, (idx, answer))| {
                let (verdict, abstained, explanation) = match answer {
                    Ok(p) => (Some(p.verdict), None, p.explanation.clone()),
                    Err(r) => (None, Some(r), String::new()),
                };
                let abstain_detail = abstained.map(|r| {
                    detail
                        .clone()
                        .unwrap_or_else(|| format!("{r} (no further detail)"))
                });
                (
                    *idx,
                    Ballot {
                        judge: a.client.name().to_owned(),
                        sample: a.sample,
                        escalation: a.escalation,
                        verdict,
                        abstained,
                        abstain_detail,
                        explanation,
                        latency_ms,
                        input_tokens: share(usage.input_tokens, i),
                        output_tokens: share(usage.output_tokens, i),
                        cached_input_tokens: share(usage.cached_input_tokens, i),
                        reasoning_tokens: share(usage.reasoning_tokens, i),
                        cost_usd: cost,
                        cached,
                        template_hash: hash.clone(),
                    },
                )
            })
            .collect())
    }
}

/// The committee's call budget as a fair semaphore: callers that admit items by it
/// (`tribunal grade`, the server's job runners) hold an item's calls' worth while its
/// judges work, so the judges' own limits are the only throttle, and items start in
/// the order they ask.
pub struct CallBudget {
    calls: Arc<tokio::sync::Semaphore>,
    budget: usize,
}

impl CallBudget {
    pub fn of(committee: &Committee) -> CallBudget {
        let budget = committee.call_budget().max(1);
        CallBudget {
            calls: Arc::new(tokio::sync::Semaphore::new(budget)),
            budget,
        }
    }

    /// Waits until the budget has room for `item`'s judge calls (an item larger than
    /// the whole budget runs alone); the permit gives them back when dropped.
    pub async fn admit(
        &self,
        committee: &Committee,
        item: &crate::item::Item,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let calls = committee.item_calls(item).clamp(1, self.budget);
        Arc::clone(&self.calls)
            .acquire_many_owned(u32::try_from(calls).unwrap_or(u32::MAX))
            .await
            .ok()
    }
}
