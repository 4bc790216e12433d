//! Web UI benchmark against the real `tribunal serve` binary on loopback: the
//! dashboard (set page) and the review queue of a large calibration set. Prints
//! figures; asserts only that every page answers 200.
//!
//! cargo bench --bench ui            (ITEMS=10000 by default)
//!
//! 1. uploads a live calibration set of ITEMS items (binary, met = "true") labelled by
//!    four annotators (not every one labels every item) and one judge, over three item
//!    categories and 25 criteria;
//! 2. runs it to the end with the built-in simulated committee (three judges);
//! 3. labels one item as the signed-in caller (so its queue page reveals the run's
//!    ballots);
//! 4. times, each over REQUESTS sequential requests after one cold request (the
//!    first request after start-up or after a label write parses the set): the set
//!    list, the dashboard, the queue at its first item (blind), at a labelled item
//!    (the run's ballots read), with the unlabelled filter, and with the
//!    disagreement filter (judges of the run against the human majority); then a
//!    label write (save) followed by the queue page it redirects to.
//!
//! Times are measured by the client around each request, so they are the server
//! time plus one loopback round trip (an upper bound on the server time).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench harness"
)]

#[path = "../tests/it/spawn.rs"]
mod spawn;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

const RATERS: [&str; 4] = ["nurse", "doctor", "resident", "pharmacist"];

fn truth(i: usize) -> bool {
    (i * 7) % 5 < 3
}

/// One calibration.v1 set: `n` items, each with a case, a response and one of 25
/// criteria; rater `r` labels item `i` unless `(i + r) % 5 == 0`, and disagrees with
/// the made-up truth now and then.
fn set_text(n: usize) -> String {
    let mut lines = vec![
        json!({"format": "calibration.v1", "name": "bench-10k", "scale": "nominal",
            "categories": ["false", "true"], "met": "true",
            "description": "Label whether the response **meets** the criterion."})
        .to_string(),
    ];
    let categories = ["safety", "info", "triage"];
    for i in 0..n {
        let mut labels: Vec<Value> = RATERS
            .iter()
            .enumerate()
            .filter(|(r, _)| (i + r) % 5 != 0)
            .map(|(r, name)| {
                json!({"rater": name, "kind": "human", "value": truth(i) != ((i + 3 * r) % 11 == 0)})
            })
            .collect();
        labels.push(
            json!({"rater": "judge-gpt", "kind": "judge", "value": truth(i) != (i % 4 == 3)}),
        );
        lines.push(
            json!({"id": format!("x{i}"), "category": categories[i % 3],
                "case": format!("Question {i}: I have had a headache for two days. What should I do?"),
                "response": format!("Answer {i}: rest, drink fluids, and see a doctor if it gets worse or you have a fever."),
                "criterion": format!("Advises seeing a doctor when warning signs appear (criterion {}).", i % 25),
                "labels": labels})
            .to_string(),
        );
    }
    lines.join("\n")
}

/// A cookie-keeping client that does not follow redirects.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Browser {
    async fn get(&mut self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        self.keep(&r);
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn post(&mut self, path: &str, form: &str) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned())
            .send()
            .await
            .unwrap();
        self.keep(&r);
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (r.status().as_u16(), location)
    }

    fn keep(&mut self, r: &reqwest::Response) {
        if let Some(c) = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()) {
            self.cookie = c.split(';').next().unwrap_or_default().to_owned();
        }
    }
}

fn csrf_of(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    body[at..].split('"').next().unwrap().to_owned()
}

/// Median and p95 of `ms`, sorted in place.
fn figures(ms: &mut [f64]) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    (ms[n / 2], ms[((n * 95) / 100).min(n - 1)])
}

async fn time_page(b: &mut Browser, what: &str, path: &str, requests: usize) -> (f64, f64) {
    let t = Instant::now();
    let (status, body) = b.get(path).await;
    assert_eq!(status, 200, "{what}: {path}: {body}");
    let cold = t.elapsed().as_secs_f64() * 1000.0;
    let mut ms = Vec::with_capacity(requests);
    let mut bytes = 0;
    for _ in 0..requests {
        let t = Instant::now();
        let (status, body) = b.get(path).await;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200, "{what}: {path}");
        bytes = body.len();
    }
    let (median, p95) = figures(&mut ms);
    println!(
        "{what:<44} median {median:7.2} ms  p95 {p95:7.2} ms  (cold {cold:8.1} ms; {requests} requests; page {} kB)",
        bytes / 1024
    );
    (median, p95)
}

#[tokio::main]
async fn main() {
    let items: usize = std::env::var("ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let requests: usize = std::env::var("REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tribunal.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[server]\ndatabase_url = \"sqlite://{}\"\njob_concurrency = 64\nmax_items_per_job = 2000000\nmax_body_bytes = 268435456\n",
            tribunal::config::DEFAULT_CONFIG,
            dir.path().join("bench.db").display()
        ),
    )
    .unwrap();
    let server = spawn::serve(&cfg);
    // The gRPC listener is not used here.
    let _ = &server.grpc_url;
    let mut child = server.child;
    let url = server.url;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let started = Instant::now();
    let r = http
        .post(format!("{url}/v1/calibration/sets"))
        .header("content-type", "application/json")
        .body(json!({"content": set_text(items)}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let set: Value = r.json().await.unwrap();
    let set = set["id"].as_str().unwrap().to_owned();
    let uploaded = started.elapsed();
    let r = http
        .post(format!("{url}/v1/calibration/runs"))
        .header("content-type", "application/json")
        .body(json!({"set": set, "resamples": 200}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let run: Value = r.json().await.unwrap();
    let run = run["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let r: Value = http
            .get(format!("{url}/v1/calibration/runs/{run}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !r["report"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "the run did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "set of {items} items ({} human raters + 1 judge, 25 criteria): uploaded in {:.1}s; run of 3 simulated judges done in {:.1}s",
        RATERS.len(),
        uploaded.as_secs_f64(),
        (started.elapsed() - uploaded).as_secs_f64()
    );
    // The keyless server's caller is the local admin, who labels as `local`.
    let labelled = format!("x{}", items * 9 / 10);
    let r = http
        .post(format!("{url}/v1/calibration/sets/{set}/labels"))
        .header("content-type", "application/json")
        .body(json!({"labels": [{"item": labelled, "rater": "local", "kind": "human", "value": "true"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let mut b = Browser {
        http: http.clone(),
        base: url.clone(),
        cookie: String::new(),
    };
    let mut results = Vec::new();
    for (what, path) in [
        ("set list", "/ui/sets".to_owned()),
        (
            "dashboard (set page, newest run)",
            format!("/ui/sets/{set}"),
        ),
        ("queue: first item (blind)", format!("/ui/sets/{set}/queue")),
        (
            "queue: labelled item (run's ballots shown)",
            format!("/ui/sets/{set}/queue?item={labelled}"),
        ),
        (
            "queue: not yet labelled by me",
            format!("/ui/sets/{set}/queue?unlabelled=1"),
        ),
        (
            "queue: judge vs human disagreements",
            format!("/ui/sets/{set}/queue?disagreements=1"),
        ),
        (
            "queue: category + criterion filter",
            format!(
                "/ui/sets/{set}/queue?category=triage&criterion={}",
                "Advises%20seeing%20a%20doctor%20when%20warning%20signs%20appear%20%28criterion%207%29."
            ),
        ),
    ] {
        results.push((what, time_page(&mut b, what, &path, requests).await));
    }

    // The annotator's loop: save a label, then the next item's page.
    let (_, page) = b.get(&format!("/ui/sets/{set}/queue")).await;
    let csrf = csrf_of(&page);
    let mut saves = Vec::new();
    let mut nexts = Vec::new();
    for i in 0..requests.min(20) {
        let form = format!("csrf={csrf}&item=x{}&value=true", i * 3);
        let t = Instant::now();
        let (status, location) = b.post(&format!("/ui/sets/{set}/label"), &form).await;
        saves.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 303, "label save");
        let t = Instant::now();
        let (status, _) = b.get(&location).await;
        nexts.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200, "{location}");
    }
    let (sm, sp) = figures(&mut saves);
    let (nm, np) = figures(&mut nexts);
    println!(
        "{:<44} median {sm:7.2} ms  p95 {sp:7.2} ms  ({} saves)",
        "save a label (POST, writes the set)",
        saves.len()
    );
    println!(
        "{:<44} median {nm:7.2} ms  p95 {np:7.2} ms",
        "queue page right after a save"
    );
    let worst = results
        .iter()
        .map(|(_, (_, p95))| *p95)
        .fold(0.0_f64, f64::max);
    println!("slowest page p95: {worst:.2} ms (target: under 50 ms)");
    let _ = child.kill();
    let _ = child.wait();
}
