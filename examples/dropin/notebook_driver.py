"""Runs notebook cells as Jupyter would; copied next to ``_cells.json`` and run there.

Part of ``run_cvxpylayers_examples.py``: ``python _driver.py torch|jax`` executes the cells
of ``_cells.json`` in one namespace, prints each cell's last bare expression, closes the
figures after each cell, keeps going after a failing cell and writes each cell's status,
time, output and warnings to ``_result.json`` after every cell (so a timeout still leaves
the cells that ran).
"""

from __future__ import annotations

import ast
import functools
import io
import json
import random
import sys
import time
import traceback
import warnings

import numpy as np


def display(value: object) -> None:
    """What Jupyter shows for a cell's last expression, as text."""
    if value is None:
        return
    try:
        from matplotlib.animation import Animation
    except ImportError:
        Animation = ()
    if isinstance(value, Animation):
        value.to_jshtml()  # draws every frame, as Jupyter's display of it would
        print("<animation rendered>")
    else:
        print(repr(value))


class Tee(io.TextIOBase):
    def __init__(self, stream):
        self.stream, self.parts = stream, []

    def write(self, s):
        self.stream.write(s)
        self.parts.append(s)
        return len(s)

    def flush(self):
        self.stream.flush()


def run_cell(i: int, code: str, scope: dict, seen: set) -> dict:
    record: dict = {"cell": i, "status": "ok", "error": None, "warnings": []}
    tee = Tee(sys.stdout)
    sys.stdout = tee
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                tree = ast.parse(code)
                last = None
                shown = not code.rstrip().endswith(";")
                if tree.body and isinstance(tree.body[-1], ast.Expr) and shown:
                    last = ast.Expression(tree.body.pop().value)
                exec(compile(tree, f"<cell {i}>", "exec"), scope)
                if last is not None:
                    display(eval(compile(last, f"<cell {i}>", "eval"), scope))
            finally:
                for w in caught:
                    key = f"{w.category.__name__}: {str(w.message).strip()[:300]}"
                    key = " ".join(key.split())
                    if key not in seen:
                        seen.add(key)
                        record["warnings"].append(key)
                        print(f"{w.filename}:{w.lineno}: {key}", file=sys.stderr)
    except Exception as exc:
        message = str(exc).strip()
        record["status"] = "error"
        record["error"] = f"{type(exc).__name__}: {message.splitlines()[-1] if message else ''}"
        traceback.print_exc()
    finally:
        record["seconds"] = time.perf_counter() - start
        sys.stdout = tee.stream
        record["output"] = "".join(tee.parts)
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")
    return record


def main() -> None:
    with open("_cells.json") as f:
        cells = json.load(f)
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 (the notebooks draw from the legacy global state)
    if sys.argv[1] == "torch":
        import torch

        torch.manual_seed(0)
    try:  # tqdm.notebook needs Jupyter widgets: a disabled console bar instead
        import tqdm
        import tqdm.notebook

        tqdm.notebook.tqdm = functools.partial(tqdm.std.tqdm, disable=True)
        tqdm.notebook.trange = functools.partial(tqdm.std.trange, disable=True)
    except ImportError:
        pass
    scope: dict = {"__name__": "__main__", "display": display}
    seen: set = set()
    results = []
    for i, code in enumerate(cells):
        results.append(run_cell(i, code, scope, seen))
        with open("_result.json", "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main()
