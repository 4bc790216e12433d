//! The web UI in a real browser: Debian's chromium driven through chromedriver over
//! the W3C WebDriver protocol (a small client over reqwest, below). Signs in, checks
//! the blind queue (the verdicts are absent from the page source before labelling and
//! present after), labels three items with the keyboard only, finds the labels through
//! the API and the history, starts a new run and sees the dashboard follow it, follows
//! a job page's live progress to done, and checks an XSS payload stays inert.
//! The same flow runs in Firefox (firefox-esr through geckodriver) when geckodriver is
//! on PATH or `TRIBUNAL_UI_FIREFOX=1`.
//! Says `skipped` without chromedriver, but fails under `CI=true`. Screenshots go to
//! a temporary directory, or to `docs/` with `TRIBUNAL_UI_SCREENSHOTS=docs`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{TestApp, case};
use crate::ui::{ENV, KEYS, api, fixture, wait_done};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Browser<'a> {
    d: &'a Driver,
    session: String,
}

impl Driver {
    async fn start(exe: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(exe)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let started = Instant::now();
        loop {
            if let Ok(r) = d.http.get(format!("{}/status", d.base)).send().await {
                let v: Value = r.json().await.unwrap_or_default();
                if v["value"]["ready"] == true {
                    return d;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the WebDriver server did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn browser(&self, kind: Kind) -> Browser<'_> {
        let caps = match kind {
            Kind::Chromium => {
                let binary = find_on_path("chromium").map(|p| p.display().to_string());
                let mut opts = json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,1500"]});
                if let Some(b) = binary {
                    opts["binary"] = json!(b);
                }
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome", "goog:chromeOptions": opts}}})
            }
            Kind::Firefox => {
                let binary = find_on_path("firefox-esr")
                    .or_else(|| find_on_path("firefox"))
                    .map(|p| p.display().to_string());
                let mut opts = json!({"args": ["-headless", "-width=1280", "-height=1500"],
                    "prefs": {"browser.shell.checkDefaultBrowser": false}});
                if let Some(b) = binary {
                    opts["binary"] = json!(b);
                }
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "firefox", "moz:firefoxOptions": opts}}})
            }
        };
        let r: Value = self
            .http
            .post(format!("{}/session", self.base))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_owned();
        Browser { d: self, session }
    }
}

impl Browser<'_> {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.d.base, self.session);
        let r = match method {
            "get" => self.d.http.get(url),
            "delete" => self.d.http.delete(url),
            _ => self
                .d
                .http
                .post(url)
                .json(&body.unwrap_or_else(|| json!({}))),
        };
        let v: Value = r.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = self.call(method, path, body).await;
        assert!(v.get("error").is_none(), "{method} {path}: {v}");
        v
    }

    async fn goto(&self, url: &str) {
        self.ok("post", "/url", Some(json!({"url": url}))).await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .ok(
                "post",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.ok(
            "post",
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.ok("post", &format!("/element/{e}/click"), None).await;
    }

    /// Presses keys on the page (not into an element), as a user would.
    async fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                [
                    json!({"type": "keyDown", "value": c.to_string()}),
                    json!({"type": "keyUp", "value": c.to_string()}),
                ]
            })
            .collect();
        self.ok(
            "post",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await;
    }

    async fn source(&self) -> String {
        self.ok("get", "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn js(&self, script: &str) -> Value {
        self.ok(
            "post",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Waits until `script` (an expression) is truthy.
    async fn wait(&self, script: &str, what: &str) {
        let started = Instant::now();
        loop {
            let v = self
                .call(
                    "post",
                    "/execute/sync",
                    Some(json!({"script": format!("return !!({script});"), "args": []})),
                )
                .await;
            if v == true {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, to: &Path) {
        let b64 = self.ok("get", "/screenshot", None).await;
        std::fs::write(to, base64_decode(b64.as_str().unwrap())).unwrap();
    }

    async fn item(&self) -> String {
        self.js("var i = document.getElementById('item'); return i ? i.dataset.item : null;")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn close(self) {
        let _ = self.call("delete", "", None).await;
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// The browsers the flow runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Debian's `chromium` through `chromedriver`.
    Chromium,
    /// Debian's `firefox-esr` through `geckodriver` (`cargo install geckodriver`).
    Firefox,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotator_flow_in_chromium() {
    let Some(driver_exe) = find_on_path("chromedriver") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromedriver is missing under CI=true (.ci/run installs chromium and chromium-driver)"
        );
        eprintln!("skipped: no chromedriver on PATH (apt-get install chromium chromium-driver)");
        return;
    };
    annotator_flow(Kind::Chromium, &driver_exe).await;
}

/// The same flow in Firefox. Runs when `TRIBUNAL_UI_FIREFOX=1` (then a missing
/// geckodriver or Firefox is a failure), or when geckodriver is on PATH; says `skipped`
/// otherwise, since Debian packages Firefox but not geckodriver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotator_flow_in_firefox() {
    let wanted = std::env::var("TRIBUNAL_UI_FIREFOX").as_deref() == Ok("1");
    let driver = find_on_path("geckodriver");
    let firefox = find_on_path("firefox-esr").or_else(|| find_on_path("firefox"));
    let (Some(driver_exe), Some(_)) = (driver, firefox) else {
        assert!(
            !wanted,
            "TRIBUNAL_UI_FIREFOX=1 but geckodriver or firefox-esr is missing (cargo install geckodriver; apt-get install firefox-esr)"
        );
        eprintln!(
            "skipped: no geckodriver and firefox-esr on PATH (cargo install geckodriver; apt-get install firefox-esr)"
        );
        return;
    };
    annotator_flow(Kind::Firefox, &driver_exe).await;
}

async fn annotator_flow(kind: Kind, driver_exe: &Path) {
    // Slow judges, so a job page has progress to follow.
    let base = tribunal::config::DEFAULT_CONFIG
        .replace("seed = 1\n", "seed = 1\nlatency_ms = 40\n")
        .replace("seed = 2\n", "seed = 2\nlatency_ms = 40\n")
        .replace("seed = 3\n", "seed = 3\nlatency_ms = 40\n");
    let app = TestApp::spawn_with(
        &base,
        &format!("[server]\njob_concurrency = 2\n{KEYS}"),
        ENV,
    )
    .await;
    let fx = fixture(&app, 16).await;
    let shots = match std::env::var("TRIBUNAL_UI_SCREENSHOTS").as_deref() {
        // The committed screenshots are Chromium's.
        Ok("docs") if kind == Kind::Chromium => crate::root().join("docs"),
        _ => std::env::temp_dir().join(format!("tribunal-ui-{}", std::process::id())),
    };
    std::fs::create_dir_all(&shots).unwrap();
    let driver = Driver::start(driver_exe).await;
    let b = driver.browser(kind).await;

    // Sign in through the form.
    b.goto(&format!("{}/ui/login", app.url)).await;
    b.type_into("#key", "doc-secret").await;
    b.click("#signin").await;
    b.wait("location.pathname === '/ui/sets'", "the sets page")
        .await;
    assert!(b.source().await.contains("annotator"));
    // The session cookie is not readable by scripts.
    assert_eq!(b.js("return document.cookie;").await, json!(""));

    // The blind queue: no verdict, judge or other label in the page source. With
    // `straight_on` a label moves on at once (by default it stays on the reveal).
    b.goto(&format!(
        "{}/ui/sets/{}/queue?straight_on=1&run={}",
        app.url, fx.set, fx.run
    ))
    .await;
    assert_eq!(b.item().await, "x0");
    let src = b.source().await;
    for hidden in ["judge-hidden", "nurse-other", "sim-a", "committee"] {
        assert!(!src.contains(hidden), "{hidden} in the blind page source");
    }
    // `?` opens the shortcut sheet.
    b.keys("?").await;
    assert_eq!(
        b.js("return document.getElementById('shortcuts').hidden;")
            .await,
        json!(false)
    );
    b.keys("?").await;

    // Three labels by keyboard only: 2 (true), 1 (false), 2 (true); each saves and
    // moves on.
    for (key, item, next) in [("2", "x0", "x1"), ("1", "x1", "x2"), ("2", "x2", "x3")] {
        assert_eq!(b.item().await, item);
        b.keys(key).await;
        b.wait(&format!("document.getElementById('item') && document.getElementById('item').dataset.item === '{next}'"), next).await;
    }
    // x1 carried the payloads: no alert opened, no injected image exists.
    let alert = b.call("get", "/alert/text", None).await;
    assert_eq!(alert["error"], "no such alert", "{alert}");
    assert_eq!(
        b.js("return document.querySelectorAll('img').length;")
            .await,
        json!(0)
    );
    // k goes back one, j forward again.
    b.keys("k").await;
    b.wait("document.getElementById('item').dataset.item === 'x2'", "k")
        .await;
    b.keys("j").await;
    b.wait("document.getElementById('item').dataset.item === 'x3'", "j")
        .await;
    b.screenshot(&shots.join("ui-queue-blind.png")).await;
    // u undoes the last label (x2's): the queue goes back to x2, blind again since
    // the label is gone; labelling it again (2) moves on, and x2 then shows every
    // judge's explanation.
    b.keys("u").await;
    b.wait("document.getElementById('item').dataset.item === 'x2' && !!document.getElementById('undone')", "u")
        .await;
    assert_eq!(
        b.js("return !!document.getElementById('blind');").await,
        json!(true),
        "x2 is unlabelled again"
    );
    b.keys("2").await;
    b.wait(
        "document.getElementById('item').dataset.item === 'x3'",
        "relabel x2",
    )
    .await;
    b.goto(&format!(
        "{}/ui/sets/{}/queue?run={}&item=x2",
        app.url, fx.set, fx.run
    ))
    .await;
    let src = b.source().await;
    for shown in [
        "judge-hidden",
        "nurse-other",
        "sim-a",
        "class=\"explanation\"",
    ] {
        assert!(src.contains(shown), "{shown} not revealed after labelling");
    }
    b.screenshot(&shots.join("ui-queue.png")).await;

    // The labels are the annotator's, through the API, and in the history.
    let h = api(
        &app,
        "get",
        &format!("/v1/calibration/sets/{}/labels", fx.set),
        "doc-secret",
        None,
    )
    .await;
    let written: Vec<(String, String)> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["rater"], "doc");
            (
                e["item"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap_or("removed").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        written,
        [
            ("x0", "true"),
            ("x1", "false"),
            ("x2", "true"),
            ("x2", "removed"),
            ("x2", "true")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    b.goto(&format!("{}/ui/sets/{}/history", app.url, fx.set))
        .await;
    assert_eq!(
        b.js("return document.querySelectorAll('#history tbody tr').length;")
            .await,
        json!(5)
    );

    // Sign out; the owner starts a new run from the set page and the dashboard
    // shows the new run's kappa (the labels above are in it).
    b.click(".signout button").await;
    b.wait("location.pathname === '/ui/login'", "signed out")
        .await;
    b.type_into("#key", "a-secret").await;
    b.click("#signin").await;
    b.wait("location.pathname === '/ui/sets'", "signed in as the owner")
        .await;
    b.goto(&format!("{}/ui/sets/{}", app.url, fx.set)).await;
    b.click("#start-run").await;
    b.wait("location.search.indexOf('run=') >= 0", "the new run")
        .await;
    let run = b
        .js("return new URLSearchParams(location.search).get('run');")
        .await;
    let run = run.as_str().unwrap().to_owned();
    assert_ne!(run, fx.run);
    // The page follows the run (server-sent events) and shows its report by itself
    // once it is written, without a reload from here.
    b.wait(
        "!document.getElementById('run-live') && !!document.getElementById('judges')",
        "the new run's report on the page",
    )
    .await;
    wait_done(&app, &run, "a-secret").await;
    let report = api(
        &app,
        "get",
        &format!("/v1/calibration/runs/{run}"),
        "a-secret",
        None,
    )
    .await;
    let committee = report["report"]["judges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["judge"] == "committee")
        .unwrap()["vs_human_majority"]["cohen_kappa"]["value"]
        .as_f64();
    let shown = b.js("return Array.from(document.querySelectorAll('#judges tbody tr')).map(r => r.cells[0].textContent + '=' + r.cells[2].textContent.trim().split(' ')[0]).join(';');").await;
    let want = format!(
        "committee={}",
        committee.map_or("undefined".to_owned(), |k| format!("{k:.3}"))
    );
    assert!(
        shown.as_str().unwrap().contains(&want),
        "{shown} lacks {want}"
    );
    assert_eq!(
        b.js("return document.querySelectorAll('#trend tbody tr').length;")
            .await,
        json!(2),
        "both runs in the kappa trend"
    );
    b.screenshot(&shots.join("ui-dashboard.png")).await;

    // A job page follows live progress to done without a reload.
    // Distinct responses, so no verdict comes from the cache and the job takes a while.
    let cases: Vec<Value> = (0..30)
        .map(|i| {
            case(
                &format!("live-{i}"),
                &format!("Rest and fluids, variant {i}."),
            )
        })
        .collect();
    let job = api(&app, "post", "/v1/jobs", "a-secret", Some(json!(cases))).await;
    let job = job["id"].as_str().unwrap().to_owned();
    b.goto(&format!("{}/ui/jobs/{job}", app.url)).await;
    let initial = b
        .js("return document.getElementById('job-state').textContent;")
        .await;
    assert!(
        initial == "queued" || initial == "running",
        "the job was {initial} before the page could follow it"
    );
    b.wait(
        "document.getElementById('job-state').textContent === 'done'",
        "the job page to show done",
    )
    .await;
    assert_eq!(
        b.js("return document.getElementById('job-done').textContent;")
            .await,
        json!("30")
    );
    eprintln!("job page started at {initial} and followed to done");
    b.goto(&format!("{}/ui/jobs/{}/items/0", app.url, fx.job))
        .await;
    assert!(b.source().await.contains("sim-a"));
    // What a physician reviews, as the browser renders it: the conversation, the
    // response, and per criterion its text, points, tags and the verdicts in words.
    let text = b
        .js("return document.body.innerText;")
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for want in [
        "I have a fever of 39C for three days.",
        "Rest and fluids.",
        "Advises seeing a clinician for fever over 3 days.",
        "7 points",
        "Recommends antibiotics without evaluation.",
        "-6 points",
        "axis:accuracy",
        "Consensus:",
    ] {
        assert!(text.contains(want), "{want} not on the item page: {text}");
    }
    assert!(
        text.contains("not met") || text.contains(" met"),
        "verdicts in words: {text}"
    );
    assert!(!text.contains("True") && !text.contains("False"), "{text}");
    // The response's markup stayed text: no element was made from it.
    assert_eq!(
        b.js("return document.querySelectorAll('#response img, #response script').length;")
            .await,
        json!(0)
    );
    b.screenshot(&shots.join("ui-report.png")).await;

    // A form POST without the CSRF token is refused in the browser too.
    b.goto(&format!("{}/ui/sets/{}", app.url, fx.set)).await;
    b.js("document.querySelector('#start-run').form.querySelector('input[name=csrf]').remove(); document.querySelector('#start-run').click(); return 1;").await;
    b.wait("document.title.indexOf('403') >= 0", "the CSRF refusal")
        .await;
    b.close().await;
    eprintln!("screenshots in {}", shots.display());
}
