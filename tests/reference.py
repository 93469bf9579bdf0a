"""Run the reference library (webknossos) in its own venv and get JSON or files back.

webknossos 4.3.3 cannot be installed beside napari 0.9 (rich pins conflict), so it lives in
a separate venv: ``$NAPARI_KNOSSOS_REF_PYTHON``, else ``.venv-ref/bin/python`` at the repo
root. Tests using it are skipped when it is absent, unless ``NAPARI_KNOSSOS_REQUIRE_REFERENCE``
is set (CI sets it), in which case they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def reference_python() -> str | None:
    cand = os.environ.get("NAPARI_KNOSSOS_REF_PYTHON") or str(ROOT / ".venv-ref" / "bin" / "python")
    return cand if Path(cand).exists() else None


def require_reference() -> str:
    py = reference_python()
    if py is None:
        msg = "reference venv with webknossos not found (set NAPARI_KNOSSOS_REF_PYTHON or run .ci/setup)"
        if os.environ.get("NAPARI_KNOSSOS_REQUIRE_REFERENCE"):
            pytest.fail(msg)
        pytest.skip(msg)
    return py


def run_reference(code: str, *args: str, timeout: float = 300) -> dict:
    """Run ``code`` with the reference interpreter; it must print one JSON object last."""
    py = require_reference()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [py, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    if proc.returncode != 0:
        raise AssertionError(f"reference script failed:\n{proc.stderr[-4000:]}")
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    return json.loads(lines[-1]) if lines else {}
