"""A real Inspect AI eval scored by `tribunal_scorer`, checked against what tribunal stored.

The solver is Inspect's built-in `mockllm/model`, answering "Default output from
mockllm/model" to every sample. Its outputs carry their token usage: without one,
mockllm counts input tokens with tiktoken, which downloads its BPE file on first use,
and tests are offline. The judges are the in-process `MockJudge`, whose rule (a
criterion is met when its last word is in the response; UNJUDGEABLE is refused) makes
each sample's outcome known in advance: a half score, a full score, an incomplete
item (one criterion abstained) and an undefined score (no positive points). The last
two must be NaN in the log, never 0, and so left out of Inspect's metrics (counted as
unscored samples instead).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import need

need("inspect_ai", "'./clients/python[inspect]'")

from inspect_ai import Task, eval as inspect_eval  # noqa: E402
from inspect_ai.dataset import Sample  # noqa: E402
from inspect_ai.log import read_eval_log  # noqa: E402
from inspect_ai.model import ModelOutput, ModelUsage, get_model  # noqa: E402
from inspect_ai.solver import generate  # noqa: E402

import tribunal_client as tc  # noqa: E402
from tribunal_client.scorer import tribunal_scorer  # noqa: E402


def rubric(rid: str, criteria: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"format": "rubric.v1", "id": rid, "version": 1, "title": rid, "criteria": criteria}


SAMPLES = [
    ("half", rubric("half", [{"id": "a", "text": "Mentions output.", "points": 5},
                             {"id": "b", "text": "Mentions banana.", "points": 5}]), 0.5, "scored"),
    ("full", rubric("full", [{"id": "a", "text": "Mentions mockllm.", "points": 5}]), 1.0, "scored"),
    ("incomplete", rubric("incomplete", [{"id": "a", "text": "Mentions output.", "points": 5},
                                         {"id": "b", "text": "Is UNJUDGEABLE output.", "points": 5}]), None, "incomplete"),
    ("undefined", rubric("undefined", [{"id": "a", "text": "Mentions banana.", "points": -5}]), None, "undefined"),
]


def test_inspect_eval_scores_equal_the_stored_reports(mocked, tmp_path: Path) -> None:
    task = Task(
        dataset=[
            Sample(id=sid, input="Say something.", metadata={"rubric": rub}) for sid, rub, _, _ in SAMPLES
        ],
        solver=[generate()],
        scorer=tribunal_scorer(url=mocked.url),
    )
    answer = ModelOutput.from_content(model="mockllm/model", content="Default output from mockllm/model")
    answer.usage = ModelUsage(input_tokens=10, output_tokens=6, total_tokens=16)
    model = get_model("mockllm/model", custom_outputs=[answer] * len(SAMPLES))
    (log,) = inspect_eval(task, model=model, log_dir=str(tmp_path), display="none")
    assert log.status == "success", log.error
    # Read the log back from disk: what a user would look at, NaN included.
    logged = read_eval_log(log.location)
    assert logged.samples is not None and len(logged.samples) == len(SAMPLES)
    expected = {sid: (value, status) for sid, _, value, status in SAMPLES}
    with tc.Client(mocked.url) as client:
        for sample in logged.samples:
            assert sample.scores is not None
            score = sample.scores["tribunal_scorer"]
            value, status = expected[str(sample.id)]
            meta = score.metadata or {}
            assert meta["status"] == status, (sample.id, meta)
            (stored,) = list(client.results(meta["job_id"]))
            assert "error" not in stored
            assert stored["case_id"] == meta["case_id"] == f"{sample.id}:1"
            final = stored["score"]["final_score"]
            if value is None:
                assert isinstance(score.value, float) and math.isnan(score.value), (sample.id, score.value)
                assert stored["score"]["incomplete"] or final is None
            else:
                assert score.value == final == value, (sample.id, score.value, final)
            assert meta["cost_usd"] == stored["usage"]["cost_usd"]
            assert meta["abstentions"] == stored["abstentions"]
            for c in stored["criteria"]:
                assert c["id"] in (score.explanation or "")
        incomplete = next(s for s in logged.samples if s.id == "incomplete")
        assert incomplete.scores["tribunal_scorer"].metadata["abstained_criteria"] == ["b"]
    (figures,) = logged.results.scores
    assert figures.metrics["mean"].value == pytest.approx(0.75)
    assert (figures.scored_samples, figures.unscored_samples) == (2, 2)
