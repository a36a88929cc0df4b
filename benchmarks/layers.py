"""PyTorch layers side by side: cvximplicit vs cvxpylayers, on the same problems, one process.

For each problem family and batch size (1 and 32) every configuration is timed in turn
within each repetition (forward alone, forward + backward) and medians are reported, with
the gradient's relative error against central finite differences of tight re-solves (the
same reference for every library).  Writes ``benchmarks/results/layers.md``, ``layers.json``
and ``layers.png``.  Run ``make bench`` (or ``python benchmarks/layers.py --quick``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cvxpy as cp
import numpy as np
import torch

import cvximplicit as ci
from cvximplicit import problems
from cvximplicit.torch import CvxpyLayer

sys.path.insert(0, str(Path(__file__).parent))
from _publish import publish

torch.set_default_dtype(torch.float64)


def lasso_penalty(n: int = 200, m: int = 100, seed: int = 0) -> problems.Family:
    """LASSO with data fixed and the penalty as the parameter."""
    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((m, n)), rng.standard_normal(m)
    beta, lam = cp.Variable(n), cp.Parameter(nonneg=True)
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(X @ beta - y) + lam * cp.norm1(beta)))
    lam_max = float(np.abs(X.T @ y).max())
    return problems.Family("lasso", prob, [lam], [beta], [np.array(0.1 * lam_max)])


def qp_linear(n: int = 50, p: int = 30, seed: int = 0) -> problems.Family:
    """QP with fixed P and constraint matrices; the linear term and right-hand sides vary."""
    rng = np.random.default_rng(seed)
    L = rng.standard_normal((n, n))
    P = L @ L.T / n + 0.1 * np.eye(n)
    G, F = rng.standard_normal((p, n)), rng.standard_normal((1, n))
    x = cp.Variable(n)
    q, h, g = cp.Parameter(n), cp.Parameter(p), cp.Parameter(1)
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, P) + q @ x), [G @ x <= h, F @ x == g])
    x0 = rng.standard_normal(n)
    values = [rng.standard_normal(n), G @ x0 + rng.uniform(0.1, 1, p), F @ x0]
    return problems.Family("qp", prob, [q, h, g], [x], values)


def large_sparse_qp(n: int = 5000, seed: int = 0) -> problems.Family:
    """The banded QP of `cvximplicit.problems.banded_qp` under this table's family name."""
    family = problems.banded_qp(n, seed)
    family.name = "sparse_qp_5000"
    return family


FAMILIES: dict[str, tuple[Callable[..., problems.Family], dict, dict]] = {
    # name: (builder, full-size arguments, quick arguments)
    "nnls": (problems.nnls, dict(m=150, n=100), dict(m=30, n=20)),
    "lasso": (lasso_penalty, dict(n=200, m=100), dict(n=40, m=20)),
    "qp": (qp_linear, dict(n=50, p=30), dict(n=10, p=6)),
    "lp_box": (problems.lp_box, dict(n=100, p=30), dict(n=20, p=6)),
    "socp": (problems.socp, dict(m=100, n=50), dict(m=20, n=10)),
    "exp_cone": (problems.logistic, dict(m=100, n=10), dict(m=20, n=3)),
    "sdp": (problems.nearest_correlation, dict(k=10), dict(k=4)),
    "sparse_qp_5000": (large_sparse_qp, dict(n=5000), dict(n=500)),
}


def make_layers(fam: problems.Family, large: bool) -> dict[str, Any]:
    from cvxpylayers.torch import CvxpyLayer as PeerLayer

    out = primal_outputs(fam)
    layers: dict[str, Any] = {"cvximplicit": (CvxpyLayer(fam.problem, fam.parameters, out), {})}
    try:  # our Moreau backend (pip install cvximplicit[moreau])
        layers["cvximplicit (Moreau)"] = (
            CvxpyLayer(fam.problem, fam.parameters, out, solver="MOREAU"),
            {},
        )
    except (ci.SolverNotInstalledError, ci.UnsupportedProblemError) as exc:
        print(f"cvximplicit Moreau backend unavailable for {fam.name}: {exc}")
    layers["cvxpylayers (defaults)"] = (PeerLayer(fam.problem, fam.parameters, out), {})
    try:  # the Moreau CPU backend of cvxpylayers, where it installs (pip install moreau)
        import moreau  # noqa: F401

        layers["cvxpylayers (Moreau CPU)"] = (
            PeerLayer(fam.problem, fam.parameters, out, solver="MOREAU"),
            {},
        )
    except Exception as exc:  # not installed, or the problem is not supported
        print(f"cvxpylayers Moreau backend unavailable for {fam.name}: {exc}")
    if not large:  # diffcp's dense mode factors a dense (n + m + 1)^2 matrix
        layers["cvxpylayers (SCS 1e-10, dense)"] = (
            PeerLayer(fam.problem, fam.parameters, out),
            {"eps": 1e-10, "mode": "dense", "max_iters": 100_000},
        )
    return layers


def primal_outputs(fam: problems.Family) -> list[Any]:
    """The variables among the family's outputs (cvxpylayers returns primal values only)."""
    return [v for v in fam.variables if isinstance(v, cp.Variable)]


def batch_values(fam: problems.Family, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    if batch == 1:
        return [np.asarray(v, dtype=float) for v in fam.values]
    out = []
    for p, v in zip(fam.parameters, fam.values):
        noise = 0.02 * np.abs(v).mean() * rng.standard_normal((batch, *np.shape(v)))
        b = v + noise
        if p.attributes["symmetric"] or p.attributes["PSD"]:
            b = 0.5 * (b + np.swapaxes(b, -1, -2))
        if p.attributes["nonneg"]:
            b = np.abs(b)
        out.append(b)
    return out


def run_layer(layer: Any, args: dict, values: list[np.ndarray], backward: bool, weights) -> tuple:
    tensors = [torch.tensor(v, requires_grad=True) for v in values]
    outs = layer(*tensors, solver_args=args) if args else layer(*tensors)
    loss = sum((w * o).sum() for w, o in zip(weights, outs))
    grads = None
    if backward:
        loss.backward()
        grads = [t.grad.numpy().copy() for t in tensors]
    return loss.item(), grads, solver_seconds(layer)


def solver_seconds(layer: Any) -> float | None:
    """Wall time our last call spent inside the backend solver (the limit), else None."""
    sol = getattr(layer, "last_solution", None)
    if sol is None:
        return None
    if isinstance(sol, ci.BatchSolution):
        return sol.solver_time
    return sol.info.timings.setup + sol.info.timings.solve


def reference_value(reference: ci.Program, values, weights) -> float:
    sol = reference.solve(*values)
    return float(sum(np.sum(w * o) for w, o in zip(weights, sol.values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument(
        "--merge", help="JSON-lines log of an earlier run whose rows to keep where not rerun"
    )
    parser.add_argument("--configs", nargs="*", help="only these configurations (and ours)")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    warnings.simplefilter("ignore")
    rows = []
    if args.merge:
        for line in Path(args.merge).read_text().splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                rerun = row["family"] in args.families and (
                    not args.configs
                    or row["config"] in args.configs
                    or row["config"] == "cvximplicit"
                )
                if not rerun:
                    rows.append(row)
    for name in args.families:
        builder, full, quick = FAMILIES[name]
        fam = builder(**(quick if args.quick else full), seed=0)
        large = name.startswith("sparse")
        layers = make_layers(fam, large)
        if args.configs:
            layers = {k: v for k, v in layers.items() if k in args.configs or k == "cvximplicit"}
        program = ci.compile(fam.problem, fam.parameters, primal_outputs(fam))
        curved = any(isinstance(c, (ci.ExponentialCone, ci.PowerCone)) for c in program.cones)
        tight = ci.Clarabel(tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
        scs = ci.SCS(eps_abs=1e-12, eps_rel=1e-12, max_iters=500_000)
        reference = ci.compile(
            fam.problem,
            fam.parameters,
            fam.variables,
            solver=tight if (curved or large) else scs,
            polish=curved or large,
        )
        rng = np.random.default_rng(1)
        out_shapes = [np.shape(v) for v in program.solve(*fam.values).values]
        for batch in (1, 8) if large else (1, 32):
            values = batch_values(fam, batch, rng)
            weights = [
                torch.tensor(rng.standard_normal(((batch,) if batch > 1 else ()) + s))
                for s in out_shapes
            ]
            times: dict[str, dict[str, list[float]]] = {
                k: {"fwd": [], "both": [], "solver": []} for k in layers
            }
            failed: dict[str, str] = {}
            grads: dict[str, Any] = {}
            for _ in range(repeats):
                for label, (layer, largs) in layers.items():
                    if label in failed:
                        continue
                    try:
                        t0 = time.perf_counter()
                        run_layer(layer, largs, values, False, weights)
                        t1 = time.perf_counter()
                        _, g, solver_s = run_layer(layer, largs, values, True, weights)
                        t2 = time.perf_counter()
                    except Exception as exc:  # a peer failing is a result, not a crash
                        failed[label] = f"{type(exc).__name__}: {str(exc)[:80]}"
                        continue
                    times[label]["fwd"].append(t1 - t0)
                    times[label]["both"].append(t2 - t1)
                    if solver_s is not None:
                        times[label]["solver"].append(solver_s)
                    grads[label] = g
            # gradient error at batch 1: directional derivative vs central differences
            errors: dict[str, float] = {}
            if batch == 1:
                direction = [rng.standard_normal(np.shape(v)) for v in values]
                for p, d in zip(fam.parameters, direction):
                    if p.attributes["symmetric"] or p.attributes["PSD"]:
                        d[...] = 0.5 * (d + d.T)
                w_np = [w.numpy() for w in weights]
                h = 1e-5 * max(1.0, max(float(np.abs(v).max()) for v in values))
                plus = reference_value(
                    reference, [v + h * d for v, d in zip(values, direction)], w_np
                )
                minus = reference_value(
                    reference, [v - h * d for v, d in zip(values, direction)], w_np
                )
                fd = (plus - minus) / (2 * h)
                for label, g in grads.items():
                    ours = sum(float(np.sum(gi * di)) for gi, di in zip(g, direction))
                    errors[label] = abs(ours - fd) / max(abs(fd), 1e-12)
            for label in layers:
                row: dict[str, Any] = dict(family=name, batch=batch, config=label)
                if label in failed:
                    row["failed"] = failed[label]
                else:
                    row["forward_ms"] = 1e3 * statistics.median(times[label]["fwd"])
                    row["forward_backward_ms"] = 1e3 * statistics.median(times[label]["both"])
                    row["grad_rel_error"] = errors.get(label)
                    if times[label]["solver"]:
                        row["solver_ms"] = 1e3 * statistics.median(times[label]["solver"])
                rows.append(row)
                print(json.dumps(row), flush=True)
    write(rows, args.quick)


def machine_description() -> str:
    """The machine line of the PyTorch benchmarks' results."""
    return (
        f"{platform.machine()}, {platform.processor() or 'cpu'}, "
        f"Python {sys.version.split()[0]}, torch {torch.__version__}"
    )


def write(rows: list[dict], quick: bool) -> None:
    machine = machine_description()
    ours = {(r["family"], r["batch"]): r for r in rows if r["config"] == "cvximplicit"}
    lines = [
        "# PyTorch layers: cvximplicit vs cvxpylayers 1.x",
        "",
        f"Machine: {machine}. Medians over alternated repetitions. `fwd+bwd` is a forward pass "
        "with gradients enabled followed by `backward()`. Speed-up = peer time / cvximplicit "
        "(Clarabel) time for fwd+bwd. Solver ms = wall time of our call spent inside the "
        "backend solver (the limit); x limit = fwd+bwd / solver ms. Gradient error (batch 1) = "
        "relative error of the gradient along a random direction against central differences "
        "of tight re-solves (SCS 1e-12; Clarabel 1e-12 + polishing for exponential cones and "
        "the large QP).",
        "",
        "| family | batch | configuration | fwd ms | fwd+bwd ms | solver ms | x limit "
        "| speed-up | gradient error |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    speedups = {}
    for r in rows:
        if "failed" in r:
            lines.append(
                f"| {r['family']} | {r['batch']} | {r['config']} | failed | | | | | {r['failed']} |"
            )
            continue
        base = ours.get((r["family"], r["batch"]))
        speed = ""
        if base and "forward_backward_ms" in base and r["config"] != "cvximplicit":
            ratio = r["forward_backward_ms"] / base["forward_backward_ms"]
            speed = f"{ratio:.1f}x"
            speedups.setdefault(r["config"], []).append(ratio)
        err = "" if r.get("grad_rel_error") is None else f"{r['grad_rel_error']:.1e}"
        solver = limit = ""
        if r.get("solver_ms"):
            solver = f"{r['solver_ms']:.1f}"
            limit = f"{r['forward_backward_ms'] / r['solver_ms']:.2f}"
        lines.append(
            f"| {r['family']} | {r['batch']} | {r['config']} | {r['forward_ms']:.1f} | "
            f"{r['forward_backward_ms']:.1f} | {solver} | {limit} | {speed} | {err} |"
        )
    lines += ["", "Geometric-mean speed-up of cvximplicit (Clarabel) (fwd+bwd):", ""]
    for label, ratios in speedups.items():
        gm = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
        lines.append(f"- vs {label}: {gm:.1f}x over {len(ratios)} (family, batch) pairs")
    best = best_of_ours(rows)
    if best:
        lines += [
            "",
            "Geometric-mean speed-up of the faster cvximplicit backend per (family, "
            "batch) (fwd+bwd), by batch size:",
            "",
        ]
        for label in sorted({r["config"] for r in rows if not r["config"].startswith("cvxim")}):
            for batch in sorted({r["batch"] for r in rows}):
                ratios = [
                    r["forward_backward_ms"] / best[(r["family"], batch)]
                    for r in rows
                    if r["config"] == label
                    and r["batch"] == batch
                    and "forward_backward_ms" in r
                    and (r["family"], batch) in best
                ]
                if ratios:
                    gm = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
                    lines.append(
                        f"- vs {label}, batch {batch}: {gm:.1f}x over {len(ratios)} families "
                        f"(worst {min(ratios):.2f}x)"
                    )
    publish("layers", lines, machine, rows, quick, plot)


def best_of_ours(rows: list[dict]) -> dict[tuple[str, int], float]:
    """Per (family, batch), the faster of our configurations (fwd+bwd ms)."""
    best: dict[tuple[str, int], float] = {}
    for r in rows:
        if r["config"].startswith("cvximplicit") and "forward_backward_ms" in r:
            key = (r["family"], r["batch"])
            best[key] = min(best.get(key, math.inf), r["forward_backward_ms"])
    return best


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(dict.fromkeys(r["config"] for r in rows))
    families = list(dict.fromkeys(r["family"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.8 / len(configs)
    for k, cfg in enumerate(configs):
        t = [
            next(
                (
                    r.get("forward_backward_ms", np.nan)
                    for r in rows
                    if r["family"] == f and r["batch"] == 32 and r["config"] == cfg
                ),
                np.nan,
            )
            for f in families
        ]
        e = [
            next(
                (
                    r.get("grad_rel_error") or np.nan
                    for r in rows
                    if r["family"] == f and r["batch"] == 1 and r["config"] == cfg
                ),
                np.nan,
            )
            for f in families
        ]
        x = np.arange(len(families)) + k * width
        axes[0].bar(x, t, width, label=cfg)
        axes[1].bar(x, e, width, label=cfg)
    for ax, title in zip(
        axes, ["forward + backward, batch 32 (ms)", "gradient relative error (batch 1)"]
    ):
        ax.set_yscale("log")
        ax.set_xticks(np.arange(len(families)) + 0.4 - width / 2)
        ax.set_xticklabels(families, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
