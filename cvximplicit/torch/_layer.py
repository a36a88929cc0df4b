"""``CvxpyLayer`` for PyTorch: tensors in, the core's solve and derivatives, tensors out."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import cvxpy as cp
import numpy as np
import torch
import torch._C._functorch as functorch

from .._batch import OnFailure, as_on_failure
from .._cones import KinkPolicy
from .._diagnostics import Diagnostics
from .._errors import ParameterError, SecondDerivativeError
from .._program import BatchSolution, Program, Solution, WarmStarter, layer_program
from .._solvers import SolverLike

__all__ = ["CvxpyLayer"]


class _Holder:
    """Carries the core's solution from ``forward`` to ``setup_context`` (non-tensor data
    cannot be returned by an autograd Function)."""

    solution: Solution | BatchSolution | None = None


def _to_numpy(t: torch.Tensor | None) -> np.ndarray | None:
    if t is None:
        return None
    if functorch.is_functorch_wrapped_tensor(t):  # an outer torch.func transform's tensor
        if functorch.is_batchedtensor(t):
            raise NotImplementedError(
                "nested torch.func transforms over a CvxpyLayer (vmap of jacrev/jacfwd) are "
                "not supported: for per-example Jacobians call jacrev/jacfwd on the batched "
                "layer (a leading batch dimension), or loop over the examples"
            )
        raise SecondDerivativeError(_SECOND_ORDER)
    return t.detach().to(device="cpu", dtype=torch.float64).numpy()


class _Linearized(torch.autograd.Function):
    """Applies a solution's VJP or JVP to tensors.

    Running the numpy code inside an autograd Function's ``forward`` (rather than directly in
    ``backward``/``jvp``) lets ``torch.func`` transforms hand it plain tensors.  The
    derivative of a derivative is not provided (the result is treated as constant)."""

    @staticmethod
    def forward(
        solution: Solution | BatchSolution,
        mode: str,
        meta: list[tuple[torch.dtype, torch.device]],
        *vectors: torch.Tensor | None,
    ) -> tuple[torch.Tensor, ...]:
        arrays = [_to_numpy(v) for v in vectors]
        result = solution.vjp(*arrays) if mode == "vjp" else solution.jvp(*arrays)
        return tuple(
            torch.as_tensor(r, dtype=dtype, device=device)
            for r, (dtype, device) in zip(result, meta)
        )

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.mark_non_differentiable(*output)

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:  # pragma: no cover - non-differentiable
        raise SecondDerivativeError(_SECOND_ORDER)

    @staticmethod
    def jvp(ctx: Any, *grad_inputs: Any) -> Any:
        raise SecondDerivativeError(_SECOND_ORDER)

    @staticmethod
    def vmap(  # type: ignore[override]
        info: Any,
        in_dims: tuple[Any, ...],
        solution: Solution | BatchSolution,
        mode: str,
        meta: list[tuple[torch.dtype, torch.device]],
        *vectors: torch.Tensor | None,
    ) -> tuple[tuple[torch.Tensor, ...], tuple[int, ...]]:
        """``torch.func.vmap`` over the vectors (``jacrev``/``jacfwd``): the same solution's
        VJP or JVP for each mapped vector."""
        dims = in_dims[3:]
        size = info.batch_size
        moved = [
            None if v is None else (v.movedim(d, 0) if d is not None else v.expand(size, *v.shape))
            for v, d in zip(vectors, dims)
        ]
        rows = [
            _Linearized.forward(solution, mode, meta, *[None if v is None else v[i] for v in moved])
            for i in range(size)
        ]
        out = tuple(torch.stack([r[k] for r in rows]) for k in range(len(meta)))
        return out, (0,) * len(out)


_SECOND_ORDER = (
    "second derivatives of a CvxpyLayer are not provided (the implicit-function derivative "
    "is first order only): differentiate the layer once, e.g. compute gradient penalties "
    "with finite differences of layer gradients, or keep the layer out of create_graph=True "
    "double backward passes"
)


class _FirstOrderOnly(torch.autograd.Function):
    """Passes gradients through unchanged but raises a clear error when differentiated.

    Used when ``backward`` runs with ``create_graph=True``: the gradients are tied to the
    layer's parameters so that differentiating them again reaches this node, which says
    what is missing instead of torch's generic "does not require grad"."""

    generate_vmap_rule = True  # forward is plain torch (clones): torch.func can batch it

    @staticmethod
    def forward(count: int, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t.clone() for t in tensors[:count])

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        raise SecondDerivativeError(_SECOND_ORDER)


class _SolveFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        layer: CvxpyLayer,
        holder: _Holder,
        solver_args: dict[str, Any] | None,
        *params: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        values = [p.detach().to(device="cpu", dtype=torch.float64).numpy() for p in params]
        program = layer.program
        batched = bool(program.batch_shape(*params))  # one leading axis at most (forward)
        previous = layer._warm.candidate() if layer._warm_now else None
        layer._warm_attempted = previous is not None
        if batched:
            sol: Solution | BatchSolution = program.solve_batch(
                *values,
                executor=layer.executor,
                solver_args=solver_args,
                on_failure=layer.on_failure,
                warm_start=previous if isinstance(previous, BatchSolution) else None,
            )
        else:
            sol = program.solve(
                *values,
                solver_args=solver_args,
                warm_start=previous if isinstance(previous, Solution) else None,
            )
        holder.solution = sol
        dtype, device = layer._out_dtype_device(params)
        return tuple(torch.as_tensor(v, dtype=dtype, device=device) for v in sol.values)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        _, holder, _, *params = inputs
        ctx.solution = holder.solution
        ctx.params = params  # inputs only (no cycle): anchors for _FirstOrderOnly
        ctx.param_meta = [(p.dtype, p.device) for p in params]
        ctx.out_meta = [(o.dtype, o.device) for o in output]

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[Any, ...]:
        if all(g is None for g in grads):
            return (None, None, None, *[None for _ in ctx.param_meta])
        out = _Linearized.apply(ctx.solution, "vjp", ctx.param_meta, *grads)
        if torch.is_grad_enabled():  # create_graph=True: say so if differentiated again
            anchors = [p for p in ctx.params if p.requires_grad]
            out = _FirstOrderOnly.apply(len(out), *out, *anchors)
        return (None, None, None, *out)

    @staticmethod
    def jvp(ctx: Any, *grad_inputs: Any) -> Any:
        tangents = grad_inputs[3:]  # no tangents for (layer, holder, solver_args)
        return _Linearized.apply(ctx.solution, "jvp", ctx.out_meta, *tangents)

    @staticmethod
    def vmap(  # type: ignore[override]
        info: Any,
        in_dims: tuple[Any, ...],
        layer: CvxpyLayer,
        holder: _Holder,
        solver_args: dict[str, Any] | None,
        *params: torch.Tensor,
    ) -> tuple[tuple[torch.Tensor, ...], tuple[int, ...]]:
        """``torch.func.vmap``: the mapped axis becomes the layer's batch axis (one batched
        solve); parameters that are not mapped are shared across the batch."""
        dims = in_dims[3:]
        specs = layer.program.parameter_specs
        moved = []
        for p, d, spec in zip(params, dims, specs):
            if d is None:
                moved.append(p)
                continue
            if p.dim() != len(spec.shape) + 1:
                raise ParameterError(
                    f"parameter {spec.label}: torch.func.vmap over a value that already has a "
                    "batch axis is not supported; pass one batch axis (vmap or an explicit "
                    "leading dimension, not both)"
                )
            moved.append(p.movedim(d, 0))
        outputs = _SolveFunction.apply(layer, holder, solver_args, *moved)
        return tuple(outputs), (0,) * len(outputs)


class CvxpyLayer(torch.nn.Module):
    r"""A differentiable convex optimization layer for PyTorch.

    A drop-in replacement for ``cvxpylayers.torch.CvxpyLayer``: the same constructor and call,
    with exact derivatives (quadratic objectives kept, solutions polished to machine
    precision, the nonsmooth implicit function theorem at kinks).  Forward:
    $x^\star(\theta)$ for the problem's parameters $\theta$; backward: the vector-Jacobian
    product $J^\top g$ with $J = -B^{-1}\,\partial F/\partial\theta$ from one factorization of
    $B$ per solution; forward-mode AD (``torch.func.jvp``,
    dual tensors) through the core's JVP.

    Args:
        problem: a DPP ``cvxpy.Problem``, or a compiled `cvximplicit.Program` (then
            omit ``parameters`` and ``variables``; the program keeps its own settings).
        parameters: its parameters, in the order tensors will be passed.
        variables: the outputs: variables (primal values) or constraints (their duals).
        solver: a solver name (``"CLARABEL"``, ``"SCS"``, ``"OSQP"``), a
            `cvximplicit.Solver` instance or class, or ``None`` for Clarabel.
        gp: the problem is a geometric program (log-log transformed; positive parameters).
        verbose: print solver output.
        canon_backend: accepted for compatibility with cvxpylayers and ignored.
        solver_args: default solver settings, overridable per call.
        kink: see `cvximplicit.compile()`.
        polish: see `cvximplicit.compile()`.
        strict: see `cvximplicit.compile()`.
        executor: a ``concurrent.futures.Executor`` for batched solves (default: threads).
        warm_start: start every call from the previous call's solution (see
            `forward()`); off by default.
        on_failure: for batched calls, ``"raise"`` (default) or ``"nan"``: failed elements
            (infeasible, unbounded, solver failure) give NaN outputs and zero gradients
            (see `cvximplicit.Program.solve_batch()`); ``last_solution.ok`` and
            ``last_solution.errors`` say which and why.

    Batching: every parameter may carry one leading batch dimension; unbatched ones are
    broadcast (their gradient is summed over the batch).  Outputs have the inputs' floating
    dtype (float32 in, float32 out; the solve itself runs in float64) and the first
    parameter's device.  ``last_solution`` and ``last_diagnostics`` describe the last call.

    Examples:
        >>> import cvxpy as cp, torch
        >>> from cvximplicit.torch import CvxpyLayer
        >>> x = cp.Variable(2); A = cp.Parameter((3, 2)); b = cp.Parameter(3)
        >>> prob = cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b)), [x >= 0])
        >>> layer = CvxpyLayer(prob, parameters=[A, b], variables=[x])
        >>> A_t = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
        >>> b_t = torch.randn(3, dtype=torch.float64, requires_grad=True)
        >>> (x_t,) = layer(A_t, b_t)
        >>> x_t.shape
        torch.Size([4, 2])
        >>> x_t.sum().backward()
    """

    def __init__(
        self,
        problem: cp.Problem | Program,
        parameters: Sequence[cp.Parameter] | None = None,
        variables: Sequence[Any] | None = None,
        solver: SolverLike = None,
        gp: bool = False,
        verbose: bool = False,
        canon_backend: str | None = None,
        solver_args: dict[str, Any] | None = None,
        *,
        kink: KinkPolicy | str = KinkPolicy.ACTIVE,
        polish: bool = True,
        strict: bool = False,
        executor: Executor | None = None,
        on_failure: OnFailure | str = OnFailure.RAISE,
        warm_start: bool = False,
    ) -> None:
        """Compile ``problem`` once; see the class docstring for every argument.

        ``CvxpyLayer(problem, parameters=[A, b], variables=[x])`` as in cvxpylayers; a
        constraint (or ``con.dual_variables[0]``) in ``variables`` returns its dual;
        ``solver_args`` are checked here (cvxpylayers' SCS names such as ``eps`` and
        ``max_iters`` are translated with a warning).
        """
        super().__init__()
        self.on_failure = as_on_failure(on_failure)
        #: Start each call from the previous call's solution (see ``forward``).
        self.warm_start = warm_start
        self._warm = WarmStarter()
        self._warm_now = False
        self._warm_attempted = False
        del canon_backend  # accepted for compatibility with cvxpylayers; no effect here
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
        self.last_solution: Solution | BatchSolution | None = None

    def extra_repr(self) -> str:
        return repr(self.program)

    @property
    def last_diagnostics(self) -> list[Diagnostics]:
        """Per-element diagnostics of the last call (without the condition estimate, which
        ``last_solution.diagnostics`` computes on demand)."""
        sol = self.last_solution
        if sol is None:
            return []
        if isinstance(sol, BatchSolution):
            return [d for d in sol.diagnostics if d is not None]
        return [sol.info]

    def to(self, *args: Any, **kwargs: Any) -> CvxpyLayer:
        """Accepted for ``nn.Module`` compatibility; the layer holds no tensors, so this moves
        nothing.  The solve and its derivatives run in float64 on the CPU whatever the
        device, and outputs follow the inputs' device; a non-CPU device is said so."""
        device = kwargs.get(
            "device", next((a for a in args if isinstance(a, (str, torch.device))), None)
        )
        if device is not None and torch.device(device).type != "cpu":
            warnings.warn(
                f"CvxpyLayer.to({str(device)!r}) moves nothing: the solver and the derivatives "
                "run on the CPU in float64; outputs are returned on the device of the input "
                "tensors (pass tensors on that device)",
                UserWarning,
                stacklevel=2,
            )
        return super().to(*args, **kwargs)

    @staticmethod
    def _out_dtype_device(params: Sequence[torch.Tensor]) -> tuple[torch.dtype, torch.device]:
        floats = [p.dtype for p in params if p.is_floating_point()]
        dtype = (
            torch.float64
            if torch.float64 in floats
            else (floats[0] if floats else torch.get_default_dtype())
        )
        device = params[0].device if params else torch.device("cpu")
        return dtype, device

    def forward(
        self,
        *params: torch.Tensor,
        solver_args: dict[str, Any] | None = None,
        warm_start: bool | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Solve for the given parameter tensors; returns one tensor per output.

        ``warm_start`` (default: the layer's ``warm_start``): start from the previous call's
        solution (per batch element) by semismooth Newton with the new parameters; where
        that reaches the polishing target within a few steps no solver runs, elsewhere the
        solver does (``layer.last_diagnostics[i].start`` is ``"warm"`` or ``"cold"``, with
        ``start_reason``).  Values and gradients equal the cold path's.
        """
        tensors = [p if isinstance(p, torch.Tensor) else torch.as_tensor(p) for p in params]
        if len(self.program.batch_shape(*tensors)) > 1:  # the core's checks, then ours
            raise ParameterError(
                "the PyTorch layer takes at most one leading batch axis; reshape the values "
                "to (batch, *shape) or map over further axes with torch.func.vmap"
            )
        holder = _Holder()
        self._warm_now = self.warm_start if warm_start is None else warm_start
        outputs = _SolveFunction.apply(self, holder, solver_args, *tensors)
        self.last_solution = holder.solution
        if self._warm_now and holder.solution is not None:
            self._warm.record(holder.solution, self._warm_attempted)
        elif holder.solution is not None:
            self._warm.previous = holder.solution
        return tuple(outputs)
