"""Inspect AI scorer that grades each sample's output against a rubric through tribunal.

Each sample becomes a one-item tribunal job (not a bare `POST /v1/grade`), so its
GradeReport is stored under a job id that the Score's metadata names: the number in
the eval log can be traced to the report and its ballots on the server.

Abstentions are not zeros. When tribunal cannot score an item (an abstained criterion
makes it `incomplete`, a rubric may leave the score undefined, or the item failed),
the Score's value is NaN and `metadata["status"]` says which. NaN was chosen over a
string such as Inspect's NOANSWER because Inspect's stock `mean()` maps NOANSWER to 0;
this scorer's metrics (`tribunal_mean`, `excluded`) skip NaN the way tribunal's own
summaries exclude such items, and a NaN left in any other metric poisons it visibly
instead of lowering it quietly.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Union, cast

from inspect_ai.scorer import Metric, SampleScore, Score, Scorer, Target, metric, scorer
from inspect_ai.solver import TaskState

from . import models as m
from ._client import AsyncClient
from .errors import TribunalError

__all__ = ["tribunal_scorer", "tribunal_mean", "excluded"]

_ROLES = {"system": "system", "user": "user", "assistant": "assistant"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


@metric
def tribunal_mean() -> Metric:
    """Mean of the scored samples; NaN (abstained, incomplete, undefined, failed) is left out."""

    def compute(scores: List[SampleScore]) -> float:
        values = [float(cast(float, s.score.value)) for s in scores if _is_number(s.score.value)]
        return sum(values) / len(values) if values else float("nan")

    return compute


@metric
def excluded() -> Metric:
    """How many samples tribunal could not score (their value is NaN)."""

    def compute(scores: List[SampleScore]) -> int:
        return sum(1 for s in scores if not _is_number(s.score.value))

    return compute


def _conversation(state: TaskState) -> List[m.Message]:
    """The turns before the graded output, in tribunal's roles (tool turns are left out)."""
    messages = list(state.messages)
    completion = state.output.completion if state.output else ""
    if messages and messages[-1].role == "assistant" and messages[-1].text == completion:
        messages = messages[:-1]
    turns: List[m.Message] = []
    for msg in messages:
        role = _ROLES.get(msg.role)
        if role is not None:
            turns.append({"role": cast(m.MessageRole, role), "content": msg.text})
    return turns


def _explanation(report: m.GradeReport) -> str:
    lines = []
    for c in report["criteria"]:
        verdict = c.get("verdict")
        shown = "abstained" if verdict is None else str(verdict).lower()
        agreement = c.get("agreement")
        agree = "" if agreement is None else f", agreement {agreement:.2f}"
        lines.append(f"{c['id']}: {shown} ({c['consensus']}{agree})")
    return "\n".join(lines)


def score_from_report(report: m.GradeReport, job_id: str) -> Score:
    """The Inspect Score for one stored GradeReport (NaN when tribunal excluded it)."""
    s = report["score"]
    final = s.get("final_score")
    if s["incomplete"]:
        status = "incomplete"
    elif final is None:
        status = "undefined"
    else:
        status = "scored"
    value = float(final) if status == "scored" and final is not None else float("nan")
    metadata: Dict[str, Any] = {
        "status": status,
        "job_id": job_id,
        "case_id": report["case_id"],
        "rubric": report["rubric"],
        "abstentions": report["abstentions"],
        "abstained_criteria": s["abstained"],
        "undefined_reason": s.get("undefined_reason"),
        "vetoed_by": s["vetoed_by"],
        "degraded": report["degraded"],
        "simulated": report["simulated"],
        "cost_usd": report["usage"]["cost_usd"],
        "usage": report["usage"],
    }
    return Score(value=value, answer=None, explanation=_explanation(report), metadata=metadata)


@scorer(metrics=[tribunal_mean(), excluded()])
def tribunal_scorer(
    rubric: Union[m.Rubric, str, None] = None,
    url: Optional[str] = None,
    api_key: Optional[str] = None,
    tags: Optional[List[str]] = None,
    timeout: float = 600.0,
) -> Scorer:
    """Grades each sample's output with tribunal's judge committee.

    `rubric` is a `rubric.v1` document or a stored rubric's "id@version"; without it
    each sample's `metadata["rubric"]` is used. `url` / `api_key` default to
    `TRIBUNAL_URL` / `TRIBUNAL_API_KEY`. The Score's value is tribunal's `final_score`
    (NaN when the item is incomplete, undefined or failed; see the module docs).
    """

    async def score(state: TaskState, target: Target) -> Score:
        chosen = rubric if rubric is not None else (state.metadata or {}).get("rubric")
        if chosen is None:
            raise ValueError(
                "tribunal_scorer: no rubric: pass rubric= (a rubric.v1 dict or \"id@version\") "
                "or put one in each sample's metadata['rubric']"
            )
        item: m.CaseRow = {
            "format": "case.v1",
            "case_id": f"{state.sample_id}#{state.epoch}",
            "conversation": _conversation(state),
            "response": state.output.completion if state.output else "",
            "rubric": cast(Union[m.Rubric, str], chosen),
        }
        if tags:
            item["tags"] = list(tags)
        async with AsyncClient(url=url, api_key=api_key) as client:
            try:
                job = await client.submit_job([item])
                await client.wait(job["id"], timeout=timeout)
                lines = [line async for line in client.results(job["id"])]
            except TribunalError as e:
                return Score(
                    value=float("nan"),
                    explanation=str(e),
                    metadata={"status": "failed", "kind": e.kind, "field": e.field, "request_id": e.request_id},
                )
        if len(lines) != 1:
            return Score(
                value=float("nan"),
                explanation=f"job {job['id']} returned {len(lines)} results, wanted 1",
                metadata={"status": "failed", "job_id": job["id"]},
            )
        line = lines[0]
        if "error" in line:
            err = cast(Dict[str, Any], line)["error"]
            return Score(
                value=float("nan"),
                explanation=f"{err.get('kind')}: {err.get('message')}",
                metadata={"status": "failed", "job_id": job["id"], "kind": err.get("kind"), "field": err.get("field")},
            )
        return score_from_report(line, job["id"])

    return score
