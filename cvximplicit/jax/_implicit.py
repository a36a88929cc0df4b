"""Implicit layers for JAX: fixed points and roots, under ``jit``, ``vmap`` and ``grad``.

The options, report, diagnosis and Anderson formulation are the core's
(`cvximplicit._implicit`); this module runs the same loops as ``jax.lax`` loops and
registers the gradient as a ``custom_vjp``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.core import Tracer
from jax.flatten_util import ravel_pytree

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
    anderson_weights,
    classify,
    dtype_name,
    failure_message,
    should_stop,
)

__all__ = ["fixed_point", "jacobian_penalty", "root_find", "spectral_radius"]

jax.tree_util.register_dataclass(
    IterationReport,
    data_fields=[
        "iterations",
        "residual",
        "initial_residual",
        "best_residual",
        "best_iteration",
        "growth",
        "status",
    ],
    meta_fields=[],
)
jax.tree_util.register_dataclass(
    ImplicitInfo,
    data_fields=["forward", "backward", "spectral_radius"],
    meta_fields=["problem", "options", "dtype", "traced"],
)

#: k, relative residual, first relative residual, best, its iteration, first and last absolute
Track = tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]


def _norm(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(x * x))


def _start(a: jax.Array, scale: jax.Array) -> Track:
    one, r = jnp.asarray(1), a / scale
    return one, r, r, r, one, a, a


def _add(track: Track, a: jax.Array, scale: jax.Array) -> Track:
    k, _, r0, best, k_best, a0, _ = track
    k, r = k + 1, a / scale
    better = r < best
    return k, r, r0, jnp.where(better, r, best), jnp.where(better, k, k_best), a0, a


def _going(track: Track, tol: float, max_iter: int) -> jax.Array:
    k, r, _, _, k_best, _, _ = track
    return (k < max_iter) & ~should_stop(k, r, k_best, tol)


def _report(track: Track, tol: float, eps: float) -> IterationReport:
    k, r, r0, best, k_best, a0, a = track
    growth = jnp.where(a0 > 0, a / jnp.where(a0 > 0, a0, 1.0), 1.0)
    status = classify(jnp, k, r, best, k_best, growth, tol, eps)
    return IterationReport(k, r, r0, best, k_best, growth, status)


def _iterate(g, x, gx, tol: float, max_iter: int):
    def body(state):
        _, gx, track = state
        x, gx = gx, g(gx)
        return x, gx, _add(track, _norm(gx - x), 1.0 + _norm(x))

    track = _start(_norm(gx - x), 1.0 + _norm(x))
    _, gx, track = lax.while_loop(lambda s: _going(s[2], tol, max_iter), body, (x, gx, track))
    return gx, track


def _anderson(g, x, gx, tol: float, max_iter: int, memory: int, reg: float, scale):
    """The core's Anderson formulation on a ring buffer, as in the PyTorch adapter."""
    m, n, dtype = memory, x.size, x.dtype
    slots = jnp.arange(m)

    def body(state):
        x, gx, G, R, gram, track = state
        k = track[0] - 1  # slot of the iterate whose residual was recorded last
        r = gx - x
        slot = k % m
        G, R = G.at[slot].set(gx), R.at[slot].set(r)
        row = R @ r
        gram = gram.at[slot].set(row).at[:, slot].set(row)
        weights = anderson_weights(jnp, gram, slots < jnp.minimum(k + 1, m), reg)
        x = weights @ G
        gx = g(x)
        return x, gx, G, R, gram, _add(track, _norm(gx - x), scale(x))

    zeros = jnp.zeros((m, n), dtype)
    init = (x, gx, zeros, zeros, jnp.zeros((m, m), dtype), _start(_norm(gx - x), scale(x)))
    out = lax.while_loop(lambda s: _going(s[-1], tol, max_iter), body, init)
    return out[1], out[-1]


def _is_traced(*values: Any) -> bool:
    return any(isinstance(v, Tracer) for v in jax.tree_util.tree_leaves(values))


class _Layer:
    """One implicit layer: ``F`` on flat vectors, the forward solve, the backward rule."""

    def __init__(self, problem, fn, z0, args, options, overrides) -> None:
        self.problem = problem
        self.fixed = problem is Problem.FIXED_POINT
        self.fn = fn
        leaves = jax.tree_util.tree_leaves(z0)
        if not leaves:
            raise ParameterError("z0 must be an array or a non-empty pytree of arrays")
        dtypes = {jnp.result_type(leaf) for leaf in leaves}
        if len(dtypes) != 1 or not jnp.issubdtype(next(iter(dtypes)), jnp.floating):
            raise ParameterError(
                f"the arrays of z0 must share one floating dtype, got {sorted(map(str, dtypes))}"
            )
        self.dtype = next(iter(dtypes))
        self.x0, self.unravel = ravel_pytree(z0)
        self.eps = float(jnp.finfo(self.dtype).eps)
        base = options or ImplicitOptions()
        self.opts = base.replace(**overrides).resolve(fixed_point=self.fixed, eps=self.eps)
        self._check(z0, args)

    def _check(self, z0: Any, args: tuple[Any, ...]) -> None:
        what = "f(z0, *args)" if self.fixed else "F(z0, *args)"
        out = jax.eval_shape(lambda z: self.fn(z, *args), z0)
        want = jax.tree_util.tree_structure(z0)
        got = jax.tree_util.tree_structure(out)
        if got != want:
            raise ParameterError(
                f"{what} returned the structure {got} but z0 is {want}: f must return the same "
                "structure as z0"
            )
        for a, b in zip(jax.tree_util.tree_leaves(z0), jax.tree_util.tree_leaves(out)):
            if tuple(jnp.shape(a)) != tuple(b.shape):
                raise ParameterError(
                    f"{what} returned shape {tuple(b.shape)} but z0 has shape {jnp.shape(a)}: pass "
                    "a z0 with the shape of f's output (batched layers need the batch dimension)"
                )
            if b.dtype != self.dtype:
                raise ParameterError(
                    f"{what} returned {b.dtype} but z0 is {self.dtype}: create z0 in the dtype f "
                    "computes in"
                )

    def call(self, x: jax.Array, args: tuple[Any, ...]) -> jax.Array:
        return ravel_pytree(self.fn(self.unravel(x), *args))[0]

    def residual_map(self, x: jax.Array, args: tuple[Any, ...]) -> jax.Array:
        return x - self.call(x, args) if self.fixed else self.call(x, args)

    # --- forward ---------------------------------------------------------------------------
    def forward(self, x0: jax.Array, args: tuple[Any, ...]):
        o = self.opts
        tol, max_iter = float(o.tol), int(o.max_iter)  # type: ignore[arg-type]
        g = lambda x: self.call(x, args)  # noqa: E731
        gx0 = g(x0)
        if o.solver is ForwardSolver.ITERATION:
            return _iterate(g, x0, gx0, tol, max_iter)
        if o.solver is ForwardSolver.ANDERSON:
            scale = lambda x: 1.0 + _norm(x)  # noqa: E731
            return _anderson(g, x0, gx0, tol, max_iter, o.memory, float(o.regularization), scale)  # type: ignore[arg-type]
        return self._root(x0, gx0, args, tol, max_iter)

    def _root(self, x0, r0, args, tol: float, max_iter: int):
        """Newton (dense Jacobian, halving steps until ``||F||`` decreases) or Broyden."""
        flat = lambda x: self.call(x, args)  # noqa: E731
        newton = self.opts.solver is ForwardSolver.NEWTON
        n = x0.size
        H0 = jnp.zeros((n, n), x0.dtype) if newton else jnp.linalg.pinv(jax.jacfwd(flat)(x0))

        def body(state):
            x, r, H, track = state
            step = -jnp.linalg.lstsq(jax.jacfwd(flat)(x), r)[0] if newton else -(H @ r)

            def shrink(s):
                alpha, _ = s
                return alpha * 0.5, flat(x + alpha * 0.5 * step)

            def worse(s):
                alpha, rn = s
                return (_norm(rn) >= _norm(r)) & (alpha > 1e-4)

            alpha, r_new = lax.while_loop(
                worse, shrink, (jnp.asarray(1.0, x.dtype), flat(x + step))
            )
            x_new = x + alpha * step
            if not newton:
                s, y = x_new - x, r_new - r
                Hy = H @ y
                denom = s @ Hy
                ok = jnp.abs(denom) > 1e-300
                H = jnp.where(ok, H + jnp.outer(s - Hy, s @ H) / jnp.where(ok, denom, 1.0), H)
            return x_new, r_new, H, _add(track, _norm(r_new), 1.0 + _norm(x_new))

        init = (x0, r0, H0, _start(_norm(r0), 1.0 + _norm(x0)))
        x, _, _, track = lax.while_loop(lambda s: _going(s[-1], tol, max_iter), body, init)
        return x, track

    # --- backward --------------------------------------------------------------------------
    def adjoint(self, z: jax.Array, args: tuple[Any, ...], g: jax.Array):
        """Solve ``J_z F' w = g``; returns ``w`` and the residual track."""
        o = self.opts
        tol, max_iter = float(o.backward_tol), int(o.backward_max_iter)  # type: ignore[arg-type]
        _, vjp_F = jax.vjp(lambda x: self.residual_map(x, args), z)
        vjp = lambda w: vjp_F(w)[0]  # noqa: E731
        gnorm = jnp.maximum(_norm(g), jnp.finfo(g.dtype).tiny)
        method = o.backward_solver
        if method is BackwardSolver.FIXED_POINT:

            def body(state):
                w, r, track = state
                w = w + r
                r = g - vjp(w)
                return w, r, _add(track, _norm(r), gnorm)

            r = g - vjp(g)
            init = (g, r, _start(_norm(r), gnorm))
            w, _, track = lax.while_loop(lambda s: _going(s[-1], tol, max_iter), body, init)
            return w, track
        if method is BackwardSolver.ANDERSON:
            step = lambda w: w + g - vjp(w)  # noqa: E731
            reg = float(o.regularization)  # type: ignore[arg-type]
            return _anderson(step, g, step(g), tol, max_iter, o.memory, reg, lambda _: gnorm)
        if method is BackwardSolver.DENSE:
            J = jax.vmap(vjp)(jnp.eye(g.size, dtype=g.dtype))  # rows of J_z F
            w = jnp.linalg.solve(J.T, g)
        else:
            solve = (
                jax.scipy.sparse.linalg.gmres
                if method is BackwardSolver.GMRES
                else jax.scipy.sparse.linalg.bicgstab
            )
            w, _ = solve(vjp, g, tol=tol, atol=0.0, maxiter=max_iter)
        return w, _start(_norm(vjp(w) - g), gnorm)

    def handle(self, value: jax.Array, report: IterationReport, stage: str) -> jax.Array:
        """Apply the failure policy to ``value`` (the solution, or the adjoint ``w``)."""
        policy = self.opts.on_failure
        failed = report.status != ImplicitStatus.CONVERGED
        if not _is_traced(report.status):
            if bool(jnp.any(failed)):
                message = self._message(report, stage)
                if policy is FailurePolicy.RAISE:
                    raise ConvergenceError(message)
                if policy is FailurePolicy.WARN:
                    warnings.warn(message, ConvergenceWarning, stacklevel=4)
                else:
                    value = jnp.full_like(value, jnp.nan)
            return value
        if policy is not FailurePolicy.NAN:
            # A host callback costs about 0.4 ms per call on a CPU, more than a small
            # layer's whole solve: only a failed solve makes it (under ``vmap`` the
            # condition is batched and both branches run; `_warn_traced` then checks).
            leaves = jax.tree_util.tree_leaves(report)
            warn = lambda *a: self._warn_traced(stage, *a)  # noqa: E731
            lax.cond(
                jnp.any(failed),
                lambda: jax.debug.callback(warn, *leaves),
                lambda: None,
            )
        if policy is FailurePolicy.WARN:
            return value
        return jnp.where(failed, jnp.nan, value)

    def _message(self, report: IterationReport, stage: str) -> str:
        arrays = [np.ravel(np.asarray(v)) for v in jax.tree_util.tree_leaves(report)]
        bad = [i for i, s in enumerate(arrays[-1]) if s != ImplicitStatus.CONVERGED]
        one = IterationReport(*(a[bad[0]] for a in arrays))
        where = f" (batch element {bad[0]} of {arrays[-1].size})" if arrays[-1].size > 1 else ""
        return failure_message(one, self.opts, self.problem, stage, self.eps) + where

    def _warn_traced(self, stage: str, *leaves: Any) -> None:
        report = IterationReport(*leaves)
        if np.all(np.asarray(report.status) == ImplicitStatus.CONVERGED):
            return
        consequence = (
            "returned the last iterate"
            if self.opts.on_failure is FailurePolicy.WARN
            else "set the values (or gradients) to NaN, since a traced JAX computation cannot "
            "raise; the info's status says why"
        )
        warnings.warn(
            f"{self._message(report, stage)} [{consequence}]", ConvergenceWarning, stacklevel=2
        )

    # --- the layer -------------------------------------------------------------------------
    def implicit(self, args: tuple[Any, ...]):
        @jax.custom_vjp
        def solve(x0, *a):
            return self.forward(x0, a)

        def solve_fwd(x0, *a):
            x, track = self.forward(x0, a)
            return (x, track), (x, x0, a)

        def solve_bwd(res, cts):
            x, x0, a = res
            w, track = self.adjoint(x, a, cts[0])
            w = self.handle(w, _report(track, float(self.opts.backward_tol), self.eps), "backward")  # type: ignore[arg-type]
            _, vjp_a = jax.vjp(lambda *aa: self.residual_map(x, aa), *a)
            return (jnp.zeros_like(x0), *vjp_a(-w))

        solve.defvjp(solve_fwd, solve_bwd)
        return solve(self.x0, *args)

    def phantom(self, x: jax.Array, args: tuple[Any, ...]) -> jax.Array:
        d = self.opts.phantom_damping
        y = lax.stop_gradient(x)
        for _ in range(self.opts.phantom_steps):
            y = y - d * self.residual_map(y, args)
        return lax.stop_gradient(x) + (y - lax.stop_gradient(y))

    def unroll(self, args: tuple[Any, ...]):
        max_iter = int(self.opts.max_iter)  # type: ignore[arg-type]
        g = lambda x: self.call(x, args)  # noqa: E731
        x1 = g(self.x0)
        track = _start(_norm(x1 - self.x0), 1.0 + _norm(self.x0))
        if max_iter == 1:
            return x1, track
        last = lax.fori_loop(0, max_iter - 2, lambda _, x: g(x), x1)
        x = g(last)
        track = _add(track, _norm(x - last), 1.0 + _norm(last))
        return x, (jnp.asarray(max_iter), *track[1:])

    def run(self, args: tuple[Any, ...], return_info: bool) -> Any:
        tol = float(self.opts.tol)  # type: ignore[arg-type]
        gradient = self.opts.gradient
        if gradient is Gradient.UNROLL:
            x, track = self.unroll(args)
        elif gradient is Gradient.PHANTOM:
            x, track = self.forward(lax.stop_gradient(self.x0), lax.stop_gradient(args))
        else:
            x, track = self.implicit(args)
        report = _report(lax.stop_gradient(track), tol, self.eps)
        x = self.handle(x, report, "forward")
        if gradient is Gradient.PHANTOM:
            x = self.phantom(x, args)
        z = self.unravel(x)
        if not return_info:
            return z
        info = ImplicitInfo(
            self.problem, self.opts, dtype_name(self.eps), report, traced=_is_traced(report.status)
        )
        return z, info


def fixed_point(
    f: Callable[..., Any],
    z0: Any,
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
    r"""A fixed point ``z* = f(z*, *args)``, differentiable in ``args`` (any pytrees).

    The root of ``F(z) = z - f(z)`` (see `root_find()`).  ``z0`` is an array or a pytree
    of arrays of one floating dtype, and ``f`` returns the same structure.  ``f`` must be a
    pure function of ``(z, *args)``: pass parameters through ``args`` rather than closing over
    traced values.  The keyword arguments are the fields of
    `cvximplicit.ImplicitOptions` (defaults depend on the dtype) and override
    ``options``; they mean the same as in `cvximplicit.torch.fixed_point()`.

    Forward: Anderson acceleration (default) or plain iteration in ``jax.lax.while_loop``,
    to ``||f(z) - z|| <= tol (1 + ||z||)`` (``tol`` defaults to ``max(100 eps, 1e-8)``:
    1.2e-5 in float32, 1e-8 in float64).  Backward (a custom VJP): solve ``(I - J_z f)' w = g`` with
    VJPs of ``f`` only (``backward_solver``: ``"anderson"`` by default, ``"fixed_point"``,
    ``"gmres"``, ``"bicgstab"``, ``"dense"``), then ``J_args f' w``.  ``gradient="phantom"``
    is a cheaper **inexact** gradient; ``"unroll"`` differentiates ``max_iter`` plain
    iterations (``lax.fori_loop``).  At kinks of ``f`` (``relu``, ...) JAX's VJPs are
    elements of a conservative Jacobian, which the nonsmooth implicit function theorem
    turns into a valid conservative Jacobian of ``z*`` when ``I - J_z f`` is invertible.

    Works under ``jit``, ``vmap`` and ``grad``.  Failures (``on_failure="raise"``, the
    default) raise `cvximplicit.ConvergenceError` with a diagnosis when the values are
    concrete; inside a traced computation nothing can raise, so the values (or gradients)
    become NaN and a `cvximplicit.ConvergenceWarning` with the same diagnosis is
    emitted when it runs.  ``return_info=True`` also returns an
    `cvximplicit.ImplicitInfo` of the forward solve (a pytree: it can leave ``jit``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from cvximplicit.jax import fixed_point
        >>> f = lambda z, x: jax.nn.relu(0.5 * z + x)
        >>> g = jax.grad(lambda x: fixed_point(f, jnp.zeros(3), x).sum())(jnp.ones(3))
        >>> [round(float(v), 3) for v in g]  # (I - 0.5 I)^{-1} = 2 I
        [2.0, 2.0, 2.0]
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
    return _Layer(Problem.FIXED_POINT, f, z0, args, options, overrides).run(args, return_info)


def root_find(
    F: Callable[..., Any],
    z0: Any,
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
    r"""A root ``F(z*, *args) = 0``, differentiable in ``args``, under ``jit``/``vmap``/``grad``.

    Forward: Newton (``solver="newton"``, default; dense Jacobian by ``jax.jacfwd``, halving
    steps until ``||F||`` decreases) or Broyden (``"broyden"``), to
    ``||F(z)|| <= tol (1 + ||z||)``.  Backward: solve ``J_z F' w = g``
    (``backward_solver="gmres"`` by default, or ``"bicgstab"``, ``"dense"``,
    ``"fixed_point"``, ``"anderson"``) and return ``-J_args F' w``.  Options, pytrees,
    failures and ``return_info`` as in `fixed_point()`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from cvximplicit.jax import root_find
        >>> z = lambda x: root_find(lambda z, x: z**3 + z - x, jnp.zeros(()), x)
        >>> round(float(jax.grad(z)(2.0)), 4)  # 1 / (3 z^2 + 1) at z = 1
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
    return _Layer(Problem.ROOT, F, z0, args, options, overrides).run(args, return_info)


def spectral_radius(
    f: Callable[..., jax.Array], z: jax.Array, *args: Any, iterations: int = 30, seed: int = 0
) -> jax.Array:
    """Power-iteration estimate of the spectral radius of ``J_z f(z, *args)`` from VJPs.

    Below one, ``I - J_z f`` is invertible and the ``fixed_point``/``anderson`` backward
    solvers of `fixed_point()` converge.  Works under ``jit``.
    """
    _, vjp = jax.vjp(lambda zz: f(zz, *args), z)
    # a random start: a structured one (all ones) can miss the dominant eigenvector entirely
    v = jax.random.normal(jax.random.PRNGKey(seed), z.shape, dtype=z.dtype)
    v = v / _norm(v)

    def body(_, state):
        v, _ = state
        u = vjp(v)[0]
        norm = _norm(u)
        return u / jnp.where(norm > 0, norm, 1.0), norm

    _, estimate = lax.fori_loop(0, iterations, body, (v, jnp.asarray(0.0, z.dtype)))
    return estimate


def jacobian_penalty(
    f: Callable[..., Any], z: Any, *args: Any, key: jax.Array, samples: int = 1
) -> jax.Array:
    r"""A stochastic estimate of ``||J_z f(z, *args)||_F^2``, differentiable in ``args``:
    Jacobian regularisation for equilibrium models (Bai, Koltun and Kolter, 2021).

    Add ``gamma * jacobian_penalty(f, lax.stop_gradient(z_star), params, key=key)`` to the
    loss to keep ``f`` contractive.  **Inexact by design**: Hutchinson's estimator
    ``mean_i ||J' v_i||^2`` over ``samples`` Gaussian ``v_i`` is unbiased for the squared
    Frobenius norm, with a variance falling like ``1 / samples``.  It changes the objective,
    not the layer's gradient.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from cvximplicit.jax import jacobian_penalty
        >>> W = jnp.full((4, 4), 0.1)
        >>> p = jacobian_penalty(lambda z, W: W @ z, jnp.ones(4), W, key=jax.random.PRNGKey(0),
        ...                      samples=4000)
        >>> round(float(p), 1)  # ||W||_F^2 = 0.16
        0.2
    """
    x, unravel = ravel_pytree(z)
    _, vjp = jax.vjp(lambda xx: ravel_pytree(f(unravel(xx), *args))[0], x)
    v = jax.random.normal(key, (samples, x.size), dtype=x.dtype)
    jv = jax.vmap(lambda u: vjp(u)[0])(v)
    return jnp.sum(jv**2) / samples
