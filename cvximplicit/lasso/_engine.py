"""LASSO-type inner problems, their exact solutions and hypergradients (framework-free).

The penalty kinds are strategies (`._penalty`).  The solution is the fixed point of
proximal gradient, ``b = ST(b - g X'(Xb - y)/n, g a)``; on the support ``S`` the nonsmooth
implicit function theorem gives, with ``H = X_S'X_S/n (+ ridge I)`` and ``s = sign(b_S)``,

    db_S/dtheta = H^{-1} rhs(theta),     db_{not S} = 0,

(``rhs = -s`` for the LASSO), one ``|S| x |S|`` solve per hypergradient.  Coordinates off
the support whose correlation sits at the threshold (the equicorrelation set is larger than
the support) are kinks: the element used is the one keeping them at zero (``d b_j = 0``),
and the history records them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .._compiled import compiled
from .._typing import FloatArray
from ._homotopy import fold_path, max_steps, penalty_path
from ._linalg import Fold, columns, correlations, make_fold, matvec
from ._penalty import Penalty, penalty_named

__all__ = ["Fold", "InnerSolution", "homotopy_solution", "make_fold", "solve_inner"]

#: relative KKT violation below which a polished solution is accepted as exact
KKT_CHECK = 1e-7


@dataclasses.dataclass
class InnerSolution:
    coef: FloatArray
    support: np.ndarray
    kinks: int
    singular: bool
    #: ``H = X_S'X_S/n (+ ridge I)`` and its Cholesky factor (``None`` when singular):
    #: factorized once by the exact polish and reused by ``coef_jacobian``.
    gram: FloatArray | None = None
    factor: Any = None
    #: largest violation of the optimality conditions, relative to the penalty
    violation: float = 0.0
    #: coordinate-descent epochs
    n_iter: int = 0


def solve_inner(
    fold: Fold,
    penalty: Penalty | str,
    theta: FloatArray,
    warm: FloatArray | None,
    tol: float,
    max_iter: int = 100_000,
    warm_weights: FloatArray | None = None,
) -> InnerSolution:
    """Solve the inner problem with coordinate descent, then polish it exactly on its
    support (Newton on the smooth restricted problem, accepted when signs are kept).
    A warm start is polished first and returned when that passes the KKT check (no
    coordinate descent at all: the case along a path or after a grid); otherwise, when
    the warm start is known to solve the penalties ``warm_weights`` (no ridge term), the
    solution path is followed from it to this penalty (`penalty_path()`), polished and
    checked.  Sparse ``X`` stays sparse (scikit-learn centres it implicitly).  Where
    coordinate descent stalls (KKT violation above `KKT_CHECK`) and the penalty is a
    rescaled LASSO, the homotopy is followed down to this penalty instead."""
    penalty = penalty_named(penalty)
    if warm is not None:  # a warm start with the right support and signs is exact once polished
        sol = _certified(fold, penalty, theta, warm)
        if sol is not None:
            return sol
        weights, ridge = penalty.weights(theta, fold.X.shape[1])
        if warm_weights is not None and ridge == 0.0:
            # the warm start solved the penalty `warm_weights`: follow the path from it
            coef = penalty_path(fold, warm_weights, weights, warm, max_steps(*fold.X.shape))
            sol = _certified(fold, penalty, theta, coef)
            if sol is None and compiled("lasso._numba_homotopy") is not None:
                # refused: the compiled homotopy from alpha_max costs less than coordinate
                # descent from the warm start (weighted LASSO on diabetes degree-3
                # features, one penalty per degree: 20 vs 88 ms per solve)
                sol = _certified(fold, penalty, theta, homotopy_solution(fold, penalty, theta))
            if sol is not None:
                return sol
    coef, n_iter = penalty.solve(fold, theta, warm, tol, max_iter)
    sol = _polish(fold, penalty, theta, coef)
    sol.n_iter = n_iter
    if sol.violation > KKT_CHECK and penalty.lasso_alpha(theta) is not None:
        # coordinate descent stalled (it can on correlated or binary designs): follow the
        # homotopy down to this penalty instead; each of its breakpoints is certified
        coef = homotopy_solution(fold, penalty, theta)
        if coef is not None:
            exact = _polish(fold, penalty, theta, coef)
            if exact.violation < sol.violation:
                exact.n_iter = n_iter
                sol = exact
    return sol


def _certified(
    fold: Fold, penalty: Penalty, theta: FloatArray, coef: FloatArray | None
) -> InnerSolution | None:
    """``coef`` polished exactly on its support, if it passes the KKT check there."""
    if coef is None:
        return None
    sol = _polish(fold, penalty, theta, coef)
    return sol if sol.violation <= KKT_CHECK else None


def homotopy_solution(fold: Fold, penalty: Penalty | str, theta: FloatArray) -> FloatArray | None:
    """The exact solution at ``theta`` by the homotopy from ``alpha_max`` (for penalties
    that are a LASSO after rescaling the columns), or ``None`` (no such rescaling, or the
    path stopped early).  A cold coordinate-descent solve at a tight tolerance can take
    thousands of epochs on correlated designs; warm-started from this it takes one."""
    penalty = penalty_named(penalty)
    base = penalty.lasso_alpha(theta)
    if base is None:
        return None
    X, y = fold.X, fold.y
    p = X.shape[1]
    scale = penalty.column_scale(theta, p)
    # (sparse X stays sparse, centred implicitly through the scaled means)
    Xs = X.multiply(scale[None, :]).tocsc() if sp.issparse(X) else X * scale
    x_mean = fold.x_mean * scale
    alphas, coefs = fold_path(Fold(Xs, y, Xs, y, x_mean, 0.0), base, max_steps(*X.shape))
    if abs(alphas[-1] - base) > 1e-12 * base:
        return None
    return coefs[:, [-1]].toarray().ravel() * scale


def _polish(fold: Fold, penalty: Penalty, theta: FloatArray, coef: FloatArray) -> InnerSolution:
    X, y = fold.X, fold.y
    n, p = X.shape
    centered = fold.sparse_centered
    a, ridge = penalty.weights(theta, p)
    S = np.flatnonzero(coef != 0)
    singular = False
    H, factor = None, None
    XS = columns(X, S, fold.x_mean, centered) if S.size else np.zeros((n, 0))
    if S.size:
        # coefficients whose contribution to the fit is round-off (coordinate descent can
        # leave 1e-17 on a coordinate sitting exactly at its threshold) are zero
        tiny = np.abs(coef[S]) * np.linalg.norm(XS, axis=0) <= 1e-14 * np.linalg.norm(y)
        if np.any(tiny):
            coef = coef.copy()
            coef[S[tiny]] = 0.0
            S, XS = S[~tiny], XS[:, ~tiny]
    if S.size:
        H = XS.T @ XS / n + ridge * np.eye(S.size)
        rhs = XS.T @ y / n - a[S] * np.sign(coef[S])
        try:
            factor = scipy.linalg.cho_factor(H)
            diag = np.abs(np.diag(factor[0]))
            singular = bool((diag.min() / diag.max()) ** 2 < 1e-12)  # ~ condition > 1e12
        except np.linalg.LinAlgError:
            singular = True
        if singular:
            factor = None
        else:
            exact = scipy.linalg.cho_solve(factor, rhs)
            if np.all(np.sign(exact) == np.sign(coef[S])):
                coef = coef.copy()
                coef[S] = exact
    r = y - matvec(X, coef, fold.x_mean, centered)
    signed = correlations(X, r, fold.x_mean, centered)
    corr = np.abs(signed)
    off = np.ones(p, dtype=bool)
    off[S] = False
    kinks = int(np.count_nonzero(off & (np.abs(corr - a) <= 1e-8 * np.maximum(a, 1e-300))))
    # optimality: |X_j'r/n| <= a_j off the support, X_S'r/n = a_S sign(b_S) + ridge b_S on it
    scale = np.maximum(a, 1e-300) if ridge == 0 else np.maximum(a + ridge * np.abs(coef), 1e-300)
    violation = max(
        float(np.max((corr - a)[off] / scale[off], initial=0.0)),
        float(
            np.max(
                np.abs(signed[S] - a[S] * np.sign(coef[S]) - ridge * coef[S]) / scale[S],
                initial=0.0,
            )
        ),
    )
    return InnerSolution(
        coef=coef,
        support=S,
        kinks=kinks,
        singular=singular,
        gram=H,
        factor=factor,
        violation=violation,
    )


def coef_jacobian(
    fold: Fold, penalty: Penalty | str, theta: FloatArray, sol: InnerSolution
) -> FloatArray:
    """``d b_S / d theta`` as an ``|S| x len(theta)`` matrix (rows on the support)."""
    S = sol.support
    if S.size == 0:
        return np.zeros((0, len(theta)))
    rhs = penalty_named(penalty).rhs(theta, sol.coef[S], S, fold.X.shape[1])
    if sol.factor is None:  # singular X_S'X_S: least squares (recorded as ``singular``)
        assert sol.gram is not None
        return np.asarray(np.linalg.lstsq(sol.gram, rhs, rcond=None)[0], dtype=np.float64)
    return scipy.linalg.cho_solve(sol.factor, rhs)


def pull_back(
    fold: Fold, penalty: Penalty | str, theta: FloatArray, sol: InnerSolution, g: FloatArray
) -> FloatArray:
    """``g' d b_S / d theta`` by the adjoint: one solve ``H w = g`` and ``w' rhs``, instead
    of ``|theta|`` solves (the weighted LASSO has one parameter per feature)."""
    S = sol.support
    if S.size == 0:
        return np.zeros(len(theta))
    rhs = penalty_named(penalty).rhs(theta, sol.coef[S], S, fold.X.shape[1])
    if sol.factor is None:  # singular X_S'X_S: least squares (recorded as ``singular``)
        assert sol.gram is not None
        w = np.linalg.lstsq(sol.gram, g, rcond=None)[0]
    else:
        w = scipy.linalg.cho_solve(sol.factor, g)
    return np.asarray(w @ rhs, dtype=np.float64)


def validation_loss_and_grad(fold: Fold, sol: InnerSolution) -> tuple[float, FloatArray]:
    """Held-out MSE and its gradient in ``b`` restricted to the support."""
    centered = sp.issparse(fold.X_val) and bool(np.any(fold.x_mean))
    r = fold.y_val - matvec(fold.X_val, sol.coef, fold.x_mean, centered)
    nv = r.size
    S = sol.support
    XS = columns(fold.X_val, S, fold.x_mean, centered) if S.size else np.zeros((nv, 0))
    return float(r @ r / nv), -2.0 * XS.T @ r / nv
