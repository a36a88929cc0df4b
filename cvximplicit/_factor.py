"""Factorizations of the derivative matrix ``B``: ``factorize(B) -> Factorization``.

A `Factorization` solves ``B z = r`` and ``B' z = r`` and does nothing else: it never
warns, never changes itself and computes its condition number only when asked
(`Factorization.condition()`).  `factorize()` picks the variant by size and fill:

* `DenseLU` (LAPACK ``getrf``) for small or dense-ish ``B``: on the small programs layers
  are used for it is several times faster than a sparse LU, and it has no failure mode on
  rank-deficient input;
* `SparseLU` (SuperLU) otherwise;
* `LeastSquares` (minimum-norm, dense SVD or LSMR) when ``B`` is numerically singular;
  it is marked ``degenerate`` and carries the reason, and the caller decides whether to warn
  or raise.

`Refined` reuses a factorization of a nearby matrix with iterative refinement against
the exact ``B`` (applied as products): polishing on curved cones moves ``B`` a little at each
step, and refactorizing would cost more than a few refinement sweeps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import cast

import numpy as np
import scipy.linalg
import scipy.linalg.lapack
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import structural_rank

from ._tolerances import Tolerances
from ._typing import FloatArray, Sparse, shape2

__all__ = ["DenseLU", "Factorization", "LeastSquares", "Refined", "SparseLU", "factorize"]


class Factorization(ABC):
    """Solves with one matrix ``B`` of size ``size``; see the module docstring."""

    #: Short description shown in `Diagnostics` (``linear_solve``).
    method: str
    #: Whether ``B`` was found singular (solves are then least-squares solutions).
    degenerate: bool = False
    #: Why ``B`` was found singular (empty otherwise).
    reason: str = ""

    def __init__(self, size: int) -> None:
        self.size = size

    @abstractmethod
    def solve(self, rhs: FloatArray, transpose: bool = False) -> FloatArray:
        """``B^{-1} rhs`` (``B^{-T} rhs`` with ``transpose``)."""

    def condition(self) -> float:
        """Estimate of the 1-norm condition number ``||B||_1 ||B^{-1}||_1``."""
        if self.size == 0:
            return 1.0
        if self.degenerate:
            return float("inf")
        norm_inv = cast(float, spla.onenormest(_Inverse(self)))
        return self._norm1() * float(norm_inv)

    def _norm1(self) -> float:
        raise NotImplementedError


class _Empty(Factorization):
    method = "empty"

    def solve(self, rhs: FloatArray, transpose: bool = False) -> FloatArray:
        del rhs, transpose
        return np.zeros(0)


class DenseLU(Factorization):
    """LAPACK LU with partial pivoting of a dense ``B``."""

    method = "dense LU"

    def __init__(self, B: FloatArray, lu: tuple[FloatArray, np.ndarray]) -> None:
        super().__init__(B.shape[0])
        self._B = B
        self._lu = lu

    def solve(self, rhs: FloatArray, transpose: bool = False) -> FloatArray:
        lu, piv = self._lu
        x, _ = scipy.linalg.lapack.dgetrs(lu, piv, rhs, trans=1 if transpose else 0)  # pyright: ignore[reportAttributeAccessIssue]
        return x

    def _norm1(self) -> float:
        return float(np.abs(self._B).sum(axis=0).max())


class SparseLU(Factorization):
    """SuperLU of a sparse ``B`` (COLAMD ordering)."""

    method = "sparse LU"

    def __init__(self, B: Sparse, lu: spla.SuperLU) -> None:
        super().__init__(shape2(B)[0])
        self._B = B
        self._lu = lu

    def solve(self, rhs: FloatArray, transpose: bool = False) -> FloatArray:
        return self._lu.solve(rhs, trans="T" if transpose else "N")

    def _norm1(self) -> float:
        return float(np.max(np.asarray(abs(self._B).sum(axis=0)), initial=0.0))


class LeastSquares(Factorization):
    """Minimum-norm least-squares solves with a singular ``B``."""

    degenerate = True

    def __init__(self, B: Sparse, reason: str, dense_limit: int) -> None:
        super().__init__(shape2(B)[0])
        self.reason = reason
        self._B = B
        self._svd: tuple[FloatArray, FloatArray, FloatArray] | None = None
        if self.size <= dense_limit:
            self.method = "least squares (dense SVD)"
            dense = B if isinstance(B, np.ndarray) else B.toarray()
            u, sv, vt = scipy.linalg.svd(dense, full_matrices=False)
            keep = sv > sv[0] * 1e-12 if sv.size and sv[0] > 0 else np.zeros(sv.size, bool)
            self._svd = (u[:, keep], sv[keep], vt[keep])
        else:
            self.method = "least squares (LSMR)"

    def solve(self, rhs: FloatArray, transpose: bool = False) -> FloatArray:
        if self._svd is not None:
            u, sv, vt = self._svd
            if transpose:
                return u @ ((vt @ rhs) / sv)
            return vt.T @ ((u.T @ rhs) / sv)
        op = self._B.T if transpose else self._B
        return spla.lsmr(op, rhs, atol=1e-14, btol=1e-14, maxiter=20 * self.size)[0]


class Refined(Factorization):
    """A factorization of a nearby matrix, refined iteratively against the exact ``B``.

    ``matvec``/``rmatvec`` apply the exact ``B`` and ``B'``.  When refinement does not reach
    rounding level within ``sweeps`` sweeps, ``exact()`` is called once (it factorizes ``B``
    itself) and used from then on.
    """

    def __init__(
        self,
        base: Factorization,
        matvec: Callable[[FloatArray], FloatArray],
        rmatvec: Callable[[FloatArray], FloatArray],
        exact: Callable[[], Factorization],
        sweeps: int,
    ) -> None:
        super().__init__(base.size)
        self._base = base
        self._apply = (matvec, rmatvec)
        self._exact_factory = exact
        self._exact: Factorization | None = None
        self._sweeps = sweeps
        self.method = f"{base.method} (reused with iterative refinement)"

    def exact(self) -> Factorization:
        """The factorization of ``B`` itself (computed on first use)."""
        if self._exact is None:
            self._exact = self._exact_factory()
        return self._exact

    def solve(self, rhs: FloatArray, transpose: bool = False) -> FloatArray:
        if self._exact is not None:
            return self._exact.solve(rhs, transpose)
        apply = self._apply[1] if transpose else self._apply[0]
        z = self._base.solve(rhs, transpose)
        previous = np.inf
        for _ in range(self._sweeps):
            dz = self._base.solve(rhs - apply(z), transpose)
            z = z + dz
            step = float(np.linalg.norm(dz))
            size = max(float(np.linalg.norm(z)), 1e-300)
            # converged: a correction at rounding level, or one that stopped shrinking while
            # already tiny (the rounding floor of the residual rhs - B z)
            if step <= 1e-15 * size or (step >= 0.25 * previous and step <= 1e-10 * size):
                return z
            previous = step
        return self.exact().solve(rhs, transpose)

    @property
    def degenerate(self) -> bool:  # type: ignore[override]
        return self._exact.degenerate if self._exact is not None else False

    def condition(self) -> float:
        return self.exact().condition()


class _Inverse(spla.LinearOperator):
    """``B^{-1}`` as an operator, for the condition estimate."""

    def __init__(self, factorization: Factorization) -> None:
        super().__init__(dtype=np.float64, shape=(factorization.size, factorization.size))
        self.factorization = factorization

    def _matvec(self, x: FloatArray) -> FloatArray:
        return self.factorization.solve(np.ravel(x))

    def _rmatvec(self, x: FloatArray) -> FloatArray:
        return self.factorization.solve(np.ravel(x), transpose=True)


def use_dense(size: int, nnz: int, tol: Tolerances) -> bool:
    """Whether a ``size x size`` matrix with ``nnz`` stored entries is factorized densely."""
    return size <= tol.dense_lu_limit or (
        size <= tol.dense_fill_limit and nnz >= tol.dense_fill * size * size
    )


def factorize(B: Sparse | FloatArray, tol: Tolerances | None = None) -> Factorization:
    """Factorize ``B``, choosing the method by size and fill (see the module doc); a dense
    ``B`` (numpy array) is factorized densely.

    Never raises on a singular ``B``: the result is then a `LeastSquares` with
    ``degenerate=True`` and the ``reason``.
    """
    tol = Tolerances() if tol is None else tol
    size = shape2(B)[0]
    if size == 0:
        return _Empty(0)
    reason = ""
    if isinstance(B, np.ndarray) or use_dense(size, int(B.nnz), tol):
        dense = B if isinstance(B, np.ndarray) else B.toarray()
        lu, piv, _ = scipy.linalg.lapack.dgetrf(dense)  # pyright: ignore[reportAttributeAccessIssue]
        pivots = np.abs(np.diagonal(lu))
        top = float(pivots.max())
        ratio = float(pivots.min()) / top if top > 0 else 0.0
        if ratio >= tol.singular_pivot_ratio and np.isfinite(ratio):
            return DenseLU(dense, (lu, piv))
        reason = f"LU pivot ratio {ratio:.1e}"
        return LeastSquares(dense, reason, tol.dense_lstsq_limit)
    # SuperLU was seen to crash the process on a rank-deficient B: a structurally singular
    # one (measured: 36 ms for 178k rows) never reaches it.
    rank = int(structural_rank(sp.csr_array(B)))
    if rank < size:
        return LeastSquares(
            B, f"structurally singular, rank {rank} of {size}", tol.dense_lstsq_limit
        )
    try:
        lu = spla.splu(B, permc_spec="COLAMD")
        pivots = np.abs(lu.U.diagonal())
        top = float(pivots.max())
        ratio = float(pivots.min()) / top if top > 0 else 0.0
        if ratio >= tol.singular_pivot_ratio:
            return SparseLU(B, lu)
        reason = f"LU pivot ratio {ratio:.1e}"
    except RuntimeError as exc:  # "Factor is exactly singular"
        reason = str(exc)
    return LeastSquares(B, reason, tol.dense_lstsq_limit)
