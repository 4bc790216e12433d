"""An in-process OpenAI-compatible judge for the Python tests: deterministic verdicts from the prompt.

The rule is simple enough to predict in a test: a criterion is met when its last word
appears in the response under evaluation; a criterion containing UNJUDGEABLE is
refused (the judge abstains, so the committee loses quorum on it and the item is
incomplete). It reads tribunal's own prompt layout (judge-prompts/v1/binary.jinja:
"# Response under evaluation" then "# Criterion").
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Tuple


def verdict(prompt: str) -> Tuple[str, Any]:
    """("refusal", text) or ("met", bool) for one rendered user prompt."""
    response, _, after = prompt.partition("# Criterion")
    response = response.partition("# Response under evaluation")[2]
    # The criterion is the first non-empty line under its heading ("[+5] text");
    # the template's closing instruction follows it.
    criterion = next((line for line in after.splitlines() if line.strip()), "")
    if "UNJUDGEABLE" in criterion:
        return "refusal", "I can't help with that."
    words = re.findall(r"[a-z]+", criterion.lower())
    last = words[-1] if words else ""
    return "met", bool(last) and last in response.lower()


class _Handler(BaseHTTPRequestHandler):
    calls = 0
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (http.server's spelling)
        length = int(self.headers.get("content-length", "0"))
        body: Dict[str, Any] = json.loads(self.rfile.read(length))
        with _Handler.lock:
            _Handler.calls += 1
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []) if m.get("role") == "user")
        kind, value = verdict(prompt)
        message: Dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if kind == "refusal":
            message["refusal"] = value
        else:
            message["content"] = json.dumps({"explanation": "mock rule: last word of the criterion", "criteria_met": value})
        payload = json.dumps(
            {
                "id": "chatcmpl-mock",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "mock"),
                "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: pytest shows the test's own output on failure, not every judge call.
        pass


class MockJudge:
    """Serves on 127.0.0.1 (port 0) in a daemon thread; `url` ends in /v1 as tribunal's config expects."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def calls(self) -> int:
        return _Handler.calls

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
