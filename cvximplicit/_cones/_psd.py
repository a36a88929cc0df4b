"""Positive semidefinite cones, in scaled half-vectorisation."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from .._typing import FloatArray, IntArray
from ._base import BlockLayout, Cone, KinkPolicy
from ._kernels import compiled_kernels

__all__ = ["PSDCone"]

SQRT2 = float(np.sqrt(2.0))
#: Largest order whose Jacobian the compiled kernel builds as ``K' diag(omega) K`` (``d^3``
#: flops for ``d = k(k+1)/2``, against ``2 d k^3`` for the numpy code's products with every
#: basis matrix): measured 2-3x faster up to order 40 (order 10: 0.11 -> 0.02 ms).
COMPILED_MAX_ORDER = 40


@functools.lru_cache(maxsize=64)
def _triangle(k: int) -> tuple[IntArray, IntArray, FloatArray]:
    """Rows, columns and scaling of the canonical svec of a ``k x k`` matrix: the upper
    triangle in column-major order, off-diagonal entries multiplied by ``sqrt(2)``."""
    rows, cols = [], []
    for j in range(k):
        for i in range(j + 1):
            rows.append(i)
            cols.append(j)
    r, c = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    return r, c, np.where(r == c, 1.0, SQRT2)


def svec_order(k: int, convention: str) -> IntArray:
    """Index ``p`` with ``v[p]`` the canonical svec ``v`` in a solver's layout.

    ``"canonical"``/``"clarabel"``: upper triangle, column-major (CVXPY's Clarabel form).
    ``"scs"``: lower triangle, column-major.  Both scale off-diagonals by ``sqrt(2)``, so the
    conversion is a pure permutation.
    """
    rows, cols, _ = _triangle(k)
    if convention in ("canonical", "clarabel"):
        return np.arange(rows.size, dtype=np.int64)
    if convention == "scs":
        position = {(int(i), int(j)): n for n, (i, j) in enumerate(zip(rows, cols))}
        order = [position[(j, i)] for j in range(k) for i in range(j, k)]
        return np.asarray(order, dtype=np.int64)
    raise ValueError(f"unknown PSD layout {convention!r}")


def smat(v: FloatArray, k: int) -> FloatArray:
    """Symmetric matrices from canonical svecs (last axis)."""
    rows, cols, scale = _triangle(k)
    out = np.zeros((*v.shape[:-1], k, k))
    vals = v / scale
    out[..., rows, cols] = vals
    out[..., cols, rows] = vals
    return out


def svec(M: FloatArray) -> FloatArray:
    """Canonical svecs of symmetric matrices (last two axes)."""
    rows, cols, scale = _triangle(M.shape[-1])
    return M[..., rows, cols] * scale


class PSDCone(Cone):
    r"""A product of PSD cones $\{X = X^\top : X \succeq 0\}$ of the given orders $k$.

    Each member occupies $k(k+1)/2$ coordinates: the upper triangle in column-major order
    with off-diagonal entries scaled by $\sqrt 2$ (an isometry, so projections in this
    layout are Frobenius projections).  Self-dual.  With
    $X = U \operatorname{diag}(\lambda) U^\top$, $\Pi(X) = U \operatorname{diag}(\max(\lambda, 0))
    U^\top$ and $D\Pi[H] = U \bigl(\Omega \circ (U^\top H U)\bigr) U^\top$ where
    $\Omega_{ij} = \frac{\max(\lambda_i, 0) - \max(\lambda_j, 0)}{\lambda_i - \lambda_j}$
    (the derivative of $\max$ when $\lambda_i = \lambda_j$).  Kinks are zero eigenvalues:
    within ``tol`` of zero, $\Omega$ on the zero block is $1$ (``ACTIVE``) or $0$
    (``INACTIVE``).  SCS stores the lower triangle instead; `permutation()` converts.
    """

    name = "psd"

    def replicate(self, copies: int) -> PSDCone:
        return PSDCone(self.orders * copies)

    self_dual = True

    def __init__(self, orders: Sequence[int]) -> None:
        orders = tuple(int(k) for k in orders)
        if any(k < 1 for k in orders):
            raise ValueError(f"PSD cone orders must be positive, got {orders}")
        self.orders = orders
        self._layout = BlockLayout(tuple(k * (k + 1) // 2 for k in orders))
        self._memo: dict[int, tuple[FloatArray, tuple[FloatArray, FloatArray]]] = {}

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_memo": {}}

    @property
    def dim(self) -> int:
        return self._layout.dim

    def __repr__(self) -> str:
        return f"PSDCone(orders={list(self.orders)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PSDCone) and other.orders == self.orders

    def __hash__(self) -> int:
        return hash((type(self), self.orders))

    @staticmethod
    @functools.cache
    def _order(d: int) -> int:
        return round((float(np.sqrt(8 * d + 1)) - 1) / 2)

    def permutation(self, convention: str) -> IntArray:
        parts, start = [], 0
        for k in self.orders:
            parts.append(start + svec_order(k, convention))
            start += k * (k + 1) // 2
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def _eig(self, v: FloatArray, d: int) -> tuple[FloatArray, FloatArray]:
        """Eigen-decompositions of the members of size ``d``; the last one is remembered,
        since polishing asks for the projection and the Jacobian at the same point."""
        block = self._layout.take(v, d)
        memo = self._memo.get(d)  # (block, result): read once, so threads see a pair
        if memo is not None and memo[0].shape == block.shape and np.array_equal(memo[0], block):
            return memo[1]
        result = np.linalg.eigh(smat(block, self._order(d)))
        self._memo[d] = (block, result)
        return result

    def project(self, v: FloatArray) -> FloatArray:
        out = np.empty_like(v)
        kernels = compiled_kernels()
        for d in self._layout.groups:
            lam, U = self._eig(v, d)
            if kernels is not None:
                self._layout.put(out, d, kernels.project_psd_rows(lam, U))
                continue
            X = (U * np.maximum(lam, 0.0)[:, None, :]) @ np.swapaxes(U, 1, 2)
            self._layout.put(out, d, svec(X))
        return out

    @staticmethod
    def _omega(lam: FloatArray, kink: KinkPolicy, tol: float) -> FloatArray:
        li, lj = lam[:, :, None], lam[:, None, :]
        pi, pj = np.maximum(li, 0.0), np.maximum(lj, 0.0)
        diff = li - lj
        close = np.abs(diff) <= 1e-12 * np.maximum(1.0, np.maximum(np.abs(li), np.abs(lj)))
        safe = np.where(close, 1.0, diff)
        omega = np.where(close, ((li + lj) > 0).astype(float), (pi - pj) / safe)
        both_zero = (np.abs(li) <= tol) & (np.abs(lj) <= tol)
        return np.where(both_zero, 1.0 if kink is KinkPolicy.ACTIVE else 0.0, omega)

    def dual_jacobian_blocks(
        self, v: FloatArray, kink: KinkPolicy, tol: float
    ) -> dict[int, FloatArray]:
        blocks = {}
        kernels = compiled_kernels()
        for d in self._layout.groups:
            k = self._order(d)
            lam, U = self._eig(v, d)
            if kernels is not None and k <= COMPILED_MAX_ORDER:
                blocks[d] = kernels.psd_jacobian_rows(lam, U, kink is KinkPolicy.ACTIVE, tol)
                continue
            omega = self._omega(lam, kink, tol)
            rows, cols, scale = _triangle(k)
            # U'E_l U for every svec basis element E_l = smat(e_l).
            Ur, Uc = U[:, rows, :], U[:, cols, :]
            half = np.where(rows == cols, 0.5, 1.0 / SQRT2)
            basis = half[None, :, None, None] * (
                Ur[:, :, :, None] * Uc[:, :, None, :] + Uc[:, :, :, None] * Ur[:, :, None, :]
            )
            inner = omega[:, None, :, :] * basis
            full = U[:, None] @ inner @ np.swapaxes(U, 1, 2)[:, None]
            # column l of the Jacobian is svec of the image of E_l
            blocks[d] = np.swapaxes(full[:, :, rows, cols] * scale, 1, 2)
        return blocks

    def kinks(self, v: FloatArray, tol: float) -> int:
        count = 0
        for d in self._layout.groups:
            lam, _ = self._eig(v, d)
            count += int(np.count_nonzero(np.abs(lam) <= tol))
        return count
