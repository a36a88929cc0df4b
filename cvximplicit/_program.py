"""``compile`` and the `Program` it returns: solve, batch, differentiate."""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any, cast

import cvxpy as cp
import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._batch import (
    BatchData,
    BatchEngine,
    Embedded,
    EngineResult,
    OnFailure,
    ProgramSpec,
    as_on_failure,
    batch_factorize,
    run_parallel,
    split_rows,
)
from ._blas import single_thread_blas
from ._compile import Compiled, OutputMap, ParameterSpec, canonicalize
from ._cones import KinkPolicy, as_kink_policy
from ._conic import (
    ConeSet,
    ConicSolution,
    DataTangent,
    NewtonStructure,
    solve_conic,
    warm_start_conic,
)
from ._diagnostics import Diagnostics
from ._errors import ParameterError, SolverError
from ._solvers import ConeData, DataLayout, Solver, SolverLike, get_solver
from ._tolerances import Tolerances
from ._typing import IntArray, Sparse, shape2

__all__ = ["BatchSolution", "Program", "Solution", "compile"]

FloatArray = NDArray[np.float64]


class Program:
    """A CVXPY problem compiled to a differentiable parametric cone program.

    Create it with `cvximplicit.compile()`.  ``solve`` maps parameter values (numpy in)
    to a `Solution` (numpy out) that carries reverse- and forward-mode derivatives;
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
        self._engine = BatchEngine(
            ProgramSpec(
                n=compiled.n,
                m=compiled.m,
                P_indices=compiled.P_indices,
                P_indptr=compiled.P_indptr,
                A_indices=compiled.A_indices,
                A_indptr=compiled.A_indptr,
                cones=self._cones,
                newton=self._prepared.newton,
                layout=self._prepared.layout,
            )
        )
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

    @property
    def parameter_specs(self) -> tuple[ParameterSpec, ...]:
        """Read-only specs of the parameters, in call order: name, shape, position, domain
        (what adapters need to validate and batch values)."""
        return self._compiled.parameters

    @property
    def output_specs(self) -> tuple[OutputMap, ...]:
        """Read-only specs of the outputs, in order: name, shape, primal or dual."""
        return self._compiled.outputs

    # ------------------------------------------------------------------ batching
    def batch_shape(self, *values: Any) -> tuple[int, ...]:
        """Validate parameter values for a batched call; return their common leading shape.

        Each value has its parameter's shape preceded by any number of leading (batch) axes;
        the leading shapes broadcast by NumPy's rules, so a value without them is shared by
        the whole batch.  Only ``.shape`` and ``.dtype`` are read, so NumPy, PyTorch and JAX
        arrays (JAX tracers included) are validated alike: the adapters call this before
        anything is traced or solved.

        Raises:
            ParameterError: a wrong number of values, a complex or non-numeric dtype, trailing
                axes other than the parameter's shape, or leading shapes that do not
                broadcast.

        Examples:
            >>> import cvxpy as cp, numpy as np, cvximplicit as ci
            >>> x, b = cp.Variable(2), cp.Parameter(2)
            >>> program = ci.compile(cp.Problem(cp.Minimize(cp.sum_squares(x - b))), [b], [x])
            >>> program.batch_shape(np.zeros((4, 3, 2)))
            (4, 3)
        """
        specs = self._specs_for(values)
        leads = []
        for spec, value in zip(specs, values):
            has_dtype = hasattr(value, "dtype") and hasattr(value, "shape")
            arr = value if has_dtype else np.asarray(value)
            spec.check_dtype(arr.dtype)
            leads.append(spec.leading_shape(arr.shape))
        try:
            return tuple(np.broadcast_shapes(*leads)) if leads else ()
        except ValueError:
            which = ", ".join(f"{s.label}: {lead}" for s, lead in zip(specs, leads))
            raise ParameterError(
                f"the leading (batch) shapes of the values do not broadcast ({which}); give "
                "batched values the same leading shape, or none to share a value"
            ) from None

    def flatten_batch(self, values: Sequence[ArrayLike], lead: tuple[int, ...]) -> list[FloatArray]:
        """The values broadcast to ``lead + shape`` and reshaped to ``(prod(lead), *shape)``
        (float64): the arguments of `solve_batch()` for a call whose leading shape is
        ``lead`` (from `batch_shape()`)."""
        size = int(np.prod(lead)) if lead else 1
        return [
            np.broadcast_to(np.asarray(v, np.float64), lead + s.shape).reshape((size, *s.shape))
            for v, s in zip(values, self._compiled.parameters)
        ]

    # ------------------------------------------------------------------ data
    def _specs_for(self, values: Sequence[Any]) -> tuple[ParameterSpec, ...]:
        """The parameter specs, after checking that ``values`` has one value per parameter."""
        specs = self._compiled.parameters
        if len(values) != len(specs):
            raise ParameterError(
                f"expected {len(specs)} parameter values (for {[s.name for s in specs]}), "
                f"got {len(values)}"
            )
        return specs

    def _check(self, values: Sequence[ArrayLike], batch: int | None = None) -> list[FloatArray]:
        specs = self._specs_for(values)
        return [spec.check(v, batch, specs) for spec, v in zip(specs, values)]

    def _stack(self, arrays: Sequence[FloatArray]) -> FloatArray:
        specs = self._compiled.parameters
        if not specs:
            return np.zeros(0)
        return np.concatenate([s.flatten(a, False) for s, a in zip(specs, arrays)])

    def canonical_data(self, *values: ArrayLike) -> ConeData:
        """The canonical data ``(P, A, b, c)`` for these parameter values (matrices of their
        own: internally the index arrays are shared between solves)."""
        data = _data_from_stacked(self._compiled, self._stack(self._check(values)), self._prepared)
        return dataclasses.replace(data, P=data.P.copy(), A=data.A.copy())

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
        warm_start: Solution | None = None,
    ) -> Solution:
        """Solve for one set of parameter values, given in the order of ``parameters``.

        Args:
            *values: one array per parameter, of the parameter's shape.
            solver: override the program's solver for this call.
            solver_args: solver settings for this call, on top of the solver's own.
            warm_start: a previous solution of this program.  Semismooth Newton on the
                optimality residual starts from it with the new data; if it reaches the
                polishing target within ``Tolerances.warm_max_iter`` steps, that exact,
                certified point is returned without a solver call (``diagnostics.start ==
                "warm"``), otherwise the solver runs as usual and ``diagnostics.start_reason``
                says why.

        Raises:
            ParameterError: wrong number, shape or dtype of values, NaN/Inf, values outside
                a parameter's declared domain (nonneg, PSD, ...).
            InfeasibleError, UnboundedError, SolverFailedError: the inner solve failed.
        """
        arrays = self._check(values)
        chosen = self._resolve_solver(solver, solver_args)
        u = self._stack(arrays)
        reason = ""
        data = None
        if warm_start is not None:
            self._check_previous(warm_start)
            data = _data_from_stacked(self._compiled, u, self._prepared)
            warm = self._warm(data, warm_start.conic)
            if isinstance(warm, ConicSolution):
                return Solution(self._compiled, warm, u)
            reason = warm
        conic = self._task(-1, u, chosen).run(data)
        conic.diagnostics.start_reason = reason
        return Solution(self._compiled, conic, u)

    def _check_previous(self, previous: Solution | BatchSolution) -> None:
        if previous._compiled is not self._compiled:
            raise ParameterError(
                "warm_start must be a solution of this program (from its solve or solve_batch)"
            )

    def _warm(self, data: ConeData, previous: ConicSolution) -> ConicSolution | str:
        """A warm start from ``previous`` for the program data ``data`` (or why not)."""
        start = time.perf_counter()
        out = warm_start_conic(
            data,
            self._cones,
            previous.x,
            previous.v,
            previous=previous,
            kink=self.kink,
            tolerances=self.tolerances,
            strict=self.strict,
            structure=self._prepared.newton,
        )
        if isinstance(out, ConicSolution):
            out.diagnostics.timings.total = time.perf_counter() - start
        return out

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
        on_failure: OnFailure | str = OnFailure.RAISE,
        warm_start: BatchSolution | None = None,
    ) -> BatchSolution:
        """Solve many instances at once.

        Each value either has the parameter's shape (shared by the whole batch) or one more
        leading axis, the batch axis (all batched values must agree on its length).

        The solver runs once per element (on a thread pool when it releases the GIL, as
        Clarabel, SCS and OSQP do) or once for the whole batch (backends with a batched
        solver, such as Moreau); polishing, certification and derivatives then run
        vectorised across the batch.  Elements the vectorised path cannot certify go
        through the single-problem path one by one.

        Args:
            executor: any `concurrent.futures.Executor` (threads, processes, a Dask
                client's executor, ...): the batch is cut into one chunk per CPU and each
                chunk runs the vectorised path on a worker.  Results equal the local path's.
            solver: as in `solve()`.
            solver_args: as in `solve()`.
            on_failure: ``"raise"`` (default): the first failed element's error is raised,
                with ``batch_index`` naming it.  ``"nan"``: failed elements (infeasible,
                unbounded, solver failure) get NaN values and contribute zero to
                derivatives; `BatchSolution.ok` and `BatchSolution.errors` say
                which failed and why.
            warm_start: a previous batch of this program with the same size: each element
                starts from its previous solution as in `solve()`; the elements whose
                warm start is not accepted (and all of them when the size changed) are solved
                cold, together.

        Raises:
            SolverError: with ``on_failure="raise"``, as in `solve()`.
        """
        policy = as_on_failure(on_failure)
        stacked, batched = self._stack_batch(values)
        chosen = self._resolve_solver(solver, solver_args)
        data = self._batch_data(stacked)
        if warm_start is None:
            result = self._cold_batch(stacked, data, chosen, executor)
        else:
            result = self._warm_batch(stacked, data, chosen, executor, warm_start)
        errors = [None if e is None else e.with_batch_index(i) for i, e in enumerate(result.errors)]
        if policy is OnFailure.RAISE:
            for e in errors:
                if e is not None:
                    raise e
        return BatchSolution(self, result, errors, stacked, data, tuple(batched))

    def _cold_batch(
        self, stacked: FloatArray, data: BatchData, solver: Solver, executor: Executor | None
    ) -> EngineResult:
        if executor is None and data.size == 1:  # nothing to vectorise: the single path
            return self._single(stacked[0], solver)
        if executor is None:
            return self._engine.solve(
                data,
                solver,
                kink=self.kink,
                polish=self.polish,
                strict=self.strict,
                tol=self.tolerances,
            )
        return _run_chunks(
            self._engine,
            data,
            solver,
            executor,
            self.kink,
            self.polish,
            self.strict,
            self.tolerances,
        )

    def _warm_batch(
        self,
        stacked: FloatArray,
        data: BatchData,
        solver: Solver,
        executor: Executor | None,
        previous: BatchSolution,
    ) -> EngineResult:
        """Warm starts element by element (on the CPUs' threads); the rest solved cold."""
        self._check_previous(previous)
        k = data.size
        reasons = [""] * k
        warm: dict[int, ConicSolution] = {}
        warm_fact: Embedded | None = None
        if len(previous) != k:
            reasons = [f"the batch size changed ({len(previous)} -> {k})"] * k
        elif self._prepared.newton.batched(self.tolerances) and self.polish:  # vectorised
            rows = np.array([i for i in range(k) if previous.solutions[i] is not None])
            for i in range(k):
                if previous.solutions[i] is None:
                    reasons[i] = "the previous solve of this element failed"
            if rows.size:
                prev = [cast(Solution, previous.solutions[i]).conic for i in rows]
                done = self._engine.polish_rows(
                    data,
                    rows,
                    np.stack([c.x for c in prev]),
                    np.stack([c.v for c in prev]),
                    kink=self.kink,
                    strict=self.strict,
                    tol=self.tolerances,
                )
                warm = done.conics
                warm_fact = done.factorization
                for i in rows:
                    if int(i) not in warm:
                        reasons[i] = (
                            "Newton from the previous solution did not reach the polishing "
                            f"target within {self.tolerances.warm_max_iter} fast steps"
                        )
        else:

            def attempt(i: int) -> ConicSolution | str:
                prev = previous.solutions[i]
                if prev is None:
                    return "the previous solve of this element failed"
                return self._warm(data.element(i), prev.conic)

            chunks = split_rows(k, self._prepared.newton.size)
            parts = run_parallel(lambda rows: [attempt(i) for i in range(k)[rows]], chunks)
            for i, out in enumerate(o for part in parts for o in part):
                if isinstance(out, ConicSolution):
                    warm[i] = out
                else:
                    reasons[i] = out
        cold_rows = np.array([i for i in range(k) if i not in warm], dtype=np.int64)
        cold = (
            self._cold_batch(stacked[cold_rows], data.take(cold_rows), solver, executor)
            if cold_rows.size
            else None
        )
        result = _merge(k, self._compiled, self._cones, cold_rows, cold, warm, warm_fact)
        for i, conic in enumerate(result.conics):
            if conic is not None and i not in warm:
                conic.diagnostics.start_reason = reasons[i]
        return result

    def _single(self, u: FloatArray, solver: Solver) -> EngineResult:
        """A batch of one through the single-problem path."""
        result = EngineResult.empty(1, self.n, self.m, int(self._cones.pattern[0].size))
        try:
            conic = self._task(-1, u, solver).run()
        except SolverError as exc:
            result.errors[0] = exc
            return result
        result.put(0, conic)
        result.solver_time = conic.diagnostics.timings.setup + conic.diagnostics.timings.solve
        return result

    def _stack_batch(self, values: Sequence[ArrayLike]) -> tuple[FloatArray, list[bool]]:
        """Validate batched and shared values; stack them as ``(batch, stacked size)``."""
        specs = self._specs_for(values)
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
            which = ", ".join(
                f"{spec.label}: {np.shape(v)[0]}" for spec, v, b in zip(specs, values, batched) if b
            )
            raise ParameterError(
                f"batched parameters disagree on the batch size ({which}); give every batched "
                "value the same leading batch axis, or none to share it across the batch"
            )
        size = sizes.pop() if sizes else 1
        if size < 1:
            raise ParameterError("the batch is empty: batched parameters need a batch size >= 1")
        arrays = [
            spec.check(v, size if is_b else None, specs)
            for spec, v, is_b in zip(specs, values, batched)
        ]
        flat = [s.flatten(a, b) for s, a, b in zip(specs, arrays, batched)]
        stacked = np.zeros((size, sum(s.size for s in specs)))
        for spec, f in zip(specs, flat):
            stacked[:, spec.offset : spec.offset + spec.size] = f
        return stacked, batched

    def _batch_data(self, stacked: FloatArray) -> BatchData:
        c = self._compiled
        D = (c.G @ stacked.T).T + c.g0[None, :]
        if c.G_log is not None:
            D = D + (c.G_log @ np.log(stacked).T).T
        return self._split_batch(D)

    def _batch_data_tangent(self, stacked: FloatArray, tangent: FloatArray) -> BatchData:
        c = self._compiled
        D = (c.G @ tangent.T).T
        if c.G_log is not None:
            D = D + (c.G_log @ (tangent / stacked).T).T
        return self._split_batch(D)

    def _split_batch(self, D: FloatArray) -> BatchData:
        c = self._compiled
        a = c.nnz_P
        b = a + c.nnz_A
        e = b + c.m
        return BatchData(
            np.ascontiguousarray(D[:, :a]),
            np.ascontiguousarray(D[:, a:b]),
            np.ascontiguousarray(D[:, b:e]),
            np.ascontiguousarray(D[:, e:]),
            self._prepared.layout,
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
            layout=DataLayout(
                n,
                m,
                compiled.P_indices,
                compiled.P_indptr,
                compiled.A_indices,
                compiled.A_indptr,
            ),
            newton=NewtonStructure(n, m, patterns[0], patterns[1], cones, tol),
        )


def _data_from_stacked(compiled: Compiled, u: FloatArray, prepared: _Prepared) -> ConeData:
    """The canonical data ``(P, A, b, c) = G u + g0`` on the fixed sparsity patterns."""
    P, A, b, c = compiled.split_data(compiled.data_vector(u))
    return ConeData(
        P=prepared.layout.P_matrix(P),
        A=prepared.layout.A_matrix(A),
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

    def run(self, data: ConeData | None = None) -> ConicSolution:
        """Solve; ``data``: the program data for ``u`` when the caller already built it."""
        start = time.perf_counter()
        if data is None:
            data = _data_from_stacked(self.compiled, self.u, self.prepared)
        try:
            conic = solve_conic(
                data,
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


class WarmStarter:
    """A layer's memory for warm starts: the previous solution, and whether warm starts pay.

    A warm start that fails costs a few Newton steps on top of the cold solve.  The share of
    elements that took the warm path is averaged over recent calls (exponentially, weight
    0.2 for the newest); when it falls below one half (the parameters move too much per
    step), the next ``pause`` calls go cold without trying, then warm starts are tried again.
    Both framework adapters use it.
    """

    def __init__(self, pause: int = 8) -> None:
        self.previous: Solution | BatchSolution | None = None
        self.pause = pause
        self._skip = 0
        self._rate = 1.0

    def candidate(self) -> Solution | BatchSolution | None:
        """The previous solution to start from, or ``None`` (paused, or nothing yet)."""
        if self._skip > 0:
            return None
        return self.previous

    def record(self, solution: Solution | BatchSolution, attempted: bool) -> None:
        """Remember ``solution``; ``attempted``: whether it was asked to warm start."""
        diagnostics = (
            [d for d in solution.diagnostics if d is not None]
            if isinstance(solution, BatchSolution)
            else [solution.diagnostics]
        )
        if attempted and diagnostics:
            share = sum(d.start == "warm" for d in diagnostics) / len(diagnostics)
            self._rate = 0.8 * self._rate + 0.2 * share
            if self._rate < 0.5:
                self._skip = self.pause
                self._rate = 0.5  # after the pause, one more failure pauses again
        elif self._skip > 0:
            self._skip -= 1
            for d in diagnostics:
                d.start_reason = "warm starts paused: most elements of a recent call fell back"
        self.previous = solution


def _merge(
    size: int,
    compiled: Compiled,
    cones: ConeSet,
    cold_rows: IntArray,
    cold: EngineResult | None,
    warm: dict[int, ConicSolution],
    warm_fact: Embedded | None = None,
) -> EngineResult:
    """One batch result from warm-started elements and a cold solve of the others.

    ``warm_fact``: the vectorised warm attempt's factorizations (all attempted rows; the
    cold part comes after it, so rows solved cold take the cold factorization)."""
    out = EngineResult.empty(size, compiled.n, compiled.m, int(cones.pattern[0].size))
    if cold is not None:
        for j, i in enumerate(cold_rows):
            out.conics[i], out.errors[i] = cold.conics[j], cold.errors[j]
        out.X[cold_rows], out.Y[cold_rows], out.D[cold_rows] = cold.X, cold.Y, cold.D
        out.vectorised[cold_rows] = cold.vectorised
        if cold.factorization is not None:
            out.factorization = cold.factorization.moved(cold_rows, size)
        out.solver_time, out.factorize_later = cold.solver_time, cold.factorize_later
    for i, conic in warm.items():
        out.put(i, conic)
    if warm_fact is not None:
        out.vectorised[list(warm)] = True
        if out.factorization is not None:
            warm_fact = warm_fact.merged(out.factorization)
        out.factorization = warm_fact
    return out


@dataclasses.dataclass(frozen=True)
class _Chunk:
    """A slice of a batch for an executor worker (picklable: no CVXPY objects)."""

    engine: BatchEngine
    data: BatchData
    solver: Solver
    kink: KinkPolicy
    polish: bool
    strict: bool
    tolerances: Tolerances

    def run(self) -> EngineResult:
        result = self.engine.solve(
            self.data,
            self.solver,
            kink=self.kink,
            polish=self.polish,
            strict=self.strict,
            tol=self.tolerances,
        )
        result.factorization = None  # factorizations stay where they were computed
        return result


def _run_chunk(chunk: _Chunk) -> EngineResult:
    return chunk.run()


def _run_chunks(
    engine: BatchEngine,
    data: BatchData,
    solver: Solver,
    executor: Executor,
    kink: KinkPolicy,
    polish: bool,
    strict: bool,
    tol: Tolerances,
) -> EngineResult:
    """The batch cut into one chunk per CPU, each run by ``executor`` on the vectorised path."""
    size = data.size
    count = min(size, os.cpu_count() or 1)
    bounds = np.linspace(0, size, count + 1).astype(int)
    chunks = [
        _Chunk(engine, data.take(slice(lo, hi)), solver, kink, polish, strict, tol)
        for lo, hi in itertools.pairwise(bounds)
        if hi > lo
    ]
    parts = list(executor.map(_run_chunk, chunks))
    return EngineResult(
        conics=[c for part in parts for c in part.conics],
        errors=[e for part in parts for e in part.errors],
        factorization=None,
        vectorised=np.concatenate([part.vectorised for part in parts]),
        X=np.concatenate([part.X for part in parts]),
        Y=np.concatenate([part.Y for part in parts]),
        D=np.concatenate([part.D for part in parts]),
        solver_time=sum(part.solver_time for part in parts),
        factorize_later=True,
    )


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
        derivative was taken or `condition()` called) the derivative system.  Reading it
        computes nothing."""
        return self.conic.diagnostics

    @property
    def info(self) -> Diagnostics:
        """Alias of `diagnostics`."""
        return self.conic.diagnostics

    def condition(self) -> float:
        """Estimate the 1-norm condition number of the derivative matrix ``B`` (factorizing
        it if no derivative was taken yet); also recorded in `diagnostics`."""
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
        compiled = self._compiled
        if compiled.G_logT is None:
            gu = self.conic.vjp_mapped(compiled.GT, gx, gy)
        else:
            t = self.conic.vjp(gx, gy)
            gu = compiled.data_cotangent(self._u, np.concatenate([t.P, t.A, t.b, t.c]))
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
    """Solutions of a batch, with derivatives vectorised across the batch.

    ``values`` stacks each output along a leading batch axis.  ``vjp`` takes batched
    cotangents and returns, per parameter, batched gradients for batched parameters and the
    sum over the batch for shared ones; ``jvp`` takes tangents batched or shared.  Both are
    one batched solve with the factorizations made while polishing.

    Attributes:
        values: one array per output, batch axis first (NaN rows for failed elements).
        solutions: one `Solution` per element (``None`` for a failed element).
        errors: ``None`` per successful element, the `SolverError` of a failed one.
        ok: boolean mask of the successful elements.
        batched: per parameter, whether it carried a batch axis.
        solver_time: wall seconds spent inside the backend solver for this batch (the
            limit a batched layer call can approach; with an executor, summed over chunks).
    """

    def __init__(
        self,
        program: Program,
        result: EngineResult,
        errors: list[SolverError | None],
        stacked: FloatArray,
        data: BatchData,
        batched: tuple[bool, ...],
    ) -> None:
        compiled = program._compiled
        self._program = program
        self._compiled = compiled
        self._result = result
        self._data = data
        self._U = stacked
        self.batched = batched
        self.errors = errors
        self.ok = np.array([e is None for e in errors], dtype=bool)
        self.solver_time = result.solver_time
        self.solutions: list[Solution | None] = [
            None if c is None else Solution(compiled, c, stacked[i])
            for i, c in enumerate(result.conics)
        ]
        k = len(errors)
        X, Y = result.X, result.Y
        self.values: tuple[FloatArray, ...] = tuple(
            _batch_output(o, X, Y, k) for o in compiled.outputs
        )

    def __len__(self) -> int:
        return len(self.solutions)

    def __getitem__(self, index: int) -> Solution:
        sol = self.solutions[index]
        if sol is None:
            raise cast(SolverError, self.errors[index])
        return sol

    @property
    def diagnostics(self) -> list[Diagnostics | None]:
        """Per-element diagnostics (``None`` for a failed element)."""
        return [None if s is None else s.diagnostics for s in self.solutions]

    def _factorization(self) -> Embedded | None:
        """The batch factorization of the successful elements (made on first use after a
        solve on other processes; ``None`` when there is nothing to factorize)."""
        result = self._result
        if result.factorization is None and result.factorize_later:
            result.factorize_later = False
            rows = np.flatnonzero(self.ok)
            if rows.size == 0:
                return None
            engine = self._program._engine
            with single_thread_blas:
                fact = batch_factorize(
                    engine.layout(int(rows.size)),
                    self._data.take(rows),
                    result.D[rows],
                    self._program.tolerances,
                )
            result.factorization = Embedded([(fact, rows)], len(self))
            result.vectorised = self.ok.copy()
            result.vectorised[rows[fact.degenerate]] = False
        return result.factorization

    def _jacobian_bd(self, rows: IntArray) -> Sparse:
        """Block-diagonal ``D`` of the elements ``rows``."""
        layout = self._program._engine.layout(int(rows.size))
        return layout.jacobian_matrix(self._result.D[rows])

    def vjp(self, *cotangents: ArrayLike | None) -> tuple[FloatArray, ...]:
        """Batched reverse mode; cotangents carry the batch axis first (``None`` for zero).

        Failed elements contribute zero.
        """
        compiled = self._compiled
        outputs = compiled.outputs
        k = len(self)
        if len(cotangents) != len(outputs):
            raise ParameterError(
                f"expected {len(outputs)} cotangents (one per output, None for zero), "
                f"got {len(cotangents)}"
            )
        n, m = compiled.n, compiled.m
        GX, GY = np.zeros((k, n)), np.zeros((k, m))
        for o, g, value in zip(outputs, cotangents, self.values):
            if g is None:
                continue
            arr = np.asarray(g, dtype=np.float64)
            if arr.shape != (k, *o.shape):
                raise ParameterError(
                    f"cotangent for {o.name}: expected shape {(k, *o.shape)} (batch of {k}), "
                    f"got {arr.shape}"
                )
            if o.exp:
                arr = arr * value
            target = GY if o.dual else GX
            np.add.at(target.T, o.index, (o.scale * arr.reshape(k, -1)).T)
        GD = np.zeros((k, shape2(compiled.G)[0]))
        fact = self._factorization()
        result = self._result
        vec = np.flatnonzero(result.vectorised)
        if vec.size and fact is not None:
            GV = np.zeros((k, m))
            GV[vec] = (self._jacobian_bd(vec).T @ GY[vec].ravel()).reshape(vec.size, m)
            LAM = fact.solve(np.concatenate([GX, GV], axis=1), transpose=True)
            LX, LV = LAM[vec, :n], LAM[vec, n:]
            X, Y = result.X[vec], result.Y[vec]
            data = self._data
            (pr, pc), (ar, ac) = self._program._prepared.newton.patterns
            GD[vec] = np.concatenate(
                [
                    -0.5 * (LX[:, pr] * X[:, pc] + LX[:, pc] * X[:, pr]),
                    -(Y[:, ar] * LX[:, ac] + LV[:, ar] * X[:, ac]),
                    LV,
                    -LX,
                ],
                axis=1,
            )
            del data
        for i in np.flatnonzero(self.ok & ~result.vectorised):
            conic = cast(ConicSolution, result.conics[i])
            t = conic.vjp(GX[i], GY[i])
            GD[i] = np.concatenate([t.P, t.A, t.b, t.c])
        GU = (compiled.GT @ GD.T).T
        if compiled.G_logT is not None:
            GU = GU + (compiled.G_logT @ GD.T).T / self._U
        out = []
        for spec, is_batched in zip(compiled.parameters, self.batched):
            block = GU[:, spec.offset : spec.offset + spec.size]
            grads = np.stack([spec.unflatten(row) for row in block])
            out.append(grads if is_batched else grads.sum(axis=0))
        return tuple(out)

    def jvp(self, *tangents: ArrayLike | None) -> tuple[FloatArray, ...]:
        """Batched forward mode; a tangent may be batched (leading axis) or shared.

        Failed elements get NaN tangents.
        """
        compiled = self._compiled
        specs = compiled.parameters
        k = len(self)
        if len(tangents) != len(specs):
            raise ParameterError(
                f"expected {len(specs)} tangents (one per parameter), got {len(tangents)}"
            )
        DU = np.zeros_like(self._U)
        for spec, t in zip(specs, tangents):
            if t is None:
                continue
            arr = np.asarray(t, dtype=np.float64)
            if arr.shape == spec.shape:
                arr = np.broadcast_to(arr, (k, *spec.shape))
            elif arr.shape != (k, *spec.shape):
                raise ParameterError(
                    f"tangent for {spec.name}: expected shape {spec.shape} or "
                    f"{(k, *spec.shape)}, got {arr.shape}"
                )
            DU[:, spec.offset : spec.offset + spec.size] = spec.flatten(np.asarray(arr), True)
        dd = self._program._batch_data_tangent(self._U, DU)
        n, m = compiled.n, compiled.m
        DX, DY = np.full((k, n), np.nan), np.full((k, m), np.nan)
        fact = self._factorization()
        result = self._result
        vec = np.flatnonzero(result.vectorised)
        if vec.size and fact is not None:
            layout = self._program._engine.layout(int(vec.size))
            dP, dA, dAT = layout.matrices(dd.take(vec))
            X, Y = result.X[vec], result.Y[vec]
            rhs = np.zeros((k, n + m))
            rhs[vec] = -np.concatenate(
                [
                    (dP @ X.ravel() + dAT @ Y.ravel()).reshape(vec.size, n) + dd.c[vec],
                    (dA @ X.ravel()).reshape(vec.size, m) - dd.b[vec],
                ],
                axis=1,
            )
            DZ = fact.solve(rhs)
            DX[vec] = DZ[vec, :n]
            DY[vec] = (self._jacobian_bd(vec) @ DZ[vec, n:].ravel()).reshape(vec.size, m)
        for i in np.flatnonzero(self.ok & ~result.vectorised):
            conic = cast(ConicSolution, result.conics[i])
            tangent = DataTangent(P=dd.P[i], A=dd.A[i], b=dd.b[i], c=dd.c[i])
            DX[i], DY[i], _ = conic.jvp(tangent)
        return tuple(
            _batch_tangent(o, DX, DY, value, k) for o, value in zip(compiled.outputs, self.values)
        )


def _batch_output(o: OutputMap, X: FloatArray, Y: FloatArray, k: int) -> FloatArray:
    z = Y if o.dual else X
    out = (o.scale * z[:, o.index]).reshape((k, *o.shape))
    return np.exp(out) if o.exp else out


def _batch_tangent(
    o: OutputMap, DX: FloatArray, DY: FloatArray, value: FloatArray, k: int
) -> FloatArray:
    z = DY if o.dual else DX
    out = (o.scale * z[:, o.index]).reshape((k, *o.shape))
    return out * value if o.exp else out


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
    r"""Compile a DPP CVXPY problem into a differentiable `Program`.

    The problem is canonicalised once to

    $$
    \min_x \tfrac12 x^\top P x + c^\top x \quad \text{s.t.}\quad Ax + s = b,\ s \in K
    $$

    with $(P, A, b, c)$ an affine function of the parameters (the quadratic objective is
    kept, so QPs are differentiated exactly).  Each solve is followed by semismooth Newton
    polishing on the normal-map residual $F$ and derivatives come from the nonsmooth
    implicit function theorem: $J = -B^{-1} \partial F/\partial\theta$ with $B$ one element of
    the conservative Jacobian of $F$ in $(x, v)$, chosen at kinks by ``kink``.

    Args:
        problem: a DPP ``cvxpy.Problem`` (``quad_form(x, Q)`` with a PSD parameter ``Q`` in
            the objective is accepted).
        parameters: every parameter of the problem, in the order values will be passed.
        variables: the outputs: CVXPY variables (primal values) and constraints (their dual
            values), in the order they will be returned.
        solver: a `Solver` instance or class, a name (``"CLARABEL"``, ``"SCS"``,
            ``"OSQP"``), or ``None`` for Clarabel.
        solver_args: settings passed to the solver on top of its defaults.
        kink: `KinkPolicy` (``"active"`` or ``"inactive"``) choosing the Jacobian
            element at weakly active constraints.
        polish: refine the solver's point by safeguarded semismooth Newton steps.
        strict: raise `DegenerateDerivativeError` instead of warning and returning
            least-squares derivatives when ``B`` is singular.
        tolerances: the `Tolerances` of polishing, certification, kink detection and
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

    Examples:
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


def layer_program(
    problem: cp.Problem | Program,
    parameters: Sequence[cp.Parameter] | None,
    variables: Sequence[Any] | None,
    **options: Any,
) -> Program:
    """The program behind a framework layer: ``problem`` compiled with ``options`` (the
    keywords of `compile()`), or a `Program` used as it is.

    Both adapters build their layers through this one function, so that the compile
    keywords are spelled once.  A ``Program`` keeps its own parameters, outputs and settings:
    passing ``parameters`` or ``variables`` with it is an error.
    """
    if isinstance(problem, Program):
        if parameters is not None or variables is not None:
            raise ParameterError(
                "a layer built from a compiled Program uses the Program's parameters and "
                "outputs: omit `parameters` and `variables` (or pass the cvxpy Problem)"
            )
        return problem
    if parameters is None or variables is None:
        raise ParameterError(
            "a layer built from a cvxpy Problem needs `parameters` and `variables` (the "
            "problem's parameters in call order, and the variables or constraints to return)"
        )
    return compile(problem, parameters, variables, **options)
