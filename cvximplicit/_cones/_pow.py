"""Three-dimensional power cones ``{(x, y, z) : x^a y^(1-a) >= |z|, x, y >= 0}``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from .._typing import FloatArray, IntArray
from ._kernels import compiled_kernels
from ._pieces import ThreeDimensionalCone
from ._roots import bracketed_root

__all__ = ["PowerCone"]


def _in_cone(V: FloatArray, a: FloatArray, tol: FloatArray) -> np.ndarray:
    x, y, z = V[:, 0], V[:, 1], V[:, 2]
    with np.errstate(all="ignore"):
        geo = np.where((x > 0) & (y > 0), x**a * y ** (1 - a), 0.0)
    return (x >= 0) & (y >= 0) & (geo >= np.abs(z) - tol)


def _in_polar(V: FloatArray, a: FloatArray, tol: FloatArray) -> np.ndarray:
    """``V`` in ``-K*``, ``K* = {(u, v, w) : (u/a)^a (v/(1-a))^(1-a) >= |w|, u, v >= 0}``."""
    u, v, w = -V[:, 0], -V[:, 1], -V[:, 2]
    with np.errstate(all="ignore"):
        geo = np.where((u > 0) & (v > 0), (u / a) ** a * (v / (1 - a)) ** (1 - a), 0.0)
    return (u >= 0) & (v >= 0) & (geo >= np.abs(w) - tol)


def _xy_gap(W: FloatArray, a: FloatArray, gap: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The projection's first two coordinates for ``gap = r (|z0| - r)`` (Hien 2015)."""
    gap = np.maximum(gap, 0.0)
    return _root_pos(W[:, 0], a * gap), _root_pos(W[:, 1], (1 - a) * gap)


def _root_pos(c: FloatArray, q: FloatArray) -> FloatArray:
    """The positive root ``(c + sqrt(c^2 + 4q))/2`` of ``x^2 - c x - q``, without cancellation
    when ``c < 0``."""
    root = np.sqrt(c * c + 4 * q)
    with np.errstate(divide="ignore", invalid="ignore"):
        neg = np.where(root - c > 0, 2 * q / (root - c), 0.0)
    return np.where(c >= 0, 0.5 * (c + root), neg)


def _f(
    W: FloatArray, a: FloatArray, u: FloatArray, upper: np.ndarray
) -> tuple[FloatArray, FloatArray]:
    """``f(u) = x^a y^(1-a) - r`` with ``r = u`` (lower half) or ``r = |z0| - u`` (upper half,
    so that ``r`` close to ``|z0|`` keeps full relative accuracy in ``|z0| - r``), signed so
    that ``f`` decreases through its root; and ``df/du``."""
    z0 = np.abs(W[:, 2])
    gap = u * (z0 - u)  # symmetric in r <-> |z0| - r
    x, y = _xy_gap(W, a, gap)
    with np.errstate(all="ignore"):
        geo = x**a * y ** (1 - a)
        dgap = z0 - 2 * u
        dx = a * dgap / np.sqrt(W[:, 0] ** 2 + 4 * a * gap)
        dy = (1 - a) * dgap / np.sqrt(W[:, 1] ** 2 + 4 * (1 - a) * gap)
        dgeo = a * (y / x) ** (1 - a) * dx + (1 - a) * (x / y) ** a * dy
    f = np.where(upper, -(geo - (z0 - u)), geo - u)
    df = np.where(upper, -(dgeo + 1), dgeo - 1)
    return f, df


def _root(W: FloatArray, a: FloatArray) -> tuple[FloatArray, np.ndarray]:
    """``r`` in ``(0, |z0|)`` with ``x(r)^a y(r)^(1-a) = r``, as ``u = r`` or ``u = |z0| - r``
    (whichever half holds the root) in ``(0, |z0|/2]``."""
    z0 = np.abs(W[:, 2])
    half = 0.5 * z0
    mid, _ = _f(W, a, half, np.zeros(z0.size, dtype=bool))
    upper = mid > 0  # the root lies in (|z0|/2, |z0|): iterate on u = |z0| - r

    def fun(idx: IntArray, u: FloatArray) -> tuple[FloatArray, FloatArray]:
        f, df = _f(W[idx], a[idx], u, upper[idx])
        return -f, -df  # increasing through the root

    u = bracketed_root(fun, np.zeros_like(z0), half, 0.5 * half)
    return u, upper


def project_pow(V: FloatArray, a: FloatArray) -> FloatArray:
    """Euclidean projections of the rows of ``V`` onto power cones with exponents ``a``
    (compiled when numba is installed, see ``_kernels.py``)."""
    kernels = compiled_kernels()
    if kernels is not None:
        return kernels.project_pow_rows(V, a)
    return project_pow_numpy(V, a)


def project_pow_numpy(V: FloatArray, a: FloatArray) -> FloatArray:
    """`project_pow()` in numpy, vectorised over the rows."""
    V = np.asarray(V, dtype=np.float64)
    a = np.broadcast_to(np.asarray(a, dtype=np.float64), V.shape[:1])
    scale = np.maximum(1.0, np.abs(V).max(axis=1))
    tol = 1e-15 * scale
    P = np.zeros_like(V)
    inside = _in_cone(V, a, tol)
    polar = ~inside & _in_polar(V, a, tol)
    P[inside] = V[inside]
    rest = ~inside & ~polar
    flat = rest & (np.abs(V[:, 2]) <= tol)
    P[flat] = np.stack(
        [np.maximum(V[flat, 0], 0), np.maximum(V[flat, 1], 0), np.zeros(flat.sum())], 1
    )
    todo = rest & ~flat
    if np.any(todo):
        W, aw = V[todo], a[todo]
        u, upper = _root(W, aw)
        z0 = np.abs(W[:, 2])
        x, y = _xy_gap(W, aw, u * (z0 - u))
        r = np.where(upper, z0 - u, u)
        P[todo] = np.stack([x, y, np.sign(W[:, 2]) * r], axis=1)
    return P


class PowerCone(ThreeDimensionalCone):
    r"""A product of power cones $\{(x, y, z) : x^a y^{1-a} \ge |z|,\ x, y \ge 0\}$, one exponent
    $a \in (0, 1)$ per member (CVXPY's ``PowCone3D``; Clarabel's and SCS's order).

    Projection after Hien (2015): outside $K$ and its polar, the projection is
    $(x(r), y(r), \operatorname{sign}(z)\, r)$ with
    $x(r) = \bigl(x_0 + \sqrt{x_0^2 + 4 a r (|z_0| - r)}\bigr)/2$ (and $y$ alike with $1 - a$),
    $r$ the root in $(0, |z_0|)$ of $x(r)^a y(r)^{1-a} = r$, found by safeguarded Newton.  The
    Jacobian on that piece follows by implicit differentiation of the three equations
    defining $(x, y, r)$; elsewhere it is $I$ (inside $K$), $0$ (inside the polar cone) or, on
    the plane $z = 0$, the derivative of $(\max(x, 0), \max(y, 0), 0)$.
    """

    name = "power"

    def replicate(self, copies: int) -> PowerCone:
        return PowerCone(self.exponents * copies)

    def __init__(self, exponents: Sequence[float]) -> None:
        exps = tuple(float(a) for a in exponents)
        if any(not 0 < a < 1 for a in exps):
            raise ValueError(f"power cone exponents must lie in (0, 1), got {exps}")
        self.exponents = exps
        super().__init__(len(exps), np.asarray(exps, dtype=np.float64))

    def __repr__(self) -> str:
        return f"PowerCone(exponents={list(self.exponents)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PowerCone) and other.exponents == self.exponents

    def __hash__(self) -> int:
        return hash((type(self), self.exponents))

    def _project3(self, V: FloatArray, prm: FloatArray) -> FloatArray:
        return project_pow(V, prm)

    FACE_JACOBIANS: ClassVar[dict[int, FloatArray]] = {
        2: np.diag([1.0, 1.0, 0.0]),  # z = 0 with x, y > 0: (x, y, 0)
        5: np.diag([1.0, 0.0, 0.0]),  # z = 0, x > 0, y <= 0: (x, 0, 0)
        6: np.diag([0.0, 1.0, 0.0]),  # z = 0, x <= 0, y > 0: (0, y, 0)
    }  # code 7 (z = 0, x, y <= 0) projects to 0

    def _face_margins(self, V: FloatArray, P: FloatArray) -> list[FloatArray]:
        return [np.abs(P[:, 2]), np.abs(V[:, 0]), np.abs(V[:, 1])]

    def _face_regions(self, V: FloatArray, P: FloatArray, eps: FloatArray) -> IntArray:
        region = np.full(V.shape[0], self.SMOOTH, dtype=np.int64)
        flat = np.abs(P[:, 2]) <= eps
        region[flat] = 2
        region[flat & (V[:, 0] > 0) & (V[:, 1] <= 0)] = 5
        region[flat & (V[:, 0] <= 0) & (V[:, 1] > 0)] = 6
        region[flat & (V[:, 0] <= 0) & (V[:, 1] <= 0)] = 7
        return region

    def _smooth_jacobian(self, V: FloatArray, P: FloatArray, prm: FloatArray) -> FloatArray:
        """Implicit differentiation of Hien's equations for ``(x, y, r)``."""
        W, Pw, aw = V, P, prm
        x, y, r = Pw[:, 0], Pw[:, 1], np.abs(Pw[:, 2])
        x0, y0, z0 = W[:, 0], W[:, 1], np.abs(W[:, 2])
        sgn = np.sign(W[:, 2])
        k = z0 - 2 * r
        # G1 = x^2 - x0 x - a r(z0 - r), G2 = y^2 - y0 y - (1-a) r(z0 - r),
        # G3 = a log x + (1-a) log y - log r, unknowns (x, y, r), data (x0, y0, z0).
        Gu = np.zeros((x.size, 3, 3))
        Gu[:, 0, 0] = 2 * x - x0
        Gu[:, 0, 2] = -aw * k
        Gu[:, 1, 1] = 2 * y - y0
        Gu[:, 1, 2] = -(1 - aw) * k
        # G3 scaled by min(x, y, r) (its Gv row is zero): bounded entries even where one of
        # x, y, r underflows (seen: y = 7e-323 or 0 next to the face y = 0, which made D NaN).
        low = np.minimum(np.minimum(x, y), r)
        with np.errstate(divide="ignore", invalid="ignore"):
            Gu[:, 2, 0] = aw * np.where(x == low, 1.0, low / x)
            Gu[:, 2, 1] = (1 - aw) * np.where(y == low, 1.0, low / y)
            Gu[:, 2, 2] = -np.where(r == low, 1.0, low / r)
        Gv = np.zeros_like(Gu)
        Gv[:, 0, 0] = -x
        Gv[:, 1, 1] = -y
        Gv[:, 0, 2] = -aw * r * sgn
        Gv[:, 1, 2] = -(1 - aw) * r * sgn
        du: FloatArray = -np.linalg.solve(Gu, Gv).astype(np.float64)
        du[:, 2, :] *= sgn[:, None]  # z = sign(z0) r
        return du
