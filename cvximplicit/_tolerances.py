"""Every numerical threshold of the solve, polish and derivative path, in one place."""

from __future__ import annotations

import dataclasses

__all__ = ["Tolerances"]


@dataclasses.dataclass(frozen=True)
class Tolerances:
    r"""Thresholds of polishing, certification, kink detection and linear algebra.

    Residuals are *relative*: each entry of the normal-map residual ``F(x, v)`` is divided
    by ``1 +`` the magnitude of the terms that make it up (``|P x| + |A' y| + |c|`` in the
    stationarity rows, ``|A x| + |s| + |b|`` in the feasibility rows), and the largest such
    ratio is compared with the thresholds below.  A point is *certified* when this relative
    residual is at most ``certify``.

    Attributes:
        target: polishing stops once the relative residual is at most this.
        certify: a point whose relative residual exceeds this is not returned silently: the
            solve is retried with tighter solver settings, then an
            `InaccurateSolutionWarning` (or an error, see ``reject``) says
            what happened.
        reject: above this relative residual after the retry, no values are returned: a
            `SolverFailedError` is raised (such a point is not a solution:
            typically the problem is unbounded, infeasible or badly scaled).
        kink: relative distance (times ``max(1, |v|)``) below which a point counts as a kink
            of a cone projection, where the `KinkPolicy` chooses.
        singular_pivot_ratio: $\min_i |U_{ii}| / \max_i |U_{ii}|$ of the LU factors of $B$ below
            which $B$ is treated as singular.
        active_set_change: largest change of an entry of ``D`` between Newton steps up to
            which the previous factorization is reused with iterative refinement.
        polish_max_iter: largest number of semismooth Newton steps.
        backtracking_steps: step halvings tried before a Newton step counts as stalled.
        refinement_steps: iterative-refinement sweeps with a reused factorization before
            ``B`` is factorized afresh.
        dense_lu_limit: ``B`` with at most this many rows is factorized densely (LAPACK,
            one thread), and so is a ``B`` of up to ``dense_fill_limit`` rows with
            ``nnz >= dense_fill * size**2``; otherwise a sparse LU (SuperLU).  Measured on the
            benchmark families: dense 0.03-0.26 ms vs sparse 0.15-0.80 ms up to 205 rows; at
            about 300 rows dense costs 0.7-0.9 ms and wins only on dense-ish ``B``.
        dense_fill: see ``dense_lu_limit``.
        dense_fill_limit: see ``dense_lu_limit``.
        dense_lstsq_limit: largest size for a dense SVD least-squares fallback (else LSMR).
        ldl_min_size: with zero and nonnegative cones only, a sparse ``B`` with at least this
            many rows is solved through a reduced symmetric matrix factorized by qdldl (when
            installed, ``[fast]``) and refined against ``B``.  Measured in a forward pass
            (``benchmarks/core.py`` sizes): factorizations 3.5 vs 8.2 ms on the LASSO (1000
            rows), but 3.3 vs 2.8 ms on the NNLS (500 rows) and 1.3 vs 0.6 ms on the box LP
            (330 rows), and every later solve costs three LDL solves instead of one LU solve
            (VJP 0.6 vs 0.3-0.4 ms): SuperLU below 800 rows.
        ldl_regularization: that matrix's regularization, relative to the largest data entry
            (iterative refinement then removes it).
        batch_max_size: batches are polished vectorised across elements (dense LUs, or one
            sparse LU of the block-diagonal ``B`` per CPU chunk) only when one element's ``B``
            has fewer rows than this and fewer stored entries than ``batch_max_nnz``;
            otherwise each element runs the single-problem path on the threads.  Measured at
            batch 8-64 on 2 cores, forward + VJP at batch 32: vectorised faster on the QP,
            box LP, entropy and SDP families (8-20%, ``B`` of 81-330 rows and at most 6,600
            entries), per element faster on the NNLS (500 rows, 31,000 entries: 545 vs 428
            ms), logistic (1010 rows: 155 vs 139 ms) and SOCP (23,000 entries: 112 vs 104
            ms), where a block-diagonal pattern that changes whenever any element's active
            set does forgoes the per-pattern orderings the single path reuses.
        batch_max_nnz: see ``batch_max_size``.
        warm_max_iter: a warm start (semismooth Newton from the previous solution with the new
            data) is accepted only if it reaches ``target`` within this many steps; otherwise
            the solver runs (cold start).

    Examples:
        >>> import cvxpy as cp, cvximplicit as ci
        >>> x, b = cp.Variable(2), cp.Parameter(2)
        >>> prob = cp.Problem(cp.Minimize(cp.sum_squares(x - b)), [x >= 0])
        >>> loose = ci.Tolerances(certify=1e-6, kink=1e-8)
        >>> program = ci.compile(prob, [b], [x], tolerances=loose)
        >>> program.tolerances.certify
        1e-06
    """

    target: float = 1e-13
    certify: float = 1e-7
    reject: float = 1e-3
    kink: float = 1e-9
    singular_pivot_ratio: float = 1e-13
    active_set_change: float = 1e-3
    polish_max_iter: int = 20
    backtracking_steps: int = 11
    refinement_steps: int = 6
    dense_lu_limit: int = 160
    dense_fill: float = 0.15
    dense_fill_limit: int = 1024
    dense_lstsq_limit: int = 3000
    ldl_min_size: int = 800
    ldl_regularization: float = 1e-9
    batch_max_size: int = 500
    batch_max_nnz: int = 20_000
    warm_max_iter: int = 4

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not value >= 0:
                raise ValueError(f"Tolerances.{field.name} must be >= 0, got {value!r}")
        if not self.target <= self.certify <= self.reject:
            raise ValueError(
                "Tolerances must satisfy target <= certify <= reject, got "
                f"{self.target}, {self.certify}, {self.reject}"
            )
