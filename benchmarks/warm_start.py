"""Warm starts in a training loop: time per Adam step, warm vs cold vs cvxpylayers.

For each family and batch size, 200 Adam steps on the layer's parameters with a learning
rate that moves them by about 1e-3 or 1e-2 relative per step; the loss is a fixed random
linear function of the outputs.  Our layer with ``warm_start=True`` and without, and
cvxpylayers with its defaults, and cvxpylayers with its Moreau CPU backend cold and with
Moreau's own warm start (``layer(..., warm_start=True)``, where ``moreau`` installs), each
run the same loop from the same start; the warm and cold parameter trajectories are
compared at the end (identical gradients give identical trajectories).
Writes ``benchmarks/results/warm_start.md`` and ``.json``.

Run ``python benchmarks/warm_start.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from layers import batch_values, machine_description, primal_outputs, publish, qp_linear

from cvximplicit import problems
from cvximplicit.torch import CvxpyLayer

torch.set_default_dtype(torch.float64)

FAMILIES = {
    "qp": (qp_linear, dict(n=50, p=30)),
    "lp_box": (problems.lp_box, dict(n=100, p=30)),
    "socp": (problems.socp, dict(m=30, n=15)),
    "exp_cone": (problems.logistic, dict(m=30, n=5)),
}


class Trainer:
    """Adam on every parameter of one layer, advanced a chunk of steps at a time.

    Configurations are advanced in turn, a chunk each (round robin), so that a change of
    machine load affects all of them alike and their ratios stay meaningful.  ``call`` is
    passed to every layer call (cvxpylayers' ``warm_start=True``).
    """

    def __init__(
        self, layer: Any, values: list[np.ndarray], lr_rel: float, seed: int, **call: Any
    ) -> None:
        self.layer, self.values, self.call = layer, values, call
        self.rng = np.random.default_rng(seed)
        self.params = [torch.tensor(v, requires_grad=True) for v in values]
        groups = [
            {"params": [p], "lr": lr_rel * max(float(np.abs(v).mean()), 1e-3)}
            for p, v in zip(self.params, values)
        ]
        self.opt = torch.optim.Adam(groups)
        self.weights: list[torch.Tensor] | None = None
        self.warm = self.total = self.steps = 0
        self.seconds = 0.0
        with torch.no_grad():  # warm-up (compiled kernels, kept solvers); not timed
            layer(*self.params)
        if hasattr(layer, "_warm"):
            layer._warm.previous = None  # the loop's first call starts cold
        if hasattr(layer, "_warm_start_cache"):
            layer._warm_start_cache = None  # the same for cvxpylayers' Moreau warm start

    def run(self, steps: int) -> None:
        start = time.perf_counter()
        for _ in range(steps):
            self.opt.zero_grad()
            outs = self.layer(*self.params, **self.call)
            if self.weights is None:
                self.weights = [
                    torch.tensor(self.rng.standard_normal(tuple(o.shape))) for o in outs
                ]
            loss = sum((w * o).sum() for w, o in zip(self.weights, outs))
            loss.backward()
            self.opt.step()
            with torch.no_grad():  # keep nonnegative parameters in their domain
                for p, v in zip(self.params, self.values):
                    if np.all(np.asarray(v) >= 0):
                        p.clamp_(min=0.0)
            diags = getattr(self.layer, "last_diagnostics", None)
            if diags:
                self.warm += sum(d.start == "warm" for d in diags)
                self.total += len(diags)
        self.seconds += time.perf_counter() - start
        self.steps += steps

    @property
    def ms_per_step(self) -> float:
        return 1e3 * self.seconds / self.steps

    @property
    def warm_rate(self) -> float | None:
        return self.warm / self.total if self.total else None

    def final(self) -> list[np.ndarray]:
        return [p.detach().numpy().copy() for p in self.params]


def round_robin(trainers: dict[str, Trainer], steps: int, chunk: int = 10) -> dict[str, str]:
    """Advance every trainer by ``steps`` in chunks, in turn; returns failures by name."""
    failed: dict[str, str] = {}
    done = 0
    while done < steps:
        k = min(chunk, steps - done)
        for name, trainer in trainers.items():
            if name in failed:
                continue
            try:
                trainer.run(k)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # a result (Moreau's Rust panics are BaseExceptions)
                failed[name] = f"{type(exc).__name__}: {str(exc)[:90]}"
        done += k
    return failed


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

    try:  # cvxpylayers' Moreau CPU backend and its warm start, where moreau installs
        import moreau  # noqa: F401

        has_moreau = True
    except ImportError:
        has_moreau = False
    # name -> (layer class, constructor options, per-call options)
    configurations: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {
        "warm": (CvxpyLayer, {"warm_start": True}, {}),
        "cold": (CvxpyLayer, {}, {}),
        "cvxpylayers": (PeerLayer, {}, {}),
    }
    if has_moreau:
        configurations["moreau_cold"] = (PeerLayer, {"solver": "MOREAU"}, {})
        configurations["moreau_warm"] = (PeerLayer, {"solver": "MOREAU"}, {"warm_start": True})

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
                trainers: dict[str, Trainer] = {}
                for key, (cls, options, call) in configurations.items():
                    try:
                        layer = cls(fam.problem, fam.parameters, out, **options)
                        trainers[key] = Trainer(layer, values, lr, 0, **call)
                    except Exception as exc:  # a peer that cannot build is a result
                        row[f"{key}_failed"] = f"{type(exc).__name__}: {str(exc)[:60]}"
                for key, why in round_robin(trainers, steps).items():
                    row[f"{key}_failed"] = why
                if "warm_failed" in row or "cold_failed" in row:
                    row["failed"] = row.get("warm_failed") or row.get("cold_failed")
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    continue
                for key, trainer in trainers.items():
                    if f"{key}_failed" not in row:
                        row[f"{key}_ms"] = trainer.ms_per_step
                row["warm_rate"] = trainers["warm"].warm_rate
                row["trajectory_gap"] = max(
                    float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
                    for a, b in zip(trainers["warm"].final(), trainers["cold"].final())
                )
                rows.append(row)
                print(json.dumps(row), flush=True)
    write(rows, args.quick)


def write(rows: list[dict], quick: bool) -> None:
    machine = f"{machine_description()}, 2 CPU cores"
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
        "| trajectory gap | cvxpylayers ms/step | Moreau CPU cold ms/step "
        "| Moreau CPU warm ms/step | best peer / warm |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "failed" in r:
            lines.append(
                f"| {r['family']} | {r['batch']} | {r['lr_rel']:.0e} | failed: {r['failed']} "
                "| | | | | | | | |"
            )
            continue
        peers = [r.get(k) for k in ("cvxpylayers_ms", "moreau_cold_ms", "moreau_warm_ms")]
        cells = " | ".join(f"{t:.2f}" if t else "failed" for t in peers)
        finite = [t for t in peers if t]
        best = f"{min(finite) / r['warm_ms']:.1f}x" if finite else ""
        lines.append(
            f"| {r['family']} | {r['batch']} | {r['lr_rel']:.0e} | {r['warm_ms']:.2f} | "
            f"{r['cold_ms']:.2f} | {r['cold_ms'] / r['warm_ms']:.1f}x | {r['warm_rate']:.0%} | "
            f"{r['trajectory_gap']:.0e} | {cells} | {best} |"
        )
    publish("warm_start", lines, machine, rows, quick)


if __name__ == "__main__":
    main()
