//! `tribunal grade` and `tribunal config check`: load and validate the config, check
//! every input line before spending a judge call, grade items concurrently (in input
//! order) with a progress bar on a terminal, write one GradeReport per line, then the
//! summary in the shape of `tribunal score --format json`.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;

use crate::cli::{Failure, GradeArgs, for_each_line, invalid_lines};
use crate::config::{Config, ProviderConfig};
use crate::grader::{Grader, read_example_score};
use crate::item::{Item, parse_line};
use crate::score::{self, DEFAULT_RESAMPLES, ExampleScore, report};

fn load_config(path: Option<&Path>) -> Result<Config, Failure> {
    load_config_with(path, std::env::vars())
}

/// Loads and validates the config against `env`, listing every problem.
fn load_config_with(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, Failure> {
    Config::load(path, env).map_err(|e| {
        Failure::Invalid(
            e.problems()
                .into_iter()
                .map(|p| format!("config: {p}"))
                .collect(),
        )
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot start the async runtime: {e}")))
}

pub(crate) fn serve(args: &crate::cli::ServeArgs) -> Result<(), Failure> {
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    // CLI flags win over the file and the environment.
    for (key, value) in [
        ("TRIBUNAL__SERVER__HTTP_ADDR", &args.http_addr),
        ("TRIBUNAL__SERVER__GRPC_ADDR", &args.grpc_addr),
        ("TRIBUNAL__SERVER__DATABASE_URL", &args.database),
    ] {
        if let Some(v) = value {
            env.push((key.to_owned(), format!("\"{}\"", v.replace('"', ""))));
        }
    }
    let cfg = load_config_with(args.config.as_deref(), env)?;
    crate::telemetry::init(cfg.server.log_format);
    let runtime = runtime()?;
    runtime.block_on(async {
        let http = tokio::net::TcpListener::bind(cfg.server.http_addr)
            .await
            .map_err(|e| {
                Failure::Runtime(anyhow::anyhow!(
                    "cannot listen on {} (server.http_addr): {e}",
                    cfg.server.http_addr
                ))
            })?;
        let grpc = tokio::net::TcpListener::bind(cfg.server.grpc_addr)
            .await
            .map_err(|e| {
                Failure::Runtime(anyhow::anyhow!(
                    "cannot listen on {} (server.grpc_addr): {e}",
                    cfg.server.grpc_addr
                ))
            })?;
        let running = crate::app::start(&cfg, http, Some(grpc))
            .await
            .map_err(|e| match e {
                crate::Error::Invalid(inv) => {
                    Failure::Invalid(inv.0.iter().map(|p| format!("config: {p}")).collect())
                }
                other => Failure::Runtime(anyhow::anyhow!("{other}")),
            })?;
        let names: Vec<&str> = cfg
            .committee
            .members
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "tribunal serving HTTP on http://{} and gRPC on {}; store {}; committee [{}]{}",
            running.http_addr,
            running
                .grpc_addr
                .map_or_else(|| "-".to_owned(), |a| a.to_string()),
            cfg.server.database_url,
            names.join(", "),
            if cfg.simulated() {
                " is SIMULATED: grades are not real judgements (configure judges with --config)"
            } else {
                ""
            }
        );
        drop(err);
        tracing::info!(http = %running.http_addr, simulated = cfg.simulated(), "tribunal started");
        let token = running.shutdown.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: no new requests; recording in-flight job items");
            token.cancel();
        });
        running.wait().await;
        Ok::<(), Failure>(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

pub(crate) fn config_check(path: Option<&Path>) -> Result<(), Failure> {
    let cfg = load_config(path)?;
    let mut out = String::new();
    for (name, j) in &cfg.judges {
        let provider = match &j.provider {
            ProviderConfig::OpenAi(o) => format!(
                "openai base_url={} api_key={} (from {})",
                o.base_url,
                if o.api_key.is_some() { "****" } else { "none" },
                o.api_key_env.as_deref().unwrap_or("-")
            ),
            ProviderConfig::Sim(s) => format!("sim (SIMULATED) {s:?}"),
        };
        out.push_str(&format!(
            "judge {name}: model={} {provider} timeout={:?} limits={:?} retry={:?} sampling={:?}\n",
            j.model, j.timeout, j.limits, j.retry, j.sampling
        ));
    }
    let c = &cfg.committee;
    out.push_str(&format!(
        "committee: members={:?} n_samples={} consensus={:?} veto_consensus={:?} quorum={} escalation={:?} min_agreement={} prompt_mode={:?} request_timeout={:?}\ncache: {:?}\n",
        c.members, c.n_samples, c.consensus, c.veto_consensus, c.quorum, c.escalation, c.min_agreement, c.prompt_mode, c.request_timeout, cfg.cache
    ));
    if let Some(p) = &c.weights_from {
        out.push_str(&format!("committee weights from: {}\n", p.display()));
    }
    if let Some(r) = &c.reliability {
        out.push_str(&format!(
            "committee reliability (dawid_skene): {} classes, judges {:?}\n",
            r.classes,
            r.confusion.keys().collect::<Vec<_>>()
        ));
    }
    if cfg.simulated() {
        out.push_str("NOTE: every judge is simulated; grades are not real.\n");
    }
    print!("{out}");
    Ok(())
}

/// Case ids that already have a report in `path` (error lines do not count).
fn done_ids(path: &Path) -> Result<(HashSet<String>, Vec<(String, ExampleScore)>), Failure> {
    let mut ids = HashSet::new();
    let mut scores = Vec::new();
    if !path.exists() {
        return Ok((ids, scores));
    }
    let mut problems = Vec::new();
    for_each_line(path, |n, text| {
        let parsed = text
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok());
        match parsed {
            Some(v) if v.get("error").is_some() => {}
            Some(v) => match read_example_score(&v) {
                Ok((id, s)) => {
                    ids.insert(id.clone());
                    scores.push((id, s));
                }
                Err(e) => problems.push(format!(
                    "{}: line {n}: not a GradeReport: {e}",
                    path.display()
                )),
            },
            None => problems.push(format!(
                "{}: line {n}: not JSON (a truncated last line from a crash?); remove it and resume again",
                path.display()
            )),
        }
    })?;
    if problems.is_empty() {
        Ok((ids, scores))
    } else {
        Err(Failure::Invalid(problems))
    }
}

pub(crate) fn run(args: &GradeArgs) -> Result<(), Failure> {
    let cfg = load_config(args.config.as_deref())?;
    // Check every line before any judge is called.
    let mut errors = Vec::new();
    let mut total = 0usize;
    for_each_line(&args.input, |n, text| match text.map(parse_line) {
        Err(e) => errors.push(e),
        Ok(Ok(_)) => total += 1,
        Ok(Err(inv)) => errors.extend(invalid_lines(n, &inv)),
    })?;
    if !errors.is_empty() {
        return Err(Failure::Invalid(errors));
    }
    let (done, mut scores) = match (&args.output, args.resume) {
        (Some(out), true) => done_ids(out)?,
        _ => (HashSet::new(), Vec::new()),
    };
    let grader =
        Arc::new(Grader::from_config(&cfg).map_err(|e| Failure::Runtime(anyhow::anyhow!("{e}")))?);
    let mut err = std::io::stderr().lock();
    let names: Vec<&str> = cfg
        .committee
        .members
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    if grader.simulated() {
        let _ = writeln!(
            err,
            "tribunal: committee [{}] is SIMULATED: grades are not real judgements",
            names.join(", ")
        );
    } else {
        let _ = writeln!(err, "tribunal: committee [{}]", names.join(", "));
    }
    drop(err);
    let runtime = runtime()?;
    runtime.block_on(grade_all(args, grader, total, done, &mut scores))?;
    let examples: Vec<ExampleScore> = scores.iter().map(|(_, s)| s.clone()).collect();
    let summary = score::summarize(&examples, args.seed, DEFAULT_RESAMPLES);
    let text = format!(
        "{}\n",
        report::summary_json(
            &summary,
            scores.iter().map(|(id, s)| (id.as_str(), s)),
            args.seed,
            DEFAULT_RESAMPLES
        )
    );
    let write = match (&args.summary, &args.output) {
        (Some(p), _) => {
            std::fs::write(p, text).map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))
        }
        (None, Some(_)) => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| anyhow::anyhow!("{e}")),
        (None, None) => std::io::stderr()
            .write_all(text.as_bytes())
            .map_err(|e| anyhow::anyhow!("{e}")),
    };
    write.map_err(Failure::Runtime)
}

async fn grade_all(
    args: &GradeArgs,
    grader: Arc<Grader>,
    total: usize,
    done: HashSet<String>,
    scores: &mut Vec<(String, ExampleScore)>,
) -> Result<(), Failure> {
    // Second pass: collect the items still to grade (parsed items are held in memory;
    // streaming them for very large files is future work).
    let mut items: Vec<Item> = Vec::new();
    let mut skipped_no_response = 0usize;
    let mut skipped_done = 0usize;
    for_each_line(&args.input, |_, text| {
        if let Ok(Ok((_, mut item))) = text.map(parse_line) {
            if done.contains(&item.case.id) {
                skipped_done += 1;
                return;
            }
            if item.response.is_none() && args.use_reference {
                item.response = item.case.reference_responses.first().cloned();
            }
            if item.response.is_none() {
                skipped_no_response += 1;
                return;
            }
            items.push(item);
        }
    })?;
    let mut out: Box<dyn Write + Send> = match &args.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", p.display()))?,
        )),
        None => Box::new(std::io::stdout()),
    };
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(items.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} items  {msg}  eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let mut failed = 0usize;
    let mut abstentions = 0usize;
    let concurrency = args.concurrency.max(1);
    let mut stream = futures::stream::iter(items.into_iter().map(|item| {
        let grader = Arc::clone(&grader);
        async move {
            let r = grader.grade(&item).await;
            (item.case.id, r)
        }
    }))
    .buffered(concurrency);
    while let Some((id, result)) = stream.next().await {
        let line = match result {
            Ok(report) => {
                abstentions += report
                    .criteria
                    .iter()
                    .flat_map(|c| c.ballots.iter())
                    .filter(|b| b.abstained.is_some())
                    .count();
                scores.push((id, report.score.clone()));
                report.to_json()
            }
            Err(e) => {
                failed += 1;
                crate::grader::failed_item_json(&id, &e)
            }
        };
        writeln!(out, "{line}").map_err(|e| anyhow::anyhow!("writing reports: {e}"))?;
        bar.inc(1);
        let (calls, tokens, cost) = grader.committee.members.iter().fold((0, 0, 0), |acc, m| {
            let s = &m.client.stats;
            (
                acc.0 + s.calls.load(Ordering::Relaxed),
                acc.1
                    + s.input_tokens.load(Ordering::Relaxed)
                    + s.output_tokens.load(Ordering::Relaxed),
                acc.2 + s.cost_micro_usd.load(Ordering::Relaxed),
            )
        });
        let hits = grader
            .committee
            .cache
            .stats
            .memory_hits
            .load(Ordering::Relaxed);
        #[expect(clippy::cast_precision_loss, reason = "display only")]
        let rate = calls as f64 / started.elapsed().as_secs_f64().max(1e-3);
        #[expect(clippy::cast_precision_loss, reason = "display only")]
        let usd = cost as f64 / 1e6;
        bar.set_message(format!(
            "{rate:.0} calls/s  {hits} cache hits  {abstentions} abstentions  {tokens} tokens  ${usd:.4}"
        ));
    }
    out.flush()
        .map_err(|e| anyhow::anyhow!("writing reports: {e}"))?;
    bar.finish_and_clear();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "tribunal: {total} items: {} graded, {failed} failed, {skipped_done} already done, {skipped_no_response} skipped without a response, {abstentions} abstained ballots, {:.1}s",
        scores.len() - skipped_done.min(scores.len()),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `tribunal calibrate SET --config FILE` without `--offline`: runs the configured
/// committee over the set's items through the normal cached, rate-limited path, then
/// returns the agreement report on the judges' fresh labels (plus the committee's).
pub(crate) fn calibrate_live(
    set: &crate::calibration::CalibrationSet,
    config: Option<&Path>,
    concurrency: usize,
    opts: &crate::calibration::ReportOptions,
) -> Result<serde_json::Value, Failure> {
    use crate::calibration::{agreement_report, live};
    let cfg = load_config(config)?;
    let grader =
        Arc::new(Grader::from_config(&cfg).map_err(|e| Failure::Runtime(anyhow::anyhow!("{e}")))?);
    if set.items.iter().any(|i| {
        matches!(
            i.task.as_ref().map(|t| &t.criterion),
            Some(crate::calibration::set::TaskCriterion::Reference { .. })
        )
    }) {
        return Err(Failure::Invalid(vec![
            "items name criteria by `rubric` + `criterion_id`; the CLI has no rubric store, so write the criterion inline (`criterion`) or run the set on the server (POST /v1/calibration/runs)".into(),
        ]));
    }
    let plan = live::plan(set, &std::collections::BTreeMap::new(), grader.simulated())
        .map_err(Failure::Invalid)?;
    let names: Vec<&str> = cfg
        .committee
        .members
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    eprintln!(
        "tribunal: calibrating committee [{}]{} on {} items ({} without a case, response and criterion skipped)",
        names.join(", "),
        if grader.simulated() {
            " (SIMULATED: each judge is handed the human majority as its reference label)"
        } else {
            ""
        },
        plan.rows.len(),
        plan.skipped
    );
    let runtime = runtime()?;
    let (results, failed) = runtime.block_on(async {
        let graded: Vec<(u64, Result<serde_json::Value, String>)> =
            futures::stream::iter(plan.rows.iter().enumerate())
                .map(|(seq, (_, line))| {
                    let grader = Arc::clone(&grader);
                    async move {
                        let out = match parse_line(line) {
                            Ok((_, item)) => grader
                                .grade(&item)
                                .await
                                .map(|r| r.to_json())
                                .map_err(|e| e.to_string()),
                            Err(inv) => Err(inv.to_string()),
                        };
                        (seq as u64, out)
                    }
                })
                .buffer_unordered(concurrency.max(1))
                .collect()
                .await;
        let mut ok = Vec::with_capacity(graded.len());
        let mut failed = Vec::new();
        for (seq, r) in graded {
            match r {
                Ok(v) => ok.push((seq, v)),
                Err(e) => failed.push((seq, e)),
            }
        }
        (ok, failed)
    });
    for (seq, e) in failed.iter().take(5) {
        let id = usize::try_from(*seq)
            .ok()
            .and_then(|s| plan.items.get(s))
            .map_or("?", |i| set.items[*i].id.as_str());
        eprintln!("tribunal: item {id} was not graded: {e}");
    }
    let labelled = live::labelled_set(&plan, results);
    let mut report = agreement_report(&labelled, opts);
    report["run"] = serde_json::json!({
        "items_run": plan.rows.len(),
        "items_skipped": plan.skipped,
        "items_failed": failed.len(),
        "binarized": plan.binarized,
        "simulated": grader.simulated(),
    });
    Ok(report)
}
