"""`Client` and `AsyncClient`: tribunal's HTTP API with typed bodies, typed errors and 429 retries.

Both clients describe each operation once, as a `_Call` built by `_Ops`, and differ
only in how they send it, so the sync and async surfaces cannot drift apart. Bodies are
encoded to bytes before the first attempt, so a retried request resends exactly what
the first one sent (an iterator of items is read once).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote
from typing import (
    Any,
    AsyncIterator,
    Dict,
    Iterable,
    Iterator,
    List,
    Literal,
    Mapping,
    Optional,
    TypedDict,
    Union,
    cast,
)

import httpx

from . import models as m
from .errors import error_from_response, retry_after_seconds

__all__ = ["Client", "AsyncClient", "FailedResult", "ResultLine", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8080"

PathLike = Union[str, "os.PathLike[str]"]


class FailedResultError(TypedDict):
    kind: m.ErrorKind
    message: str
    field: Optional[str]


class FailedResult(TypedDict):
    """A results line for an item that failed (the NDJSON stream is not in /openapi.json)."""

    case_id: str
    error: FailedResultError


# One line of `GET /v1/jobs/{id}/results`: a report, or the failure of one item.
ResultLine = Union[m.GradeReport, FailedResult]


@dataclass
class _Call:
    method: str
    path: str
    params: Dict[str, Any] = field(default_factory=dict)
    content: Optional[bytes] = None
    content_type: Optional[str] = None


def _json(body: object) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _params(**kw: Any) -> Dict[str, Any]:
    """Query parameters without the ones left out; booleans spelled as the server reads them."""
    return {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in kw.items() if v is not None}


def _segment(value: Union[str, int]) -> str:
    # Ids travel in the path, so one with a slash or a space must be escaped, not split.
    return quote(str(value), safe="")


def _read_jsonl(path: PathLike) -> bytes:
    """A JSONL file's bytes, sent as NDJSON; the server validates every line and names the bad ones."""
    return Path(path).read_bytes()


class _Ops:
    """Every operation as a `_Call`: the one place that knows routes and body shapes."""

    @staticmethod
    def grade(item: m.Item) -> _Call:
        return _Call("POST", "/v1/grade", content=_json(item), content_type="application/json")

    @staticmethod
    def submit_job(
        items: Union[Iterable[m.Item], PathLike],
        rubric: Optional[str],
        seed: Optional[int],
    ) -> _Call:
        if isinstance(items, (str, os.PathLike)):
            if rubric is not None:
                raise ValueError("rubric: give it inside each line of the JSONL file (`rubric`: \"id@version\")")
            return _Call(
                "POST",
                "/v1/jobs",
                _params(seed=seed),
                content=_read_jsonl(items),
                content_type="application/x-ndjson",
            )
        listed = list(items)
        body: m.JobSubmission
        if rubric is not None:
            shared: m.SharedRubricJob = {"rubric": rubric, "items": cast(List[Dict[str, Any]], listed)}
            if seed is not None:
                shared["seed"] = seed
            body, params = shared, {}
        else:
            body, params = listed, _params(seed=seed)
        return _Call("POST", "/v1/jobs", params, content=_json(body), content_type="application/json")

    @staticmethod
    def job(job_id: str) -> _Call:
        return _Call("GET", f"/v1/jobs/{_segment(job_id)}")

    @staticmethod
    def jobs(limit: Optional[int], after: Optional[str], owner: Optional[str]) -> _Call:
        return _Call("GET", "/v1/jobs", _params(limit=limit, after=after, owner=owner))

    @staticmethod
    def cancel_job(job_id: str) -> _Call:
        return _Call("DELETE", f"/v1/jobs/{_segment(job_id)}")

    @staticmethod
    def results(job_id: str, follow: bool) -> _Call:
        return _Call("GET", f"/v1/jobs/{_segment(job_id)}/results", _params(follow=follow))

    @staticmethod
    def summary(job_id: str) -> _Call:
        return _Call("GET", f"/v1/jobs/{_segment(job_id)}/summary")

    @staticmethod
    def create_rubric(rubric: m.Rubric) -> _Call:
        return _Call("POST", "/v1/rubrics", content=_json(rubric), content_type="application/json")

    @staticmethod
    def validate_rubric(rubric: Mapping[str, Any]) -> _Call:
        return _Call("POST", "/v1/rubrics/validate", content=_json(rubric), content_type="application/json")

    @staticmethod
    def rubric(rubric_id: str, version: Optional[int]) -> _Call:
        if version is None:
            return _Call("GET", f"/v1/rubrics/{_segment(rubric_id)}")
        return _Call("GET", f"/v1/rubrics/{_segment(rubric_id)}/versions/{_segment(version)}")

    @staticmethod
    def rubrics() -> _Call:
        return _Call("GET", "/v1/rubrics")

    @staticmethod
    def judges() -> _Call:
        return _Call("GET", "/v1/judges")

    @staticmethod
    def health() -> _Call:
        return _Call("GET", "/healthz")

    @staticmethod
    def upload_calibration_set(
        content: Union[str, PathLike, None],
        path: Optional[PathLike],
        fmt: m.SetFormat,
        name: Optional[str],
        csv: Optional[m.CsvUpload],
    ) -> _Call:
        if (content is None) == (path is None):
            raise ValueError("upload_calibration_set: give exactly one of `content` (the text) or `path` (a file)")
        text = Path(path).read_text(encoding="utf-8") if path is not None else str(content)
        body: m.NewCalibrationSet = {"content": text, "format": fmt}
        if name is not None:
            body["name"] = name
        if csv is not None:
            body["csv"] = csv
        return _Call("POST", "/v1/calibration/sets", content=_json(body), content_type="application/json")

    @staticmethod
    def calibration_set(set_id: str) -> _Call:
        return _Call("GET", f"/v1/calibration/sets/{_segment(set_id)}")

    @staticmethod
    def calibration_sets(owner: Optional[str]) -> _Call:
        return _Call("GET", "/v1/calibration/sets", _params(owner=owner))

    @staticmethod
    def add_labels(set_id: str, labels: Iterable[m.NewLabel]) -> _Call:
        body: m.NewLabels = {"labels": list(labels)}
        return _Call(
            "POST",
            f"/v1/calibration/sets/{_segment(set_id)}/labels",
            content=_json(body),
            content_type="application/json",
        )

    @staticmethod
    def label_history(set_id: str, item: Optional[str]) -> _Call:
        return _Call("GET", f"/v1/calibration/sets/{_segment(set_id)}/labels", _params(item=item))

    @staticmethod
    def start_calibration_run(
        set_id: str, seed: Optional[int], resamples: Optional[int], confidence: Optional[float]
    ) -> _Call:
        body: m.NewCalibrationRun = {"set": set_id}
        if seed is not None:
            body["seed"] = seed
        if resamples is not None:
            body["resamples"] = resamples
        if confidence is not None:
            body["confidence"] = confidence
        return _Call("POST", "/v1/calibration/runs", content=_json(body), content_type="application/json")

    @staticmethod
    def calibration_run(run_id: str) -> _Call:
        return _Call("GET", f"/v1/calibration/runs/{_segment(run_id)}")

    @staticmethod
    def disagreements(run_id: str, limit: Optional[int], after: Optional[int]) -> _Call:
        return _Call(
            "GET", f"/v1/calibration/runs/{_segment(run_id)}/disagreements", _params(limit=limit, after=after)
        )


_FINISHED = ("done", "cancelled")


class _Base:
    def __init__(
        self,
        url: Optional[str],
        api_key: Optional[str],
        timeout: float,
        max_retries: int,
        max_retry_wait: float,
    ) -> None:
        self.url = (url or os.environ.get("TRIBUNAL_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("TRIBUNAL_API_KEY")
        if max_retries < 0:
            raise ValueError(f"max_retries: {max_retries} is negative; use 0 to never retry")
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.timeout = timeout
        # How many 429 answers this client has waited out and retried (for monitoring).
        self.retries = 0

    def _headers(self) -> Dict[str, str]:
        headers = {"accept": "application/json, application/x-ndjson"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers

    def _request(self, http: Union[httpx.Client, httpx.AsyncClient], call: _Call) -> httpx.Request:
        headers = self._headers()
        if call.content_type:
            headers["content-type"] = call.content_type
        return http.build_request(call.method, call.path, params=call.params, content=call.content, headers=headers)

    def _wait_for(self, response: httpx.Response, attempt: int) -> Optional[float]:
        """Seconds to wait before retrying `response`, or None to raise it.

        Only 429 is retried: it is the one answer that says the same request will
        succeed later, and `Retry-After` says when. A wait longer than
        `max_retry_wait` is raised instead, so a caller is never parked for minutes.
        """
        if response.status_code != 429 or attempt >= self.max_retries:
            return None
        wait = retry_after_seconds(response)
        if wait is None:
            wait = min(2.0**attempt, self.max_retry_wait)
        if wait > self.max_retry_wait:
            return None
        return wait


class Client(_Base):
    """Synchronous tribunal client.

    `url` and `api_key` default to `TRIBUNAL_URL` and `TRIBUNAL_API_KEY` (then
    http://127.0.0.1:8080 and no key). A 429 is retried up to `max_retries` times after
    the server's `Retry-After`; every other failure raises a `TribunalError` subclass.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        api_key: Optional[str] = None,
        *,
        timeout: float = 120.0,
        max_retries: int = 3,
        max_retry_wait: float = 60.0,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        super().__init__(url, api_key, timeout, max_retries, max_retry_wait)
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: _Call, stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            response = self._http.send(self._request(self._http, call), stream=stream)
            if response.is_success:
                return response
            response.read()
            response.close()
            wait = self._wait_for(response, attempt)
            if wait is None:
                raise error_from_response(response)
            attempt += 1
            self.retries += 1
            time.sleep(wait)

    def _json(self, call: _Call) -> Any:
        return self._send(call).json()

    def health(self) -> m.Health:
        return cast(m.Health, self._json(_Ops.health()))

    def grade(self, item: m.Item) -> m.GradeReport:
        """Grades one item (a `case.v1` row or a HealthBench row with `response`)."""
        return cast(m.GradeReport, self._json(_Ops.grade(item)))

    def submit_job(
        self,
        items: Union[Iterable[m.Item], PathLike],
        *,
        rubric: Optional[str] = None,
        seed: Optional[int] = None,
    ) -> m.JobStatus:
        """Submits items (an iterable, or a JSONL file's path) as one job; `rubric` ("id@version") is shared."""
        return cast(m.JobStatus, self._json(_Ops.submit_job(items, rubric, seed)))

    def job(self, job_id: str) -> m.JobStatus:
        return cast(m.JobStatus, self._json(_Ops.job(job_id)))

    def jobs(self, *, limit: Optional[int] = None, after: Optional[str] = None, owner: Optional[str] = None) -> m.JobList:
        return cast(m.JobList, self._json(_Ops.jobs(limit, after, owner)))

    def cancel_job(self, job_id: str) -> m.JobStatus:
        return cast(m.JobStatus, self._json(_Ops.cancel_job(job_id)))

    def wait(self, job_id: str, *, timeout: float = 600.0, poll: float = 0.25) -> m.JobStatus:
        """Polls the job until it is done or cancelled; raises `TimeoutError` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.job(job_id)
            if status["state"] in _FINISHED:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {status['state']} after {timeout}s")
            time.sleep(poll)

    def results(self, job_id: str, follow: bool = False) -> Iterator[ResultLine]:
        """The job's results in completion order; with `follow`, waits for the rest until the job ends.

        The request is sent here, so an unknown job raises `NotFound` at the call, not
        at the first `next()`.
        """
        return self._lines(self._send(_Ops.results(job_id, follow), stream=True))

    @staticmethod
    def _lines(response: httpx.Response) -> Iterator[ResultLine]:
        try:
            for line in response.iter_lines():
                if line.strip():
                    yield cast(ResultLine, json.loads(line))
        finally:
            response.close()

    def summary(self, job_id: str) -> m.JobSummary:
        return cast(m.JobSummary, self._json(_Ops.summary(job_id)))

    def create_rubric(self, rubric: m.Rubric) -> m.Rubric:
        return cast(m.Rubric, self._json(_Ops.create_rubric(rubric)))

    def validate_rubric(self, rubric: Mapping[str, Any]) -> m.RubricValidation:
        return cast(m.RubricValidation, self._json(_Ops.validate_rubric(rubric)))

    def rubric(self, rubric_id: str, version: Optional[int] = None) -> m.Rubric:
        return cast(m.Rubric, self._json(_Ops.rubric(rubric_id, version)))

    def rubrics(self) -> m.RubricList:
        return cast(m.RubricList, self._json(_Ops.rubrics()))

    def judges(self) -> m.Judges:
        return cast(m.Judges, self._json(_Ops.judges()))

    def upload_calibration_set(
        self,
        content: Optional[str] = None,
        *,
        path: Optional[PathLike] = None,
        format: m.SetFormat = "calibration.v1",
        name: Optional[str] = None,
        csv: Optional[m.CsvUpload] = None,
    ) -> m.CalibrationSetDoc:
        """Uploads a calibration set from its text (`content`) or a file (`path`)."""
        return cast(m.CalibrationSetDoc, self._json(_Ops.upload_calibration_set(content, path, format, name, csv)))

    def calibration_set(self, set_id: str) -> m.CalibrationSetDoc:
        return cast(m.CalibrationSetDoc, self._json(_Ops.calibration_set(set_id)))

    def calibration_sets(self, *, owner: Optional[str] = None) -> m.CalibrationSetList:
        return cast(m.CalibrationSetList, self._json(_Ops.calibration_sets(owner)))

    def add_labels(self, set_id: str, labels: Iterable[m.NewLabel]) -> m.LabelsWritten:
        return cast(m.LabelsWritten, self._json(_Ops.add_labels(set_id, labels)))

    def label_history(self, set_id: str, *, item: Optional[str] = None) -> m.LabelHistory:
        return cast(m.LabelHistory, self._json(_Ops.label_history(set_id, item)))

    def start_calibration_run(
        self,
        set_id: str,
        *,
        seed: Optional[int] = None,
        resamples: Optional[int] = None,
        confidence: Optional[float] = None,
    ) -> m.CalibrationRunDoc:
        return cast(m.CalibrationRunDoc, self._json(_Ops.start_calibration_run(set_id, seed, resamples, confidence)))

    def calibration_run(self, run_id: str) -> m.CalibrationRunDoc:
        return cast(m.CalibrationRunDoc, self._json(_Ops.calibration_run(run_id)))

    def wait_calibration_run(self, run_id: str, *, timeout: float = 600.0, poll: float = 0.25) -> m.CalibrationRunDoc:
        """Polls the run until its report is stored (or its job was cancelled)."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.calibration_run(run_id)
            if run.get("report") is not None or run["state"] == "cancelled":
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"calibration run {run_id} still {run['state']} after {timeout}s")
            time.sleep(poll)

    def disagreements(self, run_id: str, *, limit: Optional[int] = None, after: Optional[int] = None) -> m.Disagreements:
        return cast(m.Disagreements, self._json(_Ops.disagreements(run_id, limit, after)))


class AsyncClient(_Base):
    """`Client` for asyncio: the same methods, awaited; `results` is an async iterator."""

    def __init__(
        self,
        url: Optional[str] = None,
        api_key: Optional[str] = None,
        *,
        timeout: float = 120.0,
        max_retries: int = 3,
        max_retry_wait: float = 60.0,
        transport: Optional[httpx.AsyncBaseTransport] = None,
    ) -> None:
        super().__init__(url, api_key, timeout, max_retries, max_retry_wait)
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, call: _Call, stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            response = await self._http.send(self._request(self._http, call), stream=stream)
            if response.is_success:
                return response
            await response.aread()
            await response.aclose()
            wait = self._wait_for(response, attempt)
            if wait is None:
                raise error_from_response(response)
            attempt += 1
            self.retries += 1
            await asyncio.sleep(wait)

    async def _json(self, call: _Call) -> Any:
        return (await self._send(call)).json()

    async def health(self) -> m.Health:
        return cast(m.Health, await self._json(_Ops.health()))

    async def grade(self, item: m.Item) -> m.GradeReport:
        return cast(m.GradeReport, await self._json(_Ops.grade(item)))

    async def submit_job(
        self,
        items: Union[Iterable[m.Item], PathLike],
        *,
        rubric: Optional[str] = None,
        seed: Optional[int] = None,
    ) -> m.JobStatus:
        return cast(m.JobStatus, await self._json(_Ops.submit_job(items, rubric, seed)))

    async def job(self, job_id: str) -> m.JobStatus:
        return cast(m.JobStatus, await self._json(_Ops.job(job_id)))

    async def jobs(
        self, *, limit: Optional[int] = None, after: Optional[str] = None, owner: Optional[str] = None
    ) -> m.JobList:
        return cast(m.JobList, await self._json(_Ops.jobs(limit, after, owner)))

    async def cancel_job(self, job_id: str) -> m.JobStatus:
        return cast(m.JobStatus, await self._json(_Ops.cancel_job(job_id)))

    async def wait(self, job_id: str, *, timeout: float = 600.0, poll: float = 0.25) -> m.JobStatus:
        deadline = time.monotonic() + timeout
        while True:
            status = await self.job(job_id)
            if status["state"] in _FINISHED:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {status['state']} after {timeout}s")
            await asyncio.sleep(poll)

    async def results(self, job_id: str, follow: bool = False) -> AsyncIterator[ResultLine]:
        response = await self._send(_Ops.results(job_id, follow), stream=True)
        try:
            async for line in response.aiter_lines():
                if line.strip():
                    yield cast(ResultLine, json.loads(line))
        finally:
            await response.aclose()

    async def summary(self, job_id: str) -> m.JobSummary:
        return cast(m.JobSummary, await self._json(_Ops.summary(job_id)))

    async def create_rubric(self, rubric: m.Rubric) -> m.Rubric:
        return cast(m.Rubric, await self._json(_Ops.create_rubric(rubric)))

    async def validate_rubric(self, rubric: Mapping[str, Any]) -> m.RubricValidation:
        return cast(m.RubricValidation, await self._json(_Ops.validate_rubric(rubric)))

    async def rubric(self, rubric_id: str, version: Optional[int] = None) -> m.Rubric:
        return cast(m.Rubric, await self._json(_Ops.rubric(rubric_id, version)))

    async def rubrics(self) -> m.RubricList:
        return cast(m.RubricList, await self._json(_Ops.rubrics()))

    async def judges(self) -> m.Judges:
        return cast(m.Judges, await self._json(_Ops.judges()))

    async def upload_calibration_set(
        self,
        content: Optional[str] = None,
        *,
        path: Optional[PathLike] = None,
        format: m.SetFormat = "calibration.v1",
        name: Optional[str] = None,
        csv: Optional[m.CsvUpload] = None,
    ) -> m.CalibrationSetDoc:
        return cast(
            m.CalibrationSetDoc, await self._json(_Ops.upload_calibration_set(content, path, format, name, csv))
        )

    async def calibration_set(self, set_id: str) -> m.CalibrationSetDoc:
        return cast(m.CalibrationSetDoc, await self._json(_Ops.calibration_set(set_id)))

    async def calibration_sets(self, *, owner: Optional[str] = None) -> m.CalibrationSetList:
        return cast(m.CalibrationSetList, await self._json(_Ops.calibration_sets(owner)))

    async def add_labels(self, set_id: str, labels: Iterable[m.NewLabel]) -> m.LabelsWritten:
        return cast(m.LabelsWritten, await self._json(_Ops.add_labels(set_id, labels)))

    async def label_history(self, set_id: str, *, item: Optional[str] = None) -> m.LabelHistory:
        return cast(m.LabelHistory, await self._json(_Ops.label_history(set_id, item)))

    async def start_calibration_run(
        self,
        set_id: str,
        *,
        seed: Optional[int] = None,
        resamples: Optional[int] = None,
        confidence: Optional[float] = None,
    ) -> m.CalibrationRunDoc:
        return cast(
            m.CalibrationRunDoc, await self._json(_Ops.start_calibration_run(set_id, seed, resamples, confidence))
        )

    async def calibration_run(self, run_id: str) -> m.CalibrationRunDoc:
        return cast(m.CalibrationRunDoc, await self._json(_Ops.calibration_run(run_id)))

    async def wait_calibration_run(
        self, run_id: str, *, timeout: float = 600.0, poll: float = 0.25
    ) -> m.CalibrationRunDoc:
        deadline = time.monotonic() + timeout
        while True:
            run = await self.calibration_run(run_id)
            if run.get("report") is not None or run["state"] == "cancelled":
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"calibration run {run_id} still {run['state']} after {timeout}s")
            await asyncio.sleep(poll)

    async def disagreements(
        self, run_id: str, *, limit: Optional[int] = None, after: Optional[int] = None
    ) -> m.Disagreements:
        return cast(m.Disagreements, await self._json(_Ops.disagreements(run_id, limit, after)))
