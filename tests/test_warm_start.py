"""Warm starts: Newton from the previous solution, exact and certified, or a cold solve."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from helpers import FAMILIES

import cvximplicit as ci


def _perturbed(family, scale, rng):
    out = []
    for p, v in zip(family.parameters, family.values):
        w = np.asarray(v, dtype=float) + scale * np.abs(v).mean() * rng.standard_normal(np.shape(v))
        if p.attributes["PSD"] or p.attributes["symmetric"]:
            w = 0.5 * (w + w.T) + (scale * np.eye(w.shape[0]) if p.attributes["PSD"] else 0)
        if p.attributes["nonneg"] or p.attributes["pos"]:
            w = np.abs(w)
        out.append(w)
    return out


def _assert_same(a: ci.Solution, b: ci.Solution, rng) -> None:
    for u, v in zip(a.values, b.values):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-10)
    cot = [rng.standard_normal(np.shape(v)) for v in a.values]
    for u, v in zip(a.vjp(*cot), b.vjp(*cot)):
        np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_small_steps_are_warm_and_equal_the_cold_path(name, rng):
    family = FAMILIES[name](np.random.default_rng(2))
    program = ci.compile(family.problem, family.parameters, family.variables)
    previous = program.solve(*family.values)
    values = _perturbed(family, 1e-5, rng)
    warm = program.solve(*values, warm_start=previous)
    cold = program.solve(*values)
    assert warm.info.start == "warm", warm.info.start_reason
    assert warm.info.certified and warm.info.relative_residual <= 1e-13
    assert cold.info.start == "cold" and cold.info.start_reason == ""
    _assert_same(warm, cold, rng)


@pytest.mark.parametrize("name", ["qp", "lp_box", "nnls"])
def test_polyhedral_warm_start_is_one_newton_step(name, rng):
    family = FAMILIES[name](np.random.default_rng(3))
    program = ci.compile(family.problem, family.parameters, family.variables)
    previous = program.solve(*family.values)
    warm = program.solve(*_perturbed(family, 1e-6, rng), warm_start=previous)
    assert warm.info.start == "warm" and warm.info.polish_steps <= 1


def test_large_jump_falls_back_cold_and_says_why(rng):
    family = FAMILIES["lp_box"](np.random.default_rng(4))
    program = ci.compile(family.problem, family.parameters, family.variables)
    previous = program.solve(*family.values)
    values = [-3.0 * np.asarray(v) + rng.standard_normal(np.shape(v)) for v in family.values]
    try:
        cold = program.solve(*values)
    except ci.SolverError:
        pytest.skip("the jump made the problem infeasible")
    sol = program.solve(*values, warm_start=previous)
    assert sol.info.start == "cold" and "previous solution" in sol.info.start_reason
    _assert_same(sol, cold, rng)


@pytest.mark.parametrize("name", ["qp", "socp", "entropy_simplex", "maxcut_sdp", "pnorm", "nnls"])
def test_large_jumps_give_the_cold_answer_on_every_cone(name, rng):
    """Whether Newton from far away is accepted or falls back, the answer is the cold one."""
    family = FAMILIES[name](np.random.default_rng(10))
    program = ci.compile(family.problem, family.parameters, family.variables)
    previous = program.solve(*family.values)
    values = _perturbed(family, 1.0, rng)  # a jump as large as the parameters themselves
    sol = program.solve(*values, warm_start=previous)
    cold = program.solve(*values)
    assert sol.info.start == "cold" or sol.info.relative_residual <= 1e-13
    if sol.info.start == "cold":
        assert sol.info.start_reason
    _assert_same(sol, cold, rng)


def test_warm_start_needs_the_target_within_its_step_budget(rng):
    """Never a wrong answer: with no Newton steps allowed only an exact point is accepted."""
    family = FAMILIES["qp"](np.random.default_rng(5))
    strict = ci.Tolerances(warm_max_iter=0)
    program = ci.compile(family.problem, family.parameters, family.variables, tolerances=strict)
    previous = program.solve(*family.values)
    moved = program.solve(*_perturbed(family, 1e-3, rng), warm_start=previous)
    assert moved.info.start == "cold"
    same = program.solve(*[np.asarray(v) for v in family.values], warm_start=previous)
    assert same.info.start == ("warm" if previous.info.polish == "converged" else "cold")


@pytest.mark.parametrize("solver", ["SCS", "OSQP", "MOREAU"])
def test_every_backend_warm_starts(solver, rng):
    if solver == "MOREAU":
        pytest.importorskip("moreau")
    family = FAMILIES["qp"](np.random.default_rng(6))
    program = ci.compile(family.problem, family.parameters, family.variables, solver=solver)
    previous = program.solve(*family.values)
    values = _perturbed(family, 1e-5, rng)
    warm = program.solve(*values, warm_start=previous)
    assert warm.info.start == "warm"
    _assert_same(warm, program.solve(*values), rng)


@pytest.mark.parametrize("name", ["qp", "socp", "entropy_simplex", "maxcut_sdp"])
def test_batch_warm_start_equals_cold(name, rng):
    family = FAMILIES[name](np.random.default_rng(7))
    program = ci.compile(family.problem, family.parameters, family.variables)
    first = np.stack([_perturbed(family, 1e-2, rng)[0] for _ in range(4)])
    values = [first, *family.values[1:]]
    previous = program.solve_batch(*values)
    moved = [first + 1e-6 * rng.standard_normal(first.shape), *family.values[1:]]
    if family.parameters[0].attributes["PSD"]:
        moved[0] = 0.5 * (moved[0] + np.swapaxes(moved[0], 1, 2))
    warm = program.solve_batch(*moved, warm_start=previous)
    cold = program.solve_batch(*moved)
    assert all(d is not None and d.start == "warm" for d in warm.diagnostics)
    for u, v in zip(warm.values, cold.values):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-10)
    cot = [rng.standard_normal(v.shape) for v in warm.values]
    for u, v in zip(warm.vjp(*cot), cold.vjp(*cot)):
        np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-10)
    # a different batch size: every element is solved cold, and says why
    three = program.solve_batch(moved[0][:3], *moved[1:], warm_start=previous)
    assert all(d is not None and d.start == "cold" for d in three.diagnostics)
    assert all("batch size changed" in d.start_reason for d in three.diagnostics if d)


def test_batch_warm_start_mixes_warm_and_cold_elements(rng):
    x, b = cp.Variable(3), cp.Parameter(3)
    program = ci.compile(cp.Problem(cp.Minimize(cp.sum_squares(x - b)), [x >= 0]), [b], [x])
    previous = program.solve_batch(np.array([[1.0, -1.0, 2.0], [0.5, 0.5, -3.0]]))
    moved = np.array([[1.0 + 1e-6, -1.0, 2.0], [-0.5, 0.5, 3.0]])  # element 1 changes face
    warm = program.solve_batch(moved, warm_start=previous)
    np.testing.assert_allclose(warm.values[0], np.maximum(moved, 0.0), atol=1e-12)
    (grad,) = warm.vjp(np.ones((2, 3)))
    np.testing.assert_allclose(grad, (moved > 0).astype(float), atol=1e-12)
    assert warm.diagnostics[0].start == "warm"


def test_warm_start_from_another_program_is_rejected():
    family = FAMILIES["qp"](np.random.default_rng(8))
    one = ci.compile(family.problem, family.parameters, family.variables)
    two = ci.compile(family.problem, family.parameters, family.variables)
    with pytest.raises(ci.ParameterError, match="warm_start"):
        two.solve(*family.values, warm_start=one.solve(*family.values))


def test_torch_layer_warm_start_loop(rng):
    torch = pytest.importorskip("torch")
    from cvximplicit.torch import CvxpyLayer

    family = FAMILIES["qp"](np.random.default_rng(9))
    warm_layer = CvxpyLayer(family.problem, family.parameters, family.variables, warm_start=True)
    cold_layer = CvxpyLayer(family.problem, family.parameters, family.variables)
    first = np.stack([family.values[0]] * 3)
    for step in range(3):
        values = [first + 1e-4 * step, *family.values[1:]]
        grads = []
        for layer in (warm_layer, cold_layer):
            params = [torch.tensor(v, requires_grad=True) for v in values]
            outs = layer(*params)
            sum(o.sum() for o in outs).backward()
            grads.append([p.grad for p in params])
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
        starts = {d.start for d in warm_layer.last_diagnostics}
        assert starts == ({"cold"} if step == 0 else {"warm"})


def test_jax_layer_warm_start(rng):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from cvximplicit.jax import CvxpyLayer

    x, b = cp.Variable(3), cp.Parameter(3)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x - b)), [x >= 0])
    layer = CvxpyLayer(prob, [b], [x], warm_start=True)
    base = jnp.array([[1.0, -1.0, 2.0], [0.5, 0.5, -3.0]])
    layer(base)
    (out,) = layer(base + 1e-6)
    np.testing.assert_allclose(np.asarray(out), np.maximum(np.asarray(base) + 1e-6, 0), atol=1e-12)
    assert {d.start for d in layer.last_diagnostics} == {"warm"}


def test_layer_pauses_warm_starts_that_do_not_pay(rng):
    torch = pytest.importorskip("torch")
    from cvximplicit.torch import CvxpyLayer

    x, b = cp.Variable(3), cp.Parameter(3)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x - b)), [x >= 0])
    layer = CvxpyLayer(prob, [b], [x], warm_start=True)
    sign = 1.0
    starts, reasons = [], []
    for _ in range(7):  # every call flips the active set: warm starts cannot converge
        sign = -sign
        layer(torch.tensor(sign * np.array([[1.0, -2.0, 3.0], [-1.0, 2.0, -3.0]])))
        starts.append({d.start for d in layer.last_diagnostics})
        reasons.append(layer.last_diagnostics[0].start_reason)
    assert starts == [{"cold"}] * 7
    assert reasons[0] == ""  # nothing to start from
    tried = [i for i, r in enumerate(reasons) if "Newton" in r]
    paused = [i for i, r in enumerate(reasons) if "paused" in r]
    # a few failed attempts lower the running success rate below one half, then a pause
    assert tried[:4] == [1, 2, 3, 4] and paused and paused[0] == 5
