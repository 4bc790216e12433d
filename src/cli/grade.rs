//! `tribunal grade`: checks every input line before spending a judge call, grades
//! items concurrently (admitted by the judges' call budget, written in input order
//! through a reorder buffer, so a slow item never holds back admission) with a
//! progress bar on a terminal, writes one
//! GradeReport per line (resumable), then the summary: the table of
//! `tribunal score --format table` when it goes to a terminal, else the JSON of
//! `score --format json`. Must not touch a store or start a server.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use clap::Parser;
use futures::StreamExt;

use super::shared::{
    EXIT_ITEMS_FAILED, EXIT_NOTHING_GRADED, Failure, Format, for_each_line, format_for,
    invalid_lines, load_config, runtime,
};
use crate::grader::{Grader, read_example_score};
use crate::item::{Item, parse_line};
use crate::score::{self, DEFAULT_RESAMPLES, ExampleScore, report};

#[derive(Debug, Parser)]
pub struct GradeArgs {
    /// JSON Lines input: HealthBench rows plus `response`, or case.v1 rows.
    pub input: PathBuf,
    /// TOML configuration; without it, the built-in simulated committee is used.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Where to write GradeReports (JSONL); default standard output.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Skip items whose case id already has a report in OUTPUT.
    #[arg(long, requires = "output")]
    pub resume: bool,
    /// Write the summary here instead of standard output (standard error when the
    /// reports themselves go to standard output).
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// For rows without `response`, grade the first reference answer (HealthBench
    /// ideal completion); rows with neither are skipped and counted.
    #[arg(long)]
    pub use_reference: bool,
    /// Items graded concurrently, as an explicit cap. By default items are admitted
    /// while the judges have calls to spare (twice the widest judge's max_concurrency
    /// in outstanding calls), so the judges' own limits are the only throttle.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub concurrency: Option<u64>,
    /// Print what grading would cost (per judge: calls, input / cached / output tokens
    /// and USD, from the rendered prompts, the prices and the caches) as JSON, and
    /// exit without calling any judge.
    #[arg(long, conflicts_with_all = ["output", "resume", "summary"])]
    pub estimate: bool,
    /// Send the judges' calls through the provider's Batch API (`/v1/files` +
    /// `/v1/batches`; OpenAI bills them at half price), with each judge's `batch_*`
    /// options or their defaults. Results arrive when a batch completes (up to the
    /// 24 h completion window), so this is for large runs, not quick checks. Without
    /// it, `grade` calls every judge live, even one configured with `batch = true`.
    #[arg(long)]
    pub batch: bool,
    /// Seed for the summary's bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The summary's format; default: a table when it goes to a terminal, else JSON.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Report length-adjusted figures in the summary: `professional` (HealthBench
    /// Professional) or CENTER,PENALTY; replaces any adjustment the rubrics set.
    #[arg(long, value_parser = crate::rubric::LengthAdjustment::parse)]
    pub length_adjustment: Option<crate::rubric::LengthAdjustment>,
    /// In the table summary, also list the figure of every tag (`theme:*`, `axis:*`),
    /// above the headline. `--format json` always carries them.
    #[arg(long)]
    pub by_tag: bool,
}

/// What a run did, beyond the scores: for the end-of-run lines and the exit code.
#[derive(Debug, Default)]
struct RunTally {
    /// Items graded in this run (not counting `--resume`'s earlier reports).
    graded: usize,
    failed: usize,
    /// The first failed item: its case id and error message.
    first_failure: Option<(String, String)>,
    skipped_no_response: usize,
    /// Scoring policies of the graded items' rubrics.
    policies: std::collections::BTreeSet<&'static str>,
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
    let mut cfg = load_config(args.config.as_deref())?;
    batch_judges(&mut cfg, args.batch)?;
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
    let names = super::shared::member_names(&cfg);
    if grader.simulated() {
        let _ = writeln!(
            err,
            "tribunal: committee [{}] is SIMULATED: grades are not real judgements",
            names
        );
    } else {
        let _ = writeln!(err, "tribunal: committee [{}]", names);
    }
    drop(err);
    if args.estimate {
        return estimate(args, &grader, total, &done);
    }
    let runtime = runtime()?;
    let tally = runtime.block_on(grade_all(
        args,
        Arc::clone(&grader),
        total,
        done,
        &mut scores,
    ))?;
    if let Some(la) = args.length_adjustment {
        for (_, s) in &mut scores {
            s.length_adjustment = Some(la);
        }
    }
    let examples: Vec<ExampleScore> = scores.iter().map(|(_, s)| s.clone()).collect();
    let summary = score::summarize(&examples, args.seed, DEFAULT_RESAMPLES);
    // The summary goes to --summary, else stdout when the reports go to a file, else
    // stderr (the reports hold stdout); a person reading that stream gets the table.
    let terminal = match (&args.summary, &args.output) {
        (Some(_), _) => false,
        (None, Some(_)) => std::io::stdout().is_terminal(),
        (None, None) => std::io::stderr().is_terminal(),
    };
    let text = match format_for(args.format, terminal) {
        Format::Json => format!(
            "{}\n",
            report::summary_json(
                &summary,
                scores.iter().map(|(id, s)| (id.as_str(), s)),
                args.seed,
                DEFAULT_RESAMPLES
            )
        ),
        Format::Table => end_of_run(args, &grader, &summary, &tally),
    };
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
    write.map_err(Failure::Runtime)?;
    exit_status(&summary, &tally, args.use_reference)
}

/// "N item(s) failed (first: ID: MESSAGE)", when any did.
fn failed_clause(tally: &RunTally) -> Option<String> {
    (tally.failed > 0).then(|| {
        let example = tally
            .first_failure
            .as_ref()
            .map(|(id, m)| format!(" (first: {id}: {m})"))
            .unwrap_or_default();
        format!("{} item(s) failed{example}", tally.failed)
    })
}

/// The run's exit: 0 when every item was graded and counts; `EXIT_NOTHING_GRADED` when
/// no item has a report; `EXIT_ITEMS_FAILED` when an item failed or was excluded
/// because a judge abstained (`incomplete`). The message says what and where to look.
fn exit_status(
    summary: &score::Summary,
    tally: &RunTally,
    use_reference: bool,
) -> Result<(), Failure> {
    if summary.examples == 0 {
        let mut why = Vec::new();
        if let Some(failed) = failed_clause(tally) {
            why.push(failed);
        }
        if tally.skipped_no_response > 0 {
            why.push(format!(
                "{} row(s) skipped without a response{}",
                tally.skipped_no_response,
                no_response_hint(use_reference)
            ));
        }
        if why.is_empty() {
            why.push("the input has no items".to_owned());
        }
        return Err(Failure::Incomplete {
            code: EXIT_NOTHING_GRADED,
            message: format!("nothing was graded: {}", why.join("; ")),
        });
    }
    if tally.failed > 0 || summary.excluded_incomplete > 0 {
        let mut why = Vec::new();
        if let Some(failed) = failed_clause(tally) {
            why.push(failed);
        }
        if summary.excluded_incomplete > 0 {
            why.push(format!(
                "{} item(s) excluded because a judge abstained (see the abstentions above and each report's `abstentions`)",
                summary.excluded_incomplete
            ));
        }
        return Err(Failure::Incomplete {
            code: EXIT_ITEMS_FAILED,
            message: why.join("; "),
        });
    }
    Ok(())
}

/// What to do about rows without a `response`.
fn no_response_hint(use_reference: bool) -> &'static str {
    if use_reference {
        " (they have no reference answer either)"
    } else {
        " (add `response` to each row, or grade the rows' reference answers with --use-reference)"
    }
}

/// The table summary's end of run, headline last so no tag list scrolls it away:
/// tag figures (only with `--by-tag`), then per judge its calls, tokens, cost and
/// abstentions by reason with one detail each, failed items with the first error,
/// the included / excluded counts and the overall figure with its interval, and the
/// SIMULATED warning as the very last line when it applies.
fn end_of_run(
    args: &GradeArgs,
    grader: &Grader,
    summary: &score::Summary,
    tally: &RunTally,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if args.by_tag {
        out.push_str(&report::tag_rows(summary));
    } else if !summary.tags.is_empty() {
        let _ = writeln!(
            out,
            "({} tag figures not shown; --by-tag lists them, --format json carries them)",
            summary.tags.len()
        );
    }
    out.push_str(&judge_lines(grader));
    if tally.failed > 0 {
        let _ = writeln!(
            out,
            "failed: {} item(s){}",
            tally.failed,
            tally
                .first_failure
                .as_ref()
                .map(|(id, m)| format!("; first: {id}: {m}"))
                .unwrap_or_default()
        );
    }
    if tally.skipped_no_response > 0 {
        let _ = writeln!(
            out,
            "skipped: {} row(s) without a response{}",
            tally.skipped_no_response,
            no_response_hint(args.use_reference)
        );
    }
    let policy = if tally.policies.is_empty() {
        "policy from each rubric".to_owned()
    } else {
        format!(
            "policy {}",
            tally
                .policies
                .iter()
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    out.push_str(&report::headline(summary, &policy, args.seed));
    if grader.simulated() {
        let _ = writeln!(
            out,
            "SIMULATED: every judge is simulated; these grades are not real judgements"
        );
    }
    out
}

/// One line per judge (members, then the escalation judge): calls, tokens and cost
/// (or that no price is configured), then its abstained ballots by reason, each with
/// the first detail seen.
fn judge_lines(grader: &Grader) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let clients = grader
        .committee
        .members
        .iter()
        .map(|m| (&m.client, ""))
        .chain(
            grader
                .committee
                .escalation
                .iter()
                .map(|e| (e, " (escalation)")),
        );
    for (c, role) in clients {
        let s = &c.stats;
        let (calls, input, output) = (
            s.calls.load(Ordering::Relaxed),
            s.input_tokens.load(Ordering::Relaxed),
            s.output_tokens.load(Ordering::Relaxed),
        );
        #[expect(clippy::cast_precision_loss, reason = "display only")]
        let usd = s.cost_micro_usd.load(Ordering::Relaxed) as f64 / 1e6;
        let cost = if c.simulated() {
            "$0 (simulated)".to_owned()
        } else if c.unpriced() {
            "cost unknown (no price_* configured)".to_owned()
        } else {
            format!("${usd:.4}")
        };
        let _ = writeln!(
            out,
            "judge {}{role} ({}): {calls} calls, {} tokens ({input} in, {output} out), {cost}",
            c.name(),
            c.cfg.model,
            input + output
        );
        for (reason, n, detail) in c.abstentions() {
            let _ = writeln!(out, "  abstained {n} x {reason}: {detail}");
        }
    }
    out
}

/// `--batch` turns the Batch API on for every committee judge (keeping any `batch_*`
/// options it has); without it every judge calls live, so a `batch = true` judge
/// neither batches nor widens the call budget here. A simulated judge has no Batch API.
fn batch_judges(cfg: &mut crate::config::Config, batch: bool) -> Result<(), Failure> {
    let mut problems = Vec::new();
    let used: HashSet<String> = cfg
        .committee
        .members
        .iter()
        .map(|(n, _)| n.clone())
        .chain(cfg.committee.escalation.clone())
        .collect();
    for (name, j) in &mut cfg.judges {
        if !batch {
            j.batch = None;
        } else if !used.contains(name) {
            continue;
        } else if j.simulated() {
            problems.push(format!(
                "--batch: judge \"{name}\" is simulated and has no Batch API; use provider = \"openai\" judges or drop --batch"
            ));
        } else if j.batch.is_none() {
            j.batch = Some(crate::config::BatchConfig::default());
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::Invalid(problems))
    }
}

/// `--estimate`: the committee's expected bill for the items a run would grade, as
/// JSON on standard output; no judge is called.
fn estimate(
    args: &GradeArgs,
    grader: &Grader,
    total: usize,
    done: &HashSet<String>,
) -> Result<(), Failure> {
    let (items, skipped_done, skipped_no_response) = pending_items(args, done)?;
    let judges = grader.committee.estimate(&items);
    let sum = |f: fn(&crate::committee::estimate::JudgeEstimate) -> u64| -> u64 {
        judges.iter().map(f).sum()
    };
    let cost: f64 = judges.iter().map(|j| j.cost_usd).sum();
    let doc = serde_json::json!({
        "items": items.len(),
        "skipped": {"already_done": skipped_done, "without_response": skipped_no_response},
        "judges": judges,
        "total": {
            "calls": sum(|j| j.calls),
            "input_tokens": sum(|j| j.input_tokens),
            "cached_input_tokens": sum(|j| j.cached_input_tokens),
            "output_tokens": sum(|j| j.output_tokens),
            "cost_usd": cost,
        },
        "assumptions": {
            "output_tokens_per_criterion": grader.committee.output_tokens_per_criterion(),
            "chars_per_token": 4,
            "escalations": "not included",
        }
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{doc:#}").map_err(|e| Failure::Runtime(anyhow::anyhow!("{e}")))?;
    let _ = writeln!(
        std::io::stderr(),
        "tribunal: estimate for {} of {total} items: {} judge calls, ${cost:.4}; no judge was called",
        items.len(),
        sum(|j| j.calls)
    );
    Ok(())
}

/// Second pass over the input: the items still to grade, and how many were skipped as
/// already done or without a response (parsed items are held in memory; streaming them
/// for very large files is future work).
fn pending_items(
    args: &GradeArgs,
    done: &HashSet<String>,
) -> Result<(Vec<Item>, usize, usize), Failure> {
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
    Ok((items, skipped_done, skipped_no_response))
}

async fn grade_all(
    args: &GradeArgs,
    grader: Arc<Grader>,
    total: usize,
    done: HashSet<String>,
    scores: &mut Vec<(String, ExampleScore)>,
) -> Result<RunTally, Failure> {
    let (items, skipped_done, skipped_no_response) = pending_items(args, &done)?;
    let mut tally = RunTally {
        skipped_no_response,
        ..RunTally::default()
    };
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
    let mut abstentions = 0usize;
    // Admission: with --concurrency, at most that many items; by default, items while
    // their calls fit the committee's call budget (an item bigger than the whole budget
    // still runs, alone). The budget semaphore is fair, so items start in input order.
    let cap = args
        .concurrency
        .map_or(usize::MAX, |c| usize::try_from(c).unwrap_or(usize::MAX));
    let admission = Arc::new(crate::committee::CallBudget::of(&grader.committee));
    let by_budget = args.concurrency.is_none();
    let batch = args.batch;
    let mut stream = futures::stream::iter(items.into_iter().enumerate().map(|(seq, item)| {
        let grader = Arc::clone(&grader);
        let admission = Arc::clone(&admission);
        async move {
            let _permit = if by_budget {
                admission.admit(&grader.committee, &item).await
            } else {
                None
            };
            // Inside a batch scope, batch judges send the item's calls in batch files.
            let r = if batch {
                crate::judge::batch::scope(None, grader.grade(&item)).await
            } else {
                grader.grade(&item).await
            };
            (seq, item.case.id, r)
        }
    }))
    .buffer_unordered(cap);
    // Reports finish in any order; each waits here until every earlier one is written,
    // so the output keeps input order without a slow item blocking the ones after it.
    let mut next = 0usize;
    let mut waiting: std::collections::BTreeMap<usize, (String, Result<_, _>)> =
        std::collections::BTreeMap::new();
    while let Some((seq, id, result)) = stream.next().await {
        waiting.insert(seq, (id, result));
        while let Some((id, result)) = waiting.remove(&next) {
            next += 1;
            let line = match result {
                Ok(report) => {
                    tally.graded += 1;
                    tally.policies.insert(report.policy);
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
                    tally.failed += 1;
                    if tally.first_failure.is_none() {
                        tally.first_failure = Some((id.clone(), e.to_string()));
                    }
                    crate::grader::failed_item_json(&id, &e)
                }
            };
            writeln!(out, "{line}").map_err(|e| anyhow::anyhow!("writing reports: {e}"))?;
            bar.inc(1);
            let usage = super::shared::Usage::of(&grader);
            let (calls, tokens) = (usage.calls, usage.input_tokens + usage.output_tokens);
            let hits = grader
                .committee
                .cache
                .stats
                .memory_hits
                .load(Ordering::Relaxed);
            #[expect(clippy::cast_precision_loss, reason = "display only")]
            let rate = calls as f64 / started.elapsed().as_secs_f64().max(1e-3);
            #[expect(clippy::cast_precision_loss, reason = "display only")]
            let usd = usage.cost_micro_usd as f64 / 1e6;
            bar.set_message(format!(
            "{rate:.0} calls/s  {hits} cache hits  {abstentions} abstentions  {tokens} tokens  ${usd:.4}"
        ));
        }
    }
    out.flush()
        .map_err(|e| anyhow::anyhow!("writing reports: {e}"))?;
    bar.finish_and_clear();
    // Ballots of failed items abstained too: count them from the judges' tallies,
    // which see every abstained ballot, not only those of reports.
    let abstained: u64 = grader
        .committee
        .members
        .iter()
        .map(|m| &m.client)
        .chain(grader.committee.escalation.iter())
        .flat_map(|c| c.abstentions())
        .map(|(_, n, _)| n)
        .sum();
    let abstained = abstained.max(abstentions as u64);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "tribunal: {total} items: {} graded, {} failed, {skipped_done} already done, {skipped_no_response} skipped without a response{}, {abstained} abstained ballots, {:.1}s",
        tally.graded,
        tally.failed,
        if skipped_no_response > 0 {
            no_response_hint(args.use_reference)
        } else {
            ""
        },
        started.elapsed().as_secs_f64()
    );
    Ok(tally)
}
