"""README's "From Python" section, run: its Python blocks, in order, against a real server.

The blocks are concatenated into one script (later blocks use names from earlier
ones, as a reader would in one session) and run in a fresh interpreter from the
repository root with TRIBUNAL_URL / TRIBUNAL_API_KEY set, so the README's own claim
that those variables are enough is tested too. `.ci/python-package` also type-checks
the same script with mypy --strict.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def readme_python() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## From Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```$", section, re.DOTALL | re.MULTILINE)
    assert len(blocks) >= 4, f"expected the install, grade, job, calibration and Inspect blocks; found {len(blocks)}"
    return "\n".join(blocks)


def test_readme_python_blocks_run(keyed, tmp_path: Path) -> None:
    # The per-sample rubric recipe, on a synthetic row in HealthBench's shape (no
    # benchmark rows in the repository), its rubrics made by the CLI as the README says.
    rows = tmp_path / "hb.jsonl"
    rows.write_text(json.dumps({
        "prompt_id": "hb-1",
        "prompt": [{"role": "user", "content": "I have had a fever of 39 C for two days."}],
        "rubrics": [
            {"criterion": "Advises seeing a clinician if the fever persists.", "points": 5, "tags": ["axis:completeness"]},
            {"criterion": "Recommends antibiotics without an examination.", "points": -6, "tags": ["axis:accuracy"]},
        ],
    }) + "\n")
    rubrics = tmp_path / "hb.rubrics.jsonl"
    bin_ = os.environ.get("TRIBUNAL_BIN", str(ROOT / "target/debug/tribunal"))
    made = subprocess.run([bin_, "rubric", "from-healthbench", str(rows)], capture_output=True, timeout=60)
    assert made.returncode == 0, made.stderr.decode()
    rubrics.write_bytes(made.stdout)
    script = tmp_path / "readme.py"
    script.write_text(
        readme_python()
        + f"\nhb = healthbench_task({str(rows)!r}, {str(rubrics)!r})\n"
        + "print('healthbench samples', len(hb.dataset), [s.metadata['rubric']['criteria'][0]['points'] for s in hb.dataset if s.metadata])\n"
    )
    env = {
        **os.environ,
        "TRIBUNAL_URL": keyed.url,
        "TRIBUNAL_API_KEY": keyed.keys["PYTEST_CLIENT_KEY"],
        # The README labels under the caller's key name (conftest names that key "team").
        "TRIBUNAL_KEY_NAME": "team",
        # Inspect writes its logs under ./logs by default; keep the checkout clean.
        "INSPECT_LOG_DIR": str(tmp_path / "logs"),
    }
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, timeout=300)
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert "invalid_input conversation " in out
    assert "done" in out.split()
    assert "committee" in out.split()
    assert "healthbench samples 1 [5.0]" in out, out


if __name__ == "__main__":
    # `python tests/python/test_readme.py` prints the script (for mypy in .ci/python-package).
    sys.stdout.write(readme_python())
