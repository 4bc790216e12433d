//! Batch jobs as callers see them: submit (validated whole, quota-checked), status,
//! lists, cancel, the results stream (written once here; both transports adapt it)
//! and summaries. A job belongs to the key that submitted it; another client gets
//! `not_found`, never `forbidden`, so existence is not revealed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;

use super::auth::ListFilter;
use super::{Action, Caller, Owned, Service, corrupt, invalid};
use crate::error::Error;
use crate::grader::read_example_score_text;
use crate::item::{RubricSource, parse_line};
use crate::rubric::{FieldError, Invalid, Rubric};
use crate::score::{self, DEFAULT_RESAMPLES, report};
use crate::store::{JobRecord, JobState, Store, now_ms};

/// Results read per store page while streaming: large pages, so the per-page cost
/// (a query, a wake-up, one body chunk) is spread over many rows.
const RESULT_PAGE: u32 = 2_000;
/// Score facts read per store page by summaries.
const SUMMARY_PAGE: u32 = 5_000;
/// Items stored per transaction while a submission streams in.
const STAGE_BATCH: usize = 2_000;
/// Items a dry run estimates at a time, so a large job's estimate holds one chunk in
/// memory. Provider prefix sharing and verdict-cache repeats are modelled within a
/// chunk: the cost is a chunk's first call not seeing the static system prompt as
/// cached, one call per judge in a thousand.
const ESTIMATE_CHUNK: usize = 1_000;

/// What a submission's validation remembers between items.
#[derive(Default)]
struct Intake {
    /// Items read so far.
    seen: usize,
    errs: Vec<FieldError>,
    /// Each stored rubric reference, resolved once per job, not per item.
    referenced: HashMap<(String, Option<u32>), Result<Arc<Rubric>, String>>,
}
impl Intake {
    /// The submission's verdict once every line is read: its problems, or none at all.
    fn finish(self) -> Result<(), Error> {
        if !self.errs.is_empty() {
            return Err(Error::Invalid(Invalid(self.errs)));
        }
        if self.seen == 0 {
            return Err(invalid("items", "a job needs at least one item"));
        }
        Ok(())
    }
}

/// A valid item of a submission: the line as given (what is stored) and the item
/// parsed from it with its rubric inline (what is estimated).
struct Taken {
    graded: crate::item::Item,
    line: String,
}

/// Longest wait for a progress notification before a follower looks again anyway: a
/// safety net only, since every finished item and state change of a job wakes its
/// followers.
const FOLLOW_POLL: Duration = Duration::from_secs(5);

/// One finished item of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    /// Completion order within the job (the stream's cursor).
    pub finished_seq: u64,
    /// Position of the item in the submitted input.
    pub seq: u64,
    /// `grade_report.v1`, or `{"case_id", "error"}` for a failed item.
    pub json: String,
}

/// One page of results.
pub struct ResultPage {
    pub rows: Vec<ResultRow>,
}

/// A job-list cursor, `<created_at>_<id>`: the exact rule of the `after` parameter's
/// pattern in the OpenAPI document (`^(-?[0-9]{1,18}_[\s\S]*)?$`).
fn parse_cursor(c: &str) -> Option<(i64, String)> {
    let (t, id) = c.split_once('_')?;
    let digits = t.strip_prefix('-').unwrap_or(t);
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((t.parse().ok()?, id.to_owned()))
}

/// Page sizes: 1 to 500.
pub(super) fn check_limit(limit: u32) -> Result<u32, Error> {
    if (1..=500).contains(&limit) {
        Ok(limit)
    } else {
        Err(invalid(
            "limit",
            format!("{limit} is not a page size; use 1 to 500"),
        ))
    }
}

fn not_found(id: &str) -> Error {
    Error::NotFound {
        what: "job",
        name: id.to_owned(),
    }
}

impl Service {
    /// A job as stored, with no caller check (for the service's own use).
    pub(super) async fn job_record(&self, id: &str) -> Result<JobRecord, Error> {
        self.store.job(id).await?.ok_or_else(|| not_found(id))
    }

    /// A job the caller may use: absent and not theirs look the same.
    async fn own_job(&self, caller: &Caller, id: &str) -> Result<JobRecord, Error> {
        caller.require(Action::UseJobs)?;
        let job = self.job_record(id).await?;
        if caller.sees(Owned::Job, job.owner.as_deref()) {
            Ok(job)
        } else {
            Err(not_found(id))
        }
    }

    /// Stores and starts a job from item lines (JSON documents). Every item is
    /// validated first; nothing is stored if any is invalid.
    pub async fn submit_job(
        &self,
        caller: &Caller,
        lines: Vec<String>,
        seed: u64,
    ) -> Result<JobStatus, Error> {
        self.submit_job_stream(
            caller,
            futures::stream::iter(lines.into_iter().map(Ok)),
            seed,
        )
        .await
    }

    /// Stores and starts a job from a stream of item lines, validating and storing
    /// them as they arrive, so memory stays bounded whatever the job's size. The
    /// submission is still all-or-nothing: items go into a hidden staging job, which
    /// becomes queued only when every item is stored and valid, and is removed
    /// otherwise (an invalid item, a read error, more than `max_items_per_job`
    /// items). A stream error (`Err` item, e.g. a body cut off) fails the whole
    /// submission.
    pub async fn submit_job_stream<S>(
        &self,
        caller: &Caller,
        lines: S,
        seed: u64,
    ) -> Result<JobStatus, Error>
    where
        S: futures::Stream<Item = Result<String, Error>> + Send,
    {
        caller.require(Action::SubmitJob)?;
        let id = uuid::Uuid::now_v7().to_string();
        // The quota is counted and taken with the staging job, in one step: a staging
        // job counts as active, so simultaneous submissions cannot both get in, and a
        // refused one stores nothing and reads none of its items.
        let admission = self
            .store
            .stage_job_under_quota(&id, seed, caller.owner(), self.job_quota(caller))
            .await?;
        Self::admitted(caller, admission)?;
        match self.stage_items(&id, lines).await {
            Ok(total) => {
                self.store.commit_staged_job(&id, total).await?;
                self.jobs.start(&id);
                Ok(JobStatus::from(&self.job_record(&id).await?))
            }
            Err(e) => {
                if let Err(cleanup) = self.store.discard_staged_job(&id).await {
                    // The next start-up removes it (`Jobs::resume`); it is never run.
                    tracing::warn!(job = %id, error = %cleanup, "could not remove a failed submission");
                }
                Err(e)
            }
        }
    }

    /// What a job would cost (`dry_run`), without storing it or calling any judge: the
    /// items are validated exactly as a submission's (same errors, same limits, stored
    /// rubrics resolved), then the committee's estimate (`Committee::estimate`: the
    /// prompts rendered as they would be sent, provider prefix caching, verdict-cache
    /// repeats, the judges' prices) is summed per judge.
    pub async fn estimate_job_stream<S>(
        &self,
        caller: &Caller,
        lines: S,
    ) -> Result<JobEstimate, Error>
    where
        S: futures::Stream<Item = Result<String, Error>> + Send,
    {
        caller.require(Action::SubmitJob)?;
        let mut lines = std::pin::pin!(lines);
        let mut intake = Intake::default();
        let mut chunk = Vec::with_capacity(ESTIMATE_CHUNK);
        let mut estimate = JobEstimate::default();
        while let Some(line) = lines.next().await {
            let kept = self.take_item(&mut intake, line?).await?;
            if intake.errs.len() >= 100 {
                break;
            }
            if let Some(item) = kept {
                chunk.push(item.graded);
            }
            if chunk.len() >= ESTIMATE_CHUNK {
                estimate.add(&self.grader.committee.estimate(&chunk));
                estimate.items += chunk.len() as u64;
                chunk.clear();
            }
        }
        intake.finish()?;
        estimate.add(&self.grader.committee.estimate(&chunk));
        estimate.items += chunk.len() as u64;
        Ok(estimate)
    }

    /// Validates and stores a submission's items in batches; returns how many.
    async fn stage_items<S>(&self, id: &str, lines: S) -> Result<u64, Error>
    where
        S: futures::Stream<Item = Result<String, Error>> + Send,
    {
        let mut lines = std::pin::pin!(lines);
        let mut intake = Intake::default();
        let mut batch = Vec::with_capacity(STAGE_BATCH);
        let mut stored = 0u64;
        while let Some(line) = lines.next().await {
            let kept = self.take_item(&mut intake, line?).await?;
            if intake.errs.len() >= 100 {
                break;
            }
            if let Some(item) = kept {
                batch.push((item.graded.case.id, item.line));
            }
            if batch.len() >= STAGE_BATCH {
                self.store.stage_items(id, stored, &batch).await?;
                stored += batch.len() as u64;
                batch.clear();
            }
        }
        intake.finish()?;
        if !batch.is_empty() {
            self.store.stage_items(id, stored, &batch).await?;
            stored += batch.len() as u64;
        }
        Ok(stored)
    }

    /// Counts one line of a submission against `max_items_per_job` and checks it. The
    /// item comes back only while every item so far is valid: once one is invalid
    /// nothing will be stored or estimated, and the rest are only validated (to report
    /// up to 100 problems at once).
    async fn take_item(&self, intake: &mut Intake, line: String) -> Result<Option<Taken>, Error> {
        let i = intake.seen;
        intake.seen += 1;
        if intake.seen > self.limits.max_items_per_job {
            return Err(Error::TooLarge {
                what: "job",
                detail: format!(
                    "more than {} items (server.max_items_per_job); split the job or raise the limit",
                    self.limits.max_items_per_job
                ),
                field: Some("items".into()),
            });
        }
        let taken = self.check_item(intake, i, line).await?;
        Ok(taken.filter(|_| intake.errs.is_empty()))
    }

    /// One item of a submission, with its stored rubric reference (if any) resolved,
    /// when valid; problems go to `intake.errs` under `items[i]`. Only a store failure
    /// (or a rubric over the criteria limit, which names no single item's fix) is an
    /// error of its own.
    async fn check_item(
        &self,
        intake: &mut Intake,
        i: usize,
        line: String,
    ) -> Result<Option<Taken>, Error> {
        // Counted while scanned, before a `Value` is built: a line with a million
        // criteria is refused without parsing it.
        if let Err(crate::rubric::bounded::ReadError::Overrun(o)) =
            crate::rubric::bounded::check(line.as_bytes(), &self.bounds())
        {
            return Err(o.under(&format!("items[{i}]")).into());
        }
        let mut item = match parse_line(&line) {
            Ok((_, item)) => item,
            Err(inv) => {
                intake.errs.extend(inv.under(&format!("items[{i}]")).0);
                return Ok(None);
            }
        };
        let rubric = match &item.rubric {
            RubricSource::Inline(r) => Ok(Arc::clone(r)),
            RubricSource::Reference { id, version } => {
                let key = (id.clone(), *version);
                if let Some(known) = intake.referenced.get(&key) {
                    known.clone()
                } else {
                    let found = match self.grader.resolve(&item.rubric).await {
                        Ok(r) => Ok(r),
                        Err(e @ Error::NotFound { .. }) => Err(e.to_string()),
                        Err(e) => return Err(e),
                    };
                    intake.referenced.insert(key, found.clone());
                    found
                }
            }
        };
        match rubric {
            Err(message) => {
                intake
                    .errs
                    .push(FieldError::new(format!("items[{i}].rubric"), message));
                return Ok(None);
            }
            Ok(r) => {
                self.check_criteria(r.criteria.len(), &format!("items[{i}].rubric.criteria"))?;
                if item.response.is_none() {
                    intake.errs.push(FieldError::new(
                        format!("items[{i}].response"),
                        "missing: the text to grade goes in `response`",
                    ));
                    return Ok(None);
                }
                item.rubric = RubricSource::Inline(r);
            }
        }
        Ok(Some(Taken { graded: item, line }))
    }

    pub async fn job(&self, caller: &Caller, id: &str) -> Result<JobStatus, Error> {
        let status = self.status_of(&self.own_job(caller, id).await?);
        self.with_batches(status).await
    }

    /// A job's status as this service reports it: the record's counters, whether the
    /// committee grading it is simulated.
    fn status_of(&self, j: &JobRecord) -> JobStatus {
        let mut status = JobStatus::from(j);
        status.simulated = self.grader.simulated();
        status
    }

    /// The job's judge batch counters, from the store (they survive restarts), and,
    /// when items failed or abstained, what the judges' failures were.
    async fn with_batches(&self, mut status: JobStatus) -> Result<JobStatus, Error> {
        status.batches = Some(self.store.job_batch_counts(&status.id).await?);
        if status.failed > 0 || status.abstained > 0 {
            status.judge_failures = Some(self.judge_failures(&status.id).await?);
        }
        Ok(status)
    }

    /// Abstained ballots by reason and one example with its detail, read from the
    /// first `FAILURE_SCAN` finished items' results (reports' `abstentions`, failed
    /// items' error messages), so a status read stays cheap on a large job.
    async fn judge_failures(&self, id: &str) -> Result<JudgeFailures, Error> {
        #[derive(serde::Deserialize)]
        struct Row {
            #[serde(default)]
            abstentions: Vec<crate::grader::AbstentionDoc>,
            #[serde(default)]
            error: Option<RowError>,
        }
        #[derive(serde::Deserialize)]
        struct RowError {
            #[serde(default)]
            message: String,
        }
        let rows = self.result_rows(id, 0, FAILURE_SCAN).await?;
        let mut out = JudgeFailures {
            scanned_items: rows.len() as u64,
            ..JudgeFailures::default()
        };
        for row in rows {
            let Ok(r) = serde_json::from_str::<Row>(&row.json) else {
                continue;
            };
            if let Some(e) = r.error {
                out.failed_items += 1;
                if out.failed_example.is_none() {
                    out.failed_example = Some(e.message);
                }
            }
            for a in r.abstentions {
                *out.by_reason
                    .entry(a.reason.as_str().to_owned())
                    .or_default() += 1;
                if out.example.is_none() {
                    out.example = Some(format!(
                        "judge {} on criterion {}: {}: {}",
                        a.judge,
                        a.criterion,
                        a.reason,
                        a.detail.as_deref().unwrap_or("no further detail")
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The caller's jobs newest first (an admin's: everyone's, or `owner`'s).
    pub async fn list_jobs(
        &self,
        caller: &Caller,
        cursor: Option<&str>,
        limit: u32,
        owner: Option<&str>,
    ) -> Result<JobList, Error> {
        caller.require(Action::UseJobs)?;
        let before = match cursor {
            None | Some("") => None,
            Some(c) => Some(
                parse_cursor(c)
                    .ok_or_else(|| invalid("after", "not a cursor from a previous page"))?,
            ),
        };
        let limit = check_limit(limit)?;
        let jobs = match caller.list_filter(Owned::Job, owner) {
            ListFilter::Nothing => Vec::new(),
            ListFilter::All => self.store.list_jobs(before, limit, None).await?,
            ListFilter::Owner(o) => self.store.list_jobs(before, limit, Some(o)).await?,
        };
        let next = (jobs.len() == limit as usize)
            .then(|| jobs.last().map(|j| format!("{}_{}", j.created_at, j.id)))
            .flatten();
        Ok(JobList {
            jobs: jobs.iter().map(|j| self.status_of(j)).collect(),
            next,
        })
    }

    pub async fn cancel_job(&self, caller: &Caller, id: &str) -> Result<JobStatus, Error> {
        let job = self.own_job(caller, id).await?;
        if !job.state.is_final() {
            self.jobs.cancel(id).await?;
        }
        let status = self.status_of(&self.job_record(id).await?);
        self.with_batches(status).await
    }

    /// Finished results after `after` (completion order).
    pub async fn results(
        &self,
        caller: &Caller,
        id: &str,
        after: u64,
        limit: u32,
    ) -> Result<ResultPage, Error> {
        self.own_job(caller, id).await?;
        Ok(ResultPage {
            rows: self.result_rows(id, after, limit).await?,
        })
    }

    async fn result_rows(&self, id: &str, after: u64, limit: u32) -> Result<Vec<ResultRow>, Error> {
        Ok(self
            .store
            .results(id, after, limit)
            .await?
            .into_iter()
            .map(|(finished_seq, seq, json)| ResultRow {
                finished_seq,
                seq,
                json,
            })
            .collect())
    }

    /// A job's results in completion order, in pages, for every transport. Without
    /// `follow` it ends when the finished results run out; with `follow`, when the
    /// job is final and every result has been yielded. An unknown (or another
    /// owner's) job is an error here, before the stream opens. Dropping the stream
    /// (a client that went away) stops it: nothing outlives it.
    pub async fn result_stream(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
        follow: bool,
    ) -> Result<BoxStream<'static, Result<Vec<ResultRow>, Error>>, Error> {
        self.own_job(caller, id).await?;
        let state = Follow {
            // Subscribing before the first read means a result finished between a
            // read and the wait still wakes the follower.
            progress: self.jobs.subscribe(id),
            service: Arc::clone(self),
            id: id.to_owned(),
            follow,
            after: 0,
            final_seen: false,
            ended: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            state,
            |mut st| async move {
                let page = st.next_page().await?;
                Some((page, st))
            },
        )))
    }

    /// The aggregate of a job's reports, in the shape of `tribunal score --format json`,
    /// whole (gRPC's document). See `summary_stream`.
    pub async fn summary(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
        length_adjustment: Option<&str>,
    ) -> Result<JobSummary, Error> {
        let mut stream = self.summary_stream(caller, id, length_adjustment).await?;
        let mut examples = Vec::new();
        while let Some(page) = stream.next_page().await {
            for text in page? {
                examples
                    .push(serde_json::from_str(&text).map_err(|e| Error::Internal(e.to_string()))?);
            }
        }
        let mut summary = stream.finish().await?;
        summary.summary.examples = examples;
        Ok(summary)
    }

    /// A job's summary read in one pass: `SummaryStream::next_page` yields the
    /// per-example entries in item order while it gathers the figures' values, and
    /// `finish` then computes the figures, so a transport can write a million-item
    /// summary without holding it (entries first, figures after). Everything comes
    /// from the items' score facts (never whole reports) of one snapshot: the items
    /// finished when the summary started, which the summary's `job` describes.
    /// `length_adjustment` (`professional` or `CENTER,PENALTY`) reports length-adjusted
    /// figures beside the raw ones, replacing any adjustment the rubrics set, like
    /// `score --length-adjustment`.
    pub async fn summary_stream(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
        length_adjustment: Option<&str>,
    ) -> Result<SummaryStream, Error> {
        let adjustment = match length_adjustment {
            None | Some("") => None,
            Some(text) => Some(
                crate::rubric::LengthAdjustment::parse(text)
                    .map_err(|e| invalid("length_adjustment", e))?,
            ),
        };
        let job = self.own_job(caller, id).await?;
        let kept = kept_figures(&*self.store, &job, adjustment).await?;
        let mut stream = SummaryStream::new(Arc::clone(&self.store), &job, adjustment, kept);
        stream.job.simulated = self.grader.simulated();
        Ok(stream)
    }

    /// What a reviewer reads beside an item's report (the UI's item page): the
    /// conversation and response as submitted and the rubric's criteria. `None` for
    /// no such item; parts that cannot be read back (a rubric deleted since, say) are
    /// left empty rather than failing the page.
    pub async fn job_item_input(
        &self,
        caller: &Caller,
        id: &str,
        seq: u64,
    ) -> Result<Option<ItemInputView>, Error> {
        self.own_job(caller, id).await?;
        let Some(text) = self.store.item_input(id, seq).await? else {
            return Ok(None);
        };
        let Ok((_, item)) = parse_line(&text) else {
            return Ok(Some(ItemInputView::default()));
        };
        let criteria = match self.grader.resolve(&item.rubric).await {
            Ok(rubric) => rubric
                .criteria
                .iter()
                .map(|c| CriterionView {
                    id: c.id.to_string(),
                    text: c.text.clone(),
                    points: match c.kind {
                        crate::rubric::CriterionKind::Points(p) => Some(p),
                        crate::rubric::CriterionKind::Tier(_) => None,
                    },
                    tier: match c.kind {
                        crate::rubric::CriterionKind::Points(_) => None,
                        crate::rubric::CriterionKind::Tier(t) => Some(t.as_str()),
                    },
                    tags: c.tags.clone(),
                    veto: c.veto,
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        Ok(Some(ItemInputView {
            conversation: item
                .case
                .conversation
                .iter()
                .map(|m| (m.role.as_str(), m.content.clone()))
                .collect(),
            response: item.response,
            case_tags: item.case.tags,
            criteria,
        }))
    }
}

/// An item as submitted, for review beside its report ([`Service::job_item_input`]).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ItemInputView {
    /// `(role, content)` turns.
    pub conversation: Vec<(&'static str, String)>,
    pub response: Option<String>,
    pub case_tags: Vec<String>,
    pub criteria: Vec<CriterionView>,
}

/// A rubric criterion as a reviewer reads it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CriterionView {
    pub id: String,
    pub text: String,
    /// HealthBench-style points (negative: something the response should not do).
    pub points: Option<i8>,
    /// QuarkMed-style tier.
    pub tier: Option<&'static str>,
    pub tags: Vec<String>,
    pub veto: bool,
}

/// One page of done items' scores: `(seq, case_id, score, stored text)`.
async fn fact_page(
    store: &dyn Store,
    id: &str,
    after: Option<u64>,
    upto: u64,
    adjustment: Option<crate::rubric::LengthAdjustment>,
) -> Result<Vec<(u64, String, score::ExampleScore, String)>, Error> {
    let page = store.score_facts(id, after, upto, SUMMARY_PAGE).await?;
    page.into_iter()
        .map(|(seq, text)| {
            // Only done items are read, so anything that does not read back as a
            // report's score is damaged data, not a gap.
            let damaged = |e: String| corrupt(format_args!("job {id} result {seq}"), e);
            let (case_id, mut example) = read_example_score_text(&text).map_err(damaged)?;
            if let Some(la) = adjustment {
                example.length_adjustment = Some(la);
            }
            Ok((seq, case_id, example, text))
        })
        .collect()
}

/// The `score` object of a stored report or its score facts, as its JSON text.
fn verbatim_score(text: &str) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Facts<'a> {
        #[serde(borrow)]
        score: &'a serde_json::value::RawValue,
    }
    let facts: Facts<'_> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(facts.score.get().to_owned())
}

/// What `keep_job_figures` keeps: the figures, and whether every item's stored `score`
/// object is, byte for byte, the entry a summary writes for it (then a summary of the
/// job copies them instead of parsing and re-writing each one).
#[derive(serde::Serialize, serde::Deserialize)]
struct KeptFigures {
    figures: report::SummaryDoc,
    verbatim_entries: bool,
}

/// Computes a finished job's summary figures and keeps them in the store, so reading
/// its summary streams the entries without re-running the bootstraps. Called by the
/// runner's on-finish hook before the job reads as done (and again, harmlessly, if
/// that hook is retried).
pub async fn keep_job_figures(store: Arc<dyn Store>, id: &str) -> Result<(), Error> {
    let Some(job) = store.job(id).await? else {
        return Ok(());
    };
    let upto = job.done + job.failed;
    let mut stream = SummaryStream::new(Arc::clone(&store), &job, None, None);
    stream.check_verbatim = true;
    while let Some(page) = stream.next_page().await {
        page?;
    }
    let verbatim_entries = stream.verbatim_ok;
    let mut figures = stream.finish().await?.summary;
    figures.examples.clear();
    let kept = KeptFigures {
        figures,
        verbatim_entries,
    };
    let text = serde_json::to_string(&kept).map_err(|e| Error::Internal(e.to_string()))?;
    store.put_job_figures(id, upto, &text).await?;
    Ok(())
}

/// The figures kept when `job` finished, when a summary of it may use them: the
/// rubrics' own adjustment over every finished item of a done job, covering exactly
/// this snapshot. Anything else (and kept figures that do not read back) is computed.
async fn kept_figures(
    store: &dyn Store,
    job: &JobRecord,
    adjustment: Option<crate::rubric::LengthAdjustment>,
) -> Result<Option<KeptFigures>, Error> {
    if adjustment.is_some() || job.state != JobState::Done {
        return Ok(None);
    }
    Ok(match store.job_figures(&job.id).await? {
        Some((upto, text)) if upto == job.done + job.failed => match serde_json::from_str(&text) {
            Ok(kept) => Some(kept),
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "kept summary figures do not read back; computing them");
                None
            }
        },
        _ => None,
    })
}

/// One job summary being read (`Service::summary_stream`).
pub struct SummaryStream {
    store: Arc<dyn Store>,
    /// The snapshot: only the first `upto` finished items count.
    upto: u64,
    adjustment: Option<crate::rubric::LengthAdjustment>,
    /// The last `seq` read.
    after: Option<u64>,
    ended: bool,
    builder: score::SummaryBuilder,
    seed: u64,
    job: SummaryJob,
    /// The figures kept when the job finished, when they cover this snapshot: the
    /// entries are then only streamed, and `finish` returns these.
    kept: Option<KeptFigures>,
    /// `keep_job_figures` compares each written entry with the stored text...
    check_verbatim: bool,
    /// ...and this stays true while they all match.
    verbatim_ok: bool,
}

impl SummaryStream {
    fn new(
        store: Arc<dyn Store>,
        job: &JobRecord,
        adjustment: Option<crate::rubric::LengthAdjustment>,
        kept: Option<KeptFigures>,
    ) -> SummaryStream {
        let upto = job.done + job.failed;
        SummaryStream {
            store,
            upto,
            adjustment,
            after: None,
            ended: false,
            builder: score::SummaryBuilder::default(),
            seed: job.seed,
            job: SummaryJob {
                id: job.id.clone(),
                state: job.state,
                failed: job.failed,
                pending: job.pending(),
                simulated: false,
            },
            kept,
            check_verbatim: false,
            verbatim_ok: true,
        }
    }

    /// The next page of per-example entries in item order, each one's JSON text, `None`
    /// once every one has been read. Each page's scores also go into the figures.
    pub async fn next_page(&mut self) -> Option<Result<Vec<String>, Error>> {
        if self.ended {
            return None;
        }
        let verbatim = self.kept.as_ref().is_some_and(|k| k.verbatim_entries);
        let page = if verbatim {
            self.verbatim_page().await
        } else {
            self.typed_page().await
        };
        match page {
            Ok(Some((last, entries))) => {
                self.after = Some(last);
                Some(Ok(entries))
            }
            Ok(None) => {
                self.ended = true;
                None
            }
            Err(e) => {
                self.ended = true;
                Some(Err(e))
            }
        }
    }

    /// A page whose entries are the stored `score` texts, copied: only for a job whose
    /// kept figures say they are exactly the entries.
    async fn verbatim_page(&self) -> Result<Option<(u64, Vec<String>)>, Error> {
        let id = &self.job.id;
        let page = self
            .store
            .score_facts(id, self.after, self.upto, SUMMARY_PAGE)
            .await?;
        let Some(last) = page.last().map(|(s, _)| *s) else {
            return Ok(None);
        };
        let entries = page
            .iter()
            .map(|(seq, text)| {
                verbatim_score(text).map_err(|e| corrupt(format_args!("job {id} result {seq}"), e))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some((last, entries)))
    }

    /// A page read into scores: they feed the figures (unless kept) and each entry is
    /// written from its score.
    async fn typed_page(&mut self) -> Result<Option<(u64, Vec<String>)>, Error> {
        let page = fact_page(
            &*self.store,
            &self.job.id,
            self.after,
            self.upto,
            self.adjustment,
        )
        .await?;
        let Some(last) = page.last().map(|(s, _, _, _)| *s) else {
            return Ok(None);
        };
        let gather = self.kept.is_none();
        let mut entries = Vec::with_capacity(page.len());
        for (_, case_id, e, stored) in &page {
            if gather {
                self.builder.push(e);
            }
            let entry = serde_json::to_string(&report::ExampleEntry::new(case_id, e))
                .map_err(|e| Error::Internal(e.to_string()))?;
            if self.check_verbatim && verbatim_score(stored).map_or(true, |stored| stored != entry)
            {
                self.verbatim_ok = false;
            }
            entries.push(entry);
        }
        Ok(Some((last, entries)))
    }

    /// The figures over every entry (reading whatever `next_page` has not yet), as
    /// the summary document with `examples` left empty.
    pub async fn finish(mut self) -> Result<JobSummary, Error> {
        if let Some(kept) = self.kept.take() {
            return Ok(JobSummary {
                summary: kept.figures,
                job: self.job,
            });
        }
        while let Some(page) = self.next_page().await {
            page?;
        }
        let Self {
            builder, seed, job, ..
        } = self;
        // The bootstraps are CPU work (resamples x examples draws per figure): off the
        // async workers, so a large summary never stalls other requests.
        let summary = tokio::task::spawn_blocking(move || builder.finish(seed, DEFAULT_RESAMPLES))
            .await
            .map_err(|e| Error::Internal(format!("the summary's computation stopped: {e}")))?;
        Ok(JobSummary {
            summary: report::summary_doc(&summary, [], seed, DEFAULT_RESAMPLES),
            job,
        })
    }
}

/// The state of one results stream.
struct Follow {
    service: Arc<Service>,
    id: String,
    follow: bool,
    after: u64,
    /// Set once the job is seen final: one more empty page then proves nothing is
    /// left, even for results recorded between the page read and the state read.
    final_seen: bool,
    ended: bool,
    progress: tokio::sync::watch::Receiver<u64>,
}

impl Follow {
    async fn next_page(&mut self) -> Option<Result<Vec<ResultRow>, Error>> {
        if self.ended {
            return None;
        }
        loop {
            match self
                .service
                .result_rows(&self.id, self.after, RESULT_PAGE)
                .await
            {
                Ok(rows) => {
                    if let Some(last) = rows.last() {
                        self.after = last.finished_seq;
                        return Some(Ok(rows));
                    }
                }
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            }
            if !self.follow || self.final_seen {
                return None;
            }
            match self.service.store.job(&self.id).await {
                Ok(Some(job)) if job.state.is_final() => {
                    self.final_seen = true;
                    continue;
                }
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e.into()));
                }
            }
            // The runner is gone (shutdown) when the channel is closed: poll at the
            // safety-net pace instead of spinning.
            if let Ok(Err(_)) = tokio::time::timeout(FOLLOW_POLL, self.progress.changed()).await {
                tokio::time::sleep(FOLLOW_POLL).await;
            }
        }
    }
}

/// The job status document (`GET /v1/jobs/{id}`; gRPC `Job` carries the same fields).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct JobStatus {
    pub id: String,
    /// `cancelling` right after a cancel, while judge calls already sent finish (no
    /// new item or call starts); `cancelled`, with `finished_at`, once they have.
    pub state: JobState,
    pub total: u64,
    pub done: u64,
    /// Items whose report has at least one abstained ballot.
    pub abstained: u64,
    pub failed: u64,
    pub pending: u64,
    /// Judge calls made (cache hits excluded).
    pub calls: u64,
    pub input_tokens: u64,
    /// Part of `input_tokens` the provider billed at its cached price (prefix caching),
    /// summed over the job's finished items as their reports' `usage` gives it.
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    /// Part of `output_tokens` spent on hidden reasoning.
    pub reasoning_tokens: u64,
    pub cost_usd: f64,
    /// Seconds left at the pace so far; null before the first item or once final.
    pub eta_seconds: Option<f64>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Provider Batch API batches with calls of this job (batch judges only): submitted,
    /// and how many of them completed or failed. Filled when one job is read
    /// (`GET /v1/jobs/{id}`, cancel); null in listings.
    #[serde(default)]
    pub batches: Option<crate::judge::batch::BatchCounts>,
    /// The committee grading the job is simulated: its grades are not real judgements.
    #[serde(default)]
    pub simulated: bool,
    /// What the judges' failures were, when items failed or abstained (filled when
    /// one job is read; null in listings and for a job without failures).
    #[serde(default)]
    pub judge_failures: Option<JudgeFailures>,
}

/// Finished items whose results a status read scans for `JobStatus::judge_failures`.
const FAILURE_SCAN: u32 = 200;

/// The judges' failures in a job, from its first finished items' results.
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct JudgeFailures {
    /// Finished items read (the first 200 to finish, at most).
    pub scanned_items: u64,
    /// Abstained ballots by reason (`client_error`, `retries_exhausted`, `timeout`, ...)
    /// among the scanned items' reports.
    pub by_reason: std::collections::BTreeMap<String, u64>,
    /// One abstention in words: judge, criterion, reason and its detail (the HTTP
    /// status, URL and start of the error body, or the transport error, ...).
    pub example: Option<String>,
    /// Scanned items that failed (e.g. no criterion reached quorum) ...
    pub failed_items: u64,
    /// ... and the first one's error message, which names each judge's failure.
    pub failed_example: Option<String>,
}

impl JobStatus {
    pub fn at(j: &JobRecord, now_ms: i64) -> JobStatus {
        JobStatus {
            id: j.id.clone(),
            state: j.state,
            total: j.total,
            done: j.done,
            abstained: j.abstained,
            failed: j.failed,
            pending: j.pending(),
            calls: j.calls,
            input_tokens: j.input_tokens,
            cached_input_tokens: j.cached_input_tokens,
            output_tokens: j.output_tokens,
            reasoning_tokens: j.reasoning_tokens,
            cost_usd: j.cost_usd,
            eta_seconds: j.eta_seconds(now_ms),
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            batches: None,
            simulated: false,
            judge_failures: None,
        }
    }
}

impl From<&JobRecord> for JobStatus {
    fn from(j: &JobRecord) -> Self {
        JobStatus::at(j, now_ms())
    }
}

/// What a job would cost (`POST /v1/jobs?dry_run=true`, gRPC `EstimateJob`): nothing is
/// stored and no judge is called.
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct JobEstimate {
    /// Items that would be graded.
    pub items: u64,
    /// Judge calls over all judges.
    pub calls: u64,
    /// Expected bill over all judges, USD.
    pub cost_usd: f64,
    /// One row per committee member, in committee order.
    pub judges: Vec<JudgeCostEstimate>,
    /// How the figures are obtained, and what they leave out.
    pub method: String,
}

/// One judge's expected calls, tokens and bill.
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct JudgeCostEstimate {
    pub judge: String,
    pub calls: u64,
    /// Calls asking exactly what an earlier call of the job asks: the verdict cache
    /// answers them, so they cost nothing.
    pub cache_hits: u64,
    pub input_tokens: u64,
    /// Input tokens expected to be billed at the cached price (provider prefix caching).
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    /// Whether the judge's cached-input price is below its input price, so prefix
    /// caching was modelled.
    pub prefix_cache: bool,
    /// A batch judge (`batch = true`): its cost includes `batch_price_factor`.
    pub batch: bool,
}

/// What the estimate assumes; returned with every estimate so a reader knows.
const ESTIMATE_METHOD: &str = "prompts rendered exactly as they would be sent; 4 characters per input token; 60 output tokens per criterion with an explanation, 8 for a verdict alone (capped by max_tokens); a structured-output schema counted as prompt tokens; provider prefix caching from 1,024 tokens in 128-token blocks where the judge has a cached price; repeats within the job answered by the verdict cache, which is assumed empty at the start; escalations, re-asks and retries not included";

impl JobEstimate {
    /// Adds one chunk's per-judge estimate (same judges, same order every chunk).
    fn add(&mut self, rows: &[crate::committee::estimate::JudgeEstimate]) {
        if self.judges.is_empty() {
            self.method = ESTIMATE_METHOD.to_owned();
            self.judges = rows
                .iter()
                .map(|r| JudgeCostEstimate {
                    judge: r.judge.clone(),
                    prefix_cache: r.prefix_cache,
                    batch: r.batch,
                    ..JudgeCostEstimate::default()
                })
                .collect();
        }
        for (sum, r) in self.judges.iter_mut().zip(rows) {
            sum.calls += r.calls;
            sum.cache_hits += r.cache_hits;
            sum.input_tokens += r.input_tokens;
            sum.cached_input_tokens += r.cached_input_tokens;
            sum.output_tokens += r.output_tokens;
            sum.cost_usd += r.cost_usd;
        }
        self.calls = self.judges.iter().map(|j| j.calls).sum();
        self.cost_usd = self.judges.iter().map(|j| j.cost_usd).sum();
    }
}

/// A job's summary: the figures over its finished items, and where the job stands.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct JobSummary {
    #[serde(flatten)]
    pub summary: report::SummaryDoc,
    pub job: SummaryJob,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SummaryJob {
    pub id: String,
    pub state: JobState,
    /// Items that failed (not in the figures).
    pub failed: u64,
    /// Items not graded yet (not in the figures).
    pub pending: u64,
    /// The committee grading the job is simulated: the figures are not real grades.
    #[serde(default)]
    pub simulated: bool,
}

/// One page of jobs, newest first.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobStatus>,
    /// Cursor for the next page (`after`); null on the last page.
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> JobRecord {
        JobRecord {
            id: "j1".into(),
            state: JobState::Running,
            total: 10,
            seed: 7,
            owner: None,
            created_at: 1_000,
            started_at: Some(1_000),
            finished_at: None,
            done: 3,
            failed: 1,
            abstained: 2,
            calls: 40,
            input_tokens: 1_234,
            cached_input_tokens: 1_024,
            output_tokens: 56,
            reasoning_tokens: 12,
            cost_usd: 0.25,
        }
    }

    #[test]
    fn status_counts_pending_and_eta() {
        let s = JobStatus::at(&record(), 9_000);
        assert_eq!(s.pending, 6);
        // 8 s for 4 finished items: 2 s per item, 6 pending.
        assert_eq!(s.eta_seconds, Some(12.0));
        let mut done = record();
        done.state = JobState::Done;
        assert_eq!(JobStatus::at(&done, 9_000).eta_seconds, None);
    }

    #[test]
    fn cursors_follow_the_documented_pattern() {
        for (c, ok) in [
            ("1700000000000_01a2", true),
            ("-5_x", true),
            ("5_", true),
            ("+5_x", false),
            ("5", false),
            ("_x", false),
            ("1234567890123456789_x", false),
            ("12a_x", false),
        ] {
            assert_eq!(parse_cursor(c).is_some(), ok, "{c}");
        }
    }
}
