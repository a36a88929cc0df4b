"""Certificates of infeasibility and unboundedness, sought when a solver gives no answer.

A solver that stops without converging (an iteration limit, "insufficient progress", a
numerical failure) says nothing about the problem.  Before reporting a failure we look for
a certificate of the two pathologies with one small, always solvable cone program each:

* **unbounded**: a direction ``d`` with ``P d = 0``, ``-A d in K`` and ``c'd < 0`` (moving
  along it keeps a feasible point feasible and decreases the objective without bound):
  ``min c'd  s.t.  P d = 0,  -A d in K,  c'd >= -1``, optimal value ``-1`` or ``0``;
* **infeasible**: ``y in K*`` with ``A'y = 0`` and ``b'y < 0`` (Farkas):
  ``min b'y  s.t.  A'y = 0,  y in K*,  b'y >= -1``.  Only where ``K*`` is a product of cones a
  backend handles directly (zero, nonnegative, second-order and PSD cones; the exponential
  and power cones are not self-dual and are skipped).

A certificate is accepted only after checking it on the original data, so a sloppy
auxiliary solve cannot turn a failure into a wrong claim.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._cones import (
    Cone,
    ExponentialCone,
    NonnegativeCone,
    PowerCone,
    ZeroCone,
)
from ._solvers import Clarabel
from ._solvers._base import ConeData, Solver, SolverStatus
from ._typing import FloatArray

__all__ = ["Certificate", "find_certificate"]

#: Relative accuracy a certificate must satisfy on the original data.
CERTIFICATE_TOL = 1e-7


class Certificate:
    """A checked certificate: ``kind`` is ``"unbounded"`` or ``"infeasible"``."""

    def __init__(self, kind: str, vector: FloatArray, violation: float) -> None:
        self.kind, self.vector, self.violation = kind, vector, violation

    def describe(self) -> str:
        what = (
            "a direction d with P d = 0, -A d in K and c'd = -1 (the objective decreases "
            "without bound along it)"
            if self.kind == "unbounded"
            else "a Farkas vector y in K* with A'y = 0 and b'y = -1"
        )
        return f"{what}, checked on the data to {self.violation:.1e}"


def _solver() -> Solver:
    return Clarabel(keep=False, **Clarabel.tight)


def _distance(cones: list[Cone], v: FloatArray, dual: bool) -> float:
    out, start = 0.0, 0
    for cone in cones:
        part = v[start : start + cone.dim]
        proj = cone.project_dual(part) if dual else cone.project(part)
        out = max(out, float(np.abs(part - proj).max(initial=0.0)))
        start += cone.dim
    return out


def _normalised_point(aux: ConeData, cones: list[Cone]) -> FloatArray | None:
    """Solve an auxiliary program ``min c'z`` whose normalisation row bounds ``c'z`` below
    by ``-1``; its solution if it reaches (nearly) ``-1``, a certificate candidate."""
    raw = _solver().solve(aux, cones)
    if raw.status not in (SolverStatus.SOLVED, SolverStatus.INACCURATE) or raw.x is None:
        return None
    return raw.x if float(aux.c @ raw.x) < -0.5 else None


def _checked(kind: str, vector: FloatArray, violation: float) -> Certificate | None:
    return Certificate(kind, vector, violation) if violation <= CERTIFICATE_TOL else None


def _unbounded(data: ConeData, cones: list[Cone]) -> Certificate | None:
    n = data.n
    rows = sp.vstack([data.P, sp.csr_array(-data.c[None, :]), data.A]).tocsc()
    aux = ConeData(
        P=sp.csc_array((n, n)),
        A=sp.csc_array(rows),
        b=np.concatenate([np.zeros(n), [1.0], np.zeros(data.m)]),
        c=data.c.copy(),
    )
    d = _normalised_point(aux, [ZeroCone(n), NonnegativeCone(1), *cones])
    if d is None:
        return None
    scale = max(1.0, float(np.abs(d).max()))
    violation = max(
        float(np.abs(data.P @ d).max(initial=0.0)) / (scale * max(1.0, abs(data.P).max())),
        _distance(cones, -(data.A @ d), dual=False) / (scale * max(1.0, abs(data.A).max())),
    )
    return _checked("unbounded", d, violation)


def _infeasible(data: ConeData, cones: list[Cone]) -> Certificate | None:
    if any(isinstance(c, (ExponentialCone, PowerCone)) for c in cones):
        return None  # K* is not a cone the backends take directly
    m = data.m
    # y in K*: -y + s = 0, s in K* (K* = K except the zero cone, whose dual is free)
    dual_cones = [c for c in cones if not isinstance(c, ZeroCone)]
    keep = np.concatenate(
        [np.full(c.dim, not isinstance(c, ZeroCone)) for c in cones] or [np.zeros(0, bool)]
    )
    eye = sp.csr_array(sp.identity(m, format="csr"))[np.flatnonzero(keep)]
    rows = sp.vstack([data.AT, sp.csr_array(-data.b[None, :]), -eye]).tocsc()
    aux = ConeData(
        P=sp.csc_array((m, m)),
        A=sp.csc_array(rows),
        b=np.concatenate([np.zeros(data.n), [1.0], np.zeros(int(keep.sum()))]),
        c=data.b.copy(),
    )
    y = _normalised_point(aux, [ZeroCone(data.n), NonnegativeCone(1), *dual_cones])
    if y is None:
        return None
    scale = max(1.0, float(np.abs(y).max()))
    violation = max(
        float(np.abs(data.AT @ y).max(initial=0.0)) / (scale * max(1.0, abs(data.A).max())),
        _distance(cones, y, dual=True) / scale,
    )
    return _checked("infeasible", y, violation)


def find_certificate(data: ConeData, cones: list[Cone]) -> Certificate | None:
    """A checked certificate that the program is unbounded or infeasible, or ``None``."""
    cones = [c for c in cones if c.dim]
    try:  # infeasibility first: a ray of an infeasible program proves nothing
        return _infeasible(data, cones) or _unbounded(data, cones)
    except Exception:  # a failing auxiliary solve proves nothing
        return None
