"""Run the examples and record what the documentation's gallery shows (``make gallery``).

Each ``examples/<name>.py`` runs at its full size in a fresh temporary directory (the
examples write their figures to the working directory), timed from start to exit. The
figures it wrote are copied to ``docs/gallery/<name>/`` and a record ``docs/gallery/<name>.json``
keeps the run time, the date, the machine and its load average when the run started, the end
of the printed output and a hash of the example's source. The docs build (``docs/hooks.py``)
turns these committed records into the gallery page, so ``make docs`` never re-runs the
examples (some take a minute or two). Run it on a quiet machine: the times are wall times.

    python docs/gen_gallery.py                 # every example
    python docs/gen_gallery.py deq_digits      # only these
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
GALLERY = ROOT / "docs" / "gallery"
OUTPUT_LINES = 30  # the end of the printed output kept in the record


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def machine() -> str:
    return (
        f"{platform.machine()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPU cores ({platform.system()})"
    )


def run(example: Path) -> dict[str, object]:
    name = example.stem
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    env.pop("CVXIMPLICIT_SMOKE", None)
    with tempfile.TemporaryDirectory(prefix=f"gallery-{name}-") as tmp:
        load = os.getloadavg()[0]  # other work on the machine slows the run down
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(example)], cwd=tmp, env=env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(f"{example.name} failed (exit {proc.returncode})")
        figures = sorted(p.name for p in Path(tmp).glob("*.png"))
        shutil.rmtree(GALLERY / name, ignore_errors=True)
        (GALLERY / name).mkdir(parents=True)
        for fig in figures:
            shutil.copyfile(Path(tmp) / fig, GALLERY / name / fig)
    lines = proc.stdout.rstrip().splitlines()
    return {
        "example": f"examples/{example.name}",
        "source_sha256": source_hash(example),
        "seconds": round(seconds, 1),
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "cpu_count": os.cpu_count(),
        "load_average": round(load, 1),
        "figures": figures,
        "output": "\n".join(lines[-OUTPUT_LINES:]),
        "output_truncated": len(lines) > OUTPUT_LINES,
    }


def main(names: list[str]) -> None:
    GALLERY.mkdir(exist_ok=True)
    examples = sorted(EXAMPLES.glob("*.py"))
    if names:
        examples = [p for p in examples if p.stem in names]
        missing = set(names) - {p.stem for p in examples}
        if missing:
            raise SystemExit(f"no such example: {', '.join(sorted(missing))}")
    for example in examples:
        print(f"running {example.name} ...", flush=True)
        record = run(example)
        out = GALLERY / f"{example.stem}.json"
        out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"  {record['seconds']} s, figures: {record['figures'] or 'none'}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
