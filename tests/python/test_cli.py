"""`tribunal grade` and live `tribunal calibrate` print a table to a terminal and JSON to a pipe.

The terminal is a real pseudo-terminal (`pty`), so the binary's own `is_terminal`
check decides, exactly as for a person at a shell. Both commands run on the built-in
simulated committee (no config, no network).
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path
from typing import List

from conftest import BIN, ROOT


def on_terminal(args: List[str], cwd: Path) -> str:
    """Runs the binary with standard output on a pseudo-terminal; returns what it printed there."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([str(BIN), *args], cwd=cwd, stdout=follower, stderr=subprocess.PIPE)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            # Linux raises EIO on the leader once the last follower is closed.
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode(errors="replace")
    return b"".join(chunks).decode().replace("\r\n", "\n")


def piped(args: List[str], cwd: Path) -> str:
    done = subprocess.run([str(BIN), *args], cwd=cwd, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode()


def items(path: Path) -> Path:
    rubric = {
        "format": "rubric.v1", "id": "cli", "version": 1, "title": "CLI",
        "criteria": [{"id": "a", "text": "Advises rest.", "points": 5, "tags": ["axis:care"]},
                     {"id": "b", "text": "Advises fluids.", "points": 5}],
    }
    rows = [
        {"format": "case.v1", "case_id": f"c{i}", "response": f"Rest and drink fluids ({i}).",
         "conversation": [{"role": "user", "content": "I have a cold."}], "rubric": rubric}
        for i in range(6)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_grade_prints_the_score_table_to_a_terminal(tmp_path: Path) -> None:
    src = items(tmp_path / "in.jsonl")
    out = on_terminal(["grade", str(src), "-o", str(tmp_path / "a.jsonl"), "--by-tag"], tmp_path)
    lines = out.strip().splitlines()
    # The run ends with its headline: included / excluded, overall, SIMULATED last.
    assert lines[-1].startswith("SIMULATED"), out
    assert lines[-2].startswith("overall ") and lines[-2].endswith(", n 6"), out
    assert lines[-3].startswith("6 examples: 6 included, 0 excluded"), out
    # Six distinct responses x two criteria, none of them cached: 12 calls per judge.
    judges = [line for line in lines if line.startswith("judge ")]
    assert len(judges) == 3 and all(" 12 calls, " in line for line in judges), out
    # --by-tag lists the tag rows, above the headline.
    assert any(line.split() and line.split()[0] == "axis:care" for line in lines[:-3]), out
    # The table says what the JSON says.
    doc = json.loads(piped(["grade", str(src), "-o", str(tmp_path / "b.jsonl")], tmp_path))
    assert doc["overall"]["n"] == 6
    assert f"{doc['overall']['score']:.4f}" == lines[-2].split()[1]


def test_grade_prints_json_when_asked_even_on_a_terminal(tmp_path: Path) -> None:
    src = items(tmp_path / "in.jsonl")
    out = on_terminal(["grade", str(src), "-o", str(tmp_path / "a.jsonl"), "--format", "json"], tmp_path)
    assert set(json.loads(out)) >= {"overall", "tags", "examples", "excluded", "seed", "resamples"}


def test_live_calibrate_prints_its_table_to_a_terminal_and_json_to_a_pipe(tmp_path: Path) -> None:
    src = str(ROOT / "calibration/examples/triage-live.jsonl")
    out = on_terminal(["calibrate", src, "--resamples", "50"], tmp_path)
    assert out.strip().splitlines()[-1].startswith("judge calls "), out
    doc = json.loads(piped(["calibrate", src, "--resamples", "50"], tmp_path))
    assert doc["run"]["items_run"] > 0
    # The offline report keeps its JSON default on a terminal (scripts read it).
    offline = on_terminal(["calibrate", str(ROOT / "calibration/examples/triage-small.jsonl"), "--offline"], tmp_path)
    assert json.loads(offline)["set"]
