"""Run cvxpylayers' own examples twice: as published, and with only the import changed.

    python examples/dropin/run_cvxpylayers_examples.py [SOURCE] [--write] [--only NAME ...]

SOURCE is a checkout of https://github.com/cvxpy/cvxpylayers or a bare git directory of it
(default: ``/work/.mirror/cvxpy+cvxpylayers/repo``); nothing of it is copied into this
repository. Each example (the PyTorch and JAX scripts and notebooks; the MLX one is left
out) is run in a fresh subprocess and a fresh working directory, once as published
("cvxpylayers") and once with its cvxpylayers import lines rewritten to cvximplicit
("cvximplicit"); everything else is the same text in both.

Notebooks are run the way Jupyter runs them: the code cells in order in one namespace, the
value of a cell's last bare expression printed, ``!``/``%`` lines dropped, figures closed
at the end of each cell, and later cells still run after a cell fails (the first failure
is the one reported). The runner makes the same small additions to both variants, listed
in the report: fixed seeds before the first cell (some examples draw unseeded random
data), a disabled console ``tqdm`` for ``tqdm.notebook`` (no Jupyter widgets here), empty
``figures/`` and ``figs/`` folders (the notebooks save figures there), animations rendered
with ``to_jshtml`` (no ffmpeg), a few scaled-down loop counts (``SCALE``) and a last cell
printing a few key values (``KEYS``).

With ``--write`` the results go to ``benchmarks/results/dropin_examples.{json,md}``; the
printed numbers of the two variants are compared cell by cell, up to the last printed
digit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE = "/work/.mirror/cvxpy+cvxpylayers/repo"
RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = ("cvxpylayers", "cvximplicit")
OUTPUT_KEPT = 20_000  # characters of each cell's output kept in the json


@dataclass
class Example:
    path: str  # inside the cvxpylayers repository
    framework: str  # "torch" or "jax"
    # (old, new, count): the same text substitution in both variants, to fit the timeout
    scale: list[tuple[str, str, int]] = field(default_factory=list)
    # expressions printed by an added last cell (the same in both variants)
    keys: list[str] = field(default_factory=list)
    # other files of the repository the example imports (written next to it)
    support: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return Path(self.path).name


T = "examples/torch/"
EXAMPLES = [
    Example(T + "torch_example.py", "torch", keys=["solution", "A_tch.grad", "b_tch.grad"]),
    Example(T + "algorithms.py", "torch"),
    Example(T + "tutorial.ipynb", "torch", keys=["test_losses[-1]", "grads[-1]", "a_tch", "b_tch"]),
    Example(T + "ReLU Layers.ipynb", "torch"),
    Example(T + "lqr.ipynb", "torch", keys=["P_sqrt"]),
    Example(
        T + "constrained_lqr.ipynb",
        "torch",
        scale=[
            (
                "lr=.1)\nlosses = []\nfor k in range(100):",
                "lr=.1)\nlosses = []\nfor k in range(10):",
                1,
            ),
            ("for k in range(10000):", "for k in range(50):", 1),
            (
                "lr=0.1)\nlosses = []\nfor k in range(100):",
                "lr=0.1)\nlosses = []\nfor k in range(2):",
                1,
            ),
        ],
        keys=["losses[-1]", "q"],
    ),
    Example(
        T + "constrained_mpc.ipynb",
        "torch",
        scale=[
            ("n_iters=1000", "n_iters=300", 1),
            ("epochs = 20\n", "epochs = 3\n", 1),
            ("epochs = 100\n", "epochs = 3\n", 1),
        ],
        keys=["val_losses", "weights_tch"],
    ),
    Example(T + "convex_approximate_dynamic_programming.ipynb", "torch", keys=["results[-1]"]),
    Example(T + "data_poisoning_attack.ipynb", "torch", keys=["a_tch", "b_tch", "Xtrain_grad[:3]"]),
    Example(T + "markowitz_tuning.ipynb", "torch"),
    Example(
        T + "monotonic_output_regression.ipynb",
        "torch",
        support=[T + "algorithms.py"],
        keys=["val_losses[-1]", "theta[:2]"],
    ),
    Example(T + "optimal_transport.ipynb", "torch"),
    Example(T + "optimizing_stiffness_constants.ipynb", "torch", keys=["k"]),
    Example(T + "Portfolio optimization with vix.ipynb", "torch"),
    Example(
        T + "resource_allocation.ipynb",
        "torch",
        support=[T + "algorithms.py"],
        keys=["val_losses[-1]", "alpha"],
    ),
    Example(
        T + "signal_denoising.ipynb",
        "torch",
        scale=[("epochs=150", "epochs=2", 1)],
        keys=["val_losses[-1]", "lambda_tch", "best_lambda", "one_param_mse"],
    ),
    Example(
        T + "supply_chain.ipynb",
        "torch",
        scale=[("epochs = 200", "epochs = 40", 1)],
        keys=["val_cost[-1]", "P_sqrt_train", "q_train"],
    ),
    Example(
        T + "vehicle.ipynb",
        "torch",
        scale=[
            ("seed=1000+k)[0] for k in range(100)]", "seed=1000+k)[0] for k in range(10)]", 2),
            ("for k in range(100):", "for k in range(10):", 1),
        ],
        keys=["losses[-1]", "P_sqrt", "q"],
    ),
    Example("examples/jax/jax_example.py", "jax", keys=["solution", "gradA", "gradb"]),
    Example(
        "examples/jax/tutorial.ipynb",
        "jax",
        keys=["test_losses[-1]", "grads[-1]", "a_tch", "b_tch", "Xtrain_grad[:3]"],
    ),
]


# --- reading the examples ---------------------------------------------------------------


def read_source(source: str, path: str) -> str:
    """A file of cvxpylayers' repository, from a checkout or a bare git directory."""
    root = Path(source)
    if (root / path).is_file():
        return (root / path).read_text(encoding="utf-8")
    out = subprocess.run(
        ["git", "-C", source, "show", f"HEAD:{path}"], capture_output=True, check=True
    )
    return out.stdout.decode("utf-8")


def source_revision(source: str) -> str:
    out = subprocess.run(
        ["git", "-C", source, "log", "-1", "--format=%h %cs %s"], capture_output=True, text=True
    )
    return out.stdout.strip() if out.returncode == 0 else "(not a git checkout)"


MAGIC = re.compile(r"^\s*[!%]")
DISPLAY_ONLY = re.compile(r"^\s*display\(.*\)\s*;?\s*$")


def code_cells(text: str, path: str) -> list[str]:
    """The code cells of a notebook (or the whole script), without IPython-only lines."""
    if path.endswith(".ipynb"):
        notebook = json.loads(text)
        cells = [
            c["source"] if isinstance(c["source"], str) else "".join(c["source"])
            for c in notebook["cells"]
            if c["cell_type"] == "code"
        ]
    else:
        cells = [text]
    cleaned = []
    for cell in cells:
        lines = [ln for ln in cell.splitlines() if not (MAGIC.match(ln) or DISPLAY_ONLY.match(ln))]
        if any(ln.strip() for ln in lines):
            cleaned.append("\n".join(lines) + "\n")
    return cleaned


IMPORTS = [
    (re.compile(r"^(\s*)from cvxpylayers\.(torch|jax) import "), r"\1from cvximplicit.\2 import "),
    (re.compile(r"^(\s*)import cvxpylayers\s*$"), r"\1import cvximplicit as cvxpylayers"),
]


def swap_imports(code: str) -> tuple[str, int]:
    """The cvxpylayers import lines rewritten to cvximplicit; nothing else changes."""
    lines, changed = [], 0
    for line in code.splitlines():
        new = line
        for pattern, repl in IMPORTS:
            new = pattern.sub(repl, new)
        if new == line and re.search(r"\b(import|from)\s+cvxpylayers\b", line):
            raise ValueError(f"an import form this runner does not rewrite: {line!r}")
        changed += new != line
        lines.append(new)
    return "\n".join(lines) + ("\n" if code.endswith("\n") else ""), changed


def apply_scale(cells: list[str], scale: list[tuple[str, str, int]]) -> list[str]:
    for old, new, count in scale:
        found = sum(c.count(old) for c in cells)
        if found != count:
            raise ValueError(f"scale {old!r}: expected {count} occurrence(s), found {found}")
        cells = [c.replace(old, new) for c in cells]
    return cells


# --- running one variant ----------------------------------------------------------------

DRIVER = Path(__file__).with_name("notebook_driver.py")


def run_variant(
    cells: list[str], files: dict[str, str], framework: str, timeout: float, log_dir: Path
) -> dict:
    with tempfile.TemporaryDirectory(prefix="dropin-") as tmp:
        work = Path(tmp)
        for folder in ("figures", "figs"):
            (work / folder).mkdir()
        for name, text in files.items():
            (work / name).write_text(text)
        (work / "_cells.json").write_text(json.dumps(cells))
        (work / "_driver.py").write_text(DRIVER.read_text())
        env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}
        # this checkout's cvximplicit, whichever one is installed
        paths = (str(work), str(ROOT), env.get("PYTHONPATH", ""))
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        log_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with open(log_dir / "stdout.txt", "w") as out, open(log_dir / "stderr.txt", "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "_driver.py", framework],
                cwd=work,
                env=env,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            try:
                proc.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                timed_out = True
        seconds = time.perf_counter() - start
        result_file = work / "_result.json"
        records = json.loads(result_file.read_text()) if result_file.exists() else []
    errors = [r for r in records if r["status"] == "error"]
    if timed_out:
        status = "timeout"
    elif proc.returncode != 0 and len(records) < len(cells):
        status = "error"
    else:
        status = "error" if errors else "ok"
    first = errors[0] if errors else None
    return {
        "status": status,
        "seconds": seconds,
        "returncode": proc.returncode,
        "cells_run": len(records),
        "cells": len(cells),
        "failed_cells": [r["cell"] for r in errors],
        "first_error": None if first is None else f"cell {first['cell']}: {first['error']}",
        "records": records,
    }


# --- comparing the two variants ---------------------------------------------------------

NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")
NOISE = re.compile(r"<[^<>]*>|0x[0-9a-fA-F]+|\bat 0x[0-9a-fA-F]+")


def numbers(text: str) -> list[tuple[float, float]]:
    """The numbers printed in ``text``, each with half a unit of its last printed digit."""
    found = []
    for token in NUMBER.findall(NOISE.sub(" ", text)):
        mantissa, _, exponent = token.lower().partition("e")
        decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
        unit = 10.0 ** (int(exponent or 0) - decimals)
        found.append((float(token), 0.5 * unit))
    return found


def compare(a: dict, b: dict) -> dict:
    """Printed numbers of the cells both variants ran alike, compared to the last digit.

    A pair differs when it differs by more than the printed digits can tell; its relative
    difference is ``|x - y| / max(|x|, |y|, 1e-3 M)`` with ``M`` the largest magnitude
    printed in that cell (so values near zero next to large ones are not amplified).
    """
    out = {"compared": 0, "beyond_print": 0, "max_rel": 0.0, "where": None, "form": []}
    by_cell = {r["cell"]: r for r in b["records"]}
    for ra in a["records"]:
        rb = by_cell.get(ra["cell"])
        if rb is None or ra["status"] != rb["status"]:
            continue
        na, nb = numbers(ra["output"]), numbers(rb["output"])
        if len(na) != len(nb):
            out["form"].append(ra["cell"])
            continue
        big = max((abs(v) for v, _ in na + nb if math.isfinite(v)), default=0.0)
        for (x, ux), (y, uy) in zip(na, nb):
            out["compared"] += 1
            if x == y or abs(x - y) <= ux + uy:
                continue
            out["beyond_print"] += 1
            rel = abs(x - y) / max(abs(x), abs(y), 1e-3 * big)
            if math.isfinite(rel) and rel > out["max_rel"]:
                out["max_rel"], out["where"] = rel, f"cell {ra['cell']}: {x:g} vs {y:g}"
    return out


KEY_LINE = """try:
    print('KEY {k} =', repr({k}))
except Exception as exc:
    print('KEY {k} = <unavailable:', type(exc).__name__ + '>')
"""


def run_example(ex: Example, source: str, timeout: float, log_root: Path) -> dict:
    cells = apply_scale(code_cells(read_source(source, ex.path), ex.path), ex.scale)
    if ex.keys:
        cells.append("".join(KEY_LINE.format(k=k) for k in ex.keys))
    support = {Path(p).name: read_source(source, p) for p in ex.support}
    entry: dict = {"example": ex.path, "framework": ex.framework, "scale": ex.scale}
    entry["keys"] = ex.keys
    for variant in VARIANTS:
        these, files, changed = cells, support, 0
        if variant == "cvximplicit":
            pairs = [swap_imports(c) for c in cells]
            these, changed = [p[0] for p in pairs], sum(p[1] for p in pairs)
            files = {}
            for name, text in support.items():
                files[name], n = swap_imports(text)
                changed += n
        log = log_root / ex.name.replace(" ", "_") / variant
        print(f"  {variant:<12}", end="", flush=True)
        result = run_variant(these, files, ex.framework, timeout, log)
        result["import_lines_changed"] = changed
        print(f"{result['status']:<8} {result['seconds']:6.1f} s  {result['first_error'] or ''}")
        entry[variant] = result
    entry["comparison"] = compare(entry["cvxpylayers"], entry["cvximplicit"])
    return entry


# --- the report -------------------------------------------------------------------------


def status_cell(result: dict) -> str:
    text = f"{result['status']}, {result['seconds']:.1f} s"
    if result["status"] == "timeout":
        text += f" (after {result['cells_run']} of {result['cells']} cells)"
    if result["first_error"]:
        text += f"<br>`{result['first_error'][:120]}`".replace("|", "\\|")
        more = len(result["failed_cells"]) - 1
        if more > 0:
            text += f" (+{more} later cells)"
    return text


def differs_cell(entry: dict) -> str:
    a, b, cmp = entry["cvxpylayers"], entry["cvximplicit"], entry["comparison"]
    parts = []
    if (a["status"], a["failed_cells"]) != (b["status"], b["failed_cells"]):
        parts.append("**status differs**")
    elif a["first_error"] != b["first_error"]:
        parts.append("error text differs")
    if cmp["compared"]:
        if cmp["beyond_print"]:
            parts.append(
                f"{cmp['beyond_print']} of {cmp['compared']} printed numbers differ beyond the "
                f"printed digits, max rel. {cmp['max_rel']:.1e} ({cmp['where']})"
            )
        else:
            parts.append(f"all {cmp['compared']} printed numbers agree to the printed digits")
    if cmp["form"]:
        parts.append(f"output of cell(s) {', '.join(map(str, cmp['form']))} differs in form")
    for who, mine, other in (("cvximplicit", b, a), ("cvxpylayers", a, b)):
        only = sorted(warnings_of(mine) - warnings_of(other))
        if only:
            shown = "; ".join(f"`{w}`" for w in only[:3])
            more = f" (+{len(only) - 3} more)" if len(only) > 3 else ""
            parts.append(f"only {who} warns: {shown}{more}".replace("|", "\\|"))
    return "; ".join(parts) if parts else "nothing compared (no cell printed numbers)"


def warnings_of(result: dict) -> set[str]:
    """The distinct warnings of a run, numbers masked (they vary from call to call)."""
    return {NUMBER.sub("#", w)[:100] for r in result["records"] for w in r["warnings"]}


def _one_line(text: str) -> str:
    return " / ".join(line.strip() for line in text.splitlines() if line.strip())


def report(entries: list[dict], meta: dict) -> str:
    lines = [
        "# cvxpylayers' own examples, with only the import changed",
        "",
        "Generated by `python examples/dropin/run_cvxpylayers_examples.py SOURCE --write` "
        f"from cvxpylayers at `{meta['revision']}` (cvxpylayers {meta['cvxpylayers']} "
        f"installed; cvxpy {meta['cvxpy']}, torch {meta['torch']}, jax {meta['jax']}; "
        f"timeout {meta['timeout']:.0f} s per variant; {meta['machine']}).",
        "",
        "Each example runs twice in a fresh process: as published (*cvxpylayers*) and with "
        "only its `cvxpylayers` import lines changed to `cvximplicit` (*cvximplicit*). A "
        "status `error` names the first failing cell (notebook cells are numbered from 0 "
        "over code cells; later cells still run, as with `--allow-errors`). Printed numbers "
        "of the cells both variants completed are compared up to their last printed digit. "
        "Times are wall times of the whole process on a shared 2-core machine: indicative.",
        "",
        "| example | cvxpylayers | cvximplicit | what differs |",
        "| --- | --- | --- | --- |",
    ]
    for e in entries:
        name = e["example"].removeprefix("examples/")
        lines.append(
            f"| `{name}` | {status_cell(e['cvxpylayers'])} | {status_cell(e['cvximplicit'])} "
            f"| {differs_cell(e)} |"
        )
    lines += ["", "## Same changes in both variants", ""]
    lines += [
        "- Fixed seeds (`random`, `numpy`, `torch`) before the first cell; `!pip` and `%` "
        "lines dropped; a cell's last bare expression printed, as Jupyter displays it.",
        "- `tqdm.notebook` replaced by a disabled console `tqdm` (no Jupyter widgets); "
        "animations rendered with `to_jshtml` (no ffmpeg); empty `figures/` and `figs/` "
        "folders in the working directory.",
    ]
    scaled = [e for e in entries if e["scale"]]
    if scaled:
        lines.append("- Scaled down to fit the timeout (text substitutions, both variants):")
        for e in scaled:
            subs = ", ".join(f"`{_one_line(o)}` → `{_one_line(n)}`" for o, n, _ in e["scale"])
            lines.append(f"    - `{e['example'].removeprefix('examples/')}`: {subs}")
    keyed = [e for e in entries if e["keys"]]
    if keyed:
        lines.append(
            "- An added last cell prints key values (`KEY name = value`), included in the "
            "comparison: "
            + "; ".join(
                f"`{e['example'].removeprefix('examples/')}`: "
                + ", ".join(f"`{k}`" for k in e["keys"])
                for e in keyed
            )
            + "."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default=DEFAULT_SOURCE)
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/")
    parser.add_argument("--only", nargs="*", help="example file names (or parts of them)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per variant")
    parser.add_argument("--logs", type=Path, default=None, help="keep stdout/stderr here")
    parser.add_argument("--report-only", action="store_true", help="rebuild the .md from .json")
    args = parser.parse_args(argv)

    json_path, md_path = RESULTS / "dropin_examples.json", RESULTS / "dropin_examples.md"
    if args.report_only:
        data = json.loads(json_path.read_text())
        for e in data["examples"]:
            e["comparison"] = compare(e["cvxpylayers"], e["cvximplicit"])
        md_path.write_text(report(data["examples"], data["meta"]) + data.get("notes", ""))
        return

    examples = EXAMPLES
    if args.only:
        examples = [e for e in EXAMPLES if any(s in e.path for s in args.only)]
    logs = args.logs or Path(tempfile.mkdtemp(prefix="dropin-logs-"))
    import cvxpy
    import cvxpylayers
    import jax
    import torch

    meta = {
        "revision": source_revision(args.source),
        "cvxpylayers": cvxpylayers.__version__,
        "cvxpy": cvxpy.__version__,
        "torch": torch.__version__,
        "jax": jax.__version__,
        "timeout": args.timeout,
        "machine": f"{os.cpu_count()} CPUs, no GPU, no network",
    }
    entries = []
    for ex in examples:
        print(ex.path, flush=True)
        entries.append(run_example(ex, args.source, args.timeout, logs))
    print(f"logs: {logs}")
    text = report(entries, meta)
    if args.write:
        notes = ""
        if md_path.exists() and "\n## Notes" in md_path.read_text():
            notes = "\n## Notes" + md_path.read_text().split("\n## Notes", 1)[1]
        for e in entries:  # keep the json small: whole outputs live in the logs
            for v in VARIANTS:
                for r in e[v]["records"]:
                    r["output"] = r["output"][:OUTPUT_KEPT]
        json_path.write_text(json.dumps({"meta": meta, "examples": entries, "notes": notes}))
        md_path.write_text(text + notes)
        print(f"wrote {md_path}")
    else:
        print(text)


if __name__ == "__main__":
    main()
