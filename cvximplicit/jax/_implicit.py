"""Implicit layers for JAX: fixed points and roots, under ``jit``, ``vmap`` and ``grad``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["fixed_point", "root_find", "spectral_radius"]


def _norm(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(x * x))


def _iterate(g: Callable[[jax.Array], jax.Array], z0: jax.Array, tol: float, max_iter: int):
    def cond(state):
        k, _, res = state
        return (k < max_iter) & (res > tol)

    def body(state):
        k, z, _ = state
        z_new = g(z)
        return k + 1, z_new, _norm(z_new - z) / (1.0 + _norm(z))

    init = (jnp.asarray(0), z0, jnp.asarray(jnp.inf, dtype=z0.dtype))
    return lax.while_loop(cond, body, init)


def _anderson(
    g: Callable[[jax.Array], jax.Array], z0: jax.Array, tol: float, max_iter: int, memory: int
):
    """Anderson acceleration (type II) with a ring buffer of ``memory`` iterates; slots not
    filled yet are excluded from the affine constraint, so early steps are plain iterations."""
    shape, dtype = z0.shape, z0.dtype
    n = z0.size
    m = memory
    x0 = z0.reshape(-1)
    X = jnp.zeros((m, n), dtype).at[0].set(x0)
    F = jnp.zeros((m, n), dtype).at[0].set(g(z0).reshape(-1))
    res0 = _norm(F[0] - X[0]) / (1.0 + _norm(X[0]))

    def cond(state):
        k, _, _, res = state
        return (k < max_iter) & (res > tol)

    def body(state):
        k, X, F, _ = state
        filled = jnp.arange(m) < jnp.minimum(k, m)
        G = jnp.where(filled[:, None], F - X, 0.0)
        c = filled.astype(dtype)
        H = jnp.zeros((m + 1, m + 1), dtype)
        H = H.at[0, 1:].set(c).at[1:, 0].set(c)
        gram = G @ G.T + 1e-10 * jnp.eye(m, dtype=dtype) * jnp.maximum(1.0, jnp.trace(G @ G.T))
        gram = jnp.where(filled[:, None] & filled[None, :], gram, jnp.eye(m, dtype=dtype))
        H = H.at[1:, 1:].set(gram)
        rhs = jnp.zeros(m + 1, dtype).at[0].set(1.0)
        alpha = jnp.linalg.solve(H, rhs)[1:]
        x_next = alpha @ F
        f_next = g(x_next.reshape(shape)).reshape(-1)
        slot = k % m
        X = X.at[slot].set(x_next)
        F = F.at[slot].set(f_next)
        return k + 1, X, F, _norm(f_next - x_next) / (1.0 + _norm(x_next))

    k, X, F, res = lax.while_loop(cond, body, (jnp.asarray(1), X, F, res0))
    last = (k - 1) % m
    return k, F[last].reshape(shape), res


def _solve_adjoint(apply, g, method: str, tol: float, max_iter: int, fixed: bool):
    """``(I - M) w = g`` (``fixed``) or ``M w = g`` with ``apply(w) = M w``."""
    op = (lambda w: w - apply(w)) if fixed else apply
    if method == "fixed_point":
        if not fixed:
            raise ValueError("backward_solver 'fixed_point' needs a fixed-point problem")
        gnorm = jnp.maximum(_norm(g), jnp.finfo(g.dtype).tiny)

        def cond(state):
            k, _, step = state
            return (k < max_iter) & (step > tol * gnorm)

        def body(state):
            k, w, _ = state
            w_new = g + apply(w)
            return k + 1, w_new, _norm(w_new - w)

        _, w, _ = lax.while_loop(cond, body, (jnp.asarray(0), g, jnp.asarray(jnp.inf, g.dtype)))
    elif method in ("gmres", "bicgstab"):
        solver = (
            jax.scipy.sparse.linalg.gmres
            if method == "gmres"
            else (jax.scipy.sparse.linalg.bicgstab)
        )
        w, _ = solver(op, g, tol=tol, atol=0.0, maxiter=max_iter)
    elif method == "dense":
        if fixed:
            raise ValueError("backward_solver 'dense' is only available for root_find")
        J = jax.jacfwd(apply)(g)
        w = jnp.linalg.solve(J, g)
    else:
        raise ValueError(f"unknown backward_solver {method!r}")
    res = _norm(op(w) - g) / jnp.maximum(_norm(g), jnp.finfo(g.dtype).tiny)
    return w, res


def fixed_point(
    f: Callable[..., jax.Array],
    z0: jax.Array,
    *args: Any,
    solver: str = "anderson",
    tol: float = 1e-8,
    max_iter: int = 500,
    memory: int = 5,
    backward_solver: str = "fixed_point",
    backward_tol: float | None = None,
    backward_max_iter: int | None = None,
    on_failure: str = "nan",
    return_info: bool = False,
    backward: str = "implicit",
) -> Any:
    r"""A fixed point $z^\star = f(z^\star, \mathrm{args})$, differentiable in ``args`` (any
    pytrees).

    ``f`` must be a pure function of ``(z, *args)``: pass parameters through ``args`` rather
    than closing over traced values.  Forward: ``jax.lax.while_loop`` with Anderson
    acceleration (``solver="anderson"``) or plain iteration, to
    $\|f(z) - z\| \le \mathrm{tol}\,(1 + \|z\|)$.  Backward (a custom VJP): solve
    $(I - J_z f)^\top w = g$ with VJPs of $f$ only (``backward_solver="fixed_point"``,
    ``"gmres"`` or ``"bicgstab"``), then $(J_{\mathrm{args}} f)^\top w$.  At kinks of ``f``
    (``relu``, ...) JAX's VJPs are elements of a conservative Jacobian, which the nonsmooth
    implicit function theorem turns into a valid conservative Jacobian of $z^\star$ when
    $I - J_z f$ is invertible (e.g. ``f`` a contraction).

    Works under ``jit``, ``vmap`` and ``grad``.  Non-convergence cannot raise inside a traced
    computation: with ``on_failure="nan"`` (default) a forward or backward solve that misses
    its tolerance returns NaN (values or gradients), so failures are never silent;
    ``"ignore"`` returns the last iterate.  ``return_info=True`` also returns
    ``{"iterations", "residual", "converged"}`` of the forward solve.  To check that
    $I - J_z f$ is safely invertible, :func:`spectral_radius` estimates the spectral radius
    of $J_z f$ at the solution.  ``backward="unroll"`` instead differentiates through
    ``max_iter`` plain iterations (``lax.fori_loop``), for comparison.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from cvximplicit.jax import fixed_point
        >>> f = lambda z, x: jax.nn.relu(0.5 * z + x)
        >>> g = jax.grad(lambda x: fixed_point(f, jnp.zeros(3), x).sum())(jnp.ones(3))
        >>> [round(float(v), 5) for v in g]  # (I - 0.5 I)^{-1} = 2 I
        [2.0, 2.0, 2.0]
    """
    if on_failure not in ("nan", "ignore"):
        raise ValueError(f"on_failure must be 'nan' or 'ignore', got {on_failure!r}")
    if solver not in ("anderson", "iteration"):
        raise ValueError(f"unknown fixed-point solver {solver!r}; choose 'anderson' or 'iteration'")
    if backward == "unroll":
        z = lax.fori_loop(0, max_iter, lambda _, z: f(z, *args), jnp.asarray(z0))
        res = _norm(f(z, *args) - z) / (1.0 + _norm(z))
        if return_info:
            return z, {
                "iterations": jnp.asarray(max_iter),
                "residual": res,
                "converged": res <= tol,
            }
        return z
    if backward != "implicit":
        raise ValueError(f"backward must be 'implicit' or 'unroll', got {backward!r}")
    b_tol = tol if backward_tol is None else backward_tol
    b_iter = max_iter if backward_max_iter is None else backward_max_iter

    def forward(z_init: jax.Array, *a: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
        g = lambda z: f(z, *a)  # noqa: E731
        if solver == "iteration":
            k, z, res = _iterate(g, z_init, tol, max_iter)
        else:
            k, z, res = _anderson(g, z_init, tol, max_iter, memory)
        if on_failure == "nan":
            z = jnp.where(res <= tol, z, jnp.nan)
        return z, k, res

    @jax.custom_vjp
    def solve(z_init: jax.Array, *a: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
        return forward(z_init, *a)

    def solve_fwd(z_init, *a):
        out = forward(z_init, *a)
        return out, (out[0], z_init, a)

    def solve_bwd(res, cts):
        z_star, z_init, a = res
        g = cts[0]
        _, vjp_z = jax.vjp(lambda z: f(z, *a), z_star)
        apply = lambda w: vjp_z(w.reshape(z_star.shape))[0].reshape(-1)  # noqa: E731
        w, rres = _solve_adjoint(apply, g.reshape(-1), backward_solver, b_tol, b_iter, True)
        if on_failure == "nan":
            w = jnp.where(rres <= 10 * b_tol, w, jnp.nan)
        _, vjp_a = jax.vjp(lambda *aa: f(z_star, *aa), *a)
        grads = vjp_a(w.reshape(z_star.shape))
        return (jnp.zeros_like(z_init), *grads)

    solve.defvjp(solve_fwd, solve_bwd)
    z, k, res = solve(jnp.asarray(z0), *args)
    if return_info:
        return z, {"iterations": k, "residual": res, "converged": res <= tol}
    return z


def root_find(
    F: Callable[..., jax.Array],
    z0: jax.Array,
    *args: Any,
    solver: str = "newton",
    tol: float = 1e-10,
    max_iter: int = 100,
    backward_solver: str = "dense",
    backward_tol: float | None = None,
    on_failure: str = "nan",
    return_info: bool = False,
) -> Any:
    r"""A root $F(z^\star, \mathrm{args}) = 0$, differentiable in ``args``, under
    ``jit``/``vmap``/``grad``.

    Forward: Newton (``solver="newton"``, dense Jacobian by ``jax.jacfwd``, halving steps
    until $\|F\|$ decreases) or Broyden (``"broyden"``, inverse updates), to
    $\|F\| \le \mathrm{tol}$.  Backward: solve $(J_z F)^\top w = g$ (``backward_solver="dense"``,
    or matrix-free ``"gmres"``/``"bicgstab"``) and return $-(J_{\mathrm{args}} F)^\top w$.
    Failures follow ``on_failure`` as in :func:`fixed_point`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from cvximplicit.jax import root_find
        >>> z = lambda x: root_find(lambda z, x: z**3 + z - x, jnp.zeros(()), x)
        >>> round(float(jax.grad(z)(2.0)), 6)  # 1 / (3 z^2 + 1) at z = 1
        0.25
    """
    if on_failure not in ("nan", "ignore"):
        raise ValueError(f"on_failure must be 'nan' or 'ignore', got {on_failure!r}")
    if solver not in ("newton", "broyden"):
        raise ValueError(f"unknown root solver {solver!r}; choose 'newton' or 'broyden'")
    b_tol = 1e-12 if backward_tol is None else backward_tol
    z0 = jnp.asarray(z0)
    shape = z0.shape

    def forward(z_init: jax.Array, *a: Any):
        flat = lambda z: F(z.reshape(shape), *a).reshape(-1)  # noqa: E731
        x0 = z_init.reshape(-1)
        r0 = flat(x0)
        H0 = (
            jnp.linalg.pinv(jax.jacfwd(flat)(x0))
            if solver == "broyden"
            else jnp.zeros((x0.size, x0.size), x0.dtype)
        )

        def cond(state):
            k, _, r, _ = state
            return (k < max_iter) & (_norm(r) > tol)

        def body(state):
            k, x, r, H = state
            newton = solver == "newton"
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
            if solver == "broyden":
                s, y = x_new - x, r_new - r
                Hy = H @ y
                denom = s @ Hy
                safe = jnp.where(jnp.abs(denom) > 1e-300, denom, 1.0)
                H = jnp.where(jnp.abs(denom) > 1e-300, H + jnp.outer(s - Hy, s @ H) / safe, H)
            return k + 1, x_new, r_new, H

        k, x, r, _ = lax.while_loop(cond, body, (jnp.asarray(0), x0, r0, H0))
        res = _norm(r)
        z = x.reshape(shape)
        if on_failure == "nan":
            z = jnp.where(res <= tol, z, jnp.nan)
        return z, k, res

    @jax.custom_vjp
    def solve(z_init, *a):
        return forward(z_init, *a)

    def solve_fwd(z_init, *a):
        out = forward(z_init, *a)
        return out, (out[0], z_init, a)

    def solve_bwd(res, cts):
        z_star, z_init, a = res
        g = cts[0].reshape(-1)
        _, vjp_z = jax.vjp(lambda z: F(z, *a), z_star)
        apply = lambda w: vjp_z(w.reshape(z_star.shape))[0].reshape(-1)  # noqa: E731
        w, rres = _solve_adjoint(apply, g, backward_solver, b_tol, 10 * g.size + 10, False)
        if on_failure == "nan":
            w = jnp.where(rres <= max(10 * b_tol, 1e-9), w, jnp.nan)
        _, vjp_a = jax.vjp(lambda *aa: F(z_star, *aa), *a)
        grads = vjp_a(-w.reshape(z_star.shape))
        return (jnp.zeros_like(z_init), *grads)

    solve.defvjp(solve_fwd, solve_bwd)
    z, k, res = solve(z0, *args)
    if return_info:
        return z, {"iterations": k, "residual": res, "converged": res <= tol}
    return z


def spectral_radius(
    f: Callable[..., jax.Array], z: jax.Array, *args: Any, iterations: int = 30, seed: int = 0
) -> jax.Array:
    """Power-iteration estimate of the spectral radius of ``J_z f(z, *args)`` from VJPs.

    Below one, ``I - J_z f`` is invertible and the backward fixed-point iteration of
    :func:`fixed_point` converges.  Works under ``jit``.
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
