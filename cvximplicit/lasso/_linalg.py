"""A fold's linear algebra: centred training and validation data (sparse ``X`` centred
implicitly), products with the centred design, and a coordinate-descent LASSO solve.

Shared by the exact inner solves (``_engine``) and the homotopy (``_homotopy``), which
otherwise do not import each other's internals.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.linear_model import ElasticNet, Lasso

from .._compiled import compiled
from .._typing import FloatArray

__all__ = [
    "Fold",
    "columns",
    "correlations",
    "design_arrays",
    "enet_exact",
    "lasso_cd",
    "make_fold",
    "matvec",
]


@dataclasses.dataclass
class Fold:
    """Training data (centred when fitting an intercept) and validation data centred with
    the training means, so that predictions include the intercept.  Sparse ``X`` is kept
    sparse and centred implicitly through ``x_mean``."""

    X: Any
    y: FloatArray
    X_val: Any
    y_val: FloatArray
    x_mean: FloatArray
    y_mean: float

    @property
    def sparse_centered(self) -> bool:
        """Whether ``X`` is sparse and centred implicitly (``x_mean`` subtracted on use)."""
        return sp.issparse(self.X) and bool(np.any(self.x_mean))

    @functools.cached_property
    def design(self) -> tuple[Any, ...]:
        """``X`` as the compiled kernels take it (`design_arrays()`), built once per fold:
        the kernels run once per inner solve and per path."""
        return design_arrays(self.X, self.x_mean, self.sparse_centered)


def make_fold(X: Any, y: FloatArray, train: Any, val: Any, fit_intercept: bool) -> Fold:
    """The fold ``(train, val)`` of ``(X, y)``, centred with the training means."""
    Xt, yt = X[train], y[train]
    Xv, yv = X[val], y[val]
    if fit_intercept:
        xm = np.asarray(Xt.mean(axis=0)).ravel()
        ym = float(yt.mean())
    else:
        xm, ym = np.zeros(X.shape[1]), 0.0
    if sp.issparse(X):
        return Fold(Xt, yt - ym, Xv, yv - ym, xm, ym)
    return Fold(Xt - xm, yt - ym, Xv - xm, yv - ym, xm, ym)


def matvec(X: Any, b: FloatArray, x_mean: FloatArray, sparse_centered: bool) -> FloatArray:
    """``X b`` with ``X`` centred (implicitly for sparse ``X``)."""
    out = X @ b
    return out - x_mean @ b if sparse_centered else out


def correlations(
    X: Any, r: FloatArray, x_mean: FloatArray, sparse_centered: bool, XT: Any = None
) -> FloatArray:
    """``X'r/n`` with ``X`` centred (implicitly for sparse ``X``); ``XT``: ``X'`` when the
    caller keeps it (for sparse ``X``, ``X.T`` builds a matrix object per call, 40 us)."""
    out = np.asarray((X.T if XT is None else XT) @ r).ravel()
    return (out - x_mean * r.sum() if sparse_centered else out) / X.shape[0]


def columns(X: Any, S: np.ndarray, x_mean: FloatArray, sparse_centered: bool) -> FloatArray:
    """The centred columns ``S`` of ``X``, dense."""
    if sp.issparse(X) and X.format == "csc" and len(S) <= 8:
        # the homotopy asks for one column per breakpoint: read CSC's arrays directly
        # (scipy's fancy indexing and toarray cost 0.17 ms per call on a 160 x 3000 design)
        XS = np.zeros((X.shape[0], len(S)), order="F")  # the layout of toarray() on CSC
        for k, j in enumerate(S):
            lo, hi = X.indptr[j], X.indptr[j + 1]
            XS[X.indices[lo:hi], k] = X.data[lo:hi]
    else:
        XS = X[:, S]
        XS = XS.toarray() if sp.issparse(XS) else np.asarray(XS)
    return XS - x_mean[S] if sparse_centered else XS


def lasso_cd(
    X: Any,
    y: FloatArray,
    alpha: float,
    warm: FloatArray | None,
    tol: float,
    max_iter: int,
    l1_ratio: float = 1.0,
    center: bool = False,
) -> tuple[FloatArray, int]:
    """scikit-learn's coordinate descent for ``1/(2n)||y - X b||^2 + alpha ||b||_1`` (no
    intercept; ``X`` already centred), warm-started; returns the coefficients and the
    number of epochs it ran.  With more rows than columns (dense) it works on the Gram
    matrix, as ``LassoCV`` does by default.  ``l1_ratio < 1``: scikit-learn's elastic net
    ``alpha (l1_ratio ||b||_1 + (1 - l1_ratio)/2 ||b||^2)`` instead.  ``center``: ``X``
    is sparse and not centred; scikit-learn centres it implicitly (with ``y`` centred,
    the fitted intercept is the centring's, and the coefficients are the centred
    problem's), keeping its sparse coordinate descent instead of a dense copy."""
    options: dict[str, Any] = dict(
        alpha=alpha,
        fit_intercept=center,
        tol=tol,
        max_iter=max_iter,
        warm_start=warm is not None,
        precompute=not sp.issparse(X) and X.shape[0] > X.shape[1],
    )
    model = Lasso(**options) if l1_ratio == 1.0 else ElasticNet(l1_ratio=l1_ratio, **options)
    if warm is not None:
        model.coef_ = warm.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        model.fit(X, y)
    return np.asarray(model.coef_, dtype=np.float64), int(np.max(model.n_iter_))


def design_arrays(X: Any, x_mean: FloatArray, centered: bool) -> tuple[Any, ...]:
    """A design as the compiled kernels take it (``_numba_homotopy.Design``):
    ``(dense, X, ptr, idx, val, rptr, ridx, rval, x_mean, centered)``, the centred dense
    ``X`` in C order, or sparse ``X``'s CSC and CSR arrays (placeholders for the unused
    ones) centred through ``x_mean`` when ``centered``."""
    means = (np.ascontiguousarray(x_mean, dtype=np.float64), bool(centered))
    if sp.issparse(X):
        csc, csr = sp.csc_matrix(X), sp.csr_matrix(X)
        return (
            False,
            np.zeros((1, 1)),
            csc.indptr.astype(np.int64),
            csc.indices.astype(np.int64),
            np.asarray(csc.data, dtype=np.float64),
            csr.indptr.astype(np.int64),
            csr.indices.astype(np.int64),
            np.asarray(csr.data, dtype=np.float64),
            *means,
        )
    empty, none = np.zeros(1, dtype=np.int64), np.zeros(1)
    dense = np.ascontiguousarray(X, dtype=np.float64)
    return (True, dense, empty, empty, none, empty, empty, none, *means)


#: relative KKT tolerance of the exact elastic-net solves (as the LASSO homotopy's)
ENET_KKT_TOL = 1e-9
#: largest support the active-set elastic-net solver takes on (each of its iterations
#: factorizes ``|S| x |S|``, about 3 ms at this size); beyond it coordinate descent solves
ENET_MAX_ACTIVE = 400
#: iterations (a column entering or leaving each) per penalty pair before it gives up:
#: a warm start whose 247 signs are all wrong (1000-channel spectra) needs about 500
ENET_MAX_ITER = 2000


def enet_exact(
    fold: Fold,
    lam1: FloatArray,
    lam2: FloatArray,
    warm: FloatArray | None,
) -> tuple[FloatArray, np.ndarray] | None:
    """Exact elastic-net solutions of ``1/(2n)||y - X b||^2 + lam1 ||b||_1 + lam2/2
    ||b||^2`` (``lam2 > 0``) on the fold's training data at the penalty pairs in turn,
    each warm-started from the previous one:
    ``(coefs, ok)`` with ``coefs`` of shape ``(points, p)`` and ``ok`` whether each point
    passed its KKT check (`_numba_homotopy.enet_solutions`); ``None`` without numba or
    where a restricted system was not positive definite in floating point (a ridge too
    small for a collinear support): the caller then uses coordinate descent."""
    kernel = compiled("lasso._numba_homotopy")
    if kernel is None:
        return None
    p = fold.X.shape[1]
    try:
        coefs, ok = kernel.enet_solutions(
            fold.design,
            np.ascontiguousarray(fold.y, dtype=np.float64),
            np.ascontiguousarray(lam1, dtype=np.float64),
            np.ascontiguousarray(lam2, dtype=np.float64),
            np.zeros(p) if warm is None else np.ascontiguousarray(warm, dtype=np.float64),
            ENET_KKT_TOL,
            ENET_MAX_ITER,
            ENET_MAX_ACTIVE,
        )
    except np.linalg.LinAlgError:  # (a ridge too small for a collinear support)
        return None
    return coefs, ok
