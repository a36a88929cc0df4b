"""The canonical cone program, its residual map, polishing and derivatives.

For the program

    minimise 1/2 x'Px + c'x   subject to   Ax + s = b,  s in K

one vector ``v`` stands for the pair ``(y, s)``: ``y = Pi_{K*}(v)`` and ``s = Pi_{K*}(v) - v``
(Moreau), and the normal-map residual

    F(x, v) = [ P x + A' Pi_{K*}(v) + c       ]
              [ A x + Pi_{K*}(v) - v - b      ]

vanishes exactly at KKT points.  With ``D`` an element of the conservative Jacobian of
``Pi_{K*}`` at ``v`` (chosen by a `KinkPolicy`),

    B = dF/d(x, v) = [ P   A'D   ]
                     [ A   D - I ]

is both the semismooth Newton matrix used to polish the solver's point and the matrix of the
implicit function theorem: one factorization of ``B`` serves every VJP and JVP.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import warnings
from collections.abc import Callable, Sequence
from typing import cast

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import structural_rank

from ._blas import single_thread_blas
from ._certificates import find_certificate
from ._compiled import compiled
from ._cones import Cone, KinkPolicy, NonnegativeCone
from ._diagnostics import Diagnostics, PolishOutcome, Timings
from ._errors import (
    DegenerateDerivativeError,
    DegenerateDerivativeWarning,
    InaccurateSolutionWarning,
    InfeasibleError,
    SolverError,
    SolverFailedError,
    UnboundedError,
)
from ._factor import (
    Factorization,
    Refined,
    SparseLU,
    SparsePattern,
    SparsePatterns,
    factorize,
    natural_lu,
    reduced_ldl,
    use_dense,
)
from ._solvers import Clarabel, ConeData, RawSolution, Solver, SolverStatus
from ._tolerances import Tolerances
from ._typing import FloatArray, IntArray, Sparse

__all__ = [
    "ConeSet",
    "ConicSolution",
    "DataTangent",
    "Jacobian",
    "NewtonStructure",
    "solve_conic",
    "warm_start_conic",
]


def _weighted_count(index: IntArray, weights: np.ndarray, size: int) -> FloatArray:
    """``out[k] = sum of weights[index == k]`` (a scatter-add)."""
    return cast(FloatArray, np.bincount(index, weights, minlength=size))


def _pattern_product(
    rows: IntArray, cols: IntArray, values: FloatArray, z: FloatArray, dim: int
) -> FloatArray:
    """``out[rows[k]] += values[k] z[cols[k]]``: a scatter-add on a fixed pattern (building
    a CSR array per product cost 40-80 us); compiled where numba is installed."""
    kernel = compiled("_numba_newton")
    if kernel is not None:
        return kernel.pattern_product(rows, cols, values, z, dim)
    out = np.bincount(rows, weights=values * z[cols], minlength=dim)
    return out.astype(np.float64, copy=False)


class Jacobian:
    """``D``, an element of the conservative Jacobian of ``Pi_{K*}``, on a fixed pattern.

    ``values[k]`` is the entry at ``(rows[k], cols[k])``; the pattern is the cones' (the
    diagonal for polyhedral cones, one dense block per member otherwise), so two Jacobians
    of one program compare entry by entry.
    """

    __slots__ = ("_csr", "cols", "diagonal", "dim", "rows", "values")

    def __init__(
        self, rows: IntArray, cols: IntArray, values: FloatArray, dim: int, diagonal: bool
    ) -> None:
        self.rows, self.cols, self.values, self.dim = rows, cols, values, dim
        #: Whether the pattern is the diagonal in order (then ``values`` is the diagonal).
        self.diagonal = diagonal
        self._csr: Sparse | None = None

    def matvec(self, z: FloatArray) -> FloatArray:
        if self.diagonal:
            return self.values * z
        return _pattern_product(self.rows, self.cols, self.values, z, self.dim)

    def rmatvec(self, w: FloatArray) -> FloatArray:
        if self.diagonal:
            return self.values * w
        return _pattern_product(self.cols, self.rows, self.values, w, self.dim)

    def sparse(self) -> Sparse:
        """``D`` as a CSR array (built once)."""
        if self._csr is None:
            self._csr = sp.csr_array(
                (self.values, (self.rows, self.cols)), shape=(self.dim, self.dim)
            )
        return self._csr

    def dense(self) -> FloatArray:
        out = np.zeros((self.dim, self.dim))
        out[self.rows, self.cols] = self.values
        return out

    def distance(self, other: Jacobian) -> float:
        """Largest entry change between two Jacobians on the same pattern."""
        return float(np.abs(self.values - other.values).max(initial=0.0))


class ConeSet:
    """The cones of a program, with their slices of the constraint vector and the fixed
    pattern of their Jacobians."""

    def __init__(self, cones: Sequence[Cone]) -> None:
        self.cones = tuple(c for c in cones if c.dim > 0)
        bounds = np.cumsum([0] + [c.dim for c in self.cones])
        self.slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        self.dim = int(bounds[-1])
        self.diagonal = all(c.diagonal for c in self.cones)
        rows, cols = [], []
        for cone, sl in zip(self.cones, self.slices):
            r, c = cone.jacobian_pattern()
            rows.append(r + sl.start)
            cols.append(c + sl.start)
        empty = np.zeros(0, np.int64)
        self.pattern: tuple[IntArray, IntArray] = (
            np.concatenate(rows) if rows else empty,
            np.concatenate(cols) if cols else empty,
        )

    def project_dual(self, v: FloatArray) -> FloatArray:
        if len(self.cones) == 1:
            return self.cones[0].project_dual(v)
        out = np.empty_like(v)
        for cone, sl in zip(self.cones, self.slices):
            out[sl] = cone.project_dual(v[sl])
        return out

    def jacobian(self, v: FloatArray, kink: KinkPolicy, tol: float) -> Jacobian:
        """The chosen element ``D`` of the conservative Jacobian of ``Pi_{K*}`` at ``v``."""
        parts = [
            cone.jacobian_values(v[sl], kink, tol) for cone, sl in zip(self.cones, self.slices)
        ]
        values = np.concatenate(parts) if parts else np.zeros(0)
        return Jacobian(*self.pattern, values, self.dim, self.diagonal)

    def kinks(self, v: FloatArray, tol: float) -> dict[str, int]:
        counts: dict[str, int] = {}
        for cone, sl in zip(self.cones, self.slices):
            counts[cone.name] = counts.get(cone.name, 0) + cone.kinks(v[sl], tol)
        return counts


@dataclasses.dataclass(frozen=True)
class DataTangent:
    """A tangent or cotangent of the program data, on the sparsity patterns of ``P`` and ``A``.

    ``P`` holds one value per stored entry of the full symmetric ``P`` (cotangents are
    symmetrised), ``A`` one per stored entry of ``A``, in CSC order.
    """

    P: FloatArray
    A: FloatArray
    b: FloatArray
    c: FloatArray


class NewtonStructure:
    """The sparsity of ``B = [[P, A'D], [A, D - I]]`` worked out once per program.

    ``B`` is assembled on every polishing step and for every derivative; building it from
    triplets with scipy costs more than factorizing it on small programs.  Small (or
    dense-ish) ``B`` are assembled straight into a dense array and factorized by LAPACK
    (``A'D`` is then one BLAS product).  Otherwise every contribution (``P``, ``A``,
    ``D - I`` and, for polyhedral cones, ``A'D``) gets its position in ``B``'s CSC storage
    up front, so assembly is one scatter-add and the pattern is never rediscovered.
    """

    def __init__(
        self,
        n: int,
        m: int,
        P_pattern: tuple[IntArray, IntArray],
        A_pattern: tuple[IntArray, IntArray],
        cones: ConeSet,
        tol: Tolerances | None = None,
    ) -> None:
        tol = Tolerances() if tol is None else tol
        self.n, self.m = n, m
        size = n + m
        self.size = size
        (pr, pc), (ar, ac) = P_pattern, A_pattern
        dr, dc = cones.pattern
        self._P, self._A, self._D = (pr, pc), (ar, ac), (dr, dc)
        self._eye = (dr == dc).astype(np.float64)
        # Upper bound on the stored entries of B: P, A, D and A'D (at most nnz(A) * block).
        counts = np.bincount(dr, minlength=m)
        triples = int(counts[ar].sum())
        # Bound rows: nonnegative-cone rows of A with one stored entry (x_j >= l, x_j <= u).
        nonneg = np.zeros(m, dtype=bool)
        for cone, sl in zip(cones.cones, cones.slices):
            nonneg[sl] = isinstance(cone, NonnegativeCone)
        single = (np.bincount(ar, minlength=m) == 1) & nonneg
        positions = np.flatnonzero(single[ar])
        self._bounds = (ar[positions], ac[positions], positions)
        #: Stored entries of ``B`` (an upper bound: ``P``, ``A``, ``A'D`` as ``A``, ``D``).
        self.nnz_bound = pr.size + 2 * ar.size + dr.size
        self.dense = use_dense(size, self.nnz_bound, tol)
        self._flat: tuple[IntArray, IntArray, IntArray, IntArray] | None = None
        self._patterns = SparsePatterns()
        self._block_patterns: dict[int, tuple[IntArray, IntArray, IntArray]] = {}
        self.diagonal = cones.diagonal
        self._product = not cones.diagonal and triples > 4 * (ar.size + dr.size)
        if self.dense:
            return
        if self._product:  # A'D by a sparse product; the rest on a fixed pattern
            a_of = d_of = np.zeros(0, np.int64)
        else:  # A'D: every A_{l i} with every D_{l j} of the same row l lands at (i, n + j)
            order = np.argsort(dr, kind="stable")
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            per = counts[ar]
            a_of = np.repeat(np.arange(ar.size), per)
            within = np.arange(int(per.sum())) - np.repeat(np.cumsum(per) - per, per)
            d_of = order[np.repeat(starts[ar], per) + within]
        self._ad = (a_of, d_of)
        rows = np.concatenate([pr, ar + n, dr + n, ac[a_of]])
        cols = np.concatenate([pc, ac, dc + n, dc[d_of] + n])
        keys, inverse = np.unique(cols * size + rows, return_inverse=True)
        self._slot = inverse
        self.rows = (keys % size).astype(np.int64)
        self.cols = (keys // size).astype(np.int64)
        self._nnz = keys.size

    @property
    def patterns_cache(self) -> SparsePatterns:
        """Structural ranks and orderings of this program's sparse ``B`` (and of block-diagonal
        batches of them), by pattern."""
        return self._patterns

    @property
    def patterns(self) -> tuple[tuple[IntArray, IntArray], tuple[IntArray, IntArray]]:
        """(row, column) index arrays of the stored entries of ``P`` and ``A`` (CSC order):
        the program's, where `ConeData.patterns` would work them out again for every
        solution's data."""
        return self._P, self._A

    def dense_matrix(self, data: ConeData, D: Jacobian) -> FloatArray:
        """``B`` as a dense array."""
        n, size = self.n, self.size
        if self._flat is None:
            # where P, A, D and -I land in B stored row-major: assigning through flat
            # indices is 3x faster than through row and column arrays (SOCP, 205 rows:
            # B in 0.08 instead of 0.15 ms)
            (pr, pc), (ar, ac), (dr, dc) = self._P, self._A, self._D
            self._flat = (
                pr * size + pc,
                (ar + n) * size + ac,
                (dr + n) * size + dc + n,
                (np.arange(self.m) + n) * (size + 1),
            )
        B = np.zeros((size, size))
        flat = B.reshape(-1)
        at_P, at_A, at_D, at_diagonal = self._flat
        flat[at_P] = data.P.data
        flat[at_A] = data.A.data
        flat[at_D] = D.values
        lower = B[n:, :n]
        if D.diagonal:
            B[:n, n:] = lower.T * D.values
        else:
            np.matmul(lower.T, B[n:, n:], out=B[:n, n:])
        flat[at_diagonal] -= 1.0
        return B

    def matrix(self, data: ConeData, D: Jacobian) -> Sparse:
        """``B`` in CSC format, without the entries that vanish at this ``D``."""
        if self.dense:
            return sp.csc_array(self.dense_matrix(data, D))
        return self._assemble(*self._stacked(data), D.values[None])

    @staticmethod
    def _stacked(data: ConeData) -> tuple[FloatArray, FloatArray]:
        """The stored values of ``P`` and ``A`` as one-element stacks."""
        P, A = (np.asarray(M.data, dtype=np.float64)[None] for M in (data.P, data.A))
        return P, A

    def _slot_values(self, P: FloatArray, A: FloatArray, D: FloatArray) -> FloatArray:
        """``(k, nnz)``: the values of ``k`` elements' ``B`` on the fixed pattern (``A'D``
        included unless it is a sparse product), from their stacked ``P``, ``A``, ``D``."""
        k = D.shape[0]
        a_of, d_of = self._ad
        weights = np.concatenate([P, A, D - self._eye, A[:, a_of] * D[:, d_of]], axis=1)
        slot, _, _ = self._block_pattern(k)
        return _weighted_count(slot, weights.ravel(), k * self._nnz).reshape(k, self._nnz)

    def _block_pattern(self, k: int) -> tuple[IntArray, IntArray, IntArray]:
        """For ``k`` blocks: each contribution's slot and each slot's row and column in the
        block-diagonal matrix (worked out once per ``k``: batch chunks take few sizes)."""
        pattern = self._block_patterns.get(k)
        if pattern is None:
            block = np.arange(k)[:, None]
            N = self.size
            pattern = (
                (self._slot[None, :] + self._nnz * block).ravel(),
                (self.rows[None, :] + N * block).ravel(),
                (self.cols[None, :] + N * block).ravel(),
            )
            if len(self._block_patterns) >= 8:
                self._block_patterns.clear()
            self._block_patterns[k] = pattern
        return pattern

    def _blocks(self, vals: FloatArray) -> sp.csc_array:
        """The block-diagonal CSC matrix with the blocks' values ``vals`` (``(k, nnz)`` on
        the fixed pattern), without the entries that vanish."""
        k, N = vals.shape[0], self.size
        _, rows, cols = self._block_pattern(k)
        flat = vals.ravel()
        keep = flat != 0
        indptr = np.concatenate([[0], np.cumsum(np.bincount(cols[keep], minlength=N * k))])
        return sp.csc_array((flat[keep], rows[keep], indptr), shape=(N * k, N * k))

    def _assemble(self, P: FloatArray, A: FloatArray, D: FloatArray) -> sp.csc_array:
        """The block-diagonal ``B`` of ``k`` elements (``B`` itself for one), in CSC format
        without the entries that vanish; element ``e``'s block has rows and columns
        ``e N, ..., (e + 1) N - 1``.  Where ``A'D`` is not on the fixed pattern (dense cone
        blocks), it is added as a sparse product of the block-diagonal ``A'`` and ``D``."""
        B = self._blocks(self._slot_values(P, A, D))
        if not self._product:
            return B
        k, N, n, m = D.shape[0], self.size, self.n, self.m
        (ar, ac), (dr, dc) = self._A, self._D
        e = np.arange(k)[:, None]
        AT = sp.csr_array(
            (A.ravel(), ((ac[None, :] + n * e).ravel(), (ar[None, :] + m * e).ravel())),
            shape=(n * k, m * k),
        )
        Dm = sp.csr_array(
            (D.ravel(), ((dr[None, :] + m * e).ravel(), (dc[None, :] + m * e).ravel())),
            shape=(m * k, m * k),
        )
        AtD = sp.coo_array(AT @ Dm)
        r, c = AtD.coords
        top = sp.csc_array(
            (AtD.data, ((r // n) * N + r % n, (c // m) * N + n + c % m)), shape=(N * k, N * k)
        )
        B = sp.csc_array(B + top)
        B.eliminate_zeros()
        return B

    def batched(self, tol: Tolerances) -> bool:
        """Whether batches of this program are polished vectorised (dense LUs, or sparse LUs
        of the block-diagonal ``B``): programs whose ``B`` has fewer than
        `Tolerances.batch_max_size` rows and `Tolerances.batch_max_nnz` stored entries
        (measured there); larger ones run the single-problem path per element, on the
        threads (with its reduced LDL for zero and nonnegative cones from
        `Tolerances.ldl_min_size` rows)."""
        return self.size < tol.batch_max_size and self.nnz_bound < tol.batch_max_nnz

    def block_matrix(
        self, P: FloatArray, A: FloatArray, D: FloatArray
    ) -> tuple[sp.csc_array, IntArray]:
        """The block-diagonal ``B`` of the elements of ``k`` whose ``B`` is structurally
        nonsingular (SuperLU must not see the others, see `factorize()`), from their
        stacked values of ``P``, ``A`` and ``D`` (``(k, nnz)`` each, on the program's
        patterns); see `_assemble()`.  Returns the matrix and the elements it holds, in
        order: the ``j``-th block is element ``kept[j]``.  Structural ranks are remembered
        by pattern."""
        k, N = D.shape[0], self.size
        if not self._product:
            vals = self._slot_values(P, A, D)
            kept = np.flatnonzero([self._nonsingular(v != 0) for v in vals])
            return self._blocks(vals[kept]), kept
        B = self._assemble(P, A, D)
        kept = np.arange(k)
        if structural_rank(sp.csr_array(B)) < N * k:  # which elements are singular (rare)
            kept = np.flatnonzero(
                [
                    self._rank(sp.csc_array(B[N * i : N * (i + 1), N * i : N * (i + 1)])) == N
                    for i in range(k)
                ]
            )
            index = (N * kept[:, None] + np.arange(N)[None, :]).ravel()
            B = sp.csc_array(B[index][:, index])
        return B, kept

    def _rank(self, B: sp.csc_array) -> int:
        return self._patterns(B).rank(B)

    def _slot_pattern(self, keep: np.ndarray) -> SparsePattern:
        """The record (structural rank, ordering once factorized) of ``B`` whose stored
        entries are the slots ``keep`` of the fixed pattern, found by those slots."""
        alias = np.packbits(keep).tobytes()
        pattern = self._patterns.aliased(alias)
        if pattern is None:
            B = self._blocks(keep[None].astype(np.float64))
            pattern = self._patterns(B, alias)
            pattern.rank(B)
        return pattern

    def _nonsingular(self, keep: np.ndarray) -> bool:
        """Whether ``B`` with the stored entries ``keep`` (of the fixed pattern) is
        structurally nonsingular (remembered by pattern)."""
        return self._slot_pattern(keep).rank() == self.size

    def factorize(self, data: ConeData, D: Jacobian, tol: Tolerances) -> Factorization:
        """Factorize ``B`` (dense or sparse, see `factorize()`)."""
        if self.dense:
            return factorize(self.dense_matrix(data, D), tol)
        if D.diagonal and self.size >= tol.ldl_min_size:
            reduced = reduced_ldl(
                data.P,
                data.A_rows,
                D.values,
                lambda z: self.matvec(data, D, z),
                lambda w: self.rmatvec(data, D, w),
                lambda: factorize(self.matrix(data, D), tol, self._patterns, not self.diagonal),
                tol,
            )
            if reduced is not None:
                return reduced
        if self._product:
            return factorize(self.matrix(data, D), tol, self._patterns, not self.diagonal)
        # Assembled straight in the factorization's order where this pattern (the nonzero
        # slots) was factorized before: no CSC matrix, no ordering (0.35 -> 0.2 ms in a
        # forward pass of the 1010-row logistic family).
        vals = self._slot_values(*self._stacked(data), D.values[None])[0]
        keep = vals != 0
        pattern = self._slot_pattern(keep)
        ordering = pattern.ordering()  # (there is one only if B's pattern had full rank)
        if ordering is not None:
            lu = natural_lu(vals[keep], ordering, not self.diagonal, tol)
            if lu is not None:
                return SparseLU(lambda: self._blocks(vals[None]), lu, self.size)
        return factorize(self._blocks(vals[None]), tol, self._patterns, not self.diagonal)

    def _compiled_product(
        self, data: ConeData, D: Jacobian, z: FloatArray, transpose: bool
    ) -> FloatArray | None:
        """``B z`` or ``B' z`` by the compiled kernel (``None`` without numba)."""
        kernel = compiled("_numba_newton")
        if kernel is None:
            return None
        P, A = data.P, data.A
        return kernel.newton_product(
            P.indptr, P.indices, P.data, A.indptr, A.indices, A.data,
            D.rows, D.cols, D.values, D.diagonal, z, transpose,
        )  # fmt: skip

    def matvec(self, data: ConeData, D: Jacobian, z: FloatArray) -> FloatArray:
        """``B z`` without assembling ``B``."""
        out = self._compiled_product(data, D, z, False)
        if out is not None:
            return out
        x, v = z[: self.n], z[self.n :]
        Dv = D.matvec(v)
        return np.concatenate([data.P @ x + data.AT @ Dv, data.A @ x + Dv - v])

    def rmatvec(self, data: ConeData, D: Jacobian, w: FloatArray) -> FloatArray:
        """``B' w`` without assembling ``B``."""
        out = self._compiled_product(data, D, w, True)
        if out is not None:
            return out
        w1, w2 = w[: self.n], w[self.n :]
        return np.concatenate([data.P @ w1 + data.AT @ w2, D.rmatvec(data.A @ w1 + w2) - w2])

    def update(
        self, previous: Factorization, data: ConeData, D: Jacobian, tol: Tolerances
    ) -> Factorization:
        """A factorization for ``B`` at ``D`` when ``previous`` is of a nearby ``B``: reused
        with iterative refinement against the exact ``B`` (for a dense ``B``, assembled
        once and applied by BLAS).  A dense LU costs more than the sweeps it saves from 120
        rows on (measured, forward + VJP: 205-row SOCP 5.57 -> 5.06 ms, 120-row SDP 2.36 ->
        2.20 ms; equal on the 19-row geometric program)."""
        if self.dense:
            B = self.dense_matrix(data, D)
            return Refined(
                previous,
                lambda z: B @ z,
                lambda w: w @ B,
                lambda: factorize(B, tol),
                tol.refinement_steps,
            )
        return Refined(
            previous,
            lambda z: self.matvec(data, D, z),
            lambda w: self.rmatvec(data, D, w),
            lambda: self.factorize(data, D, tol),
            tol.refinement_steps,
        )


def snap_to_faces(
    structure: NewtonStructure,
    X: FloatArray,
    V: FloatArray,
    A_values: FloatArray,
    b: FloatArray,
    kink: KinkPolicy,
    kink_tol: FloatArray | float,
) -> FloatArray:
    """Put variables that sit on a bound exactly on it.

    A bound row ``a x_j + s = b`` (a nonnegative-cone row of ``A`` with one entry) whose
    constraint the chosen Jacobian element treats as binding (``v >= 0`` beyond the kink
    tolerance, or within it under ``kink="active"``) has ``s = 0`` at the solution, so
    ``x_j = b / a`` exactly; polishing leaves it within rounding (``-1.7e-15`` where ``0`` is
    meant).  Setting it exactly moves ``x`` by that rounding, keeps the residual at its
    floor and agrees with the derivative, which holds the bound fixed.  ``X``, ``V``,
    ``A_values`` (in the pattern's order), ``b`` and ``kink_tol`` may have a leading batch
    axis.  Returns a new array.
    """
    rows, cols, positions = structure._bounds
    if not rows.size:
        return X
    if X.ndim == 1:  # one element: only the binding rows are touched
        v = V[rows]
        coef = A_values[positions]
        tol1 = float(kink_tol)
        binding = (v >= -tol1 if kink is KinkPolicy.ACTIVE else v > tol1) & (coef != 0)
        k = np.flatnonzero(binding)
        out = X.copy()
        out[cols[k]] = b[rows[k]] / coef[k] + 0.0  # + 0.0: no -0.0
        return out
    tol = np.asarray(kink_tol)[..., None] if np.ndim(kink_tol) else kink_tol
    v = V[..., rows]
    binding = v >= -tol if kink is KinkPolicy.ACTIVE else v > tol
    coef = A_values[..., positions]
    binding &= coef != 0
    value = b[..., rows] / np.where(coef != 0, coef, 1.0) + 0.0  # + 0.0: no -0.0
    out = np.array(X, copy=True)
    element, k = np.nonzero(binding)
    out[element, cols[k]] = value[element, k]
    return out


def newton_matrix(data: ConeData, D: Sparse) -> Sparse:
    """``B = [[P, A'D], [A, D - I]]`` from a sparse ``D`` (reference assembly for tests)."""
    eye = sp.eye_array(data.m)
    return sp.block_array([[data.P, data.A.T @ D], [data.A, D - eye]], format="csc")


@dataclasses.dataclass
class Residual:
    """``F(x, v)`` with ``y = Pi_{K*}(v)``, and its size relative to the terms that make it."""

    F: FloatArray
    y: FloatArray
    #: ``max_i |F_i| / (1 + |terms_i|)``: see `Tolerances`.
    relative: float
    norm: float


def residual(data: ConeData, cones: ConeSet, x: FloatArray, v: FloatArray) -> Residual:
    """The normal-map residual ``F(x, v)`` (see the module docstring)."""
    y = cones.project_dual(v)
    kernel = compiled("_numba_newton")
    if kernel is not None:
        P, A = data.P, data.A
        F, relative, norm = kernel.residual_values(
            P.indptr, P.indices, P.data, A.indptr, A.indices, A.data, data.b, data.c, x, y, v
        )
        return Residual(F, y, relative, norm)
    Px, Aty, Ax = data.P @ x, data.AT @ y, data.A @ x
    s = y - v
    F = np.concatenate([Px + Aty + data.c, Ax + s - data.b])
    scale = np.concatenate(
        [np.abs(Px) + np.abs(Aty) + np.abs(data.c), np.abs(Ax) + np.abs(s) + np.abs(data.b)]
    )
    scale += 1.0
    relative = float(np.max(np.abs(F) / scale, initial=0.0))
    # ||F|| scaled by its largest entry: a diverged solver's point (entries near 1e160)
    # must not overflow to inf here
    big = float(np.max(np.abs(F), initial=0.0))
    norm = big * float(np.linalg.norm(F / big)) if 0.0 < big < np.inf else big
    return Residual(F, y, relative, norm)


def _status_error(
    raw: RawSolution, cls: type[SolverFailedError | InfeasibleError | UnboundedError], what: str
):
    return cls(
        f"the {raw.solver} solve {what} (solver status '{raw.raw_status}')",
        status=raw.status,
        solver=raw.solver,
    )


class ConicSolution:
    """A solution ``(x, y, s)`` of a canonical cone program with its derivative.

    Produced by `solve_conic()`.  ``vjp`` and ``jvp`` differentiate the solution with
    respect to the data ``(P, A, b, c)`` through the implicit function theorem applied to the
    residual ``F``.  The factorization of ``B`` is the last polishing step's when it is ``B``
    at the returned point, else computed by `factorization()` on first use; either way
    it is shared by every later call.
    """

    def __init__(
        self,
        data: ConeData | Callable[[], ConeData],
        cones: ConeSet,
        x: FloatArray,
        v: FloatArray,
        diagnostics: Diagnostics,
        *,
        kink: KinkPolicy,
        kink_tol: float,
        strict: bool,
        structure: NewtonStructure,
        tolerances: Tolerances,
        factorization: Factorization | None = None,
        jacobian: Jacobian | None = None,
        y: FloatArray | None = None,
    ) -> None:
        self._data = data
        self.cones = cones
        self.x = x
        self.v = v
        self.y = cones.project_dual(v) if y is None else y
        self.s = self.y - v
        self.diagnostics = diagnostics
        self.kink = kink
        self.kink_tol = kink_tol
        self.strict = strict
        self.structure = structure
        self.tolerances = tolerances
        self._factorization = factorization
        self._jacobian = jacobian

    @property
    def data(self) -> ConeData:
        """The program data ``(P, A, b, c)`` (built on first use for batch elements)."""
        if not isinstance(self._data, ConeData):
            self._data = self._data()
        return self._data

    # Factorizations cannot be pickled; a solution sent across processes refactorizes.
    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_factorization"] = None
        state["_data"] = self.data
        return state

    @property
    def jacobian(self) -> Jacobian:
        """The chosen element of the conservative Jacobian of ``Pi_{K*}`` at ``v``."""
        if self._jacobian is None:
            self._jacobian = self.cones.jacobian(self.v, self.kink, self.kink_tol)
        return self._jacobian

    @property
    def D(self) -> Sparse:
        """`jacobian` as a sparse matrix."""
        return self.jacobian.sparse()

    def factorization(self) -> Factorization:
        """The factorized ``B`` (computed on first use; warns or raises if singular)."""
        if self._factorization is None:
            start = time.perf_counter()
            with single_thread_blas:
                fact = self.structure.factorize(self.data, self.jacobian, self.tolerances)
            self.diagnostics.timings.factorization += time.perf_counter() - start
            self._factorization = fact
        fact = self._factorization
        if self.diagnostics.linear_solve is None:
            self.diagnostics.linear_solve = fact.method
            self.diagnostics.degenerate = fact.degenerate
            if fact.degenerate:
                self._degenerate(fact)
        return fact

    def _degenerate(self, fact: Factorization) -> None:
        message = (
            f"the derivative system B is singular at this solution ({fact.reason}): the implicit "
            "function theorem's hypothesis fails here (non-unique solution, linearly dependent "
            "active constraints, or a kink where the chosen Jacobian element is singular). "
        )
        if self.strict:
            raise DegenerateDerivativeError(message + "strict=True was requested.")
        warnings.warn(
            message + "Least-squares derivatives are returned; they need not be elements "
            "of a conservative Jacobian. Try kink='inactive' or kink='active', perturb the "
            "problem, or pass strict=True to raise instead.",
            DegenerateDerivativeWarning,
            stacklevel=5,
        )

    def _solve(self, rhs: FloatArray, transpose: bool = False) -> FloatArray:
        """``B^{-1} rhs`` (``B^{-T} rhs``).  A reused factorization (`Refined`) finds a
        singular ``B`` only when refinement fails and ``B`` itself is factorized: the
        warning (or error, with ``strict``) then comes with this solve's result."""
        fact = self.factorization()
        with single_thread_blas:
            z = fact.solve(rhs, transpose=transpose)
        if fact.degenerate and not self.diagnostics.degenerate:
            self.diagnostics.degenerate = True
            self._degenerate(fact)
        return z

    def condition(self) -> float:
        """Estimate of the 1-norm condition number of ``B`` (``inf`` when singular)."""
        cond = self.factorization().condition()
        self.diagnostics.condition = cond
        return cond

    def vjp(
        self,
        gx: FloatArray | None = None,
        gy: FloatArray | None = None,
        gs: FloatArray | None = None,
    ) -> DataTangent:
        """Pull back cotangents on ``(x, y, s)`` to cotangents on the data ``(P, A, b, c)``.

        Solves ``B' [lx; lv] = [gx; D'(gy + gs) - gs]`` and returns ``dc = -lx``,
        ``db = lv``, ``dA = -(y lx' + lv x')`` and ``dP = -sym(lx x')``, restricted to the
        sparsity patterns of ``A`` and ``P``.
        """
        lx, lv = self._adjoint(gx, gy, gs)
        (pr, pc), (ar, ac) = self.structure.patterns
        x, y = self.x, self.y
        kernel = compiled("_numba_tangent")
        if kernel is not None:
            dP, dA = kernel.data_cotangent_values(lx, lv, x, y, pr, pc, ar, ac)
        else:
            dP = -0.5 * (lx[pr] * x[pc] + lx[pc] * x[pr])
            dA = -(y[ar] * lx[ac] + lv[ar] * x[ac])
        return DataTangent(P=dP, A=dA, b=lv, c=-lx)

    def vjp_mapped(
        self, GT: sp.csr_array, gx: FloatArray | None = None, gy: FloatArray | None = None
    ) -> FloatArray:
        """``GT @ [dP; dA; db; dc]`` for the data cotangent of `vjp` (``GT`` maps data
        cotangents to whatever the data depends on, such as a program's parameters).

        The compiled kernel computes each data entry where ``GT`` reads it, in one pass,
        without forming the data cotangent (measured on the NNLS benchmark, 15,000 entries
        of ``A``: 0.18 -> 0.06 ms after a solve, whose run leaves the caches cold)."""
        kernel = compiled("_numba_tangent")
        if kernel is None:
            t = self.vjp(gx, gy)
            return GT @ np.concatenate([t.P, t.A, t.b, t.c])
        lx, lv = self._adjoint(gx, gy, None)
        (pr, pc), (ar, ac) = self.structure.patterns
        return kernel.mapped_cotangent(
            lx, lv, self.x, self.y, pr, pc, ar, ac, GT.indptr, GT.indices, GT.data
        )

    def _adjoint(
        self, gx: FloatArray | None, gy: FloatArray | None, gs: FloatArray | None
    ) -> tuple[FloatArray, FloatArray]:
        """``(lx, lv)`` solving ``B' [lx; lv] = [gx; D'(gy + gs) - gs]``."""
        n, m = self.data.n, self.data.m
        gx = np.zeros(n) if gx is None else np.asarray(gx, dtype=np.float64)
        gy = np.zeros(m) if gy is None else np.asarray(gy, dtype=np.float64)
        if gs is None:
            gv = self.jacobian.rmatvec(gy)
        else:
            gs = np.asarray(gs, dtype=np.float64)
            gv = self.jacobian.rmatvec(gy + gs) - gs
        lam = self._solve(np.concatenate([gx, gv]), transpose=True)
        return lam[:n], lam[n:]

    def jvp(self, tangent: DataTangent) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Push a data tangent forward to tangents ``(dx, dy, ds)`` of the solution.

        Solves ``B [dx; dv] = -[dP x + dA' y + dc; dA x - db]``, then ``dy = D dv`` and
        ``ds = dy - dv``.
        """
        n = self.data.n
        P, A = self.data.P, self.data.A
        dP = sp.csc_array((tangent.P, P.indices, P.indptr), shape=P.shape)
        dA = sp.csc_array((tangent.A, A.indices, A.indptr), shape=A.shape)
        rhs = -np.concatenate([dP @ self.x + dA.T @ self.y + tangent.c, dA @ self.x - tangent.b])
        dz = self._solve(rhs)
        dx, dv = dz[:n], dz[n:]
        dy = self.jacobian.matvec(dv)
        return dx, dy, dy - dv


@dataclasses.dataclass
class _Polished:
    x: FloatArray
    v: FloatArray
    res: Residual
    steps: int
    outcome: PolishOutcome
    D: Jacobian | None
    factorization: Factorization | None
    #: Seconds spent factorizing (part of the polishing time).
    factor_time: float = 0.0

    def solution(
        self,
        data: ConeData,
        cones: ConeSet,
        diagnostics: Diagnostics,
        *,
        kink: KinkPolicy,
        kink_tol: float,
        strict: bool,
        structure: NewtonStructure,
        tol: Tolerances,
    ) -> ConicSolution:
        """The polished point as a solution that reuses this polishing's ``D``, projection
        and factorization for its derivatives (variables on a bound set exactly on it)."""
        A_values = np.asarray(data.A.data, dtype=np.float64)
        x = snap_to_faces(structure, self.x, self.v, A_values, data.b, kink, kink_tol)
        return ConicSolution(
            data,
            cones,
            x,
            self.v,
            diagnostics,
            kink=kink,
            kink_tol=kink_tol,
            strict=strict,
            structure=structure,
            tolerances=tol,
            factorization=self.factorization,
            jacobian=self.D,
            y=self.res.y,
        )


def _kink_tol(kink_tol: float, res: float, v: FloatArray) -> float:
    """Distance to a kink below which the kink policy decides (relative, plus the residual)."""
    return kink_tol * max(1.0, float(np.abs(v).max(initial=0.0))) + res


def _polish(
    data: ConeData,
    cones: ConeSet,
    structure: NewtonStructure,
    x: FloatArray,
    v: FloatArray,
    res: Residual,
    *,
    kink: KinkPolicy,
    tol: Tolerances,
    fail_fast: bool = False,
    initial: tuple[Factorization, Jacobian] | None = None,
) -> _Polished:
    """Semismooth Newton on ``F`` from the solver's point, accepting only decreasing steps.

    ``fail_fast`` (warm starts): stop as soon as a step does not contract the relative
    residual tenfold, since a warm start is only worth it when it converges fast.
    ``initial``: a factorization of ``B`` for the same ``P`` and ``A`` with its ``D``; used
    when ``D`` at the starting point is the same (a warm start in which only ``b``, ``c``
    moved and the active set held: then no factorization at all).

    The Newton matrix is ``B`` itself.  While the active set stays put, a step reuses the
    last factorization (a chord step: from a solver's point the change of ``B`` is of the
    order of the residual, so convergence stays fast); a step that fails with a stale
    factorization is retried with a fresh one.  The factorization returned is of ``B`` at the
    returned point (refactorized or refined if needed), so derivatives need no further work.
    Where ``B`` is singular the minimum-norm (least-squares) step is tried.
    """

    def jacobian(v: FloatArray) -> Jacobian:
        return cones.jacobian(v, kink, _kink_tol(tol.kink, 0.0, v))

    D = jacobian(v)
    fact: Factorization | None = None  # of B at ``D_fact``
    D_fact = D
    if initial is not None and initial[1].distance(D) == 0.0:
        fact = initial[0]  # B has not changed: the previous factorization is exact
    steps = 0
    factor_time = 0.0
    halvings = 0.5 ** np.arange(tol.backtracking_steps)

    def line_search(
        f: Factorization, full_only: bool
    ) -> tuple[FloatArray, FloatArray, Residual] | None:
        dz = f.solve(-res.F)
        for alpha in halvings[:1] if full_only else halvings:
            x_new, v_new = x + alpha * dz[: data.n], v + alpha * dz[data.n :]
            res_new = residual(data, cones, x_new, v_new)
            if res_new.norm < (1.0 - 1e-4 * alpha) * res.norm:
                return x_new, v_new, res_new
        return None

    outcome = PolishOutcome.MAX_ITER
    for _ in range(tol.polish_max_iter):
        if res.relative <= tol.target:
            outcome = PolishOutcome.CONVERGED
            break
        # A chord step with the last factorization, taken only if the full step decreases
        # ||F|| (then B barely moved); otherwise B at the current point, with backtracking.
        step = None if fact is None else line_search(fact, full_only=True)
        if step is None:
            if fact is not None:
                D = jacobian(v)
            if fact is None or D is not D_fact:
                start = time.perf_counter()
                fact, D_fact = structure.factorize(data, D, tol), D
                factor_time += time.perf_counter() - start
            step = line_search(fact, full_only=False)
        assert fact is not None
        if step is None:  # keep the current point
            outcome = PolishOutcome.SINGULAR if fact.degenerate else PolishOutcome.STALLED
            break
        steps += 1
        before = res.relative
        x, v, res = step
        if fact.degenerate:  # least-squares steps: always from B at the current point
            fact = None
        if fail_fast and res.relative > tol.target and res.relative > 0.1 * before:
            outcome = PolishOutcome.STALLED
            break
    else:
        if res.relative <= tol.target:
            outcome = PolishOutcome.CONVERGED
    if steps:
        D = jacobian(v)
    if fact is not None and D is not D_fact:
        change = D.distance(D_fact)
        if change == 0.0:
            D = D_fact
        else:
            start = time.perf_counter()
            fact = (
                structure.update(fact, data, D, tol)
                if change <= tol.active_set_change
                else structure.factorize(data, D, tol)
            )
            factor_time += time.perf_counter() - start
    return _Polished(x, v, res, steps, outcome, D, fact, factor_time)


class _Attempt:
    """One solver call and its polishing."""

    def __init__(
        self,
        data: ConeData,
        cones: ConeSet,
        structure: NewtonStructure,
        solver: Solver,
        *,
        kink: KinkPolicy,
        polish: bool,
        tol: Tolerances,
        raw: RawSolution | None = None,
    ) -> None:
        raw = solver.solve(data, cones.cones) if raw is None else raw
        self.raw = raw
        if raw.status is SolverStatus.INFEASIBLE:
            raise _status_error(raw, InfeasibleError, "found the problem infeasible")
        if raw.status is SolverStatus.UNBOUNDED:
            raise _status_error(raw, UnboundedError, "found the problem unbounded")
        if raw.status is SolverStatus.FAILED or not raw.has_point:
            raise _status_error(raw, SolverFailedError, "failed")
        assert raw.x is not None and raw.y is not None and raw.s is not None
        start = time.perf_counter()
        x, v = raw.x.copy(), raw.y - raw.s
        self.res0 = residual(data, cones, x, v)
        # A solver that stopped far from a solution: Newton from there costs many
        # factorizations for nothing; the caller retries with another solve instead.
        hopeless = raw.status is SolverStatus.INCOMPLETE and self.res0.relative > tol.reject
        if polish and not hopeless:
            self.p = _polish(data, cones, structure, x, v, self.res0, kink=kink, tol=tol)
        else:
            self.p = _Polished(x, v, self.res0, 0, PolishOutcome.OFF, None, None)
        self.polish_time = time.perf_counter() - start


def _fallbacks(solver: Solver, cones: ConeSet, status: SolverStatus) -> list[Solver]:
    """Solvers to retry with when a point cannot be certified: the same backend with its
    tighter settings (unless it already stopped at an iteration or time limit), then, for
    other backends, Clarabel with its tighter settings."""
    out = []
    tighter = solver.tightened()
    if tighter is not None and (
        status is not SolverStatus.INCOMPLETE or isinstance(solver, Clarabel)
    ):
        out.append(tighter)
    if not isinstance(solver, Clarabel):
        clarabel = Clarabel(**Clarabel.tight)
        if all(isinstance(c, clarabel.supported_cones) for c in cones.cones):
            out.append(clarabel)
    return out


def _settings_hint(solver: Solver) -> str:
    """Names the backend's own tolerance and iteration settings, with their current values."""
    if not solver.tight:
        return "tighten the solver settings"
    names = ", ".join(f"{k}={v!r}" for k, v in solver.tight.items())
    now = ", ".join(f"{k}={solver.settings.get(k, 'its default')!r}" for k in solver.tight)
    return (
        f"tighten the solver settings, for example solver=cvximplicit."
        f"{type(solver).__name__}({names}) (now {now})"
    ).replace("'its default'", "its default")


@single_thread_blas
def warm_start_conic(
    data: ConeData,
    cones: ConeSet,
    x0: FloatArray,
    v0: FloatArray,
    *,
    previous: ConicSolution | None = None,
    kink: KinkPolicy,
    tolerances: Tolerances,
    strict: bool,
    structure: NewtonStructure,
) -> ConicSolution | str:
    """Semismooth Newton on ``F`` for new data, from a previous solution ``(x0, v0)``.

    Any zero of ``F`` is a primal-dual solution, so a point that reaches the polishing target
    is exact and certified without a solver call.  For LPs and QPs whose active set does not
    change, ``F`` is affine on that piece and one step lands on the solution.  Returns the
    solution, or (a string) why the warm start is not accepted: not at the target within
    ``tolerances.warm_max_iter`` steps, or ``B`` singular.
    """
    tol = tolerances
    start = time.perf_counter()
    if not (np.all(np.isfinite(x0)) and np.all(np.isfinite(v0))):
        return "the previous solution is not finite"
    res0 = residual(data, cones, x0, v0)
    initial = None
    if (
        previous is not None
        and previous._factorization is not None
        and np.array_equal(previous.data.P.data, data.P.data)
        and np.array_equal(previous.data.A.data, data.A.data)
    ):
        initial = (previous._factorization, previous.jacobian)
    p = _polish(
        data,
        cones,
        structure,
        x0.copy(),
        v0.copy(),
        res0,
        kink=kink,
        tol=dataclasses.replace(tol, polish_max_iter=tol.warm_max_iter),
        fail_fast=True,
        initial=initial,
    )
    if p.outcome is not PolishOutcome.CONVERGED:
        return (
            f"Newton from the previous solution reached a relative residual of "
            f"{p.res.relative:.1e} in {p.steps} steps ({p.outcome.value})"
        )
    total = time.perf_counter() - start
    diagnostics = Diagnostics(
        status=SolverStatus.SOLVED,
        solver="warm start",
        raw_status="",
        iterations=0,
        solve_time=0.0,
        residual_before_polish=res0.norm,
        residual=p.res.norm,
        relative_residual=p.res.relative,
        certified=True,
        polish_steps=p.steps,
        polish=p.outcome,
        kink_policy=kink.value,
        kinks_counter=lambda: cones.kinks(p.v, _kink_tol(tol.kink, 0.0, p.v)),
        timings=Timings(polish=total - p.factor_time, factorization=p.factor_time, total=total),
        start="warm",
    )
    return p.solution(
        data,
        cones,
        diagnostics,
        kink=kink,
        kink_tol=_kink_tol(tol.kink, 0.0, p.v),
        strict=strict,
        structure=structure,
        tol=tol,
    )


@single_thread_blas
def solve_conic(
    data: ConeData,
    cones: ConeSet,
    solver: Solver,
    *,
    kink: KinkPolicy = KinkPolicy.ACTIVE,
    polish: bool = True,
    tolerances: Tolerances | None = None,
    strict: bool = False,
    structure: NewtonStructure | None = None,
    raw: RawSolution | None = None,
) -> ConicSolution:
    """Solve, polish, certify and prepare to differentiate one canonical cone program.

    A point is returned only when its relative residual is at most ``tolerances.certify``;
    otherwise the solve is retried with the solver's tighter settings, then (other
    backends) with Clarabel's.  If the point still cannot be certified, an
    `InaccurateSolutionWarning` names the residual (or, above ``tolerances.reject``,
    a `SolverFailedError` is raised).

    Raises `InfeasibleError`, `UnboundedError` or `SolverFailedError`
    when the solver returns no usable point.  Before a `SolverFailedError`, a
    certificate of infeasibility or unboundedness is sought (`._certificates`); a
    checked one turns the failure into the typed error it proves.  ``raw``: the solver's
    answer when it was already called (a batch's solver stage); then only a retry calls it
    again.
    """
    try:
        return _solve_conic(
            data,
            cones,
            solver,
            kink=kink,
            polish=polish,
            tolerances=tolerances,
            strict=strict,
            structure=structure,
            raw=raw,
        )
    except SolverFailedError as failure:
        certificate = find_certificate(data, list(cones.cones))
        if certificate is None:
            raise
        unbounded = certificate.kind == "unbounded"
        raise (UnboundedError if unbounded else InfeasibleError)(
            f"the problem is {certificate.kind}: cvximplicit found a certificate, "
            f"{certificate.describe()}, after {str(failure).split(':')[0]}",
            status=SolverStatus.UNBOUNDED if unbounded else SolverStatus.INFEASIBLE,
            solver=failure.solver,
        ) from failure


def _solve_conic(
    data: ConeData,
    cones: ConeSet,
    solver: Solver,
    *,
    kink: KinkPolicy,
    polish: bool,
    tolerances: Tolerances | None,
    strict: bool,
    structure: NewtonStructure | None,
    raw: RawSolution | None,
) -> ConicSolution:
    tol = Tolerances() if tolerances is None else tolerances
    if structure is None:
        structure = NewtonStructure(data.n, data.m, *data.patterns, cones, tol)
    total_start = time.perf_counter()
    retried = False
    attempt: _Attempt | None = None
    claim: SolverError | None = None
    try:
        attempt = _Attempt(
            data, cones, structure, solver, kink=kink, polish=polish, tol=tol, raw=raw
        )
    except (SolverFailedError, InfeasibleError, UnboundedError) as error:
        if not polish:
            raise
        # A claim without a point is checked by the fallbacks: badly scaled data can make
        # a backend at its default tolerances call a feasible problem infeasible.
        claim = error
    setup = solve = polish_time = factor_time = 0.0
    if attempt is not None:
        setup, solve = attempt.raw.setup_time, attempt.raw.solve_time
        polish_time, factor_time = attempt.polish_time, attempt.p.factor_time
    status = SolverStatus.FAILED if attempt is None else attempt.raw.status
    uncertified = attempt is None or attempt.p.res.relative > tol.certify
    for fallback in _fallbacks(solver, cones, status) if polish and uncertified else ():
        if attempt is not None and attempt.p.res.relative <= tol.certify:
            break
        retried = True
        try:
            second = _Attempt(data, cones, structure, fallback, kink=kink, polish=True, tol=tol)
        except (SolverFailedError, InfeasibleError, UnboundedError):
            if attempt is not None and attempt.p.res.relative > tol.reject:
                raise
            continue
        setup += second.raw.setup_time
        solve += second.raw.solve_time
        polish_time += second.polish_time
        factor_time += second.p.factor_time
        if attempt is None or second.p.res.relative <= attempt.p.res.relative:
            attempt = second
    if claim is not None:
        # the claim stands unless a fallback certified a point (for a failure: one not
        # rejected outright, which the checks below then judge)
        limit = tol.reject if isinstance(claim, SolverFailedError) else tol.certify
        if attempt is None or attempt.p.res.relative > limit:
            raise claim
    assert attempt is not None
    raw, p = attempt.raw, attempt.p
    status = raw.status
    rel = p.res.relative
    if status is SolverStatus.INCOMPLETE:
        if rel > tol.certify:
            error = _status_error(raw, SolverFailedError, "stopped without converging")
            raise SolverFailedError(
                f"{error}: it reached an iteration or time limit with relative KKT residual "
                f"{rel:.1e}"
                + (" (also after a retry with tighter settings)" if retried else "")
                + "; "
                + _settings_hint(solver),
                status=error.status,
                solver=error.solver,
            )
        status = SolverStatus.INACCURATE
    if rel > tol.reject:
        raise SolverFailedError(
            f"the {raw.solver} solve returned a point (status '{raw.raw_status}') that is not "
            f"a solution: its relative KKT residual is {rel:.2e} after polishing"
            + (" and a retry with tighter settings" if retried else "")
            + ". The problem may be unbounded, infeasible or badly scaled: check it with "
            "CVXPY, rescale the data, or " + _settings_hint(solver) + ".",
            status=SolverStatus.FAILED,
            solver=raw.solver,
        )
    certified = rel <= tol.certify
    if (polish and not certified) or (not polish and status is SolverStatus.INACCURATE):
        warnings.warn(
            f"{raw.solver} returned a solution (status '{raw.raw_status}') whose relative KKT "
            f"residual is {rel:.2e} after polishing ({p.outcome.value}, {p.steps} steps"
            + (", retried with tighter settings" if retried else "")
            + f"), above the certified level {tol.certify:.0e}. Values and derivatives at this "
            "point are approximate: " + _settings_hint(solver) + " or check the problem's "
            "scaling.",
            InaccurateSolutionWarning,
            stacklevel=3,
        )
        status = SolverStatus.INACCURATE
    # The same tolerance as the Jacobian element polishing used (the residual is then at the
    # floating-point floor); without polishing the point is inexact and the residual counts.
    ktol = _kink_tol(tol.kink, 0.0 if polish else p.res.norm, p.v)
    total = time.perf_counter() - total_start
    diagnostics = Diagnostics(
        status=status,
        solver=raw.solver,
        raw_status=raw.raw_status,
        iterations=raw.iterations,
        solve_time=raw.solve_time,
        residual_before_polish=attempt.res0.norm,
        residual=p.res.norm,
        relative_residual=p.res.relative,
        certified=certified,
        retried=retried,
        polish_steps=p.steps,
        polish=p.outcome,
        kink_policy=kink.value,
        kinks_counter=lambda: cones.kinks(p.v, ktol),
        timings=Timings(
            setup=setup,
            solve=solve,
            polish=polish_time - factor_time,
            factorization=factor_time,
            total=total,
        ),
    )
    return p.solution(
        data,
        cones,
        diagnostics,
        kink=kink,
        kink_tol=ktol,
        strict=strict,
        structure=structure,
        tol=tol,
    )
