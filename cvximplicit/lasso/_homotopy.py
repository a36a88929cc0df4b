"""The exact LASSO criterion along the whole penalty range, by homotopy.

On an interval of ``alpha`` where the support ``S`` and the signs ``s`` do not change, the
implicit derivative ``d beta_S / d alpha = -H^{-1} s`` (``H = X_S'X_S/n``) is constant:
``beta(alpha)`` is piecewise linear and every criterion built from residuals (held-out MSE,
SURE) is piecewise quadratic.  Integrating that derivative exactly between its kinks is the
LARS-lasso homotopy (written here so that every breakpoint is re-solved exactly and its
optimality conditions checked, no round-off accumulating); with the breakpoints of every fold
merged, the criterion is one quadratic per interval and its global minimum over
``[alpha_min, alpha_max]`` is found in closed form.  The nonsmooth points are the
breakpoints themselves, where the criterion can attain its minimum with one-sided slopes of
opposite signs.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .._blas import single_thread_blas
from .._compiled import compiled
from .._typing import FloatArray
from ._linalg import Fold, columns, correlations

__all__ = ["CriterionPath", "HomotopyWarning", "exact_criterion_path", "homotopy_feasible"]

#: largest residual array (evaluation rows x merged breakpoints over all folds) the
#: homotopy may hold; beyond it the estimators use a coarse grid instead.
MAX_ENTRIES = 25_000_000


@dataclasses.dataclass
class CriterionPath:
    """A LASSO tuning criterion along the whole penalty range, exactly.

    ``alphas`` are the breakpoints of every fold's path merged (decreasing), ``values`` the
    criterion there and ``support`` the mean support size; between two breakpoints the
    criterion is a quadratic in ``alpha``.  ``best_alpha``/``best_value`` is its global
    minimum over the range.
    """

    alphas: FloatArray
    values: FloatArray
    support: FloatArray
    best_alpha: float
    best_value: float
    #: smallest penalty covered: ``alpha_min`` unless a fold's path stopped early
    #: (its optimality check failed, the training residual vanished, or ``max_steps``)
    lowest: float
    #: each fold's coefficients at ``best_alpha`` (exact up to round-off; warm starts)
    coefs: list[FloatArray]
    messages: list[str]
    #: when the minimum sits at a breakpoint (a kink of ``beta(alpha)``): the one-sided
    #: slopes ``dC/dalpha`` from below and from above (``None`` for an interior minimum,
    #: where the slope is zero)
    slopes: tuple[float, float] | None = None
    #: per interval ``[alphas[i+1], alphas[i]]``: ``(a, b, c)`` with the criterion
    #: ``a t^2 + 2 b t + c`` at ``alpha = alphas[i+1] + t (alphas[i] - alphas[i+1])``
    quadratics: FloatArray | None = None
    #: the criterion of each fold at the breakpoints (``breakpoints x folds``; their mean
    #: is ``values``)
    fold_values: FloatArray | None = None

    def __call__(self, alpha: FloatArray | float) -> FloatArray:
        """The criterion at any penalties inside the covered range (exact between kinks;
        at a breakpoint, the value there)."""
        at = np.atleast_1d(np.asarray(alpha, dtype=np.float64))
        if np.any(at < self.alphas[-1] * (1 - 1e-12)) or np.any(at > self.alphas[0] * (1 + 1e-12)):
            raise ValueError(
                f"alpha must lie in the covered range [{self.alphas[-1]:.6g}, {self.alphas[0]:.6g}]"
            )
        if self.quadratics is None or self.alphas.size < 2:
            return np.full(at.size, self.values[0])
        i, t = _segments(self.alphas, at)  # t: position in the interval, 1 at its top
        qa, qb, qc = self.quadratics[i].T
        out = qa * t**2 + 2 * qb * t + qc
        # at a breakpoint: its own value (SURE jumps there)
        return np.where(t == 1, self.values[i], np.where(t == 0, self.values[i + 1], out))


def max_steps(n: int, p: int) -> int:
    """Breakpoints allowed on a LASSO path (coordinates can leave and re-enter)."""
    return 10 * min(n, p) + 100


def homotopy_feasible(folds: list[Fold], criterion: str) -> bool:
    """Whether the residuals on the merged breakpoints (``rows x folds x breakpoints``, with
    a path's length estimated as ``3 min(n, p) + 100``) fit in `MAX_ENTRIES`."""
    n, p = folds[0].X.shape
    rows = sum((f.y if criterion == "sure" else f.y_val).size for f in folds)
    return rows * len(folds) * (3 * min(n, p) + 100) <= MAX_ENTRIES


class HomotopyWarning(UserWarning):
    """The LASSO homotopy repaired a breakpoint, or stopped before ``alpha_min``; the
    message gives the penalty and the reason (also kept in ``CriterionPath.messages``)."""


_potrs, _trtrs = scipy.linalg.get_lapack_funcs(("potrs", "trtrs"), dtype=np.float64)

#: relative KKT tolerance of a breakpoint, on top of the round-off floor of its
#: correlations (see `_round_off()`)
KKT_TOL = 1e-7
#: updates of the Cholesky factor between two refactorizations from ``X_S'X_S/n``
REFACTOR_EVERY = 32
#: a column whose residual norm against the active ones is below this fraction of its own
#: norm (squared) is numerically in their span: it stays at zero
DEPENDENT_TOL = 1e-10


@dataclasses.dataclass
class _Active:
    """The active set of one fold's homotopy: columns ``X_S``, ``G = X'X_S/n`` (rates and
    correlations without passes over ``X``) in buffers that grow by doubling, the signs,
    and the lower Cholesky factor ``L`` of ``H = X_S'X_S/n``."""

    n: int
    p: int
    #: ``R -> X'R/n`` (``X`` centred): given, ``G`` is not kept and its products are made
    #: through ``X`` instead (sparse designs: shifting and multiplying ``G``'s ``p x k``
    #: columns cost more than two sparse products, see `fold_path()`)
    correlate: Callable[[FloatArray], FloatArray] | None = None
    index: list[int] = dataclasses.field(default_factory=list)
    signs: FloatArray = dataclasses.field(default_factory=lambda: np.zeros(0))
    L: FloatArray = dataclasses.field(default_factory=lambda: np.zeros((0, 0)))
    updates: int = 0
    #: bumped whenever the set or ``L`` changes (solves cached against it are stale)
    version: int = 0

    def __post_init__(self) -> None:
        self.XS = np.zeros((self.n, 16), order="F")
        self.G = np.zeros((self.p if self.correlate is None else 0, 16), order="F")
        self.gmax = np.zeros(0)  # largest |G| entry of each active column
        self.last_residual = 0.0  # of the last column found dependent (see ``append``)

    @property
    def k(self) -> int:
        return len(self.index)

    def cols(self) -> tuple[FloatArray, FloatArray]:
        return self.XS[:, : self.k], self.G[:, : self.k]

    def _cross(self, j: int, col: FloatArray) -> FloatArray:
        """``X_S'x_j/n`` (a row of ``G``, or a product with the active columns)."""
        if self.correlate is None:
            return self.G[j, : self.k]
        return self.XS[:, : self.k].T @ col / self.n

    def append(self, j: int, sign: float, col: FloatArray, g: FloatArray) -> bool:
        """Add column ``j`` (``g = X'x_j/n``) by a rank-one extension of ``L``; ``False``
        (nothing added) when it is numerically in the span of the active columns."""
        k = self.k
        b = self._cross(j, col)
        w = self.forward(b) if k else b
        norm2 = float(col @ col / self.n)
        d2 = norm2 - float(w @ w)
        if d2 <= DEPENDENT_TOL * norm2:
            self.last_residual = self._outside(col, b)
            return False
        grown = np.zeros((k + 1, k + 1))
        grown[:-1, :-1], grown[-1, :-1], grown[-1, -1] = self.L, w, np.sqrt(d2)
        self.L = grown
        self.index.append(j)
        self.signs = np.append(self.signs, sign)
        if k + 1 > self.XS.shape[1]:
            self.XS = np.asfortranarray(np.hstack([self.XS, np.zeros_like(self.XS)]))
            self.G = np.asfortranarray(np.hstack([self.G, np.zeros_like(self.G)]))
        self.XS[:, k] = col
        if self.correlate is None:
            self.G[:, k] = g
        self.gmax = np.append(self.gmax, float(np.abs(g).max(initial=0.0)))
        self.updates += 1
        self.version += 1
        if self.updates % REFACTOR_EVERY == 0:
            self.refactor()
        return True

    def _outside(self, col: FloatArray, b: FloatArray) -> float:
        """``||x_j - X_S H^{-1} X_S'x_j/n|| / sqrt(n)`` for a column in the active span,
        from the residual itself (``b = X_S'x_j/n``): ``norm2 - ||L^{-1} b||^2`` cancels to
        round-off there, and its noise would decide a dependent column's slack."""
        if not self.k:
            return float(np.sqrt(col @ col / self.n))
        r = col - self.XS[:, : self.k] @ self.solve(b)
        return float(np.sqrt(r @ r / self.n))

    def spans(self, j: int, col: FloatArray) -> bool:
        """Whether column ``j`` is numerically in the span of the active columns."""
        k = self.k
        if not k:
            return False
        w = self.forward(self._cross(j, col))
        norm2 = float(col @ col / self.n)
        return norm2 - float(w @ w) <= DEPENDENT_TOL * norm2

    def remove(self, pos: int) -> None:
        del self.index[pos]
        self.signs = np.delete(self.signs, pos)
        self.XS[:, pos:-1] = self.XS[:, pos + 1 :]
        if self.correlate is None:
            self.G[:, pos:-1] = self.G[:, pos + 1 :]
        self.gmax = np.delete(self.gmax, pos)
        self.refactor()
        self.version += 1

    def refactor(self) -> None:
        """Cholesky of ``H`` from ``G`` (computed from ``X`` itself, so no update error)."""
        self.version += 1
        if not self.index:
            self.L = np.zeros((0, 0))
            return
        if self.correlate is None:
            H = self.G[self.index, : self.k]
        else:
            XS = self.XS[:, : self.k]
            H = XS.T @ XS / self.n
        self.L = np.asarray(np.linalg.cholesky((H + H.T) / 2), dtype=np.float64)

    def affine(
        self, c0: FloatArray, r0: FloatArray, r1: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """``(b0, b1, c0 - G b0, G b1)`` with ``H [b0, b1] = [r0, r1]``: the restricted
        solution ``b0 - t b1`` and the correlations ``(c0 - G b0) + t G b1`` of a path on
        which both are affine in one parameter ``t`` (one solve with two right-hand sides
        and one product with ``G``)."""
        XS, G = self.cols()
        if not self.index:
            return np.zeros(0), np.zeros(0), c0.copy(), np.zeros(self.p)
        B = self.solve(np.stack([r0, r1], axis=1))
        U = G @ B if self.correlate is None else self.correlate(XS @ B)
        return B[:, 0], B[:, 1], c0 - U[:, 0], U[:, 1]

    def solve(self, rhs: FloatArray) -> FloatArray:
        """``H^{-1} rhs``.  LAPACK is called directly, on ``L'`` (the Fortran-ordered view
        of ``L``, so nothing is copied): scipy's ``cho_solve`` and ``solve_triangular``
        spent more time checking arguments than solving (15 vs 2 us, thousands of calls
        per path)."""
        x, info = _potrs(self.L.T, rhs, lower=0)
        if info != 0:  # pragma: no cover - L is a valid factor by construction
            raise np.linalg.LinAlgError(f"potrs failed (info={info})")
        return x

    def forward(self, b: FloatArray) -> FloatArray:
        """``L^{-1} b`` (as `solve`, LAPACK on ``L'``)."""
        x, info = _trtrs(self.L.T, b, lower=0, trans=1)
        if info != 0:  # pragma: no cover - L has a positive diagonal by construction
            raise np.linalg.LinAlgError(f"trtrs failed (info={info})")
        return x


def _mask(p: int, index: list[int]) -> np.ndarray:
    out = np.zeros(p, dtype=bool)
    out[index] = True
    return out


def _transpose(X: Any) -> Any:
    """``X'`` for a whole path (for sparse ``X``, ``X.T`` builds a matrix object per use)."""
    return sp.csr_array(X.T) if sp.issparse(X) else X.T


def _correlate(fold: Fold, XT: Any) -> Callable[[FloatArray], FloatArray] | None:
    """``R -> X'R/n`` for sparse ``X`` (centred implicitly), where the homotopy keeps no
    ``G = X'X_S/n`` (`_Active.correlate`); ``None`` for dense ``X``.  Measured (5-fold
    `ImplicitLassoCV`): on the 200 x 3000 sparse design (2% nonzeros) 0.45 -> 0.37 s, since
    shifting ``G``'s columns at every removal and its ``p x k`` products cost more than two
    sparse products per breakpoint; on the dense 1000-channel spectra the same change was
    slower (0.28 -> 0.33 s)."""
    if not sp.issparse(fold.X):
        return None
    n, centered = fold.X.shape[0], fold.sparse_centered

    def correlate(R: FloatArray) -> FloatArray:
        # (X - 1 x_mean')'R = X'(R - 1 mean(R)'), since X'1 = n x_mean (training means):
        # the centring costs n, not p, operations per column of R
        return np.asarray(XT @ (R - R.mean(axis=0) if centered else R)) / n

    return correlate


def _column(fold: Fold, XT: Any, j: int) -> tuple[FloatArray, FloatArray]:
    """Column ``j`` of the fold's centred design and its correlations ``X'x_j/n``."""
    col = columns(fold.X, np.array([j]), fold.x_mean, fold.sparse_centered)[:, 0]
    return col, correlations(fold.X, col, fold.x_mean, fold.sparse_centered, XT)


def _condition(act: _Active) -> float:
    """The condition number of ``H``, estimated from the Cholesky diagonal."""
    diag = np.abs(np.diag(act.L))
    return float((diag.max() / diag.min()) ** 2) if diag.size else 1.0


def _round_off(c0_max: float, act: _Active, beta: FloatArray, cond: float) -> float:
    """The accuracy to which the correlations ``c = c0 - G beta`` of the exact restricted
    solution can be computed in double precision: ``eps`` times their scale times the
    condition number ``cond`` of ``H`` (`_condition()`).  Ill-conditioned designs with
    large coefficients cannot be certified more tightly than this."""
    scale = c0_max + float(act.gmax @ np.abs(beta)) if beta.size else c0_max
    return 10 * np.finfo(np.float64).eps * cond * scale


@single_thread_blas  # threaded BLAS on these small products oversubscribes the cores
def fold_path(
    fold: Fold, alpha_min: float, max_steps: int, messages: list[str] | None = None
) -> tuple[FloatArray, Any]:
    """One fold's LASSO path from ``alpha_max`` down to ``alpha_min``: breakpoints
    (decreasing) and the coefficients there (sparse, ``p x breakpoints``).

    Between events the coefficients move along ``d beta_S / d(-alpha) = H^{-1} s`` and the
    correlations ``c = X'(y - X beta)/n`` along ``-X'X_S H^{-1} s / n``; the next event is
    the first coordinate to reach the threshold ``|c_j| = alpha`` (it enters) or the first
    coefficient to reach zero (it leaves).  At every breakpoint the coefficients are
    re-solved exactly from the restricted optimality equations (so no round-off
    accumulates) and the KKT conditions are checked, to ``1e-7 alpha`` plus the round-off
    floor that the conditioning of ``H`` allows (`_round_off()`).  The Cholesky factor
    of ``H`` is updated by rank-one steps and refactorized from ``X_S'X_S/n`` every
    `REFACTOR_EVERY` updates.  A failed check is *repaired*, in this order: an
    inactive coordinate that crossed its threshold inside the segment (a guard missed it)
    enters at its exact crossing point; the restricted system is refactorized and
    re-solved; an active-set solve at that ``alpha`` (add the worst violator, drop wrong
    signs) restarts the path from its solution.  Only if all fail does the path stop.
    Repairs and stops are reported in ``messages``.
    """
    messages = [] if messages is None else messages
    kernel = compiled("lasso._numba_homotopy")
    if kernel is not None:
        out = _compiled_fold_path(kernel, fold, alpha_min, max_steps, messages)
        if out is not None:
            return out
    X, y = fold.X, fold.y
    n, p = X.shape
    centered = fold.sparse_centered

    XT = _transpose(X)
    c0 = correlations(X, y, fold.x_mean, centered, XT)
    c0_max = float(np.abs(c0).max(initial=0.0))
    c = c0
    alpha = float(np.abs(c).max())
    records: list[tuple[float, np.ndarray, FloatArray]] = [(alpha, np.zeros(0, int), np.zeros(0))]
    if alpha <= alpha_min or alpha == 0.0:
        return _stack(records, p)
    act = _Active(n, p, _correlate(fold, XT))
    # columns numerically in the span of the active ones (kept at zero), with the norm
    # (over sqrt(n)) of their part outside it: it bounds how far their correlations can
    # drift from the active ones', |x_j'r/n| - |w'X_S'r/n| <= norm ||r||/sqrt(n)
    dependent: dict[int, float] = {}

    def enter(j: int, sign: float) -> bool:
        if act.append(j, sign, *_column(fold, XT, j)):
            return True
        dependent[j] = act.last_residual
        return False

    def release() -> None:
        """After a column left: the dependent columns no longer in the span become free
        (they enter at once if their correlations reached the threshold)."""
        for j in list(dependent):
            col = columns(X, np.array([j]), fold.x_mean, centered)[:, 0]
            if not act.spans(j, col):
                del dependent[j]

    affine: dict[str, Any] = {"version": -1}

    def on_support() -> dict[str, Any]:
        """The exact restricted solution and correlations on the current support, affine in
        alpha: ``beta(a) = beta0 - a dirn`` with ``H [beta0, dirn] = [c0_S, s]``, and
        ``c(a) = c0 - G beta(a) = u0 + a rate`` (``rate = G dirn``).  One solve with two
        right-hand sides and one product with ``G`` per support, however many alphas are
        certified on it; recomputed from ``c0`` when the support (or ``L``) changes, so no
        round-off accumulates."""
        if affine["version"] != act.version:
            beta0, dirn, u0, rate = act.affine(c0, c0[act.index], act.signs)
            affine.update(version=act.version, beta0=beta0, dirn=dirn, u0=u0, rate=rate)
            affine.update(inactive=~_mask(p, act.index), cond=_condition(act))
        return affine

    def certify(at: float) -> tuple[FloatArray, FloatArray, float, bool]:
        """Exact restricted solution at ``at``, its correlations, KKT excess over the
        tolerance (positive: failed) and whether a sign is wrong."""
        line = on_support()
        beta = line["beta0"] - at * line["dirn"]
        cc = line["u0"] + at * line["rate"]
        tol = KKT_TOL * at + _round_off(c0_max, act, beta, line["cond"])
        off = line["inactive"]
        slack = np.zeros(p)
        if dependent:
            XS, _ = act.cols()
            r = y - XS @ beta
            slack[list(dependent)] = np.array(list(dependent.values())) * float(
                np.linalg.norm(r) / np.sqrt(n)
            )
        excess = max(
            float((np.abs(cc) - slack)[off].max(initial=0.0)) - at,
            float(np.abs(cc[act.index] - at * act.signs).max(initial=0.0)),
        )
        wrong = bool(np.any(beta * act.signs < -1e-9 * np.abs(beta).max(initial=1.0)))
        return beta, cc, excess - tol, wrong

    def active_set_solve(at: float, beta: FloatArray, cc: FloatArray) -> bool:
        """Repair the active set at fixed ``at``: drop wrong signs, add the worst
        violator, re-solve; ``True`` once the KKT conditions hold."""
        for _ in range(2 * min(n, p) + 10):
            bad = np.flatnonzero(beta * act.signs <= 0)
            if bad.size:
                for pos in sorted(bad, reverse=True):
                    act.remove(int(pos))
                release()
            else:
                off = np.ones(p, dtype=bool)
                off[act.index] = False
                off[list(dependent)] = False
                score = np.where(off, np.abs(cc) - at, -np.inf)
                j = int(np.argmax(score))
                if score[j] <= 0 or not enter(j, float(np.sign(cc[j]))):
                    return False
            beta, cc, over, _ = certify(at)
            if over <= 0 and np.all(beta * act.signs > 0):
                return True
        return False

    enter(int(np.argmax(np.abs(c))), float(np.sign(c[np.argmax(np.abs(c))])))
    beta = np.zeros(1)
    just_left, left_sign = -1, 0.0
    for _ in range(max_steps):
        if not act.index:  # (only by round-off: below alpha_max some coordinate is active)
            messages.append(f"the homotopy stopped at alpha={alpha:.6g}: the support emptied")
            break
        # direction and rates: beta_S(alpha - t) = beta_S + t dirn, c(alpha - t) = c - t rate
        line = on_support()
        dirn, rate, off = line["dirn"], line["rate"], line["inactive"]
        if dependent:
            off = off.copy()
            off[list(dependent)] = False
        with np.errstate(divide="ignore", invalid="ignore"):
            up = np.where(off & (1 - rate > 1e-12), (alpha - c) / (1 - rate), np.inf)
            down = np.where(off & (1 + rate > 1e-12), (alpha + c) / (1 + rate), np.inf)
            # a coefficient moving towards zero leaves when it gets there (at once when it
            # sits at zero, just entered, and moves the wrong way)
            toward = dirn * act.signs < 0
            leave = np.where(toward, np.maximum(beta * act.signs, 0.0) / np.abs(dirn), np.inf)
        if just_left >= 0:  # a coordinate that just left may re-enter, but not on its old side
            (up if left_sign > 0 else down)[just_left] = np.inf
        t_enter = np.minimum(np.maximum(up, 0.0), np.maximum(down, 0.0))
        j_enter = int(np.argmin(t_enter)) if t_enter.size else -1
        k_leave = int(np.argmin(leave))
        t_leave, t_in, t_end = float(leave[k_leave]), float(t_enter[j_enter]), alpha - alpha_min
        c_prev, alpha_prev = c, alpha
        if t_end <= min(t_leave, t_in):
            alpha, kind, j = alpha_min, "stop", -1
        elif t_leave <= t_in:
            alpha, kind, j = alpha - t_leave, "leave", act.index[k_leave]
        else:
            alpha, kind, j = alpha - t_in, "enter", j_enter
        beta, c, over, wrong = certify(alpha)
        if kind == "leave":  # leave at once: the exact solution on the reduced support
            left_sign = float(act.signs[k_leave])
            act.remove(k_leave)
            beta, c, over, wrong = certify(alpha)  # (released columns keep their slack here)
            release()
        if over > 0 or wrong:
            # 1. a coordinate that crossed its threshold inside the segment (missed by a
            #    guard) enters at its exact crossing point
            tol = KKT_TOL * alpha
            viol = np.flatnonzero((np.abs(c) > alpha + tol) & ~_mask(p, [*act.index, j]))
            viol = np.array([v for v in viol if v not in dependent], dtype=np.int64)
            repaired = ""
            if viol.size and kind != "leave" and not wrong:
                sgn = np.sign(c[viol])
                with np.errstate(divide="ignore", invalid="ignore"):
                    t = (c_prev[viol] - sgn * alpha_prev) / (rate[viol] - sgn)
                t = np.where(np.isfinite(t) & (t >= 0) & (t <= alpha_prev - alpha), t, np.inf)
                i = int(np.argmin(t))
                if np.isfinite(t[i]):
                    alpha, kind, j = alpha_prev - float(t[i]), "enter", int(viol[i])
                    beta, c, over, wrong = certify(alpha)
                    repaired = f"feature {j} crossed its threshold inside the segment and enters"
            if over > 0 or wrong:  # 2. refactorize the restricted system and re-solve
                act.refactor()
                beta, c, over, wrong = certify(alpha)
                repaired = "refactorized the restricted system"
            if over > 0 or wrong:  # 3. an active-set solve at this alpha
                if kind == "enter":
                    dependent.pop(j, None)
                if not active_set_solve(alpha, beta, c):
                    beta, c, over, _ = certify(alpha)
                    messages.append(
                        f"the homotopy stopped at alpha={alpha:.6g}: its optimality conditions "
                        f"failed (correlations off by {max(over, 0) / alpha:.1e} relative to "
                        "alpha beyond the round-off floor) and could not be repaired"
                    )
                    break
                beta, c, over, wrong = certify(alpha)
                kind, just_left = "repaired", -1
                repaired = (
                    "re-solved there by an active-set method; the criterion on the segment "
                    "above it is interpolated"
                )
            messages.append(f"repaired the breakpoint at alpha={alpha:.6g}: {repaired}")
        records.append((alpha, np.array(act.index), beta.copy()))
        if kind == "stop":
            break
        XS, _ = act.cols()
        r = y - XS @ beta
        if float(r @ r) <= 1e-20 * float(y @ y):
            messages.append(
                f"the homotopy stopped at alpha={alpha:.6g}: the training residual vanished "
                f"({act.k} active features interpolate the training rows)"
            )
            break
        if kind == "enter":
            just_left = -1
            if enter(j, float(np.sign(c[j]))):
                beta = np.append(beta, 0.0)
        elif kind == "leave":
            just_left = j
    else:
        messages.append(f"the homotopy stopped after max_steps={max_steps} breakpoints")
    return _stack(records, p)


def _compiled_fold_path(
    kernel: Any, fold: Fold, alpha_min: float, max_steps: int, messages: list[str]
) -> tuple[FloatArray, Any] | None:
    """`fold_path()` by its numba twin (``_numba_homotopy``, same rules and checks);
    ``None`` where a breakpoint needs a repair, which the Python loop does."""
    X = fold.X
    try:
        status, count, alphas, ptr, idx, val, alpha, k = kernel.lasso_fold_path(
            fold.design,
            np.ascontiguousarray(fold.y, dtype=np.float64),
            float(alpha_min),
            int(max_steps),
            KKT_TOL,
            DEPENDENT_TOL,
            REFACTOR_EVERY,
        )
    except (np.linalg.LinAlgError, MemoryError):  # (a refactorization lost definiteness, or
        return None  # its buffers, sized for min(n, p) columns, do not fit: the Python loop)
    if status == kernel.REPAIR:
        return None
    if status == kernel.EMPTIED:
        messages.append(f"the homotopy stopped at alpha={alpha:.6g}: the support emptied")
    elif status == kernel.VANISHED:
        messages.append(
            f"the homotopy stopped at alpha={alpha:.6g}: the training residual vanished "
            f"({k} active features interpolate the training rows)"
        )
    elif status == kernel.MAX_STEPS:
        messages.append(f"the homotopy stopped after max_steps={max_steps} breakpoints")
    nnz = int(ptr[count])
    coefs = sp.csc_matrix((val[:nnz], idx[:nnz], ptr[: count + 1]), shape=(X.shape[1], count))
    coefs.sort_indices()  # (once here: faster than sorting each breakpoint's support there)
    coefs.eliminate_zeros()
    return alphas[:count].copy(), coefs


def _stack(records: list[tuple[float, np.ndarray, FloatArray]], p: int) -> tuple[FloatArray, Any]:
    """Breakpoints and the coefficients there as a sparse ``p x breakpoints`` matrix."""
    alphas = np.array([a for a, _, _ in records])
    indptr = np.cumsum([0] + [S.size for _, S, _ in records])
    indices = np.concatenate([S for _, S, _ in records]).astype(np.int64)
    data = np.concatenate([b for _, _, b in records]).astype(np.float64)
    coefs = sp.csc_matrix((data, indices, indptr), shape=(p, len(records)))
    coefs.eliminate_zeros()  # (coefficients leaving at a breakpoint are exact zeros there)
    return alphas, coefs


def _segments(alphas: FloatArray, at: FloatArray) -> tuple[np.ndarray, FloatArray]:
    """For each ``at``: the index ``i`` of the interval ``[alphas[i+1], alphas[i]]`` of the
    decreasing breakpoints holding it and the weight ``w`` of ``alphas[i]`` (clipped: 1
    above the first breakpoint, where the coefficients are zero)."""
    if alphas.size == 1:
        return np.zeros(at.size, dtype=np.int64), np.ones(at.size)
    ra = alphas[::-1]
    j = np.clip(np.searchsorted(ra, at, side="right") - 1, 0, ra.size - 2)
    width = ra[j + 1] - ra[j]
    w = np.clip(np.where(width > 0, (at - ra[j]) / np.where(width > 0, width, 1.0), 0.0), 0, 1)
    # at a breakpoint up to round-off (alpha_max computed two ways): exactly there
    w = np.where(np.abs(at - ra[j + 1]) <= 1e-12 * ra[j + 1], 1.0, w)
    w = np.where(np.abs(at - ra[j]) <= 1e-12 * ra[j], 0.0, w)
    return alphas.size - 2 - j, w


def _predict(X_eval: Any, coefs: Any, x_mean: FloatArray) -> FloatArray:
    """``X_eval @ coefs`` (dense, rows x breakpoints), centering sparse ``X_eval`` implicitly."""
    pred = coefs.T @ X_eval.T
    pred = np.asarray(pred.toarray() if sp.issparse(pred) else pred).T
    if sp.issparse(X_eval) and np.any(x_mean):
        pred = pred - np.asarray(coefs.T @ x_mean).ravel()
    return pred


def _support_sizes(coefs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Support size at each breakpoint, and inside each interval (the union of its ends';
    a single breakpoint counts as its own interval)."""
    nnz = np.diff(coefs.indptr)
    if coefs.shape[1] == 1:
        return np.concatenate([nnz, nnz]), nnz
    return np.concatenate([nnz, nnz[-1:]]), (abs(coefs[:, 1:]) + abs(coefs[:, :-1])).getnnz(axis=0)


def _interpolate(columns: Any, i: np.ndarray, w: FloatArray) -> FloatArray:
    """Columns given at decreasing breakpoints, linearly interpolated at the points whose
    intervals and weights `_segments()` returned (dense result)."""
    ends = columns[:, np.concatenate([i, np.minimum(i + 1, columns.shape[1] - 1)])]
    ends = ends.toarray() if sp.issparse(ends) else ends
    return ends[:, : i.size] * w + ends[:, i.size :] * (1 - w)


def exact_criterion_path(
    folds: list[Fold],
    criterion: str,
    sigma: float | None,
    alpha_min: float,
    alpha_max: float,
    max_steps: int,
) -> CriterionPath:
    """The mean held-out MSE (``criterion="cv"``) or SURE over ``[alpha_min, alpha_max]``,
    exactly, from each fold's LASSO homotopy; see the module docstring."""
    messages: list[str] = []
    with single_thread_blas:
        paths = []
        for number, fold in enumerate(folds):
            notes: list[str] = []
            paths.append(fold_path(fold, alpha_min, max_steps, notes))
            messages += [f"fold {number}: {m}" for m in notes]
    for message in messages:
        warnings.warn(message, HomotopyWarning, stacklevel=3)
    lowest = min(alpha_max, max(alpha_min, max(float(a[-1]) for a, _ in paths)))
    grid = np.concatenate([a for a, _ in paths] + [np.array([alpha_max, lowest])])
    grid = np.unique(grid[(grid >= lowest) & (grid <= alpha_max)])[::-1]
    grid = grid[np.concatenate([[True], -np.diff(grid) > 1e-12 * grid[:-1]])]  # near-duplicates
    m = len(folds)
    # per interval [grid[i+1], grid[i]]: f(tau) = qa tau^2 + 2 qb tau + qc, tau in [0, 1]
    qa = np.zeros(grid.size - 1)
    qb = np.zeros(grid.size - 1)
    qc = np.zeros(grid.size - 1)
    values = np.zeros(grid.size)
    fold_values = np.zeros((grid.size, m))
    support = np.zeros(grid.size)
    inner_df = np.zeros(grid.size - 1)
    for number, (fold, (alphas, coefs)) in enumerate(zip(folds, paths)):
        X_eval, y_eval = (fold.X, fold.y) if criterion == "sure" else (fold.X_val, fold.y_val)
        pred = _predict(X_eval, coefs, fold.x_mean)
        i, w = _segments(alphas, grid)
        resid = _interpolate(y_eval[:, None] - pred, i, w)
        nnz, union = _support_sizes(coefs)
        support += np.where(w == 1, nnz[i], np.where(w == 0, nnz[i + 1], union[i])) / m
        scale = 1.0 / (m * y_eval.size)
        fold_values[:, number] = np.einsum("ij,ij->j", resid, resid) / y_eval.size
        values += scale * np.einsum("ij,ij->j", resid, resid)
        u, v = resid[:, 1:], resid[:, :-1] - resid[:, 1:]  # residual at lower end, slope
        qa += scale * np.einsum("ij,ij->j", v, v)
        qb += scale * np.einsum("ij,ij->j", u, v)
        qc += scale * np.einsum("ij,ij->j", u, u)
        if criterion == "sure":  # support inside each merged interval
            k, _ = _segments(alphas, np.sqrt(grid[1:] * grid[:-1]))
            inner_df += union[k]
    if criterion == "sure":
        s2, n = (sigma or 0.0) ** 2, folds[0].y.size
        values += -s2 + 2 * s2 * support / n
        fold_values += -s2 + 2 * s2 * support[:, None] / n
        qc += -s2 + 2 * s2 * inner_df / n
    tau = np.clip(-qb / np.where(qa > 0, qa, np.inf), 0.0, 1.0)
    if criterion == "sure":
        # SURE jumps at breakpoints (df = |S| drops where a coordinate is exactly zero); an
        # exact solve cannot reproduce that zero, so minimise over interval interiors (and
        # alpha_max below, where beta = 0 exactly)
        tau = np.clip(tau, 1e-6, 1 - 1e-6)
    inner = qa * tau**2 + 2 * qb * tau + qc
    i_in = int(np.argmin(inner)) if inner.size else -1
    # breakpoints as candidates; for SURE only alpha_max
    i_end = int(np.argmin(values)) if criterion != "sure" else 0
    slopes = None
    if i_in >= 0 and inner[i_in] < values[i_end] and (criterion == "sure" or 0 < tau[i_in] < 1):
        best_alpha = float(grid[i_in + 1] + tau[i_in] * (grid[i_in] - grid[i_in + 1]))
        best_value = float(inner[i_in])
    else:  # at a breakpoint: a kink of beta(alpha); the one-sided slopes dC/dalpha
        best_alpha, best_value = float(grid[i_end]), float(values[i_end])
        width = -np.diff(grid)
        below = 2 * (qa[i_end] + qb[i_end]) / width[i_end] if i_end < grid.size - 1 else np.nan
        above = 2 * qb[i_end - 1] / width[i_end - 1] if i_end > 0 else np.nan
        slopes = (float(below), float(above))
    at = np.array([best_alpha])
    coefs_best = [_interpolate(c, *_segments(a, at))[:, 0] for a, c in paths]
    return CriterionPath(
        alphas=grid,
        values=values,
        support=support,
        best_alpha=best_alpha,
        best_value=best_value,
        lowest=lowest,
        coefs=coefs_best,
        messages=messages,
        slopes=slopes,
        quadratics=np.stack([qa, qb, qc], axis=1),
        fold_values=fold_values,
    )


@single_thread_blas
def penalty_path(
    fold: Fold, a_from: FloatArray, a_to: FloatArray, beta_from: FloatArray, max_steps: int
) -> FloatArray | None:
    """The LASSO solution for per-feature l1 weights ``a_to``, by following the solution
    path from ``beta_from`` (the solution for ``a_from``) along ``a(t) = a_from + t (a_to -
    a_from)``, ``0 <= t <= 1``; ``None`` where it cannot (``beta_from`` fails the optimality
    conditions at ``t = 0``, the end point fails them for ``a_to``, or more than
    ``max_steps`` events).

    On a fixed support ``S`` with signs ``s`` the restricted optimality equations
    ``X_S'(y - X_S b_S)/n = a_S(t) s`` make ``b_S`` and the correlations
    ``c = X'(y - X b)/n`` affine in ``t``, and so are the thresholds ``a(t)``: the events
    (an inactive ``|c_j|`` reaching ``a_j(t)``, an active coefficient reaching zero) are
    roots of linear functions, as in `fold_path()`.  A column found in the span of the
    active ones when its event comes stays at zero until a column leaves.  The end point is
    returned only if it satisfies the optimality conditions for ``a_to`` to ``KKT_TOL``;
    the caller then polishes it on its support (`_engine.solve_inner`).  Between the nearby
    penalties of consecutive outer iterations this takes a handful of events, where
    coordinate descent from the old solution can take thousands of epochs on correlated
    designs (the weighted LASSO on diabetes degree-3 features, grouped: 19.5 to 4.5 s,
    `benchmarks/results/lasso_tuning.md`).
    """
    kernel = compiled("lasso._numba_homotopy")
    if kernel is not None:  # its numba twin: the same events and checks
        try:
            ok, coef = kernel.penalty_path(
                fold.design,
                np.ascontiguousarray(fold.y, dtype=np.float64),
                np.ascontiguousarray(a_from, dtype=np.float64),
                np.ascontiguousarray(a_to, dtype=np.float64),
                np.ascontiguousarray(beta_from, dtype=np.float64),
                int(max_steps),
                KKT_TOL,
                DEPENDENT_TOL,
                REFACTOR_EVERY,
            )
            return coef if ok else None
        except np.linalg.LinAlgError:  # a refactorization lost definiteness: below
            pass
    X, y = fold.X, fold.y
    n, p = X.shape
    centered = fold.sparse_centered
    XT = _transpose(X)
    c0 = correlations(X, y, fold.x_mean, centered, XT)
    da = a_to - a_from
    act = _Active(n, p, _correlate(fold, XT))
    for j in np.flatnonzero(beta_from):
        if not act.append(int(j), float(np.sign(beta_from[j])), *_column(fold, XT, int(j))):
            return None
    t = 0.0
    dependent: set[int] = set()  # columns in the span of the active ones: kept at zero
    for _ in range(max_steps):
        idx, s = np.array(act.index, dtype=np.int64), act.signs
        beta0, dirn, u0, rate = act.affine(c0, c0[idx] - a_from[idx] * s, da[idx] * s)
        # b_S(t) = beta0 - t dirn, c(t) = u0 + t rate, a(t) = a_from + t da
        inactive = ~_mask(p, act.index)
        free = inactive & ~_mask(p, list(dependent))
        if t == 0.0:  # the start must solve a_from (the caller's warm start may not)
            scale = 1e3 * KKT_TOL * max(float(np.abs(a_from).max(initial=0.0)), 1e-300)
            wrong = beta0 * act.signs < -1e-9 * np.abs(beta0).max(initial=1.0)
            if np.any(np.abs(u0[inactive]) > a_from[inactive] + scale) or np.any(wrong):
                return None
        with np.errstate(divide="ignore", invalid="ignore"):
            up = np.where(free & (rate - da > 0), (a_from - u0) / (rate - da), np.inf)
            down = np.where(free & (rate + da < 0), (-a_from - u0) / (rate + da), np.inf)
            toward = dirn * act.signs > 0  # b_j = beta0_j - t dirn_j shrinks in |.|
            leave = np.where(toward, beta0 / np.where(dirn == 0, 1.0, dirn), np.inf)
        events = np.concatenate([up, down])
        after = t + 1e-12 * max(t, 1.0)  # not the event just taken (round-off)
        events = np.where(events > after, events, np.inf)
        leave = np.where(leave > after, leave, np.inf)
        j_in = int(np.argmin(events)) if events.size else -1
        k_out = int(np.argmin(leave)) if leave.size else -1
        t_in = float(events[j_in]) if j_in >= 0 else np.inf
        t_out = float(leave[k_out]) if k_out >= 0 else np.inf
        if min(t_in, t_out) >= 1.0:
            # the end point, checked: exact, or None (a missed event, e.g. around columns
            # in the span of the active ones)
            out = np.zeros(p)
            out[idx] = beta0 - dirn
            c_end = u0 + rate
            scale = KKT_TOL * max(float(np.abs(a_to).max(initial=0.0)), 1e-300)
            off = np.abs(c_end[inactive]) - a_to[inactive]
            on = np.abs(c_end[idx] - a_to[idx] * act.signs)
            wrong = out[idx] * act.signs < -1e-9 * np.abs(out).max(initial=1.0)
            ok = off.max(initial=0.0) <= scale and on.max(initial=0.0) <= scale
            return out if ok and not np.any(wrong) else None
        if t_out <= t_in:
            t = t_out
            act.remove(k_out)
            dependent.clear()  # the span shrank: they are tested again at their events
        else:
            t = t_in
            j = j_in % p
            if not act.append(j, 1.0 if j_in < p else -1.0, *_column(fold, XT, j)):
                dependent.add(j)
    return None
