"""Writing a benchmark's results: ``results/<name>.md`` and ``.json`` (and a plot)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def publish(
    name: str,
    lines: list[str],
    machine: str,
    rows: list[dict],
    quick: bool,
    plot_to: Any = None,
) -> None:
    """Write ``results/<name>.md`` (``lines``) and ``.json`` (machine and rows), and the plot
    (``plot_to(rows, path)``) if given; ``-quick`` results go to separate, ignored files."""
    RESULTS.mkdir(exist_ok=True)
    suffix = "-quick" if quick else ""
    (RESULTS / f"{name}{suffix}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"{name}{suffix}.json").write_text(
        json.dumps(dict(machine=machine, rows=rows), indent=1)
    )
    if plot_to is not None:
        plot_to(rows, RESULTS / f"{name}{suffix}.png")
    print("\n".join(lines))
