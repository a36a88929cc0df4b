"""The zero cone {0}: equality constraints."""

from __future__ import annotations

import numpy as np

from ._base import Cone, FloatArray, KinkPolicy

__all__ = ["ZeroCone"]


class ZeroCone(Cone):
    r"""$K = \{0\}^{\mathrm{dim}}$ (equality constraints $Ax = b$);
    $K^* = \mathbb{R}^{\mathrm{dim}}$.

    $\Pi_K = 0$ and $\Pi_{K^*}$ is the identity, which is smooth: $D = I$ and no kinks.
    """

    name = "zero"

    def replicate(self, copies: int) -> ZeroCone:
        return ZeroCone(self._dim * copies)

    diagonal = True

    def __init__(self, dim: int) -> None:
        self._dim = int(dim)

    @property
    def dim(self) -> int:
        return self._dim

    def project(self, v: FloatArray) -> FloatArray:
        return np.zeros_like(v)

    def project_dual(self, v: FloatArray) -> FloatArray:
        return v.copy()

    def dual_jacobian_diagonal(self, v: FloatArray, kink: KinkPolicy, tol: float) -> FloatArray:
        del kink, tol
        return np.ones_like(v)

    def kinks(self, v: FloatArray, tol: float) -> int:
        del v, tol
        return 0
