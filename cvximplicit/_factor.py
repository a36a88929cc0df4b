"""Factorizations of the derivative matrix ``B``: ``factorize(B) -> Factorization``.

A `Factorization` solves ``B z = r`` and ``B' z = r`` and does nothing else: it never
warns, never changes itself and computes its condition number only when asked
(`Factorization.condition()`).  `factorize()` picks the variant by size and fill:

* `DenseLU` (LAPACK ``getrf``) for small or dense-ish ``B``: on the small programs layers
  are used for it is several times faster than a sparse LU, and it has no failure mode on
  rank-deficient input;
* `SparseLU` (SuperLU) otherwise, or, for zero and nonnegative cones from
  `Tolerances.ldl_min_size` rows, `ReducedLDL` (qdldl on a reduced symmetric matrix) refined
  against ``B`` (`reduced_ldl()`);
* `LeastSquares` (minimum-norm, dense SVD or LSMR) when ``B`` is numerically singular;
  it is marked ``degenerate`` and carries the reason, and the caller decides whether to warn
  or raise.

`Refined` reuses a factorization of a nearby matrix with iterative refinement against
the exact ``B`` (applied as products): polishing on curved cones moves ``B`` a little at each
step, and refactorizing would cost more than a few refinement sweeps.
"""

from __future__ import annotations

import functools
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import scipy.linalg
import scipy.linalg.lapack
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import structural_rank

from ._tolerances import Tolerances
from ._typing import FloatArray, IntArray, Sparse, shape2

try:  # SuperLU's entry point behind ``splu`` (see `_natural_lu()`)
    from scipy.sparse.linalg._dsolve._superlu import gstrf as _gstrf
except ImportError:  # pragma: no cover - a scipy that moved it: the public route
    _gstrf = None

__all__ = [
    "DenseLU",
    "Factorization",
    "LeastSquares",
    "OrderedLU",
    "ReducedLDL",
    "Refined",
    "SparseLU",
    "SparsePattern",
    "SparsePatterns",
    "factorize",
    "natural_lu",
    "pivot_ratio",
    "reduced_ldl",
    "refinement_converged",
    "superlu_options",
]


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
    """SuperLU of a sparse ``B`` (ordering by `superlu_options()`)."""

    method = "sparse LU"

    def __init__(self, B: Sparse | Callable[[], Sparse], lu: OrderedLU, size: int) -> None:
        super().__init__(size)
        self._B = B  # or a function building it (only the condition estimate needs it)
        self._lu = lu

    def solve(self, rhs: FloatArray, transpose: bool = False) -> FloatArray:
        return self._lu.solve(rhs, transpose)

    def _norm1(self) -> float:
        B = sp.csc_array(self._B() if callable(self._B) else self._B)
        return float(np.max(np.asarray(abs(B).sum(axis=0)), initial=0.0))


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


def refinement_converged(step: Any, size: Any, previous: Any) -> Any:
    """Whether iterative refinement has converged, for a correction of norm ``step`` to a
    solution of norm ``size`` after one of norm ``previous`` (floats, or arrays of them row
    by row): a correction at rounding level (``1e-15``), one whose successor (at the rate of
    the last two) would be, or one that stopped shrinking while already tiny (the rounding
    floor of the residual ``rhs - B z``).  Predicting the successor saves a sweep: with a
    factorization from the solver's point, corrections fall by about 1e-5 per sweep
    (measured: 1e-6, 1e-11, 1e-15 relative on the logistic family), so three solves instead
    of four per derivative."""
    return (
        (step <= 1e-15 * size)
        | (step * step <= 1e-14 * size * previous)
        | ((step >= 0.25 * previous) & (step <= 1e-10 * size))
    )


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
        reused: bool = True,
    ) -> None:
        super().__init__(base.size)
        self._base = base
        self._apply = (matvec, rmatvec)
        self._exact_factory = exact
        self._exact: Factorization | None = None
        self._sweeps = sweeps
        how = "reused with iterative refinement" if reused else "with iterative refinement"
        self.method = f"{base.method} ({how})"

    def exact(self) -> Factorization:
        """The factorization of ``B`` itself (computed on first use)."""
        if self._exact is None:
            self._exact = self._exact_factory()
        return self._exact

    def refine(self, rhs: FloatArray, transpose: bool = False) -> FloatArray | None:
        """``B^{-1} rhs`` by refinement alone; ``None`` when it does not converge."""
        apply = self._apply[1] if transpose else self._apply[0]
        z = self._base.solve(rhs, transpose)
        previous = float(np.linalg.norm(z))  # the first step, from zero
        for _ in range(self._sweeps):
            dz = self._base.solve(rhs - apply(z), transpose)
            z = z + dz
            step = float(np.linalg.norm(dz))
            if refinement_converged(step, max(float(np.linalg.norm(z)), 1e-300), previous):
                return z
            previous = step
        return None

    def solve(self, rhs: FloatArray, transpose: bool = False) -> FloatArray:
        if self._exact is None:
            z = self.refine(rhs, transpose)
            if z is not None:
                return z
        return self.exact().solve(rhs, transpose)

    @property
    def degenerate(self) -> bool:  # type: ignore[override]
        return self._exact.degenerate if self._exact is not None else False

    def condition(self) -> float:
        return self.exact().condition()


class ReducedLDL(Factorization):
    """Exact solves with ``B~``, a matrix within ``delta`` of ``B = [[P, A'D], [A, D - I]]``
    for a *diagonal* ``D = diag(d)``, ``0 <= d <= 1`` (zero and nonnegative cones), through a
    symmetric quasi-definite matrix of at most its size, factorized by qdldl (``LDL'``).

    Rows with ``d_i < 1`` are eliminated (``dv_i = (A_i dx - r_i) / (1 - d_i)``), which
    leaves, for ``B z = r`` and for ``B' z = r`` alike (only the right-hand sides and the
    back-substitution differ),

        K = [[H, A_1'], [A_1, 0]],   H = P + A_0' diag(d / (1 - d)) A_0 >= 0,

    ``A_1`` the rows with ``d_i = 1``.  ``K`` is regularized to
    ``[[H + delta I, A_1'], [A_1, -delta I]]``, which is quasi-definite, so ``LDL'`` exists
    for any ordering (qdldl orders by AMD) and costs a fraction of SuperLU's pivoted LU of
    ``B`` (measured: 1.9 vs 7.1 ms on the 1000-row LASSO).  The regularization is that of
    ``B~`` (``P + delta I`` and ``-delta`` for the rows with ``d_i = 1``); `Refined` removes
    it by iterative refinement against the exact ``B``.
    """

    method = "LDL of the reduced KKT matrix (qdldl)"

    def __init__(self, P: Sparse, A: Sparse, d: FloatArray, delta: float) -> None:
        import qdldl

        n, m = shape2(A)[1], shape2(A)[0]
        super().__init__(n + m)
        self.n = n
        one = d == 1.0
        self._one, self._rest = np.flatnonzero(one), np.flatnonzero(~one)
        self._d_rest = d[~one]
        A = sp.csr_array(A)
        A1, A0 = A[self._one], A[self._rest]
        self._A0, self._A0T = A0, sp.csr_array(A0.T)  # (a transpose per solve cost 15 us)
        weight = self._d_rest / (1.0 - self._d_rest)
        H = sp.csc_array(P)
        if np.any(weight > 0):
            H = sp.csc_array(H + A0.T @ sp.diags_array(weight) @ A0)
        k = self._one.size
        upper = sp.bmat(
            [
                [sp.triu(H, format="csc") + delta * sp.eye_array(n, format="csc"), A1.T],
                [None, -delta * sp.eye_array(k, format="csc")],
            ],
            format="csc",
        )
        self._ldl = qdldl.Solver(upper, upper=True)

    def solve(self, rhs: FloatArray, transpose: bool = False) -> FloatArray:
        n, one, rest, d0 = self.n, self._one, self._rest, self._d_rest
        r1, r2 = rhs[:n], rhs[n:]
        r2_rest = r2[rest]
        scaled = r2_rest / (1.0 - d0)
        # B z = r: the eliminated rows feed A_0' diag(d/(1-d)) r_0 into the first block;
        # B' z = r: A_0' r_0 / (1 - d).
        feed = scaled if transpose else d0 * scaled
        top = r1 + self._A0T @ feed if rest.size else r1
        u = self._ldl.solve(np.concatenate([top, r2[one]]))
        dx = u[:n]
        z = np.empty(self.size)
        z[:n] = dx
        v = z[n:]
        v[one] = u[n:]
        Ax = self._A0 @ dx
        v[rest] = ((d0 * Ax if transpose else Ax) - r2_rest) / (1.0 - d0)
        return z


class _Inverse(spla.LinearOperator):
    """``B^{-1}`` as an operator, for the condition estimate."""

    def __init__(self, factorization: Factorization) -> None:
        super().__init__(dtype=np.float64, shape=(factorization.size, factorization.size))
        self.factorization = factorization

    def _matvec(self, x: FloatArray) -> FloatArray:
        return self.factorization.solve(np.ravel(x))

    def _rmatvec(self, x: FloatArray) -> FloatArray:
        return self.factorization.solve(np.ravel(x), transpose=True)


def reduced_ldl(
    P: Sparse,
    A: Sparse,
    d: FloatArray,
    matvec: Callable[[FloatArray], FloatArray],
    rmatvec: Callable[[FloatArray], FloatArray],
    exact: Callable[[], Factorization],
    tol: Tolerances,
) -> Factorization | None:
    """`ReducedLDL` refined against the exact ``B`` (applied by ``matvec``/``rmatvec``), or
    ``None`` where it does not apply: qdldl not installed, ``d`` outside ``[0, 1]``, or ``B``
    (numerically) singular, which shows as refinement failing on a probe right-hand side;
    the caller then factorizes ``B`` itself (`factorize()`), which detects singularity.
    """
    if not _has_qdldl() or d.size == 0 or d.min() < 0.0 or d.max() > 1.0:
        return None
    scale = max(1.0, float(np.abs(P.data).max(initial=0.0)), float(np.abs(A.data).max(initial=0.0)))
    base = ReducedLDL(P, A, d, tol.ldl_regularization * scale)
    refined = Refined(base, matvec, rmatvec, exact, tol.refinement_steps, reused=False)
    probe = np.random.default_rng(0).standard_normal(base.size)
    if refined.refine(probe) is None:
        return None
    return refined


@functools.cache
def _has_qdldl() -> bool:
    return importlib.util.find_spec("qdldl") is not None


def use_dense(size: int, nnz: int, tol: Tolerances) -> bool:
    """Whether a ``size x size`` matrix with ``nnz`` stored entries is factorized densely."""
    return size <= tol.dense_lu_limit or (
        size <= tol.dense_fill_limit and nnz >= tol.dense_fill * size * size
    )


class OrderedLU:
    """A SuperLU of ``B`` itself, or of ``B`` permuted symmetrically (``B[order][:, order]``,
    factorized in that order): solves and pivots are in ``B``'s own numbering either way."""

    def __init__(self, lu: spla.SuperLU, order: IntArray | None = None) -> None:
        self.lu = lu
        self.order = order

    def solve(self, rhs: FloatArray, transpose: bool = False) -> FloatArray:
        trans = "T" if transpose else "N"
        if self.order is None:
            return self.lu.solve(rhs, trans=trans)
        z = np.empty_like(rhs, dtype=np.float64)
        z[self.order] = self.lu.solve(np.ascontiguousarray(rhs[self.order]), trans=trans)
        return z

    def pivots(self) -> tuple[FloatArray, IntArray]:
        """``|U_jj|`` and, for each pivot ``j``, the column of ``B`` it eliminates."""
        perm_c = self.lu.perm_c
        column = np.empty_like(perm_c)
        column[perm_c] = np.arange(column.size)
        if self.order is not None:
            column = self.order[column]
        U = self.lu.U
        if isinstance(U, tuple):  # raw CSC arrays (see `_natural_lu()`)
            data, rows, indptr = U
            last = indptr[1:] - 1  # SuperLU puts the pivot last in its column
            if last.size and last.min() >= 0 and np.array_equal(rows[last], np.arange(last.size)):
                diagonal = data[last]
            else:
                nnz = int(indptr[-1])
                cols = np.repeat(np.arange(column.size), np.diff(indptr))
                on = rows[:nnz] == cols
                diagonal = np.zeros(column.size)
                diagonal[cols[on]] = data[:nnz][on]
        else:
            diagonal = U.diagonal()
        return np.abs(diagonal), column


def _raw_csc(arrays: tuple[np.ndarray, ...], shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    del shape
    return arrays


def _natural_lu(
    values: FloatArray, indices: np.ndarray, indptr: np.ndarray, options: dict[str, Any]
) -> spla.SuperLU:
    """SuperLU of the CSC matrix ``(values, indices, indptr)`` (canonical, ``intc`` indices) in
    its own column order, with ``options`` of `superlu_options()`.  SuperLU is called
    directly where scipy has its usual private entry point: ``splu`` validates the matrix
    twice and its ``U`` is built as a validated CSC array, which together cost as much as
    the numerical LU of a 300-row ``B`` (0.06 of 0.13 ms); ``U`` then comes as raw arrays."""
    N = indptr.size - 1
    if _gstrf is not None:
        thresh = options.get("diag_pivot_thresh")
        superlu = {"ColPerm": "NATURAL", "SymmetricMode": True}
        if thresh is not None:
            superlu["DiagPivotThresh"] = thresh
        try:
            return _gstrf(
                N, int(indptr[-1]), values, indices, indptr,
                csc_construct_func=_raw_csc, ilu=False, options=superlu,
            )  # fmt: skip
        except TypeError:  # another signature: the public route below
            pass
    matrix = sp.csc_array((values, indices, indptr), shape=(N, N))
    return spla.splu(matrix, **{**options, "permc_spec": "NATURAL"})


class SparsePattern:
    """What is known of one sparsity pattern of ``B`` (kept by `SparsePatterns`)."""

    __slots__ = ("_ordered", "_rank")

    def __init__(self) -> None:
        self._rank: int | None = None
        #: ``(order, gather, indices, indptr)``: the pattern permuted by the ordering its first
        #: factorization found (``data[gather]`` are the permuted matrix's values).
        self._ordered: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def rank_known(self) -> bool:
        """Whether the structural rank was computed (see `SparsePatterns.aliased()`)."""
        return self._rank is not None

    def rank(self, B: sp.csc_array | None = None) -> int:
        """The structural rank of ``B`` (a canonical CSC array with this pattern; needed only
        the first time)."""
        if self._rank is None:
            if B is None:
                raise ValueError("the structural rank of this pattern is not known yet")
            self._rank = int(structural_rank(sp.csr_array(B)))
        return self._rank

    def ordering(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """``(order, gather, indices, indptr)`` once a matrix of this pattern was factorized:
        ``B[order][:, order]`` is the CSC matrix ``(B.data[gather], indices, indptr)``."""
        return self._ordered

    def lu(self, B: sp.csc_array, curved: bool) -> OrderedLU:
        """SuperLU of ``B`` (a canonical, structurally nonsingular CSC array with this
        pattern) in the order the pattern's first factorization found.  Raises
        ``RuntimeError`` on an exact zero pivot, as SuperLU does."""
        options = superlu_options(curved)
        if self._ordered is not None:
            order, gather, indices, indptr = self._ordered
            return OrderedLU(
                _natural_lu(np.asarray(B.data[gather], np.float64), indices, indptr, options), order
            )
        lu = spla.splu(B, **options)
        order = np.argsort(lu.perm_c)  # column j of the ordered matrix is column order[j]
        positions = sp.csc_array((np.arange(B.nnz), B.indices, B.indptr), shape=shape2(B))
        ordered = sp.csc_array(positions[order][:, order])
        ordered.sort_indices()
        self._ordered = (
            order,
            ordered.data.astype(np.intp),
            ordered.indices.astype(np.intc),
            ordered.indptr.astype(np.intc),
        )
        return OrderedLU(lu)


class SparsePatterns:
    """Structural ranks and fill-reducing orderings of sparse matrices, remembered by
    sparsity pattern (`SparsePattern`).

    ``B`` of one program takes few patterns (one per active set; curved cones keep one), so
    a `NewtonStructure` keeps one of these and each pattern's work is done once:

    * the structural rank guards SuperLU (see `factorize()`); on unstructured ``B`` it cost up
      to 80% of the LU itself (measured: 2.0 vs 7.1 ms on the 1000-row LASSO);
    * the ordering: SuperLU orders the columns (`superlu_options()`) before every
      factorization, which on the benchmark families costs as much as the numerical work.  The
      first LU of a pattern keeps its column order; later ones factorize ``B`` permuted
      symmetrically by it with SuperLU's ``NATURAL`` ordering (measured per LU: 320-row
      nearest-correlation SDP 0.46 -> 0.22 ms, 301-row entropy 0.11 -> 0.06 ms, 1010-row
      logistic 0.53 -> 0.28 ms, 500-row NNLS 2.3 -> 2.0 ms).

    Patterns are keyed by their index arrays, and may also be found by a caller's shorter key
    (``alias``: `NewtonStructure` names a pattern by which of its fixed slots are nonzero, so
    it needs no CSC matrix to find one).  What is kept (keys and ordered patterns) takes at
    most about ``max_bytes``.
    """

    def __init__(self, max_bytes: int = 1 << 25) -> None:
        self.max_bytes = max_bytes
        self._bytes = 0
        self._patterns: dict[tuple[tuple[int, int], bytes], SparsePattern] = {}
        self._aliases: dict[bytes, SparsePattern] = {}

    def __call__(self, B: sp.csc_array, alias: bytes | None = None) -> SparsePattern:
        """The record of ``B``'s pattern (a canonical CSC array), found later also by
        ``alias`` (see `aliased()`) when given."""
        key = (shape2(B), B.indptr.tobytes() + B.indices.tobytes())
        entry = self._patterns.get(key)
        if entry is None:
            size = 5 * len(key[1]) // 2  # the key, and the ordered pattern once factorized
            if self._bytes + size > self.max_bytes:
                self._patterns.clear()
                self._aliases.clear()
                self._bytes = 0
            self._bytes += size
            entry = self._patterns[key] = SparsePattern()
        if alias is not None and alias not in self._aliases:
            self._bytes += len(alias)
            self._aliases[alias] = entry
        return entry

    def aliased(self, alias: bytes) -> SparsePattern | None:
        """The record registered under ``alias``, once its structural rank is known
        (``None`` otherwise: a record another thread registered a moment ago may not have
        it yet, and the caller then computes it too)."""
        entry = self._aliases.get(alias)
        return entry if entry is not None and entry.rank_known else None


def pivot_ratio(pivots: FloatArray) -> float:
    """``min |U_jj| / max |U_jj|`` (0 for a zero or non-finite ``U``)."""
    top = float(pivots.max(initial=0.0))
    ratio = float(pivots.min()) / top if 0.0 < top < np.inf else 0.0
    return ratio if np.isfinite(ratio) else 0.0


def natural_lu(
    values: FloatArray, ordering: tuple[np.ndarray, ...], curved: bool, tol: Tolerances
) -> OrderedLU | None:
    """SuperLU of ``B`` from its stored values in a pattern's known ``ordering``
    (`SparsePattern.ordering()`, with ``gather`` indexing ``values``), or ``None`` when
    ``B`` is found singular (an exact zero pivot, or pivots below
    `Tolerances.singular_pivot_ratio`): the caller then goes through `factorize()`, which
    says why."""
    order, gather, indices, indptr = ordering
    try:
        lu = _natural_lu(values[gather], indices, indptr, superlu_options(curved))
    except RuntimeError:
        return None
    ordered = OrderedLU(lu, order)
    if pivot_ratio(ordered.pivots()[0]) < tol.singular_pivot_ratio:
        return None
    return ordered


def superlu_options(curved: bool) -> dict[str, Any]:
    """SuperLU's ordering and pivoting for ``B``: COLAMD for zero and nonnegative cones
    only, and for curved cones (dense blocks of ``D``, whose ``B`` has a symmetric pattern)
    a minimum-degree ordering of ``B + B'`` with symmetric mode and threshold pivoting
    (0.1).  Measured per factorization: the 1010-row logistic ``B`` 0.79 -> 0.53 ms, the
    222-row p-norm 0.39 -> 0.17 ms, 32 logistic problems block-diagonal 33 -> 23 ms (fill
    558k -> 445k), 32 SDPs 21 -> 16 ms; on the box LP and the NNLS, COLAMD is 1.7-2x
    faster."""
    if not curved:
        return {"permc_spec": "COLAMD"}
    return {
        "permc_spec": "MMD_AT_PLUS_A",
        "diag_pivot_thresh": 0.1,
        "options": {"SymmetricMode": True},
    }


def factorize(
    B: Sparse | FloatArray,
    tol: Tolerances | None = None,
    patterns: SparsePatterns | None = None,
    curved: bool = False,
) -> Factorization:
    """Factorize ``B``, choosing the method by size and fill (see the module doc); a dense
    ``B`` (numpy array) is factorized densely.  ``patterns``: remembered structural ranks
    and orderings (of the caller's patterns); ``curved``: whether ``D`` has dense blocks
    (see `superlu_options()`).

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
        ratio = pivot_ratio(np.abs(np.diagonal(lu)))
        if ratio >= tol.singular_pivot_ratio:
            return DenseLU(dense, (lu, piv))
        reason = f"LU pivot ratio {ratio:.1e}"
        return LeastSquares(dense, reason, tol.dense_lstsq_limit)
    # SuperLU was seen to crash the process on a rank-deficient B: a structurally singular
    # one (measured: 36 ms for 178k rows) never reaches it.
    B = sp.csc_array(B)
    if not B.has_canonical_format:
        B = sp.csc_array(B, copy=True)
        B.sum_duplicates()
    pattern = patterns(B) if patterns is not None else None
    rank = pattern.rank(B) if pattern is not None else int(structural_rank(sp.csr_array(B)))
    if rank < size:
        return LeastSquares(
            B, f"structurally singular, rank {rank} of {size}", tol.dense_lstsq_limit
        )
    try:
        if pattern is not None:
            lu = pattern.lu(B, curved)
        else:
            lu = OrderedLU(spla.splu(B, **superlu_options(curved)))
        ratio = pivot_ratio(lu.pivots()[0])
        if ratio >= tol.singular_pivot_ratio:
            return SparseLU(B, lu, size)
        reason = f"LU pivot ratio {ratio:.1e}"
    except RuntimeError as exc:  # "Factor is exactly singular"
        reason = str(exc)
    return LeastSquares(B, reason, tol.dense_lstsq_limit)
