"""Core timings: solve + polish and one VJP per family, against the limit.

The limit is the backend alone: constructing Clarabel's ``DefaultSolver`` on the same
canonical data, with its own default settings (``qdldl``), and calling ``solve()``; our
default stops Clarabel at 1e-7 instead of 1e-8 (up to ``n + m = 2000``) and polishes to
1e-13.  The target of the fast path
is a forward pass (solve + polish + certification) of at most 1.3x that plus 0.2 ms, and a
VJP of at most 0.2 ms; the table reports both and the split of our forward pass from
``Diagnostics.timings``.  Other solver settings follow in a second table.

Run with ``make bench`` (or ``python benchmarks/core.py --quick`` for a fast smoke run).
Configurations are alternated within each repetition and medians are reported, with the
gradient's relative error against central finite differences of tight SCS re-solves (the
same reference for every configuration).  Writes ``benchmarks/results/core.md`` and
``core.json``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import cvximplicit as ci
from cvximplicit import problems

sys.path.insert(0, str(Path(__file__).parent))
from _publish import publish

SIZES = {
    "nnls": dict(m=150, n=100),
    "lasso": dict(m=100, n=200),
    "qp": dict(n=50, p=30, q=1),
    "lp_box": dict(n=100, p=30),
    "socp": dict(m=100, n=50),
    "nearest_correlation": dict(k=10),
    "maxcut_sdp": dict(k=10),
    "entropy_simplex": dict(n=50),
    "logistic": dict(m=100, n=10),
    "pnorm": dict(m=30, n=10),
    "geometric_program": dict(),
}
QUICK = {
    "nnls": dict(m=30, n=20),
    "lasso": dict(m=20, n=40),
    "qp": dict(n=15, p=8, q=1),
    "lp_box": dict(n=20, p=6),
    "socp": dict(m=20, n=10),
    "nearest_correlation": dict(k=4),
    "maxcut_sdp": dict(k=4),
    "entropy_simplex": dict(n=8),
    "logistic": dict(m=20, n=3),
    "pnorm": dict(m=8, n=3),
    "geometric_program": dict(),
}
#: Families with curved cones only get the default and SCS configurations.
CORE = ("nnls", "lasso", "qp", "lp_box", "socp")

DEFAULT = "clarabel-qdldl (default)"
CONFIGS = {
    DEFAULT: dict(solver=ci.Clarabel()),
    "clarabel-faer": dict(solver=ci.Clarabel(direct_solve_method="faer")),
    "clarabel-qdldl tol1e-6": dict(
        solver=ci.Clarabel(tol_gap_abs=1e-6, tol_gap_rel=1e-6, tol_feas=1e-6)
    ),
    "clarabel-qdldl no polish": dict(solver=ci.Clarabel(), polish=False),
    "scs 1e-7": dict(solver=ci.SCS()),
    "scs 1e-4": dict(solver=ci.SCS(eps_abs=1e-4, eps_rel=1e-4)),
    "osqp": dict(solver=ci.OSQP()),
}


def clarabel_direct(program: ci.Program, values) -> float:
    """Wall seconds of Clarabel alone on the program's canonical data (the limit), with
    Clarabel's own default settings except the ``qdldl`` method (which its ``auto`` picks
    on the small families and which is faster on the large ones)."""
    import clarabel

    data = program.canonical_data(*values)
    objects = [o for c in program.cones for o in ci.Clarabel()._cone_objects(clarabel, c)]
    start = time.perf_counter()
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.direct_solve_method = "qdldl"
    clarabel.DefaultSolver(data.P_upper, data.c, data.A, data.b, objects, settings).solve()
    return time.perf_counter() - start


def gradient_error(program, reference, fam, rng) -> float:
    sol = program.solve(*fam.values)
    tangents = [rng.standard_normal(np.shape(v)) for v in fam.values]
    for p, t in zip(fam.parameters, tangents):
        if p.attributes["PSD"]:
            t[...] = 0.5 * (t + t.T)
    jvp = np.concatenate([np.ravel(j) for j in sol.jvp(*tangents)])
    h = 1e-5
    plus = reference.solve(*[v + h * t for v, t in zip(fam.values, tangents)]).values
    minus = reference.solve(*[v - h * t for v, t in zip(fam.values, tangents)]).values
    fd = np.concatenate([np.ravel(a - b) / (2 * h) for a, b in zip(plus, minus)])
    return float(np.linalg.norm(jvp - fd) / max(np.linalg.norm(fd), 1e-8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    sizes = QUICK if args.quick else SIZES
    repeats = 2 if args.quick else args.repeats
    scs_reference = ci.SCS(eps_abs=1e-12, eps_rel=1e-12, max_iters=500_000)
    tight = ci.Clarabel(tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    rows = []
    for name, size in sizes.items():
        gp = name == "geometric_program"
        make = problems.geometric_program if gp else problems.FAMILIES[name]
        fam = make(**size, seed=0)
        programs = {}
        for label, cfg in CONFIGS.items():
            if name not in CORE and label not in (DEFAULT, "scs 1e-7"):
                continue
            try:
                programs[label] = ci.compile(
                    fam.problem, fam.parameters, fam.variables, gp=gp, **cfg
                )
            except ci.UnsupportedProblemError:
                continue
        curved = any(
            isinstance(c, (ci.ExponentialCone, ci.PowerCone))
            for c in next(iter(programs.values())).cones
        )
        # SCS at 1e-12 is an independent reference except on exponential/power cones, where
        # it is too noisy for central differences; there, tight Clarabel + polishing.
        reference = ci.compile(
            fam.problem,
            fam.parameters,
            fam.variables,
            gp=gp,
            solver=tight if curved else scs_reference,
            polish=curved,
        )
        times: dict[str, dict[str, list[float]]] = {k: {"fwd": [], "vjp": []} for k in programs}
        direct: list[float] = []
        splits: list[ci.Timings] = []
        for program in programs.values():  # warm up: kept solvers, compiled kernels, caches
            program.solve(*fam.values).vjp(*[None] * len(fam.variables))
        for _ in range(repeats):
            for label, program in programs.items():
                t0 = time.perf_counter()
                sol = program.solve(*fam.values)
                t1 = time.perf_counter()
                sol.vjp(*[np.ones_like(v) for v in sol.values])
                t2 = time.perf_counter()
                times[label]["fwd"].append(t1 - t0)
                times[label]["vjp"].append(t2 - t1)
                if label == DEFAULT:
                    splits.append(sol.info.timings)
                    direct.append(clarabel_direct(program, fam.values))
        for label, program in programs.items():
            err = gradient_error(program, reference, fam, np.random.default_rng(1))
            fwd = statistics.median(times[label]["fwd"])
            vjp = statistics.median(times[label]["vjp"])
            row = dict(
                family=name,
                config=label,
                n=program.n,
                m=program.m,
                forward_ms=1e3 * fwd,
                vjp_ms=1e3 * vjp,
                grad_rel_error=err,
            )
            if label == DEFAULT:
                row["limit_ms"] = 1e3 * statistics.median(direct)
                for part in ("setup", "solve", "polish", "factorization", "other"):
                    row[f"{part}_ms"] = 1e3 * statistics.median(getattr(t, part) for t in splits)
            rows.append(row)
            print(
                f"{name:7s} {label:26s} fwd {1e3 * fwd:8.2f} ms  vjp {1e3 * vjp:7.2f} ms  "
                f"err {err:.1e}",
                flush=True,
            )
    machine = (
        f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {sys.version.split()[0]}"
    )
    lines = [
        "# Core timings (batch 1)",
        "",
        f"Machine: {machine}; repeats: {repeats}; medians. Forward = solve + polish + "
        "certification; VJP = one reverse-mode product (reusing the factorization made while "
        "polishing). Limit = Clarabel alone (construct `DefaultSolver` + `solve()`) on the same "
        "canonical data with its default settings (qdldl; ours stop it at 1e-7 instead of "
        "1e-8 up to n + m = 2000, then polish to 1e-13); target = 1.3 x limit + 0.2 ms. "
        "Split = our forward pass from `Diagnostics.timings` (solver setup, solver solve, "
        "polish, factorization, other). "
        "Error = relative error of a JVP against central differences of re-solves (SCS at "
        "1e-12; for exponential/power cones Clarabel at 1e-12 + polishing).",
        "",
        "## Default configuration against the limit",
        "",
        "| family | n + m | limit ms | forward ms | forward / limit | forward target "
        "| VJP ms | VJP target | split: setup / solve / polish / factorization / other ms "
        "| gradient error |",
        "|---|---:|---:|---:|---:|---|---:|---|---|---:|",
    ]
    for r in rows:
        if r["config"] != DEFAULT:
            continue
        forward_met = r["forward_ms"] <= 1.3 * r["limit_ms"] + 0.2
        split = " / ".join(
            f"{r[f'{k}_ms']:.2f}" for k in ("setup", "solve", "polish", "factorization", "other")
        )
        lines.append(
            f"| {r['family']} | {r['n'] + r['m']} | {r['limit_ms']:.2f} | {r['forward_ms']:.2f} | "
            f"{r['forward_ms'] / r['limit_ms']:.2f} | {'met' if forward_met else 'missed'} | "
            f"{r['vjp_ms']:.2f} | {'met' if r['vjp_ms'] <= 0.2 else 'missed'} | {split} | "
            f"{r['grad_rel_error']:.1e} |"
        )
    lines += [
        "",
        "## Every configuration",
        "",
        "| family | n, m | configuration | forward ms | VJP ms | VJP/forward | gradient error |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['family']} | {r['n']}, {r['m']} | {r['config']} | {r['forward_ms']:.2f} | "
            f"{r['vjp_ms']:.2f} | {r['vjp_ms'] / r['forward_ms']:.2f} | {r['grad_rel_error']:.1e} |"
        )
    publish("core", lines, machine, rows, args.quick)


if __name__ == "__main__":
    main()
