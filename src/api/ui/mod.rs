//! The annotator web UI under `/ui`: server-rendered pages (minijinja templates and
//! assets compiled into the binary; nothing fetched at run time), a third transport
//! beside HTTP and gRPC. Handlers call the same `Service` methods with the same
//! `Caller`, which a session holds from sign-in; this module never touches the store.
//! Every response carries a strict Content-Security-Policy (no inline script or
//! style), and every POST is refused unless it carries the session's CSRF token.

mod handlers;
pub mod markdown;
pub mod session;
pub mod svg;

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::error::Error;
use crate::service::{Caller, Service};
use session::{LOGIN_COOKIE, SESSION_COOKIE, SESSION_TTL, Sessions};

/// The Content-Security-Policy of every UI response: only this origin's script,
/// style and images; no inline script or style; no framing; forms post here only.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The largest form body a UI POST may send (labels and run starts are small).
const MAX_FORM_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct UiState {
    pub service: Arc<Service>,
    pub sessions: Arc<Sessions>,
}

/// The signed-in caller of a request and the CSRF token its forms carry.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub caller: Caller,
    pub csrf: String,
    /// The session's token: long-lived responses (progress streams) check that it is
    /// still signed in.
    pub session: String,
}

/// The UI's routes, with their session gate and security headers.
pub fn router<S: Clone + Send + Sync + 'static>(service: Arc<Service>) -> axum::Router<S> {
    let state = UiState {
        service,
        sessions: Arc::new(Sessions::default()),
    };
    axum::Router::new()
        .route("/ui", get(handlers::home))
        .route("/ui/", get(handlers::home))
        .route("/ui/login", get(handlers::login_form).post(handlers::login))
        .route("/ui/logout", post(handlers::logout))
        .route("/ui/sets", get(handlers::sets))
        .route("/ui/sets/{id}", get(handlers::set_page))
        .route("/ui/sets/{id}/queue", get(handlers::queue))
        .route("/ui/sets/{id}/label", post(handlers::label))
        .route("/ui/sets/{id}/run", post(handlers::start_run))
        .route("/ui/sets/{id}/undo", post(handlers::undo))
        .route("/ui/sets/{id}/runs/{run}/events", get(handlers::run_events))
        .route("/ui/sets/{id}/history", get(handlers::history))
        .route("/ui/sets/{id}/export.jsonl", get(handlers::export_set))
        .route("/ui/runs/{id}/report.json", get(handlers::export_report))
        .route("/ui/runs/{id}/report.csv", get(handlers::export_report_csv))
        .route("/ui/jobs", get(handlers::jobs))
        .route("/ui/jobs/{id}", get(handlers::job_page))
        .route("/ui/jobs/{id}/events", get(handlers::job_events))
        .route("/ui/jobs/{id}/cancel", post(handlers::cancel_job))
        .route("/ui/jobs/{id}/items/{seq}", get(handlers::item_page))
        .route("/ui/assets/app.js", get(handlers::app_js))
        .route("/ui/assets/app.css", get(handlers::app_css))
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// Headers every UI response carries.
async fn security_headers(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().starts_with("/ui/assets/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !is_asset {
        // Pages show labels and verdicts: never keep them in a shared cache.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Resolves the session (or, on a server without keys, opens one for the local
/// admin, like the API), sends the signed-out to the sign-in form, and refuses any
/// POST whose form lacks the right CSRF token.
async fn gate(State(state): State<UiState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if path.starts_with("/ui/assets/") {
        return next.run(req).await;
    }
    let cookies = req
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let is_post = req.method() == Method::POST;
    if path == "/ui/login" {
        if !is_post {
            return next.run(req).await;
        }
        let expected = session::cookie(&cookies, LOGIN_COOKIE).map(str::to_owned);
        return match csrf_checked(req, expected.as_deref()).await {
            Ok(req) => next.run(req).await,
            Err(resp) => resp,
        };
    }
    let existing = session::cookie(&cookies, SESSION_COOKIE)
        .and_then(|t| state.sessions.get(t).map(|s| (t.to_owned(), s)));
    let (new_cookie, token, session) = match existing {
        Some((t, s)) => (None, t, s),
        None if !state.service.auth_enabled() => {
            let (token, s) = state.sessions.create(Caller::local_admin());
            (
                Some(session::set_cookie(SESSION_COOKIE, &token, SESSION_TTL)),
                token,
                s,
            )
        }
        None if is_post => {
            return page_error(&Error::Unauthenticated(
                "your session has ended; sign in again".into(),
            ));
        }
        None => return Redirect::to("/ui/login").into_response(),
    };
    // A session request costs the key's quota like an API request does (sign-in
    // spent one through `authenticate`; the keyless local admin has none).
    if let Err(e) = state.service.spend_request(&session.caller).await {
        return page_error(&e);
    }
    let mut req = req;
    req.extensions_mut().insert(Ctx {
        caller: session.caller.clone(),
        csrf: session.csrf.clone(),
        session: token,
    });
    let req = if is_post {
        match csrf_checked(req, Some(&session.csrf)).await {
            Ok(r) => r,
            Err(resp) => return resp,
        }
    } else {
        req
    };
    let mut resp = next.run(req).await;
    if let Some(c) = new_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// Reads a POST's form body, checks its `csrf` field against `expected`, and gives
/// the request back with the same body for the handler.
async fn csrf_checked(req: Request, expected: Option<&str>) -> Result<Request, Response> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| {
            page_error(&Error::TooLarge {
                what: "form",
                detail: format!("over {MAX_FORM_BYTES} bytes"),
                field: None,
            })
        })?;
    // CSRF tokens are hex, so the field needs no percent-decoding to compare.
    let sent = std::str::from_utf8(&bytes).ok().and_then(|text| {
        text.split('&')
            .find_map(|pair| pair.strip_prefix("csrf=").map(str::to_owned))
    });
    match (sent, expected) {
        (Some(s), Some(e)) if !e.is_empty() && session::same_token(&s, e) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(page_error(&Error::Forbidden(
            "the form's CSRF token is missing or stale; reload the page and submit again".into(),
        ))),
    }
}

/// The template environment, built once from the templates compiled into the binary.
/// `.html` templates escape every value unless it is marked safe (only server-made SVG
/// is).
fn env() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        for (name, text) in TEMPLATES {
            // A template that does not parse is caught by the page tests; the page
            // then answers with the error page instead of the server failing to start.
            if let Err(e) = env.add_template(name, text) {
                tracing::error!(template = name, error = %e, "UI template does not parse");
            }
        }
        env.add_filter("num", num);
        env.add_filter("enc", |s: String| handlers::percent(&s));
        env.add_filter("pct", pct);
        // The one filter whose output is marked safe: it escapes the text itself first.
        env.add_filter("markdown", |s: String| {
            minijinja::Value::from_safe_string(markdown::render(&s))
        });
        env.add_filter("when", when);
        env.add_filter("verdict", verdict);
        env
    })
}

const TEMPLATES: [(&str, &str); 11] = [
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("error.html", include_str!("templates/error.html")),
    ("sets.html", include_str!("templates/sets.html")),
    ("set.html", include_str!("templates/set.html")),
    ("queue.html", include_str!("templates/queue.html")),
    ("history.html", include_str!("templates/history.html")),
    ("jobs.html", include_str!("templates/jobs.html")),
    ("job.html", include_str!("templates/job.html")),
    ("item.html", include_str!("templates/item.html")),
    ("macros.html", include_str!("templates/macros.html")),
];

/// A number to three decimals, or a dash for none.
fn num(v: minijinja::Value) -> String {
    match f64::try_from(v) {
        Ok(x) if x.is_finite() => format!("{x:.3}"),
        _ => "–".to_owned(),
    }
}

/// A verdict or label as a reviewer reads it: binary ones as "met" / "not met"
/// (booleans, or the labels "true" / "false"), graded ones as they are, none as
/// "abstained".
fn verdict(v: minijinja::Value) -> String {
    if v.is_none() || v.is_undefined() {
        return "abstained".to_owned();
    }
    if v.kind() == minijinja::value::ValueKind::Bool {
        return if v.is_true() { "met" } else { "not met" }.to_owned();
    }
    match v.as_str() {
        Some("true") => "met".to_owned(),
        Some("false") => "not met".to_owned(),
        Some(s) => s.to_owned(),
        None => v.to_string(),
    }
}

/// A share as a percentage, or a dash.
fn pct(v: minijinja::Value) -> String {
    match f64::try_from(v) {
        Ok(x) if x.is_finite() => format!("{:.1}%", x * 100.0),
        _ => "–".to_owned(),
    }
}

/// Unix milliseconds as a UTC timestamp.
fn when(v: minijinja::Value) -> String {
    let Ok(ms) = i64::try_from(v) else {
        return "–".to_owned();
    };
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Renders `name` with `ctx` into an HTML response.
fn render(status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
    let out = env().get_template(name).and_then(|t| t.render(ctx));
    match out {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "UI template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "the page could not be rendered; the server log has the details",
            )
                .into_response()
        }
    }
}

/// An error as a page, with the status the HTTP API gives the same error.
fn page_error(e: &Error) -> Response {
    let status = crate::api::http::error::status(e.kind());
    if status.is_server_error() {
        tracing::error!(error = %e, "UI request failed");
    }
    render(
        status,
        "error.html",
        minijinja::context! {
            status => status.as_u16(),
            kind => e.kind().as_str(),
            message => e.to_string(),
            signed_out => e.kind() == crate::ErrorKind::Unauthenticated,
        },
    )
}

/// A service error on its way to an error page.
pub struct UiError(pub Error);

impl From<Error> for UiError {
    fn from(e: Error) -> Self {
        UiError(e)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        page_error(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for (name, _) in TEMPLATES {
            assert!(env().get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn dates_and_numbers() {
        assert_eq!(when(minijinja::Value::from(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            when(minijinja::Value::from(1_700_000_000_000_i64)),
            "2023-11-14 22:13:20 UTC"
        );
        assert_eq!(num(minijinja::Value::from(0.12345)), "0.123");
        assert_eq!(num(minijinja::Value::from(())), "–");
        assert_eq!(pct(minijinja::Value::from(0.5)), "50.0%");
    }
}
