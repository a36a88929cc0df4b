"""The README's code runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_code():
    assert python_blocks()


def test_readme_code_runs(capsys):
    """Blocks run in order in one namespace, as a reader would paste them."""
    namespace = {"__name__": "__readme__"}
    for block in python_blocks():
        exec(compile(block, str(README), "exec"), namespace)
    assert "status" in capsys.readouterr().out
