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
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .._typing import FloatArray
from ._engine import Fold, _columns, _correlations

__all__ = ["CriterionPath", "exact_criterion_path", "homotopy_feasible"]

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
    a path's length estimated as ``3 min(n, p) + 100``) fit in :data:`MAX_ENTRIES`."""
    n, p = folds[0].X.shape
    rows = sum((f.y if criterion == "sure" else f.y_val).size for f in folds)
    return rows * len(folds) * (3 * min(n, p) + 100) <= MAX_ENTRIES


def _fold_path(
    fold: Fold, alpha_min: float, max_steps: int, messages: list[str]
) -> tuple[FloatArray, Any]:
    """One fold's LASSO path from ``alpha_max`` down to ``alpha_min``: breakpoints
    (decreasing) and the coefficients there (sparse, ``p x breakpoints``).

    Between events the coefficients move along ``d beta_S / d(-alpha) = H^{-1} s`` and the
    correlations ``c = X'(y - X beta)/n`` along ``-X'X_S H^{-1} s / n``; the next event is
    the first coordinate to reach the threshold ``|c_j| = alpha`` (it enters) or the first
    coefficient to reach zero (it leaves).  At every breakpoint the coefficients are
    re-solved exactly from the restricted optimality equations and the correlations
    recomputed, so no round-off accumulates, and the KKT conditions are checked: the path
    stops early (and says why in ``messages``) if they fail, or when the active set spans
    the training rows.
    """
    X, y = fold.X, fold.y
    n, p = X.shape
    centered = sp.issparse(X) and bool(np.any(fold.x_mean))

    def correlations(r: FloatArray) -> FloatArray:
        return _correlations(X, r, fold.x_mean, centered)

    c0 = correlations(y)
    c = c0
    alpha = float(np.abs(c).max())
    records: list[tuple[float, np.ndarray, FloatArray]] = [(alpha, np.zeros(0, int), np.zeros(0))]
    if alpha <= alpha_min or alpha == 0.0:
        return _stack(records, p)
    active: list[int] = []
    signs = np.zeros(0)
    # active columns X_S and X'X_S/n (rates and correlations without passes over X), in
    # buffers that grow by doubling
    XS_buf = np.zeros((n, 16), order="F")
    G_buf = np.zeros((p, 16), order="F")
    L = np.zeros((0, 0))
    beta = np.zeros(0)
    dependent: set[int] = set()  # columns in the span of the active ones (kept at zero)
    event = ("enter", int(np.argmax(np.abs(c))))
    for _ in range(max_steps):
        kind, j = event
        just_left = j if kind == "leave" else -1
        left_sign = float(signs[active.index(j)]) if kind == "leave" else 0.0
        if kind == "enter":
            col = _columns(X, np.array([j]), fold.x_mean, centered)[:, 0]
            b = G_buf[j, : len(active)]  # X_S'x_j/n
            w = scipy.linalg.solve_triangular(L, b, lower=True) if active else b
            d2 = float(col @ col / n - w @ w)
            if d2 <= 1e-10 * float(col @ col / n):
                dependent.add(j)
            else:
                grown = np.zeros((len(active) + 1, len(active) + 1))
                grown[:-1, :-1], grown[-1, :-1], grown[-1, -1] = L, w, np.sqrt(d2)
                L = grown
                active.append(j)
                signs = np.append(signs, np.sign(c[j]))
                beta = np.append(beta, 0.0)
                if len(active) > XS_buf.shape[1]:
                    XS_buf = np.asfortranarray(np.hstack([XS_buf, np.zeros_like(XS_buf)]))
                    G_buf = np.asfortranarray(np.hstack([G_buf, np.zeros_like(G_buf)]))
                XS_buf[:, len(active) - 1] = col
                G_buf[:, len(active) - 1] = correlations(col)
        else:  # leave
            k = active.index(j)
            del active[k]
            signs, beta = np.delete(signs, k), np.delete(beta, k)
            XS_buf[:, k:-1] = XS_buf[:, k + 1 :]
            G_buf[:, k:-1] = G_buf[:, k + 1 :]
            H = G_buf[active, : len(active)]
            L = np.linalg.cholesky((H + H.T) / 2) if active else np.zeros((0, 0))
            dependent.clear()
            if active:  # re-solve on the reduced support (the zero was only up to round-off)
                beta = scipy.linalg.cho_solve((L, True), c0[active] - alpha * signs)
                c = c0 - G_buf[:, : len(active)] @ beta
        if not active:  # (only by round-off: below alpha_max some coordinate is active)
            messages.append(f"the homotopy stopped at alpha={alpha:.6g}: the support emptied")
            break
        # direction and rates: beta_S(alpha - t) = beta_S + t dirn, c(alpha - t) = c - t rate
        dirn = scipy.linalg.cho_solve((L, True), signs)
        XS, G = XS_buf[:, : len(active)], G_buf[:, : len(active)]
        rate = G @ dirn
        off = np.ones(p, dtype=bool)
        off[active] = False
        off[list(dependent)] = False
        with np.errstate(divide="ignore", invalid="ignore"):
            up = np.where(off & (1 - rate > 1e-12), (alpha - c) / (1 - rate), np.inf)
            down = np.where(off & (1 + rate > 1e-12), (alpha + c) / (1 + rate), np.inf)
            leave = np.where(dirn * beta < 0, -beta / dirn, np.inf)
        if just_left >= 0:  # a coordinate that just left may re-enter, but not on its old side
            (up if left_sign > 0 else down)[just_left] = np.inf
        t_enter = np.minimum(np.maximum(up, 0.0), np.maximum(down, 0.0))
        j_enter = int(np.argmin(t_enter)) if t_enter.size else -1
        k_leave = int(np.argmin(leave))
        t_leave, t_in, t_end = float(leave[k_leave]), float(t_enter[j_enter]), alpha - alpha_min
        if t_end <= min(t_leave, t_in):
            alpha, event = alpha_min, ("stop", -1)
        elif t_leave <= t_in:
            alpha, event = alpha - t_leave, ("leave", active[k_leave])
        else:
            alpha, event = alpha - t_in, ("enter", j_enter)
        # exact coefficients at the new breakpoint (same support and signs)
        beta = scipy.linalg.cho_solve((L, True), c0[active] - alpha * signs)
        if event[0] == "leave":
            beta[k_leave] = 0.0
        r = y - XS @ beta
        c = c0 - G @ beta
        # certificate: signs kept, correlations equal to alpha on the support and at most
        # alpha off it
        off_all = np.ones(p, dtype=bool)
        off_all[active] = False
        excess = max(
            float(np.abs(c[off_all]).max(initial=0.0)) - alpha,
            float(np.abs(c[active] - alpha * signs).max(initial=0.0)),
        )
        wrong_sign = np.any(beta * signs < -1e-9 * np.abs(beta).max(initial=1.0))
        if excess > 1e-7 * alpha or wrong_sign:
            messages.append(
                f"the homotopy stopped at alpha={alpha:.6g}: its optimality conditions failed "
                f"(correlations off by {excess / alpha:.1e} relative to alpha"
                f"{', a sign changed' if wrong_sign else ''})"
            )
            break
        records.append((alpha, np.array(active), beta.copy()))
        if event[0] == "stop":
            break
        if float(r @ r) <= 1e-20 * float(y @ y):
            messages.append(
                f"the homotopy stopped at alpha={alpha:.6g}: the training residual vanished "
                f"({len(active)} active features interpolate the training rows)"
            )
            break
    else:
        messages.append(f"the homotopy stopped after max_steps={max_steps} breakpoints")
    return _stack(records, p)


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
    intervals and weights :func:`_segments` returned (dense result)."""
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
    paths = [_fold_path(fold, alpha_min, max_steps, messages) for fold in folds]
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
    support = np.zeros(grid.size)
    inner_df = np.zeros(grid.size - 1)
    for fold, (alphas, coefs) in zip(folds, paths):
        X_eval, y_eval = (fold.X, fold.y) if criterion == "sure" else (fold.X_val, fold.y_val)
        pred = _predict(X_eval, coefs, fold.x_mean)
        i, w = _segments(alphas, grid)
        resid = _interpolate(y_eval[:, None] - pred, i, w)
        nnz, union = _support_sizes(coefs)
        support += np.where(w == 1, nnz[i], np.where(w == 0, nnz[i + 1], union[i])) / m
        scale = 1.0 / (m * y_eval.size)
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
    )
