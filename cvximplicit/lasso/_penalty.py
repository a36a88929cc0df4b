"""One strategy per penalty kind (as ``Cone`` and ``Solver`` are in the core).

Objective (scikit-learn's convention) ``1/(2n) ||y - X b||^2 + P_theta(b)`` with

* `LassoPenalty`: ``a ||b||_1`` (theta = [a]);
* `WeightedPenalty`: ``sum_j a_j |b_j|`` (theta = a, one per feature);
* `ElasticNetPenalty`: ``a r ||b||_1 + a (1 - r)/2 ||b||^2`` (theta = [a, r]:
  scikit-learn's ``alpha`` and ``l1_ratio``).

Each gives its coordinate-descent solve, its per-feature l1 weights and ridge term (for the
exact polish and the optimality check), and the right-hand side of the implicit derivative
``d b_S / d theta = H^{-1} rhs`` with ``H = X_S'X_S/n + ridge I``.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from .._typing import FloatArray
from ._linalg import Fold, enet_exact, lasso_cd

__all__ = ["ElasticNetPenalty", "LassoPenalty", "Penalty", "WeightedPenalty", "penalty_named"]


class Penalty(abc.ABC):
    """The contract of a penalty kind."""

    #: the name accepted by ``hypergradient(penalty=...)``
    name: ClassVar[str]

    @abc.abstractmethod
    def size(self, p: int) -> int:
        """Number of penalty parameters for ``p`` features."""

    def validate(self, theta: FloatArray, p: int) -> FloatArray:
        """``theta`` as a float vector; a ``ValueError`` when its size or values are wrong."""
        theta = np.atleast_1d(np.asarray(theta, dtype=np.float64))
        if theta.size != self.size(p) or np.any(theta <= 0) or not np.all(np.isfinite(theta)):
            raise ValueError(
                f"penalty={self.name!r} takes {self.size(p)} positive value(s) in alpha, "
                f"got {theta.tolist()}"
            )
        return theta

    @abc.abstractmethod
    def weights(self, theta: FloatArray, p: int) -> tuple[FloatArray, float]:
        """Per-feature l1 weights and the ridge coefficient."""

    @abc.abstractmethod
    def rhs(self, theta: FloatArray, coef_S: FloatArray, S: np.ndarray, p: int) -> FloatArray:
        """``|S| x size`` right-hand side of ``d b_S / d theta = H^{-1} rhs``."""

    def lasso_alpha(self, theta: FloatArray) -> float | None:
        """The single LASSO penalty this ``theta`` is equivalent to after rescaling the
        columns (`column_scale()`), or ``None`` (a ridge term: no LASSO homotopy)."""
        return None

    def column_scale(self, theta: FloatArray, p: int) -> FloatArray:
        """``b_j = scale_j c_j`` turns the penalty into ``lasso_alpha ||c||_1``."""
        return np.ones(p)

    def solve(
        self, fold: Fold, theta: FloatArray, warm: FloatArray | None, tol: float, max_iter: int
    ) -> tuple[FloatArray, int]:
        """Coordinate descent on the fold's training data (``X`` centred, no intercept; or
        sparse ``X`` centred implicitly): coefficients and epochs."""
        X, y, center = fold.X, fold.y, fold.sparse_centered
        base = self.lasso_alpha(theta)
        assert base is not None
        scale = self.column_scale(theta, X.shape[1])
        if np.all(scale == 1):
            return lasso_cd(X, y, base, warm, tol, max_iter, center=center)
        Xs = X.multiply(scale[None, :]).tocsc() if sp.issparse(X) else X * scale
        warm_s = None if warm is None else warm / scale
        coef, n_iter = lasso_cd(Xs, y, base, warm_s, tol, max_iter, center=center)
        return coef * scale, n_iter


class LassoPenalty(Penalty):
    """``a ||b||_1``."""

    name = "lasso"

    def size(self, p: int) -> int:
        return 1

    def weights(self, theta: FloatArray, p: int) -> tuple[FloatArray, float]:
        return np.full(p, float(theta[0])), 0.0

    def rhs(self, theta: FloatArray, coef_S: FloatArray, S: np.ndarray, p: int) -> FloatArray:
        return -np.sign(coef_S)[:, None]

    def lasso_alpha(self, theta: FloatArray) -> float | None:
        return float(theta[0])


class WeightedPenalty(Penalty):
    """``sum_j a_j |b_j|``, one penalty per feature."""

    name = "weighted"

    def size(self, p: int) -> int:
        return p

    def weights(self, theta: FloatArray, p: int) -> tuple[FloatArray, float]:
        return np.asarray(theta, dtype=np.float64), 0.0

    def rhs(self, theta: FloatArray, coef_S: FloatArray, S: np.ndarray, p: int) -> FloatArray:
        out = np.zeros((S.size, p))
        out[np.arange(S.size), S] = -np.sign(coef_S)
        return out

    def lasso_alpha(self, theta: FloatArray) -> float | None:
        return float(np.mean(theta))

    def column_scale(self, theta: FloatArray, p: int) -> FloatArray:
        return float(np.mean(theta)) / theta


class ElasticNetPenalty(Penalty):
    """``alpha l1_ratio ||b||_1 + alpha (1 - l1_ratio)/2 ||b||^2`` (scikit-learn's
    ``ElasticNet``), ``theta = [alpha, l1_ratio]`` with ``0 < l1_ratio <= 1``."""

    name = "enet"

    def size(self, p: int) -> int:
        return 2

    def validate(self, theta: FloatArray, p: int) -> FloatArray:
        theta = np.atleast_1d(np.asarray(theta, dtype=np.float64))
        if theta.size != 2 or not theta[0] > 0 or not 0 < theta[1] <= 1:
            raise ValueError(
                "penalty='enet' takes 2 values in alpha, [alpha > 0, 0 < l1_ratio <= 1] "
                f"(scikit-learn's ElasticNet parameters), got {theta.tolist()}"
            )
        return theta

    def weights(self, theta: FloatArray, p: int) -> tuple[FloatArray, float]:
        a, r = float(theta[0]), float(theta[1])
        return np.full(p, a * r), a * (1 - r)

    def rhs(self, theta: FloatArray, coef_S: FloatArray, S: np.ndarray, p: int) -> FloatArray:
        # d/d alpha = r d/da1 + (1 - r) d/da2, d/d r = alpha (d/da1 - d/da2), with
        # d b_S/d a1 = -H^{-1} s and d b_S/d a2 = -H^{-1} b_S
        a, r = float(theta[0]), float(theta[1])
        s = np.sign(coef_S)
        return np.stack([-(r * s + (1 - r) * coef_S), -a * (s - coef_S)], axis=1)

    def lasso_alpha(self, theta: FloatArray) -> float | None:
        return float(theta[0]) if theta[1] == 1 else None

    def solve(
        self, fold: Fold, theta: FloatArray, warm: FloatArray | None, tol: float, max_iter: int
    ) -> tuple[FloatArray, int]:
        """Exact active-set solve from the warm start when compiled (`enet_exact`; the
        coefficients' epochs are reported as 0), else coordinate descent."""
        alpha, ratio = float(theta[0]), float(theta[1])
        if ratio < 1.0:
            lam1, lam2 = np.array([alpha * ratio]), np.array([alpha * (1 - ratio)])
            exact = enet_exact(fold, lam1, lam2, warm)
            if exact is not None and exact[1][0]:
                return exact[0][0], 0
        return lasso_cd(
            fold.X,
            fold.y,
            alpha,
            warm,
            tol,
            max_iter,
            l1_ratio=ratio,
            center=fold.sparse_centered,
        )


_PENALTIES: dict[str, Penalty] = {
    k.name: k for k in (LassoPenalty(), WeightedPenalty(), ElasticNetPenalty())
}


def penalty_named(name: str | Penalty) -> Penalty:
    """The strategy for ``name`` (``"lasso"``, ``"weighted"`` or ``"enet"``)."""
    if isinstance(name, Penalty):
        return name
    if name not in _PENALTIES:
        raise ValueError(f"penalty must be one of {tuple(_PENALTIES)}, got {name!r}")
    return _PENALTIES[name]
