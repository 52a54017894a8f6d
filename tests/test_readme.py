"""Every code block of README.md runs as written: Python blocks in order in one namespace, shell blocks with bash
from the repository root (they call `.venv/bin/...`, so no activation is needed). A block whose first line says
`# not run by tests/test_readme.py: REASON` is skipped: the entry points `make demo` / `make test` (the latter
would recurse into this suite; tests/test_demo.py runs the demo) and the retraining commands (tens of minutes)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = "# not run by tests/test_readme.py"


def readme_blocks() -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block of README.md, in order."""
    return re.findall(r"^```(\w+)\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.S | re.M)


def test_readme_has_runnable_python_and_shell_blocks():
    langs = [lang for lang, code in readme_blocks() if not code.startswith(SKIP)]
    assert langs.count("python") >= 3 and langs.count("bash") >= 1
    assert {lang for lang, _ in readme_blocks()} <= {"python", "bash"}, "only python and bash blocks are run"
    skipped = "".join(code for _, code in readme_blocks() if code.startswith(SKIP))
    assert re.search(r"^make demo", skipped, re.M) and re.search(r"^make test", skipped, re.M)


@pytest.mark.slow
def test_every_readme_block_runs(tmp_path):
    namespace: dict = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the blocks write to outputs/readme/: start from nothing, as a fresh clone does (a shard folder left by an older
    # run records other settings, and the sharded sampler rightly refuses to mix runs)
    shutil.rmtree(ROOT / "outputs" / "readme", ignore_errors=True)
    for i, (lang, code) in enumerate(readme_blocks()):
        if code.startswith(SKIP):
            continue
        if lang == "python":
            exec(compile(code, f"README.md block {i}", "exec"), namespace)
        else:
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=ROOT, env=env, capture_output=True,
                                    text=True, timeout=900)
            assert result.returncode == 0, f"README.md block {i} failed:\n{code}\n{result.stderr[-3000:]}"
