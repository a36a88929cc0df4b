"""numba kernels behind ``_kernels.compiled_kernels`` (see its docstring)."""

from __future__ import annotations

import math

import numba
import numpy as np

from .._typing import FloatArray

__all__ = [
    "dual_jacobian_rows",
    "project_exp_rows",
    "project_pow_rows",
    "project_psd_rows",
    "project_soc_rows",
    "psd_jacobian_rows",
    "soc_jacobian_rows",
]

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
_BIG = 1e15
_TINY = float(np.finfo(np.float64).tiny)


@_jit
def _nmax(a: float, b: float) -> float:
    """``max`` that propagates NaN like ``np.maximum``."""
    if a != a or b != b:
        return math.nan
    return a if a > b else b


@_jit
def _nmin(a: float, b: float) -> float:
    if a != a or b != b:
        return math.nan
    return a if a < b else b


@_jit
def _h(r: float, s: float, t: float, rho: float) -> tuple[float, float]:
    ep, em = np.exp(rho), np.exp(-rho)
    f = ((rho - 1) * r + s) * ep - (r - rho * s) * em - (rho * (rho - 1) + 1) * t
    df = (rho * r + s) * ep + (r - (rho - 1) * s) * em - (2 * rho - 1) * t
    return f, df


@_jit
def _root_step(
    x: float,
    f: float,
    df: float,
    lo: float,
    hi: float,
    flo: float,
    fhi: float,
    last: int,
    rtol: float,
) -> tuple[float, float, float, float, float, int, bool]:
    """One iteration of ``_roots.bracketed_root`` for one increasing function with value
    ``f`` and slope ``df`` at ``x``: shrink the bracket (Illinois-halving the end that did
    not move twice), then a Newton step if it stays inside, else false position, else
    bisection.  Returns the next iterate, the bracket, ``last`` and whether to stop."""
    if f < 0:
        lo, flo = x, f
        if last == 1:
            fhi = 0.5 * fhi
        last = 1
    else:
        hi, fhi = x, f
        if last == -1:
            flo = 0.5 * flo
        last = -1
    newton = x - f / df
    falsi = (lo * fhi - hi * flo) / (fhi - flo)
    if np.isfinite(newton) and lo < newton < hi:
        nxt = newton
    elif np.isfinite(falsi) and lo < falsi < hi:
        nxt = falsi
    else:
        nxt = 0.5 * (lo + hi)
    if f == 0:
        nxt = x
    scale = max(abs(x), _TINY)
    done = f == 0 or abs(nxt - x) <= rtol * scale or hi - lo <= rtol * scale
    return nxt, lo, hi, flo, fhi, last, done


@_jit
def _exp_root(r: float, s: float, t: float, lo: float, hi: float) -> float:
    """``_roots.bracketed_root`` for one member, with ``rtol = 1e-15``."""
    x = 0.5 * (lo + hi)
    if not lo < hi:
        return x
    flo, _ = _h(r, s, t, lo)
    fhi, _ = _h(r, s, t, hi)
    last = 0
    for _ in range(100):
        f, df = _h(r, s, t, x)
        x, lo, hi, flo, fhi, last, done = _root_step(x, f, df, lo, hi, flo, fhi, last, 1e-15)
        if done:
            break
    return x


@_jit
def _exp_bracket(r: float, s: float, t: float, pdist: float, ddist: float) -> tuple[float, float]:
    """``_exp._bracket`` for one member."""
    baselow, baseupr, low, upr = -_BIG, _BIG, -_BIG, _BIG
    Dp = math.sqrt(max(pdist**2 - min(s, 0.0) ** 2, 0.0))
    Dd = math.sqrt(max(ddist**2 - min(r, 0.0) ** 2, 0.0))
    disc = math.sqrt(max(r * r + s * s - r * s, 0.0))
    psi_p = (r - s + disc) / r if r > s else -s / (r - s - disc)
    ppsi = ((psi_p - 1) * r + s) / (psi_p * (psi_p - 1) + 1)
    psi_d = (r - disc) / s if s > r else (r - s) / (r + disc)
    dpsi = (r - psi_d * s) / (psi_d * (psi_d - 1) + 1)
    if t > 0:
        low = _nmax(low, np.log(t / ppsi))
    if t < 0:
        upr = _nmin(upr, -np.log(-t / dpsi))
    if r > 0:
        baselow = 1 - s / r
        low = _nmax(low, baselow)
        tpu = _nmax(1e-12, _nmin(Dd, Dp + t))
        om = np.exp(low) / (low * (low - 1) + 1)
        if low < 2:
            om = _nmin(om, math.exp(2.0) / 3)
        val = r * om
        sgn = -1.0 if val < 0 else 1.0
        cand = _nmax(low, baselow + tpu / _nmax(abs(val), 1e-300) * sgn)
        upr = _nmin(upr, cand)
    if s > 0:
        baseupr = r / s
        upr = _nmin(upr, baseupr)
        tdl = -_nmax(1e-12, _nmin(Dp, Dd - t))
        om = -np.exp(-upr) / (upr * (upr - 1) + 1)
        if upr > -1:
            om = _nmax(om, -math.exp(1.0) / 3)
        val = s * om
        sgn = -1.0 if val < 0 else 1.0
        cand = _nmin(upr, baseupr - tdl / _nmax(abs(val), 1e-300) * sgn)
        low = _nmax(low, cand)
    if low != low or low == -np.inf:
        low = -_BIG
    elif low == np.inf:
        low = _BIG
    if upr != upr or upr == np.inf:
        upr = _BIG
    elif upr == -np.inf:
        upr = -_BIG
    lo = min(max(min(low, upr), baselow), baseupr)
    hi = min(max(max(low, upr), baselow), baseupr)
    fl, _ = _h(r, s, t, lo)
    fu, _ = _h(r, s, t, hi)
    if lo != hi and fl * fu > 0:
        if abs(fl) < abs(fu):
            hi = lo
        else:
            lo = hi
    return lo, hi


@_jit
def _exp_member(r: float, s: float, t: float, out: FloatArray) -> None:
    """``_exp.project_exp`` for one member, written into ``out``."""
    # Primal heuristic: the face s = 0, or straight up in t.
    p0, p1, p2 = min(r, 0.0), 0.0, max(t, 0.0)
    pdist = math.sqrt((r - p0) ** 2 + s**2 + (t - p2) ** 2)
    if s > 0:
        tp = max(t, s * np.exp(r / s))
        if np.isfinite(tp) and tp - t < pdist:
            p0, p1, p2, pdist = r, s, tp, tp - t
    # Polar heuristic.
    q0, q1, q2 = 0.0, min(s, 0.0), min(t, 0.0)
    ddist = math.sqrt(r**2 + (s - q1) ** 2 + (t - q2) ** 2)
    if r > 0:
        td = min(t, -r * np.exp(s / r - 1))
        if np.isfinite(td) and t - td < ddist:
            q0, q1, q2, ddist = r, s, td, t - td
    out[0], out[1], out[2] = p0, p1, p2
    scale = max(1.0, abs(r), abs(s), abs(t))
    tol = 1e-15 * scale
    err = max(abs(p0 + q0 - r), abs(p1 + q1 - s), abs(p2 + q2 - t))
    if (s <= 0 and r <= 0) or min(pdist, ddist) <= tol:
        return
    if err <= tol and p0 * q0 + p1 * q1 + p2 * q2 <= tol * scale:
        return
    lo, hi = _exp_bracket(r, s, t, pdist, ddist)
    rho = _exp_root(r, s, t, lo, hi)
    quad = rho * (rho - 1) + 1
    lin_p, lin_d = (rho - 1) * r + s, r - rho * s
    kappa_p = (abs((rho - 1) * r) + abs(s)) / max(abs(lin_p), 1e-300)
    kappa_d = (abs(r) + abs(rho * s)) / max(abs(lin_d), 1e-300)
    if kappa_p <= kappa_d:
        c = lin_p / quad
        c0, c1, c2 = rho * c, c, np.exp(rho) * c
    else:
        c = lin_d / quad
        c0, c1, c2 = r - c, s - (1 - rho) * c, t + np.exp(-rho) * c
    finite = np.isfinite(c0) and np.isfinite(c1) and np.isfinite(c2)
    dist = math.sqrt((c0 - r) ** 2 + (c1 - s) ** 2 + (c2 - t) ** 2) if finite else np.inf
    if lin_p > 0 and lin_d > 0 and finite and dist <= pdist * (1 + 1e-12):
        out[0], out[1], out[2] = c0, c1, c2


@_jit
def _project_exp_rows(V: FloatArray, out: FloatArray) -> None:
    for i in range(V.shape[0]):
        _exp_member(V[i, 0], V[i, 1], V[i, 2], out[i])


@_jit
def _root_pos(c: float, q: float) -> float:
    root = math.sqrt(c * c + 4 * q)
    if c >= 0:
        return 0.5 * (c + root)
    return 2 * q / (root - c) if root - c > 0 else 0.0


@_jit
def _pow_f(x0: float, y0: float, z0: float, a: float, u: float, upper: bool) -> tuple[float, float]:
    """``_pow._f`` for one member (``z0 = |z|``)."""
    gap = u * (z0 - u)
    g = max(gap, 0.0)
    x, y = _root_pos(x0, a * g), _root_pos(y0, (1 - a) * g)
    geo = x**a * y ** (1 - a)
    dgap = z0 - 2 * u
    dx = a * dgap / np.sqrt(x0**2 + 4 * a * gap)
    dy = (1 - a) * dgap / np.sqrt(y0**2 + 4 * (1 - a) * gap)
    dgeo = a * (y / x) ** (1 - a) * dx + (1 - a) * (x / y) ** a * dy
    if upper:
        return -(geo - (z0 - u)), -(dgeo + 1)
    return geo - u, dgeo - 1


@_jit
def _pow_root(x0: float, y0: float, z0: float, a: float, upper: bool) -> float:
    """``_roots.bracketed_root`` on ``-_pow_f`` over ``[0, |z0|/2]`` (``rtol = 4e-16``)."""
    lo, hi = 0.0, 0.5 * z0
    x = 0.5 * hi
    if not lo < hi:
        return x
    f, _ = _pow_f(x0, y0, z0, a, lo, upper)
    flo = -f
    f, _ = _pow_f(x0, y0, z0, a, hi, upper)
    fhi = -f
    last = 0
    for _ in range(100):
        f, df = _pow_f(x0, y0, z0, a, x, upper)
        x, lo, hi, flo, fhi, last, done = _root_step(x, -f, -df, lo, hi, flo, fhi, last, 4e-16)
        if done:
            break
    return x


@_jit
def _pow_member(x0: float, y0: float, z: float, a: float, out: FloatArray) -> None:
    """``_pow.project_pow`` for one member, written into ``out``."""
    scale = max(1.0, abs(x0), abs(y0), abs(z))
    tol = 1e-15 * scale
    geo = x0**a * y0 ** (1 - a) if x0 > 0 and y0 > 0 else 0.0
    if x0 >= 0 and y0 >= 0 and geo >= abs(z) - tol:
        out[0], out[1], out[2] = x0, y0, z
        return
    u, v = -x0, -y0
    geo = (u / a) ** a * (v / (1 - a)) ** (1 - a) if u > 0 and v > 0 else 0.0
    if u >= 0 and v >= 0 and geo >= abs(z) - tol:
        out[0], out[1], out[2] = 0.0, 0.0, 0.0
        return
    if abs(z) <= tol:
        out[0], out[1], out[2] = max(x0, 0.0), max(y0, 0.0), 0.0
        return
    z0 = abs(z)
    mid, _ = _pow_f(x0, y0, z0, a, 0.5 * z0, False)
    upper = mid > 0
    w = _pow_root(x0, y0, z0, a, upper)
    g = max(w * (z0 - w), 0.0)
    r = z0 - w if upper else w
    out[0] = _root_pos(x0, a * g)
    out[1] = _root_pos(y0, (1 - a) * g)
    out[2] = np.sign(z) * r


@_jit
def _project_pow_rows(V: FloatArray, a: FloatArray, out: FloatArray) -> None:
    for i in range(V.shape[0]):
        _pow_member(V[i, 0], V[i, 1], V[i, 2], a[i], out[i])


def project_exp_rows(V: FloatArray) -> FloatArray:
    """Projections of the rows of ``V`` (``(N, 3)``) onto the exponential cone."""
    V = np.ascontiguousarray(V, dtype=np.float64)
    out = np.empty_like(V)
    _project_exp_rows(V, out)
    return out


def project_pow_rows(V: FloatArray, a: FloatArray) -> FloatArray:
    """Projections of the rows of ``V`` onto power cones with exponents ``a`` (one per row)."""
    V = np.ascontiguousarray(V, dtype=np.float64)
    a = np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype=np.float64), V.shape[:1]))
    out = np.empty_like(V)
    _project_pow_rows(V, a, out)
    return out


# --- Jacobians of the dual projections (``ThreeDimensionalCone.dual_jacobian_blocks``) ---
#
# Per member of ``v``, the numpy algorithm of ``_pieces.py``: ``W = -v``, ``P = Pi_K(W)``, the
# piece label of ``_region3``, ``D = I - JPi_K(W)`` on that piece; where the margin to the
# faces is small (``_suspects``), the labels of the six neighbours ``W +/- delta e_k``, and at
# a kink the neighbour's ``D`` with the largest (``active``) or smallest trace.

_INSIDE, _POLAR, _SMOOTH = 0, 1, 4
_EXP, _POW = 0, 1
_HUGE = float(np.finfo(np.float64).max)


@_jit
def _finite(x: float) -> float:
    """``np.nan_to_num`` of one number."""
    if x != x:
        return 0.0
    if x == np.inf:
        return _HUGE
    if x == -np.inf:
        return -_HUGE
    return x


@_jit
def _exp_boundary(P: FloatArray, Q: FloatArray, J: FloatArray) -> None:
    """``_exp._boundary_jacobian`` for one member, written into ``J`` (3 x 3)."""
    r, s, t = P[0], P[1], P[2]
    rho = r / s
    if rho >= 0:
        u0, u1, u2 = 0.0, 1.0, -s / t
        k = Q[0] / s
        n0, n1, n2 = 1.0, 1.0 - np.log(t / s), -s / t
    else:
        e = np.exp(rho)
        u0, u1, u2 = 1.0, -rho, 0.0
        k = -Q[2] * e / s
        n0, n1, n2 = e, e * (1.0 - rho), -1.0
    c = k / (1.0 + k * (u0 * u0 + u1 * u1 + u2 * u2))
    u = (u0, u1, u2)
    M = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            M[i, j] = (1.0 if i == j else 0.0) - c * u[i] * u[j]
    Mn = np.empty(3)
    for i in range(3):
        Mn[i] = M[i, 0] * n0 + M[i, 1] * n1 + M[i, 2] * n2
    nMn = n0 * Mn[0] + n1 * Mn[1] + n2 * Mn[2]
    for i in range(3):
        for j in range(3):
            J[i, j] = _finite(M[i, j] - Mn[i] * Mn[j] / nMn)


@_jit
def _solve3(G: FloatArray, R: FloatArray) -> None:
    """``R <- G^{-1} R`` for 3 x 3 ``G`` (Gaussian elimination with partial pivoting, as
    LAPACK's ``gesv``); ``G`` is overwritten."""
    for col in range(3):
        piv = col
        for row in range(col + 1, 3):
            if abs(G[row, col]) > abs(G[piv, col]):
                piv = row
        if piv != col:
            for j in range(3):
                G[col, j], G[piv, j] = G[piv, j], G[col, j]
                R[col, j], R[piv, j] = R[piv, j], R[col, j]
        for row in range(col + 1, 3):
            f = G[row, col] / G[col, col]
            for j in range(3):
                G[row, j] -= f * G[col, j]
                R[row, j] -= f * R[col, j]
    for col in range(2, -1, -1):
        for j in range(3):
            acc = R[col, j]
            for k in range(col + 1, 3):
                acc -= G[col, k] * R[k, j]
            R[col, j] = acc / G[col, col]


@_jit
def _pow_smooth(W: FloatArray, P: FloatArray, a: float, J: FloatArray) -> None:
    """``PowerCone._smooth_jacobian`` for one member, written into ``J``."""
    x, y, r = P[0], P[1], abs(P[2])
    x0, y0, z0 = W[0], W[1], abs(W[2])
    sgn = np.sign(W[2])
    k = z0 - 2 * r
    G = np.zeros((3, 3))
    G[0, 0] = 2 * x - x0
    G[0, 2] = -a * k
    G[1, 1] = 2 * y - y0
    G[1, 2] = -(1 - a) * k
    low = min(x, y, r)  # G3 scaled as in ``PowerCone._smooth_jacobian``
    G[2, 0] = a * (1.0 if x == low else low / x)
    G[2, 1] = (1 - a) * (1.0 if y == low else low / y)
    G[2, 2] = -(1.0 if r == low else low / r)
    J[:, :] = 0.0  # -Gv
    J[0, 0] = x
    J[1, 1] = y
    J[0, 2] = a * r * sgn
    J[1, 2] = (1 - a) * r * sgn
    _solve3(G, J)
    for j in range(3):
        J[2, j] *= sgn


@_jit
def _piece(kind: int, W: FloatArray, a: float, P: FloatArray, Q: FloatArray, J: FloatArray) -> int:
    """Project ``W`` into ``P``, write ``JPi_K(W)`` on its piece into ``J``, return the piece
    label (``_region3``)."""
    w0, w1, w2 = W[0], W[1], W[2]
    if kind == _EXP:
        _exp_member(w0, w1, w2, P)
    else:
        _pow_member(w0, w1, w2, a, P)
    eps = 1e-12 * max(1.0, abs(w0), abs(w1), abs(w2))
    region = _SMOOTH
    if kind == _EXP:
        if P[1] <= eps:
            region = 2 if P[2] > eps else 3
            if w0 > eps:
                region = 5 if P[2] > eps else 6
    elif abs(P[2]) <= eps:
        region = 2
        if w0 > 0 and w1 <= 0:
            region = 5
        elif w0 <= 0 and w1 > 0:
            region = 6
        elif w0 <= 0 and w1 <= 0:
            region = 7
    if math.sqrt(P[0] ** 2 + P[1] ** 2 + P[2] ** 2) <= eps:
        region = _POLAR
    if math.sqrt((w0 - P[0]) ** 2 + (w1 - P[1]) ** 2 + (w2 - P[2]) ** 2) <= eps:
        region = _INSIDE
    J[:, :] = 0.0
    if region == _INSIDE:
        J[0, 0] = J[1, 1] = J[2, 2] = 1.0
    elif region == _SMOOTH:
        if kind == _EXP:
            Q[0], Q[1], Q[2] = w0 - P[0], w1 - P[1], w2 - P[2]
            _exp_boundary(P, Q, J)
        else:
            _pow_smooth(W, P, a, J)
    elif kind == _EXP:  # FACE_JACOBIANS of ExponentialCone (code 6: 0)
        if region == 2:
            J[0, 0] = J[2, 2] = 1.0
        elif region == 3:
            J[0, 0] = 1.0
        elif region == 5:
            J[2, 2] = 1.0
    elif region == 2:  # FACE_JACOBIANS of PowerCone (code 7: 0)
        J[0, 0] = J[1, 1] = 1.0
    elif region == 5:
        J[0, 0] = 1.0
    elif region == 6:
        J[1, 1] = 1.0
    return region


@_jit
def _margin(kind: int, W: FloatArray, P: FloatArray) -> float:
    """``_margin3``: distances to ``K``, to the polar and to the faces."""
    near = min(
        math.sqrt((W[0] - P[0]) ** 2 + (W[1] - P[1]) ** 2 + (W[2] - P[2]) ** 2),
        math.sqrt(P[0] ** 2 + P[1] ** 2 + P[2] ** 2),
    )
    if kind == _EXP:
        return min(near, abs(P[1]), abs(P[2]), abs(W[0]))
    return min(near, abs(P[2]), abs(W[0]), abs(W[1]))


@_jit
def _dual_jacobian_rows(
    kind: int, V: FloatArray, alpha: FloatArray, tol: float, active: bool, D: FloatArray
) -> None:
    W, N = np.empty(3), np.empty(3)
    P, Q = np.empty(3), np.empty(3)
    J, Jn = np.empty((3, 3)), np.empty((3, 3))
    for i in range(V.shape[0]):
        W[0], W[1], W[2] = -V[i, 0], -V[i, 1], -V[i, 2]
        region = _piece(kind, W, alpha[i], P, Q, J)
        for r in range(3):
            for c in range(3):
                D[i, r, c] = (1.0 if r == c else 0.0) - J[r, c]
        delta = 10.0 * max(tol, 1e-10 * max(1.0, abs(W[0]), abs(W[1]), abs(W[2])))
        if _margin(kind, W, P) > 100.0 * delta:
            continue
        kinked = False
        best = 0.0
        for k in range(6):  # _pieces._OFFSETS: +e_0, +e_1, +e_2, -e_0, -e_1, -e_2
            N[0], N[1], N[2] = W[0], W[1], W[2]
            N[k % 3] += delta if k < 3 else -delta
            label = _piece(kind, N, alpha[i], P, Q, Jn)
            kinked = kinked or label != region
            trace = 3.0 - Jn[0, 0] - Jn[1, 1] - Jn[2, 2]
            if k == 0 or (trace > best if active else trace < best):
                best = trace
                J[:, :] = Jn
        if kinked:
            for r in range(3):
                for c in range(3):
                    D[i, r, c] = (1.0 if r == c else 0.0) - J[r, c]


def dual_jacobian_rows(
    kind: str, V: FloatArray, a: FloatArray, tol: float, active: bool
) -> FloatArray:
    """``D = I - JPi_K(-v)`` (``(N, 3, 3)``) for the rows ``v`` of ``V``: exponential cones
    (``kind="exponential"``) or power cones with exponents ``a`` (one per row), the element
    at kinks chosen as ``ThreeDimensionalCone.dual_jacobian_blocks`` does (``active``: the
    neighbouring piece with the largest trace of ``D``)."""
    V = np.ascontiguousarray(V, dtype=np.float64)
    a = np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype=np.float64), V.shape[:1]))
    D = np.empty((V.shape[0], 3, 3))
    _dual_jacobian_rows(_EXP if kind == "exponential" else _POW, V, a, float(tol), active, D)
    return D


_SQRT2 = math.sqrt(2.0)


@_jit
def project_psd_rows(lam: FloatArray, U: FloatArray) -> FloatArray:
    """Canonical svecs of ``U diag(max(lam, 0)) U'`` per member (``lam`` ``(n, k)``, ``U``
    ``(n, k, k)``): ``PSDCone.project`` from its eigen-decompositions."""
    n, k = lam.shape
    out = np.empty((n, k * (k + 1) // 2))
    for e in range(n):
        p = 0
        for j in range(k):
            for i in range(j + 1):
                acc = 0.0
                for s in range(k):
                    if lam[e, s] > 0.0:
                        acc += U[e, i, s] * lam[e, s] * U[e, j, s]
                out[e, p] = acc if i == j else acc * _SQRT2
                p += 1
    return out


@_jit
def psd_jacobian_rows(lam: FloatArray, U: FloatArray, active: bool, tol: float) -> FloatArray:
    """``PSDCone.dual_jacobian_blocks`` from the eigen-decompositions: per member the
    ``(d, d)`` matrix ``K' diag(omega) K`` in canonical svec coordinates, where column ``m``
    of ``K`` is svec of ``U' E_m U`` (``E_m`` the svec basis matrices; ``K`` is orthogonal)
    and ``omega`` holds the divided differences of ``max(., 0)`` at the eigenvalue pairs, in
    svec order (``active`` chooses 1 or 0 where both are within ``tol`` of zero)."""
    n, k = lam.shape
    d = k * (k + 1) // 2
    out = np.empty((n, d, d))
    KT = np.empty((d, d))
    W = np.empty((d, d))
    omega = np.empty(d)
    for e in range(n):
        q = 0
        for t in range(k):
            for s in range(t + 1):
                a, b = lam[e, s], lam[e, t]
                if abs(a) <= tol and abs(b) <= tol:
                    omega[q] = 1.0 if active else 0.0
                elif abs(a - b) <= 1e-12 * max(1.0, max(abs(a), abs(b))):
                    omega[q] = 1.0 if a + b > 0.0 else 0.0
                else:
                    omega[q] = (max(a, 0.0) - max(b, 0.0)) / (a - b)
                q += 1
        # KT[m, l] = h_m c_l (U[p, i] U[q, j] + U[q, i] U[p, j]) for m = (p, q), l = (i, j):
        # h_m = 1/2 on the diagonal (the two terms coincide), 1/sqrt(2) off it; c_l the svec
        # scaling of entry l.
        m = 0
        for qq in range(k):
            for p in range(qq + 1):
                h = 0.5 if p == qq else 1.0 / _SQRT2
                q = 0
                for j in range(k):
                    for i in range(j + 1):
                        c = h if i == j else h * _SQRT2
                        value = c * (U[e, p, i] * U[e, qq, j] + U[e, qq, i] * U[e, p, j])
                        KT[m, q] = value
                        W[m, q] = value * omega[q]
                        q += 1
                m += 1
        out[e] = W @ KT.T
    return out


@_jit
def _soc_norm(block: FloatArray, e: int) -> float:
    acc = 0.0
    for i in range(1, block.shape[1]):
        acc += block[e, i] * block[e, i]
    return math.sqrt(acc)


@_jit
def project_soc_rows(block: FloatArray) -> FloatArray:
    """``SecondOrderCone.project`` for the members (rows ``(t, u)``) of one size."""
    k, d = block.shape
    out = np.zeros((k, d))
    for e in range(k):
        t = block[e, 0]
        r = _soc_norm(block, e)
        if r <= t:
            out[e, :] = block[e, :]
        elif r > -t:
            scale = 0.5 * (t + r)
            out[e, 0] = scale
            for i in range(1, d):
                out[e, i] = scale / r * block[e, i]
    return out


@_jit
def soc_jacobian_rows(block: FloatArray, active: bool, tol: float) -> FloatArray:
    """``SecondOrderCone.dual_jacobian_blocks`` for the members of one size: the identity,
    zero or the boundary formula per member, the piece at a kink chosen as there."""
    k, d = block.shape
    out = np.zeros((k, d, d))
    for e in range(k):
        t = block[e, 0]
        r = _soc_norm(block, e)
        on_k = abs(r - t) <= tol
        on_polar = abs(r + t) <= tol
        if abs(t) <= tol and r <= tol:  # the origin
            identity, zero = active, not active
        else:
            identity = active if on_k else (r <= t and not on_polar)
            zero = (not active) if on_polar else (r <= -t and not on_k)
        if identity:
            for i in range(d):
                out[e, i, i] = 1.0
        elif not zero:
            rf = max(r, _TINY)
            ratio = t / rf
            out[e, 0, 0] = 0.5
            for i in range(1, d):
                wi = block[e, i] / rf
                out[e, 0, i] = 0.5 * wi
                out[e, i, 0] = 0.5 * wi
                for j in range(1, d):
                    wj = block[e, j] / rf
                    out[e, i, j] = -0.5 * ratio * wi * wj
                out[e, i, i] += 0.5 * (1.0 + ratio)
    return out
