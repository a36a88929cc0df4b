"""The nonnegative orthant: linear inequalities."""

from __future__ import annotations

import numpy as np

from ._base import Cone, FloatArray, KinkPolicy

__all__ = ["NonnegativeCone"]


class NonnegativeCone(Cone):
    r"""$K = K^* = \mathbb{R}^{\mathrm{dim}}_+$ (inequalities $Ax \le b$).

    $\Pi(v) = \max(v, 0)$ with Jacobian $\operatorname{diag}(\mathbb{1}[v_i > 0])$.  At $v_i = 0$
    (a weakly active constraint: $y_i = s_i = 0$) the Clarke Jacobian is $[0, 1]$; the policy
    picks $1$ (``ACTIVE``) or $0$ (``INACTIVE``).
    """

    name = "nonnegative"

    def replicate(self, copies: int) -> NonnegativeCone:
        return NonnegativeCone(self._dim * copies)

    self_dual = True
    diagonal = True

    def __init__(self, dim: int) -> None:
        self._dim = int(dim)

    @property
    def dim(self) -> int:
        return self._dim

    def project(self, v: FloatArray) -> FloatArray:
        return np.maximum(v, 0.0)

    def dual_jacobian_diagonal(self, v: FloatArray, kink: KinkPolicy, tol: float) -> FloatArray:
        d = (v > 0).astype(np.float64)
        d[np.abs(v) <= tol] = 1.0 if kink is KinkPolicy.ACTIVE else 0.0
        return d

    def kinks(self, v: FloatArray, tol: float) -> int:
        return int(np.count_nonzero(np.abs(v) <= tol))
