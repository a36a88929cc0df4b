"""LASSO-type inner problems, their exact solutions and hypergradients (framework-free).

Objective (scikit-learn's convention), with penalties ``theta``:

* ``"lasso"``:    1/(2n) ||y - X b||^2 + a ||b||_1                   (theta = [a])
* ``"weighted"``: 1/(2n) ||y - X b||^2 + sum_j a_j |b_j|              (theta = a, one per feature)
* ``"enet"``:     1/(2n) ||y - X b||^2 + a1 ||b||_1 + a2/2 ||b||^2    (theta = [a1, a2])

The solution is the fixed point of proximal gradient, ``b = ST(b - g X'(Xb - y)/n, g a)``;
on the support ``S`` the nonsmooth implicit function theorem gives, with
``H = X_S'X_S/n (+ a2 I)`` and ``s = sign(b_S)``,

    db_S/da = -H^{-1} s   (lasso),   db_S/da_j = -H^{-1} e_j s_j   (weighted, j in S),
    db_S/da1 = -H^{-1} s,  db_S/da2 = -H^{-1} b_S   (enet),         db_{not S} = 0,

one ``|S| x |S|`` solve per hypergradient.  Coordinates off the support whose correlation
sits at the threshold (the equicorrelation set is larger than the support) are kinks: the
element used is the one keeping them at zero (``d b_j = 0``), and the history records them.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.linear_model import ElasticNet, Lasso

from .._typing import FloatArray

__all__ = ["Fold", "InnerSolution", "solve_inner"]


@dataclasses.dataclass
class Fold:
    """Training data (centered when fitting an intercept) and validation data centered with
    the training means, so that predictions include the intercept."""

    X: Any
    y: FloatArray
    X_val: Any
    y_val: FloatArray
    x_mean: FloatArray
    y_mean: float


def make_fold(X: Any, y: FloatArray, train: Any, val: Any, fit_intercept: bool) -> Fold:
    Xt, yt = X[train], y[train]
    Xv, yv = X[val], y[val]
    if fit_intercept:
        xm = np.asarray(Xt.mean(axis=0)).ravel()
        ym = float(yt.mean())
    else:
        xm, ym = np.zeros(X.shape[1]), 0.0
    if sp.issparse(X):
        # keep sparsity: centering is applied implicitly through x_mean
        return Fold(Xt, yt - ym, Xv, yv - ym, xm, ym)
    return Fold(Xt - xm, yt - ym, Xv - xm, yv - ym, xm, ym)


@dataclasses.dataclass
class InnerSolution:
    coef: FloatArray
    support: np.ndarray
    kinks: int
    singular: bool
    #: ``H = X_S'X_S/n (+ a2 I)`` and its Cholesky factor (``None`` when singular): factorized
    #: once by the exact polish and reused by ``coef_jacobian``.
    gram: FloatArray | None = None
    factor: Any = None
    #: largest violation of the optimality conditions, relative to the penalty
    violation: float = 0.0


def _matvec(X: Any, b: FloatArray, x_mean: FloatArray, sparse_centered: bool) -> FloatArray:
    out = X @ b
    return out - x_mean @ b if sparse_centered else out


def _correlations(X: Any, r: FloatArray, x_mean: FloatArray, sparse_centered: bool) -> FloatArray:
    """``X'r/n`` with ``X`` centered (implicitly for sparse ``X``)."""
    out = np.asarray(X.T @ r).ravel()
    return (out - x_mean * r.sum() if sparse_centered else out) / X.shape[0]


def _columns(X: Any, S: np.ndarray, x_mean: FloatArray, sparse_centered: bool) -> FloatArray:
    XS = X[:, S]
    XS = XS.toarray() if sp.issparse(XS) else np.asarray(XS)
    return XS - x_mean[S] if sparse_centered else XS


def solve_inner(
    fold: Fold, penalty: str, theta: FloatArray, warm: FloatArray | None, tol: float
) -> InnerSolution:
    """Solve the inner problem with coordinate descent, then polish it exactly on its
    support (Newton on the smooth restricted problem, accepted when signs are kept)."""
    X, y = fold.X, fold.y
    p = X.shape[1]
    centered = sp.issparse(X) and bool(np.any(fold.x_mean))
    scale = np.ones(p)
    if penalty == "lasso":
        model: Any = Lasso(
            alpha=float(theta[0]),
            fit_intercept=False,
            tol=tol,
            max_iter=100_000,
            warm_start=warm is not None,
            selection="cyclic",
        )
        Xfit = X
    elif penalty == "weighted":
        base = float(np.mean(theta))
        scale = base / theta  # b_j = scale_j c_j turns sum a_j |b_j| into base * ||c||_1
        Xfit = X.multiply(scale[None, :]).tocsc() if sp.issparse(X) else X * scale
        model = Lasso(
            alpha=base, fit_intercept=False, tol=tol, max_iter=100_000, warm_start=warm is not None
        )
    elif penalty == "enet":
        a1, a2 = float(theta[0]), float(theta[1])
        model = ElasticNet(
            alpha=a1 + a2,
            l1_ratio=a1 / (a1 + a2),
            fit_intercept=False,
            tol=tol,
            max_iter=100_000,
            warm_start=warm is not None,
        )
        Xfit = X
    else:  # pragma: no cover - validated by the caller
        raise ValueError(f"unknown penalty {penalty!r}")
    if centered:  # sparse X with an intercept: densify the (small) problem once
        Xfit = (Xfit.toarray() if sp.issparse(Xfit) else Xfit) - fold.x_mean * scale
    if warm is not None:
        model.coef_ = warm / scale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        model.fit(Xfit, y)
    coef = np.asarray(model.coef_, dtype=np.float64) * scale
    sol = _polish(fold, penalty, theta, coef)
    if sol.violation > 1e-7 and penalty != "enet":
        # coordinate descent stalled (it can on correlated or binary designs): follow the
        # homotopy down to this penalty instead; each of its breakpoints is certified
        from ._homotopy import _fold_path, max_steps

        base = float(theta[0]) if penalty == "lasso" else float(np.mean(theta))
        rescaled = Fold(Xfit, y, Xfit, y, np.zeros(p) if centered else fold.x_mean * scale, 0.0)
        alphas, coefs = _fold_path(rescaled, base, max_steps(*X.shape), [])
        if abs(alphas[-1] - base) <= 1e-12 * base:
            exact = _polish(fold, penalty, theta, coefs[:, [-1]].toarray().ravel() * scale)
            if exact.violation < sol.violation:
                sol = exact
    return sol


def _penalty_vectors(penalty: str, theta: FloatArray, p: int) -> tuple[FloatArray, float]:
    if penalty == "lasso":
        return np.full(p, float(theta[0])), 0.0
    if penalty == "weighted":
        return np.asarray(theta, dtype=np.float64), 0.0
    return np.full(p, float(theta[0])), float(theta[1])


def _polish(fold: Fold, penalty: str, theta: FloatArray, coef: FloatArray) -> InnerSolution:
    X, y = fold.X, fold.y
    n, p = X.shape
    centered = sp.issparse(X) and bool(np.any(fold.x_mean))
    a, ridge = _penalty_vectors(penalty, theta, p)
    S = np.flatnonzero(coef != 0)
    singular = False
    H, factor = None, None
    if S.size:
        XS = _columns(X, S, fold.x_mean, centered)
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
    r = y - _matvec(X, coef, fold.x_mean, centered)
    signed = _correlations(X, r, fold.x_mean, centered)
    corr = np.abs(signed)
    off = np.ones(p, dtype=bool)
    off[S] = False
    kinks = int(np.count_nonzero(off & (np.abs(corr - a) <= 1e-8 * np.maximum(a, 1e-300))))
    # optimality: |X_j'r/n| <= a_j off the support, X_S'r/n = a_S sign(b_S) (+ ridge b_S) on it
    scale = np.maximum(a, 1e-300)
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


def coef_jacobian(fold: Fold, penalty: str, theta: FloatArray, sol: InnerSolution) -> FloatArray:
    """``d b_S / d theta`` as an ``|S| x len(theta)`` matrix (rows on the support)."""
    p = fold.X.shape[1]
    S = sol.support
    if S.size == 0:
        return np.zeros((0, len(theta)))
    s = np.sign(sol.coef[S])
    if penalty == "lasso":
        rhs = -s[:, None]
    elif penalty == "weighted":
        rhs = np.zeros((S.size, p))
        rhs[np.arange(S.size), S] = -s
    else:
        rhs = np.stack([-s, -sol.coef[S]], axis=1)
    if sol.factor is None:  # singular X_S'X_S: least squares (recorded as ``singular``)
        assert sol.gram is not None
        return np.asarray(np.linalg.lstsq(sol.gram, rhs, rcond=None)[0], dtype=np.float64)
    return scipy.linalg.cho_solve(sol.factor, rhs)


def validation_loss_and_grad(fold: Fold, sol: InnerSolution) -> tuple[float, FloatArray]:
    """Held-out MSE and its gradient in ``b`` restricted to the support."""
    centered = sp.issparse(fold.X_val) and bool(np.any(fold.x_mean))
    r = fold.y_val - _matvec(fold.X_val, sol.coef, fold.x_mean, centered)
    nv = r.size
    S = sol.support
    XS = _columns(fold.X_val, S, fold.x_mean, centered) if S.size else np.zeros((nv, 0))
    return float(r @ r / nv), -2.0 * XS.T @ r / nv
