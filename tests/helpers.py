"""Shared test helpers: random problem families and finite-difference checks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

import cvximplicit as ci
from cvximplicit import problems
from cvximplicit.problems import Family

#: Solver used for finite-difference references (math.md section 6: SCS at 1e-12).
REFERENCE = ci.SCS(eps_abs=1e-12, eps_rel=1e-12, max_iters=200_000)


FAMILIES: dict[str, Callable[[np.random.Generator], Family]] = {
    name: (lambda rng, make=make: make(seed=rng)) for name, make in problems.FAMILIES.items()
}


def flat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.zeros(0)


def fd_jvp(
    program: ci.Program, values: Sequence[np.ndarray], tangents: Sequence[np.ndarray], h: float
) -> list[np.ndarray]:
    """Central finite difference of the outputs along ``tangents``, with re-solves."""
    plus = program.solve(*[v + h * t for v, t in zip(values, tangents)]).values
    minus = program.solve(*[v - h * t for v, t in zip(values, tangents)]).values
    return [(p - m) / (2 * h) for p, m in zip(plus, minus)]


def random_tangents(
    rng: np.random.Generator, family: Family, only: int | None = None
) -> list[np.ndarray]:
    out = []
    for k, (p, v) in enumerate(zip(family.parameters, family.values)):
        t = rng.standard_normal(np.shape(v))
        if p.attributes["PSD"] or p.attributes["symmetric"]:
            t = 0.5 * (t + t.T)
        if only is not None and k != only:
            t = np.zeros_like(t)
        out.append(t)
    return out


def rel_error(a: np.ndarray, b: np.ndarray, floor: float = 1e-6) -> float:
    """``||a - b|| / max(||b||, floor)``."""
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), floor))


def reference_solver(program: ci.Program) -> tuple[ci.Solver, bool]:
    """Solver (and whether to polish) for finite-difference references.

    SCS at 1e-12 without polishing is fully independent of cvximplicit's own numerics and is
    used where it is accurate enough (zero, nonnegative, second-order and PSD cones).  On
    exponential and power cones its re-solves were only accurate to about 1e-9, too noisy for
    central differences, so there the reference is Clarabel at 1e-12 followed by polishing:
    its points satisfy the KKT conditions to ~1e-15 (checked through the residual), which
    certifies the forward values independently of the derivative code.
    """
    if any(isinstance(c, (ci.ExponentialCone, ci.PowerCone)) for c in program.cones):
        tight = ci.Clarabel(tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
        return tight, True
    return REFERENCE, False


#: Small sizes of every family, for the framework layers' gradient checks.
SMALL = {
    "nnls": dict(m=6, n=4),
    "lasso": dict(m=6, n=4),
    "qp": dict(n=4, p=3, q=1),
    "lp_box": dict(n=5, p=2),
    "socp": dict(m=5, n=3),
    "socp_ball": dict(n=3),
    "nearest_correlation": dict(k=3),
    "maxcut_sdp": dict(k=3),
    "max_eigenvalue": dict(k=3),
    "entropy_simplex": dict(n=4),
    "logistic": dict(m=8, n=2),
    "pnorm": dict(m=5, n=2),
}
