"""Seeded generator of random DPP problems for the fuzz suite.

Every case is a pure function of ``(kind, seed, index)``: ``make_case(kind, seed, index)``
rebuilds it exactly, which is the one-line reproducer printed with every failure.

A case is assembled from blocks around a point ``x0`` that is strictly feasible by
construction (so the smooth kinds are feasible and, with a strongly convex term, have a
unique primal solution):

* objective terms: ``sum_squares(x - p)`` (always, for uniqueness), ``quad_form`` with a PSD
  parameter, ``norm2``, ``log_sum_exp``, ``exp``, ``-log``, ``-entr``, ``power``/``pnorm``
  (power cones), and a PSD matrix variable projected onto the PSD cone;
* constraints: LP rows ``G x <= h``, a box, equalities ``E x == E x0``, an SOC ball.

Each block draws its data and, while fewer than three parameters exist, makes one of its
data arrays a parameter at random.  Kinds:

* ``smooth``: the above;
* ``scaled``: the same with every block's data multiplied by ``10**U(-4, 4)``;
* ``infeasible`` / ``unbounded``: constructions that are so for every parameter value drawn;
* ``degenerate``: a smooth case plus one of duplicate constraints, a redundant equality,
  an LP with a continuum of solutions, or an optimum exactly at a bound.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import cvxpy as cp
import numpy as np

KINDS = ("smooth", "scaled", "infeasible", "unbounded", "degenerate")


@dataclasses.dataclass
class Case:
    """One generated problem: what to compile, the values to solve at, what to expect."""

    kind: str
    seed: int
    index: int
    problem: cp.Problem
    parameters: list[cp.Parameter]
    outputs: list[Any]
    values: list[np.ndarray]
    blocks: list[str]
    #: for ``degenerate``: which degeneracy; for the rest, ``""``
    variant: str = ""

    @property
    def reproducer(self) -> str:
        return (
            f"tests/fuzz: make_case({self.kind!r}, seed={self.seed}, index={self.index})"
            f"  # blocks {self.blocks}{' ' + self.variant if self.variant else ''}"
        )


class _Builder:
    """Collects parameters (at most three), values, objective terms and constraints."""

    def __init__(self, rng: np.random.Generator, n: int, scaled: bool) -> None:
        self.rng, self.n, self.scaled = rng, n, scaled
        self.x = cp.Variable(n, name="x")
        self.x0 = rng.standard_normal(n)
        self.parameters: list[cp.Parameter] = []
        self.values: list[np.ndarray] = []
        self.terms: list[Any] = []
        self.constraints: list[Any] = []
        self.outputs: list[Any] = [self.x]
        self.blocks: list[str] = []

    def scale(self) -> float:
        return float(10.0 ** self.rng.uniform(-4, 4)) if self.scaled else 1.0

    def data(self, value: np.ndarray | float, force: bool = False, **attrs: Any) -> Any:
        """``value`` as a constant or (at random, while fewer than three exist) a parameter."""
        value = np.asarray(value, dtype=np.float64)
        if len(self.parameters) < 3 and (force or self.rng.random() < 0.45):
            p = cp.Parameter(value.shape, **attrs)
            self.parameters.append(p)
            self.values.append(value)
            return p
        return value

    # ------------------------------------------------------------------ objective blocks
    def target(self) -> None:
        s = self.scale()
        p = self.data(self.x0 + self.rng.standard_normal(self.n))
        self.terms.append(s * cp.sum_squares(self.x - p))
        self.blocks.append("target")

    def quad(self) -> None:
        L = self.rng.standard_normal((self.n, self.n))
        Q = self.data(self.scale() * (L @ L.T / self.n + 0.1 * np.eye(self.n)), PSD=True)
        self.terms.append(cp.quad_form(self.x, Q))
        self.blocks.append("quad_form")

    def _affine(self, k: int) -> tuple[Any, Any]:
        s = self.scale()
        F = self.data(s * self.rng.standard_normal((k, self.n)))
        g = self.data(s * self.rng.standard_normal(k))
        return F, g

    def norm2(self) -> None:
        F, g = self._affine(int(self.rng.integers(1, 4)))
        self.terms.append(cp.norm(F @ self.x - g, 2))
        self.blocks.append("norm2")

    def lse(self) -> None:
        F, g = self._affine(int(self.rng.integers(2, 4)))
        self.terms.append(cp.log_sum_exp(F @ self.x + g))
        self.blocks.append("log_sum_exp")

    def exp(self) -> None:
        k = int(self.rng.integers(1, 3))
        F = self.data(0.3 * self.rng.standard_normal((k, self.n)))
        self.terms.append(0.1 * cp.sum(cp.exp(F @ self.x)))
        self.blocks.append("exp")

    def neglog(self) -> None:
        lo = self.data(self.x0 - self.rng.uniform(0.5, 1.5, self.n))
        self.terms.append(-0.1 * cp.sum(cp.log(self.x - lo)))
        self.blocks.append("log")

    def entr(self) -> None:
        lo = self.data(self.x0 - self.rng.uniform(0.5, 1.5, self.n))
        self.terms.append(-0.1 * cp.sum(cp.entr(self.x - lo)))
        self.blocks.append("entr")

    def power(self) -> None:
        F, g = self._affine(int(self.rng.integers(1, 4)))
        if self.rng.random() < 0.5:
            self.terms.append(cp.pnorm(F @ self.x - g, 3, approx=False))
            self.blocks.append("pnorm3")
        else:
            self.terms.append(cp.sum(cp.power(cp.abs(F @ self.x - g), 1.5, approx=False)))
            self.blocks.append("power1.5")

    def psd(self) -> None:
        k = int(self.rng.integers(2, 4))
        X = cp.Variable((k, k), symmetric=True, name="X")
        C0 = self.rng.standard_normal((k, k))
        C = self.data(self.scale() * (C0 + C0.T) / 2, symmetric=True)
        self.terms.append(cp.sum_squares(X - C))
        self.constraints.append(X >> 0)
        self.outputs.append(X)
        self.blocks.append("psd")

    # ------------------------------------------------------------------ constraint blocks
    def lp_rows(self) -> None:
        k = int(self.rng.integers(1, 4))
        s = self.scale()
        G0 = s * self.rng.standard_normal((k, self.n))
        G = self.data(G0)
        h = self.data(G0 @ self.x0 + s * self.rng.uniform(0.1, 1.0, k))
        con = G @ self.x <= h
        self.constraints.append(con)
        if self.rng.random() < 0.3:
            self.outputs.append(con)  # its dual
        self.blocks.append("lp_rows")

    def box(self) -> None:
        s = self.scale()
        lo = self.data(self.x0 - s * self.rng.uniform(0.1, 1.0, self.n))
        hi = self.data(self.x0 + s * self.rng.uniform(0.1, 1.0, self.n))
        self.constraints += [self.x >= lo, self.x <= hi]
        self.blocks.append("box")

    def equality(self) -> None:
        if self.n < 3:
            return
        k = int(self.rng.integers(1, self.n - 1))
        E0 = self.scale() * self.rng.standard_normal((k, self.n))
        E = self.data(E0)
        e = self.data(E0 @ self.x0) if not isinstance(E, cp.Parameter) else E0 @ self.x0
        self.constraints.append(E @ self.x == e)
        self.blocks.append("equality")

    def soc(self) -> None:
        k = int(self.rng.integers(1, 4))
        s = self.scale()
        F0, g0 = s * self.rng.standard_normal((k, self.n)), s * self.rng.standard_normal(k)
        F = self.data(F0)
        radius = np.linalg.norm(F0 @ self.x0 - g0) + s * self.rng.uniform(0.1, 1.0)
        t = self.data(radius, nonneg=True)
        self.constraints.append(cp.norm(F @ self.x - g0) <= t)
        self.blocks.append("soc")

    def ensure_parameter(self) -> None:
        """At least one parameter: the target's data if nothing else became one."""
        if not self.parameters:
            p = self.data(self.x0 + self.rng.standard_normal(self.n), force=True)
            self.terms.append(cp.sum_squares(self.x - p))
            self.blocks.append("target2")

    def problem(self) -> cp.Problem:
        return cp.Problem(cp.Minimize(cp.sum(cp.hstack(self.terms))), self.constraints)


_OBJECTIVES: tuple[Callable[[_Builder], None], ...] = (
    _Builder.quad,
    _Builder.norm2,
    _Builder.lse,
    _Builder.exp,
    _Builder.neglog,
    _Builder.entr,
    _Builder.power,
    _Builder.psd,
)
_CONSTRAINTS: tuple[Callable[[_Builder], None], ...] = (
    _Builder.lp_rows,
    _Builder.box,
    _Builder.equality,
    _Builder.soc,
)


def _smooth(rng: np.random.Generator, scaled: bool) -> _Builder:
    b = _Builder(rng, int(rng.integers(2, 6)), scaled)
    b.target()
    for k in rng.choice(len(_OBJECTIVES), size=int(rng.integers(0, 3)), replace=False):
        _OBJECTIVES[k](b)
    for k in rng.choice(len(_CONSTRAINTS), size=int(rng.integers(0, 3)), replace=False):
        _CONSTRAINTS[k](b)
    b.ensure_parameter()
    return b


def _infeasible(rng: np.random.Generator) -> tuple[_Builder, str]:
    b = _Builder(rng, int(rng.integers(2, 6)), False)
    b.target()
    variant = str(rng.choice(["box", "sum", "ball"]))
    if variant == "box":  # x >= a and x <= a - gap
        a = rng.standard_normal(b.n)
        lo = b.data(a, force=True)
        hi = b.data(a - rng.uniform(0.1, 1.0, b.n))
        b.constraints += [b.x >= lo, b.x <= hi]
    elif variant == "sum":  # sum(x) == s while every x_i <= s / n - gap
        s = float(rng.standard_normal())
        cap = b.data(np.full(b.n, s / b.n - rng.uniform(0.1, 1.0)), force=True)
        b.constraints += [cp.sum(b.x) == s, b.x <= cap]
    else:  # a ball around c of radius r, and a halfspace beyond it
        c, r = rng.standard_normal(b.n), rng.uniform(0.5, 2.0)
        d = rng.standard_normal(b.n)
        d /= np.linalg.norm(d)
        off = b.data(float(d @ c + r + rng.uniform(0.1, 1.0)), force=True)
        b.constraints += [cp.norm(b.x - c) <= r, d @ b.x >= off]
    return b, variant


def _unbounded(rng: np.random.Generator) -> tuple[_Builder, str]:
    b = _Builder(rng, int(rng.integers(3, 6)), False)
    variant = str(rng.choice(["equality_lp", "halfspace_lp", "soc"]))
    if variant == "equality_lp":  # min c'x on {E x = e}, c with a component along null(E)
        k = int(rng.integers(1, b.n - 1))
        E = rng.standard_normal((k, b.n))
        z = rng.standard_normal(b.n)
        z -= E.T @ np.linalg.lstsq(E.T, z, rcond=None)[0]
        c = E.T @ rng.standard_normal(k) + rng.uniform(0.05, 1.0) * z / np.linalg.norm(z)
        cost = b.data(c, force=True)
        b.terms.append(cost @ b.x)
        b.constraints.append(E @ b.x == E @ b.x0)
    elif variant == "halfspace_lp":  # min c'x on {x >= lo} with some c_i < 0
        c = np.abs(rng.standard_normal(b.n))
        c[int(rng.integers(b.n))] *= -1
        cost = b.data(c, force=True)
        b.terms.append(cost @ b.x)
        b.constraints.append(b.x >= b.data(b.x0))
    else:  # min -t + a'x subject to ||x|| <= t, with ||a|| < 1
        t = cp.Variable(name="t")
        a = rng.standard_normal(b.n)
        a *= rng.uniform(0.1, 0.9) / np.linalg.norm(a)
        cost = b.data(a, force=True)
        b.terms.append(cost @ b.x - t)
        b.constraints.append(cp.norm(b.x) <= t)
    return b, variant


def _degenerate(rng: np.random.Generator) -> tuple[_Builder, str]:
    variant = str(rng.choice(["duplicate", "redundant_equality", "lp_continuum", "at_bound"]))
    if variant == "lp_continuum":  # min c'x on a box with c_i = 0: x_i anywhere in [lo, hi]
        b = _Builder(rng, int(rng.integers(2, 5)), False)
        c = rng.standard_normal(b.n)
        c[int(rng.integers(b.n))] = 0.0
        b.terms.append(b.data(c, force=True) @ b.x)
        b.constraints += [b.x >= -1.0, b.x <= 1.0]
        return b, variant
    b = _Builder(rng, int(rng.integers(2, 5)), False)
    target = b.x0 + rng.standard_normal(b.n)
    if variant == "at_bound":  # the unconstrained optimum lies exactly on the bound
        b.terms.append(cp.sum_squares(b.x - b.data(target, force=True)))
        i = int(rng.integers(b.n))
        hi = np.full(b.n, np.inf)
        hi[i] = target[i]
        b.constraints.append(b.x[i] <= b.data(float(hi[i])))
        b.blocks.append(f"x[{i}] <= target[{i}]")
        return b, variant
    b.terms.append(cp.sum_squares(b.x - b.data(target, force=True)))
    a = rng.standard_normal(b.n)
    h = float(a @ target) - rng.uniform(0.1, 1.0)  # active: the target violates a'x <= h
    if variant == "duplicate":
        hp = b.data(h)
        b.constraints += [a @ b.x <= hp, a @ b.x <= hp]
    else:  # redundant_equality: E x == e twice, once scaled
        E = rng.standard_normal((1, b.n))
        e = b.data(E @ b.x0)
        b.constraints += [E @ b.x == e, (2 * E) @ b.x == 2 * e, a @ b.x <= h]
    return b, variant


def make_case(kind: str, seed: int, index: int) -> Case:
    """Rebuild case ``index`` of ``kind`` for ``seed`` (deterministic)."""
    rng = np.random.default_rng([seed, index, KINDS.index(kind)])
    variant = ""
    if kind in ("smooth", "scaled"):
        b = _smooth(rng, scaled=kind == "scaled")
    elif kind == "infeasible":
        b, variant = _infeasible(rng)
    elif kind == "unbounded":
        b, variant = _unbounded(rng)
    elif kind == "degenerate":
        b, variant = _degenerate(rng)
    else:
        raise ValueError(f"unknown kind {kind!r}; one of {KINDS}")
    return Case(
        kind=kind,
        seed=seed,
        index=index,
        problem=b.problem(),
        parameters=b.parameters,
        outputs=b.outputs,
        values=b.values,
        blocks=b.blocks,
        variant=variant,
    )
