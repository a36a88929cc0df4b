"""Bad input gets a typed exception that says what to change; inputs are never mutated."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import scipy.sparse as sp
from helpers import FAMILIES

import cvximplicit as ci


@pytest.fixture
def nnls():
    x = cp.Variable(3)
    A, b = cp.Parameter((4, 3)), cp.Parameter(4)
    con = x >= 0
    prob = cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b)), [con])
    return prob, A, b, x, con


def test_non_dpp_problem():
    x = cp.Variable(2)
    a, b = cp.Parameter(), cp.Parameter()
    prob = cp.Problem(cp.Minimize(cp.sum_squares(a * b * x - 1)))
    with pytest.raises(ci.NonDPPError, match="not DPP"):
        ci.compile(prob, [a, b], [x])


def test_quad_form_with_psd_parameter_is_accepted(rng):
    x, Q = cp.Variable(3), cp.Parameter((3, 3), PSD=True)
    prob = cp.Problem(cp.Minimize(cp.quad_form(x, Q) + cp.sum(x)), [x >= -1])
    program = ci.compile(prob, [Q], [x])
    L = rng.standard_normal((3, 3))
    sol = program.solve(L @ L.T + np.eye(3))
    (gQ,) = sol.vjp(np.ones(3))
    np.testing.assert_allclose(gQ, gQ.T, atol=1e-12)  # symmetric gradient convention


def test_parameter_list_errors(nnls):
    prob, A, b, x, _ = nnls
    with pytest.raises(ci.ParameterError, match="missing from `parameters`"):
        ci.compile(prob, [A], [x])
    stranger = cp.Parameter(2)
    with pytest.raises(ci.ParameterError, match="do not appear in the problem"):
        ci.compile(prob, [A, b, stranger], [x])
    with pytest.raises(ci.ParameterError, match="listed twice"):
        ci.compile(prob, [A, b, A], [x])
    with pytest.raises(ci.ParameterError, match="must be cvxpy Parameters"):
        ci.compile(prob, [A, "b"], [x])  # type: ignore[list-item]


def test_output_list_errors(nnls):
    prob, A, b, x, _ = nnls
    with pytest.raises(ci.OutputError, match=r"variables\[0\] .* not a variable of the problem"):
        ci.compile(prob, [A, b], [cp.Variable(2)])
    with pytest.raises(ci.OutputError, match="not a constraint of the problem"):
        ci.compile(prob, [A, b], [x >= 1])
    with pytest.raises(ci.OutputError, match="may hold cvxpy Variables and Constraints"):
        ci.compile(prob, [A, b], [A])
    with pytest.raises(ci.OutputError, match="empty"):
        ci.compile(prob, [A, b], [])


def test_value_errors(nnls, rng):
    prob, A, b, x, _ = nnls
    program = ci.compile(prob, [A, b], [x])
    Av, bv = rng.standard_normal((4, 3)), rng.standard_normal(4)
    with pytest.raises(ci.ParameterError, match="expected 2 parameter values"):
        program.solve(Av)
    with pytest.raises(
        ci.ParameterError, match=r"expected shape \(4,\) or \(batch, 4\), got \(5,\)"
    ):
        program.solve(Av, np.ones(5))
    bad = bv.copy()
    bad[1] = np.nan
    with pytest.raises(ci.ParameterError, match="NaN or Inf"):
        program.solve(Av, bad)
    with pytest.raises(ci.ParameterError, match="NaN or Inf"):
        program.solve(Av, np.full(4, np.inf))
    with pytest.raises(ci.ParameterError, match="complex values"):
        program.solve(Av, bv.astype(complex))
    with pytest.raises(ci.ParameterError, match="real numeric"):
        program.solve(Av, np.array(["a"] * 4))
    # ints and float32 are accepted and computed in float64
    sol = program.solve(Av.astype(np.float32), np.arange(4))
    assert sol.values[0].dtype == np.float64


def test_domain_errors(rng):
    x = cp.Variable(2)
    lam = cp.Parameter(nonneg=True)
    Q = cp.Parameter((2, 2), PSD=True)
    prob = cp.Problem(cp.Minimize(cp.quad_form(x, Q) + lam * cp.norm1(x) - cp.sum(x)))
    program = ci.compile(prob, [lam, Q], [x])
    with pytest.raises(ci.ParameterError, match="nonneg"):
        program.solve(-1.0, np.eye(2))
    with pytest.raises(ci.ParameterError, match="PSD"):
        program.solve(1.0, np.diag([1.0, -1.0]))


def test_infeasible_unbounded_and_failed():
    x, b = cp.Variable(2), cp.Parameter(2)
    prob = cp.Problem(cp.Minimize(cp.sum(x)), [x >= b, x <= b - 1])
    program = ci.compile(prob, [b], [x])
    with pytest.raises(ci.InfeasibleError, match="infeasible") as info:
        program.solve(np.zeros(2))
    assert info.value.status is ci.SolverStatus.INFEASIBLE
    assert isinstance(info.value, ci.SolverError) and isinstance(info.value, RuntimeError)

    c = cp.Parameter(2)
    unbounded = ci.compile(cp.Problem(cp.Minimize(c @ x), [x >= 0]), [c], [x])
    with pytest.raises(ci.UnboundedError, match="unbounded"):
        unbounded.solve(np.array([-1.0, 1.0]))

    family = FAMILIES["socp"](np.random.default_rng(0))
    stingy = ci.compile(
        family.problem,
        family.parameters,
        family.variables,
        solver=ci.Clarabel(max_iter=1),
        polish=False,
    )
    with pytest.raises(ci.SolverFailedError, match="stopped without converging"):
        stingy.solve(*family.values)


def test_incomplete_solve_rescued_by_polishing():
    """A solve stopped early is accepted (with a warning) when polishing makes it exact."""
    family = FAMILIES["qp"](np.random.default_rng(0))
    program = ci.compile(
        family.problem, family.parameters, family.variables, solver=ci.Clarabel(max_iter=6)
    )
    sol = program.solve(*family.values)
    assert sol.info.raw_status == "MaxIterations"
    assert sol.info.status is ci.SolverStatus.INACCURATE
    assert sol.info.residual < 1e-10


def test_unsupported_problems():
    x = cp.Variable(2, integer=True)
    b = cp.Parameter(2)
    with pytest.raises(ci.UnsupportedProblemError, match="integer"):
        ci.compile(cp.Problem(cp.Minimize(cp.sum_squares(x - b))), [b], [x])
    y = cp.Variable(2)
    socp = cp.Problem(cp.Minimize(cp.norm2(y - b)))
    with pytest.raises(ci.UnsupportedProblemError, match="OSQP does not support SecondOrderCone"):
        ci.compile(socp, [b], [y], solver="OSQP")
    with pytest.raises(ci.UnsupportedProblemError, match="unknown solver"):
        ci.compile(socp, [b], [y], solver="GUROBI")


def test_bad_solver_setting():
    x, b = cp.Variable(2), cp.Parameter(2)
    program = ci.compile(cp.Problem(cp.Minimize(cp.sum_squares(x - b))), [b], [x])
    with pytest.raises(TypeError, match="no setting 'not_a_setting'"):
        program.solve(np.ones(2), solver_args={"not_a_setting": 1})


def test_cotangent_and_tangent_shape_errors(nnls, rng):
    prob, A, b, x, con = nnls
    sol = ci.compile(prob, [A, b], [x, con]).solve(rng.standard_normal((4, 3)), np.ones(4))
    with pytest.raises(ValueError, match="expected 2 cotangents"):
        sol.vjp(np.ones(3))
    with pytest.raises(ValueError, match="expected shape"):
        sol.vjp(np.ones(4), None)
    with pytest.raises(ValueError, match="expected 2 tangents"):
        sol.jvp(np.ones((4, 3)))


@pytest.mark.parametrize("name", ["qp", "socp"])
def test_inputs_are_never_mutated(name):
    family = FAMILIES[name](np.random.default_rng(5))
    before_values = [v.copy() for v in family.values]
    before_params = [p.value for p in family.parameters]
    n_constraints = len(family.problem.constraints)
    program = ci.compile(family.problem, family.parameters, family.variables)
    sol = program.solve(*family.values)
    cot = [np.ones_like(v) for v in sol.values]
    cot_before = [c.copy() for c in cot]
    sol.vjp(*cot)
    tan = [np.ones_like(v) for v in family.values]
    sol.jvp(*tan)
    program.solve_batch(*[np.stack([v, v]) for v in family.values])
    for a, b in zip(family.values, before_values):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(cot, cot_before):
        np.testing.assert_array_equal(a, b)
    assert [p.value for p in family.parameters] == before_params
    assert len(family.problem.constraints) == n_constraints
    # Returned values are fresh arrays: changing them does not change the solution.
    sol.values[0][...] = 123.0
    assert not np.allclose(program.solve(*family.values).values[0], 123.0)


@pytest.mark.parametrize("solver", ["CLARABEL", "SCS", "OSQP"])
def test_every_solver_maps_infeasible_and_unbounded(solver):
    x, b, c = cp.Variable(2), cp.Parameter(2), cp.Parameter(2)
    infeasible = ci.compile(
        cp.Problem(cp.Minimize(cp.sum(x)), [x >= b, x <= b - 1]), [b], [x], solver=solver
    )
    with pytest.raises(ci.InfeasibleError) as info:
        infeasible.solve(np.zeros(2))
    assert info.value.solver == solver
    unbounded = ci.compile(cp.Problem(cp.Minimize(c @ x), [x >= 0]), [c], [x], solver=solver)
    with pytest.raises(ci.UnboundedError):
        unbounded.solve(np.array([-1.0, 1.0]))


def test_empty_batch_and_verbose_precedence(nnls):
    prob, A, b, x, _ = nnls
    program = ci.compile(prob, [A, b], [x])
    with pytest.raises(ci.ParameterError, match="batch is empty"):
        program.solve_batch(np.zeros((0, 4, 3)), np.zeros(4))
    quiet = ci.compile(prob, [A, b], [x], verbose=True, solver_args={"verbose": False})
    assert quiet.solver.settings["verbose"] is False


@pytest.mark.parametrize("solver", ["OSQP", "SCS", "CLARABEL"])
def test_uncertified_point_is_retried_not_returned(solver):
    """A box LP whose solver point is off by 0.5 with a small residual next to a large cost
    entry: the certification retries with tight settings and returns the exact vertex."""
    x, c = cp.Variable(2), cp.Parameter(2)
    prob = cp.Problem(cp.Minimize(c @ x), [x >= -100, x <= 100])
    sol = ci.compile(prob, [c], [x], solver=solver).solve(np.array([-1e-4, 2e3]))
    np.testing.assert_allclose(sol.values[0], [100.0, -100.0], atol=1e-9)
    assert sol.info.certified and sol.info.relative_residual <= 1e-7


def test_unbounded_lp_reported_by_solver_is_not_returned():
    """Clarabel says 'Solved' with |x| ~ 7e6 at default settings; the point fails
    certification and the tight retry identifies the problem as unbounded."""
    rng = np.random.default_rng(16)
    n = int(rng.integers(2, 6))
    E, z = rng.standard_normal((2, n)), rng.standard_normal(n)
    z -= E.T @ np.linalg.lstsq(E.T, z, rcond=None)[0]
    cv = E.T @ rng.standard_normal(2) + 0.05 * z / np.linalg.norm(z)
    x, c = cp.Variable(n), cp.Parameter(n)
    prob = cp.Problem(cp.Minimize(c @ x), [E @ x == E @ rng.standard_normal(n)])
    with pytest.raises((ci.UnboundedError, ci.SolverFailedError)):
        ci.compile(prob, [c], [x]).solve(cv)


def test_tolerances_are_validated():
    with pytest.raises(ValueError, match="target <= certify <= reject"):
        ci.Tolerances(certify=1e-15)
    with pytest.raises(ValueError, match="must be >= 0"):
        ci.Tolerances(kink=-1.0)


def test_failed_solve_of_an_unbounded_lp_is_classified_by_a_certificate():
    """Clarabel stops with 'InsufficientProgress' on this equality-constrained LP (CVXPY's
    own Clarabel solve fails too); a checked ray turns the failure into UnboundedError."""
    c = np.array([-0.22463247, 0.10791536, -0.64153028])
    E, x = np.array([[0.05809628, 1.38231149, -1.66569488]]), cp.Variable(3)
    cost = cp.Parameter(3)
    prob = cp.Problem(cp.Minimize(cost @ x), [E @ x == 0.3147877])
    with pytest.raises(ci.UnboundedError, match="certificate"):
        ci.compile(prob, [cost], [x]).solve(c)


def test_certificates_are_checked_on_the_data():
    from cvximplicit._certificates import find_certificate

    def data(A, b, c):
        n = len(c)
        return ci.ConeData(
            P=sp.csc_array((n, n)), A=sp.csc_array(np.atleast_2d(A)), b=np.asarray(b), c=c
        )

    # x >= 1 and x <= 0: infeasible (Farkas y = (1, 1) up to scale)
    infeasible = find_certificate(
        data([[-1.0], [1.0]], [-1.0, 0.0], np.array([1.0])), [ci.NonnegativeCone(2)]
    )
    assert infeasible is not None and infeasible.kind == "infeasible"
    # min -x subject to x >= 0: unbounded along d = 1
    unbounded = find_certificate(data([[-1.0]], [0.0], np.array([-1.0])), [ci.NonnegativeCone(1)])
    assert unbounded is not None and unbounded.kind == "unbounded"
    # min x subject to x >= 0: solvable, no certificate of either kind
    assert find_certificate(data([[-1.0]], [0.0], np.array([1.0])), [ci.NonnegativeCone(1)]) is None
