"""Batches of one program: solver calls per element (or one batched backend call), then
polishing, certification and derivatives vectorised across the batch.

All elements of a batch share the sparsity of ``P`` and ``A`` and the cones, so the
Python-level work of polishing (residuals, cone projections, Jacobians, assembling ``B``)
is done once on stacked arrays instead of once per element:

* ``P``, ``A`` and ``A'`` of the whole batch are block-diagonal sparse matrices built from the
  stacked values on index arrays worked out once per batch size;
* the cones act on the slices of all elements laid end to end (``Cone.replicate``);
* ``B`` is factorized per element with LAPACK (small, dense ``B``) or, block-diagonal, in one
  sparse LU; a VJP or JVP of the whole batch is one batched solve.

An element that the vectorised path cannot certify (or whose solver call reported anything
but success, or whose ``B`` is singular) is handed to the single-problem path
(`solve_conic()`), which retries, warns or raises for it alone.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import itertools
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeAlias, cast

import numpy as np
import scipy.linalg.lapack as lapack
import scipy.sparse as sp

from ._blas import single_thread_blas
from ._cones import Cone, KinkPolicy
from ._conic import (
    ConeSet,
    ConicSolution,
    Jacobian,
    NewtonStructure,
    _kink_tol,
    _status_error,
    snap_to_faces,
    solve_conic,
)
from ._diagnostics import Diagnostics, PolishOutcome, Timings
from ._errors import InfeasibleError, SolverError, SolverFailedError, UnboundedError
from ._factor import DenseLU, Factorization, OrderedLU, Refined, refinement_converged
from ._solvers import DataLayout, RawSolution, Solver, SolverStatus, StackedData
from ._tolerances import Tolerances
from ._typing import FloatArray, IntArray, Sparse, parse_option

__all__ = [
    "BatchData",
    "BatchEngine",
    "BatchFactorization",
    "BatchSparseLU",
    "OnFailure",
    "as_on_failure",
    "batch_factorize",
]


class OnFailure(str, enum.Enum):
    """What a batch does with elements whose solve fails (infeasible, unbounded, solver
    failure).

    Examples:
        >>> import cvxpy as cp, numpy as np, cvximplicit as ci
        >>> x, b = cp.Variable(2), cp.Parameter(2)
        >>> prog = ci.compile(cp.Problem(cp.Minimize(cp.sum(x)), [x >= b, x <= 1]), [b], [x])
        >>> batch = prog.solve_batch(np.array([[0.0, 0.0], [2.0, 0.0]]), on_failure="nan")
        >>> batch.ok.tolist(), type(batch.errors[1]).__name__
        ([True, False], 'InfeasibleError')
    """

    #: Raise the first failed element's error (its ``batch_index`` names it).
    RAISE = "raise"
    #: NaN values and zero derivative contributions for failed elements; the batch's
    #: ``ok`` mask and ``errors`` list say which failed and why.
    NAN = "nan"


def as_on_failure(value: OnFailure | str) -> OnFailure:
    """Parse an `OnFailure` given as a member or its string value."""
    return parse_option(OnFailure, value, "on_failure")


#: The stacked data of a batch (see `StackedData`).
BatchData = StackedData


def _block_indices(
    indices: IntArray, indptr: IntArray, inner: int, copies: int
) -> tuple[IntArray, IntArray]:
    """Index arrays of a block-diagonal compressed matrix with ``copies`` equal patterns."""
    indptr = indptr.astype(np.int64)
    nnz = indices.size
    big_indices = (indices[None, :] + inner * np.arange(copies)[:, None]).ravel()
    big_indptr = np.concatenate(
        [(indptr[:-1][None, :] + nnz * np.arange(copies)[:, None]).ravel(), [nnz * copies]]
    )
    return big_indices, big_indptr


@dataclasses.dataclass(frozen=True)
class ProgramSpec:
    """What the batch engine needs of a compiled program (free of CVXPY objects)."""

    n: int
    m: int
    P_indices: IntArray
    P_indptr: IntArray
    A_indices: IntArray
    A_indptr: IntArray
    cones: ConeSet
    newton: NewtonStructure
    layout: DataLayout


class BatchLayout:
    """Index arrays and replicated cones of one program at one batch size; ``layouts`` gives
    the layout of another size (the engine's, which keeps the last few)."""

    def __init__(self, spec: ProgramSpec, size: int, layouts: Callable[[int], BatchLayout]) -> None:
        n, m = spec.n, spec.m
        self.spec = spec
        self._layouts = layouts
        self.n, self.m, self.size = n, m, size
        self.cones = cones = spec.cones
        self.newton = spec.newton
        self._P = _block_indices(spec.P_indices.astype(np.int64), spec.P_indptr, n, size)
        self._A = _block_indices(spec.A_indices.astype(np.int64), spec.A_indptr, m, size)
        self._replicas: list[tuple[Cone, slice, tuple[int, ...]]] = [
            (cone.replicate(size), sl, cone.value_groups())
            for cone, sl in zip(cones.cones, cones.slices)
        ]
        self.nnz_D = int(cones.pattern[0].size)

    def matrices(self, data: BatchData) -> tuple[Sparse, Sparse, Sparse]:
        """Block-diagonal ``P``, ``A`` and ``A'`` of the batch."""
        n, m, k = self.n, self.m, self.size
        P = sp.csc_array((data.P.ravel(), *self._P), shape=(n * k, n * k))
        Avals = data.A.ravel()
        A = sp.csc_array((Avals, *self._A), shape=(m * k, n * k))
        AT = sp.csr_array((Avals, *self._A), shape=(n * k, m * k))
        return P, A, AT

    def project_dual_rows(self, V: FloatArray, rows: IntArray, Y: FloatArray) -> FloatArray:
        """``Y`` with the ``rows`` of ``V`` projected afresh: the line search's trial points
        of a few stragglers cost their own projections, not the batch's (measured: 32 p-norm
        problems with one straggler, 92 whole-batch projections of 0.5 ms each)."""
        if rows.size == self.size:
            return self.project_dual(V)
        out = Y.copy()
        out[rows] = self._layouts(rows.size).project_dual(V[rows])
        return out

    def project_dual(self, V: FloatArray) -> FloatArray:
        Y = np.empty_like(V)
        for replica, sl, _ in self._replicas:
            Y[:, sl] = replica.project_dual(np.ascontiguousarray(V[:, sl]).ravel()).reshape(
                self.size, -1
            )
        return Y

    def jacobian_matrix(self, D: FloatArray) -> Sparse:
        """Block-diagonal sparse ``D`` of the batch from its ``(size, nnz_D)`` values."""
        r, c = self.cones.pattern
        m, k = self.m, self.size
        off = (np.arange(k) * m)[:, None]
        return sp.csr_array(
            (D.ravel(), ((r[None] + off).ravel(), (c[None] + off).ravel())), shape=(k * m, k * m)
        )

    def jacobian_values(self, V: FloatArray, kink: KinkPolicy, tol: float) -> FloatArray:
        """``(size, nnz_D)``: each element's ``D`` values on the program's pattern."""
        parts = []
        for replica, sl, groups in self._replicas:
            vals = replica.jacobian_values(np.ascontiguousarray(V[:, sl]).ravel(), kink, tol)
            start = 0
            for g in groups:
                parts.append(vals[start : start + g * self.size].reshape(self.size, g))
                start += g * self.size
        if not parts:
            return np.zeros((self.size, 0))
        return np.concatenate(parts, axis=1)

    def dense_newton(self, data: BatchData, D: FloatArray) -> FloatArray:
        """``(k, N, N)`` stack of ``B`` for the ``k`` rows of ``data`` (dense mode)."""
        nw = self.newton
        n, m, k = self.n, self.m, data.size
        (pr, pc), (ar, ac), (dr, dc) = nw._P, nw._A, nw._D
        Bm = np.zeros((k, nw.size, nw.size))
        Bm[:, pr, pc] = data.P
        Bm[:, ar + n, ac] = data.A
        Ad = Bm[:, n:, :n]
        if self.cones.diagonal:
            Bm[:, :n, n:] = np.swapaxes(Ad, 1, 2) * D[:, None, :]
            diag = n + np.arange(m)
            Bm[:, diag, diag] = D - 1.0
        else:
            Dd = np.zeros((k, m, m))
            Dd[:, dr, dc] = D
            Bm[:, :n, n:] = np.swapaxes(Ad, 1, 2) @ Dd
            Dd[:, np.arange(m), np.arange(m)] -= 1.0
            Bm[:, n:, n:] = Dd
        return Bm


class BatchFactorization:
    """LAPACK LU factorizations of the (small, dense) ``B`` of every element, solved together.

    ``degenerate[i]`` marks elements whose ``B`` is numerically singular (their rows of a
    solve are zeros; the engine sends those elements to the single-problem path).
    """

    method = "dense LU"

    def __init__(self, layout: BatchLayout, data: BatchData, D: FloatArray, tol: Tolerances):
        self.size = data.size  # (the rows of ``data``: any subset of the layout's batch)
        self.N = layout.newton.size
        if self.N == 0:
            self._dense: list[DenseLU | None] = [None] * self.size
            self.degenerate = np.zeros(self.size, dtype=bool)
            return
        # LAPACK and BLAS release the GIL: chunks of the batch on the CPUs.
        chunks = split_rows(self.size, layout.newton.size)
        parts = run_parallel(lambda rows: self._dense_chunk(layout, data, D, tol, rows), chunks)
        self._dense = [f for part in parts for f in part]
        self.degenerate = np.array([f is None for f in self._dense], dtype=bool)

    @staticmethod
    def _dense_chunk(
        layout: BatchLayout, data: BatchData, D: FloatArray, tol: Tolerances, rows: slice
    ) -> list[DenseLU | None]:
        stack = layout.dense_newton(data.take(rows), D[rows])
        out: list[DenseLU | None] = []
        for B in stack:
            lu, piv, _ = lapack.dgetrf(B)  # pyright: ignore[reportAttributeAccessIssue]
            pivots = np.abs(np.diagonal(lu))
            top = float(pivots.max())
            ratio = float(pivots.min()) / top if top > 0 else 0.0
            healthy = ratio >= tol.singular_pivot_ratio and np.isfinite(ratio)
            out.append(DenseLU(B, (lu, piv)) if healthy else None)
        return out

    def solve(self, R: FloatArray, transpose: bool = False) -> FloatArray:
        """Solve every element's system; ``R`` and the result are ``(size, N)``."""
        out = np.zeros_like(R)
        if self.N == 0:
            return out
        for i, f in enumerate(self._dense):
            if f is not None:
                out[i] = f.solve(R[i], transpose)
        return out

    def element(self, i: int) -> Factorization | None:
        """Element ``i``'s factorization (``None`` when its ``B`` is singular)."""
        return self._dense[i]


@dataclasses.dataclass
class _SparseBlocks:
    """One SuperLU of a block-diagonal ``B``: its blocks are the batch rows ``rows``."""

    rows: IntArray
    lu: OrderedLU
    #: Blocks whose pivots are healthy (the others' rows of a solve are zeros).
    healthy: np.ndarray


class BatchSparseLU:
    """SuperLU factorizations of the block-diagonal ``B`` of a batch (sparse ``B``): one per
    chunk of the batch (a chunk per CPU, in threads, since SuperLU releases the GIL), each
    solved for all of its elements in one call.

    Blocks of a block-diagonal matrix stay independent under SuperLU's pivoting, so an element
    whose ``B`` is singular spoils only its own rows: ``degenerate[i]`` marks elements that
    are structurally singular (left out of the factorization) or whose pivots fall below
    `Tolerances.singular_pivot_ratio`; their rows of a solve are zeros, and the engine sends
    them to the single-problem path.  Per-element factorizations (`element()`) are made by
    each element's solution on first use.
    """

    method = "sparse LU (block-diagonal)"

    def __init__(self, layout: BatchLayout, data: BatchData, D: FloatArray, tol: Tolerances):
        self.size = data.size  # (the rows of ``data``: any subset of the layout's batch)
        self.N = layout.newton.size
        self.degenerate = np.zeros(self.size, dtype=bool)
        self._blocks: list[_SparseBlocks] = []
        self._curved = not layout.newton.diagonal
        self._patterns = layout.newton.patterns_cache
        if self.N == 0:
            return
        chunks = split_rows(self.size, self.N)
        parts = run_parallel(lambda rows: self._factorize(layout, data, D, tol, rows), chunks)
        self._blocks = [b for part in parts for b in part]
        self.degenerate[:] = True
        for b in self._blocks:
            self.degenerate[b.rows[b.healthy]] = False

    def _factorize(
        self, layout: BatchLayout, data: BatchData, D: FloatArray, tol: Tolerances, rows: slice
    ) -> list[_SparseBlocks]:
        B, kept = layout.newton.block_matrix(data.P[rows], data.A[rows], D[rows])
        kept = np.arange(self.size)[rows][kept]
        return self._blocks_of(B, kept, tol)

    def _blocks_of(self, B: Sparse, kept: IntArray, tol: Tolerances) -> list[_SparseBlocks]:
        """SuperLU of the block-diagonal ``B`` whose blocks are the batch rows ``kept``."""
        N = self.N
        if kept.size == 0:
            return []
        try:
            lu = self._patterns(B).lu(B, self._curved)
        except RuntimeError:  # an exact zero pivot: one LU per block tells which
            if kept.size == 1:
                return []
            return [
                b
                for j in range(kept.size)
                for b in self._blocks_of(
                    sp.csc_array(B[N * j : N * (j + 1), N * j : N * (j + 1)]), kept[j : j + 1], tol
                )
            ]
        # Pivot ratios block by block, from the column each pivot eliminates.
        pivots, column = lu.pivots()
        block = column // N
        top, low = np.zeros(kept.size), np.full(kept.size, np.inf)
        np.maximum.at(top, block, pivots)
        np.minimum.at(low, block, pivots)
        healthy = (top > 0) & np.isfinite(top) & (low >= tol.singular_pivot_ratio * top)
        return [_SparseBlocks(kept, lu, healthy)]

    def solve(self, R: FloatArray, transpose: bool = False) -> FloatArray:
        """Solve every element's system; ``R`` and the result are ``(size, N)``."""
        out = np.zeros_like(R)

        def one(blocks: _SparseBlocks) -> None:
            rhs = np.zeros((blocks.rows.size, self.N))
            rhs[blocks.healthy] = R[blocks.rows[blocks.healthy]]
            z = blocks.lu.solve(rhs.ravel(), transpose)
            z = z.reshape(rhs.shape)
            out[blocks.rows[blocks.healthy]] = z[blocks.healthy]

        chunks = [slice(j, j + 1) for j in range(len(self._blocks))]
        if chunks:
            run_parallel(lambda c: [one(b) for b in self._blocks[c]], chunks)
        return out

    def element(self, i: int) -> Factorization | None:
        """``None``: an element's own factorization is made by its solution on first use."""
        del i
        return None


class PatchedLU:
    """Factorizations of a batch's rows made at different polishing steps: each row is
    solved with its latest one (`put`).  Rows whose ``D`` has not moved keep theirs, so a
    step that needs fresh factorizations for a few elements factorizes only those."""

    def __init__(self, size: int, N: int) -> None:
        self.size, self.N = size, N
        self.degenerate = np.zeros(size, dtype=bool)
        self._parts: list[tuple[BatchFactorization | BatchSparseLU, IntArray]] = []
        self._owner = np.full(size, -1)

    @property
    def method(self) -> str:
        return self._parts[0][0].method if self._parts else "none"

    def put(self, fact: BatchFactorization | BatchSparseLU, rows: IntArray) -> None:
        """``fact`` (of the rows ``rows``, in order) now solves those rows."""
        self._parts.append((fact, rows))
        self._owner[rows] = len(self._parts) - 1
        self.degenerate[rows] = fact.degenerate
        live = np.unique(self._owner[self._owner >= 0])  # parts owning no row are dropped
        if live.size < len(self._parts):
            renumber = np.full(len(self._parts), -1)
            renumber[live] = np.arange(live.size)
            self._parts = [self._parts[i] for i in live]
            self._owner = np.where(self._owner >= 0, renumber[self._owner], -1)

    def solve(self, R: FloatArray, transpose: bool = False) -> FloatArray:
        # the parts in the order they were put: a row's latest factorization solves it last
        return Embedded(list(self._parts), self.size).solve(R, transpose)

    def element(self, i: int) -> Factorization | None:
        fact, rows = self._parts[self._owner[i]]
        return fact.element(int(np.flatnonzero(rows == i)[0]))


#: Factorizations of every element's ``B`` of a batch, solved together.
BatchLU: TypeAlias = "BatchFactorization | BatchSparseLU | PatchedLU"


def batch_factorize(
    layout: BatchLayout, data: BatchData, D: FloatArray, tol: Tolerances
) -> BatchFactorization | BatchSparseLU:
    """The factorizations of every element's ``B``: dense LAPACK LUs for small (dense) ``B``,
    else block-diagonal sparse LUs."""
    if layout.newton.dense:
        return BatchFactorization(layout, data, D, tol)
    return BatchSparseLU(layout, data, D, tol)


class BatchRefined:
    """`BatchFactorization` of nearby matrices, refined against every element's exact ``B``
    (the batch counterpart of `Refined`).

    After a polishing step on curved cones ``D`` moves by the order of the residual, so the
    factorization of the step's ``B`` solves the final ``B`` to about that accuracy and one
    or two refinement sweeps (products with the block-diagonal ``B``: sparse, vectorised)
    make the solves exact.  A second LU per element costs more (measured at 64 SDPs of 120
    rows: 84 us per LU against a few us per sweep and element).  Rows whose refinement does
    not reach rounding level get their own factorization (made once, on first need).
    """

    def __init__(
        self,
        base: BatchLU,
        layout: BatchLayout,
        data: BatchData,
        D: FloatArray,
        tol: Tolerances,
        mats: tuple[Sparse, Sparse, Sparse] | None = None,
    ) -> None:
        """``mats``: the batch's block-diagonal ``P, A, A'`` when the caller has them."""
        self.base, self.size, self.N = base, base.size, base.N
        self.degenerate = base.degenerate
        self._layout, self._data, self._D, self._tol = layout, data, D, tol
        P, A, AT = layout.matrices(data) if mats is None else mats
        Dm = layout.jacobian_matrix(D)
        self._ops = (P, A, AT, Dm, sp.csr_array(Dm.T))
        self._exact: BatchLU | None = None
        # A probe: where refinement does not converge (a final B that is singular although
        # the step's was not), the exact factorizations are made now, so that `degenerate`
        # is right before any derivative (such rows then take the single path).
        self.solve(np.random.default_rng(0).standard_normal((self.size, self.N)))
        if self._exact is not None:
            self.degenerate = self._exact.degenerate

    def _apply(self, Z: FloatArray, transpose: bool) -> FloatArray:
        """``B_i z_i`` (``B_i' z_i``) for every row."""
        P, A, AT, Dm, DmT = self._ops
        k, n = self.size, self._layout.n
        x, v = Z[:, :n].ravel(), Z[:, n:].ravel()
        if transpose:
            top = P @ x + AT @ v
            bottom = DmT @ (A @ x + v) - v
        else:
            Dv = Dm @ v
            top = P @ x + AT @ Dv
            bottom = A @ x + Dv - v
        return np.concatenate([top.reshape(k, -1), bottom.reshape(k, -1)], axis=1)

    def exact(self) -> BatchLU:
        """Every element's own factorization (made on first use)."""
        if self._exact is None:
            self._exact = batch_factorize(self._layout, self._data, self._D, self._tol)
        return self._exact

    def solve(self, R: FloatArray, transpose: bool = False) -> FloatArray:
        if self._exact is not None:
            return self._exact.solve(R, transpose)
        Z = self.base.solve(R, transpose)
        previous = np.linalg.norm(Z, axis=1)
        done = self.degenerate.copy()
        for _ in range(self._tol.refinement_steps):
            dZ = self.base.solve(R - self._apply(Z, transpose), transpose)
            dZ[done] = 0.0
            Z += dZ
            step = np.linalg.norm(dZ, axis=1)
            size = np.maximum(np.linalg.norm(Z, axis=1), 1e-300)
            done |= refinement_converged(step, size, previous)
            if done.all():
                return Z
            previous = step
        return self.exact().solve(R, transpose)

    def element(self, i: int) -> Factorization | None:
        """Element ``i``'s factorization, refined against its own ``B``."""
        base = self.base.element(i)
        if base is None:
            return None
        newton, m = self._layout.newton, self._layout.m
        cones = self._layout.cones
        jac = Jacobian(*cones.pattern, self._D[i], m, cones.diagonal)
        element = functools.cache(lambda: self._data.element(i))
        return Refined(
            base,
            lambda z: newton.matvec(element(), jac, z),
            lambda w: newton.rmatvec(element(), jac, w),
            lambda: newton.factorize(element(), jac, self._tol),
            self._tol.refinement_steps,
        )


_POOL: list[ThreadPoolExecutor] = []


def split_rows(size: int, order: int) -> list[slice]:
    """Slices of a batch for the CPUs (one chunk when the work is too small to share)."""
    workers = min(os.cpu_count() or 1, size)
    if workers <= 1 or size * order**3 < 2e7:
        return [slice(0, size)]
    bounds = np.linspace(0, size, workers + 1).astype(int)
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]


def run_parallel(fn: Callable[[slice], list], chunks: list[slice]) -> list[list]:
    if len(chunks) == 1:
        return [fn(chunks[0])]
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="cvximplicit"))
    return list(_POOL[0].map(fn, chunks))


@dataclasses.dataclass
class _Residual:
    F: FloatArray
    Y: FloatArray
    relative: FloatArray
    norm: FloatArray


def _residual(
    layout: BatchLayout,
    mats: tuple[Sparse, Sparse, Sparse],
    data: BatchData,
    X: FloatArray,
    V: FloatArray,
    moved: tuple[IntArray, FloatArray] | None = None,
) -> _Residual:
    """The residuals of the batch at ``(X, V)``; ``moved``: ``(rows, Y)`` when only those
    rows of ``V`` differ from a point whose projection is ``Y``."""
    P, A, AT = mats
    Y = layout.project_dual(V) if moved is None else layout.project_dual_rows(V, *moved)
    k = layout.size
    Px = (P @ X.ravel()).reshape(k, -1)
    Aty = (AT @ Y.ravel()).reshape(k, -1)
    Ax = (A @ X.ravel()).reshape(k, -1)
    S = Y - V
    F = np.concatenate([Px + Aty + data.c, Ax + S - data.b], axis=1)
    scale = np.concatenate(
        [np.abs(Px) + np.abs(Aty) + np.abs(data.c), np.abs(Ax) + np.abs(S) + np.abs(data.b)],
        axis=1,
    )
    relative = np.max(np.abs(F) / (1.0 + scale), axis=1, initial=0.0)
    return _Residual(F, Y, relative, np.linalg.norm(F, axis=1))


@dataclasses.dataclass
class EngineResult:
    """Per element: a finished `ConicSolution` or the error of its solve; plus the
    batch factorization shared by the elements the vectorised path finished."""

    conics: list[ConicSolution | None]
    errors: list[SolverError | None]
    factorization: Embedded | None
    #: Elements finished by the vectorised path (their rows of ``factorization`` are valid).
    vectorised: np.ndarray
    X: FloatArray
    Y: FloatArray
    D: FloatArray
    #: Wall seconds spent inside the backend solver (its calls for the batch, plus those of
    #: elements re-solved on the single-problem path).
    solver_time: float = 0.0
    #: Whether the batch factorization is to be made on first use (results that crossed a
    #: process boundary, where factorizations do not travel).
    factorize_later: bool = False

    @classmethod
    def empty(cls, size: int, n: int, m: int, nnz_D: int) -> EngineResult:
        """A result of ``size`` elements with nothing solved yet (NaN points)."""
        return cls(
            [None] * size,
            [None] * size,
            None,
            np.zeros(size, dtype=bool),
            np.full((size, n), np.nan),
            np.full((size, m), np.nan),
            np.full((size, nnz_D), np.nan),
        )

    def put(self, i: int, conic: ConicSolution) -> None:
        """Record element ``i``'s solution (and its point, ``y`` and ``D`` rows)."""
        self.conics[i] = conic
        self.X[i], self.Y[i], self.D[i] = conic.x, conic.y, conic.jacobian.values


class BatchEngine:
    """Solves a batch of one program (see the module docstring)."""

    def __init__(self, spec: ProgramSpec) -> None:
        self.spec = spec
        self._layouts: dict[int, BatchLayout] = {}

    def __getstate__(self) -> dict[str, object]:
        return {"spec": self.spec, "_layouts": {}}

    def layout(self, size: int) -> BatchLayout:
        """The layout for ``size`` elements (the last few sizes are kept)."""
        layout = self._layouts.get(size)
        if layout is None:
            layout = BatchLayout(self.spec, size, self.layout)
            if len(self._layouts) >= 8:
                self._layouts.pop(next(iter(self._layouts)))
            self._layouts[size] = layout
        return layout

    @single_thread_blas
    def polish_rows(
        self,
        data: BatchData,
        rows: IntArray,
        X0: FloatArray,
        V0: FloatArray,
        *,
        kink: KinkPolicy,
        strict: bool,
        tol: Tolerances,
        raws: Sequence[RawSolution] | None = None,
    ) -> Polished:
        """Vectorised polishing of the elements ``rows`` of ``data`` from ``(X0, V0)``: the
        solver's points (``raws``), or previous solutions (a warm start, accepted only at
        the polishing target within ``Tolerances.warm_max_iter`` steps).  Returns the
        certified elements' solutions and the factorizations of every element's ``B``."""
        warm = raws is None
        sub = data.take(rows)
        layout = self.layout(int(rows.size))
        tol_run = dataclasses.replace(tol, polish_max_iter=tol.warm_max_iter) if warm else tol
        start = time.perf_counter()
        out = _polish_batch(layout, sub, X0, V0, kink=kink, tol=tol_run, fail_fast=warm)
        polish_time = (time.perf_counter() - start) / rows.size
        level = tol.target if warm else tol.certify
        ok = (out.res.relative <= level) & ~out.fact.degenerate
        scale = np.maximum(1.0, np.abs(out.V).max(axis=1, initial=0.0))
        out.X = snap_to_faces(self.spec.newton, out.X, out.V, sub.A, sub.b, kink, tol.kink * scale)
        m = self.spec.m
        conics: dict[int, ConicSolution] = {}
        for j, i in enumerate(rows):
            if not ok[j]:
                continue
            raw = None if raws is None else raws[i]
            diag = Diagnostics(
                status=SolverStatus.SOLVED,
                solver="warm start" if raw is None else raw.solver,
                raw_status="" if raw is None else raw.raw_status,
                iterations=0 if raw is None else raw.iterations,
                solve_time=0.0 if raw is None else raw.solve_time,
                residual_before_polish=float(out.res0_norm[j]),
                residual=float(out.res.norm[j]),
                relative_residual=float(out.res.relative[j]),
                certified=True,
                polish_steps=int(out.steps[j]),
                polish=PolishOutcome.CONVERGED
                if out.res.relative[j] <= tol.target
                else PolishOutcome.STALLED,
                kink_policy=kink.value,
                kinks_counter=_kink_counter(self.spec.cones, out.V[j].copy(), tol),
                timings=Timings(
                    setup=0.0 if raw is None else raw.setup_time,
                    solve=0.0 if raw is None else raw.solve_time,
                    polish=polish_time * (1 - out.factor_share),
                    factorization=polish_time * out.factor_share,
                ),
                start="warm" if warm else "cold",
                linear_solve=f"{out.method} (batched)",
            )
            jac = Jacobian(*self.spec.cones.pattern, out.D[j], m, self.spec.cones.diagonal)
            conics[int(i)] = ConicSolution(
                functools.partial(data.element, int(i)),
                self.spec.cones,
                out.X[j],
                out.V[j],
                diag,
                kink=kink,
                kink_tol=_kink_tol(tol.kink, 0.0, out.V[j]),
                strict=strict,
                structure=self.spec.newton,
                tolerances=tol,
                factorization=out.fact.element(j),
                jacobian=jac,
                y=out.res.Y[j],
            )
        fact = Embedded([(out.fact, np.asarray(rows, dtype=np.int64))], data.size)
        return Polished(conics, out.X, out.res.Y, out.D, fact)

    @single_thread_blas
    def solve(
        self,
        data: BatchData,
        solver: Solver,
        *,
        kink: KinkPolicy,
        polish: bool,
        strict: bool,
        tol: Tolerances,
    ) -> EngineResult:
        """Solve every element of ``data`` (see the module docstring)."""
        start_all = time.perf_counter()
        k = data.size
        solver_start = time.perf_counter()
        raws = solver.solve_many(data, self.spec.cones.cones)
        solver_time = time.perf_counter() - solver_start
        result = EngineResult.empty(
            k, self.spec.n, self.spec.m, int(self.spec.cones.pattern[0].size)
        )
        conics, errors = result.conics, result.errors
        good = np.zeros(k, dtype=bool)
        for i, raw in enumerate(raws):
            if raw.status is SolverStatus.INFEASIBLE:
                errors[i] = _status_error(raw, InfeasibleError, "found the problem infeasible")
            elif raw.status is SolverStatus.UNBOUNDED:
                errors[i] = _status_error(raw, UnboundedError, "found the problem unbounded")
            elif raw.status is SolverStatus.FAILED or not raw.has_point:
                errors[i] = _status_error(raw, SolverFailedError, "failed")
            elif raw.status is SolverStatus.SOLVED:
                good[i] = True
        rows = np.flatnonzero(good)
        if rows.size and polish and self.spec.newton.batched(tol):
            X0 = np.stack([cast(FloatArray, raws[i].x) for i in rows])  # type: ignore[union-attr]
            V0 = np.stack([raws[i].y - raws[i].s for i in rows])  # type: ignore[union-attr]
            done = self.polish_rows(
                data, rows, X0, V0, kink=kink, strict=strict, tol=tol, raws=raws
            )
            for i, conic in done.conics.items():
                conics[i] = conic
                result.vectorised[i] = True
            result.X[rows], result.Y[rows], result.D[rows] = done.X, done.Y, done.D
            result.factorization = done.factorization
        # Everything else goes through the single-problem path, element by element, from the
        # solver's point (larger programs with a sparse B, where factorizing dominates and
        # vectorising brings nothing; and elements the vectorised path could not certify).
        todo = [i for i in range(k) if conics[i] is None and errors[i] is None]

        def single(i: int) -> ConicSolution | SolverError:
            try:
                return solve_conic(
                    data.element(i),
                    self.spec.cones,
                    solver,
                    kink=kink,
                    polish=polish,
                    tolerances=tol,
                    strict=strict,
                    structure=self.spec.newton,
                    raw=raws[i],
                )
            except SolverError as exc:
                return exc

        chunks = split_rows(len(todo), self.spec.newton.size)
        outcomes = run_parallel(lambda rows: [single(i) for i in todo[rows]], chunks)
        for i, outcome in zip(todo, (o for part in outcomes for o in part)):
            if isinstance(outcome, SolverError):
                errors[i] = outcome
                continue
            result.put(i, outcome)
            # the raw solve was counted above; only retries add solver time
            t = outcome.diagnostics.timings
            solver_time += max(t.setup + t.solve - raws[i].setup_time - raws[i].solve_time, 0.0)
        total = (time.perf_counter() - start_all) / max(k, 1)
        for c in conics:
            if c is not None and c.diagnostics.timings.total == 0.0:
                c.diagnostics.timings.total = total
        result.solver_time = solver_time
        return result


def _kink_counter(cones: ConeSet, v: FloatArray, tol: Tolerances):
    return lambda: cones.kinks(v, _kink_tol(tol.kink, 0.0, v))


class Embedded:
    """Batch factorizations of disjoint subsets of a batch of ``size`` (``parts``: pairs of a
    factorization and the batch rows it covers), solved in the batch's coordinates (rows
    outside every part come back as zeros)."""

    def __init__(
        self,
        parts: list[tuple[BatchLU | BatchRefined, IntArray]],
        size: int,
    ) -> None:
        self.parts, self.size = parts, size

    def __getstate__(self) -> dict[str, object]:  # factorizations do not pickle
        raise TypeError("a batch factorization cannot be pickled")

    def moved(self, rows: IntArray, size: int) -> Embedded:
        """The same factorizations for a batch of ``size`` in which this one's row ``j`` is
        row ``rows[j]``."""
        return Embedded([(f, rows[r]) for f, r in self.parts], size)

    def merged(self, other: Embedded) -> Embedded:
        return Embedded(self.parts + other.parts, self.size)

    def solve(self, R: FloatArray, transpose: bool = False) -> FloatArray:
        out = np.zeros_like(R)
        for fact, rows in self.parts:
            out[rows] = fact.solve(R[rows], transpose)
        return out


@dataclasses.dataclass
class Polished:
    """Vectorised polishing of some elements of a batch: the certified elements' solutions
    (by batch index), the polished points of all of them, and their factorizations (in the
    batch's coordinates)."""

    conics: dict[int, ConicSolution]
    X: FloatArray
    Y: FloatArray
    D: FloatArray
    factorization: Embedded


@dataclasses.dataclass
class _BatchPolished:
    X: FloatArray
    V: FloatArray
    res: _Residual
    res0_norm: FloatArray
    steps: IntArray
    D: FloatArray
    fact: BatchLU | BatchRefined
    method: str
    factor_share: float


def _polish_batch(
    layout: BatchLayout,
    data: BatchData,
    X: FloatArray,
    V: FloatArray,
    *,
    kink: KinkPolicy,
    tol: Tolerances,
    fail_fast: bool = False,
) -> _BatchPolished:
    """`_polish()` for a whole batch, with per-element step
    acceptance (an element whose step fails is held where it is)."""
    mats = layout.matrices(data)
    k, n = layout.size, layout.n

    def jacobian(V: FloatArray) -> FloatArray:
        vmax = float(np.abs(V).max(initial=0.0))
        return layout.jacobian_values(V, kink, tol.kink * max(1.0, vmax))

    factor_time = 0.0
    fact: PatchedLU | None = None
    D_fact = np.zeros((k, layout.nnz_D))  # the D of each row's factorization

    def refactorize(D: FloatArray, rows: np.ndarray) -> PatchedLU:
        """``fact`` with fresh factorizations of the ``rows`` (a mask) at ``D``."""
        nonlocal factor_time, fact
        start = time.perf_counter()
        index = np.flatnonzero(rows)
        if fact is None:
            fact = PatchedLU(k, layout.newton.size)
        fact.put(batch_factorize(layout, data.take(index), D[index], tol), index)
        D_fact[index] = D[index]
        factor_time += time.perf_counter() - start
        return fact

    started = time.perf_counter()
    res = _residual(layout, mats, data, X, V)
    res0_norm = res.norm.copy()
    D = jacobian(V)
    steps = np.zeros(k, dtype=np.int64)
    stalled = np.zeros(k, dtype=bool)
    halvings = cast(FloatArray, 0.5 ** np.arange(tol.backtracking_steps))

    def try_steps(f: PatchedLU, rows: np.ndarray, alphas: FloatArray) -> np.ndarray:
        """Line search on ``rows`` with ``f``; returns the rows that found a decrease."""
        nonlocal X, V, res
        dZ = f.solve(-res.F)
        dZ[~rows] = 0.0
        todo = rows.copy()
        accepted = np.zeros(k, dtype=bool)
        for alpha in alphas:
            if not todo.any():
                break
            step = np.where(todo[:, None], alpha * dZ, 0.0)
            moved = (np.flatnonzero(todo), res.Y)
            trial = _residual(layout, mats, data, X + step[:, :n], V + step[:, n:], moved)
            ok = todo & (trial.norm < (1.0 - 1e-4 * alpha) * res.norm)
            if ok.any():
                X = np.where(ok[:, None], X + step[:, :n], X)
                V = np.where(ok[:, None], V + step[:, n:], V)
                res = _Residual(
                    np.where(ok[:, None], trial.F, res.F),
                    np.where(ok[:, None], trial.Y, res.Y),
                    np.where(ok, trial.relative, res.relative),
                    np.where(ok, trial.norm, res.norm),
                )
                accepted |= ok
                todo &= ~ok
        return accepted

    for _ in range(tol.polish_max_iter):
        active = (res.relative > tol.target) & ~stalled
        if not active.any():
            break
        before = res.relative.copy()
        accepted = np.zeros(k, dtype=bool)
        if fact is not None:  # chord steps: full steps with the last factorization
            accepted = try_steps(fact, active, halvings[:1])
        rest = active & ~accepted
        if rest.any():
            if fact is None:
                fact = refactorize(D, np.ones(k, dtype=bool))
            else:
                D = jacobian(V)
                moved = rest & np.any(D_fact != D, axis=1)
                if moved.any():
                    fact = refactorize(D, moved)
            now = try_steps(fact, rest, halvings)
            accepted |= now
            stalled |= rest & ~now
        if fail_fast:  # a warm start: a step that does not contract fast is not followed up
            slow = accepted & (res.relative > tol.target) & (res.relative > 0.1 * before)
            stalled |= slow
        steps[accepted] += 1
    if fact is None or steps.any():
        D = jacobian(V)
    # B at the returned points: each row's last factorization if its D has not moved,
    # refined against the final B if it moved a little (curved cones), else a new one.
    if fact is None:
        fact = refactorize(D, np.ones(k, dtype=bool))
    far = np.abs(D - D_fact).max(axis=1, initial=0.0) > tol.active_set_change
    if far.any():
        fact = refactorize(D, far)
    final: BatchLU | BatchRefined = fact
    if not np.array_equal(D, D_fact):
        final = BatchRefined(fact, layout, data, D, tol, mats)
    total = time.perf_counter() - started
    return _BatchPolished(
        X,
        V,
        res,
        res0_norm,
        steps,
        D,
        final,
        f"{final.base.method} (reused with iterative refinement)"
        if isinstance(final, BatchRefined)
        else final.method,
        factor_time / total if total > 0 else 0.0,
    )
