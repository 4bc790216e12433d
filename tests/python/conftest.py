"""Real `tribunal serve` processes for the Python tests, started once per session.

Two servers, both on port 0 with SQLite in a temp dir (the approach of
.ci/schemathesis): `keyed` has a simulated committee and API keys of every role, one
of them with a 60 requests-per-minute quota for the Retry-After tests; `mocked` has a
committee of two OpenAI-compatible judges pointed at the in-process `MockJudge`, so
verdicts (and abstentions) are predictable. The binary is $TRIBUNAL_BIN or
target/debug/tribunal. Each server runs in its own process group and is killed when
the session ends, even when a test fails.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))

from mock_judge import MockJudge  # noqa: E402

BIN = Path(os.environ.get("TRIBUNAL_BIN", ROOT / "target/debug/tribunal"))

SIM_COMMITTEE = """
[judges.sim-a]
provider = "sim"
model = "sim-a"
[judges.sim-a.sim]
seed = 1
[judges.sim-b]
provider = "sim"
model = "sim-b"
[judges.sim-b.sim]
seed = 2
[judges.sim-c]
provider = "sim"
model = "sim-c"
[judges.sim-c.sim]
seed = 3
[committee]
members = ["sim-a", "sim-b", "sim-c"]
consensus = "majority"
quorum = 2
"""

KEYS = """
[[server.api_keys]]
name = "root"
role = "admin"
key_env = "PYTEST_ADMIN_KEY"
[[server.api_keys]]
name = "team"
key_env = "PYTEST_CLIENT_KEY"
[[server.api_keys]]
name = "doc"
role = "annotator"
key_env = "PYTEST_ANNOTATOR_KEY"
[[server.api_keys]]
name = "throttled"
key_env = "PYTEST_THROTTLED_KEY"
requests_per_minute = 60
"""


def need(module: str, install: str) -> object:
    """Imports `module`; skips without it on a laptop, fails under CI=true (CI installs it)."""
    if os.environ.get("CI") == "true":
        import importlib

        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"pip install {install}")


def mock_committee(url: str) -> str:
    judges = "".join(
        f'[judges.{n}]\nprovider = "openai"\nbase_url = "{url}"\nmodel = "{n}"\nmax_parse_retries = 0\n'
        f"price_input_per_mtok = 1.0\nprice_output_per_mtok = 2.0\n"
        for n in ("mock-a", "mock-b")
    )
    return judges + '[committee]\nmembers = ["mock-a", "mock-b"]\nconsensus = "majority"\nquorum = 1\n'


@dataclass
class Server:
    url: str
    grpc: str
    keys: Dict[str, str]


def _start(workdir: Path, config: str, env: Dict[str, str]) -> Iterator[Server]:
    if not BIN.is_file():
        pytest.fail(f"{BIN} is not built (cargo build, or set TRIBUNAL_BIN)")
    workdir.mkdir(parents=True)
    (workdir / "tribunal.toml").write_text(config)
    err = open(workdir / "err.log", "w+")
    proc = subprocess.Popen(
        [str(BIN), "serve", "-c", "tribunal.toml", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"],
        cwd=workdir,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=err,
        start_new_session=True,
    )
    try:
        http = grpc = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and http is None:
            log = (workdir / "err.log").read_text()
            # The whole pattern, up to the `;` after the gRPC address, so a line read
            # while the server is still writing it cannot yield a truncated address.
            found = re.search(r"^tribunal serving HTTP on (\S+) and gRPC on ([^\s;]+);", log, re.MULTILINE)
            if found:
                http, grpc = found.group(1), found.group(2)
                break
            if proc.poll() is not None:
                pytest.fail(f"tribunal serve exited {proc.returncode}:\n{log}")
            time.sleep(0.05)
        if http is None or grpc is None:
            pytest.fail(f"tribunal serve did not start in 30s:\n{(workdir / 'err.log').read_text()}")
        yield Server(url=http, grpc=grpc, keys=env)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        err.close()


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tribunal-pytest-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def keyed(tmp_root: Path) -> Iterator[Server]:
    keys = {
        name: f"py-{name}-{secrets.token_hex(8)}"
        for name in ("PYTEST_ADMIN_KEY", "PYTEST_CLIENT_KEY", "PYTEST_ANNOTATOR_KEY", "PYTEST_THROTTLED_KEY")
    }
    yield from _start(tmp_root / "keyed", SIM_COMMITTEE + KEYS, keys)


@pytest.fixture(scope="session")
def mock_judge() -> Iterator[MockJudge]:
    judge = MockJudge()
    yield judge
    judge.close()


@pytest.fixture(scope="session")
def mocked(tmp_root: Path, mock_judge: MockJudge) -> Iterator[Server]:
    yield from _start(tmp_root / "mocked", mock_committee(mock_judge.url), {})
