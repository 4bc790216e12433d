//! UI page handlers: read the session's `Ctx`, call `Service` methods (the same the
//! HTTP API calls, with the same caller), and render a template. No store access and
//! no rule of their own: who may see or do what is decided by the service.

use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value as Tpl, context};
use serde::Deserialize;
use serde_json::{Value, json};

use super::session::{self, LOGIN_COOKIE, LOGIN_TTL, SESSION_COOKIE, SESSION_TTL};
use super::svg::{ForestRow, forest, heatmap};
use super::{Ctx, UiError, UiState, render};
use crate::calibration::report::{AgreementReport, Estimate};
use crate::error::Error;
use crate::rubric::Invalid;
use crate::service::calibration::{QueueFilter, QueuePosition, rater_name};
use crate::service::{Action, NewCalibrationRun};

type Page = Result<Response, UiError>;

/// What every page's layout needs: who is signed in, what the nav shows, the CSRF
/// token for the sign-out form.
fn base(ctx: &Ctx) -> Tpl {
    context! {
        me => context! {
            name => rater_name(&ctx.caller),
            role => ctx.caller.role.as_str(),
            jobs => ctx.caller.role.allows(Action::UseJobs),
        },
        csrf => ctx.csrf.clone(),
    }
}

fn page(ctx: &Ctx, name: &str, extra: Tpl) -> Response {
    render(StatusCode::OK, name, context! { ..base(ctx), ..extra })
}

fn invalid(field: &str, message: impl Into<String>) -> UiError {
    UiError(Error::Invalid(Invalid::one(field, message)))
}

/// Every role starts at the calibration sets (the one page every role has).
pub async fn home() -> Redirect {
    Redirect::to("/ui/sets")
}

// ----- sign-in ---------------------------------------------------------------------

fn login_page(status: StatusCode, error: Option<String>) -> Response {
    let token = session::token();
    let mut resp = render(
        status,
        "login.html",
        context! { login_csrf => token.clone(), error => error },
    );
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(LOGIN_COOKIE, &token, LOGIN_TTL)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

pub async fn login_form(State(state): State<UiState>) -> Response {
    if !state.service.auth_enabled() {
        return Redirect::to("/ui/sets").into_response();
    }
    login_page(StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    key: String,
}

/// Checks the key with the service's own `authenticate` (the API's check) and opens a
/// session holding the resulting caller.
pub async fn login(
    State(state): State<UiState>,
    peer: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let key = form.key.trim();
    if key.is_empty() {
        return login_page(
            StatusCode::BAD_REQUEST,
            Some("key: enter your API key".into()),
        );
    }
    // Failed keys count against the client's address, as on the API.
    let peer = peer.map(|Extension(c)| c.0.ip());
    match state
        .service
        .authenticate_from(Some(&format!("Bearer {key}")), peer)
        .await
    {
        Ok(caller) => {
            let (token, _) = state.sessions.create(caller);
            let mut resp = Redirect::to("/ui").into_response();
            for c in [
                session::set_cookie(SESSION_COOKIE, &token, SESSION_TTL),
                session::clear_cookie(LOGIN_COOKIE),
            ] {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    resp.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            resp
        }
        Err(e) => {
            let mut resp = login_page(
                crate::api::http::error::status(e.kind()),
                Some(e.to_string()),
            );
            if let Error::RateLimited { retry_after } = e {
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(crate::error::retry_after_secs(retry_after)),
                );
            }
            resp
        }
    }
}

pub async fn logout(State(state): State<UiState>, headers: HeaderMap) -> Response {
    if let Some(t) = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| session::cookie(c, SESSION_COOKIE))
    {
        state.sessions.remove(t);
    }
    let mut resp = Redirect::to("/ui/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(SESSION_COOKIE)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

// ----- calibration sets ------------------------------------------------------------

pub async fn sets(State(state): State<UiState>, Extension(ctx): Extension<Ctx>) -> Page {
    let list = state.service.calibration_set_overview(&ctx.caller).await?;
    Ok(page(
        &ctx,
        "sets.html",
        context! { sets => Tpl::from_serialize(&list) },
    ))
}

#[derive(Deserialize, Default)]
pub struct SetQuery {
    #[serde(default)]
    run: Option<String>,
}

/// An estimate as the templates read it (`macros.html`'s `est`).
fn est(e: &Estimate) -> Tpl {
    context! { value => e.value, low => e.ci_low, high => e.ci_high, n => e.n,
    reason => e.reason.map(|r| format!("{r:?}")) }
}

/// A kappa as the templates read it: [`est`] plus its Landis-Koch `reading`.
fn kappa_est(e: &Estimate) -> Tpl {
    context! { value => e.value, low => e.ci_low, high => e.ci_high, n => e.n,
    reason => e.reason.map(|r| format!("{r:?}")),
    reading => e.value.map(crate::calibration::report::kappa_reading) }
}

/// The forest plot's rows: every human pair's kappa, then every judge's (and the
/// committee's) against the human majority.
fn forest_rows(report: &AgreementReport) -> Vec<ForestRow> {
    let mut rows: Vec<ForestRow> = report
        .humans
        .pairwise
        .iter()
        .map(|p| ForestRow {
            label: format!("{} – {}", p.a, p.b),
            value: p.cohen_kappa.value,
            low: p.cohen_kappa.ci_low,
            high: p.cohen_kappa.ci_high,
            human: true,
        })
        .collect();
    rows.extend(report.judges.iter().map(|j| ForestRow {
        label: j.judge.clone(),
        value: j.vs_human_majority.cohen_kappa.value,
        low: j.vs_human_majority.cohen_kappa.ci_low,
        high: j.vs_human_majority.cohen_kappa.ci_high,
        human: false,
    }));
    rows
}

/// The agreement dashboard of a set: its figures from the chosen (or newest
/// finished) run, the charts, the runs over time, and the set's actions.
pub async fn set_page(
    State(state): State<UiState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<SetQuery>,
) -> Page {
    let run = q.run.clone().filter(|r| !r.is_empty());
    let d = state
        .service
        .calibration_dashboard(&ctx.caller, &id, run.as_deref())
        .await?;
    let trend: Vec<Tpl> = d
        .trend
        .iter()
        .map(|t| {
            context! { run => t.run.clone(), at => t.at, judge => t.judge.clone(), kappa => t.kappa }
        })
        .collect();
    let (report, charts) = match d.report.as_deref() {
        Some(rep) => {
            let forest_svg = forest(
                &forest_rows(rep),
                (rep.humans.band.min, rep.humans.band.max),
            );
            let heatmaps: Vec<Tpl> = rep
                .judges
                .iter()
                .map(|j| {
                    context! {
                        judge => j.judge.clone(),
                        svg => Tpl::from_safe_string(heatmap(
                            &j.vs_human_majority.confusion_labels,
                            &j.vs_human_majority.confusion,
                        )),
                    }
                })
                .collect();
            let judges: Vec<Tpl> = rep
                .judges
                .iter()
                .map(|j| {
                    context! {
                        judge => j.judge.clone(),
                        kappa => kappa_est(&j.vs_human_majority.cohen_kappa),
                        agreement => est(&j.vs_human_majority.percent_agreement),
                        macro_f1 => est(&j.vs_human_majority.macro_f1),
                        band => j.human_band_position.as_str(),
                        n => j.vs_human_majority.n,
                        prevalence => crate::calibration::report::majority_prevalence(&j.vs_human_majority)
                            .into_iter()
                            .map(|(c, p)| format!("{c} {:.0}%", p * 100.0))
                            .collect::<Vec<_>>()
                            .join(", "),
                    }
                })
                .collect();
            let pairs: Vec<Tpl> = rep
                .humans
                .pairwise
                .iter()
                .map(|p| {
                    context! { a => p.a.clone(), b => p.b.clone(), n => p.n,
                    kappa => kappa_est(&p.cohen_kappa), agreement => est(&p.percent_agreement),
                    too_few_items => p.too_few_items }
                })
                .collect();
            let breakdown = |m: &std::collections::BTreeMap<
                String,
                crate::calibration::report::Breakdown,
            >| {
                m.iter()
                    .map(|(k, b)| {
                        context! {
                            key => k.clone(), items => b.items,
                            alpha => est(&b.humans.krippendorff_alpha),
                            judges => b.judges.iter().map(|j| context! {
                                judge => j.judge.clone(), kappa => kappa_est(&j.vs_human_majority.cohen_kappa)
                            }).collect::<Vec<_>>(),
                        }
                    })
                    .collect::<Vec<_>>()
            };
            (
                Some(context! {
                    items => rep.items, confidence => rep.confidence, resamples => rep.resamples,
                    fleiss => kappa_est(&rep.humans.fleiss_kappa.estimate),
                    alpha => est(&rep.humans.krippendorff_alpha),
                    band => context! { min => rep.humans.band.min, max => rep.humans.band.max },
                    pairs => pairs, judges => judges,
                    by_category => breakdown(&rep.by_category),
                    by_criterion => breakdown(&rep.by_criterion),
                }),
                Some(
                    context! { forest => Tpl::from_safe_string(forest_svg), heatmaps => heatmaps },
                ),
            )
        }
        None => (None, None),
    };
    Ok(page(
        &ctx,
        "set.html",
        context! {
            set => Tpl::from_serialize(&d.set),
            runs => Tpl::from_serialize(&d.runs),
            run => d.run.as_ref().map(|r| context! {
                id => r.id.clone(), state => r.state.as_str(),
                done => r.done, failed => r.failed, total => r.total,
                created_at => r.created_at, finished_at => r.finished_at,
            }),
            simulated => d.report.as_ref().and_then(|r| r.run.as_ref()).and_then(|r| r.simulated) == Some(true),
            newer_labels => d.newer_labels,
            active => d.runs.iter().find(|r| r.finished_at.is_none() && r.state != crate::service::JobState::Cancelled).map(|r| context! {
                id => r.id.clone(), state => r.state.as_str(), done => r.done, failed => r.failed, total => r.total,
                created_at => r.created_at,
            }),
            report => report, charts => charts, trend => trend,
            can_run => ctx.caller.role.allows(Action::StartCalibrationRun),
        },
    ))
}

#[derive(Deserialize, Default, Clone)]
pub struct QueueQuery {
    #[serde(default)]
    item: Option<String>,
    #[serde(default)]
    after: Option<String>,
    /// Set after an undo, for the notice.
    #[serde(default)]
    undone: Option<String>,
    #[serde(default)]
    run: Option<String>,
    #[serde(default)]
    unlabelled: Option<String>,
    #[serde(default)]
    disagreements: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    criterion: Option<String>,
    /// The annotator's setting: after a label, go straight to the next item instead of
    /// staying on the reveal.
    #[serde(default)]
    straight_on: Option<String>,
    /// Set after a label, for the "saved" notice above the reveal.
    #[serde(default)]
    labelled: Option<String>,
}

fn nonempty(s: Option<&String>) -> Option<String> {
    s.filter(|s| !s.is_empty()).cloned()
}

impl QueueQuery {
    fn filter(&self) -> QueueFilter {
        QueueFilter {
            unlabelled: self.unlabelled.as_deref().is_some_and(|v| !v.is_empty()),
            disagreements: self.disagreements.as_deref().is_some_and(|v| !v.is_empty()),
            category: nonempty(self.category.as_ref()),
            criterion: nonempty(self.criterion.as_ref()),
        }
    }

    fn goes_straight_on(&self) -> bool {
        nonempty(self.straight_on.as_ref()).is_some()
    }

    /// The filter (and run) as a query string, for links that keep them.
    fn keep(&self, run: Option<&str>) -> String {
        let f = self.filter();
        let mut parts: Vec<(&str, String)> = Vec::new();
        if let Some(r) = run {
            parts.push(("run", r.to_owned()));
        }
        if f.unlabelled {
            parts.push(("unlabelled", "1".into()));
        }
        if f.disagreements {
            parts.push(("disagreements", "1".into()));
        }
        if let Some(c) = f.category {
            parts.push(("category", c));
        }
        if let Some(c) = f.criterion {
            parts.push(("criterion", c));
        }
        if self.goes_straight_on() {
            parts.push(("straight_on", "1".into()));
        }
        parts
            .into_iter()
            .map(|(k, v)| format!("{k}={}", percent(&v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub(super) fn percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The review queue: one item, blind until the caller labels it.
pub async fn queue(
    State(state): State<UiState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<QueueQuery>,
) -> Page {
    let svc = &state.service;
    let run = match nonempty(q.run.as_ref()) {
        Some(r) => Some(r),
        None => svc
            .calibration_runs_of_set(&ctx.caller, &id)
            .await?
            .into_iter()
            .find(|r| r.finished_at.is_some())
            .map(|r| r.id),
    };
    let at = match (nonempty(q.item.as_ref()), nonempty(q.after.as_ref())) {
        (Some(i), _) => QueuePosition::Item(i),
        (None, Some(a)) => QueuePosition::After(a),
        (None, None) => QueuePosition::FirstUnlabelled,
    };
    let rq = svc
        .review_queue(&ctx.caller, &id, &q.filter(), &at, run.as_deref())
        .await?;
    let keep = q.keep(run.as_deref());
    let f = q.filter();
    let interval = rq.set.scale == Some(crate::service::ScaleName::Interval);
    Ok(page(
        &ctx,
        "queue.html",
        context! {
            q => Tpl::from_serialize(&rq),
            keep => keep,
            run => run,
            undone => nonempty(q.undone.as_ref()).is_some(),
            labelled => nonempty(q.labelled.as_ref()).is_some(),
            straight_on => q.goes_straight_on(),
            interval => interval,
            can_label => ctx.caller.role.allows(Action::AddLabels),
            filter => context! {
                unlabelled => f.unlabelled, disagreements => f.disagreements,
                category => f.category, criterion => f.criterion,
            },
        },
    ))
}

#[derive(Deserialize)]
pub struct LabelForm {
    item: String,
    value: String,
    #[serde(default)]
    number: Option<String>,
    #[serde(flatten)]
    keep: QueueQuery,
}

/// Writes the caller's label through the API's own call (same validation, history and
/// all-or-nothing rule), then moves on to the next item.
pub async fn label(
    State(state): State<UiState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<LabelForm>,
) -> Page {
    let value = if form.number.as_deref().is_some_and(|n| !n.is_empty()) {
        let x: f64 = form
            .value
            .trim()
            .parse()
            .map_err(|_| invalid("value", "this set's scale is interval: enter a number"))?;
        json!(x)
    } else {
        Value::from(form.value.clone())
    };
    let doc = json!({"labels": [{
        "item": form.item, "rater": rater_name(&ctx.caller), "kind": "human", "value": value,
    }]});
    state
        .service
        .add_calibration_labels(&ctx.caller, &id, &doc)
        .await?;
    let keep = form.keep.keep(nonempty(form.keep.run.as_ref()).as_deref());
    let sep = if keep.is_empty() { "" } else { "&" };
    // The reveal (the other labels, the judges) is shown on the labelled item until
    // the annotator moves on, unless they chose to skip it.
    let to = if form.keep.goes_straight_on() {
        format!(
            "/ui/sets/{}/queue?after={}{sep}{keep}",
            percent(&id),
            percent(&form.item),
        )
    } else {
        format!(
            "/ui/sets/{}/queue?item={}&labelled=1{sep}{keep}",
            percent(&id),
            percent(&form.item),
        )
    };
    Ok(Redirect::to(&to).into_response())
}

/// Undoes the caller's last label on the set (the service's undo, as the API's) and
/// goes back to that item, so it can be labelled again.
pub async fn undo(
    State(state): State<UiState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    axum::Form(keep): axum::Form<QueueQuery>,
) -> Page {
    let undone = state
        .service
        .undo_calibration_label(&ctx.caller, &id)
        .await?;
    let keep = keep.keep(nonempty(keep.run.as_ref()).as_deref());
    let sep = if keep.is_empty() { "" } else { "&" };
    Ok(Redirect::to(&format!(
        "/ui/sets/{}/queue?item={}&undone=1{sep}{keep}",
        percent(&id),
        percent(&undone.undone.item),
    ))
    .into_response())
}

pub async fn start_run(
    State(state): State<UiState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Page {
    let run = state
        .service
        .start_calibration_run(
            &ctx.caller,
            &NewCalibrationRun {
                set: id.clone(),
                seed: None,
                resamples: None,
                confidence: None,
                min_pair_items: None,
            },
        )
        .await?;
    Ok(Redirect::to(&format!(
        "/ui/sets/{}?run={}",
        percent(&id),
        percent(&run.id)
    ))
    .into_response())
}

#[derive(Deserialize, Default)]
pub struct HistoryQuery {
    #[serde(default)]
    item: Option<String>,
}

pub async fn history(
    State(state): State<UiState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Page {
    let svc = &state.service;
    let set = svc.calibration_set(&ctx.caller, &id).await?;
    let item = nonempty(q.item.as_ref());
    let h = svc.label_history(&ctx.caller, &id, item.as_deref()).await?;
    Ok(page(
        &ctx,
        "history.html",
        context! { set => Tpl::from_serialize(&set), item => item,
        history => Tpl::from_serialize(&h.history) },
    ))
}

/// A file name safe for `Content-Disposition`.
fn file_name(s: &str) -> String {
    let n: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    if n.is_empty() { "export".into() } else { n }
}

fn download(content_type: &'static str, name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

pub async fn export_set(
    State(state): State<UiState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Page {
    let (name, doc) = state
        .service
        .calibration_set_document(&ctx.caller, &id)
        .await?;
    Ok(download(
        "application/x-ndjson",
        &format!("{}.calibration.v1.jsonl", file_name(&name)),
        doc,
    ))
}

async fn run_report(state: &UiState, ctx: &Ctx, id: &str) -> Result<AgreementReport, UiError> {
    state
        .service
        .calibration_run(&ctx.caller, id)
        .await?
        .report
        .ok_or_else(|| {
            invalid(
                "run",
                "the run has not finished; its report is not written yet",
            )
        })
}

pub async fn export_report(
    State(state): State<UiState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Page {
    let rep = run_report(&state, &ctx, &id).await?;
    let body =
        serde_json::to_string_pretty(&rep).map_err(|e| UiError(Error::Internal(e.to_string())))?;
    Ok(download(
        "application/json",
        &format!("{}.report.json", file_name(&id)),
        body,
    ))
}

/// The report's kappas as CSV: one row per human pair and per judge.
pub async fn export_report_csv(
    State(state): State<UiState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Page {
    let rep = run_report(&state, &ctx, &id).await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let internal = |e: csv::Error| UiError(Error::Internal(e.to_string()));
    w.write_record([
        "kind",
        "rater",
        "against",
        "n",
        "kappa",
        "ci_low",
        "ci_high",
        "agreement",
    ])
    .map_err(internal)?;
    let f = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
    for p in &rep.humans.pairwise {
        w.write_record([
            "human_pair".to_owned(),
            p.a.clone(),
            p.b.clone(),
            p.n.to_string(),
            f(p.cohen_kappa.value),
            f(p.cohen_kappa.ci_low),
            f(p.cohen_kappa.ci_high),
            f(p.percent_agreement.value),
        ])
        .map_err(internal)?;
    }
    for j in &rep.judges {
        let m = &j.vs_human_majority;
        w.write_record([
            "judge".to_owned(),
            j.judge.clone(),
            "human_majority".to_owned(),
            m.n.to_string(),
            f(m.cohen_kappa.value),
            f(m.cohen_kappa.ci_low),
            f(m.cohen_kappa.ci_high),
            f(m.percent_agreement.value),
        ])
        .map_err(internal)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| UiError(Error::Internal(e.to_string())))?;
    Ok(download(
        "text/csv; charset=utf-8",
        &format!("{}.report.csv", file_name(&id)),
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
}

// ----- jobs ------------------------------------------------------------------------

#[derive(Deserialize, Default)]
pub struct JobsQuery {
    #[serde(default)]
    after: Option<String>,
}

pub async fn jobs(
    State(state): State<UiState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<JobsQuery>,
) -> Page {
    let list = state
        .service
        .list_jobs(&ctx.caller, q.after.as_deref(), 50, None)
        .await?;
    Ok(page(
        &ctx,
        "jobs.html",
        context! { jobs => Tpl::from_serialize(&list.jobs), next => list.next },
    ))
}

/// Finished items per page of the job page (item order).
const JOB_PAGE_ITEMS: u32 = 200;

#[derive(Deserialize, Default)]
pub struct JobPageQuery {
    /// Show the items after this `seq`.
    #[serde(default)]
    after: Option<u64>,
}

/// Cancels a job from its page (the service's one cancel: ownership, state, and the
/// runners on every replica), then shows the page again, which follows the job from
/// `cancelling` to `cancelled`.
pub async fn cancel_job(
    State(state): State<UiState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Page {
    state.service.cancel_job(&ctx.caller, &id).await?;
    Ok(Redirect::to(&format!("/ui/jobs/{}", percent(&id))).into_response())
}

pub async fn job_page(
    State(state): State<UiState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<JobPageQuery>,
) -> Page {
    let svc = &state.service;
    let job = svc.job(&ctx.caller, &id).await?;
    let summary = state.service.summary(&ctx.caller, &id, None).await.ok();
    // One more than a page, to know whether a next page exists.
    let mut rows = svc
        .job_items_by_seq(&ctx.caller, &id, q.after, JOB_PAGE_ITEMS + 1)
        .await?;
    let more = rows.len() > JOB_PAGE_ITEMS as usize;
    rows.truncate(JOB_PAGE_ITEMS as usize);
    let next = if more {
        rows.last().map(|(s, _)| *s)
    } else {
        None
    };
    let docs: Vec<(u64, Value)> = rows
        .into_iter()
        .map(|(seq, text)| (seq, serde_json::from_str(&text).unwrap_or(Value::Null)))
        .collect();
    // Every report of a job comes from the same committee: one says whether it was
    // simulated.
    let simulated = docs.iter().any(|(_, d)| d["simulated"] == true);
    let items: Vec<Tpl> = docs
        .iter()
        .map(|(seq, v)| context! { seq => seq, doc => Tpl::from_serialize(v) })
        .collect();
    Ok(page(
        &ctx,
        "job.html",
        context! {
            job => Tpl::from_serialize(&job),
            summary => summary.map(|s| Tpl::from_serialize(&s)),
            items => items,
            after => q.after,
            next => next,
            shown => JOB_PAGE_ITEMS,
            simulated => simulated,
        },
    ))
}

/// A job's progress as server-sent events, every half second until it is final.
pub async fn job_events(
    State(state): State<UiState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    // Checked once up front, so an unknown job is an error page, not an empty stream.
    state.service.job(&ctx.caller, &id).await?;
    let stream = futures::stream::unfold(Some((state, ctx, id)), |st| async move {
        let (state, ctx, id) = st?;
        // Signing out (or the session expiring) ends the stream.
        if !state.sessions.alive(&ctx.session) {
            return None;
        }
        let job = state.service.job(&ctx.caller, &id).await.ok()?;
        let data = json!({"state": job.state, "done": job.done, "failed": job.failed,
            "total": job.total, "eta_seconds": job.eta_seconds})
        .to_string();
        let event = Event::default().event("progress").data(data);
        let next = if job.state.is_final() {
            None
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Some((state, ctx, id))
        };
        Some((Ok::<_, std::convert::Infallible>(event), next))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// A calibration run's progress as server-sent events, for everyone who can see the
/// set (annotators cannot read jobs), every half second until its report is written.
pub async fn run_events(
    State(state): State<UiState>,
    Extension(ctx): Extension<Ctx>,
    Path((set, run)): Path<(String, String)>,
) -> Result<Response, UiError> {
    // Checked once up front, so an unknown run is an error page, not an empty stream.
    state
        .service
        .calibration_run_progress(&ctx.caller, &set, &run)
        .await?;
    // The report is written just after the job is done; a done job whose report has
    // not come after this many more polls (a failed report write, logged by the
    // runner) ends the stream instead of polling forever.
    const POLLS_AFTER_DONE: u32 = 20;
    let stream = futures::stream::unfold(Some((state, ctx, set, run, 0)), |st| async move {
        let (state, ctx, set, run, after_done) = st?;
        // Signing out (or the session expiring) ends the stream.
        if !state.sessions.alive(&ctx.session) {
            return None;
        }
        let r = state
            .service
            .calibration_run_progress(&ctx.caller, &set, &run)
            .await
            .ok()?;
        // The run is over when its report is written (or its job failed or was
        // cancelled, when no report will come).
        let after_done = after_done + u32::from(r.state.is_final());
        let over = r.finished_at.is_some()
            || r.state == crate::service::JobState::Cancelled
            || after_done > POLLS_AFTER_DONE;
        let data = json!({"state": r.state, "done": r.done, "failed": r.failed,
            "total": r.total, "report": r.finished_at.is_some()})
        .to_string();
        let event = Event::default().event("progress").data(data);
        let next = if over {
            None
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Some((state, ctx, set, run, after_done))
        };
        Some((Ok::<_, std::convert::Infallible>(event), next))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

pub async fn item_page(
    State(state): State<UiState>,
    Extension(ctx): Extension<Ctx>,
    Path((id, seq)): Path<(String, u64)>,
) -> Page {
    let svc = &state.service;
    let job = svc.job(&ctx.caller, &id).await?;
    let found = svc
        .job_items_by_seq(&ctx.caller, &id, seq.checked_sub(1), 1)
        .await?
        .into_iter()
        .find(|(s, _)| *s == seq);
    let Some((_, text)) = found else {
        return Err(UiError(Error::NotFound {
            what: "finished item",
            name: format!("{seq} of job {id}"),
        }));
    };
    let doc: Value =
        serde_json::from_str(&text).map_err(|e| UiError(Error::Corrupt(e.to_string())))?;
    let input = svc.job_item_input(&ctx.caller, &id, seq).await?;
    // Each criterion of the report beside its rubric text, points or tier and tags.
    let vetoed: Vec<&str> = doc["score"]["vetoed_by"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let criteria: Vec<Tpl> = doc["criteria"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let cid = c["id"].as_str().unwrap_or_default();
            let rubric = input
                .as_ref()
                .and_then(|i| i.criteria.iter().find(|r| r.id == cid));
            context! {
                id => cid,
                text => rubric.map(|r| r.text.clone()),
                points => rubric.and_then(|r| r.points),
                tier => rubric.and_then(|r| r.tier),
                tags => rubric.map(|r| r.tags.clone()).unwrap_or_default(),
                veto => rubric.is_some_and(|r| r.veto),
                vetoed => vetoed.contains(&cid),
                verdict => Tpl::from_serialize(&c["verdict"]),
                consensus => Tpl::from_serialize(&c["consensus"]),
                agreement => Tpl::from_serialize(&c["agreement"]),
                ballots => Tpl::from_serialize(&c["ballots"]),
            }
        })
        .collect();
    Ok(page(
        &ctx,
        "item.html",
        context! {
            job => Tpl::from_serialize(&job), seq => seq, doc => Tpl::from_serialize(&doc),
            input => input.map(|i| Tpl::from_serialize(&i)), criteria => criteria,
        },
    ))
}

// ----- assets ----------------------------------------------------------------------

pub async fn app_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("assets/app.js"),
    )
}

pub async fn app_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("assets/app.css"),
    )
}
