//! Jobs survive kill -9: the real binary is killed in the middle of a job, started
//! again on the same database, and the job finishes with every item exactly once;
//! items finished before the crash are not re-judged.

use std::time::Duration;

use serde_json::Value;

use crate::server::{all_results as results, case};
use crate::spawn::serve;

async fn get(http: &reqwest::Client, url: String) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_resumes_after_kill_9_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tribunal.toml");
    let db = dir.path().join("crash.db");
    let slow = tribunal::config::DEFAULT_CONFIG
        .replace("seed = 1\n", "seed = 1\nlatency_ms = 40\n")
        .replace("seed = 2\n", "seed = 2\nlatency_ms = 40\n")
        .replace("seed = 3\n", "seed = 3\nlatency_ms = 40\n");
    std::fs::write(
        &cfg,
        format!(
            "{slow}\n[server]\ndatabase_url = \"sqlite://{}\"\njob_concurrency = 4\n",
            db.display()
        ),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let total = 150;
    let items: Vec<Value> = (0..total)
        .map(|i| case(&format!("k{i}"), &format!("answer number {i}")))
        .collect();

    let mut first = serve(&cfg);
    let job: Value = http
        .post(format!("{}/v1/jobs", first.url))
        .header("content-type", "application/json")
        .body(Value::Array(items).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    // Let part of the job finish, then kill -9 in the middle of it.
    let mut before = Vec::new();
    for _ in 0..400 {
        before = results(&http, &first.url, &id).await;
        if before.len() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    first.child.kill().unwrap(); // SIGKILL: no graceful shutdown at all.
    first.child.wait().unwrap();
    assert!(
        before.len() >= 20 && before.len() < total,
        "killed after {} items",
        before.len()
    );

    let mut second = serve(&cfg);
    let mut state = Value::Null;
    for _ in 0..1200 {
        state = get(&http, format!("{}/v1/jobs/{id}", second.url)).await;
        if state["state"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state["state"], "done", "{state}");
    assert_eq!(state["done"], total);
    let after = results(&http, &second.url, &id).await;
    assert_eq!(after.len(), total, "none lost, none duplicated");
    let ids: std::collections::BTreeSet<&str> = after
        .iter()
        .map(|r| r["case_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), total);
    // The job's counters, kept in its row, survived the crash exactly: no item counted
    // twice, none missed.
    crate::server::assert_counters_match(&state, &after);
    // gRPC reads the same row.
    let mut grpc =
        tribunal::api::grpc::pb::tribunal_client::TribunalClient::connect(second.grpc_url.clone())
            .await
            .unwrap();
    let job = grpc
        .get_job(tribunal::api::grpc::pb::GetJobRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (job.done, job.failed, job.calls),
        (
            state["done"].as_u64().unwrap(),
            state["failed"].as_u64().unwrap(),
            state["calls"].as_u64().unwrap()
        )
    );
    // Items finished before the crash keep their original report (not re-judged).
    for r in &before {
        let same = after.iter().find(|a| a["case_id"] == r["case_id"]).unwrap();
        assert_eq!(same, r, "{} was re-judged", r["case_id"]);
    }
    // And the restarted server never paid for them: at most 9 calls (3 criteria x 3
    // judges) per item that was not finished before the crash.
    let judges = get(&http, format!("{}/v1/judges", second.url)).await;
    let calls: u64 = judges["judges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["health"]["calls"].as_u64().unwrap())
        .sum();
    assert!(
        calls <= ((total - before.len()) * 9) as u64,
        "{calls} calls after restart"
    );
    println!(
        "kill -9 after {} of {total} items; {calls} judge calls after restart",
        before.len()
    );
    second.child.kill().unwrap();
    second.child.wait().unwrap();
}
