"""Oracles of the fuzz suite: each returns the list of what went wrong (empty when fine).

Tolerances (documented in docs/failure-modes.md):

* values against CVXPY's own solve (Clarabel at 1e-10): relative error <= 1e-5;
* JVP against central differences of re-solves, judged only where two step sizes
  (1e-5 and 1e-6, relative to each parameter's magnitude) agree to 1e-5: relative error
  <= 1e-4;
* adjoint identity <u, J t> = <J^T u, t> to 1e-9 of the products' magnitudes;
* a batch equals a loop to 1e-9; inputs are bit-for-bit unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import cvxpy as cp
import numpy as np
from generator import Case

import cvximplicit as ci

REFERENCE = dict(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
VALUE_TOL, FD_AGREE, FD_TOL, ADJOINT_TOL, BATCH_TOL, SILENT_TOL = (
    1e-5,
    1e-5,
    1e-4,
    1e-9,
    1e-9,
    1e-3,
)


def _flat(arrays: Sequence[Any]) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(a, dtype=np.float64)) for a in arrays])


def _rel(a: np.ndarray, b: np.ndarray, floor: float) -> float:
    return float(np.linalg.norm(a - b) / max(float(np.linalg.norm(b)), floor))


def reference(case: Case) -> list[np.ndarray] | None:
    """CVXPY's own solve at the case's values (``None`` if CVXPY fails)."""
    for p, v in zip(case.parameters, case.values):
        p.value = v
    try:
        case.problem.solve(**REFERENCE)
    except cp.SolverError:
        return None
    if case.problem.status not in (cp.OPTIMAL,):
        return None
    out = []
    for o in case.outputs:
        val = o.value if isinstance(o, cp.Variable) else o.dual_value
        if val is None:
            return None
        out.append(np.asarray(val, dtype=np.float64))
    return out


def objective_at(case: Case, values: Sequence[np.ndarray]) -> tuple[float, float]:
    """(objective, largest constraint violation) of the problem at our primal outputs."""
    for o, v in zip(case.outputs, values):
        if isinstance(o, cp.Variable):
            o.value = v
    viol = max((float(np.max(c.violation())) for c in case.problem.constraints), default=0.0)
    return float(case.problem.objective.value), viol


def tangents(case: Case, rng: np.random.Generator) -> list[np.ndarray]:
    """Random directions, symmetric for symmetric parameters, scaled to each value."""
    out = []
    for p, v in zip(case.parameters, case.values):
        t = rng.standard_normal(np.shape(v))
        if p.attributes["PSD"] or p.attributes["symmetric"]:
            t = 0.5 * (t + t.T)
        out.append(t * max(float(np.abs(v).max()), 1e-3))
    return out


def _solve_values(program: ci.Program, values: Sequence[np.ndarray]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _flat(program.solve(*values).values)


def central(program: ci.Program, values: Sequence[np.ndarray], t: Sequence[np.ndarray], h: float):
    plus = _solve_values(program, [v + h * d for v, d in zip(values, t)])
    minus = _solve_values(program, [v - h * d for v, d in zip(values, t)])
    return (plus - minus) / (2 * h), plus, minus


def check_jvp(
    program: ci.Program, case: Case, sol: ci.Solution, t: list[np.ndarray], base: np.ndarray
) -> tuple[list[str], str]:
    """JVP vs central differences; returns (failures, 'judged'|'skipped: why')."""
    jvp = _flat(sol.jvp(*t))
    if not np.all(np.isfinite(jvp)):
        return [f"JVP has non-finite entries: {jvp}"], "judged"
    try:
        fd1, _, _ = central(program, case.values, t, 1e-5)
        fd2, _, _ = central(program, case.values, t, 1e-6)
    except ci.CvximplicitError as exc:  # a perturbed problem failed: not judged here
        return [], f"skipped: re-solve failed ({type(exc).__name__})"
    floor = 1e-6 * max(1.0, float(np.linalg.norm(base)))
    if _rel(fd1, fd2, floor) > FD_AGREE:
        return [], "skipped: step sizes disagree (near a kink)"
    err = _rel(jvp, fd2, floor)
    if err > FD_TOL:
        return [f"JVP off central differences by {err:.2e} (jvp {jvp}, fd {fd2})"], "judged"
    return [], "judged"


def check_adjoint(sol: ci.Solution, t: list[np.ndarray], rng: np.random.Generator) -> list[str]:
    jvp = sol.jvp(*t)
    u = [rng.standard_normal(np.shape(j)) for j in jvp]
    vjp = sol.vjp(*u)
    lhs = float(_flat(u) @ _flat(jvp))
    rhs = float(_flat(vjp) @ _flat(t))
    nu, nt = np.linalg.norm(_flat(u)), np.linalg.norm(_flat(t))
    # the products' magnitudes, and rounding of a unit-size Jacobian's entries (1e-13)
    scale = float(
        nu * np.linalg.norm(_flat(jvp)) + np.linalg.norm(_flat(vjp)) * nt + 1e-4 * nu * nt
    )
    if not np.isfinite(rhs) or abs(lhs - rhs) > ADJOINT_TOL * scale:
        return [f"adjoint identity off: <u, J t> = {lhs:.6e}, <J'u, t> = {rhs:.6e}"]
    return []


def check_batch(program: ci.Program, case: Case, t: list[np.ndarray]) -> list[str]:
    shifts = (0.0, 1e-3, -1e-3)
    batch = [np.stack([v + s * d for s in shifts]) for v, d in zip(case.values, t)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        together = program.solve_batch(*batch)
        for k, s in enumerate(shifts):
            alone = program.solve(*[v + s * d for v, d in zip(case.values, t)])
            a, b = _flat([o[k] for o in together.values]), _flat(alone.values)
            if _rel(a, b, 1e-6) > BATCH_TOL:
                return [f"batch element {k} differs from its own solve by {_rel(a, b, 1e-6):.1e}"]
    return []


def check_torch_float32(case: Case) -> list[str]:
    import torch

    from cvximplicit.torch import CvxpyLayer

    layer = CvxpyLayer(case.problem, case.parameters, case.outputs)
    params = [torch.tensor(v, dtype=torch.float32, requires_grad=True) for v in case.values]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outs = layer(*params)
        sum(o.sum() for o in outs).backward()
    bad = [o.dtype for o in outs if o.dtype != torch.float32]
    if bad:
        return [f"torch float32 inputs gave outputs of dtype {bad}"]
    for p in params:
        if p.grad is None or p.grad.dtype != torch.float32 or not torch.isfinite(p.grad).all():
            return [f"torch float32 gradient missing, wrong dtype or not finite: {p.grad}"]
    return []
