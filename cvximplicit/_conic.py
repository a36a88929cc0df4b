"""The canonical cone program, its residual map, polishing and derivatives.

For the program

    minimise 1/2 x'Px + c'x   subject to   Ax + s = b,  s in K

one vector ``v`` stands for the pair ``(y, s)``: ``y = Pi_{K*}(v)`` and ``s = Pi_{K*}(v) - v``
(Moreau), and the normal-map residual

    F(x, v) = [ P x + A' Pi_{K*}(v) + c       ]
              [ A x + Pi_{K*}(v) - v - b      ]

vanishes exactly at KKT points.  With ``D`` an element of the conservative Jacobian of
``Pi_{K*}`` at ``v`` (chosen by a :class:`~cvximplicit.KinkPolicy`),

    B = dF/d(x, v) = [ P   A'D   ]
                     [ A   D - I ]

is both the semismooth Newton matrix used to polish the solver's point and the matrix of the
implicit function theorem: one factorization of ``B`` serves every VJP and JVP.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import warnings
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ._cones import Cone, KinkPolicy
from ._diagnostics import Diagnostics
from ._errors import (
    DegenerateDerivativeError,
    DegenerateDerivativeWarning,
    InaccurateSolutionWarning,
    InfeasibleError,
    SolverFailedError,
    UnboundedError,
)
from ._solvers import ConeData, RawSolution, Solver, SolverStatus

__all__ = ["ConeSet", "ConicSolution", "DataTangent", "LinearSystem", "solve_conic"]

from ._typing import FloatArray, Sparse, shape2

#: Pivot ratio ``min |U_ii| / max |U_ii|`` of the LU factors below which ``B`` is treated as
#: numerically singular.
SINGULAR_PIVOT_RATIO = 1e-13
#: Largest ``n + m`` for which the least-squares fallback uses a dense SVD (else LSMR).
DENSE_LSTSQ_LIMIT = 3000


class ConeSet:
    """The cones of a program, with their slices of the constraint vector."""

    def __init__(self, cones: Sequence[Cone]) -> None:
        self.cones = tuple(c for c in cones if c.dim > 0)
        bounds = np.cumsum([0] + [c.dim for c in self.cones])
        self.slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        self.dim = int(bounds[-1])
        self.diagonal = all(c.diagonal for c in self.cones)

    def project_dual(self, v: FloatArray) -> FloatArray:
        out = np.empty_like(v)
        for cone, sl in zip(self.cones, self.slices):
            out[sl] = cone.project_dual(v[sl])
        return out

    def dual_jacobian(self, v: FloatArray, kink: KinkPolicy, tol: float) -> Sparse:
        """Block-diagonal ``D``; a ``dia_array`` when every cone's Jacobian is diagonal."""
        if self.diagonal:
            d = np.empty(self.dim)
            for cone, sl in zip(self.cones, self.slices):
                d[sl] = cone.dual_jacobian_diagonal(v[sl], kink, tol)
            return sp.dia_array((d[None, :], [0]), shape=(self.dim, self.dim))
        rows, cols, vals = [], [], []
        for cone, sl in zip(self.cones, self.slices):
            block = cone.dual_jacobian(v[sl], kink, tol).tocoo()
            rows.append(block.row + sl.start)
            cols.append(block.col + sl.start)
            vals.append(block.data)
        return _assemble(rows, cols, vals, (self.dim, self.dim))

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


def residual(data: ConeData, cones: ConeSet, x: FloatArray, v: FloatArray) -> FloatArray:
    """The normal-map residual ``F(x, v)`` (see the module docstring)."""
    y = cones.project_dual(v)
    return np.concatenate([data.P @ x + data.A.T @ y + data.c, data.A @ x + y - v - data.b])


def _assemble(rows: list[Any], cols: list[Any], vals: list[Any], shape: tuple[int, int]) -> Sparse:
    """One CSC matrix from lists of COO triplets (duplicates are summed)."""
    if not rows:
        return sp.csc_array(shape)
    return sp.csc_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape
    )


def newton_matrix(data: ConeData, D: Sparse) -> Sparse:
    """``B = [[P, A'D], [A, D - I]]`` in CSC format, without explicit zeros."""
    n, m = data.n, data.m
    if D.format == "dia":  # zero and nonnegative cones only: no sparse products needed
        d = D.diagonal()
        (pr, pc), (ar, ac) = data.patterns
        scaled = data.A.data * d[ar]
        keep = scaled != 0
        slack = np.flatnonzero(d != 1.0)
        return _assemble(
            [pr, ac[keep], ar + n, slack + n],
            [pc, ar[keep] + n, ac, slack + n],
            [data.P.data, scaled[keep], data.A.data, d[slack] - 1.0],
            (n + m, n + m),
        )
    P, A = data.P.tocoo(), data.A.tocoo()
    AtD = (data.A.T @ D).tocoo()
    Dc = D.tocoo()
    diag = np.arange(m)
    B = _assemble(
        [P.row, AtD.row, A.row + n, Dc.row + n, diag + n],
        [P.col, AtD.col + n, A.col, Dc.col + n, diag + n],
        [P.data, AtD.data, A.data, Dc.data, -np.ones(m)],
        (n + m, n + m),
    )
    B.eliminate_zeros()  # (D - I) cancels on active rows; explicit zeros would add fill-in
    return B


class NewtonOperator:
    """``B`` as products only (``B z`` and ``B' z``), without assembling it."""

    def __init__(self, data: ConeData, D: Sparse) -> None:
        self.data = data
        self.D = D

    def matvec(self, z: FloatArray) -> FloatArray:
        n = self.data.n
        x, v = z[:n], z[n:]
        Dv = self.D @ v
        return np.concatenate([self.data.P @ x + self.data.A.T @ Dv, self.data.A @ x + Dv - v])

    def rmatvec(self, w: FloatArray) -> FloatArray:
        n = self.data.n
        w1, w2 = w[:n], w[n:]
        return np.concatenate(
            [self.data.P @ w1 + self.data.A.T @ w2, self.D.T @ (self.data.A @ w1 + w2) - w2]
        )

    def matrix(self) -> Sparse:
        return newton_matrix(self.data, self.D)


class LinearSystem:
    """Solves ``B z = r`` and ``B' z = r`` for one ``B``, factorized once.

    A sparse LU (SuperLU) is used when ``B`` is invertible.  When it is (numerically) singular
    the implicit function theorem does not apply: with ``strict`` a
    :class:`DegenerateDerivativeError` is raised, otherwise a
    :class:`DegenerateDerivativeWarning` is emitted and minimum-norm least-squares solutions
    are returned (dense SVD for ``n + m <= 3000``, LSMR beyond).
    """

    def __init__(self, B: Sparse, *, strict: bool = False, warn: bool = True) -> None:
        self.B = B
        self.size = shape2(B)[0]
        self.degenerate = False
        self.strict = strict
        self._lu: spla.SuperLU | None = None
        self._svd: tuple[FloatArray, FloatArray, FloatArray] | None = None
        self._condition: float | None = None
        # Set by ``near``: the LU is of a nearby matrix and solves are refined against ``B``.
        self._refine = False
        self._operator: NewtonOperator | None = None
        reason = ""
        if self.size == 0:
            self.method = "empty"
            return
        try:
            lu = spla.splu(B, permc_spec="COLAMD")
            pivots = np.abs(lu.U.diagonal())
            ratio = float(pivots.min() / pivots.max()) if pivots.max() > 0 else 0.0
            if ratio < SINGULAR_PIVOT_RATIO:
                reason = f"LU pivot ratio {ratio:.1e}"
            else:
                self._lu = lu
        except RuntimeError as exc:  # "Factor is exactly singular"
            reason = str(exc)
        if self._lu is not None:
            self.method = "sparse LU"
            return
        self.degenerate = True
        message = (
            f"the derivative system B is singular at this solution ({reason}): the implicit "
            "function theorem's hypothesis fails here (non-unique solution, linearly dependent "
            "active constraints, or a kink where the chosen Jacobian element is singular). "
        )
        if strict:
            raise DegenerateDerivativeError(message + "strict=True was requested.")
        if warn:
            warnings.warn(
                message + "Least-squares derivatives are returned; they need not be elements "
                "of a conservative Jacobian. Try kink='inactive' or kink='active', perturb the "
                "problem, or pass strict=True to raise instead.",
                DegenerateDerivativeWarning,
                stacklevel=4,
            )
        if self.size <= DENSE_LSTSQ_LIMIT:
            self.method = "least squares (dense SVD)"
            u, sv, vt = scipy.linalg.svd(B.toarray(), full_matrices=False)
            keep = sv > sv[0] * 1e-12 if sv.size and sv[0] > 0 else np.zeros(sv.size, bool)
            self._svd = (u[:, keep], sv[keep], vt[keep])
        else:
            self.method = "least squares (LSMR)"

    def near(self, operator: NewtonOperator) -> LinearSystem:
        """A system for ``operator``'s ``B`` that reuses this factorization of a nearby matrix.

        Solves are refined iteratively against the exact ``B`` (applied as products, never
        assembled), so they are exact to rounding; if the refinement does not converge
        quickly, ``B`` is assembled and factorized after all.
        """
        if self._lu is None:
            return LinearSystem(operator.matrix(), strict=self.strict, warn=False)
        other = copy.copy(self)
        other._B = None
        other._operator = operator
        other._condition = None
        other._refine = True
        other.method = "sparse LU (reused with iterative refinement)"
        return other

    @property
    def B(self) -> Sparse:
        """The matrix ``B`` (assembled on demand for a system made by ``near``)."""
        if self._B is None:
            assert self._operator is not None
            self._B = self._operator.matrix()
        return self._B

    @B.setter
    def B(self, value: Sparse) -> None:
        self._B = value

    def _lu_solve(self, rhs: FloatArray, transpose: bool) -> FloatArray:
        assert self._lu is not None
        trans = "T" if transpose else "N"
        z = self._lu.solve(rhs, trans=trans)
        if not self._refine:
            return z
        op = self._operator
        assert op is not None
        apply = op.rmatvec if transpose else op.matvec
        for _ in range(6):
            dz = self._lu.solve(rhs - apply(z), trans=trans)
            z = z + dz
            if np.linalg.norm(dz) <= 1e-15 * max(float(np.linalg.norm(z)), 1e-300):
                return z
        # Too far from the factorized matrix: factorize B itself.
        fresh = LinearSystem(op.matrix(), strict=self.strict, warn=True)
        self.__dict__.update(fresh.__dict__)
        return self.solve(rhs, transpose)

    def solve(self, rhs: FloatArray, transpose: bool = False) -> FloatArray:
        """``B^{-1} rhs`` (or ``B^{-T} rhs``); least-squares solutions when ``B`` is singular."""
        if self.size == 0:
            return np.zeros(0)
        if self._lu is not None:
            return self._lu_solve(rhs, transpose)
        if self._svd is not None:
            u, sv, vt = self._svd
            if transpose:
                return u @ ((vt @ rhs) / sv)
            return vt.T @ ((u.T @ rhs) / sv)
        op = self.B.T if transpose else self.B
        return spla.lsmr(op, rhs, atol=1e-14, btol=1e-14, maxiter=20 * self.size)[0]

    def condition(self) -> float:
        """Estimate of the 1-norm condition number ``||B||_1 ||B^{-1}||_1``."""
        if self._condition is None:
            if self.size == 0:
                self._condition = 1.0
            elif self.degenerate:
                self._condition = float("inf")
            else:
                norm_b = float(np.max(np.asarray(abs(self.B).sum(axis=0))))
                norm_inv = cast(float, spla.onenormest(_Inverse(self)))
                self._condition = norm_b * float(norm_inv)
        return self._condition


class _Inverse(spla.LinearOperator):
    """``B^{-1}`` as an operator, for the condition estimate."""

    def __init__(self, system: LinearSystem) -> None:
        super().__init__(dtype=np.float64, shape=(system.size, system.size))
        self.system = system

    def _matvec(self, x: FloatArray) -> FloatArray:
        return self.system.solve(np.ravel(x))

    def _rmatvec(self, x: FloatArray) -> FloatArray:
        return self.system.solve(np.ravel(x), transpose=True)


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

    Produced by :func:`solve_conic`.  ``vjp`` and ``jvp`` differentiate the solution with
    respect to the data ``(P, A, b, c)`` through the implicit function theorem applied to the
    residual ``F``; the factorization of ``B`` is computed once, on first use (or reused from
    the last polishing step), and shared by every later call.
    """

    def __init__(
        self,
        data: ConeData,
        cones: ConeSet,
        x: FloatArray,
        v: FloatArray,
        diagnostics: Diagnostics,
        *,
        kink: KinkPolicy,
        kink_tol: float,
        strict: bool,
        system: LinearSystem | None = None,
        D: Sparse | None = None,
    ) -> None:
        self.data = data
        self.cones = cones
        self.x = x
        self.v = v
        self.y = cones.project_dual(v)
        self.s = self.y - v
        self.diagnostics = diagnostics
        self.kink = kink
        self.kink_tol = kink_tol
        self.strict = strict
        self._system = system
        self._D = D

    # Factorizations cannot be pickled; a solution sent across processes refactorizes.
    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_system"] = None
        return state

    @property
    def D(self) -> Sparse:
        """The chosen element of the conservative Jacobian of ``Pi_{K*}`` at ``v``."""
        if self._D is None:
            self._D = self.cones.dual_jacobian(self.v, self.kink, self.kink_tol)
        return self._D

    @property
    def system(self) -> LinearSystem:
        """The factorized ``B`` (computed on first use)."""
        if self._system is None:
            self._system = LinearSystem(newton_matrix(self.data, self.D), strict=self.strict)
        self.diagnostics.linear_solve = self._system.method
        self.diagnostics.degenerate = self._system.degenerate
        return self._system

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
        n, m = self.data.n, self.data.m
        gx = np.zeros(n) if gx is None else np.asarray(gx, dtype=np.float64)
        gy = np.zeros(m) if gy is None else np.asarray(gy, dtype=np.float64)
        gs = np.zeros(m) if gs is None else np.asarray(gs, dtype=np.float64)
        gv = self.D.T @ (gy + gs) - gs
        lam = self.system.solve(np.concatenate([gx, gv]), transpose=True)
        lx, lv = lam[:n], lam[n:]
        (pr, pc), (ar, ac) = self.data.patterns
        x, y = self.x, self.y
        return DataTangent(
            P=-0.5 * (lx[pr] * x[pc] + lx[pc] * x[pr]),
            A=-(y[ar] * lx[ac] + lv[ar] * x[ac]),
            b=lv,
            c=-lx,
        )

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
        dz = self.system.solve(rhs)
        dx, dv = dz[:n], dz[n:]
        dy = self.D @ dv
        return dx, dy, dy - dv


@dataclasses.dataclass
class _Polished:
    x: FloatArray
    v: FloatArray
    residual: float
    steps: int
    outcome: str
    D: Sparse | None
    system: LinearSystem | None


def _kink_tol(kink_tol: float, res: float, v: FloatArray) -> float:
    """Distance to a kink below which the kink policy decides (relative, plus the residual)."""
    return kink_tol * max(1.0, float(np.abs(v).max(initial=0.0))) + res


def _polish(
    data: ConeData,
    cones: ConeSet,
    x: FloatArray,
    v: FloatArray,
    *,
    kink: KinkPolicy,
    kink_tol: float,
    max_iter: int,
    target: float,
    floor: float,
) -> _Polished:
    """Semismooth Newton on ``F`` from the solver's point, accepting only decreasing steps.

    The Newton matrix is ``B`` itself.  The factorization of the last ``B`` is returned when it
    is also ``B`` at the returned point (always so for polyhedral cones once the active set
    has settled), so that derivatives need no further factorization.
    """
    F = residual(data, cones, x, v)
    res = float(np.linalg.norm(F))
    D = cones.dual_jacobian(v, kink, _kink_tol(kink_tol, 0.0, v))
    system: LinearSystem | None = None
    steps = 0
    for _ in range(max_iter):
        if res <= target:
            return _Polished(x, v, res, steps, "converged", D, system)
        if system is None:
            system = LinearSystem(newton_matrix(data, D), warn=False)
            if system.degenerate:
                return _Polished(x, v, res, steps, "singular", D, None)
        dz = system.solve(-F)
        # Backtracking on ||F||: full steps near the solution, shorter ones while the active
        # set is still being identified.
        for alpha in 0.5 ** np.arange(11):
            x_new, v_new = x + alpha * dz[: data.n], v + alpha * dz[data.n :]
            F_new = residual(data, cones, x_new, v_new)
            res_new = float(np.linalg.norm(F_new))
            if res_new < (1.0 - 1e-4 * alpha) * res:
                break
        else:
            # Keep the current point (``system`` is B there).  A residual already at the
            # floating-point floor counts as converged.
            outcome = "converged" if res <= floor else "stalled"
            return _Polished(x, v, res, steps, outcome, D, system)
        steps += 1
        x, v, F, res = x_new, v_new, F_new, res_new
        D_new = cones.dual_jacobian(v, kink, _kink_tol(kink_tol, 0.0, v))
        change = float(np.abs(sp.csr_array(D_new - D).data).max(initial=0.0))
        if change > 1e-3:  # the active set moved: refactorize
            system = None
        elif change > 1e-14 and system is not None:  # a curved cone moved a little: reuse
            system = system.near(NewtonOperator(data, D_new))
        D = D_new
    outcome = "converged" if res <= target else "max_iter"
    return _Polished(x, v, res, steps, outcome, D, system)


def solve_conic(
    data: ConeData,
    cones: ConeSet,
    solver: Solver,
    *,
    kink: KinkPolicy = KinkPolicy.ACTIVE,
    polish: bool = True,
    polish_max_iter: int = 10,
    kink_tol: float = 1e-9,
    strict: bool = False,
) -> ConicSolution:
    """Solve, polish and prepare to differentiate one canonical cone program.

    Raises :class:`InfeasibleError`, :class:`UnboundedError` or :class:`SolverFailedError`
    when the solver returns no usable point, and warns with
    :class:`InaccurateSolutionWarning` when it returns an inaccurate one that polishing could
    not make accurate.
    """
    raw = solver.solve(data, cones.cones)
    if raw.status is SolverStatus.INFEASIBLE:
        raise _status_error(raw, InfeasibleError, "found the problem infeasible")
    if raw.status is SolverStatus.UNBOUNDED:
        raise _status_error(raw, UnboundedError, "found the problem unbounded")
    if raw.status is SolverStatus.FAILED or not raw.has_point:
        raise _status_error(raw, SolverFailedError, "failed")
    assert raw.x is not None and raw.y is not None and raw.s is not None
    scale = 1.0 + max(
        float(np.abs(data.b).max(initial=0.0)), float(np.abs(data.c).max(initial=0.0))
    )
    x, v = raw.x.copy(), raw.y - raw.s
    res0 = float(np.linalg.norm(residual(data, cones, x, v)))
    if polish:
        p = _polish(
            data,
            cones,
            x,
            v,
            kink=kink,
            kink_tol=kink_tol,
            max_iter=polish_max_iter,
            target=1e-13 * scale,
            floor=1e-9 * scale,
        )
    else:
        p = _Polished(x, v, res0, 0, "off", None, None)
    status = raw.status
    if status is SolverStatus.INCOMPLETE:
        if p.residual > 1e-7 * scale:
            raise _status_error(raw, SolverFailedError, "stopped without converging")
        status = SolverStatus.INACCURATE
    # The same tolerance as the Jacobian element polishing used (the residual is then at the
    # floating-point floor); without polishing the point is inexact and the residual counts.
    tol = _kink_tol(kink_tol, 0.0 if polish else p.residual, p.v)
    diagnostics = Diagnostics(
        status=status,
        solver=raw.solver,
        raw_status=raw.raw_status,
        iterations=raw.iterations,
        solve_time=raw.solve_time,
        residual_before_polish=res0,
        residual=p.residual,
        polish_steps=p.steps,
        polish=p.outcome,
        kink_policy=kink.value,
        kinks=cones.kinks(p.v, tol),
    )
    if p.outcome != "converged" and (
        status is SolverStatus.INACCURATE or (polish and p.residual > 1e-6 * scale)
    ):
        warnings.warn(
            f"{raw.solver} returned a solution (status '{raw.raw_status}') whose KKT residual "
            f"is {p.residual:.2e} after polishing ({p.outcome}, {p.steps} steps). Values and "
            "derivatives at this point are approximate: tighten the solver settings or check "
            "the problem's scaling.",
            InaccurateSolutionWarning,
            stacklevel=3,
        )
    return ConicSolution(
        data,
        cones,
        p.x,
        p.v,
        diagnostics,
        kink=kink,
        kink_tol=tol,
        strict=strict,
        system=p.system,
        D=p.D,
    )
