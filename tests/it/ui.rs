//! The web UI over HTTP: every page for every role (status and key content), the
//! sign-in flow and its cookies, CSRF refusals, the blind review queue, label writes
//! through the API's own call, exports, job pages and their event stream, and XSS
//! payloads in untrusted texts rendering inert.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{TestApp, case};

pub const KEYS: &str = r#"
[[server.api_keys]]
name = "root"
role = "admin"
key_env = "K_ADMIN"
[[server.api_keys]]
name = "team-a"
key_env = "K_A"
[[server.api_keys]]
name = "team-b"
role = "client"
key_env = "K_B"
[[server.api_keys]]
name = "doc"
role = "annotator"
key_env = "K_DOC"
"#;

pub const ENV: &[(&str, &str)] = &[
    ("K_ADMIN", "admin-secret"),
    ("K_A", "a-secret"),
    ("K_B", "b-secret"),
    ("K_DOC", "doc-secret"),
];

/// Untrusted texts an attacker could put in a set, a response or a criterion.
pub const XSS_SCRIPT: &str = "<script>alert('xss')</script>";
pub const XSS_IMG: &str = "<img src=x onerror=alert(1)>";

/// The made-up "true" answer of item `i`, which the raters below mostly agree with.
fn truth(i: usize) -> bool {
    (i * 7) % 5 < 3
}

/// A live calibration set: every item has a case, a response and a criterion; two
/// other annotators and a judge (`judge-hidden`) have labelled each item already.
/// Item `x1` carries the XSS payloads.
pub fn live_set(name: &str, n: usize) -> String {
    let mut lines = vec![
        json!({"format": "calibration.v1", "name": name, "scale": "nominal",
            "categories": ["false", "true"], "met": "true",
            // A handful of items: the set's own minimum keeps its pairs in the band.
            "min_pair_items": 2,
            "description": format!("Label whether the response **meets** the criterion. {XSS_SCRIPT}")})
        .to_string(),
    ];
    for i in 0..n {
        let (response, criterion) = if i == 1 {
            (
                format!("Rest. {XSS_SCRIPT} {XSS_IMG}"),
                format!("Advises rest {XSS_IMG}"),
            )
        } else {
            (
                format!("Answer {i}: rest, fluids, and see a doctor if it gets worse."),
                format!("Advises seeing a doctor (variant {i})."),
            )
        };
        lines.push(
            json!({"id": format!("x{i}"), "category": if i % 2 == 0 { "safety" } else { "info" },
            "case": format!("Question {i}: I have had a headache for two days."),
            "response": response, "criterion": criterion,
            "labels": [
                {"rater": "nurse-other", "kind": "human", "value": truth(i) != (i % 5 == 4)},
                {"rater": "doctor-other", "kind": "human", "value": truth(i) != (i % 7 == 6)},
                {"rater": "judge-hidden", "kind": "judge", "value": truth(i) != (i % 4 == 3)},
            ]})
            .to_string(),
        );
    }
    lines.join("\n")
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }
}

/// The `value` of the first `name="csrf"` input on a page.
pub fn csrf_of(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    body[at..].split('"').next().unwrap().to_owned()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A browser-like client: keeps cookies, does not follow redirects.
pub struct Client {
    base: String,
    http: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    fn absorb(&mut self, r: &Resp) {
        for c in r.set_cookies() {
            let first = c.split(';').next().unwrap();
            let (k, v) = first.split_once('=').unwrap();
            if c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, r: reqwest::Response) -> Resp {
        let out = Resp {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        };
        self.absorb(&out);
        out
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(r).await
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.finish(r).await
    }

    /// Signs in with `key` through the form; returns the sign-in POST's answer.
    pub async fn sign_in(&mut self, key: &str) -> Resp {
        let form = self.get("/ui/login").await;
        assert_eq!(form.status, 200, "{}", form.body);
        let csrf = csrf_of(&form.body);
        self.post("/ui/login", &[("csrf", &csrf), ("key", key)])
            .await
    }
}

/// A JSON API call with a key.
pub async fn api(app: &TestApp, method: &str, path: &str, key: &str, body: Option<Value>) -> Value {
    let url = format!("{}{path}", app.url);
    let mut r = match method {
        "get" => app.http.get(url),
        _ => app.http.post(url),
    }
    .header("authorization", format!("Bearer {key}"));
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {v}");
    v
}

pub async fn wait_done(app: &TestApp, id: &str, key: &str) {
    for _ in 0..600 {
        let j = api(app, "get", &format!("/v1/jobs/{id}"), key, None).await;
        if j["state"] == "done" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} did not finish");
}

pub struct Fixture {
    pub set: String,
    pub run: String,
    pub job: String,
}

/// team-a uploads the live set (named with an XSS payload), runs it to the end, and
/// submits a grading job.
pub async fn fixture(app: &TestApp, n: usize) -> Fixture {
    // The `<img>` payload: set names may not hold `/` (`names`), so `</script>` cannot
    // be in one; the script payload is still in the description and a response.
    let name = format!("ward {XSS_IMG}");
    let set = api(
        app,
        "post",
        "/v1/calibration/sets",
        "a-secret",
        Some(json!({"content": live_set(&name, n)})),
    )
    .await;
    let set = set["id"].as_str().unwrap().to_owned();
    let run = api(
        app,
        "post",
        "/v1/calibration/runs",
        "a-secret",
        Some(json!({"set": set, "resamples": 20})),
    )
    .await;
    let run = run["id"].as_str().unwrap().to_owned();
    let job = api(
        app,
        "post",
        "/v1/jobs",
        "a-secret",
        Some(json!([case(
            "ui-case",
            &format!("Rest and fluids. {XSS_IMG}")
        )])),
    )
    .await;
    let job = job["id"].as_str().unwrap().to_owned();
    wait_done(app, &run, "a-secret").await;
    wait_done(app, &job, "a-secret").await;
    Fixture { set, run, job }
}

/// No raw payload anywhere in a page: each must appear only escaped.
fn assert_inert(body: &str, what: &str) {
    for raw in [XSS_SCRIPT, XSS_IMG, "<script>alert", "onerror=alert(1)>"] {
        assert!(!body.contains(raw), "{what}: raw {raw:?} in the page");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_cookies_csrf_and_headers() {
    let app = TestApp::spawn_with(tribunal::config::DEFAULT_CONFIG, KEYS, ENV).await;
    let mut c = Client::new(&app.url);
    // Signed out: pages send you to the form; the form carries a CSRF token whose
    // cookie scripts cannot read.
    let r = c.get("/ui/sets").await;
    assert_eq!((r.status, r.location()), (303, "/ui/login"));
    let form = c.get("/ui/login").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("name=\"key\""), "{}", form.body);
    let csp = form.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(form.headers["x-content-type-options"], "nosniff");
    assert!(!form.body.contains("<script>") && !form.body.contains(" style="));
    let login_cookie = form
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("tribunal_login="))
        .unwrap();
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Strict"));
    let csrf = csrf_of(&form.body);

    // The sign-in POST without (or with a wrong) CSRF token is refused.
    let r = c.post("/ui/login", &[("key", "doc-secret")]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("CSRF"), "{}", r.body);
    let r = c
        .post("/ui/login", &[("csrf", "00ff"), ("key", "doc-secret")])
        .await;
    assert_eq!(r.status, 403);
    // A wrong key is told so, and no session is made.
    let r = c
        .post("/ui/login", &[("csrf", &csrf), ("key", "nope")])
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("unknown API key"));
    assert!(!c.cookies.contains_key("tribunal_session"));

    // The right key: an HttpOnly, SameSite=Strict session cookie with an expiry.
    let r = c.sign_in("doc-secret").await;
    assert_eq!((r.status, r.location()), (303, "/ui"), "{}", r.body);
    let session = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("tribunal_session="))
        .unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Max-Age=28800", "Path=/ui"] {
        assert!(session.contains(part), "{session}");
    }
    let r = c.get("/ui/sets").await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("doc") && r.body.contains("annotator"),
        "{}",
        r.body
    );

    // Sign-out needs the CSRF token too, then ends the session server-side: the old
    // cookie no longer works.
    let old = c.cookies.clone();
    let r = c.post("/ui/logout", &[]).await;
    assert_eq!(r.status, 403);
    let page = c.get("/ui/sets").await;
    let r = c
        .post("/ui/logout", &[("csrf", &csrf_of(&page.body))])
        .await;
    assert_eq!((r.status, r.location()), (303, "/ui/login"));
    assert!(!c.cookies.contains_key("tribunal_session"));
    c.cookies = old;
    let r = c.get("/ui/sets").await;
    assert_eq!((r.status, r.location()), (303, "/ui/login"));

    // Assets are embedded and served with the same CSP.
    let js = c.get("/ui/assets/app.js").await;
    assert_eq!(js.status, 200);
    assert!(
        js.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(js.body.contains("keydown"));
    assert_eq!(c.get("/ui/assets/app.css").await.status, 200);
}

/// A session's pages spend its key's per-minute quota, one budget with the API: the
/// UI authenticates once, but every request after that costs what it costs there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_requests_spend_the_keys_quota_like_the_api() {
    let keys = "[[server.api_keys]]\nname = \"tight\"\nrole = \"annotator\"\nkey_env = \"K_TIGHT\"\nrequests_per_minute = 3\n";
    let app = TestApp::spawn_with(
        tribunal::config::DEFAULT_CONFIG,
        keys,
        &[("K_TIGHT", "tight-secret")],
    )
    .await;
    let mut c = Client::new(&app.url);
    // Sign-in spends one (through the API's authenticate), two pages the rest.
    let r = c.sign_in("tight-secret").await;
    assert_eq!(r.status, 303, "{}", r.body);
    for _ in 0..2 {
        let r = c.get("/ui/sets").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = c.get("/ui/sets").await;
    assert_eq!(r.status, 429, "{}", r.body);
    // The API shares the spent budget.
    let r = reqwest::Client::new()
        .get(format!("{}/v1/calibration/sets", app.url))
        .bearer_auth("tight-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_for_every_role() {
    let app = TestApp::spawn_with(tribunal::config::DEFAULT_CONFIG, KEYS, ENV).await;
    let fx = fixture(&app, 6).await;
    let mut doc = Client::new(&app.url);
    let mut owner = Client::new(&app.url);
    let mut other = Client::new(&app.url);
    let mut admin = Client::new(&app.url);
    for (c, key) in [
        (&mut doc, "doc-secret"),
        (&mut owner, "a-secret"),
        (&mut other, "b-secret"),
        (&mut admin, "admin-secret"),
    ] {
        assert_eq!(c.sign_in(key).await.status, 303);
    }
    let set_page = format!("/ui/sets/{}", fx.set);
    let queue = format!("/ui/sets/{}/queue", fx.set);
    let history = format!("/ui/sets/{}/history", fx.set);
    let export = format!("/ui/sets/{}/export.jsonl", fx.set);
    let report = format!("/ui/runs/{}/report.json", fx.run);
    let report_csv = format!("/ui/runs/{}/report.csv", fx.run);
    let job = format!("/ui/jobs/{}", fx.job);
    let item = format!("/ui/jobs/{}/items/0", fx.job);
    let events = format!("/ui/jobs/{}/events", fx.job);
    // (path, [annotator, owner, other client, admin] statuses, text the 200 shows)
    let table: Vec<(&str, [u16; 4], &str)> = vec![
        ("/ui/sets", [200, 200, 200, 200], "Calibration sets"),
        (&set_page, [200, 200, 404, 200], "Fleiss"),
        (&queue, [200, 200, 404, 200], "Review queue"),
        (&history, [200, 200, 404, 200], "Label history"),
        (&export, [200, 200, 404, 200], "calibration.v1"),
        (&report, [200, 200, 404, 200], "\"humans\""),
        (&report_csv, [200, 200, 404, 200], "kind,rater,against"),
        ("/ui/jobs", [403, 200, 200, 200], "Jobs"),
        (&job, [403, 200, 404, 200], "Summary"),
        (&item, [403, 200, 404, 200], "see-doctor"),
        (&events, [403, 200, 404, 200], "event: progress"),
        ("/ui/sets/nope", [404, 404, 404, 404], ""),
    ];
    for (path, statuses, text) in table {
        for (c, who, want) in [
            (&mut doc, "annotator", statuses[0]),
            (&mut owner, "owner", statuses[1]),
            (&mut other, "other client", statuses[2]),
            (&mut admin, "admin", statuses[3]),
        ] {
            let r = c.get(path).await;
            assert_eq!(r.status, want, "{who} GET {path}: {}", r.body);
            if want == 200 {
                assert!(
                    r.body.contains(text),
                    "{who} GET {path}: no {text:?} in {}",
                    r.body
                );
            }
            // Pages must hold the payloads only escaped; downloads (JSONL, JSON, CSV)
            // carry the data as it is, under a non-HTML type the browser may not sniff.
            let ct = r
                .headers
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            if ct.as_deref().is_some_and(|c| c.starts_with("text/html")) {
                assert_inert(&r.body, path);
            } else if want == 200 {
                assert_eq!(r.headers["x-content-type-options"], "nosniff", "{path}");
            }
            assert!(r.headers.contains_key("content-security-policy"), "{path}");
        }
    }
    // What each role's pages show: the set's (escaped) name where it may see it, the
    // job where it owns it, the run button only where it may start runs.
    let escaped = "ward &lt;img src=x onerror=alert(1)&gt;";
    let sets = doc.get("/ui/sets").await.body;
    assert!(sets.contains(escaped), "{sets}");
    assert!(
        !sets.contains("href=\"/ui/jobs\""),
        "annotators have no jobs nav"
    );
    assert!(!other.get("/ui/sets").await.body.contains("ward"));
    assert!(admin.get("/ui/sets").await.body.contains(escaped));
    assert!(!doc.get(&set_page).await.body.contains("id=\"start-run\""));
    let owner_set = owner.get(&set_page).await.body;
    assert!(owner_set.contains("id=\"start-run\""));
    assert!(
        owner_set.contains("class=\"band\""),
        "forest plot with the human band"
    );
    assert!(owner_set.contains("Confusion"), "heatmap");
    assert!(owner.get("/ui/jobs").await.body.contains(&fx.job));
    assert!(!other.get("/ui/jobs").await.body.contains(&fx.job));
    let item_page = owner.get(&item).await.body;
    assert!(
        item_page.contains("&lt;img src=x onerror=alert(1)&gt;") || !item_page.contains("onerror")
    );
    assert!(
        item_page.contains("sim-"),
        "every judge's ballot: {item_page}"
    );
    // The job's events end with its final state.
    let ev = owner.get(&events).await.body;
    assert!(ev.contains("\"state\":\"done\""), "{ev}");
    // The export is the set's calibration.v1 JSONL.
    let jsonl = doc.get(&export).await;
    assert!(
        jsonl.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let head: Value = serde_json::from_str(jsonl.body.lines().next().unwrap()).unwrap();
    assert_eq!(head["format"], "calibration.v1");
    assert_eq!(jsonl.body.lines().count(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blind_queue_labels_through_the_api_call() {
    let app = TestApp::spawn_with(tribunal::config::DEFAULT_CONFIG, KEYS, ENV).await;
    let fx = fixture(&app, 4).await;
    let mut doc = Client::new(&app.url);
    doc.sign_in("doc-secret").await;
    let queue = format!("/ui/sets/{}/queue", fx.set);
    let first = doc.get(&queue).await;
    assert_eq!(first.status, 200);
    let b = &first.body;
    assert!(b.contains("data-item=\"x0\""), "{b}");
    assert!(
        b.contains("Question 0") && b.contains("Answer 0"),
        "conversation and response"
    );
    assert!(
        b.contains("Advises seeing a doctor (variant 0)."),
        "criterion"
    );
    assert!(b.contains("id=\"blind\""));
    // The guidelines are rendered Markdown, with the payload in them escaped.
    assert!(b.contains("<strong>meets</strong>"), "{b}");
    // Blind: nothing about other raters or judges is in the page at all.
    for hidden in [
        "nurse-other",
        "doctor-other",
        "judge-hidden",
        "sim-",
        "committee",
        "reveal",
    ] {
        assert!(!b.contains(hidden), "{hidden} leaked before labelling: {b}");
    }
    assert!(
        b.contains("0 </strong>") || b.contains("<strong>0</strong>"),
        "progress 0"
    );

    // A label POST without the CSRF token is refused and writes nothing.
    let r = doc
        .post(
            &format!("/ui/sets/{}/label", fx.set),
            &[("item", "x0"), ("value", "true")],
        )
        .await;
    assert_eq!(r.status, 403);
    let h = api(
        &app,
        "get",
        &format!("/v1/calibration/sets/{}/labels", fx.set),
        "doc-secret",
        None,
    )
    .await;
    assert_eq!(h["history"].as_array().unwrap().len(), 0);

    // With it: save and next.
    let csrf = csrf_of(&first.body);
    let r = doc
        .post(
            &format!("/ui/sets/{}/label", fx.set),
            &[
                ("csrf", &csrf),
                ("item", "x0"),
                ("value", "true"),
                ("run", &fx.run),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    // The label stays on x0 with the reveal until the annotator moves on (this moved
    // on at once, before the reveal was seen).
    assert!(
        r.location().contains("item=x0") && r.location().contains("labelled=1"),
        "{}",
        r.location()
    );
    let shown = doc.get(r.location()).await;
    assert!(shown.body.contains("data-item=\"x0\""), "{}", shown.body);
    assert!(
        shown.body.contains("id=\"saved\"") && shown.body.contains("id=\"reveal\""),
        "{}",
        shown.body
    );
    assert!(
        shown.body.contains("<strong id=\"mine\">met</strong>"),
        "{}",
        shown.body
    );
    assert!(
        shown.body.contains("id=\"next-after-reveal\""),
        "{}",
        shown.body
    );
    let next = doc
        .get(&format!(
            "/ui/sets/{}/queue?after=x0&run={}",
            fx.set, fx.run
        ))
        .await;
    assert!(
        next.body.contains("data-item=\"x1\""),
        "moved on: {}",
        next.body
    );
    assert!(next.body.contains("id=\"undo\""));
    assert_inert(&next.body, "queue at the XSS item");
    assert!(
        next.body.contains("&lt;script&gt;"),
        "payload shown as text"
    );

    // The label is the annotator's, through the API's call: visible in the set and the
    // history with author and rater `doc`.
    let h = api(
        &app,
        "get",
        &format!("/v1/calibration/sets/{}/labels", fx.set),
        "doc-secret",
        None,
    )
    .await;
    let ev = &h["history"][0];
    assert_eq!(
        (
            ev["item"].as_str(),
            ev["rater"].as_str(),
            ev["author"].as_str()
        ),
        (Some("x0"), Some("doc"), Some("doc"))
    );
    assert_eq!(ev["value"], "true");
    let set = api(
        &app,
        "get",
        &format!("/v1/calibration/sets/{}", fx.set),
        "doc-secret",
        None,
    )
    .await;
    assert!(
        set["raters"]["humans"]
            .as_array()
            .unwrap()
            .contains(&json!("doc"))
    );

    // Back on the labelled item: everyone's labels and each judge's explanation.
    let back = doc
        .get(&format!("{queue}?item=x0&run={}", fx.run))
        .await
        .body;
    assert!(back.contains("id=\"reveal\""), "{back}");
    for shown in [
        "nurse-other",
        "doctor-other",
        "judge-hidden",
        "sim-",
        "class=\"explanation\"",
    ] {
        assert!(back.contains(shown), "{shown} not revealed: {back}");
    }
    assert!(back.contains("<strong>1</strong>"), "progress 1");
    // The item's history page shows the write.
    let hist = doc
        .get(&format!("/ui/sets/{}/history?item=x0", fx.set))
        .await
        .body;
    assert!(hist.contains("<td>doc</td>"), "{hist}");

    // A correction replaces the label and keeps the old value in the history.
    let r = doc
        .post(
            &format!("/ui/sets/{}/label", fx.set),
            &[("csrf", &csrf), ("item", "x0"), ("value", "false")],
        )
        .await;
    assert_eq!(r.status, 303);
    let h = api(
        &app,
        "get",
        &format!("/v1/calibration/sets/{}/labels?item=x0", fx.set),
        "doc-secret",
        None,
    )
    .await;
    assert_eq!(h["history"][1]["previous"], "true");
    // A value outside the categories is refused by the service's validation, named.
    let r = doc
        .post(
            &format!("/ui/sets/{}/label", fx.set),
            &[("csrf", &csrf), ("item", "x0"), ("value", "maybe")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("not one of the categories"), "{}", r.body);

    // Filters: unlabelled-by-me skips x0; a category filter keeps only its items.
    let un = doc.get(&format!("{queue}?unlabelled=1")).await.body;
    assert!(
        un.contains("data-item=\"x1\"") && un.contains("3 matching"),
        "{un}"
    );
    let cat = doc.get(&format!("{queue}?category=info")).await.body;
    assert!(
        cat.contains("data-item=\"x1\"") && cat.contains("2 matching"),
        "{cat}"
    );
    // Disagreements: the set's judge label differs from the human majority.
    let dis = doc.get(&format!("{queue}?disagreements=1")).await.body;
    assert!(dis.contains("matching"), "{dis}");
    // Admins see every annotator's progress; annotators do not.
    let mut admin = Client::new(&app.url);
    admin.sign_in("admin-secret").await;
    assert!(admin.get(&queue).await.body.contains("id=\"everyone\""));
    assert!(!doc.get(&queue).await.body.contains("id=\"everyone\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_on_loopback_without_keys_and_runs_from_the_set_page() {
    let app = TestApp::spawn("").await;
    let set = app
        .post(
            "/v1/calibration/sets",
            &json!({"content": live_set("open-set", 3)}),
        )
        .await
        .1;
    let set = set["id"].as_str().unwrap().to_owned();
    let mut c = Client::new(&app.url);
    // No keys: no sign-in; a session for the local admin opens by itself.
    let r = c.get("/ui/sets").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("open-set"));
    assert!(c.cookies.contains_key("tribunal_session"));
    assert_eq!(c.get("/ui/login").await.status, 303);
    // POSTs still need the CSRF token.
    let r = c.post(&format!("/ui/sets/{set}/run"), &[]).await;
    assert_eq!(r.status, 403);
    let page = c.get(&format!("/ui/sets/{set}")).await;
    assert!(page.body.contains("No calibration run"));
    let r = c
        .post(
            &format!("/ui/sets/{set}/run"),
            &[("csrf", &csrf_of(&page.body))],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let run = r.location().split("run=").nth(1).unwrap().to_owned();
    app.wait_job(&run).await;
    let page = c.get(&format!("/ui/sets/{set}")).await.body;
    assert!(
        page.contains(&run) && page.contains("id=\"fleiss\""),
        "{page}"
    );
    assert!(page.contains("id=\"trend\""), "kappa across runs");
    // A run of another set is refused on this set's pages (its item mapping would
    // not fit), naming the parameter.
    let other = app
        .post(
            "/v1/calibration/sets",
            &json!({"content": live_set("open-set-2", 2)}),
        )
        .await
        .1;
    let other = other["id"].as_str().unwrap();
    for path in [
        format!("/ui/sets/{other}?run={run}"),
        format!("/ui/sets/{other}/queue?run={run}"),
    ] {
        let r = c.get(&path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.body.contains("run of another set"), "{}", r.body);
    }
    // The local admin labels as `local`.
    let q = c.get(&format!("/ui/sets/{set}/queue")).await.body;
    let r = c
        .post(
            &format!("/ui/sets/{set}/label"),
            &[("csrf", &csrf_of(&q)), ("item", "x0"), ("value", "true")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, doc) = app.get(&format!("/v1/calibration/sets/{set}")).await;
    assert!(
        doc["raters"]["humans"]
            .as_array()
            .unwrap()
            .contains(&json!("local")),
        "{doc}"
    );
}

/// Server time of the queue and dashboard pages of a 10,000-item set (median of 7
/// loopback requests, so it includes the HTTP round trip). Ignored by default: run
/// with `cargo test --test it ui::pages_at_10k_items -- --ignored --nocapture`. The
/// figures in BENCHMARKS.md come from `cargo bench --bench ui` (benches/ui.rs), which
/// times more pages with median and p95 in a release build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check; see the doc comment"]
async fn pages_at_10k_items() {
    let app =
        TestApp::spawn("[server]\nmax_body_bytes = 67108864\nmax_items_per_job = 20000\n").await;
    let started = std::time::Instant::now();
    let set = app
        .post(
            "/v1/calibration/sets",
            &json!({"content": live_set("big", 10_000)}),
        )
        .await;
    assert_eq!(set.0, 201, "{}", set.1);
    let set = set.1["id"].as_str().unwrap().to_owned();
    let run = app
        .post(
            "/v1/calibration/runs",
            &json!({"set": set, "resamples": 200}),
        )
        .await
        .1;
    let run = run["id"].as_str().unwrap().to_owned();
    // A 10,000-item run takes longer than `wait_job` waits on a busy machine.
    for _ in 0..1800 {
        if app.get(&format!("/v1/jobs/{run}")).await.1["state"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("set and run ready in {:?}", started.elapsed());
    let mut c = Client::new(&app.url);
    for (what, path) in [
        ("queue (first item)", format!("/ui/sets/{set}/queue")),
        (
            "queue (item 9000, run given)",
            format!("/ui/sets/{set}/queue?item=x9000&run={run}"),
        ),
        (
            "queue (unlabelled filter)",
            format!("/ui/sets/{set}/queue?unlabelled=1&run={run}"),
        ),
        ("dashboard", format!("/ui/sets/{set}")),
    ] {
        let mut times = Vec::new();
        for _ in 0..7 {
            let t = std::time::Instant::now();
            let r = c.get(&path).await;
            times.push(t.elapsed());
            assert_eq!(r.status, 200, "{path}");
        }
        times.sort();
        eprintln!(
            "{what}: median {:?} (min {:?}, max {:?})",
            times[3], times[0], times[6]
        );
    }
}

/// A request with a key whose answer may be a refusal: status and JSON body.
pub async fn api_status(
    app: &TestApp,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", app.url);
    let mut r = match method {
        "get" => app.http.get(url),
        _ => app.http.post(url),
    }
    .header("authorization", format!("Bearer {key}"));
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The committee's kappa in a finished run's report, as the API gives it.
async fn committee_kappa(app: &TestApp, run: &str) -> Option<f64> {
    let r = api(
        app,
        "get",
        &format!("/v1/calibration/runs/{run}"),
        "a-secret",
        None,
    )
    .await;
    r["report"]["judges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["judge"] == "committee")
        .unwrap()["vs_human_majority"]["cohen_kappa"]["value"]
        .as_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_list_kappa_undo_and_run_progress_per_role() {
    let app = TestApp::spawn_with(tribunal::config::DEFAULT_CONFIG, KEYS, ENV).await;
    let fx = fixture(&app, 4).await;
    let kappa = committee_kappa(&app, &fx.run).await;
    let want = kappa.map_or("–".to_owned(), |k| format!("{k:.3}"));

    // The set list shows the last run's committee kappa to everyone who sees the set.
    for key in ["doc-secret", "a-secret", "admin-secret"] {
        let mut c = Client::new(&app.url);
        c.sign_in(key).await;
        let list = c.get("/ui/sets").await;
        assert_eq!(list.status, 200);
        let cell = list
            .body
            .split("class=\"n kappa\"")
            .nth(1)
            .unwrap_or_else(|| panic!("{key}: no kappa cell: {}", list.body));
        let cell = cell.split("</td>").next().unwrap();
        assert!(cell.contains(&want), "{key}: {cell} lacks {want}");
        assert!(cell.contains(&format!("run={}", fx.run)), "{cell}");
    }
    // A client that does not own the set sees no row at all.
    let mut other = Client::new(&app.url);
    other.sign_in("b-secret").await;
    assert!(!other.get("/ui/sets").await.body.contains(&fx.set));

    // Run progress: a stream under the set page, for anyone who may see the set
    // (annotators cannot read jobs); the finished run ends it with `report: true`.
    let events = format!("/ui/sets/{}/runs/{}/events", fx.set, fx.run);
    let mut doc = Client::new(&app.url);
    doc.sign_in("doc-secret").await;
    let job_events = doc.get(&format!("/ui/jobs/{}/events", fx.run)).await;
    assert_eq!(job_events.status, 403, "annotators cannot read jobs");
    let r = doc.get(&events).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert!(
        r.body.contains("event: progress") && r.body.contains("\"report\":true"),
        "{}",
        r.body
    );
    assert_eq!(other.get(&events).await.status, 404, "not the client's set");
    // A run of another set is refused on `run`.
    let other_set = api(
        &app,
        "post",
        "/v1/calibration/sets",
        "a-secret",
        Some(json!({"content": live_set("second", 2)})),
    )
    .await;
    let r = doc
        .get(&format!(
            "/ui/sets/{}/runs/{}/events",
            other_set["id"].as_str().unwrap(),
            fx.run
        ))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);

    // Undo: through the service's call, CSRF-checked, for the caller's own label only.
    let queue = doc.get(&format!("/ui/sets/{}/queue", fx.set)).await;
    let csrf = csrf_of(&queue.body);
    assert!(queue.body.contains("id=\"undo-form\""));
    let r = doc
        .post(
            &format!("/ui/sets/{}/label", fx.set),
            &[("csrf", &csrf), ("item", "x0"), ("value", "true")],
        )
        .await;
    assert_eq!(r.status, 303);
    let r = doc.post(&format!("/ui/sets/{}/undo", fx.set), &[]).await;
    assert_eq!(r.status, 403, "an undo without the CSRF token is refused");
    let r = doc
        .post(
            &format!("/ui/sets/{}/undo", fx.set),
            &[("csrf", &csrf), ("run", &fx.run)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().contains("item=x0"), "{}", r.location());
    let back = doc.get(r.location()).await;
    assert!(back.body.contains("id=\"undone\""), "{}", back.body);
    // The label is gone, so the item is blind again.
    assert!(back.body.contains("id=\"blind\""), "{}", back.body);
    let h = api(
        &app,
        "get",
        &format!("/v1/calibration/sets/{}/labels?item=x0", fx.set),
        "doc-secret",
        None,
    )
    .await;
    let hist = h["history"].as_array().unwrap();
    assert_eq!(hist.len(), 2, "{h}");
    assert_eq!(
        (&hist[1]["value"], &hist[1]["previous"], &hist[1]["author"]),
        (&Value::Null, &json!("true"), &json!("doc"))
    );
    // Nothing left to undo: the refusal is a page naming why.
    let r = doc
        .post(&format!("/ui/sets/{}/undo", fx.set), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 409);
    assert!(r.body.contains("nothing to undo"), "{}", r.body);
    // A client outside the set cannot undo there.
    let oq = other.get("/ui/sets").await;
    let ocsrf = csrf_of(&oq.body);
    let r = other
        .post(&format!("/ui/sets/{}/undo", fx.set), &[("csrf", &ocsrf)])
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disagreement_filter_reads_the_runs_judges() {
    // No judge labels in the set: every disagreement the filter finds comes from
    // the run's readings, so it must list exactly the items the API's
    // disagreements route lists.
    let app = TestApp::spawn_with(tribunal::config::DEFAULT_CONFIG, KEYS, ENV).await;
    let text: String = live_set("no judges", 40)
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if let Some(labels) = v.get_mut("labels").and_then(Value::as_array_mut) {
                labels.retain(|x| x["kind"] == "human");
            }
            v.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n");
    let set = api(
        &app,
        "post",
        "/v1/calibration/sets",
        "a-secret",
        Some(json!({"content": text})),
    )
    .await;
    let set = set["id"].as_str().unwrap().to_owned();
    let run = api(
        &app,
        "post",
        "/v1/calibration/runs",
        "a-secret",
        Some(json!({"set": set, "resamples": 10})),
    )
    .await;
    let run = run["id"].as_str().unwrap().to_owned();
    wait_done(&app, &run, "a-secret").await;
    for _ in 0..200 {
        if committee_kappa_ready(&app, &run).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Read as the set's owner: an annotator's API view is blind (only items it has
    // labelled), while the queue's filter below only lists positions.
    let d = api(
        &app,
        "get",
        &format!("/v1/calibration/runs/{run}/disagreements?limit=500"),
        "a-secret",
        None,
    )
    .await;
    let api_items: Vec<String> = d["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["item"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !api_items.is_empty(),
        "the simulated judges disagree somewhere: {d}"
    );
    let mut doc = Client::new(&app.url);
    doc.sign_in("doc-secret").await;
    // Without a run given, the queue uses the newest finished one.
    let page = doc
        .get(&format!("/ui/sets/{set}/queue?disagreements=1"))
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&format!("{} matching", api_items.len())),
        "want {} matching ({api_items:?}): {}",
        api_items.len(),
        page.body
    );
    if let Some(first) = api_items.first() {
        assert!(
            page.body.contains(&format!("data-item=\"{first}\"")),
            "{}",
            page.body
        );
    }
    // Walking the filter with save-and-next's cursor visits the same items in order.
    let mut seen = Vec::new();
    let mut at = page.body;
    while let Some(i) = at.split("data-item=\"").nth(1) {
        let id = i.split('"').next().unwrap().to_owned();
        seen.push(id.clone());
        at = doc
            .get(&format!(
                "/ui/sets/{set}/queue?disagreements=1&after={id}&run={run}"
            ))
            .await
            .body;
        assert!(seen.len() <= 40, "the walk does not end");
    }
    assert_eq!(seen, api_items);
}

async fn committee_kappa_ready(app: &TestApp, run: &str) -> bool {
    let r = api(
        app,
        "get",
        &format!("/v1/calibration/runs/{run}"),
        "a-secret",
        None,
    )
    .await;
    !r["report"].is_null()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_page_pages_through_every_item_and_items_open_by_seq() {
    let app = TestApp::spawn_with(tribunal::config::DEFAULT_CONFIG, KEYS, ENV).await;
    let cases: Vec<Value> = (0..230)
        .map(|i| case(&format!("c{i}"), "Rest and fluids."))
        .collect();
    let job = api(&app, "post", "/v1/jobs", "a-secret", Some(json!(cases))).await;
    let job = job["id"].as_str().unwrap().to_owned();
    wait_done(&app, &job, "a-secret").await;
    let mut c = Client::new(&app.url);
    c.sign_in("a-secret").await;
    let rows = |body: &str| body.matches(&format!("/ui/jobs/{job}/items/")).count();
    let first = c.get(&format!("/ui/jobs/{job}")).await;
    assert_eq!(first.status, 200);
    assert_eq!(rows(&first.body), 200, "a page of 200 items");
    assert!(
        first.body.contains("?after=199\" id=\"items-next\""),
        "{}",
        first.body
    );
    let second = c.get(&format!("/ui/jobs/{job}?after=199")).await;
    assert_eq!(rows(&second.body), 30);
    assert!(second.body.contains("/items/229\""));
    assert!(!second.body.contains("id=\"items-next\""));
    assert!(second.body.contains("id=\"items-first\""));
    // An item far into the job opens by its seq; one past the end is not found.
    let item = c.get(&format!("/ui/jobs/{job}/items/229")).await;
    assert_eq!(item.status, 200);
    assert!(item.body.contains("c229"), "{}", item.body);
    assert_eq!(
        c.get(&format!("/ui/jobs/{job}/items/230")).await.status,
        404
    );
    // Another client's job stays not found, pages and items alike.
    let mut other = Client::new(&app.url);
    other.sign_in("b-secret").await;
    assert_eq!(
        other.get(&format!("/ui/jobs/{job}?after=199")).await.status,
        404
    );
    assert_eq!(
        other.get(&format!("/ui/jobs/{job}/items/5")).await.status,
        404
    );
}

/// The queue opens at the first item the annotator has not labelled; with the
/// straight-on setting a label moves straight on; binary categories read met / not met.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_starts_at_the_first_unlabelled_item() {
    let app = TestApp::spawn_with(tribunal::config::DEFAULT_CONFIG, KEYS, ENV).await;
    let fx = fixture(&app, 4).await;
    let mut doc = Client::new(&app.url);
    doc.sign_in("doc-secret").await;
    let queue = format!("/ui/sets/{}/queue", fx.set);
    let first = doc.get(&queue).await;
    assert!(first.body.contains("data-item=\"x0\""), "{}", first.body);
    assert!(
        first.body.contains("</kbd> met</button>")
            && first.body.contains("</kbd> not met</button>"),
        "{}",
        first.body
    );
    let csrf = csrf_of(&first.body);
    for item in ["x0", "x1"] {
        let r = doc
            .post(
                &format!("/ui/sets/{}/label", fx.set),
                &[
                    ("csrf", &csrf),
                    ("item", item),
                    ("value", "true"),
                    ("straight_on", "1"),
                ],
            )
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
        assert!(
            r.location().contains(&format!("after={item}")),
            "{}",
            r.location()
        );
        assert!(r.location().contains("straight_on=1"), "{}", r.location());
    }
    // Coming back later: the queue opens at x2, not at item 1.
    let back = doc.get(&queue).await;
    assert!(back.body.contains("data-item=\"x2\""), "{}", back.body);
    assert!(back.body.contains("id=\"blind\""), "{}", back.body);
}

/// The job item page shows what a physician needs: the conversation, the response,
/// and per criterion its text, points and tags, the consensus as met / not met, and
/// each judge's verdict; items are numbered from 1 and the tags are collapsible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_item_page_shows_the_case_and_each_criterion() {
    let app = TestApp::spawn_with(tribunal::config::DEFAULT_CONFIG, KEYS, ENV).await;
    let job = api(
        &app,
        "post",
        "/v1/jobs",
        "a-secret",
        Some(json!([case("p1", "Drink <b>fluids</b> and see a doctor.")])),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_owned();
    wait_done(&app, &id, "a-secret").await;
    let mut c = Client::new(&app.url);
    c.sign_in("a-secret").await;
    let page = c.get(&format!("/ui/jobs/{id}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let b = &page.body;
    assert!(b.contains(&format!("/ui/jobs/{id}/items/0\">1</a>")), "{b}");
    assert!(
        b.find("id=\"items\"") < b.find("id=\"tags\""),
        "items first: {b}"
    );
    assert!(b.contains("<details class=\"tags\" id=\"tags\">"), "{b}");
    assert!(b.contains("id=\"job-simulated\""), "{b}");
    let item = c.get(&format!("/ui/jobs/{id}/items/0")).await;
    assert_eq!(item.status, 200, "{}", item.body);
    let b = &item.body;
    for want in [
        "<h1>Item 1 ",
        "I have a fever of 39C for three days.",
        "Drink &lt;b&gt;fluids",
        "Advises seeing a clinician for fever over 3 days.",
        "7 points",
        "-6 points",
        "axis:accuracy",
        "theme:demo",
        "sim-a",
        "id=\"simulated\"",
    ] {
        assert!(b.contains(want), "{want} missing: {b}");
    }
    assert!(
        b.contains("<strong class=\"verdict\">met</strong>")
            || b.contains("<strong class=\"verdict\">not met</strong>"),
        "{b}"
    );
    assert!(
        !b.contains("· True") && !b.contains(">true<") && !b.contains(">false<"),
        "{b}"
    );
}

/// The job page cancels a running job through the service's one cancel: the form
/// needs its CSRF token, another team's session cannot cancel, and the job then reads
/// cancelling or cancelled with its unfinished items neither failed nor graded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_page_cancels_a_running_job() {
    // Slow judges, so the job is still running when the form is sent.
    let slow =
        tribunal::config::DEFAULT_CONFIG.replace("seed = 1\n", "seed = 1\nlatency_ms = 300\n");
    let app = TestApp::spawn_with(&slow, KEYS, ENV).await;
    let cases: Vec<Value> = (0..40)
        .map(|i| case(&format!("slow-{i}"), &format!("Rest, variant {i}.")))
        .collect();
    let job = api(&app, "post", "/v1/jobs", "a-secret", Some(json!(cases))).await;
    let job = job["id"].as_str().unwrap().to_owned();

    let mut other = Client::new(&app.url);
    other.sign_in("b-secret").await;
    let page = other.get(&format!("/ui/jobs/{job}")).await;
    assert_eq!(page.status, 404, "another team does not see the job");

    let mut owner = Client::new(&app.url);
    owner.sign_in("a-secret").await;
    let page = owner.get(&format!("/ui/jobs/{job}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"cancel-job\""), "{}", page.body);
    // Without the token: refused, and the job goes on.
    let r = owner.post(&format!("/ui/jobs/{job}/cancel"), &[]).await;
    assert_eq!(r.status, 403);
    // Another team's session with its own valid token: the job is not theirs.
    let their = other.get("/ui/jobs").await;
    let r = other
        .post(
            &format!("/ui/jobs/{job}/cancel"),
            &[("csrf", &csrf_of(&their.body))],
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let status = api(&app, "get", &format!("/v1/jobs/{job}"), "a-secret", None).await;
    assert!(
        status["state"] == "queued" || status["state"] == "running",
        "{status}"
    );
    let r = owner
        .post(
            &format!("/ui/jobs/{job}/cancel"),
            &[("csrf", &csrf_of(&page.body))],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), format!("/ui/jobs/{job}"));
    let status = api(&app, "get", &format!("/v1/jobs/{job}"), "a-secret", None).await;
    assert!(
        status["state"] == "cancelling" || status["state"] == "cancelled",
        "{status}"
    );
    let mut done = Value::Null;
    for _ in 0..200 {
        done = api(&app, "get", &format!("/v1/jobs/{job}"), "a-secret", None).await;
        if done["state"] == "cancelled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(done["state"], "cancelled", "{done}");
    assert_eq!(done["failed"], 0, "{done}");
    assert!(done["done"].as_u64().unwrap() < 40, "{done}");
    let page = owner.get(&format!("/ui/jobs/{job}")).await;
    assert!(
        !page.body.contains("id=\"cancel-job\""),
        "no cancel on a cancelled job"
    );
}
