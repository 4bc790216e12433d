//! The domain facade every front end calls: `Grader::grade` turns an `Item` into a
//! `GradeReport` (committee verdicts -> consensus -> score with vetoes). Owns the
//! GradeReport JSON shape (a deliberate, versioned output format). Job work grades
//! under the job's cancel token (`grade_until`), which the committee checks before
//! every judge call.
//! Must not parse wire formats or know about transports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::cache::VerdictCache;
use crate::committee::{Committee, Consensus, ConsensusKind, Member};
use crate::config::{Config, ProviderConfig};
use crate::error::Error;
use crate::item::{Item, RubricSource};
use crate::judge::call::JudgeClient;
use crate::judge::prompt::Templates;
use crate::judge::provider::OpenAiProvider;
use crate::judge::sim::SimProvider;
use crate::judge::{AbstainReason, Provider};
use crate::rubric::{Criterion, CriterionKind, Invalid, Rubric, Verdict};
use crate::score::{self, ExampleScore, report};

pub const REPORT_FORMAT: &str = "grade_report.v1";

/// The full result of grading one item.
#[derive(Debug, Clone)]
pub struct GradeReport {
    pub case_id: String,
    pub rubric: String,
    pub simulated: bool,
    /// Some ballot abstained (the committee still met quorum where it could).
    pub degraded: bool,
    pub criteria: Vec<Consensus>,
    pub score: ExampleScore,
    pub elapsed: Duration,
    /// The rubric's scoring policy (`healthbench`, `weighted`, ...).
    pub policy: &'static str,
    /// The rubric's criteria, in the order of `criteria` (their text, points or tier
    /// and tags go beside each consensus in the report).
    pub rubric_criteria: Vec<Criterion>,
    /// A judge that cast a ballot has no price configured: the cost is unknown.
    pub unpriced: bool,
}

impl GradeReport {
    pub fn cost_usd(&self) -> f64 {
        self.ballots().map(|b| b.cost_usd).sum()
    }

    /// Each abstention's reason with its detail, for failure messages and summaries:
    /// `(judge, reason, detail)`, one per distinct (judge, reason), first seen first.
    pub fn abstention_details(&self) -> Vec<(String, AbstainReason, String)> {
        abstention_details(&self.criteria)
    }

    fn ballots(&self) -> impl Iterator<Item = &crate::committee::Ballot> {
        self.criteria.iter().flat_map(|c| c.ballots.iter())
    }

    /// The report as its versioned document (`grade_report.v1`).
    pub fn to_doc(&self) -> GradeReportDoc {
        let input: u64 = self.ballots().map(|b| b.input_tokens).sum();
        let output: u64 = self.ballots().map(|b| b.output_tokens).sum();
        let cached_input: u64 = self.ballots().map(|b| b.cached_input_tokens).sum();
        let reasoning: u64 = self.ballots().map(|b| b.reasoning_tokens).sum();
        let calls = self
            .ballots()
            .filter(|b| !b.cached && b.abstained.is_none())
            .count();
        let hits = self.ballots().filter(|b| b.cached).count();
        let abstentions = self
            .criteria
            .iter()
            .flat_map(|c| {
                c.ballots.iter().filter_map(move |b| {
                    b.abstained.map(|r| AbstentionDoc {
                        criterion: c.criterion.clone(),
                        judge: b.judge.clone(),
                        sample: b.sample,
                        reason: r,
                        detail: b.abstain_detail.clone(),
                    })
                })
            })
            .collect();
        GradeReportDoc {
            format: ReportFormat::V1,
            case_id: self.case_id.clone(),
            rubric: self.rubric.clone(),
            simulated: self.simulated,
            degraded: self.degraded,
            policy: Some(self.policy.to_owned()),
            score: report::ExampleEntry::new(&self.case_id, &self.score),
            tags: self.score.tags.clone(),
            criteria: self
                .criteria
                .iter()
                .map(|c| {
                    let meta = self.rubric_criteria.iter().find(|r| r.id.0 == c.criterion);
                    CriterionDoc {
                        id: c.criterion.clone(),
                        text: meta.map(|m| m.text.clone()).unwrap_or_default(),
                        points: meta.and_then(|m| match m.kind {
                            CriterionKind::Points(p) => Some(p),
                            CriterionKind::Tier(_) => None,
                        }),
                        tier: meta.and_then(|m| match m.kind {
                            CriterionKind::Points(_) => None,
                            CriterionKind::Tier(t) => Some(t.as_str().to_owned()),
                        }),
                        tags: meta.map(|m| m.tags.clone()).unwrap_or_default(),
                        veto: meta.is_some_and(|m| m.veto),
                        verdict: c.verdict,
                        consensus: c.kind,
                        agreement: c.agreement,
                        ballots: c
                            .ballots
                            .iter()
                            .map(|b| BallotDoc {
                                judge: b.judge.clone(),
                                sample: b.sample,
                                escalation: b.escalation,
                                verdict: b.verdict,
                                abstained: b.abstained,
                                abstain_detail: b.abstain_detail.clone(),
                                explanation: b.explanation.clone(),
                                latency_ms: b.latency_ms,
                                input_tokens: b.input_tokens,
                                output_tokens: b.output_tokens,
                                cached_input_tokens: b.cached_input_tokens,
                                reasoning_tokens: b.reasoning_tokens,
                                cost_usd: b.cost_usd,
                                cached: b.cached,
                                template_hash: b.template_hash.clone(),
                            })
                            .collect(),
                    }
                })
                .collect(),
            abstentions,
            usage: UsageDoc {
                input_tokens: input,
                output_tokens: output,
                cached_input_tokens: cached_input,
                reasoning_tokens: reasoning,
                cost_usd: (!self.unpriced).then(|| self.cost_usd()),
                unpriced: self.unpriced,
                upstream_calls: calls as u64,
                cache_hits: hits as u64,
            },
            elapsed_ms: u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// `to_doc` as JSON, for storage and line output.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.to_doc()).unwrap_or(Value::Null)
    }
}

/// `grade_report.v1`: one graded item, every ballot, the consensus per criterion and
/// the score. Stored as job results and returned by `POST /v1/grade`; other tools
/// parse it: add fields, never rename or remove them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = GradeReport)]
pub struct GradeReportDoc {
    /// Always `grade_report.v1`.
    pub format: ReportFormat,
    pub case_id: String,
    /// `id@version` of the rubric graded against.
    pub rubric: String,
    /// The committee is simulated: grades are not real judgements.
    pub simulated: bool,
    /// Some ballot abstained (the committee still met quorum where it could).
    pub degraded: bool,
    /// The rubric's scoring policy (`healthbench`, `livemedbench`, `quarkmed`,
    /// `weighted`): how `score` was computed. Null in reports written before it.
    #[serde(default)]
    pub policy: Option<String>,
    pub score: report::ExampleEntry,
    /// The example's score under each tag it carries (case and criterion tags).
    pub tags: std::collections::BTreeMap<String, f64>,
    pub criteria: Vec<CriterionDoc>,
    pub abstentions: Vec<AbstentionDoc>,
    pub usage: UsageDoc,
    pub elapsed_ms: u64,
}

/// The committee's consensus on one criterion and the ballots behind it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = CriterionResult)]
pub struct CriterionDoc {
    pub id: String,
    /// The criterion's text as the rubric states it (empty in older reports).
    #[serde(default)]
    pub text: String,
    /// HealthBench-style signed points; null for a tier criterion.
    #[serde(default)]
    pub points: Option<i8>,
    /// QuarkMed-style tier (`essential`, `important`, `highlight`, `pitfall`); null for
    /// a points criterion.
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// A safety veto criterion.
    #[serde(default)]
    pub veto: bool,
    /// Null when the criterion abstained (split or no quorum).
    pub verdict: Option<Verdict>,
    pub consensus: ConsensusKind,
    /// Share of judges agreeing with the consensus; null when abstained.
    pub agreement: Option<f64>,
    pub ballots: Vec<BallotDoc>,
}

/// One judge's answer on one criterion: a verdict or an abstention, never both.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = Ballot)]
pub struct BallotDoc {
    pub judge: String,
    pub sample: u32,
    /// Cast by the escalation judge after a split.
    pub escalation: bool,
    pub verdict: Option<Verdict>,
    pub abstained: Option<crate::judge::AbstainReason>,
    /// Why it abstained, in words: the HTTP status, the URL without secrets and the
    /// start of the provider's error body, the transport error (connection refused,
    /// DNS, TLS), the timeout, or the parse problem. Absent with a verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abstain_detail: Option<String>,
    pub explanation: String,
    pub latency_ms: u64,
    /// Every prompt token, cached ones included.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Part of `input_tokens` the provider served from its prefix cache (billed at
    /// `price_cached_input_per_mtok`). Absent in reports written before it existed.
    #[serde(default)]
    pub cached_input_tokens: u64,
    /// Part of `output_tokens` spent on hidden reasoning.
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// What the provider billed for this ballot's share of the call.
    pub cost_usd: f64,
    /// Answered from the verdict cache (no judge call, no cost).
    pub cached: bool,
    pub template_hash: String,
}

/// One abstained ballot, listed for the report's reader.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = Abstention)]
pub struct AbstentionDoc {
    pub criterion: String,
    pub judge: String,
    pub sample: u32,
    pub reason: crate::judge::AbstainReason,
    /// The ballot's `abstain_detail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What grading the item used.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = Usage)]
pub struct UsageDoc {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Part of `input_tokens` billed at the cached price.
    #[serde(default)]
    pub cached_input_tokens: u64,
    /// Part of `output_tokens` spent on reasoning.
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// USD at the judges' configured prices; 0 for simulated judges (free); null when
    /// a judge that was called has no price configured (see `unpriced`).
    pub cost_usd: Option<f64>,
    /// A judge that was called has no price configured (every `price_*` is 0), so the
    /// cost is unknown rather than zero.
    #[serde(default)]
    pub unpriced: bool,
    /// Judge calls made (cache hits and abstentions excluded).
    pub upstream_calls: u64,
    pub cache_hits: u64,
}

/// One `(judge, reason, detail)` per distinct judge and reason among `criteria`'s
/// abstained ballots, in the order first seen.
pub fn abstention_details(criteria: &[Consensus]) -> Vec<(String, AbstainReason, String)> {
    let mut out: Vec<(String, AbstainReason, String)> = Vec::new();
    for b in criteria.iter().flat_map(|c| c.ballots.iter()) {
        let Some(reason) = b.abstained else { continue };
        if out.iter().any(|(j, r, _)| *j == b.judge && *r == reason) {
            continue;
        }
        let detail = b
            .abstain_detail
            .clone()
            .unwrap_or_else(|| "no further detail".to_owned());
        out.push((b.judge.clone(), reason, detail));
    }
    out
}

/// The result line of an item that could not be graded, in `tribunal grade` output and
/// job results alike.
pub fn failed_item_json(case_id: &str, e: &Error) -> Value {
    json!({"case_id": case_id, "error": {"kind": e.kind().as_str(), "message": e.to_string(), "field": e.field()}})
}

/// The part of a stored `grade_report.v1` that summaries need, read with serde: the
/// format tag must match, and `score` must be exactly what `report::example_json` wrote.
#[derive(Debug, Deserialize)]
struct StoredReport {
    format: ReportFormat,
    case_id: String,
    score: report::ExampleEntry,
    tags: BTreeMap<String, f64>,
}

/// The score facts of a report: the part `read_example_score` reads, as stored with a
/// job's item so a summary never parses whole reports. Same field names as the report.
#[derive(serde::Serialize)]
struct ScoreFacts<'a> {
    format: ReportFormat,
    case_id: &'a str,
    score: &'a report::ExampleEntry,
    tags: &'a BTreeMap<String, f64>,
}

impl GradeReportDoc {
    /// `{format, case_id, score, tags}` as JSON: what summaries read of this report.
    pub fn score_facts_json(&self) -> String {
        serde_json::to_string(&ScoreFacts {
            format: self.format,
            case_id: &self.case_id,
            score: &self.score,
            tags: &self.tags,
        })
        .unwrap_or_default()
    }
}

/// The only report format this build writes and reads (the literal is `REPORT_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
pub enum ReportFormat {
    #[serde(rename = "grade_report.v1")]
    V1,
}

/// Reads the score part of a stored report back (for `grade --resume` and job
/// summaries): the case id and the `ExampleScore` the report was written from. Anything
/// that is not such a report (a failed item's line, a missing or unknown field) is an
/// error naming the problem, never a default.
pub fn read_example_score(v: &Value) -> Result<(String, ExampleScore), String> {
    example_score_of(StoredReport::deserialize(v).map_err(|e| e.to_string())?)
}

/// `read_example_score` straight from a report's (or its score facts') text, without
/// building a JSON tree first: what job summaries use on every item.
pub fn read_example_score_text(text: &str) -> Result<(String, ExampleScore), String> {
    example_score_of(serde_json::from_str(text).map_err(|e| e.to_string())?)
}

fn example_score_of(report: StoredReport) -> Result<(String, ExampleScore), String> {
    let StoredReport {
        format: ReportFormat::V1,
        case_id,
        score,
        tags,
    } = report;
    if score.prompt_id != case_id {
        return Err(format!(
            "score.prompt_id \"{}\" differs from case_id \"{case_id}\"",
            score.prompt_id
        ));
    }
    let score = score.into_score(tags)?;
    Ok((case_id, score))
}

/// `read_example_score` without the reason: `None` for anything that is not a readable
/// report, failed items' lines included.
pub fn example_score_from_report(v: &Value) -> Option<(String, ExampleScore)> {
    read_example_score(v).ok()
}

pub struct Grader {
    pub committee: Committee,
    pub request_timeout: Duration,
    /// Resolves `id@version` rubric references; `None` offline.
    pub store: Option<Arc<dyn crate::store::Store>>,
}

impl Grader {
    /// Builds judges, templates and the cache from a validated config.
    pub fn from_config(cfg: &Config) -> Result<Grader, Error> {
        Self::build(cfg, None)
    }

    /// As `from_config`, with a store for rubric references and as the verdict
    /// cache's persistent second tier.
    pub fn with_store(cfg: &Config, store: Arc<dyn crate::store::Store>) -> Result<Grader, Error> {
        Self::build(cfg, Some(store))
    }

    fn build(cfg: &Config, store: Option<Arc<dyn crate::store::Store>>) -> Result<Grader, Error> {
        let templates = match &cfg.committee.prompts_dir {
            None => Templates::builtin(cfg.committee.prompts),
            Some(dir) => Templates::from_dir(dir, &dir.display().to_string()),
        }
        .and_then(|t| t.with_explanations(cfg.committee.explanations))
        .map_err(|e| Error::Internal(format!("judge prompts: {e}")))?;
        let client = |name: &str| -> Result<Arc<JudgeClient>, Error> {
            let j = cfg.judges.get(name).ok_or_else(|| {
                Error::Invalid(Invalid::one("committee", format!("no judge \"{name}\"")))
            })?;
            let provider: Arc<dyn Provider> = match &j.provider {
                ProviderConfig::OpenAi(o) => Arc::new(
                    OpenAiProvider::new(j, o)
                        .map_err(|m| Error::Invalid(Invalid::one(format!("judges.{name}"), m)))?,
                ),
                ProviderConfig::Sim(s) => Arc::new(SimProvider::new(s.clone())),
            };
            let judge = JudgeClient::new(j.clone(), provider);
            if let Some(store) = &store {
                // Batch judges remember submitted batches in the store, so a restart
                // resumes polling them instead of resubmitting.
                judge.attach_batch_ledger(Arc::new(crate::store::BatchLedgerTier(Arc::clone(
                    store,
                ))));
            }
            Ok(Arc::new(judge))
        };
        let members = cfg
            .committee
            .members
            .iter()
            .map(|(n, w)| {
                Ok(Member {
                    client: client(n)?,
                    weight: *w,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let escalation = cfg
            .committee
            .escalation
            .as_deref()
            .map(client)
            .transpose()?;
        Ok(Grader {
            committee: Committee {
                members,
                escalation,
                cfg: cfg.committee.clone(),
                templates: Arc::new(templates),
                cache: Arc::new(VerdictCache::new(
                    &cfg.cache,
                    store.clone().map(|s| {
                        Arc::new(crate::store::CacheTier(s)) as Arc<dyn crate::cache::SecondTier>
                    }),
                )),
                reliability: cfg.committee.reliability.clone(),
            },
            request_timeout: cfg.committee.request_timeout,
            store,
        })
    }

    pub fn simulated(&self) -> bool {
        self.committee.simulated()
    }

    /// Whether a judge that made a call (not a cache hit) for these ballots has no
    /// price configured.
    fn unpriced_judges(&self, criteria: &[Consensus]) -> bool {
        let unpriced: Vec<&str> = self
            .committee
            .members
            .iter()
            .map(|m| &m.client)
            .chain(self.committee.escalation.iter())
            .filter(|c| c.unpriced())
            .map(|c| c.name())
            .collect();
        !unpriced.is_empty()
            && criteria
                .iter()
                .flat_map(|c| c.ballots.iter())
                .any(|b| !b.cached && unpriced.contains(&b.judge.as_str()))
    }

    /// The rubric an item names: inline, or `id@version` / `id` (latest) from the store.
    pub async fn resolve(&self, source: &RubricSource) -> Result<Arc<Rubric>, Error> {
        match source {
            RubricSource::Inline(r) => Ok(Arc::clone(r)),
            RubricSource::Reference { id, version } => {
                let name = match version {
                    Some(v) => format!("{id}@{v}"),
                    None => id.clone(),
                };
                let Some(store) = &self.store else {
                    return Err(Error::NotFound {
                        what: "rubric",
                        name: format!("{name} (no rubric store in this mode; inline the rubric)"),
                    });
                };
                match store.get_rubric(id, *version).await? {
                    Some(r) => Ok(Arc::new(r)),
                    None => Err(Error::NotFound {
                        what: "rubric",
                        name,
                    }),
                }
            }
        }
    }

    /// Grades one item, resolving its rubric first. A response is required.
    pub async fn grade(&self, item: &Item) -> Result<GradeReport, Error> {
        let rubric = self.resolve(&item.rubric).await?;
        self.grade_with(item, &rubric).await
    }

    /// Grades one item against an already resolved rubric (callers that inspected the
    /// rubric first need not fetch it twice).
    pub async fn grade_with(&self, item: &Item, rubric: &Rubric) -> Result<GradeReport, Error> {
        // Nobody can cancel this token, so the judgement is never cut short.
        self.grade_with_until(item, rubric, &CancellationToken::new())
            .await
            .unwrap_or_else(|| Err(Error::Internal("grading cut short without a cancel".into())))
    }

    /// `grade` for job work: once `cancel` fires no judge call of this item starts
    /// (calls already sent are awaited up to their deadline). `None`: the cancel cut
    /// the grading short, so there is no report and the item stays unfinished.
    pub async fn grade_until(
        &self,
        item: &Item,
        cancel: &CancellationToken,
    ) -> Option<Result<GradeReport, Error>> {
        let rubric = match self.resolve(&item.rubric).await {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        self.grade_with_until(item, &rubric, cancel).await
    }

    #[tracing::instrument(name = "grade", skip_all, fields(case_id = %item.case.id))]
    async fn grade_with_until(
        &self,
        item: &Item,
        rubric: &Rubric,
        cancel: &CancellationToken,
    ) -> Option<Result<GradeReport, Error>> {
        let Some(response) = item.response.as_deref() else {
            return Some(Err(Error::Invalid(Invalid::one(
                "response",
                "missing: the text to grade goes in `response`",
            ))));
        };
        let started = Instant::now();
        let deadline = started + self.request_timeout;
        // Simulated judges take supplied verdicts as their reference labels (each agrees
        // with its reference at its configured `accuracy`), so a pipeline can be checked
        // end to end without a model. Real providers never see them.
        let reference = if self.simulated() && item.verdicts.is_some() {
            item.aligned_verdicts(rubric).ok()
        } else {
            None
        };
        let criteria = self
            .committee
            .judge(
                &item.case,
                response,
                rubric,
                reference.as_deref(),
                deadline,
                cancel,
            )
            .await
            .ok()?;
        if !criteria.is_empty() && criteria.iter().all(|c| c.kind == ConsensusKind::NoQuorum) {
            let reasons: std::collections::BTreeSet<&str> = criteria
                .iter()
                .flat_map(|c| {
                    c.ballots
                        .iter()
                        .filter_map(|b| b.abstained.map(|r| r.as_str()))
                })
                .collect();
            let details: Vec<String> = abstention_details(&criteria)
                .into_iter()
                .map(|(judge, reason, detail)| format!("judge {judge}: {reason}: {detail}"))
                .collect();
            return Some(Err(Error::QuorumLost(format!(
                "no criterion reached quorum {}; judge abstentions: {}{}",
                self.committee.cfg.quorum,
                reasons.into_iter().collect::<Vec<_>>().join(", "),
                if details.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", details.join("; "))
                }
            ))));
        }
        let verdicts: Vec<Option<Verdict>> = criteria.iter().map(|c| c.verdict).collect();
        let score = score::score_response(rubric, &verdicts, &item.case.tags, Some(response));
        if !score.vetoed_by.is_empty() {
            crate::metrics::veto(rubric.scoring.policy.name());
        }
        crate::metrics::grade_duration(started.elapsed().as_secs_f64());
        let degraded = criteria
            .iter()
            .any(|c| c.ballots.iter().any(|b| b.abstained.is_some()) || c.verdict.is_none());
        let unpriced = self.unpriced_judges(&criteria);
        Some(Ok(GradeReport {
            case_id: item.case.id.clone(),
            rubric: rubric.reference(),
            simulated: self.simulated(),
            degraded,
            criteria,
            score,
            elapsed: started.elapsed(),
            policy: rubric.scoring.policy.name(),
            rubric_criteria: rubric.criteria.clone(),
            unpriced,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rubric::{Criterion, CriterionId, CriterionKind, Policy, Scoring};
    use crate::score::Undefined;

    fn report(case_id: &str, score: ExampleScore) -> GradeReport {
        GradeReport {
            case_id: case_id.into(),
            rubric: "r@1".into(),
            simulated: true,
            degraded: false,
            criteria: vec![],
            score,
            elapsed: Duration::from_millis(3),
            policy: "healthbench",
            rubric_criteria: vec![],
            unpriced: false,
        }
    }

    /// HealthBench over criteria with these points, every one met (`None` = abstained).
    fn scored(points: &[(i8, Option<bool>)], tags: &[&str]) -> ExampleScore {
        let criteria = points
            .iter()
            .enumerate()
            .map(|(i, (p, _))| Criterion {
                id: CriterionId(format!("c{i}")),
                text: String::new(),
                kind: CriterionKind::Points(*p),
                tags: vec![],
                veto: *p < 0,
                weight: None,
            })
            .collect();
        let rubric = Rubric {
            id: "r".into(),
            version: 1,
            title: "t".into(),
            scoring: Scoring {
                policy: Policy::HealthBench,
                ..Scoring::default()
            },
            consensus: None,
            criteria,
        };
        let verdicts: Vec<Option<Verdict>> =
            points.iter().map(|(_, m)| m.map(Verdict::Met)).collect();
        let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
        score::score_example(&rubric, &verdicts, &tags)
    }

    #[test]
    fn example_score_round_trips_through_the_stored_report() {
        let check = |name: &str, score: ExampleScore, undefined: Option<Undefined>| {
            assert_eq!(score.undefined, undefined, "{name}: fixture");
            let json = report("case-1", score.clone()).to_json();
            // Through text, as the store and `--resume` read it.
            let stored: Value = serde_json::from_str(&json.to_string()).unwrap();
            assert_eq!(
                read_example_score(&stored),
                Ok(("case-1".to_owned(), score.clone())),
                "{name}: {json}"
            );
            assert_eq!(
                example_score_from_report(&stored),
                Some(("case-1".to_owned(), score)),
                "{name}"
            );
        };
        check(
            "no positive points",
            scored(&[(-3, Some(false)), (-5, Some(true))], &["theme:x"]),
            Some(Undefined::NoPositivePoints),
        );
        check(
            "every criterion abstained",
            scored(&[(5, None)], &[]),
            Some(Undefined::NoCriteria),
        );
        check(
            "no positive tiers",
            ExampleScore {
                score: None,
                undefined: Some(Undefined::NoPositiveTiers),
                final_score: Some(0.0),
                vetoed_by: vec![CriterionId("pit".into())],
                incomplete: true,
                abstained: vec![CriterionId("a".into()), CriterionId("b".into())],
                tags: BTreeMap::new(),
                response_chars: Some(2500),
                length_adjustment: Some(crate::rubric::LengthAdjustment::PROFESSIONAL),
                abstentions_as_not_met: true,
            },
            Some(Undefined::NoPositiveTiers),
        );
        check(
            "defined and vetoed, with tags",
            scored(
                &[(6, Some(true)), (4, Some(false)), (-3, Some(true))],
                &["theme:y"],
            ),
            None,
        );
        check(
            "defined with an abstention",
            scored(&[(6, Some(true)), (4, None)], &[]),
            None,
        );
    }

    #[test]
    fn a_stored_report_that_does_not_match_the_writer_is_refused() {
        let base = report(
            "case-1",
            scored(&[(-3, Some(false)), (-5, Some(true))], &["theme:x"]),
        )
        .to_json();
        let check = |name: &str, edit: &dyn Fn(&mut Value), expected_error: &str| {
            let mut v = base.clone();
            edit(&mut v);
            let got = read_example_score(&v);
            assert!(
                got.as_ref().is_err_and(|e| e.contains(expected_error)),
                "{name}: {got:?}"
            );
            assert_eq!(example_score_from_report(&v), None, "{name}");
        };
        check(
            "unknown undefined_reason",
            &|v| v["score"]["undefined_reason"] = json!("no_such_reason"),
            "unknown variant `no_such_reason`",
        );
        check(
            "missing undefined_reason",
            &|v| {
                v["score"]
                    .as_object_mut()
                    .map(|o| o.remove("undefined_reason"));
            },
            "missing field `undefined_reason`",
        );
        check(
            "missing score",
            &|v| {
                v["score"].as_object_mut().map(|o| o.remove("score"));
            },
            "missing field `score`",
        );
        check(
            "missing incomplete",
            &|v| {
                v["score"].as_object_mut().map(|o| o.remove("incomplete"));
            },
            "missing field `incomplete`",
        );
        check(
            "unknown key in score",
            &|v| v["score"]["surprise"] = json!(1),
            "unknown field `surprise`",
        );
        check(
            "undefined without a reason",
            &|v| v["score"]["undefined_reason"] = Value::Null,
            "exactly one must be set",
        );
        check(
            "a tag that is not a number",
            &|v| v["tags"]["theme:x"] = json!("high"),
            "invalid type",
        );
        check(
            "another format",
            &|v| v["format"] = json!("grade_report.v2"),
            "unknown variant `grade_report.v2`",
        );
        check(
            "prompt_id differs from case_id",
            &|v| v["score"]["prompt_id"] = json!("case-2"),
            "differs from case_id",
        );
        check(
            "a failed item's line",
            &|v| *v = failed_item_json("case-1", &Error::Internal("boom".into())),
            "missing field `format`",
        );
    }

    #[test]
    fn the_format_tag_read_back_is_the_one_written() {
        assert_eq!(json!(REPORT_FORMAT), json!("grade_report.v1"));
        assert!(matches!(
            ReportFormat::deserialize(&json!(REPORT_FORMAT)),
            Ok(ReportFormat::V1)
        ));
    }
}
