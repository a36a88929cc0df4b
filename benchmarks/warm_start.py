"""Warm starts in a training loop: time per Adam step, warm vs cold vs cvxpylayers.

For each family and batch size, 200 Adam steps on the layer's parameters with a learning
rate that moves them by about 1e-3 or 1e-2 relative per step; the loss is a fixed random
linear function of the outputs.  Our layer with ``warm_start=True`` and without, and
cvxpylayers with its defaults, each run the same loop from the same start; the warm and
cold parameter trajectories are compared at the end (identical gradients give identical
trajectories).  Writes ``benchmarks/results/warm_start.md`` and ``.json``.

Run ``python benchmarks/warm_start.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from layers import batch_values, primal_outputs, qp_linear

from cvximplicit import problems
from cvximplicit.torch import CvxpyLayer

RESULTS = Path(__file__).parent / "results"
torch.set_default_dtype(torch.float64)

FAMILIES = {
    "qp": (qp_linear, dict(n=50, p=30)),
    "lp_box": (problems.lp_box, dict(n=100, p=30)),
    "socp": (problems.socp, dict(m=30, n=15)),
    "exp_cone": (problems.logistic, dict(m=30, n=5)),
}


def train(layer: Any, values: list[np.ndarray], lr_rel: float, steps: int, seed: int):
    """Adam on every parameter; returns (seconds per step, final parameters, warm rate)."""
    rng = np.random.default_rng(seed)
    params = [torch.tensor(v, requires_grad=True) for v in values]
    groups = [
        {"params": [p], "lr": lr_rel * max(float(np.abs(v).mean()), 1e-3)}
        for p, v in zip(params, values)
    ]
    opt = torch.optim.Adam(groups)
    weights = None
    warm = total = 0
    with torch.no_grad():  # warm-up (compiled kernels, kept solvers); not timed
        layer(*params)
    if hasattr(layer, "_warm"):
        layer._warm.previous = None  # the loop's first call starts cold
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        outs = layer(*params)
        if weights is None:
            weights = [torch.tensor(rng.standard_normal(tuple(o.shape))) for o in outs]
        loss = sum((w * o).sum() for w, o in zip(weights, outs))
        loss.backward()
        opt.step()
        with torch.no_grad():  # keep nonnegative / symmetric parameters in their domain
            for p, v in zip(params, values):
                if np.all(np.asarray(v) >= 0):
                    p.clamp_(min=0.0)
        diags = getattr(layer, "last_diagnostics", None)
        if diags:
            warm += sum(d.start == "warm" for d in diags)
            total += len(diags)
    elapsed = (time.perf_counter() - start) / steps
    return elapsed, [p.detach().numpy().copy() for p in params], (warm / total if total else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--merge", help="JSON-lines log of an earlier run: keep its other rows")
    args = parser.parse_args()
    steps = 10 if args.quick else args.steps
    warnings.simplefilter("ignore")
    from cvxpylayers.torch import CvxpyLayer as PeerLayer

    rows: list[dict[str, Any]] = []
    if args.merge:
        for line in Path(args.merge).read_text().splitlines():
            if line.startswith("{") and json.loads(line)["family"] not in args.families:
                rows.append(json.loads(line))
    for name, (builder, size) in FAMILIES.items():
        if name not in args.families:
            continue
        fam = builder(**size, seed=0)
        out = primal_outputs(fam)
        for batch in (1, 32):
            values = batch_values(fam, batch, np.random.default_rng(1))
            for lr in (1e-3, 1e-2):
                row: dict[str, Any] = dict(family=name, batch=batch, lr_rel=lr, steps=steps)
                warm_layer = CvxpyLayer(fam.problem, fam.parameters, out, warm_start=True)
                cold_layer = CvxpyLayer(fam.problem, fam.parameters, out)
                try:
                    t_warm, p_warm, rate = train(warm_layer, values, lr, steps, 0)
                    t_cold, p_cold, _ = train(cold_layer, values, lr, steps, 0)
                except Exception as exc:  # the loop drove the problem somewhere unsolvable
                    row["failed"] = f"{type(exc).__name__}: {str(exc)[:90]}"
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    continue
                row["warm_ms"] = 1e3 * t_warm
                row["cold_ms"] = 1e3 * t_cold
                row["warm_rate"] = rate
                row["trajectory_gap"] = max(
                    float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
                    for a, b in zip(p_warm, p_cold)
                )
                try:
                    peer = PeerLayer(fam.problem, fam.parameters, out)
                    t_peer, _, _ = train(peer, values, lr, steps, 0)
                    row["cvxpylayers_ms"] = 1e3 * t_peer
                except Exception as exc:  # a failing peer is a result
                    row["cvxpylayers_failed"] = f"{type(exc).__name__}: {str(exc)[:60]}"
                rows.append(row)
                print(json.dumps(row), flush=True)
    write(rows, args.quick)


def write(rows: list[dict], quick: bool) -> None:
    machine = (
        f"{platform.machine()}, {platform.processor() or 'cpu'}, "
        f"Python {sys.version.split()[0]}, torch {torch.__version__}, 2 CPU cores"
    )
    lines = [
        "# Warm starts in a training loop",
        "",
        f"Machine: {machine}. Date: {time.strftime('%Y-%m-%d')}. {rows[0]['steps']} Adam steps "
        "per run, learning rate = relative step x mean |parameter|; time per step includes "
        "the forward pass, `backward()` and the optimizer. Warm rate = share of solves that "
        "took the warm path (no solver call). Trajectory gap = largest relative difference "
        "between the warm and cold runs' final parameters (identical gradients give 0 up to "
        "rounding; where a step meets a problem whose solution is not unique, the cold path "
        "warns with a DegenerateDerivativeWarning and the two runs may take different optimal "
        "points, after which the trajectories drift apart).",
        "",
        "| family | batch | relative step | warm ms/step | cold ms/step | cold / warm | warm rate "
        "| trajectory gap | cvxpylayers ms/step | cvxpylayers / warm |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "failed" in r:
            lines.append(
                f"| {r['family']} | {r['batch']} | {r['lr_rel']:.0e} | failed: {r['failed']} "
                "| | | | | | |"
            )
            continue
        peer = r.get("cvxpylayers_ms")
        lines.append(
            f"| {r['family']} | {r['batch']} | {r['lr_rel']:.0e} | {r['warm_ms']:.2f} | "
            f"{r['cold_ms']:.2f} | {r['cold_ms'] / r['warm_ms']:.1f}x | {r['warm_rate']:.0%} | "
            f"{r['trajectory_gap']:.0e} | "
            + (f"{peer:.2f} | {peer / r['warm_ms']:.1f}x |" if peer else "failed | |")
        )
    RESULTS.mkdir(exist_ok=True)
    suffix = "-quick" if quick else ""
    (RESULTS / f"warm_start{suffix}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"warm_start{suffix}.json").write_text(
        json.dumps(dict(machine=machine, rows=rows), indent=1)
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
