"""``CvxpyLayer`` for JAX: host callbacks into the core, under ``jit``, ``vmap`` and ``grad``."""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, cast

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
from jax.core import ShapedArray, Tracer
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from .._cones import KinkPolicy
from .._diagnostics import Diagnostics, PolishOutcome
from .._errors import CvximplicitError, SecondDerivativeError, SolverError
from .._program import BatchSolution, Program, Solution, WarmStarter, layer_program
from .._solvers import SolverLike, SolverStatus

__all__ = ["CvxpyLayer"]


class _QuietTypedErrors(logging.Filter):
    """Drops JAX's "pure_callback failed" traceback for cvximplicit's own typed errors: the
    error itself reaches the caller (re-raised outside ``jit``; inside ``jit`` its message
    is in the ``JaxRuntimeError``), so the extra stderr traceback is only noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, CvximplicitError)


logging.getLogger("jax._src.callback").addFilter(_QuietTypedErrors())


class _Cache:
    """Solutions of forward passes whose derivatives are pending, keyed by integer handles
    (LRU, thread-safe).

    Only a differentiated forward pass stores its solutions (the primal path of the custom
    JVP stores none), and the derivative callback takes them out once used, so a training
    loop holds one step's solutions, not every step's.  The derivative looks its solution up
    here to reuse the factorization; an evicted or already used solution is recomputed from
    the parameters, which the derivative callback also receives."""

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

    def take(self, handle: int) -> Solution | None:
        """Remove and return a solution (its derivative has been used)."""
        with self._lock:
            return self._items.pop(int(handle), None)

    def __len__(self) -> int:
        return len(self._items)


#: Per-call solver settings as a hashable, static value: sorted ``(name, value)`` pairs.
_Settings = tuple[tuple[str, Any], ...] | None


def _settings_key(solver_args: dict[str, Any] | None) -> _Settings:
    if not solver_args:
        return None
    key = tuple(sorted(solver_args.items()))
    try:
        hash(key)
    except TypeError:
        raise TypeError(
            "the JAX layer's per-call solver_args must be static, hashable values (numbers, "
            f"strings, tuples), got {solver_args!r}"
        ) from None
    return key


def _as_dict(settings: _Settings) -> dict[str, Any] | None:
    return None if settings is None else dict(settings)


class CvxpyLayer:
    r"""A differentiable convex optimization layer for JAX.

    ``layer(*params)`` returns the outputs (variables, or constraint duals) as JAX arrays.
    The solve and the derivatives run on the host through ``jax.pure_callback``, so the
    layer works under ``jax.jit``, ``jax.vmap`` (a batch of parameters reaches the core's
    batch path in one callback, not a Python loop of callbacks), ``jax.grad`` and
    ``jax.vjp``.  Derivatives are exact: $J^\top g$ with
    $J = -B^{-1}\,\partial F/\partial\theta$, one factorization of $B$ per solution,
    reused by the backward pass.

    Every transformation works with the exact derivatives: ``jax.jvp``, ``jax.jacfwd``,
    ``jax.jacrev``, ``jax.grad``, under ``jax.jit`` and ``jax.vmap``.  The layer registers a
    custom JVP whose tangent map (the core's JVP) is a JAX primitive with a transpose rule
    (the core's VJP) and a batching rule.  Second derivatives (``jax.hessian``) raise
    `SecondDerivativeError`.

    Args:
        problem: the CVXPY problem, or a compiled `cvximplicit.Program` (then omit
            ``parameters`` and ``variables``), as for the PyTorch layer.
        parameters: as for the PyTorch layer.
        variables: as for the PyTorch layer.
        solver: as for the PyTorch layer.
        gp: as for the PyTorch layer.
        verbose: as for the PyTorch layer.
        solver_args: as for the PyTorch layer.
        kink: see `cvximplicit.compile()`.
        polish: see `cvximplicit.compile()`.
        strict: see `cvximplicit.compile()`.
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
        problem: cp.Problem | Program,
        parameters: Sequence[cp.Parameter] | None = None,
        variables: Sequence[Any] | None = None,
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
        cache_size: int = 256,
        warm_start: bool = False,
    ) -> None:
        if on_failure not in ("raise", "nan"):
            raise ValueError(f"on_failure must be 'raise' or 'nan', got {on_failure!r}")
        self.program: Program = layer_program(
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
        #: One persistent Python thread runs every host callback: XLA calls back on its own
        #: native threads, and per-call Python thread states there leaked about 7 MB per
        #: training step on a 3000-variable QP (thread-local solver state never freed).
        self._host = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cvximplicit-jax")
        self._callbacks: dict[tuple[Any, ...], Any] = {}
        self._specs = self.program.parameter_specs
        self._outputs = self.program.output_specs
        self._last: list[Diagnostics] = []
        self._error: BaseException | None = None
        self._last_error: BaseException | None = None
        #: The traced solve function per per-call ``solver_args`` (``None``: the layer's own).
        self._solves: dict[_Settings, Any] = {None: self._build(None)}

    def __repr__(self) -> str:
        return f"CvxpyLayer({self.program!r})"

    @property
    def last_error(self) -> BaseException | None:
        """The typed cvximplicit exception of the last failed host solve (``None`` if the last
        one succeeded).  Inside ``jit`` JAX can only raise a ``JaxRuntimeError`` carrying its
        message; this is the exception itself, for ``isinstance`` checks."""
        return self._last_error

    @property
    def last_diagnostics(self) -> list[Diagnostics]:
        """Diagnostics of the batch elements of the last host solve (any call, traced or not)."""
        return list(self._last)

    # ------------------------------------------------------------------ host side
    def _on_host(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` on the layer's host thread (see ``_host``) and wait for it."""
        return self._host.submit(fn, *args).result()

    def _callback(self, name: str, *static: Any) -> Any:
        """The host callback ``self.<name>(*static, *arrays)`` run by ``_on_host``, one object
        per ``(name, static)``: JAX keys its compiled callbacks on the callable, so a new
        partial on every call would compile the callback again on every eager call."""
        key = (name, *static)
        fn = self._callbacks.get(key)
        if fn is None:
            host = functools.partial(getattr(self, name), *static)
            fn = self._callbacks[key] = functools.partial(self._on_host, host)
        return fn

    def _host_forward(
        self, keep: bool, settings: _Settings, *arrays: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        arrays = tuple(np.asarray(a) for a in arrays)
        lead = self.program.batch_shape(*arrays)
        flat = self.program.flatten_batch(arrays, lead)
        size = flat[0].shape[0] if flat else 1
        outs = [np.full((size, *o.shape), np.nan) for o in self._outputs]
        handles = np.zeros(size, dtype=np.int32)
        diagnostics: list[Diagnostics] = []
        try:
            previous = self._warm.candidate() if self.warm_start else None
            if not isinstance(previous, BatchSolution) or len(previous) != size:
                previous = None
            batch = self.program.solve_batch(
                *flat,
                executor=self.executor,
                solver_args=_as_dict(settings),
                on_failure=self.on_failure,
                warm_start=previous,
            )
            self._warm.record(batch, previous is not None)
        except CvximplicitError as exc:
            self._error = self._last_error = exc
            raise
        self._last_error = None
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
            handles[i] = self._cache.put(sol) if keep else -1
            diagnostics.append(sol.info)
        self._last = diagnostics
        dtype = self._dtype(arrays)
        shaped = [o.reshape(lead + o.shape[1:]).astype(dtype) for o in outs]
        return (*shaped, handles.reshape(lead))

    def _solution(
        self, handle: int, flat: list[np.ndarray], i: int, settings: _Settings
    ) -> Solution:
        sol = self._cache.take(handle) if handle > 0 else None
        if sol is not None:
            return sol
        return self.program.solve(*[f[i] for f in flat], solver_args=_as_dict(settings))

    def _host_linear(
        self, mode: str, settings: _Settings, handles: np.ndarray, *rest: np.ndarray
    ) -> Any:
        """The core's JVP (``mode="jvp"``: parameter tangents in, output tangents out) or VJP
        (``"vjp"``: output cotangents in, parameter cotangents out) at each element's
        solution.  Every array has the same leading (batch) dimensions as ``handles``: the
        traced side broadcasts them first, so extra leading axes added by ``vmap`` are just
        more batch axes here."""
        n_par = len(self._specs)
        arrays = [np.asarray(a) for a in rest[:n_par]]
        vectors = [np.asarray(v) for v in rest[n_par:]]
        lead = tuple(np.shape(handles))
        size = int(np.prod(lead)) if lead else 1
        flat = self.program.flatten_batch(arrays, lead)
        hs = np.asarray(handles).reshape(size)
        ins = self._specs if mode == "jvp" else self._outputs
        outs = self._outputs if mode == "jvp" else self._specs
        flat_in = [np.reshape(v, (size, *o.shape)) for v, o in zip(vectors, ins)]
        result = [np.zeros((size, *o.shape)) for o in outs]
        solutions: dict[int, Solution] = {}  # one lookup per distinct handle (vmap repeats them)
        for i in range(size):
            if self.on_failure == "nan" and hs[i] == 0:
                for r in result:
                    r[i] = np.nan
                continue
            h = int(hs[i])
            sol = solutions.get(h) if h > 0 else None
            if sol is None:
                sol = self._solution(h, flat, i, settings)
                if h > 0:
                    solutions[h] = sol
            args = [f[i] for f in flat_in]
            for r, v in zip(result, sol.jvp(*args) if mode == "jvp" else sol.vjp(*args)):
                r[i] = v
        dtype = self._dtype(arrays)
        return tuple(r.reshape(lead + r.shape[1:]).astype(dtype) for r in result)

    @staticmethod
    def _dtype(arrays: Sequence[np.ndarray]) -> np.dtype:
        floats = [a.dtype for a in arrays if np.issubdtype(a.dtype, np.floating)]
        if not floats:
            return np.dtype(jnp.zeros(()).dtype)
        return np.result_type(*floats)

    # ------------------------------------------------------------------ traced side
    def _shapes(self, params: Sequence[Any]) -> tuple[tuple[int, ...], Any]:
        lead = self.program.batch_shape(*params)
        floats = [p.dtype for p in params if jnp.issubdtype(p.dtype, jnp.floating)]
        dtype = jnp.result_type(*floats) if floats else jnp.zeros(()).dtype
        return lead, dtype

    def _build(self, settings: _Settings) -> Any:
        """The traced solve, with the per-call solver settings ``settings`` (static)."""
        layer = self

        @functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
        def forward(keep: bool, *params: Any) -> tuple[tuple[Any, ...], Any]:
            # keep: store the solutions for a derivative callback (the JVP rule's forward)
            lead, dtype = layer._shapes(params)
            shapes = [jax.ShapeDtypeStruct(lead + o.shape, dtype) for o in layer._outputs]
            shapes.append(jax.ShapeDtypeStruct(lead, jnp.int32))
            res = jax.pure_callback(
                layer._callback("_host_forward", keep, settings),
                tuple(shapes),
                *params,
                vmap_method="broadcast_all",
            )
            return tuple(res[:-1]), res[-1]

        @forward.defjvp
        def forward_jvp(keep: bool, primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
            # Reached only when the derivative rule below is itself differentiated.
            raise SecondDerivativeError(_SECOND_ORDER)

        @jax.custom_jvp
        def solve(*params: Any) -> tuple[Any, ...]:
            return forward(False, *params)[0]

        @solve.defjvp
        def solve_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
            outs, handles = forward(True, *primals)
            # The tangent map is one primitive, linear in the tangents, with a transpose
            # rule (reverse mode: the core's VJP) and a batching rule (vmap, jacfwd, jacrev).
            lead = tuple(handles.shape)
            full = [jnp.broadcast_to(t, lead + s.shape) for t, s in zip(tangents, layer._specs)]
            tangent_outs = _linear_p.bind(
                handles, *primals, *full, layer=layer, mode="jvp", settings=settings
            )
            return outs, tuple(tangent_outs)

        def solve_full(*params: Any) -> tuple[Any, ...]:
            # Every parameter broadcast to the common leading (batch) shape, so that the host
            # sees one batch shape however vmap adds axes (it adds them in front of each).
            lead, _ = layer._shapes(params)
            return solve(
                *[jnp.broadcast_to(p, lead + s.shape) for p, s in zip(params, layer._specs)]
            )

        return solve_full

    def _validate(self, params: Sequence[Any]) -> list[Any]:
        arrays = [jnp.asarray(p) for p in params]
        self.program.batch_shape(*arrays)  # count, dtypes and shapes (the core's checks)
        return arrays

    def __call__(self, *params: Any, solver_args: dict[str, Any] | None = None) -> tuple[Any, ...]:
        """Solve for the given parameter arrays; returns one array per output.

        ``solver_args``: solver settings for this call, on top of the layer's (as for the
        PyTorch layer); static values (numbers, strings), not traced arrays."""
        settings = _settings_key(solver_args)
        solve = self._solves.get(settings)
        if solve is None:
            self.program.solver.with_settings(solver_args)  # checks the names now
            solve = self._solves[settings] = self._build(settings)
        arrays = self._validate(params)
        concrete = not any(isinstance(a, Tracer) for a in arrays)
        self._error = None
        try:
            out = solve(*arrays)
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
        """Forward mode: ``(outputs, output tangents)``; the same as
        ``jax.jvp(layer, params, tangents)`` (kept for code written before ``jax.jvp``
        worked on the layer)."""
        arrays = self._validate(params)
        tans = [jnp.asarray(t, dtype=a.dtype) for t, a in zip(tangents, arrays)]
        outs, touts = jax.jvp(lambda *p: self(*p), tuple(arrays), tuple(tans))
        return tuple(outs), tuple(touts)


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


# ---------------------------------------------------------------------- the tangent map
# ``_linear_p(handles, *params, *vectors; layer, mode)``: the core's JVP (``mode="jvp"``) or
# VJP (``"vjp"``) at the solutions named by ``handles``, run on the host.  It is linear in
# ``vectors`` and registered with JAX as a primitive so that JAX can transpose it (reverse
# mode from the custom JVP), batch it (vmap of either mode: jacfwd, jacrev) and refuse
# second derivatives with a clear error.  Every operand has the same leading shape.

_linear_p = Primitive("cvximplicit_linear")
_linear_p.multiple_results = True


def _linear_shapes(args: Sequence[Any], layer: CvxpyLayer, mode: str) -> list[Any]:
    n_par = len(layer._specs)
    handles, params = args[0], args[1 : 1 + n_par]
    lead = tuple(handles.shape)
    floats = [p.dtype for p in params if jnp.issubdtype(p.dtype, jnp.floating)]
    dtype = jnp.result_type(*floats) if floats else jnp.zeros(()).dtype
    outs = layer._outputs if mode == "jvp" else layer._specs
    return [jax.ShapeDtypeStruct(lead + o.shape, dtype) for o in outs]


def _linear_callback(*args: Any, layer: CvxpyLayer, mode: str, settings: _Settings) -> list[Any]:
    shapes = tuple(_linear_shapes(args, layer, mode))
    out = jax.pure_callback(
        layer._callback("_host_linear", mode, settings),
        shapes,
        *args,
        vmap_method="broadcast_all",
    )
    return list(out)


def _linear_abstract(*args: Any, layer: CvxpyLayer, mode: str, settings: _Settings) -> list[Any]:
    return [ShapedArray(s.shape, s.dtype) for s in _linear_shapes(args, layer, mode)]


def _linear_transpose(
    cts: Sequence[Any], *args: Any, layer: CvxpyLayer, mode: str, settings: _Settings
) -> list[Any]:
    n_par = len(layer._specs)
    handles, params = args[0], args[1 : 1 + n_par]
    if ad.is_undefined_primal(handles) or any(ad.is_undefined_primal(p) for p in params):
        raise SecondDerivativeError(_SECOND_ORDER)
    outs = layer._outputs if mode == "jvp" else layer._specs
    lead = tuple(handles.shape)
    cts = [
        jnp.zeros(lead + o.shape, params[0].dtype if params else jnp.float64)
        if type(ct) is ad.Zero
        else ct
        for ct, o in zip(cts, outs)
    ]
    other = "vjp" if mode == "jvp" else "jvp"
    back = _linear_p.bind(handles, *params, *cts, layer=layer, mode=other, settings=settings)
    return [None] * (1 + n_par) + list(back)


def _linear_jvp(
    primals: Sequence[Any],
    tangents: Sequence[Any],
    *,
    layer: CvxpyLayer,
    mode: str,
    settings: _Settings,
):
    n_par = len(layer._specs)
    if any(type(t) is not ad.Zero for t in tangents[: 1 + n_par]):
        raise SecondDerivativeError(_SECOND_ORDER)
    out = _linear_p.bind(*primals, layer=layer, mode=mode, settings=settings)
    vec_tangents = [
        jnp.zeros(p.shape, p.dtype) if type(t) is ad.Zero else t
        for p, t in zip(primals[1 + n_par :], tangents[1 + n_par :])
    ]
    tangent_out = _linear_p.bind(
        *primals[: 1 + n_par], *vec_tangents, layer=layer, mode=mode, settings=settings
    )
    return out, tangent_out


def _unmapped(dim: Any) -> bool:
    """Whether a batching rule's operand dimension says "not mapped" (``None`` or JAX's
    ``NotMapped`` marker, depending on the version)."""
    return dim is None or type(dim).__name__ == "NotMapped"


def _linear_batch(
    args: Sequence[Any], dims: Sequence[Any], *, layer: CvxpyLayer, mode: str, settings: _Settings
):
    # The mapped axis becomes one more leading (batch) axis of every operand: the primitive
    # itself again, so that the batched tangent map stays transposable.
    size = next(a.shape[d] for a, d in zip(args, dims) if not _unmapped(d))
    moved = [
        jnp.broadcast_to(a, (size, *a.shape)) if _unmapped(d) else jnp.moveaxis(a, d, 0)
        for a, d in zip(args, dims)
    ]
    out = _linear_p.bind(*moved, layer=layer, mode=mode, settings=settings)
    return out, [0] * len(out)


_SECOND_ORDER = (
    "second derivatives of a CvxpyLayer are not provided (jax.hessian, jacfwd of jacrev, "
    "grad of grad): the implicit-function derivative is first order only; differentiate the "
    "layer once (jax.jvp, jax.grad, jacfwd or jacrev all work)"
)

_linear_p.def_impl(_linear_callback)
_linear_p.def_abstract_eval(_linear_abstract)
mlir.register_lowering(_linear_p, mlir.lower_fun(_linear_callback, multiple_results=True))
ad.primitive_transposes[_linear_p] = _linear_transpose
ad.primitive_jvps[_linear_p] = _linear_jvp
batching.primitive_batchers[_linear_p] = _linear_batch
