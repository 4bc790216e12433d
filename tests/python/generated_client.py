#!/usr/bin/env python3
"""Drives a running tribunal server through a client generated from its /openapi.json.

Usage: generated_client.py BASE_URL  (run by `.ci/python-client`, which starts the
server, generates the `tribunal_client` package with openapi-python-client and
installs it). Everything here goes through the generated package: its `Client`, the
`api.default.*` operations and the `models.*` classes; no raw dicts or HTTP calls.
Also checks that nothing the server sends lands in a model's `additional_properties`,
i.e. that the document declares every field it returns. Response enums are checked as
generated `Enum` members by value, so renaming an enum component does not break this.
"""

import enum
import sys
import time

import attrs

from tribunal_client import Client
from tribunal_client.api.default import get_job, grade, job_summary, submit_job
from tribunal_client.models import (
    Ballot,
    CaseFormat,
    CaseRow,
    CriterionResult,
    ErrorBody,
    ErrorDetail,
    ExampleScore,
    FigureEntry,
    GradeReport,
    GradeReportTags,
    JobStatus,
    JobSummary,
    Message,
    MessageRole,
    Rubric,
    RubricCriterion,
    RubricFormat,
    SummaryJob,
    Usage,
)

JOB_TIMEOUT_S = 60.0


def fever_rubric() -> Rubric:
    return Rubric(
        format_=RubricFormat.RUBRIC_V1,
        id="fever",
        version=1,
        title="Fever triage",
        criteria=[
            RubricCriterion(id="see-doctor", text="Advises seeing a clinician.", points=7),
            RubricCriterion(id="fluids", text="Recommends drinking fluids.", points=3),
            RubricCriterion(
                id="no-antibiotics",
                text="Suggests antibiotics without an examination.",
                points=-5,
            ),
        ],
    )


def fever_case(case_id: str, response: str) -> CaseRow:
    return CaseRow(
        format_=CaseFormat.CASE_V1,
        case_id=case_id,
        conversation=[
            Message(role=MessageRole.SYSTEM, content="You are a careful medical assistant."),
            Message(role=MessageRole.USER, content="I have had a fever of 39C for three days."),
        ],
        response=response,
        rubric=fever_rubric(),
        tags=["triage"],
    )


def undeclared(value, path="$"):
    """Paths of parsed models that carry keys the schema does not declare."""
    found = []
    if attrs.has(type(value)):
        names = [f.name for f in attrs.fields(type(value))]
        extra = getattr(value, "additional_properties", {})
        if names == ["additional_properties"]:
            # A map model (`additionalProperties: <schema>`): its keys are the data.
            for k, v in extra.items():
                found += undeclared(v, f"{path}[{k!r}]")
            return found
        if extra:
            found.append(f"{path} ({type(value).__name__}): {sorted(extra)}")
        for name in names:
            if name != "additional_properties":
                found += undeclared(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += undeclared(v, f"{path}[{i}]")
    return found


def check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


def expect(resp, status: int, model: type, op: str):
    body = resp.content.decode(errors="replace")[:500]
    check(resp.status_code == status, f"{op}: HTTP {resp.status_code}, wanted {status}: {body}")
    check(
        isinstance(resp.parsed, model),
        f"{op}: parsed into {type(resp.parsed).__name__}, wanted {model.__name__}: {body}",
    )
    extra = undeclared(resp.parsed)
    check(not extra, f"{op}: response fields missing from the schema: {extra}")
    return resp.parsed


def is_enum(v, value=None) -> bool:
    """A generated enum member (a StrEnum), with `value` if given."""
    return isinstance(v, enum.Enum) and (value is None or v.value == value)


def is_verdict(v) -> bool:
    return v is None or isinstance(v, (bool, float, int))


def step_grade(client: Client) -> None:
    item = fever_case("fever-1", "See a doctor today and drink plenty of fluids.")
    report = expect(grade.sync_detailed(client=client, body=item), 200, GradeReport, "POST /v1/grade")
    check(is_enum(report.format_, "grade_report.v1"), f"format is {report.format_!r}")
    check(report.case_id == "fever-1", f"case_id is {report.case_id!r}")
    check(report.rubric == "fever@1", f"rubric is {report.rubric!r}")
    check(isinstance(report.simulated, bool) and isinstance(report.degraded, bool), "flags not bool")
    ids = [c.id for c in report.criteria]
    check(sorted(ids) == ["fluids", "no-antibiotics", "see-doctor"], f"criteria ids {ids}")
    for c in report.criteria:
        check(isinstance(c, CriterionResult), f"criterion is {type(c).__name__}")
        check(is_enum(c.consensus), f"{c.id}: consensus {c.consensus!r}")
        check(is_verdict(c.verdict), f"{c.id}: verdict {c.verdict!r}")
        check(c.ballots and all(isinstance(b, Ballot) for b in c.ballots), f"{c.id}: ballots")
        check(all(is_verdict(b.verdict) for b in c.ballots), f"{c.id}: a ballot verdict")
    score = report.score
    check(isinstance(score, ExampleScore), f"score is {type(score).__name__}")
    check(isinstance(score.final_score, float), f"final_score is {score.final_score!r}")
    check(0.0 <= score.final_score <= 1.0, f"final_score {score.final_score} not in [0, 1]")
    check(isinstance(report.tags, GradeReportTags), f"tags is {type(report.tags).__name__}")
    check(isinstance(report.tags.additional_properties.get("triage"), float), "tags['triage']")
    check(isinstance(report.usage, Usage) and isinstance(report.elapsed_ms, int), "usage/elapsed_ms")
    verdicts = ", ".join(f"{c.id}={c.verdict}" for c in report.criteria)
    print(
        f"grade: GradeReport {report.case_id} rubric {report.rubric} "
        f"final_score={score.final_score:.3f} simulated={report.simulated} [{verdicts}]"
    )


def step_job(client: Client) -> str:
    items = [
        fever_case("fever-a", "See a doctor and drink fluids."),
        fever_case("fever-b", "Take antibiotics you have at home."),
        fever_case("fever-c", "Rest, drink water, and call your GP if it lasts."),
    ]
    job = expect(
        submit_job.sync_detailed(client=client, body=items, seed=7), 202, JobStatus, "POST /v1/jobs"
    )
    check(job.total == 3, f"total is {job.total}")
    check(is_enum(job.state), f"state is {job.state!r}")
    print(f"submit: JobStatus {job.id} state={job.state.value} total={job.total}")

    deadline = time.monotonic() + JOB_TIMEOUT_S
    polls = 0
    while True:
        job = expect(get_job.sync_detailed(client=client, id=job.id), 200, JobStatus, "GET /v1/jobs/{id}")
        polls += 1
        check(is_enum(job.state), f"state is {job.state!r}")
        if job.state.value == "done":
            break
        check(job.state.value != "cancelled", "the job was cancelled")
        check(time.monotonic() < deadline, f"job not done after {JOB_TIMEOUT_S}s: {job.state.value}")
        time.sleep(0.2)
    check(job.done == 3 and job.failed == 0 and job.pending == 0, f"counts {job}")
    check(isinstance(job.finished_at, int), f"finished_at is {job.finished_at!r}")
    print(f"poll: JobStatus {job.id} done after {polls} poll(s): done={job.done} failed={job.failed}")
    return job.id


def step_summary(client: Client, job_id: str) -> None:
    summary = expect(
        job_summary.sync_detailed(client=client, id=job_id), 200, JobSummary, "GET /v1/jobs/{id}/summary"
    )
    check(len(summary.examples) == 3, f"{len(summary.examples)} examples")
    check(all(isinstance(e, ExampleScore) for e in summary.examples), "examples not ExampleScore")
    got = sorted(e.prompt_id for e in summary.examples)
    check(got == ["fever-a", "fever-b", "fever-c"], f"example ids {got}")
    overall = summary.overall
    check(isinstance(overall, FigureEntry), f"overall is {type(overall).__name__}")
    check(isinstance(overall.score, float), f"overall.score is {overall.score!r}")
    check(overall.n == 3, f"overall.n is {overall.n}")
    check(isinstance(summary.job, SummaryJob) and summary.job.id == job_id, "summary.job")
    check(is_enum(summary.job.state, "done"), f"summary.job.state {summary.job.state!r}")
    check(summary.seed == 7, f"seed is {summary.seed}")
    print(
        f"summary: JobSummary {job_id} examples={len(summary.examples)} "
        f"overall.score={overall.score:.3f} n={overall.n} seed={summary.seed}"
    )


def step_error(client: Client) -> None:
    resp = get_job.sync_detailed(client=client, id="no-such-job")
    err = expect(resp, 404, ErrorBody, "GET /v1/jobs/no-such-job")
    check(isinstance(err.error, ErrorDetail), f"error is {type(err.error).__name__}")
    check(is_enum(err.error.kind, "not_found"), f"kind is {err.error.kind!r}")
    check(isinstance(err.error.message, str) and err.error.message, "empty message")
    print(f"error: HTTP 404 ErrorBody kind={err.error.kind.value} message={err.error.message!r}")


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: generated_client.py BASE_URL", file=sys.stderr)
        return 2
    with Client(base_url=sys.argv[1], raise_on_unexpected_status=True) as client:
        step_grade(client)
        job_id = step_job(client)
        step_summary(client, job_id)
        step_error(client)
    print("generated client: all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
