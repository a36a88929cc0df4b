"""Every example runs (smoke tests with the examples' own small sizes)."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path, monkeypatch, tmp_path):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("CVXIMPLICIT_SMOKE", "1")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(path), run_name="__main__")
    assert os.getcwd() == str(tmp_path)


def test_core_is_framework_free():
    """``import cvximplicit`` imports neither torch nor jax beyond what CVXPY itself imports
    (CVXPY imports jax when it is installed)."""
    import subprocess
    import sys

    code = (
        "import sys, cvxpy; before = set(sys.modules); import cvximplicit; "
        "new = set(sys.modules) - before; "
        "print(sorted(m for m in new if m.split('.')[0] in ('torch', 'jax', 'jaxlib')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
