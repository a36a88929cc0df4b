"""Implicit layers (fixed points and roots) in PyTorch and JAX."""

from __future__ import annotations

import numpy as np
import pytest

import cvximplicit as ci

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

from cvximplicit.jax import fixed_point as jax_fixed_point  # noqa: E402
from cvximplicit.jax import root_find as jax_root_find  # noqa: E402
from cvximplicit.torch import fixed_point, root_find  # noqa: E402


def contraction(n=6, seed=0, norm=0.7):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n, n))
    W *= norm / np.linalg.norm(W, 2)
    U = rng.standard_normal((n, 3))
    return W, U, rng.standard_normal(3), rng.standard_normal(n)


def test_torch_fixed_point_matches_finite_differences_and_unrolling():
    W, U, x, b = contraction()
    Wt = torch.tensor(W, requires_grad=True)
    Ut = torch.tensor(U, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    bt = torch.tensor(b)
    f = lambda z, x: torch.relu(Wt @ z + Ut @ x + bt)  # noqa: E731
    z0 = torch.zeros(6, dtype=torch.float64)
    for backward_solver in ("fixed_point", "gmres", "bicgstab"):
        z, info = fixed_point(f, z0, xt, backward_solver=backward_solver, return_info=True)
        loss = (z**2).sum()
        gW, gU, gx = torch.autograd.grad(loss, (Wt, Ut, xt))
        assert info.forward_converged and info.backward_converged
        assert info.spectral_radius is not None and info.spectral_radius < 0.75
        # against unrolled differentiation of a long converged iteration
        zu = z0
        for _ in range(200):
            zu = f(zu, xt)
        uW, uU, ux = torch.autograd.grad((zu**2).sum(), (Wt, Ut, xt))
        for a, b_ in ((gW, uW), (gU, uU), (gx, ux)):
            torch.testing.assert_close(a, b_, atol=1e-7, rtol=1e-6)
    # against central finite differences in x
    d = torch.tensor(np.random.default_rng(1).standard_normal(3))
    h = 1e-6
    with torch.no_grad():
        lp = (fixed_point(f, z0, xt + h * d) ** 2).sum()
        lm = (fixed_point(f, z0, xt - h * d) ** 2).sum()
    assert abs(float(gx @ d) - float(lp - lm) / (2 * h)) < 1e-6 * max(1.0, abs(float(gx @ d)))


def test_torch_kink_exactly_at_the_solution():
    """relu's pre-activation is exactly 0 at the fixed point for one coordinate: the
    gradient autograd's choice (relu'(0) = 0) gives is one of the one-sided derivatives."""
    W = torch.tensor([[0.5, 0.0], [0.0, 0.5]], dtype=torch.float64)
    x = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    f = lambda z, x: torch.relu(W @ z + x)  # noqa: E731  (second coordinate: 0.5*0 + 0 = 0)
    z = fixed_point(f, torch.zeros(2, dtype=torch.float64), x, tol=1e-14)
    (gx,) = torch.autograd.grad(z.sum(), x)
    h = 1e-6
    with torch.no_grad():
        right = (
            fixed_point(
                f, torch.zeros(2, dtype=torch.float64), x + torch.tensor([0, h]), tol=1e-14
            ).sum()
            - z.sum()
        ) / h
        left = (
            z.sum()
            - fixed_point(
                f, torch.zeros(2, dtype=torch.float64), x - torch.tensor([0, h]), tol=1e-14
            ).sum()
        ) / h
    assert abs(float(right) - 2.0) < 1e-5 and abs(float(left)) < 1e-5
    assert abs(float(gx[1]) - float(left)) < 1e-6 or abs(float(gx[1]) - float(right)) < 1e-6
    assert abs(float(gx[0]) - 2.0) < 1e-6


def test_torch_non_convergence_paths():
    W = torch.tensor([[1.5]], dtype=torch.float64)
    x = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    f = lambda z, x: W @ z + x  # noqa: E731  (diverges)
    with pytest.raises(ci.ConvergenceError, match="did not converge"):
        fixed_point(f, torch.zeros(1, dtype=torch.float64), x, solver="iteration", max_iter=50)
    with pytest.warns(ci.ConvergenceWarning):
        fixed_point(
            f,
            torch.zeros(1, dtype=torch.float64),
            x,
            solver="iteration",
            max_iter=50,
            on_failure="warn",
        )
    # Anderson finds the fixed point of an expanding affine map (z = -2); the backward
    # fixed-point iteration cannot converge (spectral radius 1.5) and says so.
    z = fixed_point(f, torch.zeros(1, dtype=torch.float64), x, max_iter=50)
    with pytest.raises(ci.ConvergenceError, match=r"spectral radius of J_z f is 1\.5"):
        z.sum().backward()
    # GMRES solves the same well-posed linear system: I - J = -0.5 is invertible.
    x.grad = None
    z = fixed_point(f, torch.zeros(1, dtype=torch.float64), x, backward_solver="gmres")
    z.sum().backward()
    assert abs(float(x.grad) + 2.0) < 1e-8


def test_torch_root_find():
    x = torch.tensor([2.0, 10.0], dtype=torch.float64, requires_grad=True)
    for solver in ("newton", "broyden"):
        z = root_find(
            lambda z, x: z**3 + z - x, torch.zeros(2, dtype=torch.float64), x, solver=solver
        )
        (g,) = torch.autograd.grad(z.sum(), x)
        torch.testing.assert_close(g, 1.0 / (3 * z.detach() ** 2 + 1), atol=1e-10, rtol=1e-10)


def test_jax_fixed_point_under_jit_vmap_grad():
    W, U, x, b = contraction(seed=2)
    W, U, x, b = map(jnp.asarray, (W, U, x, b))
    f = lambda z, params, x: jax.nn.relu(params["W"] @ z + params["U"] @ x + b)  # noqa: E731
    params = {"W": W, "U": U}
    z0 = jnp.zeros(6)

    def loss(params, x, solver="fixed_point"):
        return jnp.sum(jax_fixed_point(f, z0, params, x, backward_solver=solver) ** 2)

    g = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)

    def unrolled(params, x):
        z = z0
        for _ in range(200):
            z = f(z, params, x)
        return jnp.sum(z**2)

    gu = jax.grad(unrolled, argnums=(0, 1))(params, x)
    np.testing.assert_allclose(g[0]["W"], gu[0]["W"], atol=1e-7)
    np.testing.assert_allclose(g[1], gu[1], atol=1e-7)
    for solver in ("gmres", "bicgstab"):
        gs = jax.grad(loss, argnums=1)(params, x, solver)
        np.testing.assert_allclose(gs, gu[1], atol=1e-7)
    X = x + 0.1 * jnp.asarray(np.random.default_rng(0).standard_normal((5, 3)))
    per = jax.vmap(jax.grad(loss, argnums=1), in_axes=(None, 0))(params, X)
    for i in range(5):
        np.testing.assert_allclose(per[i], jax.grad(loss, argnums=1)(params, X[i]), atol=1e-9)
    _, info = jax_fixed_point(f, z0, params, x, return_info=True)
    assert bool(info["converged"]) and int(info["iterations"]) < 100


def test_jax_non_convergence_gives_nan():
    f = lambda z, x: 1.5 * z + x  # noqa: E731
    z = jax.jit(lambda x: jax_fixed_point(f, jnp.zeros(1), x, solver="iteration", max_iter=30))(
        jnp.ones(1)
    )
    assert bool(jnp.all(jnp.isnan(z)))
    g = jax.grad(lambda x: jax_fixed_point(f, jnp.zeros(1), x, max_iter=50).sum())(jnp.ones(1))
    assert bool(jnp.all(jnp.isnan(g)))  # backward fixed-point iteration diverges: NaN


@pytest.mark.parametrize("solver", ["newton", "broyden"])
@pytest.mark.parametrize("back", ["dense", "gmres"])
def test_jax_root_find(solver, back):
    def z_of(x):
        F = lambda z, x: z**3 + z - x  # noqa: E731
        return jax_root_find(F, jnp.zeros(()), x, solver=solver, backward_solver=back)

    grad = jax.vmap(jax.grad(z_of))(jnp.array([2.0, 10.0]))
    np.testing.assert_allclose(grad, [0.25, 1.0 / 13.0], atol=1e-10)


def test_jax_unroll_option_and_spectral_radius():
    from cvximplicit.jax import spectral_radius

    W = 0.6 * jnp.eye(3)
    f = lambda z, x: jax.nn.relu(W @ z + x)  # noqa: E731
    x = jnp.ones(3)
    implicit = jax.grad(lambda x: jax_fixed_point(f, jnp.zeros(3), x).sum())(x)
    unrolled = jax.grad(
        lambda x: jax_fixed_point(f, jnp.zeros(3), x, backward="unroll", max_iter=100).sum()
    )(x)
    np.testing.assert_allclose(implicit, unrolled, atol=1e-7)
    z = jax_fixed_point(f, jnp.zeros(3), x)
    assert abs(float(jax.jit(spectral_radius, static_argnums=0)(f, z, x)) - 0.6) < 1e-6


def test_torch_root_value_is_the_root_itself():
    x = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
    with pytest.warns(ci.ConvergenceWarning):
        z = root_find(
            lambda z, x: z**3 + z - x,
            torch.zeros((), dtype=torch.float64),
            x,
            max_iter=1,
            on_failure="warn",
        )
    with torch.no_grad():
        z_plain = root_find(
            lambda z, x: z**3 + z - x,
            torch.zeros((), dtype=torch.float64),
            x,
            max_iter=1,
            on_failure="warn",
        )
    assert float(z) == float(z_plain)  # the last iterate, with or without gradients


def test_jax_spectral_radius_does_not_miss_the_dominant_direction():
    from cvximplicit.jax import spectral_radius

    M = jnp.array([[0.5, -0.5], [-0.5, 0.5]])  # eigenvalues 0 and 1; ones is in the kernel
    assert abs(float(spectral_radius(lambda z, M: M @ z, jnp.zeros(2), M)) - 1.0) < 1e-6
