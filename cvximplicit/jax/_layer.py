"""``CvxpyLayer`` for JAX: host callbacks into the core, under ``jit``, ``vmap`` and ``grad``."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any, cast

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from .._cones import KinkPolicy
from .._diagnostics import Diagnostics, PolishOutcome
from .._errors import CvximplicitError, ParameterError, SolverError
from .._program import BatchSolution, Program, Solution, WarmStarter, compile
from .._solvers import SolverLike, SolverStatus

__all__ = ["CvxpyLayer"]


class _Cache:
    """Solutions of recent forward passes, keyed by integer handles (LRU, thread-safe).

    The backward pass looks its solution up here to reuse the factorization; an evicted
    solution is recomputed from the parameters, which the backward pass also receives."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[int, Solution] = OrderedDict()
        self._lock = threading.Lock()
        self._counter = itertools.count(1)

    def put(self, solution: Solution) -> int:
        with self._lock:
            handle = next(self._counter) % (2**31 - 1) or 1
            self._items[handle] = solution
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
            return handle

    def get(self, handle: int) -> Solution | None:
        with self._lock:
            return self._items.get(int(handle))


class CvxpyLayer:
    r"""A differentiable convex optimization layer for JAX.

    ``layer(*params)`` returns the outputs (variables, or constraint duals) as JAX arrays.
    The solve and the derivatives run on the host through ``jax.pure_callback``, so the
    layer works under ``jax.jit``, ``jax.vmap`` (a batch of parameters reaches the core's
    batch path in one callback, not a Python loop of callbacks), ``jax.grad`` and
    ``jax.vjp``.  Derivatives are exact: $J^\top g$ with
    $J = -B^{-1}\,\partial F/\partial\theta$, one factorization of $B$ per solution,
    reused by the backward pass.

    Forward mode: ``jax.jvp`` is not supported, because the layer registers a custom VJP
    (a host callback cannot be transposed, so one rule cannot serve both modes); use
    :meth:`jvp`, which returns the outputs and their tangents from the core's JVP.

    Args:
        problem: the CVXPY problem, as for the PyTorch layer (the cvxpylayers conventions).
        parameters: as for the PyTorch layer.
        variables: as for the PyTorch layer.
        solver: as for the PyTorch layer.
        gp: as for the PyTorch layer.
        verbose: as for the PyTorch layer.
        solver_args: as for the PyTorch layer.
        kink: see :func:`cvximplicit.compile`.
        polish: see :func:`cvximplicit.compile`.
        strict: see :func:`cvximplicit.compile`.
        executor: ``concurrent.futures.Executor`` for batched solves (default: threads).
        on_failure: ``"raise"`` (default): a failed solve raises; outside ``jit`` the typed
            cvximplicit exception itself, inside ``jit`` a ``JaxRuntimeError`` carrying its
            message.  ``"nan"``: the failed batch elements return NaN and their entries in
            ``last_diagnostics`` (one per batch element, in order) carry the failure's status
            and message; gradients through them are NaN too.
        warm_start: start each forward solve from the previous forward call's solutions
            (kept on the host by the layer, used when the batch size is unchanged; no JAX
            state to thread through): where semismooth Newton with the new parameters reaches
            the polishing target in a few steps no solver runs.  Values and gradients equal
            the cold path's; ``last_diagnostics[i].start`` says which was taken.

    Dtypes follow the inputs: float32 in, float32 out (``jax_enable_x64`` off or on); the
    solve itself runs in float64 on the host.

    Examples:
        >>> import cvxpy as cp, jax, jax.numpy as jnp
        >>> from cvximplicit.jax import CvxpyLayer
        >>> x = cp.Variable(2); b = cp.Parameter(2)
        >>> layer = CvxpyLayer(cp.Problem(cp.Minimize(cp.sum_squares(x - b)), [x >= 0]), [b], [x])
        >>> g = jax.jit(jax.grad(lambda b: layer(b)[0].sum()))(jnp.array([1.0, -1.0]))
        >>> [round(float(v), 6) for v in g]
        [1.0, 0.0]
    """

    def __init__(
        self,
        problem: cp.Problem,
        parameters: Sequence[cp.Parameter],
        variables: Sequence[Any],
        solver: SolverLike = None,
        gp: bool = False,
        verbose: bool = False,
        solver_args: dict[str, Any] | None = None,
        *,
        kink: KinkPolicy | str = KinkPolicy.ACTIVE,
        polish: bool = True,
        strict: bool = False,
        executor: Executor | None = None,
        on_failure: str = "raise",
        cache_size: int = 4096,
        warm_start: bool = False,
    ) -> None:
        if on_failure not in ("raise", "nan"):
            raise ValueError(f"on_failure must be 'raise' or 'nan', got {on_failure!r}")
        self.program: Program = compile(
            problem,
            parameters,
            variables,
            solver=solver,
            solver_args=solver_args,
            kink=kink,
            polish=polish,
            strict=strict,
            gp=gp,
            verbose=verbose,
        )
        self.executor = executor
        self.on_failure = on_failure
        #: Start each host solve from the previous forward call's solutions (a cache held by
        #: the layer: the previous batch, used when the next has the same size).
        self.warm_start = warm_start
        self._warm = WarmStarter()
        self._cache = _Cache(cache_size)
        self._specs = self.program._compiled.parameters
        self._outputs = self.program._compiled.outputs
        self._last: list[Diagnostics] = []
        self._error: BaseException | None = None
        self._solve = self._build()

    def __repr__(self) -> str:
        return f"CvxpyLayer({self.program!r})"

    @property
    def last_diagnostics(self) -> list[Diagnostics]:
        """Diagnostics of the batch elements of the last host solve (any call, traced or not)."""
        return list(self._last)

    # ------------------------------------------------------------------ host side
    def _lead(self, arrays: Sequence[np.ndarray]) -> tuple[int, ...]:
        leads = [a.shape[: a.ndim - len(s.shape)] for a, s in zip(arrays, self._specs)]
        return tuple(np.broadcast_shapes(*leads)) if leads else ()

    def _flat_params(self, arrays: Sequence[np.ndarray], lead: tuple[int, ...]) -> list[np.ndarray]:
        size = int(np.prod(lead)) if lead else 1
        return [
            np.broadcast_to(np.asarray(a, np.float64), lead + s.shape).reshape((size, *s.shape))
            for a, s in zip(arrays, self._specs)
        ]

    def _host_forward(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        arrays = tuple(np.asarray(a) for a in arrays)
        lead = self._lead(arrays)
        flat = self._flat_params(arrays, lead)
        size = flat[0].shape[0] if flat else 1
        outs = [np.full((size, *o.shape), np.nan) for o in self._outputs]
        handles = np.zeros(size, dtype=np.int32)
        diagnostics: list[Diagnostics] = []
        try:
            previous = self._warm.candidate() if self.warm_start else None
            if not isinstance(previous, BatchSolution) or len(previous) != size:
                previous = None
            batch = self.program.solve_batch(
                *flat, executor=self.executor, on_failure=self.on_failure, warm_start=previous
            )
            self._warm.record(batch, previous is not None)
        except CvximplicitError as exc:
            self._error = exc
            raise
        solutions: list[Solution | SolverError] = [
            s if s is not None else cast(SolverError, e)
            for s, e in zip(batch.solutions, batch.errors)
        ]
        for i, sol in enumerate(solutions):
            if isinstance(sol, SolverError):  # on_failure="nan": keep the failure's report
                diagnostics.append(_failure_diagnostics(sol, self.program.kink.value))
                continue
            for k, v in enumerate(sol.values):
                outs[k][i] = v
            handles[i] = self._cache.put(sol)
            diagnostics.append(sol.info)
        self._last = diagnostics
        dtype = self._dtype(arrays)
        shaped = [o.reshape(lead + o.shape[1:]).astype(dtype) for o in outs]
        return (*shaped, handles.reshape(lead))

    def _solution(self, handle: int, flat: list[np.ndarray], i: int) -> Solution:
        sol = self._cache.get(handle) if handle else None
        return sol if sol is not None else self.program.solve(*[f[i] for f in flat])

    def _host_backward(self, handles: np.ndarray, *rest: np.ndarray) -> tuple[np.ndarray, ...]:
        n_par = len(self._specs)
        arrays, cts = [np.asarray(a) for a in rest[:n_par]], [np.asarray(c) for c in rest[n_par:]]
        lead = self._lead(arrays)
        flat = self._flat_params(arrays, lead)
        size = flat[0].shape[0] if flat else 1
        hs = np.broadcast_to(np.asarray(handles), lead).reshape(size)
        flat_cts = [
            np.broadcast_to(c, lead + o.shape).reshape((size, *o.shape))
            for c, o in zip(cts, self._outputs)
        ]
        grads = [np.zeros((size, *s.shape)) for s in self._specs]
        for i in range(size):
            if self.on_failure == "nan" and hs[i] == 0:
                for g in grads:
                    g[i] = np.nan
                continue
            gi = self._solution(int(hs[i]), flat, i).vjp(*[c[i] for c in flat_cts])
            for g, v in zip(grads, gi):
                g[i] = v
        out = []
        for g, a, s in zip(grads, arrays, self._specs):
            full = g.reshape(lead + s.shape)
            out.append(_unbroadcast(full, a.shape).astype(a.dtype))
        return tuple(out)

    def _host_jvp(self, *rest: np.ndarray) -> tuple[np.ndarray, ...]:
        n_par = len(self._specs)
        arrays, tans = [np.asarray(a) for a in rest[:n_par]], [np.asarray(t) for t in rest[n_par:]]
        lead = self._lead(arrays)
        flat = self._flat_params(arrays, lead)
        flat_t = self._flat_params(tans, lead)
        size = flat[0].shape[0] if flat else 1
        batch = self.program.solve_batch(*flat, executor=self.executor)
        outs = [np.zeros((size, *o.shape)) for o in self._outputs]
        tangents = [np.zeros((size, *o.shape)) for o in self._outputs]
        for i in range(len(batch)):
            sol = batch[i]
            for k, (v, t) in enumerate(zip(sol.values, sol.jvp(*[f[i] for f in flat_t]))):
                outs[k][i], tangents[k][i] = v, t
        dtype = self._dtype(arrays)
        return tuple(o.reshape(lead + o.shape[1:]).astype(dtype) for o in outs + tangents)

    @staticmethod
    def _dtype(arrays: Sequence[np.ndarray]) -> np.dtype:
        floats = [a.dtype for a in arrays if np.issubdtype(a.dtype, np.floating)]
        if not floats:
            return np.dtype(jnp.zeros(()).dtype)
        return np.result_type(*floats)

    # ------------------------------------------------------------------ traced side
    def _shapes(self, params: Sequence[Any]) -> tuple[tuple[int, ...], Any]:
        leads = [tuple(p.shape[: p.ndim - len(s.shape)]) for p, s in zip(params, self._specs)]
        lead = tuple(np.broadcast_shapes(*leads)) if leads else ()
        floats = [p.dtype for p in params if jnp.issubdtype(p.dtype, jnp.floating)]
        dtype = jnp.result_type(*floats) if floats else jnp.zeros(()).dtype
        return lead, dtype

    def _build(self) -> Any:
        layer = self

        def forward(*params: Any) -> tuple[tuple[Any, ...], Any]:
            lead, dtype = layer._shapes(params)
            shapes = [jax.ShapeDtypeStruct(lead + o.shape, dtype) for o in layer._outputs]
            shapes.append(jax.ShapeDtypeStruct(lead, jnp.int32))
            res = jax.pure_callback(
                layer._host_forward, tuple(shapes), *params, vmap_method="broadcast_all"
            )
            return tuple(res[:-1]), res[-1]

        @jax.custom_vjp
        def solve(*params: Any) -> tuple[Any, ...]:
            return forward(*params)[0]

        def solve_fwd(*params: Any) -> tuple[tuple[Any, ...], Any]:
            outs, handles = forward(*params)
            return outs, (handles, params)

        def solve_bwd(residuals: Any, cts: tuple[Any, ...]) -> tuple[Any, ...]:
            handles, params = residuals
            shapes = tuple(jax.ShapeDtypeStruct(p.shape, p.dtype) for p in params)
            return jax.pure_callback(
                layer._host_backward, shapes, handles, *params, *cts, vmap_method="broadcast_all"
            )

        solve.defvjp(solve_fwd, solve_bwd)
        return solve

    def _validate(self, params: Sequence[Any]) -> list[Any]:
        if len(params) != len(self._specs):
            raise ParameterError(
                f"expected {len(self._specs)} parameter values (for "
                f"{[s.name for s in self._specs]}), got {len(params)}"
            )
        out = []
        for p, s in zip(params, self._specs):
            arr = jnp.asarray(p)
            if jnp.iscomplexobj(arr):
                raise ParameterError(
                    f"parameter {s.label}: got a complex array ({arr.dtype}); CvxpyLayer is "
                    "real-valued: pass the real part, or split real and imaginary parts into "
                    "two real parameters"
                )
            if arr.ndim < len(s.shape) or tuple(arr.shape[arr.ndim - len(s.shape) :]) != s.shape:
                raise ParameterError(
                    f"parameter {s.label}: expected shape {s.shape} (with optional leading "
                    f"batch dimensions), got {tuple(arr.shape)}"
                )
            out.append(arr)
        return out

    def __call__(self, *params: Any, solver_args: dict[str, Any] | None = None) -> tuple[Any, ...]:
        """Solve for the given parameter arrays; returns one array per output."""
        if solver_args:
            raise NotImplementedError(
                "per-call solver_args are not supported by the JAX layer (they cannot be traced); "
                "pass them to the constructor"
            )
        arrays = self._validate(params)
        concrete = not any(isinstance(a, Tracer) for a in arrays)
        self._error = None
        try:
            out = self._solve(*arrays)
            if concrete:
                jax.block_until_ready(out)
            return tuple(out)
        except Exception as exc:
            error, self._error = self._error, None
            if concrete and error is not None and error is not exc:
                raise error from None
            raise

    def jvp(
        self, params: Sequence[Any], tangents: Sequence[Any]
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """Forward mode: ``(outputs, output tangents)`` for parameter tangents, from the
        core's JVP (one host callback; works under ``jit`` and ``vmap``)."""
        arrays = self._validate(params)
        tans = [jnp.asarray(t, dtype=a.dtype) for t, a in zip(tangents, arrays)]
        lead, dtype = self._shapes(arrays)
        shapes = tuple(jax.ShapeDtypeStruct(lead + o.shape, dtype) for o in self._outputs) * 2
        res = jax.pure_callback(self._host_jvp, shapes, *arrays, *tans, vmap_method="broadcast_all")
        k = len(self._outputs)
        return tuple(res[:k]), tuple(res[k:])


def _failure_diagnostics(error: SolverError, kink_policy: str) -> Diagnostics:
    """A diagnostics record for a failed element (``on_failure="nan"``)."""
    status = error.status if isinstance(error.status, SolverStatus) else SolverStatus.FAILED
    return Diagnostics(
        status=status,
        solver=error.solver or "",
        raw_status=str(error),
        iterations=0,
        solve_time=0.0,
        residual_before_polish=float("nan"),
        residual=float("nan"),
        polish_steps=0,
        polish=PolishOutcome.OFF,
        kink_policy=kink_policy,
        kinks_counter={},
        certified=False,
    )


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``g`` down to ``shape`` (the inverse of numpy broadcasting)."""
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, (gs, s) in enumerate(zip(g.shape, shape)) if s == 1 and gs != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)
