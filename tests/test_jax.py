"""The JAX layer: gradients on every family, jit and vmap, dtypes, failures, agreement."""

from __future__ import annotations

import os

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)

import cvxpy as cp  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from helpers import SMALL  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import cvximplicit as ci  # noqa: E402
from cvximplicit.jax import CvxpyLayer  # noqa: E402


def scalar_loss(layer, n_out):
    weights = [
        jnp.asarray(np.random.default_rng(k).standard_normal(), dtype=jnp.float64)
        for k in range(n_out)
    ]

    def loss(*params):
        return sum(w * jnp.sum(o * o) for w, o in zip(weights, layer(*params)))

    return loss


@pytest.mark.parametrize("name", list(SMALL))
def test_gradients_every_family(name):
    fam = ci.problems.FAMILIES[name](**SMALL[name], seed=3)
    layer = CvxpyLayer(fam.problem, fam.parameters, fam.variables)
    params = [jnp.asarray(v) for v in fam.values]
    loss = scalar_loss(layer, len(fam.variables))
    check_grads(loss, params, order=1, modes=["rev"], eps=1e-6, atol=1e-5, rtol=1e-5)


def test_gradients_geometric_program():
    fam = ci.problems.geometric_program(seed=1)
    layer = CvxpyLayer(fam.problem, fam.parameters, fam.variables, gp=True)
    check_grads(
        scalar_loss(layer, 3),
        [jnp.asarray(v) for v in fam.values],
        order=1,
        modes=["rev"],
        eps=1e-6,
        atol=1e-5,
        rtol=1e-5,
    )


def test_jit_and_vmap_equal_eager_and_loop():
    fam = ci.problems.qp(n=5, p=3, q=1, seed=0)
    layer = CvxpyLayer(fam.problem, fam.parameters, fam.variables)
    Q, c, h, g = (jnp.asarray(v) for v in fam.values)
    rng = np.random.default_rng(0)
    C = c + 0.1 * jnp.asarray(rng.standard_normal((6, c.shape[0])))
    loss = lambda Q, c: sum(jnp.sum(o) for o in layer(Q, c, h, g))  # noqa: E731
    eager = layer(Q, c, h, g)
    jitted = jax.jit(lambda *p: layer(*p))(Q, c, h, g)
    for a, b in zip(eager, jitted):
        np.testing.assert_allclose(a, b, atol=1e-12)
    vm = jax.vmap(lambda ci_: layer(Q, ci_, h, g))(C)
    loop = [layer(Q, C[i], h, g) for i in range(6)]
    for k in range(3):
        np.testing.assert_allclose(vm[k], np.stack([lp[k] for lp in loop]), atol=1e-10)
    explicit = layer(Q, C, h, g)  # a leading batch dimension, as in the PyTorch layer
    np.testing.assert_allclose(explicit[0], vm[0], atol=1e-10)
    # grad through vmap: shared Q gets the summed gradient
    gv = jax.jit(jax.grad(lambda Q: jax.vmap(lambda ci_: loss(Q, ci_))(C).sum()))(Q)
    gl = sum(jax.grad(loss)(Q, C[i]) for i in range(6))
    np.testing.assert_allclose(gv, gl, atol=1e-9)
    # per-example gradients
    per = jax.vmap(jax.grad(loss, argnums=1), in_axes=(None, 0))(Q, C)
    for i in range(6):
        np.testing.assert_allclose(per[i], jax.grad(loss, argnums=1)(Q, C[i]), atol=1e-9)


def test_forward_mode_helper_and_adjoint():
    fam = ci.problems.socp(m=6, n=3, seed=1)
    layer = CvxpyLayer(fam.problem, fam.parameters, fam.variables)
    params = [jnp.asarray(v) for v in fam.values]
    rng = np.random.default_rng(2)
    tangents = [jnp.asarray(rng.standard_normal(np.shape(v))) for v in fam.values]
    outs, touts = jax.jit(layer.jvp)(params, tangents)
    cot = [jnp.asarray(rng.standard_normal(o.shape)) for o in outs]
    _, pullback = jax.vjp(lambda *p: layer(*p), *params)
    grads = pullback(tuple(cot))
    lhs = sum(jnp.vdot(c, t) for c, t in zip(cot, touts))
    rhs = sum(jnp.vdot(g, t) for g, t in zip(grads, tangents))
    assert abs(lhs - rhs) < 1e-10


def test_agrees_with_the_pytorch_layer():
    torch = pytest.importorskip("torch")
    from cvximplicit.torch import CvxpyLayer as TorchLayer

    fam = ci.problems.nnls(m=8, n=5, seed=2)
    jl = CvxpyLayer(fam.problem, fam.parameters, fam.variables)
    tl = TorchLayer(fam.problem, fam.parameters, fam.variables)
    params = [jnp.asarray(v) for v in fam.values]
    tparams = [torch.tensor(v, requires_grad=True) for v in fam.values]
    jo = jl(*params)
    to = tl(*tparams)
    for a, b in zip(jo, to):
        np.testing.assert_allclose(np.asarray(a), b.detach().numpy(), atol=1e-8)
    jg = jax.grad(lambda *p: sum(jnp.sum(o**2) for o in jl(*p)), argnums=(0, 1))(*params)
    sum((o**2).sum() for o in to).backward()
    for a, b in zip(jg, tparams):
        np.testing.assert_allclose(np.asarray(a), b.grad.numpy(), atol=1e-8)


def test_float32_inputs_give_float32_outputs():
    fam = ci.problems.nnls(m=6, n=4, seed=0)
    layer = CvxpyLayer(fam.problem, fam.parameters, fam.variables)
    params = [jnp.asarray(v, dtype=jnp.float32) for v in fam.values]
    outs = layer(*params)
    assert all(o.dtype == jnp.float32 for o in outs)
    g = jax.grad(lambda A, b: layer(A, b)[0].sum(), argnums=(0, 1))(*params)
    assert all(x.dtype == jnp.float32 for x in g)


def test_failures():
    x, b = cp.Variable(2), cp.Parameter(2)
    prob = cp.Problem(cp.Minimize(cp.sum(x)), [x >= b, x <= 1])
    layer = CvxpyLayer(prob, [b], [x])
    bad = jnp.array([[0.0, 0.0], [2.0, 0.0]])
    with pytest.raises(ci.InfeasibleError, match="batch element 1"):
        layer(bad)  # outside jit: the typed exception
    with pytest.raises(Exception, match="infeasible"):
        jax.block_until_ready(jax.jit(lambda b: layer(b))(bad))  # inside jit: its message
    assert isinstance(layer.last_error, ci.InfeasibleError)
    lenient = CvxpyLayer(prob, [b], [x], on_failure="nan")
    (out,) = lenient(bad)
    assert np.all(np.isfinite(out[0])) and np.all(np.isnan(out[1]))
    diags = lenient.last_diagnostics
    assert len(diags) == 2 and diags[1].status is ci.SolverStatus.INFEASIBLE
    with pytest.raises(ValueError, match="expected shape"):
        layer(jnp.zeros(3))


def test_every_transformation_uses_the_exact_derivatives():
    """jax.jvp, jacfwd, jacrev, grad, each under jit and vmap, agree with the core's JVP and
    VJP (the Jacobian from forward mode equals the one from reverse mode to rounding)."""
    fam = ci.problems.socp(m=6, n=3, seed=3)
    layer = CvxpyLayer(fam.problem, fam.parameters, fam.variables)
    params = [jnp.asarray(v) for v in fam.values]
    program = layer.program
    sol = program.solve(*fam.values)
    rng = np.random.default_rng(4)
    tangents = [jnp.asarray(rng.standard_normal(np.shape(v))) for v in fam.values]

    def f(*p):
        return layer(*p)[0]

    outs, touts = jax.jit(lambda p, t: jax.jvp(f, p, t))(tuple(params), tuple(tangents))
    np.testing.assert_allclose(outs, sol.values[0], atol=1e-10)
    np.testing.assert_allclose(touts, sol.jvp(*[np.asarray(t) for t in tangents])[0], atol=1e-10)
    for k in range(len(params)):
        fwd = jax.jit(jax.jacfwd(f, argnums=k))(*params)
        rev = jax.jit(jax.jacrev(f, argnums=k))(*params)
        np.testing.assert_allclose(fwd, rev, atol=1e-9)
    g = jax.jit(jax.grad(lambda *p: jnp.sum(f(*p) ** 2)))(*params)
    np.testing.assert_allclose(g, sol.vjp(2 * sol.values[0], None)[0], atol=1e-10)
    # vmap of each transformation over a batch of the second parameter
    batch = params[1] + 0.01 * jnp.asarray(rng.standard_normal((3, *params[1].shape)))
    per = jax.jit(jax.vmap(jax.jacfwd(lambda b: f(params[0], b, *params[2:]))))(batch)
    per_rev = jax.vmap(jax.jacrev(lambda b: f(params[0], b, *params[2:])))(batch)
    np.testing.assert_allclose(per, per_rev, atol=1e-9)
    for i in range(3):
        one = jax.jacrev(lambda b: f(params[0], b, *params[2:]))(batch[i])
        np.testing.assert_allclose(per[i], one, atol=1e-9)


def test_second_derivatives_say_so():
    fam = ci.problems.nnls(m=6, n=4, seed=0)
    layer = CvxpyLayer(fam.problem, fam.parameters, fam.variables)
    A, b = (jnp.asarray(v) for v in fam.values)
    with pytest.raises(ci.SecondDerivativeError, match="first order only"):
        jax.hessian(lambda b: jnp.sum(layer(A, b)[0] ** 2))(b)
    with pytest.raises(ci.SecondDerivativeError):
        jax.grad(lambda b: jnp.sum(jax.grad(lambda c: jnp.sum(layer(A, c)[0] ** 2))(b)))(b)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_training_loop_memory_is_flat():
    """A memory probe, not a timing: 200 jit-ed gradient steps on a 1500-variable QP.  Before
    the fix the layer grew by several MB per step (kept solutions in an unbounded cache, and
    per-call Python thread state on XLA's callback threads)."""
    n = 1500
    x, y = cp.Variable(n), cp.Parameter(n)
    D = np.diff(np.eye(n), axis=0)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x - y) + cp.sum_squares(D @ x)), [x >= -1, x <= 1])
    layer = CvxpyLayer(prob, [y], [x])
    step = jax.jit(jax.grad(lambda y: jnp.sum(layer(y)[0] ** 2)))
    yv = jnp.asarray(np.random.default_rng(0).standard_normal(n))
    for _ in range(40):  # warm-up: compilation, kept solver, allocator pools
        yv = yv - 0.01 * step(yv)
    before = _rss_mib()
    for _ in range(160):
        yv = yv - 0.01 * step(yv)
    jax.block_until_ready(yv)
    grown = _rss_mib() - before
    assert len(layer._cache) == 0  # every pending solution was taken by its backward pass
    assert grown < 40.0, f"resident memory grew by {grown:.0f} MiB over 160 steps"
