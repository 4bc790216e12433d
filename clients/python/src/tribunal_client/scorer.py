"""Inspect AI scorer that grades each sample's output against a rubric through tribunal.

Each sample becomes a one-item tribunal job (not a bare `POST /v1/grade`), so its
GradeReport is stored under a job id that the Score's metadata names: the number in
the eval log can be traced to the report and its ballots on the server.

Abstentions are not zeros. When tribunal cannot score an item (an abstained criterion
makes it `incomplete`, a rubric may leave the score undefined, or the item failed),
the Score's value is NaN and `metadata["status"]` says which. NaN is Inspect's own
"unscored" sentinel: it leaves such samples out of every metric and counts them in the
log's `unscored_samples`, the way tribunal's summaries exclude them. A string such as
Inspect's NOANSWER was rejected because its `value_to_float` turns NOANSWER into 0.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Dict, List, Optional, Union, cast

from inspect_ai.scorer import Score, Scorer, Target, mean, scorer, stderr
from inspect_ai.solver import TaskState

from . import models as m
from ._client import AsyncClient, ResultLine
from .errors import TribunalError

__all__ = ["tribunal_scorer", "score_from_report", "case_id"]

_ROLES = {"system": "system", "user": "user", "assistant": "assistant"}


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


async def _collect(client: AsyncClient, job_id: str) -> List[ResultLine]:
    """The job's results, streamed until it ends (one line per item)."""
    return [line async for line in client.results(job_id, follow=True)]


def case_id(sample_id: Union[str, int], epoch: int) -> str:
    """A tribunal case id for a sample and epoch: `<sample id>:<epoch>`.

    Case ids allow letters, digits and `._:-` (at most 128), so any other character of
    the sample id becomes `_`; the Score's metadata keeps the exact case id used.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", str(sample_id))[:100] or "sample"
    return f"{safe}:{epoch}"


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


@scorer(metrics=[mean(), stderr()])
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
            "case_id": case_id(state.sample_id, state.epoch),
            "conversation": _conversation(state),
            "response": state.output.completion if state.output else "",
            "rubric": cast(Union[m.Rubric, str], chosen),
        }
        if tags:
            item["tags"] = list(tags)
        async with AsyncClient(url=url, api_key=api_key) as client:
            try:
                job = await client.submit_job([item])
                lines = await asyncio.wait_for(_collect(client, job["id"]), timeout)
            except TribunalError as e:
                return Score(
                    value=float("nan"),
                    explanation=str(e),
                    metadata={"status": "failed", "kind": e.kind, "field": e.field, "request_id": e.request_id},
                )
            except asyncio.TimeoutError:
                # The job stays on the server and may still finish; this sample is unscored.
                return Score(
                    value=float("nan"),
                    explanation=f"job {job['id']} did not finish within {timeout}s",
                    metadata={"status": "failed", "kind": "timeout", "job_id": job["id"]},
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
