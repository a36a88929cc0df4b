"""Hyperparameter tuning of LASSO-type models by exact nonsmooth hypergradients."""

from __future__ import annotations

import time
from typing import Any, cast

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import lasso_path
from sklearn.model_selection import check_cv
from sklearn.utils.validation import check_is_fitted, check_X_y, validate_data

from .._typing import FloatArray
from ._engine import (
    Fold,
    InnerSolution,
    coef_jacobian,
    make_fold,
    solve_inner,
    validation_loss_and_grad,
)

__all__ = [
    "ImplicitElasticNetCV",
    "ImplicitLassoCV",
    "ImplicitWeightedLassoCV",
    "hypergradient",
]

PENALTIES = ("lasso", "weighted", "enet")


class _Criterion:
    """``C(theta)`` and its gradient: mean held-out MSE over folds, or SURE."""

    def __init__(
        self,
        X: Any,
        y: FloatArray,
        penalty: str,
        criterion: str,
        cv: Any,
        fit_intercept: bool,
        sigma: float | None,
        tol: float,
    ) -> None:
        self.penalty, self.criterion, self.tol = penalty, criterion, tol
        n = X.shape[0]
        if criterion == "sure":
            if penalty == "enet":
                raise ValueError(
                    "criterion='sure' is not available for the elastic net (its degrees of "
                    "freedom are not the support size); use criterion='cv'"
                )
            self.folds = [make_fold(X, y, np.arange(n), np.arange(n), fit_intercept)]
            self.sigma = (
                _noise_level(self.folds[0], fit_intercept) if sigma is None else float(sigma)
            )
        elif criterion == "cv":
            splitter = cast(Any, check_cv(cv))
            self.folds = [make_fold(X, y, tr, te, fit_intercept) for tr, te in splitter.split(X, y)]
            self.sigma = None
        else:
            raise ValueError(f"criterion must be 'cv' or 'sure', got {criterion!r}")
        self.warm: list[FloatArray | None] = [None] * len(self.folds)
        self.last: list[InnerSolution] = []

    def path(self, alphas: FloatArray) -> FloatArray:
        """The criterion along a decreasing grid of LASSO penalties, by scikit-learn's
        warm-started ``lasso_path`` (moderate tolerance: it only chooses where to refine).
        The solutions at the best penalty warm-start the refinement."""
        totals = np.zeros(alphas.size)
        paths = []
        for fold in self.folds:
            X = (
                fold.X.toarray() - fold.x_mean
                if sp.issparse(fold.X) and np.any(fold.x_mean)
                else fold.X
            )
            _, coefs, _ = cast(Any, lasso_path)(X, fold.y, alphas=alphas, tol=1e-6, max_iter=10_000)
            paths.append(coefs)
            Xv = (
                fold.X_val.toarray() - fold.x_mean
                if sp.issparse(fold.X_val) and np.any(fold.x_mean)
                else fold.X_val
            )
            resid = fold.y_val[:, None] - np.asarray(Xv @ coefs)
            values = np.mean(resid**2, axis=0)
            if self.criterion == "sure":
                sigma = self.sigma or 0.0
                values = (
                    values - sigma**2 + 2 * sigma**2 * np.count_nonzero(coefs, axis=0) / fold.y.size
                )
            totals += values
        best = int(np.argmin(totals))
        self.warm = [c[:, best].copy() for c in paths]
        self.path_support = np.mean([np.count_nonzero(c, axis=0) for c in paths], axis=0)
        return totals / len(self.folds)

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray]:
        total, grad = 0.0, np.zeros(len(theta))
        self.last = []
        for k, fold in enumerate(self.folds):
            sol = solve_inner(fold, self.penalty, theta, self.warm[k], self.tol)
            self.warm[k] = sol.coef
            self.last.append(sol)
            J = coef_jacobian(fold, self.penalty, theta, sol)
            if self.criterion == "sure":
                value, g = _sure(fold, sol, self.sigma or 0.0)
            else:
                value, g = validation_loss_and_grad(fold, sol)
            total += value
            if J.size:
                grad += g @ J
        m = len(self.folds)
        return total / m, grad / m


def _noise_level(fold: Fold, fit_intercept: bool) -> float:
    n, p = fold.X.shape
    dof = n - p - int(fit_intercept)
    if dof <= 0:
        raise ValueError(
            "criterion='sure' needs the noise level: pass sigma= (it cannot be estimated by "
            f"least squares with n={n} samples and p={p} features)"
        )
    X = fold.X.toarray() if sp.issparse(fold.X) else fold.X
    resid = fold.y - X @ np.linalg.lstsq(X, fold.y, rcond=None)[0]
    return float(np.sqrt(resid @ resid / dof))


def _sure(fold: Fold, sol: InnerSolution, sigma: float) -> tuple[float, FloatArray]:
    """Stein's unbiased risk estimate per sample, ``(||y - Xb||^2 - n s^2 + 2 s^2 |S|)/n``
    (the LASSO's degrees of freedom are ``|S|``, piecewise constant), and its gradient on S."""
    n = fold.y.size
    value, g = validation_loss_and_grad(
        Fold(fold.X, fold.y, fold.X, fold.y, fold.x_mean, fold.y_mean), sol
    )
    return value - sigma**2 + 2 * sigma**2 * sol.support.size / n, g


def hypergradient(
    X: Any,
    y: Any,
    alpha: Any,
    criterion: str = "cv",
    *,
    cv: Any = 5,
    penalty: str = "lasso",
    fit_intercept: bool = True,
    sigma: float | None = None,
    tol: float = 1e-12,
) -> tuple[float, FloatArray]:
    r"""The criterion ``C(beta(alpha))`` and its exact gradient in ``alpha``.

    ``beta(alpha)`` minimises scikit-learn's objective ``1/(2n)||y - X beta||^2 + penalty``
    (``penalty="lasso"``: ``alpha ||beta||_1``; ``"weighted"``: ``sum_j alpha_j |beta_j|``;
    ``"enet"``: ``alpha[0] ||beta||_1 + alpha[1]/2 ||beta||^2``).  The gradient comes from
    the nonsmooth implicit function theorem applied to the proximal-gradient fixed point,
    restricted to the support: one ``|S| x |S|`` solve per fold.

    Args:
        criterion: ``"cv"`` (mean held-out MSE over the folds of ``cv``, which follows
            ``LassoCV``: an int, a splitter, or an iterable of ``(train, test)`` pairs; one
            pair is hold-out validation) or ``"sure"`` (Stein's unbiased risk estimate,
            ``sigma`` known or estimated by least squares).

    Example:
        >>> import numpy as np
        >>> from cvximplicit.lasso import hypergradient
        >>> rng = np.random.default_rng(0); X = rng.standard_normal((60, 8))
        >>> y = X[:, 0] - 2 * X[:, 1] + 0.1 * rng.standard_normal(60)
        >>> value, grad = hypergradient(X, y, 0.05, cv=3)
        >>> grad.shape
        (1,)
    """
    if penalty not in PENALTIES:
        raise ValueError(f"penalty must be one of {PENALTIES}, got {penalty!r}")
    X, y = cast(Any, check_X_y)(X, y, accept_sparse="csc", y_numeric=True, dtype=np.float64)
    theta = np.atleast_1d(np.asarray(alpha, dtype=np.float64))
    expected = {"lasso": 1, "weighted": X.shape[1], "enet": 2}[penalty]
    if theta.size != expected or np.any(theta <= 0):
        raise ValueError(
            f"penalty={penalty!r} takes {expected} positive value(s) in alpha, got {theta.tolist()}"
        )
    return _Criterion(X, y, penalty, criterion, cv, fit_intercept, sigma, tol)(theta)


class _ImplicitTuner(RegressorMixin, BaseEstimator):
    """Shared machinery of the tuning estimators (see :class:`ImplicitLassoCV`)."""

    _penalty = "lasso"
    alpha_: Any

    def __init__(
        self,
        cv: Any = 5,
        criterion: str = "cv",
        sigma: float | None = None,
        fit_intercept: bool = True,
        method: str = "lbfgs",
        n_grid: int = 10,
        n_starts: int = 3,
        eps: float = 1e-3,
        max_iter: int = 50,
        tol_outer: float = 1e-7,
        tol: float = 1e-10,
        verbose: bool = False,
    ) -> None:
        self.cv, self.criterion, self.sigma = cv, criterion, sigma
        self.fit_intercept, self.method, self.n_grid, self.eps = fit_intercept, method, n_grid, eps
        self.n_starts = n_starts
        self.max_iter, self.tol_outer, self.tol, self.verbose = max_iter, tol_outer, tol, verbose

    def _set_alpha(self, theta: FloatArray) -> None:
        raise NotImplementedError

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _n_theta(self, n_features: int) -> int:
        return {"lasso": 1, "weighted": n_features, "enet": 2}[self._penalty]

    def _alpha_max(self, X: Any, y: FloatArray) -> float:
        if self.fit_intercept:
            xm = np.asarray(X.mean(axis=0)).ravel()
            corr = np.asarray(X.T @ (y - y.mean())).ravel() - xm * (y - y.mean()).sum()
        else:
            corr = np.asarray(X.T @ y).ravel()
        return float(np.abs(corr).max() / X.shape[0]) or 1.0

    def fit(self, X: Any, y: Any) -> _ImplicitTuner:
        """Tune the penalties on ``(X, y)``, then refit on all of it with the best ones."""
        X, y = validate_data(self, X, y, accept_sparse="csc", y_numeric=True, dtype=np.float64)
        n, p = X.shape
        crit = _Criterion(
            X, y, self._penalty, self.criterion, self.cv, self.fit_intercept, self.sigma, self.tol
        )
        a_max = self._alpha_max(X, y)
        lo, hi = np.log(a_max * self.eps), np.log(a_max)
        history: dict[str, list[Any]] = {
            k: []
            for k in ("alpha", "criterion", "gradient", "time", "support", "kinks", "singular")
        }
        start = time.perf_counter()
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(desc=f"tuning {self._penalty}", unit=" evaluations")

        def record(
            theta: FloatArray, value: float, grad: FloatArray, support: int | None = None
        ) -> None:
            history["alpha"].append(theta.copy() if theta.size > 1 else float(theta[0]))
            history["criterion"].append(value)
            history["gradient"].append(grad.copy() if grad.size > 1 else float(grad[0]))
            history["time"].append(time.perf_counter() - start)
            if bar is not None:
                bar.update()
                bar.set_postfix(alpha=f"{float(np.mean(theta)):.3g}", criterion=f"{value:.5g}")
            if support is not None:  # a coarse-path point: no exact solve was made
                history["support"].append(support)
                history["kinks"].append(0)
                history["singular"].append(False)
                return
            history["support"].append(int(np.mean([s.support.size for s in crit.last])))
            history["kinks"].append(int(sum(s.kinks for s in crit.last)))
            history["singular"].append(bool(any(s.singular for s in crit.last)))

        # 1. a cheap coarse path (warm-started, from alpha_max down) chooses the start, since
        #    the criterion is nonconvex in alpha and can have several local minima; the
        #    refinement then stays between the best point's neighbours on the path.
        grid = np.linspace(hi, lo, self.n_grid)
        k = self._n_theta(p)
        if self._penalty == "lasso":
            values = crit.path(np.exp(grid))
            for t, v, supp in zip(grid, values, crit.path_support):
                record(np.exp(np.array([t])), float(v), np.array([np.nan]), round(float(supp)))
        else:
            values = []
            for t in grid:
                theta = self._theta(np.full(k, t))
                value, grad = crit(theta)
                record(theta, value, grad)
                values.append(value)
        # 2. hypergradient refinement in log(alpha), from the best local minima of the path
        #    (``n_starts`` of them), each kept between its neighbours on the path.
        values = np.asarray(values, dtype=np.float64)
        minima = [
            j
            for j in range(len(grid))
            if (j == 0 or values[j] <= values[j - 1])
            and (j == len(grid) - 1 or values[j] <= values[j + 1])
        ]
        minima = sorted(minima, key=lambda j: values[j])[: max(1, self.n_starts)]

        def fun(t: FloatArray) -> tuple[float, FloatArray]:
            theta = self._theta(t)
            value, grad = crit(theta)
            record(theta, value, grad)
            return value, grad * self._dtheta(t)

        for j in minima:
            bounds = [(grid[min(j + 1, len(grid) - 1)], grid[max(j - 1, 0)])] * k
            t0 = np.full(k, grid[j])
            # every evaluation is recorded; the best point of the history is used below
            if self.method == "lbfgs":
                scipy.optimize.minimize(
                    fun,
                    t0,
                    jac=True,
                    method="L-BFGS-B",
                    bounds=bounds,
                    options={"maxiter": self.max_iter, "ftol": self.tol_outer},
                )
            elif self.method == "gd":
                _gradient_descent(fun, t0, bounds, self.max_iter, self.tol_outer)
            else:
                raise ValueError(f"method must be 'lbfgs' or 'gd', got {self.method!r}")
        if bar is not None:
            bar.close()
        values = np.asarray(history["criterion"])
        i = int(np.argmin(values))  # the optimiser's point, or an earlier one if it was better
        theta_best = np.atleast_1d(np.asarray(history["alpha"][i], dtype=np.float64))
        # 3. refit on all the data.
        full = make_fold(X, y, np.arange(n), np.arange(n), self.fit_intercept)
        sol = solve_inner(full, self._penalty, theta_best, None, self.tol)
        self.coef_ = sol.coef
        self.intercept_ = float(full.y_mean - full.x_mean @ sol.coef) if self.fit_intercept else 0.0
        self._set_alpha(theta_best)
        self.history_ = history
        self.n_iter_ = len(values)
        return self

    def _theta(self, t: FloatArray) -> FloatArray:
        return np.exp(t)

    def _dtheta(self, t: FloatArray) -> FloatArray:
        return np.exp(t)

    def predict(self, X: Any) -> FloatArray:
        """Predictions ``X coef_ + intercept_``."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csc", dtype=np.float64, reset=False)
        return np.asarray(X @ self.coef_).ravel() + self.intercept_

    def plot(self, ax: Any = None) -> Any:
        """Criterion against alpha: the coarse path and the hypergradient iterates."""
        check_is_fitted(self)
        import matplotlib.pyplot as plt

        ax = ax or plt.subplots(figsize=(5, 3.2))[1]
        alphas = np.asarray([np.mean(a) for a in self.history_["alpha"]])
        values = np.asarray(self.history_["criterion"])
        ax.semilogx(
            alphas[: self.n_grid], values[: self.n_grid], "o-", color="0.6", label="coarse path"
        )
        ax.semilogx(
            alphas[self.n_grid :],
            values[self.n_grid :],
            ".-",
            color="C0",
            label="hypergradient iterates",
        )
        ax.axvline(float(np.mean(self.alpha_)), color="C1", lw=1, label="chosen")
        ax.set_xlabel("alpha" if self._penalty == "lasso" else "mean penalty")
        ax.set_ylabel(self.criterion)
        ax.legend()
        return ax


def _gradient_descent(
    fun: Any, t: FloatArray, bounds: list[tuple[float, float]], max_iter: int, tol: float
) -> FloatArray:
    """Projected gradient descent with Armijo backtracking: steps shrink until the criterion
    decreases, so the iteration cannot diverge."""
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    value, grad = fun(t)
    step = 1.0 / max(float(np.linalg.norm(grad)), 1e-12)
    for _ in range(max_iter):
        for _ in range(30):
            cand = np.clip(t - step * grad, lo, hi)
            v, g = fun(cand)
            if v <= value - 1e-4 * float(grad @ (t - cand)):
                break
            step *= 0.5
        else:
            return t
        change = abs(value - v) / max(abs(value), 1e-300)
        t, value, grad = cand, v, g
        step *= 2.0
        if change <= tol:
            break
    return t


class ImplicitLassoCV(_ImplicitTuner):
    r"""LASSO whose penalty is tuned by exact hypergradients of a validation criterion.

    Objective ``1/(2n) ||y - X beta||^2 + alpha ||beta||_1`` (scikit-learn's).  The
    criterion is minimised over ``log(alpha)``: a coarse warm-started path picks the start
    (the criterion is nonconvex), then L-BFGS-B uses ``dC/dalpha`` from the implicit
    function theorem on the support (one ``|S| x |S|`` solve per fold).

    Args:
        cv: folds, as for ``LassoCV``: an int, a scikit-learn splitter, or an iterable of
            ``(train, test)`` index pairs (one pair: hold-out validation).
        criterion: ``"cv"`` (mean held-out MSE) or ``"sure"`` (Stein's unbiased risk
            estimate; ``sigma`` known or estimated by least squares when n > p).
        method: outer optimiser over ``log(alpha)``: ``"lbfgs"`` (L-BFGS-B, default) or
            ``"gd"`` (projected gradient descent with backtracking; cannot diverge).
        n_grid: size of the coarse warm-started path (``alpha_max`` down to
            ``eps * alpha_max``, scikit-learn's ``lasso_path``) that chooses where to refine.
        n_starts: refine from the ``n_starts`` best local minima of the coarse path, each
            within its neighbours on the path (the criterion is nonconvex).
        max_iter, tol_outer: outer iterations and relative-change stopping rule.
        verbose: show a progress bar over criterion evaluations (``tqdm``).
        tol: inner coordinate-descent tolerance (solutions are then polished exactly).

    Attributes:
        alpha_, coef_, intercept_: the chosen penalties and the model refit on all data.
        history_: ``alpha``, ``criterion``, ``gradient``, ``time``, ``support``, ``kinks``
            (coordinates at the threshold off the support) and ``singular`` (whether
            ``X_S'X_S`` was singular) for every evaluation, path first.

    Example:
        >>> import numpy as np
        >>> from cvximplicit.lasso import ImplicitLassoCV
        >>> rng = np.random.default_rng(0); X = rng.standard_normal((80, 10))
        >>> y = X[:, 0] - 2 * X[:, 1] + 0.1 * rng.standard_normal(80)
        >>> est = ImplicitLassoCV(cv=4).fit(X, y)
        >>> bool(est.alpha_ > 0) and est.coef_.shape == (10,)
        True
    """

    _penalty = "lasso"

    def _set_alpha(self, theta: FloatArray) -> None:
        self.alpha_ = float(theta[0])


class ImplicitWeightedLassoCV(ImplicitLassoCV):
    """Weighted LASSO, ``sum_j alpha_j |beta_j|``: one penalty per feature, tuned jointly by
    hypergradients (a grid search is impossible in ``p`` dimensions)."""

    _penalty = "weighted"

    def _set_alpha(self, theta: FloatArray) -> None:
        self.alpha_ = theta.copy()


class ImplicitElasticNetCV(ImplicitLassoCV):
    """Elastic net, ``alpha[0] ||beta||_1 + alpha[1]/2 ||beta||^2``, both penalties tuned
    by hypergradients."""

    _penalty = "enet"

    def _set_alpha(self, theta: FloatArray) -> None:
        self.alpha_ = theta.copy()
