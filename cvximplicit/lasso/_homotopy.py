"""The exact LASSO criterion along the whole penalty range, by homotopy.

On an interval of ``alpha`` where the support ``S`` and the signs ``s`` do not change, the
implicit derivative ``d beta_S / d alpha = -H^{-1} s`` (``H = X_S'X_S/n``) is constant:
``beta(alpha)`` is piecewise linear and every criterion built from residuals (held-out MSE,
SURE) is piecewise quadratic.  Integrating that derivative exactly between its kinks is the
LARS-lasso homotopy (scikit-learn's ``lars_path``); with the breakpoints of every fold
merged, the criterion is one quadratic per interval and its global minimum over
``[alpha_min, alpha_max]`` is found in closed form.  The nonsmooth points are the
breakpoints themselves, where the criterion can attain its minimum with one-sided slopes of
opposite signs.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, cast

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.linear_model import lars_path, lars_path_gram

from .._typing import FloatArray
from ._engine import Fold

__all__ = ["CriterionPath", "exact_criterion_path", "homotopy_feasible"]

#: largest ``features x breakpoints`` coefficient array (and ``p x p`` Gram matrix for
#: sparse input) the homotopy may hold; beyond it the estimators use a coarse grid instead.
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
    #: (scikit-learn stops LARS when the training residual vanishes)
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
        ra = self.alphas[::-1]
        i = (
            self.alphas.size
            - 2
            - np.clip(np.searchsorted(ra, at, side="right") - 1, 0, ra.size - 2)
        )
        lo, hi = self.alphas[i + 1], self.alphas[i]
        t = np.clip((at - lo) / (hi - lo), 0.0, 1.0)
        qa, qb, qc = self.quadratics[i].T
        out = qa * t**2 + 2 * qb * t + qc
        exact = np.isin(at, self.alphas)  # breakpoints: their own value (SURE jumps there)
        out[exact] = self.values[np.searchsorted(-self.alphas, -at[exact])]
        return out


def homotopy_feasible(folds: list[Fold], max_steps: int) -> bool:
    """Whether the path's arrays fit in :data:`MAX_ENTRIES`."""
    p = folds[0].X.shape[1]
    sparse = sp.issparse(folds[0].X)
    return p * max_steps <= MAX_ENTRIES and (not sparse or p * p <= MAX_ENTRIES)


def _fold_path(
    fold: Fold, alpha_min: float, max_steps: int, messages: list[str]
) -> tuple[FloatArray, FloatArray]:
    X, y = fold.X, fold.y
    n = y.size
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SklearnConvergenceWarning)
        if sp.issparse(X):
            Xc = sp.csc_matrix(X)
            gram = np.asarray((Xc.T @ Xc).toarray()) - n * np.outer(fold.x_mean, fold.x_mean)
            xy = np.asarray(Xc.T @ y).ravel() - fold.x_mean * y.sum()
            alphas, _, coefs = cast(Any, lars_path_gram)(  # stubs type alpha_min as int
                xy, gram, n_samples=n, alpha_min=alpha_min, method="lasso", max_iter=max_steps
            )
        else:
            alphas, _, coefs = cast(Any, lars_path)(
                np.asarray(X), y, alpha_min=alpha_min, method="lasso", max_iter=max_steps
            )
    for w in caught:
        if issubclass(w.category, SklearnConvergenceWarning):
            messages.append(str(w.message))
    return np.asarray(alphas, dtype=np.float64), np.asarray(coefs, dtype=np.float64)


def _interpolate(alphas: FloatArray, columns: FloatArray, at: FloatArray) -> FloatArray:
    """Columns given at decreasing breakpoints ``alphas``, linearly interpolated at ``at``
    (constant beyond the first breakpoint, where the coefficients are zero)."""
    if alphas.size == 1:
        return np.repeat(columns[:, :1], at.size, axis=1)
    ra, rc = alphas[::-1], columns[:, ::-1]
    j = np.clip(np.searchsorted(ra, at, side="right") - 1, 0, ra.size - 2)
    width = ra[j + 1] - ra[j]
    w = np.clip(np.where(width > 0, (at - ra[j]) / np.where(width > 0, width, 1.0), 0.0), 0, 1)
    return rc[:, j] * (1 - w) + rc[:, j + 1] * w


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
        pred = np.asarray(X_eval @ coefs)
        if sp.issparse(X_eval) and np.any(fold.x_mean):
            pred = pred - fold.x_mean @ coefs
        resid = _interpolate(alphas, y_eval[:, None] - pred, grid)
        coef_at = _interpolate(alphas, coefs, grid)
        nnz = np.count_nonzero(np.abs(coef_at) > 0, axis=0)
        scale = 1.0 / (m * y_eval.size)
        values += scale * np.einsum("ij,ij->j", resid, resid)
        support += nnz / m
        u, v = resid[:, 1:], resid[:, :-1] - resid[:, 1:]  # residual at lower end, slope
        qa += scale * np.einsum("ij,ij->j", v, v)
        qb += scale * np.einsum("ij,ij->j", u, v)
        qc += scale * np.einsum("ij,ij->j", u, u)
        if criterion == "sure":  # support inside an interval: union of its ends' supports
            inside = (np.abs(coef_at[:, 1:]) > 0) | (np.abs(coef_at[:, :-1]) > 0)
            inner_df += np.count_nonzero(inside, axis=0)
    if criterion == "sure":
        s2, n = (sigma or 0.0) ** 2, folds[0].y.size
        values += -s2 + 2 * s2 * support / n
        qc += -s2 + 2 * s2 * inner_df / n
    tau = np.clip(-qb / np.where(qa > 0, qa, np.inf), 0.0, 1.0)
    if criterion == "sure":
        # SURE jumps at breakpoints (df = |S| drops where a coordinate is exactly zero); an
        # exact solve cannot reproduce that zero, so minimise over interval interiors only
        tau = np.clip(tau, 1e-6, 1 - 1e-6)
    inner = qa * tau**2 + 2 * qb * tau + qc
    i_in = int(np.argmin(inner)) if inner.size else -1
    i_end = int(np.argmin(values)) if criterion != "sure" or i_in < 0 else 0
    slopes = None
    if i_in >= 0 and (criterion == "sure" or (inner[i_in] < values[i_end] and 0 < tau[i_in] < 1)):
        best_alpha = float(grid[i_in + 1] + tau[i_in] * (grid[i_in] - grid[i_in + 1]))
        best_value = float(inner[i_in])
    else:  # at a breakpoint: a kink of beta(alpha); the one-sided slopes dC/dalpha
        best_alpha, best_value = float(grid[i_end]), float(values[i_end])
        width = -np.diff(grid)
        below = 2 * (qa[i_end] + qb[i_end]) / width[i_end] if i_end < grid.size - 1 else np.nan
        above = 2 * qb[i_end - 1] / width[i_end - 1] if i_end > 0 else np.nan
        slopes = (float(below), float(above))
    at = np.array([best_alpha])
    coefs_best = [_interpolate(a, c, at)[:, 0] for a, c in paths]
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
