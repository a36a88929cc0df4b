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
from ._homotopy import CriterionPath, exact_criterion_path, homotopy_feasible
from ._homotopy import max_steps as _max_steps

__all__ = [
    "CriterionPath",
    "ImplicitElasticNetCV",
    "ImplicitLassoCV",
    "ImplicitWeightedLassoCV",
    "criterion_path",
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

    def path(self, alphas: FloatArray, warm_start: bool = True) -> tuple[FloatArray, FloatArray]:
        """The criterion and the mean support size along a decreasing grid of LASSO
        penalties, by scikit-learn's warm-started ``lasso_path`` (moderate tolerance: it only
        chooses where to refine).  With ``warm_start``, the solutions at the best penalty
        warm-start the refinement."""
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
        if warm_start:
            best = int(np.argmin(totals))
            self.warm = [c[:, best].copy() for c in paths]
        support = np.mean([np.count_nonzero(c, axis=0) for c in paths], axis=0)
        return totals / len(self.folds), support

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
    r"""The criterion $C(\beta(\alpha))$ and its exact gradient in $\alpha$.

    $\beta(\alpha)$ minimises scikit-learn's objective
    $\frac{1}{2n}\|y - X\beta\|_2^2 + \mathrm{penalty}$ (``penalty="lasso"``:
    $\alpha \|\beta\|_1$; ``"weighted"``: $\sum_j \alpha_j |\beta_j|$; ``"enet"``:
    $\alpha_0 \|\beta\|_1 + \frac{\alpha_1}{2} \|\beta\|_2^2$).  The gradient comes from the
    nonsmooth implicit function theorem applied to the proximal-gradient fixed point,
    restricted to the support: one $|S| \times |S|$ solve per fold.

    Args:
        criterion: ``"cv"`` (mean held-out MSE over the folds of ``cv``, which follows
            ``LassoCV``: an int, a splitter, or an iterable of ``(train, test)`` pairs; one
            pair is hold-out validation) or ``"sure"`` (Stein's unbiased risk estimate,
            ``sigma`` known or estimated by least squares).

    Examples:
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


def criterion_path(
    X: Any,
    y: Any,
    criterion: str = "cv",
    *,
    cv: Any = 5,
    fit_intercept: bool = True,
    sigma: float | None = None,
    eps: float = 1e-3,
) -> CriterionPath:
    r"""The LASSO tuning criterion over $[\epsilon\,\alpha_{\max}, \alpha_{\max}]$, exactly.

    Between consecutive kinks of $\beta(\alpha)$ the support $S$ and signs $s$ are fixed
    and the nonsmooth implicit function theorem gives a constant derivative
    $d\beta_S / d\alpha = -(X_S^\top X_S/n)^{-1} s$: $\beta$ is piecewise linear, and the
    held-out MSE (``criterion="cv"``, folds as in :func:`hypergradient`) and SURE are
    piecewise quadratic in $\alpha$.  Each fold's path is integrated from kink to kink
    (LARS-lasso homotopy), the breakpoints are merged and the global minimum is taken in
    closed form on each interval.

    Examples:
        >>> import numpy as np
        >>> from cvximplicit.lasso import criterion_path, hypergradient
        >>> rng = np.random.default_rng(0); X = rng.standard_normal((60, 30))
        >>> y = X[:, 0] - 2 * X[:, 1] + 0.5 * rng.standard_normal(60)
        >>> path = criterion_path(X, y, cv=3)
        >>> exact, _ = hypergradient(X, y, path.best_alpha, cv=3)
        >>> bool(abs(exact - path.best_value) < 1e-8 * exact)
        True
    """
    X, y = cast(Any, check_X_y)(X, y, accept_sparse="csc", y_numeric=True, dtype=np.float64)
    if not 0 < eps < 1:
        raise ValueError(f"eps must be in (0, 1), got {eps}")
    crit = _Criterion(X, y, "lasso", criterion, cv, fit_intercept, sigma, 1e-10)
    a_max = _alpha_max(X, y, fit_intercept)
    n, p = crit.folds[0].X.shape
    if not homotopy_feasible(crit.folds, criterion):
        raise ValueError(
            f"the criterion path over {len(crit.folds)} folds would not fit in memory; use "
            "fewer folds or ImplicitLassoCV(search='grid')"
        )
    return exact_criterion_path(
        crit.folds, crit.criterion, crit.sigma, eps * a_max, a_max, _max_steps(n, p)
    )


def _alpha_max(X: Any, y: FloatArray, fit_intercept: bool) -> float:
    """The smallest penalty with an all-zero solution on the whole data."""
    if fit_intercept:
        xm = np.asarray(X.mean(axis=0)).ravel()
        corr = np.asarray(X.T @ (y - y.mean())).ravel() - xm * (y - y.mean()).sum()
    else:
        corr = np.asarray(X.T @ y).ravel()
    return float(np.abs(corr).max() / X.shape[0]) or 1.0


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
        search: str = "auto",
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
        self.search = search
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

    def fit(self, X: Any, y: Any) -> _ImplicitTuner:
        """Tune the penalties on ``(X, y)``, then refit on all of it with the best ones."""
        X, y = validate_data(self, X, y, accept_sparse="csc", y_numeric=True, dtype=np.float64)
        n, p = X.shape
        crit = _Criterion(
            X, y, self._penalty, self.criterion, self.cv, self.fit_intercept, self.sigma, self.tol
        )
        a_max = _alpha_max(X, y, self.fit_intercept)
        lo, hi = np.log(a_max * self.eps), np.log(a_max)
        history: dict[str, list[Any]] = {
            k: []
            for k in (
                "alpha",
                "criterion",
                "gradient",
                "time",
                "support",
                "kinks",
                "singular",
                "stage",
            )
        }
        if self.method not in ("lbfgs", "gd"):
            raise ValueError(f"method must be 'lbfgs' or 'gd', got {self.method!r}")
        if not 0 < self.eps < 1:
            raise ValueError(f"eps must be in (0, 1), got {self.eps}")
        start = time.perf_counter()
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(desc=f"tuning {self._penalty}", unit=" evaluations")

        def record(
            theta: FloatArray,
            value: float,
            grad: FloatArray,
            support: int | None = None,
            stage: str = "refine",
        ) -> None:
            history["alpha"].append(theta.copy() if theta.size > 1 else float(theta[0]))
            history["criterion"].append(value)
            history["gradient"].append(grad.copy() if grad.size > 1 else float(grad[0]))
            history["time"].append(time.perf_counter() - start)
            if bar is not None:
                bar.update()
                bar.set_postfix(alpha=f"{float(np.mean(theta)):.3g}", criterion=f"{value:.5g}")
            history["stage"].append("path" if support is not None else stage)
            if support is not None:  # a path point: no exact solve was made
                history["support"].append(support)
                history["kinks"].append(0)
                history["singular"].append(False)
                return
            history["support"].append(int(np.mean([s.support.size for s in crit.last])))
            history["kinks"].append(int(sum(s.kinks for s in crit.last)))
            history["singular"].append(bool(any(s.singular for s in crit.last)))

        def record_path(log_alphas: FloatArray, values: Any, supports: Any) -> None:
            for t, v, supp in zip(log_alphas, values, supports):
                record(np.exp(np.array([t])), float(v), np.array([np.nan]), round(float(supp)))

        # 1. globalisation: the criterion is nonconvex in alpha and can have many local
        #    minima.  Single penalty: the exact criterion over the whole range by homotopy
        #    (piecewise quadratic between the kinks of beta(alpha)); otherwise, or when the
        #    path would not fit in memory, a coarse warm-started grid.
        k = self._n_theta(p)
        starts: list[tuple[float, tuple[float, float]]] = []  # (log alpha, bounds)
        search = self._search(crit)
        self.path_ = None
        if search == "homotopy":
            cpath = exact_criterion_path(
                crit.folds, crit.criterion, crit.sigma, np.exp(lo), np.exp(hi), _max_steps(n, p)
            )
            self.path_ = cpath
            grid = np.log(cpath.alphas)
            record_path(grid, cpath.values, cpath.support)
            crit.warm = [c.copy() for c in cpath.coefs]
            t_best = float(np.log(cpath.best_alpha))
            below = grid[grid < t_best - 1e-12]
            above = grid[grid > t_best + 1e-12]
            starts.append(
                (
                    t_best,
                    (
                        float(below[0]) if below.size else t_best,
                        float(above[-1]) if above.size else t_best,
                    ),
                )
            )
            if cpath.lowest > np.exp(lo) * (1 + 1e-9):
                # the path stopped early (see path_.messages): grid the rest as densely as
                # the coarse path would, and refine from its best point and from the edge
                t_low = float(np.log(cpath.lowest))
                size = max(3, int(np.ceil(self.n_grid * (t_low - lo) / (hi - lo))) + 1)
                rest = np.linspace(t_low, lo, size)[1:]
                rest_values, rest_support = crit.path(np.exp(rest), warm_start=False)
                record_path(rest, rest_values, rest_support)
                j = int(np.argmin(rest_values))
                edge = np.concatenate([[t_low], rest])
                if rest_values[j] < cpath.best_value:
                    starts.append(
                        (float(rest[j]), (float(edge[min(j + 2, edge.size - 1)]), float(edge[j])))
                    )
                if abs(t_best - t_low) <= 1e-12 or rest_values[0] < cpath.best_value:
                    starts.append((t_low, (float(rest[0]), t_low)))
        else:
            grid = np.linspace(hi, lo, self.n_grid)
            if self._penalty == "lasso":
                values, supports = crit.path(np.exp(grid))
                record_path(grid, values, supports)
            else:
                values = []
                for t in grid:
                    theta = self._theta(np.full(k, t))
                    value, grad = crit(theta)
                    record(theta, value, grad, stage="grid")
                    values.append(value)
            values = np.asarray(values, dtype=np.float64)
            minima = [
                j
                for j in range(len(grid))
                if (j == 0 or values[j] <= values[j - 1])
                and (j == len(grid) - 1 or values[j] <= values[j + 1])
            ]
            for j in sorted(minima, key=lambda j: values[j])[: max(1, self.n_starts)]:
                starts.append(
                    (
                        float(grid[j]),
                        (float(grid[min(j + 1, len(grid) - 1)]), float(grid[max(j - 1, 0)])),
                    )
                )

        # 2. hypergradient refinement in log(alpha) from each start, within its bounds
        #    (after the homotopy this certifies the minimum: the gradient vanishes there, or
        #    the minimum sits at a kink).
        def fun(t: FloatArray) -> tuple[float, FloatArray]:
            theta = self._theta(t)
            value, grad = crit(theta)
            record(theta, value, grad)
            return value, grad * self._dtheta(t)

        for number, (t_start, bound) in enumerate(starts):
            bounds = [bound] * k
            t0 = np.full(k, t_start)
            if number == 0 and search == "homotopy":
                # one exact solve certifies the homotopy's minimum; optimise only if the
                # path's value there disagrees with the exact solve
                value, _ = fun(t0)
                path_value = self.path_.best_value if self.path_ is not None else np.nan
                if abs(value - path_value) <= 1e-7 * max(abs(value), 1e-300):
                    continue
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
            else:
                _gradient_descent(fun, t0, bounds, self.max_iter, self.tol_outer)
        if bar is not None:
            bar.close()
        values = np.asarray(history["criterion"])
        # the best exactly evaluated point (path values only chose where to look)
        exact = np.asarray(history["stage"]) != "path"
        i = int(np.argmin(np.where(exact, values, np.inf)))
        theta_best = np.atleast_1d(np.asarray(history["alpha"][i], dtype=np.float64))
        # 3. refit on all the data.
        full = make_fold(X, y, np.arange(n), np.arange(n), self.fit_intercept)
        sol = solve_inner(full, self._penalty, theta_best, None, self.tol)
        self.coef_ = sol.coef
        self.intercept_ = float(full.y_mean - full.x_mean @ sol.coef) if self.fit_intercept else 0.0
        self._set_alpha(theta_best)
        self.history_ = history
        self.n_iter_ = int(exact.sum())
        return self

    def _search(self, crit: _Criterion) -> str:
        if self.search not in ("auto", "homotopy", "grid"):
            raise ValueError(f"search must be 'auto', 'homotopy' or 'grid', got {self.search!r}")
        if self.search == "grid":
            return "grid"
        if self._penalty != "lasso":
            if self.search == "homotopy":
                raise ValueError(
                    "search='homotopy' needs a single penalty (the path is piecewise linear in "
                    f"one alpha); {type(self).__name__} tunes several: use search='grid'"
                )
            return "grid"
        if not homotopy_feasible(crit.folds, crit.criterion):
            if self.search == "homotopy":
                raise ValueError(
                    f"search='homotopy' over {len(crit.folds)} folds would not fit in memory; "
                    "use search='grid' (or 'auto', which switches by itself)"
                )
            return "grid"
        return "homotopy"

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
        on_path = np.isin(self.history_["stage"], ["path", "grid"])
        if self.path_ is not None:  # the exact criterion: one quadratic between breakpoints
            path = self.path_
            dense = np.geomspace(path.alphas[-1], path.alphas[0], 2000)
            dense = np.unique(np.concatenate([dense, path.alphas]))
            ax.semilogx(dense, path(dense), "-", color="0.6", label="exact criterion (homotopy)")
            on_grid = on_path & (alphas < path.alphas[-1] * (1 - 1e-12))
            if np.any(on_grid):
                ax.semilogx(alphas[on_grid], values[on_grid], "o", color="0.6", ms=3)
        else:
            ax.semilogx(alphas[on_path], values[on_path], "o-", color="0.6", label="coarse path")
        ax.semilogx(
            alphas[~on_path],
            values[~on_path],
            ".",
            color="C0",
            label="hypergradient evaluations",
        )
        ax.axvline(float(np.mean(self.alpha_)), color="C1", lw=1, label="chosen")
        ax.set_xlabel("alpha" if self._penalty == "lasso" else "mean penalty")
        ax.set_ylabel({"cv": "held-out MSE", "sure": "SURE"}.get(self.criterion, "criterion"))
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

    Objective $\frac{1}{2n} \|y - X\beta\|_2^2 + \alpha \|\beta\|_1$ (scikit-learn's).  Between
    kinks of $\beta(\alpha)$ the implicit derivative
    $d\beta_S/d\alpha = -H^{-1} \operatorname{sign}(\beta_S)$ ($H = X_S^\top X_S/n$) is constant,
    so the held-out MSE and SURE are piecewise quadratic in $\alpha$.  By default
    (``search="auto"``) the criterion is computed exactly over
    $[\epsilon\,\alpha_{\max}, \alpha_{\max}]$ by integrating that derivative from kink to kink (the
    LARS-lasso homotopy on each fold), its global minimum is taken in closed form, and one
    exact solve with its hypergradient certifies it.  ``search="grid"`` (and the estimators
    with several penalties) use a coarse warm-started path, then L-BFGS-B on ``log(alpha)``
    with the exact hypergradient (one ``|S| x |S|`` solve per fold).

    Args:
        cv: folds, as for ``LassoCV``: an int, a scikit-learn splitter, or an iterable of
            ``(train, test)`` index pairs (one pair: hold-out validation).
        criterion: ``"cv"`` (mean held-out MSE) or ``"sure"`` (Stein's unbiased risk
            estimate; ``sigma`` known or estimated by least squares when n > p).
        method: outer optimiser over ``log(alpha)``: ``"lbfgs"`` (L-BFGS-B, default) or
            ``"gd"`` (projected gradient descent with backtracking; cannot diverge).
        search: how the nonconvex criterion is globalised: ``"homotopy"`` (the exact
            piecewise-quadratic criterion over the whole range; single penalty only),
            ``"grid"`` (coarse path, then hypergradient refinement from its best local
            minima) or ``"auto"`` (homotopy when it applies and the path fits in memory).
        n_grid: size of the coarse warm-started path (``alpha_max`` down to
            ``eps * alpha_max``, scikit-learn's ``lasso_path``) that chooses where to refine.
        n_starts: refine from the ``n_starts`` best local minima of the coarse path, each
            within its neighbours on the path (the criterion is nonconvex).
        eps: the searched range is ``[eps * alpha_max, alpha_max]``.
        max_iter: outer iterations.
        tol_outer: relative-change stopping rule of the outer iterations.
        verbose: show a progress bar over criterion evaluations (``tqdm``).
        tol: inner coordinate-descent tolerance (solutions are then polished exactly).

    Attributes:
        alpha_, coef_, intercept_: the chosen penalties and the model refit on all data.
        history_: ``alpha``, ``criterion``, ``gradient``, ``time``, ``support``, ``kinks``
            (coordinates at the threshold off the support), ``singular`` (whether
            $X_S^\top X_S$ was singular) and ``stage`` (``"path"``: a path point, no exact
            solve; ``"grid"``: an exact solve on the coarse grid of the estimators with
            several penalties; ``"refine"``: an exact solve with its hypergradient during
            refinement) for every point,
            path first.
        path_: the homotopy's :class:`~cvximplicit.lasso.CriterionPath` (breakpoints,
            criterion values, the minimum, and its one-sided slopes when it sits at a
            kink), or ``None`` when a grid was used.
        n_iter_: number of exact criterion evaluations.

    Examples:
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
    r"""Elastic net, $\alpha_0 \|\beta\|_1 + \frac{\alpha_1}{2} \|\beta\|_2^2$ (``alpha`` holds
    $(\alpha_0, \alpha_1)$), both penalties tuned by hypergradients."""

    _penalty = "enet"

    def _set_alpha(self, theta: FloatArray) -> None:
        self.alpha_ = theta.copy()
