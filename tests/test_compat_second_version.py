"""The compatibility tests (tests/compat) on a second transformers version, in the same pytest run.

scripts/compat_env.sh makes (once; later runs reuse it) a venv beside this interpreter's holding only
that transformers and what it needs that this venv lacks; the rest comes from this venv. The version is
the lowest supported one, 4.56.2 (RAGMODELS_COMPAT_TRANSFORMERS overrides it; RAGMODELS_COMPAT_VENV the
venv's folder, by default <this venv>/compat/transformers-VERSION). The test skips only when
that venv cannot be made (no package registry); a failure inside it fails this test with its output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VERSION = os.environ.get("RAGMODELS_COMPAT_TRANSFORMERS", "4.56.2")


def test_compat_tests_pass_on_a_second_transformers_version():
    dest = Path(os.environ.get("RAGMODELS_COMPAT_VENV") or Path(sys.prefix) / "compat" / f"transformers-{VERSION}")
    made = subprocess.run(
        ["bash", str(ROOT / "scripts" / "compat_env.sh"), VERSION, str(dest), sys.prefix],
        capture_output=True, text=True, timeout=600,
    )
    if made.returncode != 0:
        pytest.skip(f"could not make a transformers {VERSION} venv: {made.stderr.strip()[-500:]}")
    python = made.stdout.strip().splitlines()[-1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=-rs", str(ROOT / "tests" / "compat")],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=env,
    )
    assert run.returncode == 0, f"tests/compat on transformers {VERSION}:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}"
