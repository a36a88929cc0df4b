"""``compile`` and the :class:`Program` it returns: solve, batch, differentiate."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from ._compile import Compiled, canonicalize
from ._cones import KinkPolicy, as_kink_policy
from ._conic import ConeSet, ConicSolution, DataTangent, NewtonStructure, solve_conic
from ._diagnostics import Diagnostics
from ._errors import ParameterError, SolverError
from ._solvers import ConeData, DataLayout, Solver, SolverLike, get_solver
from ._tolerances import Tolerances

__all__ = ["BatchSolution", "Program", "Solution", "compile"]

FloatArray = NDArray[np.float64]


class Program:
    """A CVXPY problem compiled to a differentiable parametric cone program.

    Create it with :func:`cvximplicit.compile`.  ``solve`` maps parameter values (numpy in)
    to a :class:`Solution` (numpy out) that carries reverse- and forward-mode derivatives;
    ``solve_batch`` does the same for many parameter values at once.
    """

    def __init__(
        self,
        compiled: Compiled,
        *,
        problem: cp.Problem,
        parameters: tuple[cp.Parameter, ...],
        variables: tuple[Any, ...],
        solver: Solver,
        kink: KinkPolicy,
        polish: bool,
        strict: bool,
        tolerances: Tolerances | None = None,
    ) -> None:
        self._compiled = compiled
        self._cones = ConeSet(compiled.cones)
        self.tolerances = Tolerances() if tolerances is None else tolerances
        # Worked out once per program, shared by every solve (and pickled with tasks).
        self._prepared = _Prepared.build(compiled, self._cones, self.tolerances)
        self.problem = problem
        self.parameters = parameters
        self.variables = variables
        self.solver = solver
        self.kink = kink
        self.polish = polish
        self.strict = strict
        solver.check_cones(self._cones.cones)

    def __repr__(self) -> str:
        c = self._compiled
        cones = ", ".join(repr(k) for k in self._cones.cones)
        return (
            f"Program(n={c.n}, m={c.m}, parameters={[p.name for p in c.parameters]}, "
            f"outputs={[o.name for o in c.outputs]}, cones=[{cones}], solver={self.solver!r})"
        )

    @property
    def n(self) -> int:
        """Number of variables of the canonical program."""
        return self._compiled.n

    @property
    def m(self) -> int:
        """Number of constraint rows of the canonical program."""
        return self._compiled.m

    @property
    def cones(self) -> tuple[Any, ...]:
        """The cones of the canonical program, in row order."""
        return self._cones.cones

    # ------------------------------------------------------------------ data
    def _check(self, values: Sequence[ArrayLike], batch: int | None = None) -> list[FloatArray]:
        specs = self._compiled.parameters
        if len(values) != len(specs):
            names = [p.name for p in specs]
            raise ParameterError(
                f"expected {len(specs)} parameter values (for {names}), got {len(values)}"
            )
        return [spec.check(v, batch) for spec, v in zip(specs, values)]

    def _stack(self, arrays: Sequence[FloatArray]) -> FloatArray:
        specs = self._compiled.parameters
        if not specs:
            return np.zeros(0)
        return np.concatenate([s.flatten(a, False) for s, a in zip(specs, arrays)])

    def canonical_data(self, *values: ArrayLike) -> ConeData:
        """The canonical data ``(P, A, b, c)`` for these parameter values."""
        return _data_from_stacked(self._compiled, self._stack(self._check(values)), self._prepared)

    # ----------------------------------------------------------------- solve
    def _task(self, index: int, u: FloatArray, solver: Solver) -> _Task:
        return _Task(
            self._compiled,
            self._prepared,
            index,
            u,
            solver,
            self.kink,
            self.polish,
            self.strict,
            self.tolerances,
        )

    def solve(
        self,
        *values: ArrayLike,
        solver: SolverLike = None,
        solver_args: dict[str, Any] | None = None,
    ) -> Solution:
        """Solve for one set of parameter values, given in the order of ``parameters``.

        Args:
            *values: one array per parameter, of the parameter's shape.
            solver: override the program's solver for this call.
            solver_args: solver settings for this call, on top of the solver's own.

        Raises:
            ParameterError: wrong number, shape or dtype of values, NaN/Inf, values outside
                a parameter's declared domain (nonneg, PSD, ...).
            InfeasibleError, UnboundedError, SolverFailedError: the inner solve failed.
        """
        arrays = self._check(values)
        chosen = self._resolve_solver(solver, solver_args)
        u = self._stack(arrays)
        return Solution(self._compiled, self._task(-1, u, chosen).run(), u)

    def _resolve_solver(self, solver: SolverLike, solver_args: dict[str, Any] | None) -> Solver:
        chosen = self.solver if solver is None else get_solver(solver)
        chosen = chosen.with_settings(solver_args)
        if chosen is not self.solver:
            chosen.check_cones(self._cones.cones)
        return chosen

    def solve_batch(
        self,
        *values: ArrayLike,
        executor: Executor | None = None,
        solver: SolverLike = None,
        solver_args: dict[str, Any] | None = None,
    ) -> BatchSolution:
        """Solve many instances at once.

        Each value either has the parameter's shape (shared by the whole batch) or one more
        leading axis, the batch axis (all batched values must agree on its length).

        Args:
            executor: any :class:`concurrent.futures.Executor` (threads, processes, a Dask
                client's executor, ...).  By default a thread pool with one worker per CPU is
                used when the solver releases the GIL (Clarabel, SCS and OSQP do), else the
                instances are solved in turn.
            solver, solver_args: as in :meth:`solve`.

        Raises:
            SolverError: as in :meth:`solve`, with ``batch_index`` naming the failing element.
        """
        specs = self._compiled.parameters
        if len(values) != len(specs):
            raise ParameterError(f"expected {len(specs)} parameter values, got {len(values)}")
        batched = []
        sizes = set()
        for spec, v in zip(specs, values):
            ndim = np.ndim(v)
            if ndim == len(spec.shape) + 1:
                batched.append(True)
                sizes.add(int(np.shape(v)[0]))
            else:
                batched.append(False)
        if len(sizes) > 1:
            raise ParameterError(f"batched parameters disagree on the batch size: {sorted(sizes)}")
        size = sizes.pop() if sizes else 1
        if size < 1:
            raise ParameterError("the batch is empty: batched parameters need a batch size >= 1")
        arrays = [
            spec.check(v, size if is_b else None) for spec, v, is_b in zip(specs, values, batched)
        ]
        flat = [s.flatten(a, b) for s, a, b in zip(specs, arrays, batched)]
        stacked = np.zeros((size, sum(s.size for s in specs)))
        for spec, f in zip(specs, flat):
            stacked[:, spec.offset : spec.offset + spec.size] = f
        chosen = self._resolve_solver(solver, solver_args)
        tasks = [self._task(i, stacked[i], chosen) for i in range(size)]
        conics = list(_run(tasks, executor, chosen))
        return BatchSolution(
            [Solution(self._compiled, c, stacked[i]) for i, c in enumerate(conics)],
            tuple(batched),
            self._compiled,
        )


@dataclasses.dataclass(frozen=True)
class _Prepared:
    """What a program works out once: its cones, the layout of its data and of ``B``."""

    cones: ConeSet
    layout: DataLayout
    newton: NewtonStructure

    @staticmethod
    def build(compiled: Compiled, cones: ConeSet, tol: Tolerances) -> _Prepared:
        n, m = compiled.n, compiled.m
        patterns = []
        for indices, indptr in (
            (compiled.P_indices, compiled.P_indptr),
            (compiled.A_indices, compiled.A_indptr),
        ):
            cols = np.repeat(np.arange(indptr.size - 1, dtype=np.int64), np.diff(indptr))
            patterns.append((indices.astype(np.int64), cols))
        return _Prepared(
            cones=cones,
            layout=DataLayout(n, compiled.P_indices, compiled.P_indptr),
            newton=NewtonStructure(n, m, patterns[0], patterns[1], cones, tol),
        )


def _data_from_stacked(compiled: Compiled, u: FloatArray, prepared: _Prepared) -> ConeData:
    """The canonical data ``(P, A, b, c) = G u + g0`` on the fixed sparsity patterns."""
    P, A, b, c = compiled.split_data(compiled.data_vector(u))
    n = compiled.n
    return ConeData(
        P=sp.csc_array((P, compiled.P_indices, compiled.P_indptr), shape=(n, n)),
        A=sp.csc_array((A, compiled.A_indices, compiled.A_indptr), shape=(compiled.m, n)),
        b=b.copy(),
        c=c.copy(),
        layout=prepared.layout,
    )


@dataclasses.dataclass(frozen=True)
class _Task:
    """One solve, free of CVXPY objects so that process pools and Dask pickle it cheaply."""

    compiled: Compiled
    prepared: _Prepared
    index: int
    u: FloatArray
    solver: Solver
    kink: KinkPolicy
    polish: bool
    strict: bool
    tolerances: Tolerances

    def run(self) -> ConicSolution:
        start = time.perf_counter()
        try:
            conic = solve_conic(
                _data_from_stacked(self.compiled, self.u, self.prepared),
                self.prepared.cones,
                self.solver,
                kink=self.kink,
                polish=self.polish,
                strict=self.strict,
                tolerances=self.tolerances,
                structure=self.prepared.newton,
            )
            conic.diagnostics.timings.total = time.perf_counter() - start
            return conic
        except SolverError as exc:
            if self.index < 0:
                raise
            raise exc.with_batch_index(self.index) from exc


def _run_task(task: _Task) -> ConicSolution:
    return task.run()


def _run(tasks: list[_Task], executor: Executor | None, solver: Solver) -> Iterator[ConicSolution]:
    if executor is not None:
        return executor.map(_run_task, tasks)
    workers = min(len(tasks), os.cpu_count() or 1)
    if workers <= 1 or not solver.releases_gil:
        return map(_run_task, tasks)
    with ThreadPoolExecutor(workers) as pool:
        return iter(list(pool.map(_run_task, tasks)))


class Solution:
    """The solution for one set of parameter values, with its derivatives.

    Attributes:
        values: the requested outputs, in the order of ``variables`` (primal values for
            variables, dual values for constraints), shaped as CVXPY shapes them.
    """

    def __init__(self, compiled: Compiled, conic: ConicSolution, u: FloatArray) -> None:
        self._compiled = compiled
        self.conic = conic
        self._u = u
        self.values: tuple[FloatArray, ...] = tuple(
            o.value(conic.x, conic.y) for o in compiled.outputs
        )

    def __repr__(self) -> str:
        return f"Solution(status={self.conic.diagnostics.status.value}, outputs={len(self.values)})"

    @property
    def diagnostics(self) -> Diagnostics:
        """Status, residuals, certification, polishing, kinks, the time split, and (once a
        derivative was taken or :meth:`condition` called) the derivative system.  Reading it
        computes nothing."""
        return self.conic.diagnostics

    @property
    def info(self) -> Diagnostics:
        """Alias of :attr:`diagnostics`."""
        return self.conic.diagnostics

    def condition(self) -> float:
        """Estimate the 1-norm condition number of the derivative matrix ``B`` (factorizing
        it if no derivative was taken yet); also recorded in :attr:`diagnostics`."""
        return self.conic.condition()

    def _cotangent(self, cotangents: Sequence[ArrayLike | None]) -> tuple[FloatArray, FloatArray]:
        outputs = self._compiled.outputs
        if len(cotangents) != len(outputs):
            raise ValueError(
                f"expected {len(outputs)} cotangents (one per output, None for zero), "
                f"got {len(cotangents)}"
            )
        gx = np.zeros(self._compiled.n)
        gy = np.zeros(self._compiled.m)
        for k, (out, g) in enumerate(zip(outputs, cotangents)):
            if g is None:
                continue
            arr = np.asarray(g, dtype=np.float64)
            if arr.shape != out.shape:
                raise ValueError(
                    f"cotangent for {out.name}: expected shape {out.shape}, got {arr.shape}"
                )
            out.add_cotangent(arr, gx, gy, self.values[k])
        return gx, gy

    def vjp(self, *cotangents: ArrayLike | None) -> tuple[FloatArray, ...]:
        """Reverse mode: gradients with respect to each parameter of ``sum_k <g_k, out_k>``.

        Args:
            *cotangents: one array per output (shape of that output), or ``None`` for zero.

        Returns:
            One array per parameter, shaped like it.  The factorization of ``B`` is shared by
            all calls on this solution.
        """
        gx, gy = self._cotangent(cotangents)
        t = self.conic.vjp(gx, gy)
        gd = np.concatenate([t.P, t.A, t.b, t.c])
        gu = self._compiled.data_cotangent(self._u, gd)
        return tuple(
            spec.unflatten(gu[spec.offset : spec.offset + spec.size])
            for spec in self._compiled.parameters
        )

    def jvp(self, *tangents: ArrayLike | None) -> tuple[FloatArray, ...]:
        """Forward mode: directional derivatives of each output along parameter tangents.

        Args:
            *tangents: one array per parameter (its shape), or ``None`` for zero.

        Returns:
            One array per output, shaped like it.
        """
        specs = self._compiled.parameters
        if len(tangents) != len(specs):
            raise ValueError(
                f"expected {len(specs)} tangents (one per parameter), got {len(tangents)}"
            )
        du = np.zeros(sum(s.size for s in specs))
        for spec, t in zip(specs, tangents):
            if t is None:
                continue
            arr = np.asarray(t, dtype=np.float64)
            if arr.shape != spec.shape:
                raise ValueError(
                    f"tangent for {spec.name}: expected shape {spec.shape}, got {arr.shape}"
                )
            du[spec.offset : spec.offset + spec.size] = arr.ravel(order="F")
        dd = self._compiled.data_tangent(self._u, du)
        P, A, b, c = self._compiled.split_data(dd)
        dx, dy, _ = self.conic.jvp(DataTangent(P=P, A=A, b=b, c=c))
        return tuple(
            o.tangent(dx, dy, value) for o, value in zip(self._compiled.outputs, self.values)
        )


class BatchSolution:
    """Solutions of a batch, with batched derivatives.

    ``values`` stacks each output along a leading batch axis.  ``vjp`` takes batched
    cotangents and returns, per parameter, batched gradients for batched parameters and the
    sum over the batch for shared ones; ``jvp`` takes tangents batched or shared.
    """

    def __init__(
        self, solutions: list[Solution], batched: tuple[bool, ...], compiled: Compiled
    ) -> None:
        self.solutions = solutions
        self.batched = batched
        self._compiled = compiled
        self.values: tuple[FloatArray, ...] = tuple(
            np.stack([s.values[k] for s in solutions]) for k in range(len(compiled.outputs))
        )

    def __len__(self) -> int:
        return len(self.solutions)

    def __getitem__(self, index: int) -> Solution:
        return self.solutions[index]

    @property
    def diagnostics(self) -> list[Diagnostics]:
        """Per-element diagnostics (see :attr:`Solution.diagnostics`)."""
        return [s.diagnostics for s in self.solutions]

    def vjp(self, *cotangents: ArrayLike | None) -> tuple[FloatArray, ...]:
        """Batched reverse mode; cotangents carry the batch axis first."""
        arrays = [None if g is None else np.asarray(g, dtype=np.float64) for g in cotangents]
        per = [
            s.vjp(*[None if g is None else g[i] for g in arrays])
            for i, s in enumerate(self.solutions)
        ]
        out = []
        for k, is_batched in enumerate(self.batched):
            stacked = np.stack([p[k] for p in per])
            out.append(stacked if is_batched else stacked.sum(axis=0))
        return tuple(out)

    def jvp(self, *tangents: ArrayLike | None) -> tuple[FloatArray, ...]:
        """Batched forward mode; a tangent may be batched (leading axis) or shared."""
        specs = self._compiled.parameters
        arrays = [None if t is None else np.asarray(t, dtype=np.float64) for t in tangents]
        per = []
        for i, s in enumerate(self.solutions):
            args = []
            for spec, t in zip(specs, arrays):
                if t is not None and t.ndim == len(spec.shape) + 1:
                    t = t[i]
                args.append(t)
            per.append(s.jvp(*args))
        return tuple(np.stack([p[k] for p in per]) for k in range(len(self._compiled.outputs)))


def compile(
    problem: cp.Problem,
    parameters: Sequence[cp.Parameter],
    variables: Sequence[Any],
    *,
    solver: SolverLike = None,
    solver_args: dict[str, Any] | None = None,
    kink: KinkPolicy | str = KinkPolicy.ACTIVE,
    polish: bool = True,
    strict: bool = False,
    tolerances: Tolerances | None = None,
    gp: bool = False,
    verbose: bool = False,
) -> Program:
    r"""Compile a DPP CVXPY problem into a differentiable :class:`Program`.

    The problem is canonicalised once to

    .. math::
        \min_x \tfrac12 x^\top P x + c^\top x \quad \text{s.t.}\quad Ax + s = b,\ s \in K

    with ``(P, A, b, c)`` an affine function of the parameters (the quadratic objective is
    kept, so QPs are differentiated exactly).  Each solve is followed by semismooth Newton
    polishing on the normal-map residual ``F`` and derivatives come from the nonsmooth
    implicit function theorem: ``J = -B^{-1} dF/dtheta`` with ``B`` one element of the
    conservative Jacobian of ``F`` in ``(x, v)``, chosen at kinks by ``kink``.

    Args:
        problem: a DPP ``cvxpy.Problem`` (``quad_form(x, Q)`` with a PSD parameter ``Q`` in
            the objective is accepted).
        parameters: every parameter of the problem, in the order values will be passed.
        variables: the outputs: CVXPY variables (primal values) and constraints (their dual
            values), in the order they will be returned.
        solver: a :class:`Solver` instance or class, a name (``"CLARABEL"``, ``"SCS"``,
            ``"OSQP"``), or ``None`` for Clarabel.
        solver_args: settings passed to the solver on top of its defaults.
        kink: :class:`KinkPolicy` (``"active"`` or ``"inactive"``) choosing the Jacobian
            element at weakly active constraints.
        polish: refine the solver's point by safeguarded semismooth Newton steps.
        strict: raise :class:`DegenerateDerivativeError` instead of warning and returning
            least-squares derivatives when ``B`` is singular.
        tolerances: the :class:`Tolerances` of polishing, certification, kink detection and
            the derivative's linear algebra (defaults suit double precision).
        verbose: let the solver print its progress (shorthand for ``solver_args``).
        gp: the problem is a (DPP) geometric program: CVXPY's log-log transformation is
            applied, parameters enter through their logarithms (so they must be positive) and
            variables are returned as ``exp`` of the cone program's variables, with the chain
            rule applied to both in every derivative.

    Raises:
        NonDPPError: the problem is not DPP.
        ParameterError: parameters unknown to the problem, or problem parameters missing.
        UnsupportedProblemError: integer variables, unsupported cones, or an output that is
            not part of the canonical problem.

    Example:
        >>> import cvxpy as cp, numpy as np, cvximplicit as ci
        >>> x = cp.Variable(2); b = cp.Parameter(2)
        >>> prob = cp.Problem(cp.Minimize(cp.sum_squares(x - b)), [x >= 0])
        >>> program = ci.compile(prob, [b], [x])
        >>> sol = program.solve(np.array([1.0, -1.0]))
        >>> np.round(sol.values[0], 6) + 0.0
        array([1., 0.])
        >>> (gb,) = sol.vjp(np.ones(2))
        >>> np.round(gb, 6) + 0.0
        array([1., 0.])
    """
    params = tuple([parameters] if isinstance(parameters, cp.Parameter) else parameters)
    outs = tuple(variables) if isinstance(variables, (list, tuple)) else (variables,)
    compiled = canonicalize(problem, params, outs, gp=gp)
    return Program(
        compiled,
        problem=problem,
        parameters=params,
        variables=outs,
        solver=get_solver(
            solver, {**({"verbose": True} if verbose else {}), **(solver_args or {})}
        ),
        kink=as_kink_policy(kink),
        polish=polish,
        strict=strict,
        tolerances=tolerances,
    )
