"""README's "From Python" section, run: its Python blocks, in order, against a real server.

The blocks are concatenated into one script (later blocks use names from earlier
ones, as a reader would in one session) and run in a fresh interpreter from the
repository root with TRIBUNAL_URL / TRIBUNAL_API_KEY set, so the README's own claim
that those variables are enough is tested too. `.ci/python-package` also type-checks
the same script with mypy --strict.
"""

from __future__ import annotations

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
    script = tmp_path / "readme.py"
    script.write_text(readme_python())
    env = {
        **os.environ,
        "TRIBUNAL_URL": keyed.url,
        "TRIBUNAL_API_KEY": keyed.keys["PYTEST_CLIENT_KEY"],
        # Inspect writes its logs under ./logs by default; keep the checkout clean.
        "INSPECT_LOG_DIR": str(tmp_path / "logs"),
    }
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, timeout=300)
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert "invalid_input conversation " in out
    assert "done" in out.split()
    assert "committee" in out.split()


if __name__ == "__main__":
    # `python tests/python/test_readme.py` prints the script (for mypy in .ci/python-package).
    sys.stdout.write(readme_python())
