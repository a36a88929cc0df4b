"""The exponential cone ``cl{(r, s, t) : s > 0, s exp(r/s) <= t}`` (CVXPY's order)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .._typing import FloatArray, IntArray
from ._kernels import compiled_kernels
from ._pieces import ThreeDimensionalCone
from ._roots import bracketed_root

__all__ = ["ExponentialCone"]

_BIG = 1e15  # stands for infinity in the root bracket


def _h(V: FloatArray, rho: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The univariate function whose root gives the projection (Friberg 2021), and its
    derivative in ``rho``:
    ``h = ((rho - 1) r + s) e^rho - (r - rho s) e^-rho - (rho^2 - rho + 1) t``."""
    r, s, t = V[:, 0], V[:, 1], V[:, 2]
    ep, em = np.exp(rho), np.exp(-rho)
    f = ((rho - 1) * r + s) * ep - (r - rho * s) * em - (rho * (rho - 1) + 1) * t
    df = (rho * r + s) * ep + (r - (rho - 1) * s) * em - (2 * rho - 1) * t
    return f, df


def _primal_heuristic(V: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The nearer of two cheap points of K: on the face ``s = 0`` and straight up in ``t``."""
    r, s, t = V[:, 0], V[:, 1], V[:, 2]
    P = np.stack([np.minimum(r, 0.0), np.zeros_like(r), np.maximum(t, 0.0)], axis=1)
    dist = np.linalg.norm(V - P, axis=1)
    pos = s > 0
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        tp = np.where(
            pos, np.maximum(t, s * np.exp(np.where(pos, r / np.where(pos, s, 1), 0))), np.inf
        )
    better = pos & np.isfinite(tp) & ((tp - t) < dist)
    P[better] = np.stack([r[better], s[better], tp[better]], axis=1)
    dist[better] = (tp - t)[better]
    return P, dist


def _polar_heuristic(V: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The nearer of two cheap points of the polar cone ``-K*``."""
    r, s, t = V[:, 0], V[:, 1], V[:, 2]
    Q = np.stack([np.zeros_like(r), np.minimum(s, 0.0), np.minimum(t, 0.0)], axis=1)
    dist = np.linalg.norm(V - Q, axis=1)
    pos = r > 0
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        td = np.where(
            pos, np.minimum(t, -r * np.exp(np.where(pos, s / np.where(pos, r, 1), 0) - 1)), -np.inf
        )
    better = pos & np.isfinite(td) & ((t - td) < dist)
    Q[better] = np.stack([r[better], s[better], td[better]], axis=1)
    dist[better] = (t - td)[better]
    return Q, dist


def _bracket(V: FloatArray, pdist: FloatArray, ddist: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Lower and upper bounds on the root of ``h`` (Friberg 2021, section 4)."""
    r, s, t = V[:, 0], V[:, 1], V[:, 2]
    n = r.size
    baselow, baseupr = np.full(n, -_BIG), np.full(n, _BIG)
    low, upr = np.full(n, -_BIG), np.full(n, _BIG)
    Dp = np.sqrt(np.maximum(pdist**2 - np.minimum(s, 0) ** 2, 0.0))
    Dd = np.sqrt(np.maximum(ddist**2 - np.minimum(r, 0) ** 2, 0.0))
    disc = np.sqrt(np.maximum(r * r + s * s - r * s, 0.0))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        # bounds from the sign of t
        psi_p = np.where(r > s, (r - s + disc) / r, -s / (r - s - disc))
        ppsi = ((psi_p - 1) * r + s) / (psi_p * (psi_p - 1) + 1)
        psi_d = np.where(s > r, (r - disc) / s, (r - s) / (r + disc))
        dpsi = (r - psi_d * s) / (psi_d * (psi_d - 1) + 1)
        tpos, tneg = t > 0, t < 0
        low = np.where(tpos, np.maximum(low, np.log(t / ppsi)), low)
        upr = np.where(tneg, np.minimum(upr, -np.log(-t / dpsi)), upr)
        rpos = r > 0
        baselow = np.where(rpos, 1 - s / r, baselow)
        low = np.where(rpos, np.maximum(low, baselow), low)
        tpu = np.maximum(1e-12, np.minimum(Dd, Dp + t))
        om = np.exp(low) / (low * (low - 1) + 1)
        om = np.where(low < 2, np.minimum(om, np.exp(2.0) / 3), om)
        val = r * om
        sgn = np.where(val < 0, -1.0, 1.0)
        cand = np.maximum(low, baselow + tpu / np.maximum(np.abs(val), 1e-300) * sgn)
        upr = np.where(rpos, np.minimum(upr, cand), upr)
        spos = s > 0
        baseupr = np.where(spos, r / s, baseupr)
        upr = np.where(spos, np.minimum(upr, baseupr), upr)
        tdl = -np.maximum(1e-12, np.minimum(Dp, Dd - t))
        om = -np.exp(-upr) / (upr * (upr - 1) + 1)
        om = np.where(upr > -1, np.maximum(om, -np.exp(1.0) / 3), om)
        val = s * om
        sgn = np.where(val < 0, -1.0, 1.0)
        cand = np.minimum(upr, baseupr - tdl / np.maximum(np.abs(val), 1e-300) * sgn)
        low = np.where(spos, np.maximum(low, cand), low)
    low = np.nan_to_num(low, nan=-_BIG, posinf=_BIG, neginf=-_BIG)
    upr = np.nan_to_num(upr, nan=_BIG, posinf=_BIG, neginf=-_BIG)
    lo = np.clip(np.minimum(low, upr), baselow, baseupr)
    hi = np.clip(np.maximum(low, upr), baselow, baseupr)
    with np.errstate(over="ignore", invalid="ignore"):
        fl, _ = _h(V, lo)
        fu, _ = _h(V, hi)
    same = (lo != hi) & (fl * fu > 0)
    to_low = same & (np.abs(fl) < np.abs(fu))
    hi = np.where(to_low, lo, hi)
    lo = np.where(same & ~to_low, hi, lo)
    return lo, hi


def _root(V: FloatArray, lo: FloatArray, hi: FloatArray) -> FloatArray:
    """The root of ``h`` (increasing through it) inside ``[lo, hi]``."""

    def fun(idx: IntArray, rho: FloatArray) -> tuple[FloatArray, FloatArray]:
        with np.errstate(over="ignore", invalid="ignore"):
            return _h(V[idx], rho)

    return bracketed_root(fun, lo, hi, 0.5 * (lo + hi), rtol=1e-15)


def project_exp(V: FloatArray) -> FloatArray:
    """Euclidean projections of the rows of ``V`` onto the exponential cone (compiled when
    numba is installed, see ``_kernels.py``)."""
    kernels = compiled_kernels()
    if kernels is not None:
        return kernels.project_exp_rows(V)
    return project_exp_numpy(V)


def project_exp_numpy(V: FloatArray) -> FloatArray:
    """`project_exp()` in numpy, vectorised over the rows."""
    V = np.asarray(V, dtype=np.float64)
    P, pdist = _primal_heuristic(V)
    Q, ddist = _polar_heuristic(V)
    scale = np.maximum(1.0, np.abs(V).max(axis=1))
    tol = 1e-15 * scale
    err = np.abs(P + Q - V).max(axis=1)
    done = ((V[:, 1] <= 0) & (V[:, 0] <= 0)) | (np.minimum(pdist, ddist) <= tol)
    done |= (err <= tol) & (np.einsum("ij,ij->i", P, Q) <= tol * scale)
    todo = ~done
    if np.any(todo):
        W = V[todo]
        lo, hi = _bracket(W, pdist[todo], ddist[todo])
        rho = _root(W, lo, hi)
        r, s = W[:, 0], W[:, 1]
        quad = rho * (rho - 1) + 1
        # v = alpha (rho, 1, e^rho) + beta (1, 1 - rho, -e^-rho): compute the projection from
        # whichever coefficient suffers less cancellation.
        lin_p, lin_d = (rho - 1) * r + s, r - rho * s
        kappa_p = (np.abs((rho - 1) * r) + np.abs(s)) / np.maximum(np.abs(lin_p), 1e-300)
        kappa_d = (np.abs(r) + np.abs(rho * s)) / np.maximum(np.abs(lin_d), 1e-300)
        with np.errstate(over="ignore", invalid="ignore"):
            from_p = (
                np.stack([rho, np.ones_like(rho), np.exp(rho)], axis=1) * (lin_p / quad)[:, None]
            )
            polar = (
                np.stack([np.ones_like(rho), 1 - rho, -np.exp(-rho)], axis=1)
                * (lin_d / quad)[:, None]
            )
        from_d = W - polar
        cand = np.where((kappa_p <= kappa_d)[:, None], from_p, from_d)
        dist = np.linalg.norm(cand - W, axis=1)
        valid = (lin_p > 0) & (lin_d > 0) & np.all(np.isfinite(cand), axis=1)
        valid &= dist <= pdist[todo] * (1 + 1e-12)
        rows = np.flatnonzero(todo)[valid]
        P[rows] = cand[valid]
    return P


def _boundary_jacobian(P: FloatArray, Q: FloatArray) -> FloatArray:
    """Jacobian of the projection at points whose projection ``P`` lies on the smooth part of
    the boundary, from the Moreau pair ``(P, Q = v - P)``.

    With ``K = {g <= 0}`` for a convex ``g``, the optimality conditions
    ``P + mu grad g(P) = v``, ``g(P) = 0`` differentiate to

        J = M - M n n' M / (n' M n),   n = grad g(P),   M = (I + mu Hess g(P))^{-1}.

    Two descriptions of the same boundary keep every quantity of moderate size: where
    ``rho = r/s >= 0`` (``t >= s``), ``g = r - s log(t/s)`` with ``mu = Q_r`` and
    ``mu Hess g = (mu/s) u u'``, ``u = (0, 1, -s/t)``; where ``rho < 0`` (``t`` tiny),
    ``g = s exp(r/s) - t`` with ``mu = -Q_t`` and ``mu Hess g = (mu e^rho/s) w w'``,
    ``w = (1, -rho, 0)``.  Both Hessians have rank one, so ``M`` is explicit.  (The
    parametrisation by ``rho`` alone loses all accuracy near the faces ``s = 0``, ``t = 0``.)
    """
    r, s, t = P[:, 0], P[:, 1], P[:, 2]
    one, zero = np.ones_like(s), np.zeros_like(s)
    with np.errstate(all="ignore"):
        rho = r / s
        log_side = rho >= 0
        # g = r - s log(t/s)
        u_log = np.stack([zero, one, -s / t], axis=1)
        k_log = Q[:, 0] / s
        n_log = np.stack([one, 1.0 - np.log(t / s), -s / t], axis=1)
        # g = s exp(r/s) - t
        e = np.exp(rho)
        u_exp = np.stack([one, -rho, zero], axis=1)
        k_exp = -Q[:, 2] * e / s
        n_exp = np.stack([e, e * (1.0 - rho), -one], axis=1)
        u = np.where(log_side[:, None], u_log, u_exp)
        k = np.where(log_side, k_log, k_exp)
        n = np.where(log_side[:, None], n_log, n_exp)
        c = k / (1.0 + k * np.einsum("ij,ij->i", u, u))
        M = np.eye(3)[None] - c[:, None, None] * u[:, :, None] * u[:, None, :]
        Mn = np.einsum("kij,kj->ki", M, n)
        J = M - Mn[:, :, None] * Mn[:, None, :] / np.einsum("ki,ki->k", n, Mn)[:, None, None]
    return np.nan_to_num(J)


class ExponentialCone(ThreeDimensionalCone):
    r"""A product of exponential cones $\operatorname{cl}\{(r, s, t) : s > 0,\ s e^{r/s} \le t\}$.

    Coordinates are in CVXPY's order (also Clarabel's and SCS's).  The projection follows
    Friberg (2021): cheap candidates on the cone's faces first, otherwise a safeguarded
    Newton search for the root $\rho$ of a univariate function, the projection being
    $\alpha (\rho, 1, e^\rho)$.  Its Jacobian on that piece comes from differentiating the
    projection's optimality conditions implicitly (see ``_boundary_jacobian``).

    The other pieces are $I$ (inside $K$), $0$ (inside the polar cone) and
    $\operatorname{diag}(1, 0, \mathbb{1}[t > 0])$ (projection onto the face $s = 0$ when
    $r, s \le 0$).
    """

    name = "exponential"

    def replicate(self, copies: int) -> ExponentialCone:
        return ExponentialCone(self.count * copies)

    def __repr__(self) -> str:
        return f"ExponentialCone(count={self.count})"

    def _project3(self, V: FloatArray, prm: FloatArray) -> FloatArray:
        return project_exp(V)

    FACE_JACOBIANS: ClassVar[dict[int, FloatArray]] = {
        2: np.diag([1.0, 0.0, 1.0]),  # r, s <= 0, t > 0: (r, 0, t)
        3: np.diag([1.0, 0.0, 0.0]),  # r, s <= 0, t <= 0: (r, 0, 0)
        5: np.diag([0.0, 0.0, 1.0]),  # limit of the smooth piece at the face s = 0, t > 0
    }

    def _face_margins(self, V: FloatArray, P: FloatArray) -> list[FloatArray]:
        return [np.abs(P[:, 1]), np.abs(P[:, 2]), np.abs(V[:, 0])]

    def _face_regions(self, V: FloatArray, P: FloatArray, eps: FloatArray) -> IntArray:
        region = np.full(V.shape[0], self.SMOOTH, dtype=np.int64)
        face = P[:, 1] <= eps
        region[face & (P[:, 2] > eps)] = 2
        region[face & (P[:, 2] <= eps)] = 3
        # r > 0 and s << 0: the smooth piece so close to the face s = 0 that the projection
        # is numerically on it; its Jacobian is the limit of the smooth piece's (code 6: 0).
        limit = face & (V[:, 0] > eps)
        region[limit & (P[:, 2] > eps)] = 5
        region[limit & (P[:, 2] <= eps)] = 6
        return region

    def _smooth_jacobian(self, V: FloatArray, P: FloatArray, prm: FloatArray) -> FloatArray:
        return _boundary_jacobian(P, V - P)
