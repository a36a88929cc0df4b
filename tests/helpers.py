"""Shared test helpers: random problem families and finite-difference checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import cvxpy as cp
import numpy as np

import cvximplicit as ci

#: Solver used for finite-difference references (math.md section 6: SCS at 1e-12).
REFERENCE = ci.SCS(eps_abs=1e-12, eps_rel=1e-12, max_iters=200_000)


@dataclasses.dataclass
class Family:
    """A random instance of a problem family: problem, parameters, outputs and values."""

    name: str
    problem: cp.Problem
    parameters: list[cp.Parameter]
    variables: list[Any]
    values: list[np.ndarray]
    has_quadratic: bool = True


def nnls(rng: np.random.Generator, m: int = 12, n: int = 8) -> Family:
    x = cp.Variable(n)
    A, b = cp.Parameter((m, n)), cp.Parameter(m)
    con = x >= 0
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(A @ x - b)), [con])
    return Family(
        "nnls", prob, [A, b], [x, con], [rng.standard_normal((m, n)), rng.standard_normal(m)]
    )


def lasso(rng: np.random.Generator, m: int = 15, n: int = 10) -> Family:
    x = cp.Variable(n)
    A, b = cp.Parameter((m, n)), cp.Parameter(m)
    lam = cp.Parameter(nonneg=True)
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(A @ x - b) + lam * cp.norm1(x)))
    vals = [rng.standard_normal((m, n)), rng.standard_normal(m), np.array(0.5)]
    return Family("lasso", prob, [A, b, lam], [x], vals)


def qp(rng: np.random.Generator, n: int = 10, p: int = 6, q: int = 2) -> Family:
    x = cp.Variable(n)
    Q = cp.Parameter((n, n), PSD=True)
    c, h, g = cp.Parameter(n), cp.Parameter(p), cp.Parameter(q)
    G = rng.standard_normal((p, n))
    F = rng.standard_normal((q, n))
    ineq, eq = G @ x <= h, F @ x == g
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, Q) + c @ x), [ineq, eq])
    L = rng.standard_normal((n, n))
    x0 = rng.standard_normal(n)
    vals = [
        L @ L.T / n + 0.5 * np.eye(n),
        rng.standard_normal(n),
        G @ x0 + rng.uniform(0, 1, p),
        F @ x0,
    ]
    return Family("qp", prob, [Q, c, h, g], [x, ineq, eq], vals)


def lp_box(rng: np.random.Generator, n: int = 8, p: int = 3) -> Family:
    x = cp.Variable(n)
    c, b = cp.Parameter(n), cp.Parameter(p)
    A = rng.standard_normal((p, n))
    eq = A @ x == b
    box = [x >= -1, x <= 1]
    prob = cp.Problem(cp.Minimize(c @ x), [eq, *box])
    vals = [rng.standard_normal(n), A @ rng.uniform(-0.5, 0.5, n)]
    return Family("lp_box", prob, [c, b], [x, eq], vals, has_quadratic=False)


def socp(rng: np.random.Generator, m: int = 10, n: int = 6) -> Family:
    """Robust least squares: min ||Ax - b||_2 + mu ||x||_2 + 0.1 ||x||^2 s.t. sum(x) == 1."""
    x = cp.Variable(n)
    A, b = cp.Parameter((m, n)), cp.Parameter(m)
    mu = cp.Parameter(nonneg=True)
    eq = cp.sum(x) == 1
    prob = cp.Problem(
        cp.Minimize(cp.norm2(A @ x - b) + mu * cp.norm2(x) + 0.1 * cp.sum_squares(x)), [eq]
    )
    vals = [rng.standard_normal((m, n)), rng.standard_normal(m), np.array(0.3)]
    return Family("socp", prob, [A, b, mu], [x, eq], vals)


def socp_constrained(rng: np.random.Generator, n: int = 6) -> Family:
    """Linear objective over a ball intersected with a halfspace (SOC constraint active)."""
    x = cp.Variable(n)
    c, r = cp.Parameter(n), cp.Parameter(nonneg=True)
    ball = cp.norm2(x) <= r
    half = cp.sum(x) <= 0.5
    prob = cp.Problem(cp.Minimize(c @ x), [ball, half])
    vals = [rng.standard_normal(n), np.array(1.5)]
    return Family("socp_ball", prob, [c, r], [x, ball], vals, has_quadratic=False)


FAMILIES: dict[str, Callable[[np.random.Generator], Family]] = {
    "nnls": nnls,
    "lasso": lasso,
    "qp": qp,
    "lp_box": lp_box,
    "socp": socp,
    "socp_ball": socp_constrained,
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
