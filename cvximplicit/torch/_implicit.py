"""Implicit layers for PyTorch: fixed points and roots with conservative-Jacobian gradients.

The options, report, diagnosis and Anderson formulation are the core's
(`cvximplicit._implicit`); this module runs the loops in torch (no host round trip
per iteration beyond one scalar) and registers the gradient with autograd.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .._errors import ConvergenceError, ConvergenceWarning, ParameterError
from .._implicit import (
    BackwardSolver,
    FailurePolicy,
    ForwardSolver,
    Gradient,
    ImplicitInfo,
    ImplicitOptions,
    ImplicitStatus,
    IterationReport,
    Problem,
    Tracker,
    anderson_host,
    anderson_step_weights,
    dtype_name,
    failure_message,
    solve_linear,
)

__all__ = ["fixed_point", "jacobian_penalty", "root_find"]

Tensor = torch.Tensor
#: Dtypes whose CPU tensors share memory with a numpy array (the host Anderson loop).
_HOST_DTYPES = (torch.float32, torch.float64)
#: A tensor, or a tuple/list of tensors (the state of a multi-tensor implicit layer).
Tree = Any


class _Packing:
    """Flattens a tensor or a tuple/list of tensors into one vector and back."""

    def __init__(self, z0: Tree) -> None:
        self.single = isinstance(z0, Tensor)
        leaves = [z0] if self.single else list(z0) if isinstance(z0, (tuple, list)) else None
        if not leaves or not all(isinstance(t, Tensor) for t in leaves):
            raise ParameterError(
                f"z0 must be a tensor or a non-empty tuple/list of tensors, got {type(z0).__name__}"
            )
        self.kind = type(z0)
        self.shapes = [t.shape for t in leaves]
        self.sizes = [t.numel() for t in leaves]
        self.dtype, self.device = leaves[0].dtype, leaves[0].device
        if not self.dtype.is_floating_point:
            raise ParameterError(f"z0 must be floating point, got {self.dtype}")
        for t in leaves:
            if t.dtype != self.dtype or t.device != self.device:
                raise ParameterError(
                    "the tensors of z0 must share one dtype and device, got "
                    f"{[(str(s.dtype), str(s.device)) for s in leaves]}"
                )

    def leaves(self, tree: Tree) -> list[Tensor]:
        return [tree] if self.single else list(tree)

    def check(self, out: Tree, what: str) -> None:
        """``out`` (what ``f`` returned at ``z0``) has the structure, shapes and dtype of z0."""
        got_single = isinstance(out, Tensor)
        ok_kind = got_single if self.single else isinstance(out, (tuple, list))
        if not ok_kind or (not got_single and len(out) != len(self.shapes)):
            raise ParameterError(
                f"{what} returned {_describe(out)} but z0 is {self._describe()}: "
                "f must return the same structure as z0"
            )
        for i, (t, shape) in enumerate(zip(self.leaves(out), self.shapes)):
            where = "" if self.single else f" (element {i})"
            if not isinstance(t, Tensor) or t.shape != shape:
                raise ParameterError(
                    f"{what} returned shape {tuple(getattr(t, 'shape', ()))}{where} but z0 has "
                    f"shape {tuple(shape)}: pass a z0 with the shape of f's output (e.g. "
                    "torch.zeros_like of it; batched layers need the batch dimension in z0)"
                )
            if t.dtype != self.dtype:
                raise ParameterError(
                    f"{what} returned {t.dtype}{where} but z0 is {self.dtype}: create z0 in "
                    "the dtype f computes in"
                )

    def _describe(self) -> str:
        return _describe([torch.empty(s) for s in self.shapes] if not self.single else None)

    def flat(self, tree: Tree) -> Tensor:
        if self.single:
            return tree.reshape(-1)
        return torch.cat([t.reshape(-1) for t in tree])

    def unflat(self, x: Tensor) -> Tree:
        if self.single:
            return x.reshape(self.shapes[0])
        parts = torch.split(x, self.sizes)
        return self.kind(p.reshape(s) for p, s in zip(parts, self.shapes))


def _describe(tree: Any) -> str:
    if tree is None:
        return "a tensor"
    if isinstance(tree, Tensor):
        return f"a tensor of shape {tuple(tree.shape)}"
    if isinstance(tree, (tuple, list)):
        return f"a {type(tree).__name__} of {len(tree)}"
    return f"a {type(tree).__name__}"


def _norm(x: Tensor) -> float:
    return float(torch.linalg.vector_norm(x))


def _iterate(
    g: Callable[[Tensor], Tensor], x: Tensor, gx: Tensor, max_iter: int, track: Tracker
) -> Tensor:
    """Plain iteration ``x <- g(x)``; returns the last ``g(x)``."""
    for _ in range(max_iter):
        if track.add(_norm(gx - x), 1.0 + _norm(x)) or track.k == max_iter:
            break
        x, gx = gx, g(gx)
    return gx


def _anderson(
    g: Callable[[Tensor], Tensor],
    x: Tensor,
    gx: Tensor,
    max_iter: int,
    memory: int,
    regularization: float,
    track: Tracker,
    scale: float | None = None,
    host: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Tensor:
    """Anderson acceleration with the core's weights on a ring buffer of ``memory``
    iterates; returns the last ``g(x)``.  Residuals are relative to ``1 + ||x||``
    (forward), or to ``scale`` (the adjoint equation: ``||g||``).

    CPU tensors run the core's `anderson_host()` on shared-memory numpy views (a numpy call
    costs about a third of a tensor operation, and on small layers this bookkeeping is
    most of an iteration), with ``host`` (``g`` on numpy vectors; by default ``g`` between
    ``torch.from_numpy`` and ``.numpy()``); other devices run the same steps as tensor
    operations, with two host transfers per iteration (the new row of the Gram matrix and
    ``||x||``)."""
    if x.device.type == "cpu" and x.dtype in _HOST_DTYPES:
        host = host or (lambda v: g(torch.from_numpy(v)).numpy())
        out = anderson_host(
            host, x.numpy(), gx.numpy(), max_iter, memory, regularization, track, scale
        )
        return torch.from_numpy(out)
    return _anderson_tensor(g, x, gx, max_iter, memory, regularization, track, scale)


def _anderson_tensor(
    g: Callable[[Tensor], Tensor],
    x: Tensor,
    gx: Tensor,
    max_iter: int,
    memory: int,
    regularization: float,
    track: Tracker,
    scale: float | None = None,
) -> Tensor:
    """`anderson_host()`'s steps as tensor operations (any device)."""
    m = memory
    G = x.new_zeros((m, x.numel()))
    R = x.new_zeros((m, x.numel()))
    gram = np.zeros((m, m))
    for k in range(max_iter):
        slot, j = k % m, min(k + 1, m)  # the filled slots are a prefix of the ring buffer
        r = torch.sub(gx, x, out=R[slot])
        G[slot] = gx
        row = torch.mv(R[:j], r).double().cpu().numpy()
        size = scale or 1.0 + math.sqrt(float(torch.dot(x, x)))
        if track.add(math.sqrt(max(float(row[slot]), 0.0)), size) or track.k == max_iter:
            break
        weights = anderson_step_weights(gram, row, slot, j, regularization)
        x = torch.as_tensor(weights, dtype=x.dtype, device=x.device) @ G[:j]
        gx = g(x)
    return gx


def _fail(message: str, policy: FailurePolicy, stacklevel: int = 3) -> None:
    if policy is FailurePolicy.RAISE:
        raise ConvergenceError(message)
    if policy is FailurePolicy.WARN:
        warnings.warn(message, ConvergenceWarning, stacklevel=stacklevel)


def _options(
    options: ImplicitOptions | None, overrides: dict[str, Any], *, fixed: bool, eps: float
) -> ImplicitOptions:
    return (options or ImplicitOptions()).replace(**overrides).resolve(fixed_point=fixed, eps=eps)


class _Layer:
    """One implicit layer call: ``F`` on flat vectors, the forward solve and the gradient."""

    def __init__(
        self,
        problem: Problem,
        fn: Callable[..., Tree],
        z0: Tree,
        args: Sequence[Any],
        options: ImplicitOptions | None,
        overrides: dict[str, Any],
    ) -> None:
        self.problem = problem
        self.fixed = problem is Problem.FIXED_POINT
        self.fn, self.args = fn, tuple(args)
        self.pack = _Packing(z0)
        self.eps = float(torch.finfo(self.pack.dtype).eps)
        self.opts = _options(options, overrides, fixed=self.fixed, eps=self.eps)
        self.info = ImplicitInfo(
            problem,
            self.opts,
            dtype_name(self.eps),
            IterationReport(0, math.nan, math.nan, math.nan, 0, math.nan, 0),
        )

    # --- flat maps -------------------------------------------------------------------------
    def call(self, x: Tensor) -> Tensor:
        """``f`` (fixed point) or ``F`` (root) on a flat vector."""
        return self.pack.flat(self.fn(self.pack.unflat(x), *self.args))

    def host_call(self, v: np.ndarray) -> np.ndarray:
        """`call` on a numpy vector (CPU); a single tensor is reshaped on the numpy side,
        where a reshape costs a tenth of torch's."""
        if self.pack.single:
            out = self.fn(torch.from_numpy(v.reshape(self.pack.shapes[0])), *self.args)
            return out.numpy().reshape(-1)
        return self.call(torch.from_numpy(v)).numpy()

    def residual_map(self, x: Tensor) -> Tensor:
        """``F(z)``: ``z - f(z)`` for a fixed point."""
        return x - self.call(x) if self.fixed else self.call(x)

    # --- forward ---------------------------------------------------------------------------
    def forward(self, z0: Tree) -> Tensor:
        x0 = self.pack.flat(z0).detach()
        what = "f(z0, *args)" if self.fixed else "F(z0, *args)"
        with torch.no_grad():
            out0 = self.fn(self.pack.unflat(x0), *self.args)
            self.pack.check(out0, what)
            y0 = self.pack.flat(out0)
            track = Tracker(float(self.opts.tol), self.eps)  # type: ignore[arg-type]
            max_iter = int(self.opts.max_iter)  # type: ignore[arg-type]
            if self.opts.solver is ForwardSolver.ITERATION:
                z = _iterate(self.call, x0, y0, max_iter, track)
            elif self.opts.solver is ForwardSolver.ANDERSON:
                reg = float(self.opts.regularization)  # type: ignore[arg-type]
                z = _anderson(
                    self.call, x0, y0, max_iter, self.opts.memory, reg, track,
                    host=self.host_call,
                )  # fmt: skip
            else:
                z = self._root(x0, y0, track)
        self.info.forward = track.report()
        if not bool(self.info.forward.converged):
            message = failure_message(
                self.info.forward, self.opts, self.problem, "forward", self.eps
            )
            _fail(message, self.opts.on_failure, stacklevel=4)  # type: ignore[arg-type]
            if self.opts.on_failure is FailurePolicy.NAN:
                z = torch.full_like(z, math.nan)
        return z

    def _root(self, x: Tensor, r: Tensor, track: Tracker) -> Tensor:
        """Newton (dense Jacobian, backtracking on ``||F||``) or good Broyden."""
        newton = self.opts.solver is ForwardSolver.NEWTON
        H = None if newton else torch.linalg.pinv(self._jacobian(x))
        norm = _norm(r)
        stop = track.add(norm, 1.0 + _norm(x))
        while not stop and track.k < int(self.opts.max_iter):  # type: ignore[arg-type]
            if H is None:
                step = -torch.linalg.lstsq(self._jacobian(x), r[:, None]).solution[:, 0]
            else:
                step = -(H @ r)
            alpha = 1.0
            while True:
                x_new = x + alpha * step
                r_new = self.call(x_new)
                new = _norm(r_new)
                if new < norm or alpha < 1e-4:
                    break
                alpha *= 0.5
            if H is not None:
                s, y = x_new - x, r_new - r
                Hy = H @ y
                denom = s @ Hy
                if abs(float(denom)) > 1e-300:
                    H = H + torch.outer(s - Hy, s @ H) / denom
            x, r, norm = x_new, r_new, new
            stop = track.add(norm, 1.0 + _norm(x))
        return x

    def _jacobian(self, x: Tensor) -> Tensor:
        with torch.enable_grad():
            return torch.autograd.functional.jacobian(self.call, x)  # type: ignore[return-value]

    # --- gradients -------------------------------------------------------------------------
    def implicit(self, z: Tensor) -> Tensor:
        """``z`` with the implicit gradient attached (value unchanged)."""
        with torch.enable_grad():
            F_star = self.residual_map(z.detach())  # graph to the parameters only
        if not F_star.requires_grad:
            return z
        out = z.detach() - (F_star - F_star.detach())  # value z*; gradient -J_args F' w

        def hook(grad: Tensor | None) -> Tensor | None:
            if grad is None:
                return None
            vjp_host: Callable[[np.ndarray], np.ndarray] | None = None
            if self.pack.single:  # the graph in f's own shape: no reshape nodes to traverse
                shape = self.pack.shapes[0]
                z_in = z.detach().reshape(shape).clone().requires_grad_()
                with torch.enable_grad():
                    out_in = self.fn(z_in, *self.args)  # f (fixed point) or F (root)
                vjp_shaped = _vjp(out_in, z_in)
                vjp_out = lambda w: vjp_shaped(w.reshape(shape)).reshape(-1)  # noqa: E731
                # the host loop's products reshape on the numpy side (a tenth of the cost)
                vjp_host = lambda v: (  # noqa: E731
                    vjp_shaped(torch.from_numpy(v.reshape(shape))).numpy().reshape(-1)
                )
            else:
                z_in = z.detach().clone().requires_grad_()
                with torch.enable_grad():
                    out_in = self.call(z_in)
                vjp_out = _vjp(out_in, z_in)
            return self._adjoint(vjp_out, grad.detach(), out_in, z_in, vjp_host)

        out.register_hook(hook)
        return out

    def _adjoint(
        self,
        vjp_out: Callable[[Tensor], Tensor],
        g: Tensor,
        out_in: Tensor,
        z_in: Tensor,
        vjp_host: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> Tensor:
        """Solve ``J_z F' w = g``; ``vjp_out`` is ``w -> J_z f' w`` for a fixed point
        (``F = z - f``) and ``w -> J_z F' w`` for a root (``vjp_host``: the same on numpy
        vectors, for the host Anderson loop)."""
        opts = self.opts
        method = opts.backward_solver
        tol, max_iter = float(opts.backward_tol), int(opts.backward_max_iter)  # type: ignore[arg-type]
        gnorm = max(_norm(g), torch.finfo(g.dtype).tiny)
        track = Tracker(tol, self.eps)
        rho: float | None = None
        if not bool(torch.isfinite(g).all()):
            raise ConvergenceError(
                f"the cotangent reaching the {self.problem.value} layer is not finite: "
                "the loss or a later layer produced NaN/Inf"
            )
        if self.fixed:
            vjp = lambda w: w - vjp_out(w)  # noqa: E731
            step = lambda w: g + vjp_out(w)  # noqa: E731  (w + g - J_z F' w)
        else:
            vjp = vjp_out
            step = lambda w: w + g - vjp_out(w)  # noqa: E731
        if method is BackwardSolver.FIXED_POINT:
            w = g
            for _ in range(max_iter):
                r = step(w) - w
                stop = track.add(_norm(r), gnorm)
                if track.k >= 2 and self.fixed and track.previous > 0:
                    rho = track.r / track.previous  # residuals follow r <- J_z f' r
                if stop:
                    break
                w = w + r
        elif method is BackwardSolver.ANDERSON:
            reg = float(opts.regularization)  # type: ignore[arg-type]
            host_step = None
            if vjp_host is not None and g.device.type == "cpu" and g.dtype in _HOST_DTYPES:
                g_np = g.numpy()
                host_step = (
                    (lambda v: g_np + vjp_host(v))
                    if self.fixed
                    else (lambda v: v + g_np - vjp_host(v))
                )
            w = _anderson(step, g, step(g), max_iter, opts.memory, reg, track, gnorm, host_step)
        elif method is BackwardSolver.DENSE:
            n = g.numel()
            eye = torch.eye(n, dtype=g.dtype, device=g.device)
            (J,) = torch.autograd.grad(
                out_in, z_in, eye.reshape(n, *out_in.shape), retain_graph=True,
                is_grads_batched=True,
            )  # fmt: skip
            J = J.reshape(n, n)
            w = torch.linalg.solve(eye - J.T if self.fixed else J.T, g)
            track.add(_norm(vjp(w) - g), gnorm)
        else:

            def apply(v: np.ndarray) -> np.ndarray:
                vt = torch.as_tensor(v, dtype=g.dtype, device=g.device)
                return vjp(vt).to(torch.float64).cpu().numpy()

            rhs = g.to(torch.float64).cpu().numpy()
            w_np, its, res = solve_linear(apply, rhs, method=method, tol=tol, max_iter=max_iter)  # type: ignore[arg-type]
            w = torch.as_tensor(w_np, dtype=g.dtype, device=g.device)
            track.add(res * gnorm, gnorm)
            track.k = track.k_best = its
        report = track.report()
        if report.status != ImplicitStatus.CONVERGED and self.fixed and rho is None:
            rho = _power_iteration(vjp_out, g)
        self.info.backward, self.info.spectral_radius = report, rho
        if report.status != ImplicitStatus.CONVERGED:
            message = failure_message(
                report, opts, self.problem, "backward", self.eps, spectral_radius=rho
            )
            _fail(message, opts.on_failure, stacklevel=2)  # type: ignore[arg-type]
            if opts.on_failure is FailurePolicy.NAN:
                w = torch.full_like(w, math.nan)
        return w

    def phantom(self, z: Tensor) -> Tensor:
        """``z`` with the phantom gradient attached (value unchanged; inexact)."""
        d = self.opts.phantom_damping
        with torch.enable_grad():
            x = z.detach()
            for _ in range(self.opts.phantom_steps):
                x = x - d * self.residual_map(x)
        return z.detach() + (x - x.detach())

    def unroll(self, z0: Tree) -> Tensor:
        """Autograd through exactly ``max_iter`` plain iterations from ``z0``."""
        x = self.pack.flat(z0)
        self.pack.check(self.fn(self.pack.unflat(x.detach()), *self.args), "f(z0, *args)")
        x0 = first = last = x.detach()
        for k in range(int(self.opts.max_iter)):  # type: ignore[arg-type]
            last, x = x, self.call(x)
            if k == 0:
                first = x.detach() - x0
        track = Tracker(float(self.opts.tol), self.eps)  # type: ignore[arg-type]
        track.add(_norm(first), 1.0 + _norm(x0))
        if self.opts.max_iter > 1:  # type: ignore[operator]
            last = last.detach()
            track.add(_norm(x.detach() - last), 1.0 + _norm(last))
            track.k = int(self.opts.max_iter)  # type: ignore[arg-type]
        self.info.forward = track.report()
        if not bool(self.info.forward.converged):
            message = failure_message(
                self.info.forward, self.opts, self.problem, "forward", self.eps
            )
            _fail(message, self.opts.on_failure, stacklevel=4)  # type: ignore[arg-type]
            if self.opts.on_failure is FailurePolicy.NAN:
                x = x * math.nan
        return x


#: Autograd's engine: `_vjp()` calls it directly, as `torch.autograd.grad` does after its
#: argument checks (``None`` if a torch release moves it; then `torch.autograd.grad` runs).
_ENGINE = getattr(getattr(torch.autograd, "Variable", None), "_execution_engine", None)


def _vjp(output: Tensor, inp: Tensor) -> Callable[[Tensor], Tensor]:
    """``w -> (d output / d inp)' w`` on ``output``'s retained graph (zero where ``output``
    does not depend on ``inp``).

    One call into autograd's engine per product: `torch.autograd.grad` spends about 15 us
    per call checking arguments that are right here by construction (``w`` has the shape
    and dtype of ``output``), which on a small layer is most of a backward iteration
    (34 vs 20 us for a 64 x 64 relu layer on batch 64).  `test_vjp_matches_autograd_grad`
    keeps the two equal."""
    if _ENGINE is None:

        def vjp(w: Tensor) -> Tensor:
            (jw,) = torch.autograd.grad(output, inp, w, retain_graph=True, allow_unused=True)
            return torch.zeros_like(w) if jw is None else jw

        return vjp
    engine = _ENGINE

    def vjp_engine(w: Tensor) -> Tensor:
        (jw,) = engine.run_backward((output,), (w,), True, False, (inp,), True, False)
        return torch.zeros_like(w) if jw is None else jw

    return vjp_engine


def _power_iteration(
    apply: Callable[[Tensor], Tensor], like: Tensor, iterations: int = 30
) -> float:
    """Spectral radius of ``M`` from products ``M v`` (here ``J_z f' v``), for messages."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    v = torch.randn(like.numel(), generator=gen, dtype=like.dtype).to(like.device)
    v = v / torch.linalg.vector_norm(v)
    estimate = 0.0
    for _ in range(iterations):
        u = apply(v)
        estimate = _norm(u)
        if estimate == 0.0 or not math.isfinite(estimate):
            break
        v = u / estimate
    return estimate


def _run(layer: _Layer, z0: Tree, return_info: bool) -> Any:
    if layer.opts.gradient is Gradient.UNROLL:
        z = layer.unroll(z0)
    else:
        z = layer.forward(z0)
        if torch.is_grad_enabled():
            z = layer.phantom(z) if layer.opts.gradient is Gradient.PHANTOM else layer.implicit(z)
    out = layer.pack.unflat(z)
    return (out, layer.info) if return_info else out


def fixed_point(
    f: Callable[..., Tree],
    z0: Tree,
    *args: Any,
    solver: ForwardSolver | str | None = None,
    tol: float | None = None,
    max_iter: int | None = None,
    memory: int | None = None,
    gradient: Gradient | str | None = None,
    backward_solver: BackwardSolver | str | None = None,
    backward_tol: float | None = None,
    backward_max_iter: int | None = None,
    phantom_steps: int | None = None,
    phantom_damping: float | None = None,
    on_failure: FailurePolicy | str | None = None,
    options: ImplicitOptions | None = None,
    return_info: bool = False,
) -> Any:
    r"""A fixed point ``z* = f(z*, *args)``, differentiable in ``args`` and in every tensor
    ``f`` closes over (e.g. the weights of ``torch.nn`` modules).

    The root of ``F(z) = z - f(z)`` (see `root_find()`).  ``z0`` is a tensor or a
    tuple/list of tensors, and ``f`` returns the same structure, shapes and dtype.  The
    keyword arguments are the fields of `cvximplicit.ImplicitOptions` (their
    defaults depend on the dtype of ``z0``) and override ``options``.

    Forward: Anderson acceleration (default) or plain iteration, without a graph, until
    ``||f(z) - z|| <= tol (1 + ||z||)``; ``tol`` defaults to ``max(100 eps, 1e-8)`` (1.2e-5
    in float32, 1e-8 in float64).  Backward (``gradient="implicit"``): with ``J = J_z f(z*)``
    the vector-Jacobian products autograd gives, solve ``(I - J)' w = g`` matrix-free
    (``backward_solver``: ``"anderson"`` by default, ``"fixed_point"``, ``"gmres"``,
    ``"bicgstab"`` or ``"dense"``) and propagate ``w`` through one application of ``f``.
    Memory does not grow with the iterations.  ``gradient="phantom"`` is a cheaper
    **inexact** gradient (``phantom_steps`` damped steps from ``z*``), ``"unroll"``
    differentiates ``max_iter`` plain iterations, for comparison.

    Why this is valid at kinks: autograd's VJPs of ``relu``, ``abs``, ``max`` ... are elements
    of a conservative Jacobian, and by the nonsmooth implicit function theorem ``-B^{-1} A``
    built from any such element (here ``B = I - J``) is a conservative Jacobian of ``z*``,
    provided every such ``B`` is invertible (e.g. ``relu(W z + U x)`` with ``||W||_2 < 1``).

    Failures (``on_failure="raise"``, the default): a solve that misses its tolerance raises
    `cvximplicit.ConvergenceError` saying why (the dtype's precision floor,
    divergence, a stall, slow contraction; backward: the spectral radius of ``J``) and which
    option fixes it; ``"warn"`` warns and returns the last iterate, ``"nan"`` returns NaN.
    ``return_info=True`` returns ``(z, info)``, an `cvximplicit.ImplicitInfo` whose
    backward fields are filled when the backward pass runs.

    Example:
        >>> import torch
        >>> from cvximplicit.torch import fixed_point
        >>> W = 0.5 * torch.eye(3, dtype=torch.float64)
        >>> x = torch.ones(3, dtype=torch.float64, requires_grad=True)
        >>> f = lambda z, x: torch.relu(W @ z + x)
        >>> z = fixed_point(f, torch.zeros(3, dtype=torch.float64), x)
        >>> z.sum().backward()
        >>> torch.round(x.grad, decimals=6)  # dz/dx = (I - W)^{-1} = 2 I
        tensor([2., 2., 2.], dtype=torch.float64)
    """
    overrides = dict(
        solver=solver,
        tol=tol,
        max_iter=max_iter,
        memory=memory,
        gradient=gradient,
        backward_solver=backward_solver,
        backward_tol=backward_tol,
        backward_max_iter=backward_max_iter,
        phantom_steps=phantom_steps,
        phantom_damping=phantom_damping,
        on_failure=on_failure,
    )
    layer = _Layer(Problem.FIXED_POINT, f, z0, args, options, overrides)
    return _run(layer, z0, return_info)


def root_find(
    F: Callable[..., Tree],
    z0: Tree,
    *args: Any,
    solver: ForwardSolver | str | None = None,
    tol: float | None = None,
    max_iter: int | None = None,
    gradient: Gradient | str | None = None,
    backward_solver: BackwardSolver | str | None = None,
    backward_tol: float | None = None,
    backward_max_iter: int | None = None,
    phantom_steps: int | None = None,
    phantom_damping: float | None = None,
    on_failure: FailurePolicy | str | None = None,
    options: ImplicitOptions | None = None,
    return_info: bool = False,
) -> Any:
    r"""A root ``F(z*, *args) = 0``, differentiable in ``args`` and in tensors ``F`` closes over.

    Forward: ``solver="newton"`` (default; dense Jacobian from autograd, backtracking on
    ``||F||``) or ``"broyden"``, until ``||F(z)|| <= tol (1 + ||z||)``.  Backward: solve
    ``J_z F' w = g`` with VJPs of ``F`` (``backward_solver="gmres"`` by default, or
    ``"bicgstab"``, ``"dense"``, ``"fixed_point"``, ``"anderson"``) and return
    ``-J_args F' w``: the implicit function theorem with ``B = J_z F`` (any element of its
    conservative Jacobian, as autograd returns at kinks).  Options, tuples of tensors,
    failures and ``return_info`` as in `fixed_point()` (``gradient="unroll"`` is for
    fixed points only).

    Example:
        >>> import torch
        >>> from cvximplicit.torch import root_find
        >>> x = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
        >>> z = root_find(lambda z, x: z**3 + z - x, torch.zeros((), dtype=torch.float64), x)
        >>> z.backward(); round(float(x.grad), 6)  # dz/dx = 1 / (3 z^2 + 1) at z = 1
        0.25
    """
    overrides = dict(
        solver=solver,
        tol=tol,
        max_iter=max_iter,
        gradient=gradient,
        backward_solver=backward_solver,
        backward_tol=backward_tol,
        backward_max_iter=backward_max_iter,
        phantom_steps=phantom_steps,
        phantom_damping=phantom_damping,
        on_failure=on_failure,
    )
    layer = _Layer(Problem.ROOT, F, z0, args, options, overrides)
    return _run(layer, z0, return_info)


def jacobian_penalty(
    f: Callable[..., Tree],
    z: Tree,
    *args: Any,
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""A stochastic estimate of ``||J_z f(z, *args)||_F^2``, differentiable in the parameters:
    Jacobian regularisation for equilibrium models (Bai, Koltun and Kolter, 2021).

    Adding ``gamma * jacobian_penalty(f, z_star.detach(), x)`` to the loss keeps ``f``
    contractive (a small spectral radius of ``J_z f``: fewer forward and backward iterations,
    a safely invertible ``I - J_z f``).  **Inexact by design**: Hutchinson's estimator
    ``mean_i ||J' v_i||^2`` over ``samples`` Gaussian vectors ``v_i`` is unbiased for the
    squared Frobenius norm (its gradient for the norm's gradient), with a variance that
    falls like ``1 / samples``.  It changes the training objective, not the layer's gradient.

    Example:
        >>> import torch
        >>> from cvximplicit.torch import jacobian_penalty
        >>> W = torch.full((4, 4), 0.1, requires_grad=True)
        >>> gen = torch.Generator().manual_seed(0)
        >>> p = jacobian_penalty(lambda z: W @ z, torch.ones(4), samples=4000, generator=gen)
        >>> round(p.item(), 1)  # ||W||_F^2 = 0.16
        0.2
    """
    pack = _Packing(z)
    x = pack.flat(z).detach().requires_grad_()
    with torch.enable_grad():
        fx = pack.flat(f(pack.unflat(x), *args))
        v = torch.randn((samples, x.numel()), generator=generator, dtype=x.dtype).to(x.device)
        (jv,) = torch.autograd.grad(fx, x, v, create_graph=True, is_grads_batched=True)
    return (jv**2).sum() / samples
