"""Implicit layers (fixed points and roots) in PyTorch and JAX: one design, two frameworks."""

from __future__ import annotations

import itertools
import types
import warnings

import numpy as np
import pytest

import cvximplicit as ci

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

from cvximplicit.jax import fixed_point as jax_fixed_point  # noqa: E402
from cvximplicit.jax import jacobian_penalty as jax_jacobian_penalty  # noqa: E402
from cvximplicit.jax import root_find as jax_root_find  # noqa: E402
from cvximplicit.torch import fixed_point, jacobian_penalty, root_find  # noqa: E402

BACKWARD = ["fixed_point", "anderson", "gmres", "bicgstab", "dense"]


def contraction(n=6, seed=0, norm=0.7):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n, n))
    W *= norm / np.linalg.norm(W, 2)
    U = rng.standard_normal((n, 3))
    return W, U, rng.standard_normal(3), rng.standard_normal(n)


def exact_relu_layer(W, U, x, b):
    """z* of ``relu(W z + U x + b)`` by long iteration, the exact gradient of ``sum z*^2`` in
    ``x`` (``(I - D W)^{-1} D U`` with ``D`` relu's derivative) and ``J_z f = D W``."""
    z = np.zeros(len(b))
    for _ in range(2000):
        z = np.maximum(W @ z + U @ x + b, 0.0)
    D = np.diag((W @ z + U @ x + b > 0).astype(float))
    J = D @ W
    w = np.linalg.solve((np.eye(len(b)) - J).T, 2 * z)
    return z, U.T @ D @ w, J


def tanh_layer_float32(n=64, batch=8, seed=0):
    """The issue's layer: tanh with ||W||_2 = 0.55, in float32."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n, n))
    W *= 0.55 / np.linalg.norm(W, 2)
    return W.astype(np.float32), rng.standard_normal((batch, n)).astype(np.float32)


# --- exact gradients ---------------------------------------------------------------------


@pytest.mark.parametrize("backward_solver", BACKWARD)
def test_torch_fixed_point_gradient_is_exact(backward_solver):
    W, U, x, b = contraction()
    z_ref, gx_ref, J = exact_relu_layer(W, U, x, b)
    Wt, Ut, bt = (torch.tensor(a) for a in (W, U, b))
    xt = torch.tensor(x, requires_grad=True)
    f = lambda z, x: torch.relu(Wt @ z + Ut @ x + bt)  # noqa: E731
    z, info = fixed_point(
        f,
        torch.zeros(6, dtype=torch.float64),
        xt,
        backward_solver=backward_solver,
        tol=1e-12,
        backward_tol=1e-12,
        return_info=True,
    )
    (gx,) = torch.autograd.grad((z**2).sum(), xt)
    np.testing.assert_allclose(z.detach().numpy(), z_ref, atol=1e-11)
    np.testing.assert_allclose(gx.numpy(), gx_ref, rtol=1e-9, atol=1e-10)
    assert info.forward.converged and info.backward is not None and info.backward.converged
    if backward_solver == "fixed_point":  # its residual ratios estimate the spectral radius
        rho = max(abs(np.linalg.eigvals(J)))
        assert info.spectral_radius is not None and abs(info.spectral_radius - rho) < 0.02


def test_torch_fixed_point_finite_differences_and_parameters():
    W, U, x, b = contraction(seed=3)
    Wt = torch.tensor(W, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    Ut, bt = torch.tensor(U), torch.tensor(b)
    f = lambda z, x: torch.relu(Wt @ z + Ut @ x + bt)  # noqa: E731
    z0 = torch.zeros(6, dtype=torch.float64)
    z = fixed_point(f, z0, xt, tol=1e-13, backward_tol=1e-13)
    gW, gx = torch.autograd.grad((z**2).sum(), (Wt, xt))
    rng = np.random.default_rng(1)
    dW, dx, h = (
        torch.tensor(rng.standard_normal((6, 6))),
        torch.tensor(rng.standard_normal(3)),
        1e-6,
    )
    with torch.no_grad():

        def loss(s):
            Wt.add_(s * dW)
            out = (fixed_point(f, z0, xt + s * dx, tol=1e-14) ** 2).sum()
            Wt.sub_(s * dW)
            return float(out)

        fd = (loss(h) - loss(-h)) / (2 * h)
    assert abs(float((gW * dW).sum() + gx @ dx) - fd) < 1e-6 * max(1.0, abs(fd))


@pytest.mark.parametrize("backward_solver", BACKWARD)
def test_jax_fixed_point_gradient_is_exact_under_jit_and_vmap(backward_solver):
    W, U, x, b = contraction(seed=2)
    _, gx_ref, _ = exact_relu_layer(W, U, x, b)
    f = lambda z, p, x: jax.nn.relu(p["W"] @ z + p["U"] @ x + b)  # noqa: E731
    params = {"W": jnp.asarray(W), "U": jnp.asarray(U)}

    def loss(x, params=params):
        z = jax_fixed_point(
            f,
            jnp.zeros(6),
            params,
            x,
            backward_solver=backward_solver,
            tol=1e-12,
            backward_tol=1e-12,
        )
        return jnp.sum(z**2)

    gx = jax.jit(jax.grad(loss))(jnp.asarray(x))
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-8, atol=1e-9)
    X = jnp.asarray(x + 0.1 * np.random.default_rng(0).standard_normal((3, 3)))
    per = jax.vmap(jax.grad(loss))(X)
    for i in range(3):
        np.testing.assert_allclose(
            per[i], exact_relu_layer(W, U, np.asarray(X[i]), b)[1], atol=1e-8
        )


def test_torch_and_jax_run_the_same_anderson():
    """One formulation: the same iterates, iteration counts and residuals in both."""
    W, U, x, b = contraction(n=8, seed=5, norm=0.95)
    ft = lambda z: torch.tanh(torch.tensor(W) @ z + torch.tensor(U @ x + b))  # noqa: E731
    fj = lambda z: jnp.tanh(jnp.asarray(W) @ z + jnp.asarray(U @ x + b))  # noqa: E731
    for solver in ("anderson", "iteration"):
        zt, it = fixed_point(
            ft, torch.zeros(8, dtype=torch.float64), solver=solver, return_info=True
        )
        zj, ij = jax_fixed_point(fj, jnp.zeros(8), solver=solver, return_info=True)
        assert int(it.forward.iterations) == int(ij.forward.iterations) > 3
        np.testing.assert_allclose(
            float(it.forward.residual), float(ij.forward.residual), rtol=1e-6
        )
        np.testing.assert_allclose(zt.numpy(), np.asarray(zj), atol=1e-13)
        assert it.options == ij.options


def test_host_and_tensor_anderson_loops_agree():
    """PyTorch runs Anderson on numpy views for CPU tensors and as tensor operations on
    other devices: the same steps, so the same iterates, counts and residuals."""
    import cvximplicit._implicit as core
    from cvximplicit._implicit import Tracker, anderson_host
    from cvximplicit.torch._implicit import _anderson_tensor

    def fail(gram, row, slot, size, regularization, out):
        gram[slot, :size] = gram[:size, slot] = row
        return False

    failing = types.SimpleNamespace(anderson_weights_into=fail)
    W, U, x, b = contraction(n=30, seed=2, norm=0.9)
    inj = U @ x + b
    g_np = lambda z: np.tanh(W @ z + inj)  # noqa: E731
    g_t = lambda z: torch.tanh(torch.tensor(W) @ z + torch.tensor(inj))  # noqa: E731
    for scale in (None, 3.0):
        x0, t0 = np.zeros(30), torch.zeros(30, dtype=torch.float64)
        runs = []
        # the compiled weights, the Python ones, and a kernel that always falls back
        for kernel in ("numba", None, failing):
            with pytest.MonkeyPatch.context() as patch:
                if kernel != "numba":
                    patch.setattr(core, "compiled", lambda name, k=kernel: k)
                track = Tracker(1e-12, 2.2e-16)
                runs.append((anderson_host(g_np, x0, g_np(x0), 200, 5, 1e-10, track, scale), track))
        track = Tracker(1e-12, 2.2e-16)
        runs.append(
            (_anderson_tensor(g_t, t0, g_t(t0), 200, 5, 1e-10, track, scale).numpy(), track)
        )
        for z, track in runs[1:]:
            assert track.k == runs[0][1].k > 8 and track.report().converged
            np.testing.assert_allclose(z, runs[0][0], atol=1e-13)
            assert abs(track.r - runs[0][1].r) < 1e-15  # both at rounding level


def test_compiled_anderson_weights_agree_with_python():
    from cvximplicit._compiled import compiled
    from cvximplicit._implicit import anderson_weights_host

    kernel = compiled("_numba_anderson")
    if kernel is None:
        pytest.skip("numba is not installed (or CVXIMPLICIT_DISABLE_NUMBA is set)")
    rng = np.random.default_rng(1)
    for m, size, slot in ((5, 5, 2), (5, 3, 2), (8, 8, 7), (1, 1, 0)):
        R = rng.standard_normal((m, 50))
        gram = R @ R.T
        stale = gram.copy()
        stale[slot, :] = stale[:, slot] = 0.0  # the kernel writes the new row itself
        out = np.zeros(m)
        assert kernel.anderson_weights_into(stale, gram[slot, :size].copy(), slot, size, 1e-10, out)
        np.testing.assert_allclose(stale[:size, :size], gram[:size, :size])
        expected = anderson_weights_host(gram.tolist(), size, 1e-10)
        np.testing.assert_allclose(out[:size], expected, rtol=1e-12, atol=1e-14)
    # all residuals zero: no weights, the caller falls back
    assert not kernel.anderson_weights_into(np.zeros((3, 3)), np.zeros(3), 0, 3, 1e-300, out)


def test_host_anderson_weights_are_the_core_formula():
    from cvximplicit._implicit import anderson_weights, anderson_weights_host

    rng = np.random.default_rng(0)
    for m in (1, 2, 5, 8):
        R = rng.standard_normal((m, 40))
        gram = R @ R.T
        padded = np.zeros((m + 2, m + 2))
        padded[:m, :m] = gram  # the leading block is used
        np.testing.assert_allclose(
            anderson_weights_host(padded.tolist(), m, 1e-10),
            anderson_weights(np, gram, None, 1e-10),
            rtol=1e-9,
        )
    # a repeated residual with no regularization to speak of (least squares), and all
    # residuals zero (equal weights)
    R = np.vstack([R[:2], R[:1]])
    for gram in (R @ R.T, np.zeros((3, 3))):
        a = anderson_weights_host(gram.tolist(), 3, 1e-300)
        assert np.all(np.isfinite(a)) and abs(sum(a) - 1.0) < 1e-12


def test_vjp_matches_autograd_grad(monkeypatch):
    """The backward's products call autograd's engine directly (fewer checks per call):
    the same numbers as `torch.autograd.grad`, and zeros where the output does not
    depend on the input."""
    from cvximplicit.torch import _implicit as torch_impl
    from cvximplicit.torch._implicit import _vjp

    z = torch.randn(7, dtype=torch.float64, requires_grad=True)
    A = torch.randn(7, 7, dtype=torch.float64, requires_grad=True)
    out = torch.tanh(A @ z)
    w = torch.randn(7, dtype=torch.float64)
    (ref,) = torch.autograd.grad(out, z, w, retain_graph=True)
    vjp = _vjp(out, z)
    torch.testing.assert_close(vjp(w), ref, rtol=0, atol=0)
    torch.testing.assert_close(vjp(2 * w), 2 * ref)  # the graph is retained
    unrelated = torch.tanh(A.sum(0))  # depends on A only
    assert torch.equal(_vjp(unrelated, z)(w), torch.zeros(7, dtype=torch.float64))
    # a torch release without the engine handle: `torch.autograd.grad` does the same
    monkeypatch.setattr(torch_impl, "_ENGINE", None)
    torch.testing.assert_close(_vjp(out, z)(w), ref, rtol=0, atol=0)
    assert torch.equal(_vjp(unrelated, z)(w), torch.zeros(7, dtype=torch.float64))


def test_jax_converged_solves_make_no_host_callback(monkeypatch):
    """Under jit the failure report is a host callback, made only when a solve failed
    (a callback costs more than a small layer's solve)."""
    from cvximplicit.jax import _implicit as jax_impl

    calls = []
    original = jax_impl._Layer._warn_traced
    monkeypatch.setattr(
        jax_impl._Layer, "_warn_traced", lambda self, *a: calls.append(1) or original(self, *a)
    )
    W, U, x, b = contraction()
    f = lambda z, x: jnp.tanh(jnp.asarray(W) @ z + jnp.asarray(U) @ x + b)  # noqa: E731
    loss = jax.jit(jax.grad(lambda x: jax_fixed_point(f, jnp.zeros(6), x).sum()))
    jax.block_until_ready(loss(jnp.asarray(x)))
    assert calls == []
    bad = jax.jit(lambda x: jax_fixed_point(f, jnp.zeros(6), x, max_iter=2, on_failure="warn"))
    with pytest.warns(ci.ConvergenceWarning):
        jax.block_until_ready(bad(jnp.asarray(x)))
    assert calls == [1]


def test_torch_kink_exactly_at_the_solution():
    """relu's pre-activation is exactly 0 at the fixed point for one coordinate: the
    gradient autograd's choice (relu'(0) = 0) gives is one of the one-sided derivatives."""
    W = torch.tensor([[0.5, 0.0], [0.0, 0.5]], dtype=torch.float64)
    x = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    f = lambda z, x: torch.relu(W @ z + x)  # noqa: E731  (second coordinate: 0.5*0 + 0 = 0)
    z0 = torch.zeros(2, dtype=torch.float64)
    z = fixed_point(f, z0, x, tol=1e-14)
    (gx,) = torch.autograd.grad(z.sum(), x)
    h = 1e-6
    with torch.no_grad():
        right = (fixed_point(f, z0, x + torch.tensor([0, h]), tol=1e-14).sum() - z.sum()) / h
        left = (z.sum() - fixed_point(f, z0, x - torch.tensor([0, h]), tol=1e-14).sum()) / h
    assert abs(float(right) - 2.0) < 1e-5 and abs(float(left)) < 1e-5
    assert abs(float(gx[1]) - float(left)) < 1e-6 or abs(float(gx[1]) - float(right)) < 1e-6
    assert abs(float(gx[0]) - 2.0) < 1e-6


# --- gradcheck, tuples and pytrees, z0 validation -----------------------------------------


def test_torch_gradcheck_with_its_defaults():
    A = 0.2 * torch.tensor(np.random.default_rng(0).standard_normal((3, 3)))
    x = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64, requires_grad=True)
    z0 = torch.zeros(3, dtype=torch.float64)
    f = lambda z, x: torch.tanh(A @ z + x)  # noqa: E731
    assert torch.autograd.gradcheck(lambda x: fixed_point(f, z0, x), (x,))
    assert torch.autograd.gradcheck(lambda x: root_find(lambda z, x: z**3 + z - x, z0, x), (x,))
    assert torch.autograd.gradcheck(lambda x: fixed_point(f, z0, x, gradient="unroll"), (x,))


def test_torch_tuple_state_gradient():
    """``f`` on a tuple ``(u, s)``: u = tanh(A u + x), s = 0.5 s + sum(u)."""
    A = 0.3 * torch.tensor(np.random.default_rng(1).standard_normal((4, 4)))
    x = torch.tensor(np.random.default_rng(2).standard_normal(4), requires_grad=True)
    f = lambda zs, x: (torch.tanh(A @ zs[0] + x), 0.5 * zs[1] + zs[0].sum())  # noqa: E731
    z0 = (torch.zeros(4, dtype=torch.float64), torch.zeros((), dtype=torch.float64))
    u, s = fixed_point(f, z0, x, tol=1e-13, backward_tol=1e-13)
    assert isinstance(u, torch.Tensor) and u.shape == (4,) and s.shape == ()
    (gx,) = torch.autograd.grad((u**2).sum() + s, x)
    # exact: s* = 2 sum(u*), so the loss is sum(u^2) + 2 sum(u) with u* of the tanh layer
    uu = u.detach()
    D = torch.diag(1 - torch.tanh(A @ uu + x.detach()) ** 2)
    ref = D @ torch.linalg.solve((torch.eye(4, dtype=torch.float64) - D @ A).T, 2 * uu + 2)
    torch.testing.assert_close(gx, ref, atol=1e-10, rtol=1e-9)
    assert torch.autograd.gradcheck(lambda x: fixed_point(f, z0, x)[1], (x,))


def test_jax_pytree_state_gradient():
    A = 0.3 * jnp.asarray(np.random.default_rng(1).standard_normal((4, 4)))
    f = lambda zs, x: {"u": jnp.tanh(A @ zs["u"] + x), "s": 0.5 * zs["s"] + zs["u"].sum()}  # noqa: E731
    z0 = {"u": jnp.zeros(4), "s": jnp.zeros(())}

    def loss(x):
        z = jax_fixed_point(f, z0, x, tol=1e-13, backward_tol=1e-13)
        return jnp.sum(z["u"] ** 2) + z["s"]

    x = jnp.asarray(np.random.default_rng(2).standard_normal(4))
    g = jax.jit(jax.grad(loss))(x)
    h, e = 1e-6, jnp.eye(4)
    fd = jnp.array([(loss(x + h * e[i]) - loss(x - h * e[i])) / (2 * h) for i in range(4)])
    np.testing.assert_allclose(g, fd, atol=1e-7)


def test_z0_is_validated_with_a_clear_message():
    A = torch.eye(3, dtype=torch.float64) * 0.5
    f = lambda z: torch.tanh(z @ A)  # noqa: E731  (a batch of rows)
    with pytest.raises(ci.ParameterError, match=r"shape \(2, 3\) but z0 has shape \(3,\)"):
        fixed_point(lambda z: f(z.expand(2, 3)), torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ci.ParameterError, match="same structure as z0"):
        fixed_point(lambda zs: zs[0], (torch.zeros(3), torch.zeros(3)))
    with pytest.raises(ci.ParameterError, match="create z0 in the dtype f computes in"):
        fixed_point(lambda z: z.float() * 0.5, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ci.ParameterError, match=r"shape \(2, 3\) but z0 has shape \(3,\)"):
        jax_fixed_point(lambda z: jnp.tile(z, (2, 1)) * 0.5, jnp.zeros(3))
    with pytest.raises(ci.ParameterError, match="same structure as z0"):
        jax_fixed_point(lambda zs: zs[0], (jnp.zeros(3), jnp.zeros(3)))


def test_options_are_validated_and_shared():
    with pytest.raises(ValueError, match="unknown backward_solver 'cg'; choose one of"):
        ci.ImplicitOptions(backward_solver="cg")
    with pytest.raises(ValueError, match="solver 'newton' does not apply to fixed_point"):
        fixed_point(lambda z: 0.5 * z, torch.zeros(2), solver="newton")
    with pytest.raises(ValueError, match="unroll' applies to fixed points only"):
        jax_root_find(lambda z: z - 1.0, jnp.zeros(2), gradient="unroll")
    opts = ci.ImplicitOptions(tol=1e-10, backward_solver=ci.BackwardSolver.GMRES)
    _, it = fixed_point(
        lambda z: 0.5 * z + 1, torch.zeros(2, dtype=torch.float64), options=opts, return_info=True
    )
    _, ij = jax_fixed_point(lambda z: 0.5 * z + 1, jnp.zeros(2), options=opts, return_info=True)
    assert it.options == ij.options and it.options.tol == 1e-10
    assert it.options.backward_solver is ci.BackwardSolver.GMRES
    # the defaults follow the dtype
    assert ci.ImplicitOptions().resolve(fixed_point=True, eps=2.0**-23).tol == 100 * 2.0**-23
    assert ci.ImplicitOptions().resolve(fixed_point=True, eps=2.0**-52).tol == 1e-8


# --- float32 and failures ------------------------------------------------------------------


def test_float32_defaults_converge_in_both_frameworks():
    W, X = tanh_layer_float32()
    Wt, Xt = torch.tensor(W), torch.tensor(X, requires_grad=True)
    z, info = fixed_point(
        lambda z, x: torch.tanh(z @ Wt.T + x), torch.zeros_like(Xt), Xt, return_info=True
    )
    z.sum().backward()
    assert info.forward.converged and info.backward is not None and info.backward.converged
    assert Xt.grad is not None and bool(torch.isfinite(Xt.grad).all())
    f = lambda z, x: jnp.tanh(z @ jnp.asarray(W).T + x)  # noqa: E731
    X32 = jnp.asarray(X)
    g = jax.jit(jax.grad(lambda x: jax_fixed_point(f, jnp.zeros_like(x), x).sum()))(X32)
    assert g.dtype == jnp.float32 and bool(jnp.isfinite(g).all())
    # the float32 gradient agrees with float64's to float32 accuracy
    g64 = jax.grad(lambda x: jax_fixed_point(f, jnp.zeros_like(x), x, tol=1e-12).sum())(
        X32.astype(jnp.float64)
    )
    np.testing.assert_allclose(g, g64, rtol=0, atol=2e-3 * float(jnp.abs(g64).max()))
    np.testing.assert_allclose(Xt.grad.numpy(), g64, rtol=0, atol=2e-3 * float(jnp.abs(g64).max()))


def test_precision_floor_names_the_cause_and_the_fix():
    W, X = tanh_layer_float32()
    Wt = torch.tensor(W)
    pattern = r"rounding floor of float32 .* Use tol >= \S+ \(the float32 default is 1\.2e-05\)"
    with pytest.raises(ci.ConvergenceError, match=pattern):
        fixed_point(
            lambda z, x: torch.tanh(z @ Wt.T + x), torch.zeros(8, 64), torch.tensor(X), tol=1e-9
        )
    f = lambda z, x: jnp.tanh(z @ jnp.asarray(W).T + x)  # noqa: E731
    with pytest.raises(ci.ConvergenceError, match=pattern):
        jax_fixed_point(f, jnp.zeros((8, 64), jnp.float32), jnp.asarray(X), tol=1e-9)


def test_divergence_and_slow_contraction_are_told_apart():
    x = torch.ones(1, dtype=torch.float64)
    z0 = torch.zeros(1, dtype=torch.float64)
    with pytest.raises(
        ci.ConvergenceError, match=r"residual \|\|F\(z\)\|\| grew .* not a contraction"
    ):
        fixed_point(lambda z: 1.5 * z + x, z0, solver="iteration", max_iter=50)
    with pytest.raises(
        ci.ConvergenceError,
        match=r"still converging, shrinking by about 0\.990 .*Raise max_iter or solver='anderson'",
    ):
        fixed_point(lambda z: 0.99 * z + x, z0, solver="iteration", max_iter=50)
    with pytest.raises(ci.ConvergenceError, match=r"grew .* The map f is not a contraction"):
        jax_fixed_point(lambda z: 1.5 * z + 1.0, jnp.zeros(1), solver="iteration", max_iter=50)
    with pytest.warns(ci.ConvergenceWarning, match="still converging"):
        fixed_point(lambda z: 0.99 * z + x, z0, solver="iteration", max_iter=50, on_failure="warn")
    z = fixed_point(lambda z: 0.99 * z + x, z0, solver="iteration", max_iter=50, on_failure="nan")
    assert bool(torch.isnan(z).all())


def test_non_contractive_backward_suggests_gmres_which_solves_it():
    W = torch.tensor([[1.5]], dtype=torch.float64)
    x = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    f = lambda z, x: W @ z + x  # noqa: E731  Anderson finds z = -2; I - J = -0.5 is invertible
    z0 = torch.zeros(1, dtype=torch.float64)
    for solver in ("fixed_point",):  # Anderson happens to solve this 1-d case (a secant step)
        z = fixed_point(f, z0, x, backward_solver=solver)
        with pytest.raises(
            ci.ConvergenceError,
            match=r"spectral radius of J_z f is about 1\.500 .*backward_solver='gmres'",
        ):
            z.sum().backward()
    z = fixed_point(f, z0, x, backward_solver="gmres")
    (g,) = torch.autograd.grad(z.sum(), x)
    assert abs(float(g) + 2.0) < 1e-8
    fj = lambda z, x: 1.5 * z + x  # noqa: E731
    with pytest.raises(ci.ConvergenceError, match="backward_solver='gmres'"):
        jax.grad(
            lambda x: jax_fixed_point(fj, jnp.zeros(1), x, backward_solver="fixed_point").sum()
        )(jnp.ones(1))
    g = jax.grad(lambda x: jax_fixed_point(fj, jnp.zeros(1), x, backward_solver="gmres").sum())(
        jnp.ones(1)
    )
    assert abs(float(g[0]) + 2.0) < 1e-8


def test_jax_failures_under_jit_are_nan_warned_and_reported():
    f = lambda z, x: 0.99 * z + x  # noqa: E731
    run = jax.jit(
        lambda x: jax_fixed_point(
            f, jnp.zeros(2), x, solver="iteration", max_iter=20, return_info=True
        )
    )
    with pytest.warns(ci.ConvergenceWarning, match="still converging.*cannot raise"):
        z, info = run(jnp.ones(2))
        jax.block_until_ready(z)
    assert bool(jnp.isnan(z).all()) and info.traced
    assert int(info.forward.status) == ci.ImplicitStatus.SLOW and not bool(info.forward.converged)
    assert "still converging" in info.message
    # vmap: one element fails, the message names it
    batched = jax.vmap(
        lambda x: jax_fixed_point(f, jnp.zeros(2), x, solver="iteration", max_iter=20, tol=1e-3)
    )
    with pytest.warns(ci.ConvergenceWarning, match="still converging"):
        out = jax.block_until_ready(batched(jnp.array([[0.0, 0.0], [1.0, 1.0]])))
    assert bool(jnp.isfinite(out[0]).all()) and bool(jnp.isnan(out[1]).all())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        silent = jax.jit(
            lambda x: jax_fixed_point(
                f, jnp.zeros(2), x, solver="iteration", max_iter=20, on_failure="nan"
            )
        )
        assert bool(jnp.isnan(silent(jnp.ones(2))).all())


# --- roots -------------------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["newton", "broyden"])
@pytest.mark.parametrize("back", ["gmres", "dense", "bicgstab", "anderson"])
def test_root_find_both_frameworks(solver, back):
    x = torch.tensor([2.0, 10.0], dtype=torch.float64, requires_grad=True)
    F = lambda z, x: z**3 + z - x  # noqa: E731
    z = root_find(F, torch.zeros(2, dtype=torch.float64), x, solver=solver, backward_solver=back)
    (g,) = torch.autograd.grad(z.sum(), x)
    torch.testing.assert_close(g, 1.0 / (3 * z.detach() ** 2 + 1), atol=1e-10, rtol=1e-10)

    def z_of(x):
        return jax_root_find(F, jnp.zeros(()), x, solver=solver, backward_solver=back)

    grad = jax.vmap(jax.grad(z_of))(jnp.array([2.0, 10.0]))
    np.testing.assert_allclose(grad, [0.25, 1.0 / 13.0], atol=1e-10)


def test_torch_root_value_is_the_root_itself():
    x = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
    F = lambda z, x: z**3 + z - x  # noqa: E731
    z0 = torch.zeros((), dtype=torch.float64)
    with pytest.warns(ci.ConvergenceWarning):
        z = root_find(F, z0, x, max_iter=1, on_failure="warn")
    with torch.no_grad(), pytest.warns(ci.ConvergenceWarning):
        z_plain = root_find(F, z0, x, max_iter=1, on_failure="warn")
    assert float(z.detach()) == float(z_plain)  # the last iterate, with or without gradients


# --- inexact gradients: phantom and Jacobian regularisation ----------------------------------


def test_phantom_gradient_approaches_the_exact_one():
    """Labelled inexact: the k-step phantom gradient's error falls like ((1 - d) + d rho)^k."""
    W, U, x, b = contraction(seed=4, norm=0.6)
    _, gx_ref, J = exact_relu_layer(W, U, x, b)
    rho = max(abs(np.linalg.eigvals(J)))
    Wt, Ut, bt = (torch.tensor(a) for a in (W, U, b))
    f = lambda z, x: torch.relu(Wt @ z + Ut @ x + bt)  # noqa: E731
    fj = lambda z, x: jax.nn.relu(W @ z + U @ x + b)  # noqa: E731
    errors = []
    for k in (1, 5, 10, 40):
        xt = torch.tensor(x, requires_grad=True)
        z = fixed_point(
            f,
            torch.zeros(6, dtype=torch.float64),
            xt,
            tol=1e-13,
            gradient="phantom",
            phantom_steps=k,
        )
        (gx,) = torch.autograd.grad((z**2).sum(), xt)
        gj = jax.grad(
            lambda x, k_=k: jnp.sum(
                jax_fixed_point(
                    fj, jnp.zeros(6), x, tol=1e-13, gradient="phantom", phantom_steps=k_
                )
                ** 2
            )
        )(jnp.asarray(x))
        np.testing.assert_allclose(gx.numpy(), gj, atol=1e-10)
        errors.append(np.linalg.norm(gx.numpy() - gx_ref) / np.linalg.norm(gx_ref))
    assert errors[0] > 1e-2  # inexact with few steps
    assert errors[-1] < 1e-7 and all(a > b for a, b in itertools.pairwise(errors))
    assert errors[2] <= 5 * rho**10
    # damping d: the contraction factor becomes (1 - d) + d rho
    xt = torch.tensor(x, requires_grad=True)
    z = fixed_point(
        f,
        torch.zeros(6, dtype=torch.float64),
        xt,
        gradient="phantom",
        phantom_steps=80,
        phantom_damping=0.5,
    )
    (gx,) = torch.autograd.grad((z**2).sum(), xt)
    np.testing.assert_allclose(gx.numpy(), gx_ref, rtol=1e-6)


def test_jacobian_penalty_is_unbiased_for_the_frobenius_norm_and_its_gradient():
    W, _, _, b = contraction(n=5, seed=6)
    Wt = torch.tensor(W, requires_grad=True)
    z = torch.tensor(np.random.default_rng(0).standard_normal(5))
    f = lambda z: torch.tanh(Wt @ z + torch.tensor(b))  # noqa: E731
    exact = (torch.autograd.functional.jacobian(f, z, create_graph=True) ** 2).sum()
    (g_exact,) = torch.autograd.grad(exact, Wt)
    gen = torch.Generator().manual_seed(0)
    est = jacobian_penalty(f, z, samples=20000, generator=gen)
    (g_est,) = torch.autograd.grad(est, Wt)
    assert abs(est.item() / exact.item() - 1) < 0.03
    assert float(torch.linalg.norm(g_est - g_exact) / torch.linalg.norm(g_exact)) < 0.05
    fj = lambda z, W: jnp.tanh(W @ z + b)  # noqa: E731

    def pen(W):
        return jax_jacobian_penalty(
            fj, jnp.asarray(z.numpy()), W, key=jax.random.PRNGKey(0), samples=20000
        )

    assert abs(float(pen(jnp.asarray(W))) / exact.item() - 1) < 0.03
    gj = jax.grad(pen)(jnp.asarray(W))
    assert np.linalg.norm(gj - g_exact.numpy()) / np.linalg.norm(g_exact.numpy()) < 0.05


# --- memory and warnings -----------------------------------------------------------------


def saved_bytes(fn):
    """Bytes autograd saves for the backward pass while ``fn`` builds its graph."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total[0]


def test_implicit_memory_does_not_grow_with_iterations():
    W = contraction(n=32, seed=7, norm=0.9)[0]
    Wt = torch.tensor(W, requires_grad=True)
    inj = torch.tensor(np.random.default_rng(0).standard_normal(32))
    f = lambda z: torch.relu(Wt @ z + inj)  # noqa: E731
    z0 = torch.zeros(32, dtype=torch.float64)
    loose = saved_bytes(lambda: fixed_point(f, z0, solver="iteration", tol=1e-3))
    tight = saved_bytes(lambda: fixed_point(f, z0, solver="iteration", tol=1e-12))
    assert loose == tight > 0
    short = saved_bytes(
        lambda: fixed_point(f, z0, gradient="unroll", max_iter=10, on_failure="nan")
    )
    long = saved_bytes(lambda: fixed_point(f, z0, gradient="unroll", max_iter=40, on_failure="nan"))
    assert long > 3 * short > 3 * tight


def test_no_warnings_from_our_code():
    A = 0.2 * torch.eye(3, dtype=torch.float64)
    x = torch.ones(3, dtype=torch.float64, requires_grad=True)
    f = lambda z, x: torch.tanh(A @ z + x)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for gradient in ("implicit", "phantom", "unroll"):
            z = fixed_point(
                f, torch.zeros(3, dtype=torch.float64), x, gradient=gradient, max_iter=80
            )
            z.sum().backward()


def test_torch_info_reports_both_passes():
    x = torch.ones(3, dtype=torch.float64, requires_grad=True)
    z, info = fixed_point(
        lambda z, x: torch.tanh(0.5 * z + x),
        torch.zeros(3, dtype=torch.float64),
        x,
        return_info=True,
    )
    assert info.backward is None and "backward  not run" in str(info)
    z.sum().backward()
    assert info.backward is not None and info.backward.converged
    assert "converged" in info.message and "anderson" in str(info)


def test_jax_unroll_and_spectral_radius():
    from cvximplicit.jax import spectral_radius

    W = 0.6 * jnp.eye(3)
    f = lambda z, x: jax.nn.relu(W @ z + x)  # noqa: E731
    x = jnp.ones(3)
    implicit = jax.grad(lambda x: jax_fixed_point(f, jnp.zeros(3), x).sum())(x)
    unrolled = jax.grad(
        lambda x: jax_fixed_point(f, jnp.zeros(3), x, gradient="unroll", max_iter=100).sum()
    )(x)
    np.testing.assert_allclose(implicit, unrolled, atol=1e-7)
    z = jax_fixed_point(f, jnp.zeros(3), x)
    assert abs(float(jax.jit(spectral_radius, static_argnums=0)(f, z, x)) - 0.6) < 1e-6


def test_jax_spectral_radius_does_not_miss_the_dominant_direction():
    from cvximplicit.jax import spectral_radius

    M = jnp.array([[0.5, -0.5], [-0.5, 0.5]])  # eigenvalues 0 and 1; ones is in the kernel
    assert abs(float(spectral_radius(lambda z, M: M @ z, jnp.zeros(2), M)) - 1.0) < 1e-6
