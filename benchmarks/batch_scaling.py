"""Batch scaling: time per element of a PyTorch layer call (forward + backward) against batch size.

Small problems (the ones layers are used for), batch sizes 1 to 256, our layer with each
backend (Clarabel on threads, Moreau in one batched call) and cvxpylayers with its default and
Moreau backends, all in one process, alternated within each repetition; medians.  For our
configurations the backend solver's own share (the limit) is recorded too.  Writes
``benchmarks/results/batch_scaling.md``, ``.json`` and ``.png``.

Run ``python benchmarks/batch_scaling.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from layers import (
    batch_values,
    machine_description,
    make_layers,
    primal_outputs,
    publish,
    qp_linear,
    run_layer,
)

from cvximplicit import problems

torch.set_default_dtype(torch.float64)

FAMILIES = {
    "qp": (qp_linear, dict(n=20, p=10)),
    "lp_box": (problems.lp_box, dict(n=30, p=10)),
    "socp": (problems.socp, dict(m=30, n=15)),
    "exp_cone": (problems.logistic, dict(m=30, n=5)),
    "sdp": (problems.nearest_correlation, dict(k=6)),
}
CONFIGS = (
    "cvximplicit",
    "cvximplicit (Moreau)",
    "cvxpylayers (defaults)",
    "cvxpylayers (Moreau CPU)",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 4, 16, 64, 256])
    args = parser.parse_args()
    batches = [1, 8] if args.quick else args.batches
    repeats = 1 if args.quick else args.repeats
    warnings.simplefilter("ignore")
    rows: list[dict[str, Any]] = []
    for name, (builder, size) in FAMILIES.items():
        fam = builder(**size, seed=0)
        layers = {k: v for k, v in make_layers(fam, large=True).items() if k in CONFIGS}
        rng = np.random.default_rng(1)
        out_shapes = [tuple(v.shape) for v in primal_outputs(fam)]
        for batch in batches:
            values = batch_values(fam, batch, rng) if batch > 1 else fam.values
            if batch == 1:  # a batch of one still goes through the batched path
                values = [np.asarray(v, dtype=float)[None] for v in fam.values]
            weights = [torch.tensor(rng.standard_normal((batch, *s))) for s in out_shapes]
            times: dict[str, list[float]] = {k: [] for k in layers}
            solver: dict[str, list[float]] = {k: [] for k in layers}
            failed: dict[str, str] = {}
            for label, (layer, largs) in layers.items():  # warm up
                try:
                    run_layer(layer, largs, values, True, weights)
                except Exception as exc:  # a failing configuration is a result
                    failed[label] = f"{type(exc).__name__}: {str(exc)[:60]}"
            for _ in range(repeats):
                for label, (layer, largs) in layers.items():
                    if label in failed:
                        continue
                    start = time.perf_counter()
                    _, _, solver_s = run_layer(layer, largs, values, True, weights)
                    times[label].append(time.perf_counter() - start)
                    if solver_s is not None:
                        solver[label].append(solver_s)
            for label in layers:
                row: dict[str, Any] = dict(family=name, batch=batch, config=label)
                if label in failed:
                    row["failed"] = failed[label]
                else:
                    row["ms_per_element"] = 1e3 * statistics.median(times[label]) / batch
                    if solver[label]:
                        row["solver_ms_per_element"] = (
                            1e3 * statistics.median(solver[label]) / batch
                        )
                rows.append(row)
                print(json.dumps(row), flush=True)
    write(rows, args.quick)


def write(rows: list[dict], quick: bool) -> None:
    machine = f"{machine_description()}, 2 CPU cores"
    batches = sorted({r["batch"] for r in rows})
    lines = [
        "# Batch scaling: forward + backward time per element",
        "",
        f"Machine: {machine}. Date: {time.strftime('%Y-%m-%d')}. PyTorch layers, float64, "
        "medians over alternated repetitions after a warm-up call. Each cell: ms per element "
        "for a forward pass with gradients and `backward()` of the whole batch; for our "
        "configurations, in brackets, the part of it spent inside the backend solver (the "
        "limit).",
        "",
        "| family | configuration | " + " | ".join(f"batch {b}" for b in batches) + " |",
        "|---|---|" + "---:|" * len(batches),
    ]
    for name in dict.fromkeys(r["family"] for r in rows):
        for cfg in dict.fromkeys(r["config"] for r in rows if r["family"] == name):
            cells = []
            for b in batches:
                r = next(
                    (x for x in rows if (x["family"], x["config"], x["batch"]) == (name, cfg, b)),
                    None,
                )
                if r is None:
                    cells.append("")
                elif "failed" in r:
                    cells.append("failed")
                elif "solver_ms_per_element" in r:
                    cells.append(f"{r['ms_per_element']:.2f} ({r['solver_ms_per_element']:.2f})")
                else:
                    cells.append(f"{r['ms_per_element']:.2f}")
            lines.append(f"| {name} | {cfg} | " + " | ".join(cells) + " |")
    ratios = _ratios(rows)
    if ratios:
        lines += ["", "Faster of our two backends vs each peer (peer time / ours), by batch:", ""]
        for (peer, b), values in sorted(ratios.items()):
            gm = math.exp(sum(math.log(v) for v in values) / len(values))
            lines.append(
                f"- {peer}, batch {b}: geometric mean {gm:.1f}x, worst {min(values):.2f}x "
                f"over {len(values)} families"
            )
    publish("batch_scaling", lines, machine, rows, quick, plot)


def _ratios(rows: list[dict]) -> dict[tuple[str, int], list[float]]:
    best: dict[tuple[str, int], float] = {}
    for r in rows:
        if r["config"].startswith("cvximplicit") and "ms_per_element" in r:
            key = (r["family"], r["batch"])
            best[key] = min(best.get(key, math.inf), r["ms_per_element"])
    out: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        key = (r["family"], r["batch"])
        if r["config"].startswith("cvxpylayers") and "ms_per_element" in r and key in best:
            out.setdefault((r["config"], r["batch"]), []).append(r["ms_per_element"] / best[key])
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(r["family"] for r in rows))
    configs = list(dict.fromkeys(r["config"] for r in rows))
    fig, axes = plt.subplots(1, len(families), figsize=(3.2 * len(families), 3.4), sharey=True)
    styles = {
        "cvximplicit": ("C0", "-"),
        "cvximplicit (Moreau)": ("C1", "-"),
        "cvxpylayers (defaults)": ("C2", "--"),
        "cvxpylayers (Moreau CPU)": ("C3", "--"),
    }
    for ax, name in zip(np.atleast_1d(axes), families):
        for cfg in configs:
            pts = sorted(
                (r["batch"], r["ms_per_element"])
                for r in rows
                if r["family"] == name and r["config"] == cfg and "ms_per_element" in r
            )
            if pts:
                color, ls = styles.get(cfg, ("k", ":"))
                ax.plot(*zip(*pts), marker="o", ms=3, color=color, ls=ls, label=cfg)
            lim = sorted(
                (r["batch"], r["solver_ms_per_element"])
                for r in rows
                if r["family"] == name and r["config"] == cfg and "solver_ms_per_element" in r
            )
            if lim and cfg in styles:
                ax.plot(*zip(*lim), color=styles[cfg][0], ls=":", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("batch size")
    np.atleast_1d(axes)[0].set_ylabel("ms per element (fwd + bwd)")
    np.atleast_1d(axes)[0].legend(fontsize=7, title="dotted: our solver share", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
