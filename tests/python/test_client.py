"""tribunal_client against a real `tribunal serve`: every method, typed errors, Retry-After.

Each response goes through `typecheck.conforms` with the type the method is annotated
to return, so a field the server sends but the generated models lack (or the other
way round) fails here, not in a user's type checker.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import List

import httpx
import pytest

import tribunal_client as tc
from tribunal_client import models as m
from typecheck import conforms

ROOT = Path(__file__).resolve().parents[2]


def rubric(rid: str = "py-fever", version: int = 1) -> m.Rubric:
    return {
        "format": "rubric.v1",
        "id": rid,
        "version": version,
        "title": "Fever triage",
        "criteria": [
            {"id": "see-doctor", "text": "Advises seeing a doctor.", "points": 7},
            {"id": "fluids", "text": "Recommends drinking fluids.", "points": 3},
        ],
    }


def case(case_id: str, response: str, rub: "m.Rubric | str | None" = None) -> m.CaseRow:
    return {
        "format": "case.v1",
        "case_id": case_id,
        "conversation": [{"role": "user", "content": "I have had a fever of 39C for three days."}],
        "response": response,
        "rubric": rub if rub is not None else rubric(),
        "tags": ["triage"],
    }


@pytest.fixture
def admin(keyed) -> tc.Client:
    with tc.Client(keyed.url, keyed.keys["PYTEST_ADMIN_KEY"]) as client:
        yield client


def test_health_and_judges(admin: tc.Client) -> None:
    conforms(admin.health(), m.Health)
    judges = conforms(admin.judges(), m.Judges)
    assert [j["name"] for j in judges["judges"]] == ["sim-a", "sim-b", "sim-c"]
    assert judges["simulated"] is True and judges["committee"]["quorum"] == 2


def test_grade_returns_a_typed_report(admin: tc.Client) -> None:
    report = conforms(admin.grade(case("g-1", "See a doctor and drink fluids.")), m.GradeReport)
    assert report["case_id"] == "g-1"
    assert report["rubric"] == "py-fever@1"
    assert sorted(c["id"] for c in report["criteria"]) == ["fluids", "see-doctor"]
    assert report["simulated"] is True


def test_url_and_key_from_the_environment(keyed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIBUNAL_URL", keyed.url)
    monkeypatch.setenv("TRIBUNAL_API_KEY", keyed.keys["PYTEST_CLIENT_KEY"])
    with tc.Client() as client:
        assert client.url == keyed.url
        conforms(client.grade(case("env-1", "Drink fluids.")), m.GradeReport)


def test_rubrics(admin: tc.Client) -> None:
    created = conforms(admin.create_rubric(rubric("py-stored", 1)), m.Rubric)
    assert created["id"] == "py-stored"
    # Storing the identical version again is accepted (200), not a conflict.
    conforms(admin.create_rubric(rubric("py-stored", 1)), m.Rubric)
    assert conforms(admin.rubric("py-stored"), m.Rubric)["version"] == 1
    assert conforms(admin.rubric("py-stored", 1), m.Rubric)["title"] == "Fever triage"
    listed = conforms(admin.rubrics(), m.RubricList)
    assert "py-stored" in [r["id"] for r in listed["rubrics"]]
    ok = conforms(admin.validate_rubric(rubric()), m.RubricValidation)
    assert ok["valid"] is True and ok["problems"] == []
    bad = conforms(admin.validate_rubric({**rubric(), "criteria": []}), m.RubricValidation)
    assert bad["valid"] is False and bad["problems"]
    changed = rubric("py-stored", 1)
    changed["title"] = "Another title"
    with pytest.raises(tc.Conflict) as info:
        admin.create_rubric(changed)
    assert info.value.kind == "conflict" and info.value.status == 409


def test_job_from_an_iterable_follow_results_and_summary(admin: tc.Client) -> None:
    items = (case(f"j-{i}", r) for i, r in enumerate(["See a doctor.", "Drink fluids.", "Rest."]))
    job = conforms(admin.submit_job(items, seed=7), m.JobStatus)
    assert job["total"] == 3
    lines = list(admin.results(job["id"], follow=True))
    assert sorted(line["case_id"] for line in lines) == ["j-0", "j-1", "j-2"]
    for line in lines:
        conforms(line, m.GradeReport)
    done = conforms(admin.job(job["id"]), m.JobStatus)
    assert done["state"] == "done" and done["done"] == 3 and done["failed"] == 0
    summary = conforms(admin.summary(job["id"]), m.JobSummary)
    assert summary["seed"] == 7 and summary["overall"]["n"] == 3
    # The summary's per-example scores are the reports' scores.
    by_id = {line["case_id"]: line for line in lines}
    for ex in summary["examples"]:
        assert ex["final_score"] == by_id[ex["prompt_id"]]["score"]["final_score"]
    # Without follow, the stored results come back the same.
    assert sorted(l["case_id"] for l in admin.results(job["id"])) == ["j-0", "j-1", "j-2"]
    assert job["id"] in [j["id"] for j in conforms(admin.jobs(limit=50), m.JobList)["jobs"]]


def test_job_from_a_jsonl_file_and_a_shared_rubric(admin: tc.Client, tmp_path: Path) -> None:
    admin.create_rubric(rubric("py-shared", 1))
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(case(f"f-{i}", "See a doctor.", "py-shared@1")) + "\n" for i in range(4)))
    job = admin.submit_job(path)
    assert job["total"] == 4
    assert admin.wait(job["id"], timeout=60)["done"] == 4
    shared_items = [{k: v for k, v in case(f"s-{i}", "Drink fluids.").items() if k != "rubric"} for i in range(2)]
    shared = admin.submit_job(shared_items, rubric="py-shared@1", seed=3)  # type: ignore[arg-type]
    assert admin.wait(shared["id"], timeout=60)["state"] == "done"
    assert admin.summary(shared["id"])["seed"] == 3


def test_a_bad_jsonl_line_is_named(admin: tc.Client, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(case("ok", "x")) + "\n" + json.dumps({**case("bad", "x"), "rubric": 7}) + "\n")
    with pytest.raises(tc.InvalidInput) as info:
        admin.submit_job(path)
    err = info.value
    assert err.kind == "invalid_input" and err.status == 400
    assert err.field is not None and "rubric" in err.field
    assert err.request_id


def test_cancel(admin: tc.Client) -> None:
    job = admin.submit_job([case(f"c-{i}", "Rest.") for i in range(50)])
    cancelled = conforms(admin.cancel_job(job["id"]), m.JobStatus)
    assert cancelled["state"] in ("cancelling", "cancelled", "done")
    assert admin.wait(job["id"], timeout=60)["state"] in ("cancelled", "done")


def test_typed_errors_carry_kind_field_and_request_id(keyed, admin: tc.Client) -> None:
    with pytest.raises(tc.NotFound) as nf:
        admin.job("no-such-job")
    assert (nf.value.kind, nf.value.status) == ("not_found", 404)
    assert nf.value.request_id and nf.value.request_id in str(nf.value)
    with pytest.raises(tc.InvalidInput) as bad:
        admin.grade({**case("e-1", "x"), "conversation": "not a list"})  # type: ignore[typeddict-item]
    assert bad.value.field == "conversation"
    with tc.Client(keyed.url, None) as anonymous, pytest.raises(tc.Unauthenticated) as unauth:
        anonymous.judges()
    assert unauth.value.kind == "unauthenticated"
    with tc.Client(keyed.url, keyed.keys["PYTEST_ANNOTATOR_KEY"]) as annotator, pytest.raises(tc.Forbidden) as forb:
        annotator.grade(case("e-2", "x"))
    assert forb.value.kind == "forbidden" and isinstance(forb.value, tc.TribunalError)
    # The kind is said once, though the server's message starts with it.
    assert str(forb.value).startswith("forbidden: ") and "forbidden: forbidden" not in str(forb.value)


def test_calibration_upload_labels_run_and_report(keyed) -> None:
    with tc.Client(keyed.url, keyed.keys["PYTEST_CLIENT_KEY"]) as client:
        uploaded = conforms(
            client.upload_calibration_set(path=ROOT / "calibration/examples/triage-live.jsonl", name="py-triage"),
            m.CalibrationSetDoc,
        )
        set_id = uploaded["id"]
        assert conforms(client.calibration_set(set_id), m.CalibrationSetDoc)["name"] == "py-triage"
        assert set_id in [s["id"] for s in conforms(client.calibration_sets(), m.CalibrationSetList)["sets"]]
        from_text = client.upload_calibration_set(
            (ROOT / "calibration/examples/sleep-advice.csv").read_text(),
            format="csv",
            name="py-sleep",
            csv={"map": "id=row_id,category=topic,criterion=claim,case=question,response=answer,human:alice=label_a,human:bob=label_b"},
        )
        assert from_text["name"] == "py-sleep"
    with tc.Client(keyed.url, keyed.keys["PYTEST_ANNOTATOR_KEY"]) as annotator:
        written = conforms(
            # An annotator's label is its own: the rater is its key's name ("doc").
            annotator.add_labels(set_id, [{"item": "l0", "rater": "doc", "kind": "human", "value": True}]),
            m.LabelsWritten,
        )
        assert written["added"] == 1
        history = conforms(annotator.label_history(set_id, item="l0"), m.LabelHistory)
        # The set's categories are "false" / "true": labels are stored as categories.
        assert [(e["item"], e["rater"], e["value"], e["previous"]) for e in history["history"]] == [("l0", "doc", "true", None)]
    with tc.Client(keyed.url, keyed.keys["PYTEST_CLIENT_KEY"]) as client:
        run = conforms(client.start_calibration_run(set_id, seed=1, resamples=50), m.CalibrationRunDoc)
        finished = conforms(client.wait_calibration_run(run["id"], timeout=120), m.CalibrationRunDoc)
        assert finished["report"] is not None
        conforms(finished["report"], m.AgreementReport)
        page = conforms(client.disagreements(run["id"], limit=5), m.Disagreements)
        assert len(page["items"]) <= 5


def drain(client: tc.Client) -> tc.RateLimited:
    """Spends the throttled key's burst (60 requests) and returns the 429 that follows."""
    for _ in range(200):
        try:
            client.jobs()
        except tc.RateLimited as e:
            return e
    raise AssertionError("200 requests on a 60-a-minute key were never rate limited")


def test_rate_limited_without_retries_raises_with_retry_after(keyed) -> None:
    with tc.Client(keyed.url, keyed.keys["PYTEST_THROTTLED_KEY"], max_retries=0) as client:
        err = drain(client)
    assert err.kind == "rate_limited" and err.status == 429 and err.request_id
    assert isinstance(err, tc.TribunalError) and client.retries == 0
    # 60 a minute: once the burst is spent, the next request is allowed within a second.
    assert err.retry_after == 1


def test_rate_limited_is_retried_after_retry_after(keyed) -> None:
    with tc.Client(keyed.url, keyed.keys["PYTEST_THROTTLED_KEY"], max_retries=0) as spender:
        drain(spender)
    with tc.Client(keyed.url, keyed.keys["PYTEST_THROTTLED_KEY"], max_retries=5) as client:
        started = time.monotonic()
        for _ in range(3):
            conforms(client.jobs(), m.JobList)
        elapsed = time.monotonic() - started
    # The burst is spent, so each of the three requests met a 429 first; each was
    # waited out for its Retry-After (1 s) and none surfaced.
    assert client.retries >= 2
    assert elapsed >= 0.9 * client.retries


def test_a_wait_longer_than_max_retry_wait_is_raised(keyed) -> None:
    with tc.Client(keyed.url, keyed.keys["PYTEST_THROTTLED_KEY"], max_retries=3, max_retry_wait=0.5) as client:
        err = drain(client)
    assert err.retry_after == 1 and client.retries == 0


def test_async_client(keyed) -> None:
    async def main() -> List[str]:
        async with tc.AsyncClient(keyed.url, keyed.keys["PYTEST_CLIENT_KEY"]) as client:
            reports = await asyncio.gather(*(client.grade(case(f"a-{i}", "See a doctor.")) for i in range(3)))
            for r in reports:
                conforms(r, m.GradeReport)
            job = await client.submit_job([case(f"aj-{i}", "Drink fluids.") for i in range(3)])
            ids = [line["case_id"] async for line in client.results(job["id"], follow=True)]
            conforms(await client.summary(job["id"]), m.JobSummary)
            with pytest.raises(tc.NotFound):
                await client.job("missing")
            return sorted(ids)

    assert asyncio.run(main()) == ["aj-0", "aj-1", "aj-2"]


def test_models_are_what_the_generator_makes_from_the_live_document(keyed) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate_models", ROOT / "clients/python/generate_models.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    doc = httpx.get(f"{keyed.url}/openapi.json").json()
    committed = (ROOT / "clients/python/src/tribunal_client/models.py").read_text()
    assert gen.render(doc) == committed, (
        "clients/python/src/tribunal_client/models.py is stale: run "
        "`python clients/python/generate_models.py http://127.0.0.1:8080/openapi.json` against this build"
    )
    # Every schema is a model, and nothing else is.
    assert sorted(doc["components"]["schemas"]) == sorted(m.__all__)
