"""cvxpylayers' README snippets, run with only the import changed (issue 14, drop-in).

Each snippet is executed twice from the same source text: once with ``cvxpylayers`` and
once with ``cvximplicit`` imported instead; solutions agree to the peer's accuracy and our
gradients equal central differences.  Those skip where cvxpylayers is not installed; the
reproductions of what cvxpylayers' own examples do (``examples/dropin/``) need only ours.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

TORCH_README = """
import cvxpy as cp
import torch
from cvxpylayers.torch import CvxpyLayer

torch.manual_seed(0)
n, m = 2, 3
x = cp.Variable(n)
A = cp.Parameter((m, n))
b = cp.Parameter(m)
constraints = [x >= 0]
objective = cp.Minimize(0.5 * cp.pnorm(A @ x - b, p=1))
problem = cp.Problem(objective, constraints)
assert problem.is_dpp()

cvxpylayer = CvxpyLayer(problem, parameters=[A, b], variables=[x])
A_tch = torch.randn(m, n, requires_grad=True)
b_tch = torch.randn(m, requires_grad=True)

# solve the problem
solution, = cvxpylayer(A_tch, b_tch)

# compute the gradient of the sum of the solution with respect to A, b
solution.sum().backward()
"""

JAX_README = """
import cvxpy as cp
import jax
from cvxpylayers.jax import CvxpyLayer

n, m = 2, 3
x = cp.Variable(n)
A = cp.Parameter((m, n))
b = cp.Parameter(m)
constraints = [x >= 0]
objective = cp.Minimize(0.5 * cp.pnorm(A @ x - b, p=1))
problem = cp.Problem(objective, constraints)
assert problem.is_dpp()

cvxpylayer = CvxpyLayer(problem, parameters=[A, b], variables=[x])
key = jax.random.PRNGKey(0)
key, k1, k2 = jax.random.split(key, num=3)
A_jax = jax.random.normal(k1, shape=(m, n))
b_jax = jax.random.normal(k2, shape=(m,))

solution, = cvxpylayer(A_jax, b_jax)

# compute the gradient of the summed solution with respect to A, b
dcvxpylayer = jax.grad(lambda A, b: sum(cvxpylayer(A, b)[0]), argnums=[0, 1])
gradA, gradb = dcvxpylayer(A_jax, b_jax)
"""


def _run(source: str, ours: bool) -> dict:
    if ours:
        source = source.replace("from cvxpylayers.", "from cvximplicit.")
    scope: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the peer's own deprecation and accuracy warnings
        exec(compile(source, "<readme>", "exec"), scope)
    return scope


def test_torch_readme_snippet_runs_unchanged():
    pytest.importorskip("cvxpylayers")
    pytest.importorskip("torch")
    theirs, ours = _run(TORCH_README, False), _run(TORCH_README, True)
    np.testing.assert_allclose(
        ours["solution"].detach().numpy(), theirs["solution"].detach().numpy(), atol=1e-4
    )
    assert ours["A_tch"].grad is not None and ours["b_tch"].grad is not None
    # our gradient against central differences of exact re-solves
    import cvximplicit as ci

    program = ci.compile(ours["problem"], [ours["A"], ours["b"]], [ours["x"]])
    A0, b0 = (t.detach().double().numpy() for t in (ours["A_tch"], ours["b_tch"]))
    d = np.random.default_rng(0).standard_normal(b0.shape)
    h = 1e-6
    fd = (program.solve(A0, b0 + h * d).values[0] - program.solve(A0, b0 - h * d).values[0]) / (
        2 * h
    )
    np.testing.assert_allclose(float(ours["b_tch"].grad.double().numpy() @ d), fd.sum(), atol=1e-5)


def test_jax_readme_snippet_runs_unchanged():
    pytest.importorskip("cvxpylayers")
    pytest.importorskip("jax")
    theirs, ours = _run(JAX_README, False), _run(JAX_README, True)
    np.testing.assert_allclose(
        np.asarray(ours["solution"]), np.asarray(theirs["solution"]), atol=1e-4
    )
    np.testing.assert_allclose(np.asarray(ours["gradb"]), np.asarray(theirs["gradb"]), atol=1e-3)


@pytest.mark.parametrize("solver", ["CLARABEL", "SCS", "OSQP"])
def test_diffcp_batch_settings_are_dropped_with_a_warning(solver):
    """cvxpylayers' example "Portfolio optimization with vix" calls its layer with
    ``solver_args={"solve_method": "CLARABEL", "n_jobs_forward": 1}``: diffcp's thread count
    for batched solves, which no backend has.  Accepted (dropped, with the translation
    warning), per call and when the solver is built, like the other diffcp names."""
    import cvxpy as cp

    import cvximplicit as ci

    x, a = cp.Variable(2), cp.Parameter(2)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - a)), [x >= 0])
    program = ci.compile(problem, [a], [x], solver=solver)
    args = {"n_jobs_forward": 1, "n_jobs_backward": 2}
    with pytest.warns(UserWarning, match=r"n_jobs_forward dropped.*n_jobs_backward dropped"):
        sol = program.solve(np.array([1.0, -1.0]), solver_args=args)
    np.testing.assert_allclose(sol.values[0], [1.0, 0.0], atol=1e-6)
    with pytest.warns(UserWarning, match="n_jobs_forward dropped"):
        built = {"CLARABEL": ci.Clarabel, "SCS": ci.SCS, "OSQP": ci.OSQP}[solver](n_jobs_forward=4)
    assert "n_jobs_forward" not in built.settings


def test_portfolio_example_solver_args_in_a_torch_layer():
    """The example's exact call: a batched layer with ``solve_method`` and ``n_jobs_forward``."""
    torch = pytest.importorskip("torch")
    import cvxpy as cp

    from cvximplicit.torch import CvxpyLayer

    x, a = cp.Variable(3), cp.Parameter(3)
    problem = cp.Problem(cp.Maximize(a @ x - cp.sum_squares(x)), [cp.sum(x) == 1])
    layer = CvxpyLayer(problem, parameters=[a], variables=[x])
    a_tch = torch.tensor([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]], dtype=torch.float64)
    with pytest.warns(UserWarning, match="n_jobs_forward dropped"):
        (sol,) = layer(a_tch, solver_args={"solve_method": "CLARABEL", "n_jobs_forward": 1})
    (plain,) = layer(a_tch)
    torch.testing.assert_close(sol, plain)


def test_cvxpylayers_solver_names_say_what_to_use():
    """cvxpylayers' example scripts build their layers with ``solver=cp.CUCLARABEL`` (its GPU
    backend), which is no backend here: the error names the one to use instead."""
    import cvxpy as cp

    import cvximplicit as ci

    x, a = cp.Variable(2), cp.Parameter(2)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - a)), [x >= 0])
    with pytest.raises(ci.UnsupportedProblemError, match=r"unknown solver.*use \"CLARABEL\""):
        ci.compile(problem, [a], [x], solver=cp.CUCLARABEL)
    with pytest.raises(ci.UnsupportedProblemError, match=r"use \"SCS\""):
        ci.compile(problem, [a], [x], solver="DIFFCP")


def test_pos_parameter_accepts_zero_outside_a_geometric_program():
    """cvxpylayers' example "signal_denoising" sweeps ``lambda_param = cp.Parameter(pos=True)``
    over ``torch.linspace(0, 20, 10)``: outside a GP, ``pos`` only gives DCP its sign, and 0
    is a valid value (cvxpylayers solves it); a negative value is still refused."""
    torch = pytest.importorskip("torch")
    import cvxpy as cp

    import cvximplicit as ci
    from cvximplicit.torch import CvxpyLayer

    n = 5
    y, x, lam = cp.Variable(n), cp.Parameter(n), cp.Parameter(pos=True)
    objective = cp.sum_squares(x - y) + lam * cp.sum_squares(cp.diff(y))
    layer = CvxpyLayer(cp.Problem(cp.Minimize(objective)), parameters=[x, lam], variables=[y])
    X = torch.randn(3, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    lam_tch = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    (pred,) = layer(X, lam_tch)
    torch.testing.assert_close(pred, X)  # no smoothing at lambda = 0
    pred.sum().backward()
    assert lam_tch.grad is not None and torch.isfinite(lam_tch.grad)
    with pytest.raises(ci.ParameterError, match="negative"):
        layer(X, torch.tensor(-1.0, dtype=torch.float64))


def test_jax_layer_per_call_solver_args():
    """cvxpylayers' JAX tutorial calls ``fit_lr(X, y, lam, alpha, solver_args={"eps": 1e-8})``
    inside ``jax.grad``: per-call settings are static values, applied to this call's solve
    (here a tight Clarabel tolerance changes nothing in the result), under ``grad`` and
    ``jit``, and checked by name like the constructor's."""
    jax = pytest.importorskip("jax")
    import cvxpy as cp
    import jax.numpy as jnp

    import cvximplicit as ci
    from cvximplicit.jax import CvxpyLayer

    m = 6
    a, b = cp.Variable(1), cp.Variable()
    X, Y, alpha = cp.Parameter((m, 1)), cp.Parameter(m), cp.Parameter(nonneg=True)
    objective = cp.sum_squares(X @ a + b - Y) / m + alpha * cp.sum_squares(a)
    layer = CvxpyLayer(cp.Problem(cp.Minimize(objective)), [X, Y, alpha], [a, b])
    rng = np.random.default_rng(0)
    Xv, Yv = jnp.asarray(rng.standard_normal((m, 1))), jnp.asarray(rng.standard_normal(m))

    def loss(al, **kw):
        a_, b_ = layer(Xv, Yv, al, **kw)
        return jnp.sum(a_) + b_

    plain = jax.grad(loss)(jnp.asarray(0.5))
    with pytest.warns(UserWarning, match="eps"):
        tight = jax.grad(lambda al: loss(al, solver_args={"eps": 1e-10}))(jnp.asarray(0.5))
    np.testing.assert_allclose(tight, plain, rtol=1e-6)
    jitted = jax.jit(lambda al: loss(al, solver_args={"max_iter": 50}))(jnp.asarray(0.5))
    np.testing.assert_allclose(jitted, loss(jnp.asarray(0.5)), rtol=1e-8)
    with pytest.raises(ci.SolverSettingsError, match="not_a_setting"):
        layer(Xv, Yv, jnp.asarray(0.5), solver_args={"not_a_setting": 1})
    with pytest.raises(TypeError, match="static, hashable"):
        layer(Xv, Yv, jnp.asarray(0.5), solver_args={"max_iter": [50]})


def test_jax_eager_calls_do_not_recompile():
    """cvxpylayers' JAX tutorial sweeps ``jax.grad`` of a layer over 200 values, eagerly: each
    call used to compile its ``pure_callback`` again (a new callable each time is a new
    cache key), 2-3 times slower than cvxpylayers.  Repeated calls compile nothing."""
    jax = pytest.importorskip("jax")
    import logging

    import cvxpy as cp
    import jax.numpy as jnp

    from cvximplicit.jax import CvxpyLayer

    x, b = cp.Variable(2), cp.Parameter(2)
    layer = CvxpyLayer(cp.Problem(cp.Minimize(cp.sum_squares(x - b)), [x >= 0]), [b], [x])
    grad = jax.grad(lambda v: layer(v)[0].sum())
    grad(jnp.array([1.0, -1.0]))
    layer(jnp.array([1.0, 2.0]))

    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger, handler = logging.getLogger("jax"), Collect(level=logging.DEBUG)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with jax.log_compiles(True):
            grad(jnp.array([2.0, -1.0]))
            layer(jnp.array([3.0, 2.0]))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert not [m for m in messages if m.startswith("Compiling")]
