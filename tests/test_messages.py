"""Messages a user can act on (issue 17): each names the cause and what to change."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

import cvximplicit as ci


@pytest.fixture
def regression():
    z = cp.Variable(3)
    A, b = cp.Parameter((5, 3), name="A"), cp.Parameter(5)  # b keeps CVXPY's generated name
    con = z >= 0
    prob = cp.Problem(cp.Minimize(cp.sum_squares(A @ z - b)), [con])
    return prob, A, b, z, con


def test_swapped_parameters_say_both_shapes_position_and_hint(regression, rng):
    prob, A, b, z, _ = regression
    program = ci.compile(prob, [A, b], [z])
    with pytest.raises(ci.ParameterError) as info:
        program.solve(rng.standard_normal(5), rng.standard_normal((5, 3)))
    msg = str(info.value)
    assert "A (parameters[0])" in msg
    assert "(5, 3) or (batch, 5, 3)" in msg
    assert "got (5,)" in msg
    assert f"shape of parameter {b.name()} (parameters[1])" in msg
    assert "order of `parameters`" in msg
    with pytest.raises(ci.ParameterError, match="order of `parameters`"):
        program.solve_batch(rng.standard_normal((2, 5)), rng.standard_normal((2, 5, 3)))


def test_unnamed_parameters_carry_their_position(regression, rng):
    prob, A, b, z, _ = regression
    program = ci.compile(prob, [A, b], [z])
    with pytest.raises(ci.ParameterError, match=rf"{b.name()} \(parameters\[1\]\): expected"):
        program.solve(rng.standard_normal((5, 3)), rng.standard_normal(4))
    with pytest.raises(ci.ParameterError, match=r"parameters\[1\]\): 7"):
        program.solve_batch(rng.standard_normal((3, 5, 3)), rng.standard_normal((7, 5)))


def test_scalar_parameter_shape_message():
    x, t = cp.Variable(), cp.Parameter()
    program = ci.compile(cp.Problem(cp.Minimize(cp.square(x - t))), [t], [x])
    with pytest.raises(ci.ParameterError, match=r"\(\) \(a scalar\) or \(batch,\)"):
        program.solve(np.ones((2, 2)))


def test_diag_parameter_rejects_off_diagonal_entries():
    y, D = cp.Variable(2), cp.Parameter((2, 2), diag=True)
    program = ci.compile(cp.Problem(cp.Minimize(cp.sum_squares(D @ y - 1))), [D], [y])
    with pytest.raises(ci.ParameterError, match=r"diag=True .* off-diagonal"):
        program.solve(np.array([[1.0, 2.0], [3.0, 4.0]]))
    np.testing.assert_allclose(program.solve(np.diag([1.0, 4.0])).values[0], [1.0, 0.25])


def test_output_that_is_not_in_the_problem_is_typed(regression):
    prob, A, b, _, _ = regression
    with pytest.raises(ci.OutputError, match=r"variables\[0\].*shape \(2,\)"):
        ci.compile(prob, [A, b], [cp.Variable(2)])
    assert issubclass(ci.OutputError, ValueError)


def test_dual_variables_in_cvxpylayers_spelling(regression, rng):
    prob, A, b, z, con = regression
    values = rng.standard_normal((5, 3)), rng.standard_normal(5)
    via_dual_var = ci.compile(prob, [A, b], [z, con.dual_variables[0]]).solve(*values).values
    via_constraint = ci.compile(prob, [A, b], [z, con]).solve(*values).values
    for a, c in zip(via_dual_var, via_constraint):
        np.testing.assert_allclose(a, c, atol=1e-12)


def test_non_dcp_has_its_own_error_and_non_dpp_names_the_part(regression):
    _, A, b, z, _ = regression
    with pytest.raises(ci.NonDCPError, match="not convex by the disciplined convex"):
        ci.compile(cp.Problem(cp.Maximize(cp.sum_squares(A @ z - b))), [A, b], [z])
    assert not issubclass(ci.NonDCPError, ci.NonDPPError)
    non_dpp = cp.Problem(cp.Minimize(cp.sum_squares(A @ z - b)), [(b @ b) * z >= 0])
    with pytest.raises(ci.NonDPPError) as info:
        ci.compile(non_dpp, [A, b], [z])
    msg = str(info.value)
    assert "constraints[0]" in msg and "is not DPP" in msg
    assert "subsequent solves" not in msg


def test_complex_values_are_rejected(regression):
    prob, A, b, z, _ = regression
    program = ci.compile(prob, [A, b], [z])
    with pytest.raises(ci.ParameterError, match="complex"):
        program.solve(np.ones((5, 3)) + 1j, np.ones(5))


def test_overflowing_values_are_not_called_infeasible(regression):
    prob, A, b, z, _ = regression
    program = ci.compile(prob, [A, b], [z])
    with pytest.raises(ci.ParameterError, match="overflows double precision"):
        program.solve(np.full((5, 3), 1e155), np.ones(5))


def test_iteration_limit_names_the_backend_settings(monkeypatch):
    import cvximplicit._conic as conic

    monkeypatch.setattr(conic, "_fallbacks", lambda *args: [])  # no rescue by a retry
    x, c = cp.Variable(3), cp.Parameter(3)
    prob = cp.Problem(
        cp.Minimize(c @ x + cp.sum_squares(x) + cp.norm(x, 1)), [x >= -1, cp.sum(x) == 1]
    )
    for solver, names in (
        (ci.Clarabel(max_iter=2), ("max_iter=2", "tol_gap_abs")),
        (ci.OSQP(max_iter=3), ("max_iter=3", "eps_abs")),
        (ci.SCS(max_iters=3), ("max_iters=3", "eps_abs")),
    ):
        with pytest.raises(ci.SolverFailedError) as info:
            ci.compile(prob, [c], [x], solver=solver).solve(np.array([1.0, 2.0, 3.0]))
        for name in names:
            assert name in str(info.value), (solver, str(info.value))


def test_scs_without_constraint_rows():
    x, c = cp.Variable(2), cp.Parameter(2)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x) + c @ x))
    sol = ci.compile(prob, [c], [x], solver="SCS").solve(np.array([1.0, -3.0]))
    np.testing.assert_allclose(sol.values[0], [-0.5, 1.5], atol=1e-9)
    (g,) = sol.vjp(np.ones(2))
    np.testing.assert_allclose(g, [-0.5, -0.5], atol=1e-9)


def test_torch_complex_and_second_derivatives(regression, rng):
    torch = pytest.importorskip("torch")
    from cvximplicit.torch import CvxpyLayer

    prob, A, b, z, _ = regression
    layer = CvxpyLayer(prob, [A, b], [z])
    with pytest.raises(ci.ParameterError, match="complex values"):
        layer(torch.ones(5, 3, dtype=torch.complex128), torch.ones(5, dtype=torch.float64))
    At = torch.tensor(rng.standard_normal((5, 3)), requires_grad=True)
    bt = torch.tensor(rng.standard_normal(5), requires_grad=True)
    (out,) = layer(At, bt)
    (g,) = torch.autograd.grad((out**2).sum(), At, create_graph=True)
    (g_plain,) = torch.autograd.grad((layer(At, bt)[0] ** 2).sum(), At)
    torch.testing.assert_close(g.detach(), g_plain)  # create_graph leaves values unchanged
    with pytest.raises(ci.SecondDerivativeError, match="second derivatives"):
        torch.autograd.grad(g.sum(), At)


def test_jax_complex_and_shape_errors_are_parameter_errors(regression):
    jnp = pytest.importorskip("jax.numpy")
    from cvximplicit.jax import CvxpyLayer

    prob, A, b, z, _ = regression
    layer = CvxpyLayer(prob, [A, b], [z])
    with pytest.raises(ci.ParameterError, match="complex"):
        layer(jnp.ones((5, 3), dtype=jnp.complex64), jnp.ones(5))
    with pytest.raises(ci.ParameterError, match="expected shape"):
        layer(jnp.ones((5, 2)), jnp.ones(5))


def test_solver_settings_are_checked_when_built_and_cvxpylayers_names_translated():
    x, b = cp.Variable(2), cp.Parameter(2)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x - b)), [x >= 0])
    with pytest.raises(ci.SolverSettingsError, match=r"no setting 'bogus'.*tol_gap_abs"):
        ci.compile(prob, [b], [x], solver_args={"bogus": 1})
    with pytest.raises(ci.SolverSettingsError, match="eps_abs"):
        ci.SCS(eps_absolute=1e-9)
    documented = {"eps": 1e-8, "max_iters": 10000, "acceleration_lookback": 0}
    for solver, expect in (
        ("CLARABEL", {"tol_gap_abs": 1e-8, "tol_feas": 1e-8, "max_iter": 10000}),
        ("SCS", {"eps_abs": 1e-8, "eps_rel": 1e-8, "max_iters": 10000}),
    ):
        with pytest.warns(UserWarning, match="translated"):
            program = ci.compile(prob, [b], [x], solver=solver, solver_args=documented)
        for key, value in expect.items():
            assert program.solver.settings[key] == value
        np.testing.assert_allclose(
            program.solve(np.array([1.0, -1.0])).values[0], [1, 0], atol=1e-9
        )


def test_torch_layer_checks_solver_args_at_construction():
    pytest.importorskip("torch")
    from cvximplicit.torch import CvxpyLayer

    x, b = cp.Variable(2), cp.Parameter(2)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x - b)), [x >= 0])
    with pytest.raises(ci.SolverSettingsError):
        CvxpyLayer(prob, [b], [x], solver_args={"not_a_setting": 1})


def test_batch_shape_is_the_adapters_one_validation(regression):
    """`Program.batch_shape` validates NumPy, PyTorch and JAX values alike (the adapters'
    only validation) and `flatten_batch` lays any leading shape out for `solve_batch`."""
    prob, A, b, z, _ = regression
    program = ci.compile(prob, [A, b], [z])
    assert program.batch_shape(np.ones((5, 3)), np.ones(5)) == ()
    assert program.batch_shape(np.ones((2, 4, 5, 3)), np.ones((4, 5))) == (2, 4)
    flat = program.flatten_batch([np.ones((2, 4, 5, 3)), np.arange(20.0).reshape(4, 5)], (2, 4))
    assert [f.shape for f in flat] == [(8, 5, 3), (8, 5)]
    np.testing.assert_array_equal(flat[1][5], np.arange(5.0, 10.0))  # element (1, 1)
    with pytest.raises(ci.ParameterError, match=r"do not broadcast.*A \(parameters\[0\]\): \(3,\)"):
        program.batch_shape(np.ones((3, 5, 3)), np.ones((4, 5)))
    with pytest.raises(ci.ParameterError, match=r"expected shape \(5,\).*got \(4,\)"):
        program.batch_shape(np.ones((5, 3)), np.ones(4))
    with pytest.raises(ci.ParameterError, match="expected 2 parameter values"):
        program.batch_shape(np.ones((5, 3)))
    with pytest.raises(ci.ParameterError, match="real numeric"):
        program.batch_shape(np.ones((5, 3)), np.array(["a"] * 5))
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    assert program.batch_shape(torch.ones(7, 5, 3), torch.ones(5, dtype=torch.int64)) == (7,)
    assert program.batch_shape(jnp.ones((7, 5, 3), dtype=jnp.bfloat16), jnp.ones(5)) == (7,)
    with pytest.raises(ci.ParameterError, match="complex values"):
        program.batch_shape(torch.ones(5, 3, dtype=torch.complex64), torch.ones(5))
    from cvximplicit.torch import CvxpyLayer

    with pytest.raises(ci.ParameterError, match="at most one leading batch axis"):
        CvxpyLayer(program)(torch.ones(2, 4, 5, 3, dtype=torch.float64), torch.ones(5))
