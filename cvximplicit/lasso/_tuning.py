"""Hyperparameter tuning of LASSO-type models by exact nonsmooth hypergradients."""

from __future__ import annotations

import time
from typing import Any, cast

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import enet_path, lasso_path
from sklearn.model_selection import check_cv
from sklearn.utils.validation import check_is_fitted, check_X_y, validate_data

from .._blas import single_thread_blas
from .._typing import FloatArray
from ._engine import (
    KKT_CHECK,
    InnerSolution,
    homotopy_solution,
    pull_back,
    solve_inner,
    validation_loss_and_grad,
)
from ._homotopy import CriterionPath, _segments, exact_criterion_path, homotopy_feasible
from ._homotopy import max_steps as _max_steps
from ._linalg import Fold, enet_exact, make_fold
from ._penalty import ElasticNetPenalty, LassoPenalty, Penalty, WeightedPenalty, penalty_named

__all__ = [
    "CriterionPath",
    "ImplicitElasticNetCV",
    "ImplicitLassoCV",
    "ImplicitWeightedLassoCV",
    "criterion_path",
    "hypergradient",
]

#: ``LassoCV``'s default grid size (over ``[eps alpha_max, alpha_max]``), reused by the
#: fallback below a path that stopped early
_LASSOCV_ALPHAS = 100
#: coordinate-descent tolerance and epochs of the grids (scikit-learn's defaults, as in
#: ``LassoCV``; the grids only choose where to look, every returned point is exact)
_GRID_TOL = 1e-4
_GRID_MAX_ITER = 1000


class _Criterion:
    """``C(theta)`` and its gradient: mean held-out MSE over folds, or SURE."""

    def __init__(
        self,
        X: Any,
        y: FloatArray,
        penalty: Penalty,
        criterion: str,
        cv: Any,
        fit_intercept: bool,
        sigma: float | None,
        tol: float,
        max_iter: int = 100_000,
    ) -> None:
        self.penalty, self.criterion, self.tol, self.max_iter = penalty, criterion, tol, max_iter
        n = X.shape[0]
        if criterion == "sure":
            if isinstance(penalty, ElasticNetPenalty):
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
        self.warm = [cast("FloatArray | None", None) for _ in self.folds]
        self.last: list[InnerSolution] = []

    @property
    def warm(self) -> list[FloatArray | None]:
        """The warm starts, one per fold."""
        return self._warm

    @warm.setter
    def warm(self, value: list[FloatArray | None]) -> None:
        self._warm = value
        #: the per-feature l1 weights the warm starts solve exactly (``None``: unknown,
        #: as after this setter, or a ridge term); an inner solve then follows the path
        #: from them (`penalty_path()`)
        self.warm_weights: list[FloatArray | None] = [None] * len(value)

    def with_penalty(self, penalty: Penalty) -> _Criterion:
        """The same folds and options with another penalty (cold warm starts)."""
        other = _Criterion.__new__(_Criterion)
        other.__dict__.update(self.__dict__)
        other.penalty, other.last = penalty, []
        other.warm = [cast("FloatArray | None", None) for _ in self.folds]
        return other

    def path(
        self,
        alphas: FloatArray,
        l1_ratio: float = 1.0,
        warm_start: bool = True,
        among: np.ndarray | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """The criterion of each fold (``alphas x folds``) and the mean support size along
        a decreasing grid, by scikit-learn's warm-started ``lasso_path``/``enet_path``
        (scikit-learn's default tolerance, as ``LassoCV``: it only chooses where to refine,
        and every returned point is evaluated exactly).  For ``l1_ratio < 1`` with numba
        installed, by exact warm-started active-set solves instead (`enet_exact`: faster
        than coordinate descent at its loose tolerance on every benchmark design).  With
        ``warm_start``, the solutions at the best penalty (among the mask ``among``, if
        given) warm-start the refinement."""
        per_fold = np.zeros((alphas.size, len(self.folds)))
        paths = []
        for k, fold in enumerate(self.folds):
            exact = None
            if l1_ratio < 1.0:  # exact solutions at every grid point, when compiled
                exact = enet_exact(fold, alphas * l1_ratio, alphas * (1 - l1_ratio), None)
            if exact is not None and exact[1].all():
                coefs = exact[0].T
            else:
                coefs = _grid_path(fold, alphas, l1_ratio)
            paths.append(coefs)
            resid = fold.y_val[:, None] - _predictions(fold, coefs)
            values = np.mean(resid**2, axis=0)
            if self.criterion == "sure":
                sigma = self.sigma or 0.0
                values = (
                    values - sigma**2 + 2 * sigma**2 * np.count_nonzero(coefs, axis=0) / fold.y.size
                )
            per_fold[:, k] = values
        if warm_start:
            mean = per_fold.mean(axis=1)
            best = int(np.argmin(mean if among is None else np.where(among, mean, np.inf)))
            self.warm = [c[:, best].copy() for c in paths]
        support = np.mean([np.count_nonzero(c, axis=0) for c in paths], axis=0)
        return per_fold, support

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray]:
        total, grad = 0.0, np.zeros(len(theta))
        self.last = []
        for k, fold in enumerate(self.folds):
            sol = solve_inner(
                fold, self.penalty, theta, self.warm[k], self.tol, self.max_iter,
                self.warm_weights[k],
            )  # fmt: skip
            weights, ridge = self.penalty.weights(theta, fold.X.shape[1])
            exact = sol.violation <= KKT_CHECK and ridge == 0.0
            self.warm[k], self.warm_weights[k] = sol.coef, weights if exact else None
            self.last.append(sol)
            if self.criterion == "sure":
                value, g = _sure(fold, sol, self.sigma or 0.0)
            else:
                value, g = validation_loss_and_grad(fold, sol)
            total += value
            grad += pull_back(fold, self.penalty, theta, sol, g)
        m = len(self.folds)
        return total / m, grad / m


def _grid_path(fold: Fold, alphas: FloatArray, l1_ratio: float) -> FloatArray:
    """Coefficients (``p x alphas``) along a decreasing grid by scikit-learn's warm-started
    coordinate descent at ``LassoCV``'s tolerance (sparse ``X`` centred densely)."""
    X = fold.X.toarray() - fold.x_mean if fold.sparse_centered else fold.X
    options: dict[str, Any] = dict(
        alphas=alphas,
        tol=_GRID_TOL,
        max_iter=_GRID_MAX_ITER,
        precompute=not sp.issparse(X) and X.shape[0] > X.shape[1],  # (as LassoCV does)
    )
    if l1_ratio == 1.0:
        return cast(Any, lasso_path)(X, fold.y, **options)[1]
    return cast(Any, enet_path)(X, fold.y, l1_ratio=l1_ratio, **options)[1]


def _predictions(fold: Fold, coefs: FloatArray) -> FloatArray:
    """``X_val @ coefs`` on the fold's centred validation rows (sparse ``X`` centred
    implicitly)."""
    out = np.asarray(fold.X_val @ coefs)
    return out - fold.x_mean @ coefs if fold.sparse_centered else out


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
    ``"enet"``: ``alpha = [a, r]``, scikit-learn's ``ElasticNet(alpha=a, l1_ratio=r)``,
    ``a r ||beta||_1 + a (1 - r)/2 ||beta||^2``).  The gradient comes from the nonsmooth
    implicit function theorem applied to the proximal-gradient fixed point, restricted to
    the support: one ``|S| x |S|`` solve per fold.

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
        >>> value, grad = hypergradient(X, y, [0.05, 0.5], cv=3, penalty="enet")
        >>> grad.shape  # d/d alpha, d/d l1_ratio
        (2,)
    """
    strategy = penalty_named(penalty)
    X, y = cast(Any, check_X_y)(X, y, accept_sparse="csc", y_numeric=True, dtype=np.float64)
    theta = strategy.validate(np.asarray(alpha, dtype=np.float64), X.shape[1])
    return _Criterion(X, y, strategy, criterion, cv, fit_intercept, sigma, tol)(theta)


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
    r"""The LASSO tuning criterion over ``[eps alpha_max, alpha_max]``, exactly.

    Between consecutive kinks of ``beta(alpha)`` the support ``S`` and signs ``s`` are fixed
    and the nonsmooth implicit function theorem gives a constant derivative
    ``d beta_S / d alpha = -(X_S'X_S/n)^{-1} s``: ``beta`` is piecewise linear, and the
    held-out MSE (``criterion="cv"``, folds as in `hypergradient()`) and SURE are
    piecewise quadratic in ``alpha``.  Each fold's path is integrated from kink to kink
    (LARS-lasso homotopy), the breakpoints are merged and the global minimum is taken in
    closed form on each interval.  A breakpoint that fails its optimality check is
    repaired; repairs and early stops are `HomotopyWarning` s.

    Example:
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
    crit = _Criterion(X, y, LassoPenalty(), criterion, cv, fit_intercept, sigma, 1e-10)
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
    """The smallest LASSO penalty with an all-zero solution on the whole data."""
    if fit_intercept:
        xm = np.asarray(X.mean(axis=0)).ravel()
        corr = np.asarray(X.T @ (y - y.mean())).ravel() - xm * (y - y.mean()).sum()
    else:
        corr = np.asarray(X.T @ y).ravel()
    return float(np.abs(corr).max() / X.shape[0]) or 1.0


class _Run:
    """The evaluations of one fit: every point (path, grid or exact solve) in ``history``,
    the best exactly evaluated point, and a progress bar."""

    KEYS = ("alpha", "criterion", "gradient", "time", "support", "kinks", "singular", "stage")

    def __init__(self, crit: _Criterion, verbose: bool, desc: str) -> None:
        self.crit = crit
        self.history: dict[str, list[Any]] = {k: [] for k in self.KEYS}
        self.start = time.perf_counter()
        self.bar = None
        if verbose:
            from tqdm.auto import tqdm

            self.bar = tqdm(desc=desc, unit=" evaluations")

    def record(
        self,
        alpha: FloatArray,
        value: float,
        grad: FloatArray,
        support: int | None = None,
        stage: str = "refine",
    ) -> None:
        h = self.history
        h["alpha"].append(alpha.copy() if alpha.size > 1 else float(alpha[0]))
        h["criterion"].append(value)
        h["gradient"].append(grad.copy() if grad.size > 1 else float(grad[0]))
        h["time"].append(time.perf_counter() - self.start)
        h["stage"].append("path" if support is not None else stage)
        if self.bar is not None:
            self.bar.update()
            self.bar.set_postfix(alpha=f"{float(np.mean(alpha)):.3g}", criterion=f"{value:.5g}")
        if support is not None:  # a path point: no exact solve was made
            h["support"].append(support)
            h["kinks"].append(0)
            h["singular"].append(False)
            return
        last = self.crit.last
        h["support"].append(int(np.mean([s.support.size for s in last])))
        h["kinks"].append(int(sum(s.kinks for s in last)))
        h["singular"].append(bool(any(s.singular for s in last)))

    def record_path(self, alphas: FloatArray, values: Any, supports: Any) -> None:
        """Path points (no exact solve), all at once: `record` each, without its per-point
        costs (a path has thousands of breakpoints)."""
        h, m = self.history, len(alphas)
        h["alpha"] += [float(a) for a in alphas]
        h["criterion"] += [float(v) for v in values]
        h["gradient"] += [np.nan] * m
        h["time"] += [time.perf_counter() - self.start] * m
        h["stage"] += ["path"] * m
        h["support"] += [round(float(s)) for s in supports]
        h["kinks"] += [0] * m
        h["singular"] += [False] * m
        if self.bar is not None and m:
            self.bar.update(m)
            self.bar.set_postfix(alpha=f"{float(alphas[-1]):.3g}", criterion=f"{values[-1]:.5g}")

    def exact(self, theta: FloatArray, stage: str = "refine") -> tuple[float, FloatArray]:
        value, grad = self.crit(theta)
        self.record(theta, value, grad, stage=stage)
        return value, grad

    def best(self, where: Any = None) -> int:
        """Index of the best exactly evaluated point (path values only chose where to
        look), among ``where`` (a boolean mask) if given."""
        values = np.asarray(self.history["criterion"])
        exact = np.asarray(self.history["stage"]) != "path"
        if where is not None:
            exact &= where
        return int(np.argmin(np.where(exact, values, np.inf)))

    def n_exact(self) -> int:
        return int(np.count_nonzero(np.asarray(self.history["stage"]) != "path"))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _ImplicitTuner(RegressorMixin, BaseEstimator):
    """Shared machinery of the tuning estimators (see `ImplicitLassoCV`).

    ``fit`` runs named stages: `_globalise()` (where to look: the exact criterion path
    or a coarse grid), `_refine()` (hypergradient descent from the starts it returns),
    `_refit()` (the best exactly evaluated penalty, on all the data)."""

    _penalty: Penalty = LassoPenalty()
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
        max_outer_iter: int = 50,
        tol_outer: float = 1e-7,
        tol: float = 1e-10,
        max_iter: int = 100_000,
        verbose: bool = False,
    ) -> None:
        self.cv, self.criterion, self.sigma = cv, criterion, sigma
        self.fit_intercept, self.method, self.n_grid, self.eps = fit_intercept, method, n_grid, eps
        self.search = search
        self.n_starts = n_starts
        self.max_outer_iter, self.tol_outer, self.tol = max_outer_iter, tol_outer, tol
        self.max_iter, self.verbose = max_iter, verbose

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # -- the outer variables ------------------------------------------------------------
    def _theta(self, t: FloatArray) -> FloatArray:
        """Penalties from the outer variables (``log alpha`` by default)."""
        return np.exp(t)

    def _grad_t(self, t: FloatArray, grad: FloatArray) -> FloatArray:
        """Chain rule: the criterion's gradient in the outer variables."""
        return grad * np.exp(t)

    def _set_alpha(self, theta: FloatArray) -> None:
        self.alpha_ = float(theta[0])

    # -- fit ----------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.method not in ("lbfgs", "gd"):
            raise ValueError(f"method must be 'lbfgs' or 'gd', got {self.method!r}")
        if not 0 < self.eps < 1:
            raise ValueError(f"eps must be in (0, 1), got {self.eps}")
        if self.search not in ("auto", "homotopy", "grid"):
            raise ValueError(f"search must be 'auto', 'homotopy' or 'grid', got {self.search!r}")

    @single_thread_blas  # (see below)
    def fit(self, X: Any, y: Any) -> _ImplicitTuner:
        """Tune the penalties on ``(X, y)``, then refit on all of it with the best ones.

        BLAS runs one thread meanwhile: the exact solves work on matrices of a few hundred
        rows, where threads cost more than they bring (measured on 2 cores, the elastic
        net on the sparse 200 x 3000 design: 2.4-3.2 s threaded, 1.0 s single-threaded).
        """
        X, y = validate_data(self, X, y, accept_sparse="csc", y_numeric=True, dtype=np.float64)
        self._check_params()
        crit = _Criterion(
            X,
            y,
            self._penalty,
            self.criterion,
            self.cv,
            self.fit_intercept,
            self.sigma,
            self.tol,
            self.max_iter,
        )
        run = _Run(crit, self.verbose, f"tuning {self._penalty.name}")
        a_max = _alpha_max(X, y, self.fit_intercept)
        starts = self._globalise(run, a_max)
        self._refine(run, starts)
        run.close()
        self.history_ = run.history
        self.n_evaluations_ = run.n_exact()
        best = np.atleast_1d(np.asarray(run.history["alpha"][run.best()], dtype=np.float64))
        self._refit(X, y, best)
        return self

    def _single_penalty(self, crit: _Criterion, a_max: float) -> tuple[ImplicitLassoCV, _Run]:
        """The single-penalty LASSO search on the same folds (exact homotopy by default)."""
        lasso = ImplicitLassoCV(
            cv=self.cv,
            criterion=self.criterion,
            sigma=self.sigma,
            fit_intercept=self.fit_intercept,
            method=self.method,
            search=self.search,
            n_grid=self.n_grid,
            n_starts=self.n_starts,
            eps=self.eps,
            max_outer_iter=self.max_outer_iter,
            tol_outer=self.tol_outer,
            tol=self.tol,
            max_iter=self.max_iter,
        )
        run = _Run(crit.with_penalty(LassoPenalty()), False, "")
        lasso._refine(run, lasso._lasso_starts(run, a_max))
        return lasso, run

    def _globalise(self, run: _Run, a_max: float) -> list[tuple[FloatArray, list[Any]]]:
        """Where the nonconvex criterion is to be refined: ``(t0, bounds)`` pairs in the
        outer variables, best first.  Sets ``path_``, ``alphas_`` and ``mse_path_``."""
        return self._lasso_starts(run, a_max)

    def _lasso_starts(self, run: _Run, a_max: float) -> list[tuple[FloatArray, list[Any]]]:
        """Single-penalty globalisation: the exact criterion by homotopy (or a coarse grid),
        as ``(log alpha, bounds)`` starts."""
        crit = run.crit
        lo, hi = np.log(a_max * self.eps), np.log(a_max)
        n, p = crit.folds[0].X.shape
        self.path_ = None
        if self._use_homotopy(crit):
            cpath = exact_criterion_path(
                crit.folds, crit.criterion, crit.sigma, np.exp(lo), np.exp(hi), _max_steps(n, p)
            )
            self.path_ = cpath
            self.alphas_, self.mse_path_ = cpath.alphas, cpath.fold_values
            run.record_path(cpath.alphas, cpath.values, cpath.support)
            crit.warm = [c.copy() for c in cpath.coefs]
            grid = np.log(cpath.alphas)
            t_best = float(np.log(cpath.best_alpha))
            below, above = grid[grid < t_best - 1e-12], grid[grid > t_best + 1e-12]
            starts = [
                (
                    np.array([t_best]),
                    [
                        (
                            float(below[0]) if below.size else t_best,
                            float(above[-1]) if above.size else t_best,
                        )
                    ],
                )
            ]
            if cpath.lowest > np.exp(lo) * (1 + 1e-9):
                starts += self._fallback(run, cpath, lo, hi)
            return starts
        grid = np.linspace(hi, lo, self.n_grid)
        per_fold, supports = crit.path(np.exp(grid))
        values = per_fold.mean(axis=1)
        self.alphas_, self.mse_path_ = np.exp(grid), per_fold
        run.record_path(np.exp(grid), values, supports)
        return _grid_starts(grid, values, self.n_starts)

    def _fallback(
        self, run: _Run, cpath: CriterionPath, lo: float, hi: float
    ) -> list[tuple[FloatArray, list[Any]]]:
        """The homotopy stopped early (a warning said why): the rest of the range is
        tabulated on ``LassoCV``'s own grid (its points below the path's lowest penalty,
        warm-started coordinate descent at its tolerance), and its best point is evaluated
        exactly.  No more work than ``LassoCV`` on that range, no worse than its grid."""
        t_low = float(np.log(cpath.lowest))
        grid = np.linspace(hi, lo, _LASSOCV_ALPHAS)
        below = grid < t_low - 1e-12
        if not np.any(below):
            return []
        saved = run.crit.warm
        # the whole grid, warm-started from alpha_max as LassoCV runs it (a cold start at
        # the path's lowest penalty costs more on collinear designs), then the part below
        per_fold, supports = run.crit.path(np.exp(grid), among=below)
        rest, per_fold, supports = grid[below], per_fold[below], supports[below]
        values = per_fold.mean(axis=1)
        run.record_path(np.exp(rest), values, supports)
        self.alphas_ = np.concatenate([np.asarray(self.alphas_), np.exp(rest)])
        self.mse_path_ = np.concatenate([np.asarray(self.mse_path_), per_fold])
        j = int(np.argmin(values))
        if values[j] < cpath.best_value:
            run.exact(np.exp(rest[[j]]))
        run.crit.warm = saved
        return []

    def _use_homotopy(self, crit: _Criterion) -> bool:
        if self.search == "grid":
            return False
        if not homotopy_feasible(crit.folds, crit.criterion):
            if self.search == "homotopy":
                raise ValueError(
                    f"search='homotopy' over {len(crit.folds)} folds would not fit in memory; "
                    "use search='grid' (or 'auto', which switches by itself)"
                )
            return False
        return True

    def _refine(self, run: _Run, starts: list[tuple[FloatArray, list[Any]]]) -> None:
        """Hypergradient descent in the outer variables from each start, within its bounds
        (after the homotopy, one exact solve certifies the minimum and nothing more runs
        unless the exact value disagrees with the path's)."""

        def fun(t: FloatArray) -> tuple[float, FloatArray]:
            value, grad = run.exact(self._theta(t))
            return value, self._grad_t(t, grad)

        for number, (t0, bounds) in enumerate(starts):
            if number == 0 and self.path_ is not None and t0.size == 1:
                value, _ = fun(t0)
                if abs(value - self.path_.best_value) <= 1e-7 * max(abs(value), 1e-300):
                    continue
            _minimise(fun, t0, bounds, self.method, self.max_outer_iter, self.tol_outer)

    def _refit(self, X: Any, y: FloatArray, theta: FloatArray) -> None:
        n = X.shape[0]
        full = make_fold(X, y, np.arange(n), np.arange(n), self.fit_intercept)
        with single_thread_blas:  # (small dense products: threads only cost)
            warm = homotopy_solution(full, self._penalty, theta)
        sol = solve_inner(full, self._penalty, theta, warm, self.tol, self.max_iter)
        self.coef_ = sol.coef
        self.intercept_ = float(full.y_mean - full.x_mean @ sol.coef) if self.fit_intercept else 0.0
        self.n_iter_ = max(1, sol.n_iter)  # (scikit-learn: at least 1)
        self._set_alpha(theta)

    # -- use ----------------------------------------------------------------------------
    def predict(self, X: Any) -> FloatArray:
        """Predictions ``X coef_ + intercept_``."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csc", dtype=np.float64, reset=False)
        return np.asarray(X @ self.coef_).ravel() + self.intercept_

    def plot(self, ax: Any = None) -> Any:
        """Criterion against alpha: the exact path (or coarse grid) and the hypergradient
        iterates.  A new figure uses a constrained layout, so no label is clipped."""
        check_is_fitted(self)
        import matplotlib.pyplot as plt

        ax = ax or plt.subplots(figsize=(5, 3.2), layout="constrained")[1]
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
            ax.semilogx(alphas[on_path], values[on_path], "o", color="0.6", ms=3, label="grid")
        ax.semilogx(
            alphas[~on_path],
            values[~on_path],
            ".",
            color="C0",
            label="hypergradient evaluations",
        )
        ax.axvline(float(np.mean(self.alpha_)), color="C1", lw=1, label="chosen")
        ax.set_xlabel("alpha" if self._penalty.size(1) == 1 else "mean penalty")
        ax.set_ylabel({"cv": "held-out MSE", "sure": "SURE"}.get(self.criterion, "criterion"))
        ax.legend()
        return ax


def _grid_starts(
    grid: FloatArray, values: FloatArray, n_starts: int
) -> list[tuple[FloatArray, list[Any]]]:
    """The ``n_starts`` best local minima of a decreasing grid of ``log alpha``, each
    bounded by its neighbours."""
    minima = [
        j
        for j in range(len(grid))
        if (j == 0 or values[j] <= values[j - 1])
        and (j == len(grid) - 1 or values[j] <= values[j + 1])
    ]
    return [
        (
            np.array([float(grid[j])]),
            [(float(grid[min(j + 1, len(grid) - 1)]), float(grid[max(j - 1, 0)]))],
        )
        for j in sorted(minima, key=lambda j: values[j])[: max(1, n_starts)]
    ]


def _minimise(
    fun: Any, t0: FloatArray, bounds: list[Any], method: str, max_iter: int, tol: float
) -> None:
    """L-BFGS-B or projected gradient descent; every evaluation is recorded by ``fun``."""
    if method == "lbfgs":
        scipy.optimize.minimize(
            fun,
            t0,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": max_iter, "ftol": tol},
        )
    else:
        _gradient_descent(fun, t0, bounds, max_iter, tol)


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

    Objective ``1/(2n) ||y - X beta||^2 + alpha ||beta||_1`` (scikit-learn's).  Between
    kinks of ``beta(alpha)`` the implicit derivative ``d beta_S/d alpha = -H^{-1} sign(beta_S)``
    (``H = X_S'X_S/n``) is constant, so the held-out MSE and SURE are piecewise quadratic in
    ``alpha``.  By default (``search="auto"``) the criterion is computed exactly over
    ``[eps alpha_max, alpha_max]`` by integrating that derivative from kink to kink (the
    LARS-lasso homotopy on each fold, each breakpoint certified and repaired when its check
    fails), its global minimum is taken in closed form, and one exact solve with its
    hypergradient certifies it.  ``search="grid"`` uses a coarse warm-started path, then
    L-BFGS-B on ``log(alpha)`` with the exact hypergradient (one ``|S| x |S|`` solve per
    fold).

    Args:
        cv: folds, as for ``LassoCV``: an int, a scikit-learn splitter, or an iterable of
            ``(train, test)`` index pairs (one pair: hold-out validation).
        criterion: ``"cv"`` (mean held-out MSE) or ``"sure"`` (Stein's unbiased risk
            estimate; ``sigma`` known or estimated by least squares when n > p).
        method: outer optimiser over ``log(alpha)``: ``"lbfgs"`` (L-BFGS-B, default) or
            ``"gd"`` (projected gradient descent with backtracking; cannot diverge).
        search: how the nonconvex criterion is globalised: ``"homotopy"`` (the exact
            piecewise-quadratic criterion over the whole range), ``"grid"`` (coarse path,
            then hypergradient refinement from its best local minima) or ``"auto"``
            (homotopy when the path fits in memory).
        n_grid: size of the coarse warm-started path of ``search="grid"`` (``alpha_max``
            down to ``eps * alpha_max``, scikit-learn's ``lasso_path``).
        n_starts: refine from the ``n_starts`` best local minima of the coarse path, each
            within its neighbours on the path (the criterion is nonconvex).
        eps: the searched range is ``[eps * alpha_max, alpha_max]``.
        max_outer_iter: outer iterations per start (L-BFGS-B or gradient descent).
        tol_outer: relative-change stopping rule of the outer iterations.
        tol: inner coordinate-descent tolerance (solutions are then polished exactly).
        max_iter: coordinate-descent epochs per inner solve (``LassoCV``'s ``max_iter``).
        verbose: show a progress bar over criterion evaluations (``tqdm``).

    Attributes:
        alpha_, coef_, intercept_: the chosen penalty and the model refit on all data.
        alphas_: the penalties where the criterion was tabulated: the merged breakpoints of
            the homotopy (decreasing; the criterion is exactly quadratic between them), or
            the grid.
        mse_path_: the criterion of each fold there, ``(len(alphas_), n_folds)`` (as
            ``LassoCV``'s; SURE: one column).
        n_iter_: coordinate-descent epochs of the final refit (as ``LassoCV``'s, at least
            1; the refit is warm-started from the homotopy's exact solution, which the
            polish usually certifies at once).
        n_evaluations_: exact criterion evaluations (inner solves on every fold).
        history_: ``alpha``, ``criterion``, ``gradient``, ``time``, ``support``, ``kinks``
            (coordinates at the threshold off the support), ``singular`` (whether
            ``X_S'X_S`` was singular) and ``stage`` (``"path"``: a path point, no exact
            solve; ``"grid"``: an exact solve on a coarse grid; ``"refine"``: an exact solve
            with its hypergradient during refinement) for every point, path first.
        path_: the homotopy's `CriterionPath` (breakpoints,
            criterion values, the minimum, its one-sided slopes when it sits at a kink, and
            the repairs or early stop in ``messages``), or ``None`` when a grid was used.

    Warns:
        HomotopyWarning: a breakpoint was repaired or a fold's path stopped early (the rest
            of the range is then tabulated on ``LassoCV``'s own grid, whose best point is
            evaluated exactly).

    Example:
        >>> import numpy as np
        >>> from cvximplicit.lasso import ImplicitLassoCV
        >>> rng = np.random.default_rng(0); X = rng.standard_normal((80, 10))
        >>> y = X[:, 0] - 2 * X[:, 1] + 0.1 * rng.standard_normal(80)
        >>> est = ImplicitLassoCV(cv=4).fit(X, y)
        >>> bool(est.alpha_ > 0) and est.coef_.shape == (10,)
        True
        >>> est.mse_path_.shape == (est.alphas_.size, 4)
        True
    """

    _penalty = LassoPenalty()


class ImplicitWeightedLassoCV(ImplicitLassoCV):
    r"""Weighted LASSO, ``sum_j alpha_j |beta_j|``: one penalty per feature (or per group of
    features), tuned jointly by hypergradients (a grid search is impossible in ``p``
    dimensions).

    The search starts from the single-penalty optimum (`ImplicitLassoCV`'s exact
    homotopy), then L-BFGS-B runs on ``log(alpha_g)``, one per group.  With ``p``
    penalties the criterion has ``p`` degrees of freedom and can be *overfit*: a lower CV
    error than the single penalty but a worse test error.  ``groups`` (one label per
    feature; features with the same label share a penalty, for example the powers of one
    variable) and a small ``max_outer_iter`` (early stopping) limit that; compare the
    held-out error with `ImplicitLassoCV`'s before trusting it.

    The other arguments are `ImplicitLassoCV`'s.

    Args:
        groups: ``None`` (one penalty per feature) or an array of ``n_features`` labels.

    Attributes:
        alpha_: the penalties, one per feature.
    """

    _penalty = WeightedPenalty()

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
        max_outer_iter: int = 50,
        tol_outer: float = 1e-7,
        tol: float = 1e-10,
        max_iter: int = 100_000,
        verbose: bool = False,
        groups: Any = None,
    ) -> None:
        super().__init__(
            cv=cv,
            criterion=criterion,
            sigma=sigma,
            fit_intercept=fit_intercept,
            method=method,
            search=search,
            n_grid=n_grid,
            n_starts=n_starts,
            eps=eps,
            max_outer_iter=max_outer_iter,
            tol_outer=tol_outer,
            tol=tol,
            max_iter=max_iter,
            verbose=verbose,
        )
        self.groups = groups

    def _labels(self, p: int) -> np.ndarray:
        if self.groups is None:
            return np.arange(p)
        groups = np.asarray(self.groups)
        if groups.shape != (p,):
            raise ValueError(f"groups must hold one label per feature ({p}), got {groups.shape}")
        return np.unique(groups, return_inverse=True)[1].ravel()

    def _theta(self, t: FloatArray) -> FloatArray:
        return np.exp(t)[self._group_of]

    def _grad_t(self, t: FloatArray, grad: FloatArray) -> FloatArray:
        per_group = np.bincount(self._group_of, weights=grad, minlength=t.size)
        return np.asarray(per_group, dtype=np.float64) * np.exp(t)

    def _set_alpha(self, theta: FloatArray) -> None:
        self.alpha_ = theta.copy()

    def _globalise(self, run: _Run, a_max: float) -> list[tuple[FloatArray, list[Any]]]:
        p = run.crit.folds[0].X.shape[1]
        self._group_of = self._labels(p)
        k = int(self._group_of.max()) + 1
        # start from the single-penalty optimum (exact homotopy)
        lasso, lasso_run = self._single_penalty(run.crit, a_max)
        self.path_, self.alphas_, self.mse_path_ = lasso.path_, lasso.alphas_, lasso.mse_path_
        t0 = np.full(k, np.log(float(lasso_run.history["alpha"][lasso_run.best()])))
        run.crit.warm = lasso_run.crit.warm
        run.crit.warm_weights = lasso_run.crit.warm_weights
        lo, hi = np.log(a_max * self.eps), np.log(a_max) + np.log(10.0)
        return [(t0, [(lo, hi)] * k)]

    def _refine(self, run: _Run, starts: list[tuple[FloatArray, list[Any]]]) -> None:
        for t0, bounds in starts:

            def fun(t: FloatArray) -> tuple[float, FloatArray]:
                value, grad = run.exact(self._theta(t))
                return value, self._grad_t(t, grad)

            _minimise(fun, t0, bounds, self.method, self.max_outer_iter, self.tol_outer)


class ImplicitElasticNetCV(_ImplicitTuner):
    r"""Elastic net with scikit-learn's parametrisation, tuned per ``l1_ratio``.

    Objective ``1/(2n) ||y - X beta||^2 + alpha l1_ratio ||beta||_1
    + alpha (1 - l1_ratio)/2 ||beta||^2`` (``ElasticNet``'s).  For each ``l1_ratio`` of the
    list: ``l1_ratio = 1`` is the LASSO, whose criterion along ``alpha`` is computed exactly
    by the homotopy; below 1 the ridge term scales with ``alpha`` too, so on a fixed
    support ``beta(alpha) = (X_S'X_S/n + alpha (1 - r) I)^{-1}(X_S'y/n - alpha r s)`` is
    rational, not linear, in ``alpha``, and the criterion is tabulated on
    ``ElasticNetCV``'s own grid (``alphas`` values from ``alpha_max / l1_ratio`` down to
    ``eps`` times that, warm-started coordinate descent), then refined by L-BFGS-B on
    ``log(alpha)`` with exact hypergradients from the ``n_starts`` best local minima (only
    for the ratios whose grid comes within 0.1% of the best value: the others cannot win,
    and exact solves are the cost).  Since
    every grid point of ``ElasticNetCV`` is among the candidates and only exactly evaluated
    points are returned, the chosen CV error is never above ``ElasticNetCV``'s on the same
    list and grid (up to its solver tolerance).  With ``refine_l1_ratio`` the best pair is
    finally refined jointly in ``(log alpha, l1_ratio)`` between the neighbouring list
    entries (``d/d l1_ratio`` is exact too).

    Args:
        l1_ratio: a float or a list of floats in ``(0, 1]``, as ``ElasticNetCV``'s.
        alphas: grid size per ``l1_ratio`` (an int, as ``ElasticNetCV``'s ``alphas``; 100).
        refine_l1_ratio: refine ``l1_ratio`` between list points by hypergradient.

    The other arguments are `ImplicitLassoCV`'s (``criterion="sure"`` is not
    available: the elastic net's degrees of freedom are not its support size).

    Attributes:
        alpha_, l1_ratio_: the chosen parameters.
        alphas_, mse_path_: the grids, ``(n_l1_ratio, n_alphas)``, and the fold criteria
            there, ``(n_l1_ratio, n_alphas, n_folds)`` (``ElasticNetCV``'s layout; for
            ``l1_ratio = 1`` the homotopy's per-fold criterion interpolated linearly between
            its breakpoints onto that row's grid).

    Example:
        >>> import numpy as np
        >>> from cvximplicit.lasso import ImplicitElasticNetCV
        >>> rng = np.random.default_rng(0); X = rng.standard_normal((80, 10))
        >>> y = X[:, 0] - 2 * X[:, 1] + 0.1 * rng.standard_normal(80)
        >>> est = ImplicitElasticNetCV(l1_ratio=[0.5, 1.0], cv=3, alphas=20).fit(X, y)
        >>> bool(0 < est.l1_ratio_ <= 1) and est.mse_path_.shape == (2, 20, 3)
        True
    """

    _penalty = ElasticNetPenalty()
    #: ratios whose grid minimum is more than this (relative) above the best value so far
    #: are not refined
    RATIO_MARGIN = 1e-3

    def __init__(
        self,
        l1_ratio: Any = 0.5,
        cv: Any = 5,
        fit_intercept: bool = True,
        method: str = "lbfgs",
        alphas: int = 100,
        n_starts: int = 3,
        eps: float = 1e-3,
        refine_l1_ratio: bool = True,
        max_outer_iter: int = 50,
        tol_outer: float = 1e-7,
        tol: float = 1e-10,
        max_iter: int = 100_000,
        verbose: bool = False,
    ) -> None:
        self.l1_ratio, self.cv = l1_ratio, cv
        self.fit_intercept, self.method = fit_intercept, method
        self.alphas, self.n_starts, self.eps = alphas, n_starts, eps
        self.refine_l1_ratio = refine_l1_ratio
        self.max_outer_iter, self.tol_outer, self.tol = max_outer_iter, tol_outer, tol
        self.max_iter, self.verbose = max_iter, verbose
        self.criterion, self.search, self.sigma, self.n_grid = "cv", "auto", None, alphas

    def _ratios(self) -> FloatArray:
        ratios = np.atleast_1d(np.asarray(self.l1_ratio, dtype=np.float64))
        if ratios.ndim != 1 or ratios.size == 0 or np.any(ratios <= 0) or np.any(ratios > 1):
            raise ValueError(f"l1_ratio must be a float or list in (0, 1], got {self.l1_ratio!r}")
        return ratios

    def _theta(self, t: FloatArray) -> FloatArray:
        return np.array([np.exp(t[0]), t[1]])

    def _grad_t(self, t: FloatArray, grad: FloatArray) -> FloatArray:
        return np.array([grad[0] * np.exp(t[0]), grad[1]])

    def _set_alpha(self, theta: FloatArray) -> None:
        self.alpha_, self.l1_ratio_ = float(theta[0]), float(theta[1])

    @single_thread_blas  # (as `_ImplicitTuner.fit`)
    def fit(self, X: Any, y: Any) -> ImplicitElasticNetCV:
        """Tune ``alpha`` for every ``l1_ratio`` of the list (and between them), then refit
        on all the data (single-threaded BLAS, as `ImplicitLassoCV.fit`)."""
        X, y = validate_data(self, X, y, accept_sparse="csc", y_numeric=True, dtype=np.float64)
        self._check_params()
        ratios = self._ratios()
        crit = _Criterion(
            X, y, self._penalty, "cv", self.cv, self.fit_intercept, None, self.tol, self.max_iter
        )
        run = _Run(crit, self.verbose, "tuning enet")
        a_max = _alpha_max(X, y, self.fit_intercept)
        m = len(crit.folds)
        self.alphas_ = np.zeros((ratios.size, self.alphas))
        self.mse_path_ = np.zeros((ratios.size, self.alphas, m))
        self.path_ = None
        # 1. tabulate: the exact LASSO criterion (l1_ratio = 1), ElasticNetCV's grid below
        warm: dict[float, list[FloatArray | None]] = {}
        grids: dict[float, tuple[FloatArray, FloatArray]] = {}
        for row, r in enumerate(ratios):
            grid = np.log(a_max / r) + np.linspace(0.0, np.log(self.eps), self.alphas)
            self.alphas_[row] = np.exp(grid)
            if r == 1.0 and homotopy_feasible(crit.folds, "cv"):
                warm[r] = self._lasso_ratio(run, a_max, row, grid)
                continue
            per_fold, supports = crit.path(np.exp(grid), l1_ratio=float(r))
            self.mse_path_[row] = per_fold
            values = per_fold.mean(axis=1)
            for a, v, supp in zip(np.exp(grid), values, supports):
                run.record(
                    np.array([a, r]), float(v), np.array([np.nan, np.nan]), round(float(supp))
                )
            warm[r], grids[r] = list(crit.warm), (grid, values)
        # 2. refine alpha by hypergradients for the ratios whose grid comes within
        #    ``RATIO_MARGIN`` of the best value so far (the others cannot win)
        best_so_far = min(
            [float(v.min()) for _, v in grids.values()]
            + [float(run.history["criterion"][run.best()])] * (run.n_exact() > 0)
        )
        for r, (grid, values) in grids.items():
            if values.min() > best_so_far * (1 + self.RATIO_MARGIN):
                continue
            crit.warm = list(warm[r])

            def along(t: FloatArray, r: float = r) -> tuple[float, FloatArray]:
                value, grad = run.exact(np.array([np.exp(t[0]), r]))
                return value, np.array([grad[0] * np.exp(t[0])])

            for t0, bounds in _grid_starts(grid, values, self.n_starts):
                _minimise(along, t0, bounds, self.method, self.max_outer_iter, self.tol_outer)
            warm[r] = list(crit.warm)
        ratio_of = np.array([np.asarray(a)[1] for a in run.history["alpha"]])
        i = run.best()
        if self.refine_l1_ratio and ratios.size > 1:
            # 3. refine (log alpha, l1_ratio) jointly between the neighbouring list entries
            order = np.sort(ratios)
            r = float(ratio_of[i])
            pos = int(np.searchsorted(order, r))
            r_lo, r_hi = float(order[max(pos - 1, 0)]), float(order[min(pos + 1, order.size - 1)])
            crit.warm = warm[r]
            t0 = np.array([np.log(np.asarray(run.history["alpha"][i])[0]), r])
            bounds = [(float(np.log(a_max * self.eps)), float(np.log(a_max / r_lo))), (r_lo, r_hi)]

            def fun(t: FloatArray) -> tuple[float, FloatArray]:
                value, grad = run.exact(self._theta(t))
                return value, self._grad_t(t, grad)

            _minimise(fun, t0, bounds, self.method, self.max_outer_iter, self.tol_outer)
            i = run.best()
        run.close()
        self.history_ = run.history
        self.n_evaluations_ = run.n_exact()
        self._refit(X, y, np.asarray(run.history["alpha"][i], dtype=np.float64))
        return self

    def _lasso_ratio(
        self, run: _Run, a_max: float, row: int, grid: FloatArray
    ) -> list[FloatArray | None]:
        """``l1_ratio = 1``: the LASSO's exact criterion by homotopy; its exact evaluations
        join the history as ``(alpha, 1)``."""
        lasso, lasso_run = self._single_penalty(run.crit, a_max)
        path = lasso.path_
        assert path is not None and path.fold_values is not None
        self.path_ = path
        i_seg, w = _segment_weights(path.alphas, np.exp(grid))
        fv = path.fold_values
        upper, lower = fv[i_seg], fv[np.minimum(i_seg + 1, fv.shape[0] - 1)]
        self.mse_path_[row] = upper * w[:, None] + lower * (1 - w[:, None])
        h = lasso_run.history
        for i in range(len(h["alpha"])):
            if h["stage"][i] == "path":
                continue
            for key in _Run.KEYS:
                run.history[key].append(h[key][i])
            run.history["alpha"][-1] = np.array([h["alpha"][i], 1.0])
            run.history["gradient"][-1] = np.array([h["gradient"][i], np.nan])
        return list(lasso_run.crit.warm)

    def plot(self, ax: Any = None) -> Any:
        """The CV criterion against ``alpha``, one curve per ``l1_ratio`` of the list."""
        check_is_fitted(self)
        import matplotlib.pyplot as plt

        ax = ax or plt.subplots(figsize=(5, 3.2), layout="constrained")[1]
        for row, r in enumerate(self._ratios()):
            values = self.mse_path_[row].mean(axis=1)
            ax.semilogx(self.alphas_[row], values, label=f"l1_ratio {r:g}")
        ax.axvline(self.alpha_, color="k", lw=1, label="chosen")
        ax.set_xlabel("alpha")
        ax.set_ylabel("held-out MSE")
        ax.legend()
        return ax


def _segment_weights(alphas: FloatArray, at: FloatArray) -> tuple[np.ndarray, FloatArray]:
    """Interval index and weight of its upper end for points ``at`` (clipped to the
    decreasing breakpoints' range)."""
    return _segments(alphas, np.clip(at, alphas[-1], alphas[0]))
