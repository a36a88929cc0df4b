"""Batched solves equal one-by-one solves, with any executor, and name failing elements."""

from __future__ import annotations

import os
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

import cvxpy as cp
import numpy as np
import pytest
from helpers import FAMILIES

import cvximplicit as ci


class SerialExecutor(Executor):
    """A minimal third-party executor: runs each task at submission."""

    def __init__(self) -> None:
        self.calls = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        self.calls += 1
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def _batch(family, size, rng):
    """Batch the first parameter, share the rest."""
    first = np.stack(
        [
            family.values[0] + 0.05 * rng.standard_normal(np.shape(family.values[0]))
            for _ in range(size)
        ]
    )
    if family.parameters[0].attributes["PSD"]:
        first = 0.5 * (first + np.swapaxes(first, 1, 2)) + np.eye(first.shape[1])
    return [first, *family.values[1:]]


@pytest.mark.parametrize("executor", [None, "threads", "serial"])
@pytest.mark.parametrize("name", ["nnls", "qp", "socp"])
def test_batch_equals_loop(name, executor, rng):
    family = FAMILIES[name](np.random.default_rng(3))
    program = ci.compile(family.problem, family.parameters, family.variables)
    values = _batch(family, 5, rng)
    ex = {"threads": ThreadPoolExecutor(2), "serial": SerialExecutor(), None: None}[executor]
    batch = program.solve_batch(*values, executor=ex)
    assert len(batch) == 5
    cot = [rng.standard_normal(np.shape(v)) for v in batch.values[0:1]] + [
        None for _ in batch.values[1:]
    ]
    grads = batch.vjp(*cot)
    tan = [rng.standard_normal(np.shape(v)) for v in values]
    jvps = batch.jvp(*tan)
    summed = [np.zeros(np.shape(v)) for v in family.values[1:]]
    for i in range(5):
        single = program.solve(values[0][i], *values[1:])
        for a, b in zip(batch.values, single.values):
            np.testing.assert_allclose(a[i], b, atol=1e-10)
        g = single.vjp(cot[0][i], *cot[1:])
        np.testing.assert_allclose(grads[0][i], g[0], atol=1e-10)
        for acc, gk in zip(summed, g[1:]):
            acc += gk
        j = single.jvp(tan[0][i], *tan[1:])
        for a, b in zip(jvps, j):
            np.testing.assert_allclose(a[i], b, atol=1e-10)
    # shared parameters get the gradient summed over the batch
    for a, b in zip(grads[1:], summed):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-10)
    if executor == "serial":  # one vectorised chunk per CPU, each run by the executor
        assert ex.calls == min(5, os.cpu_count() or 1)


def test_process_pool_executor():
    family = FAMILIES["nnls"](np.random.default_rng(3))
    program = ci.compile(family.problem, family.parameters, family.variables)
    values = _batch(family, 3, np.random.default_rng(0))
    with ProcessPoolExecutor(2) as pool:
        batch = program.solve_batch(*values, executor=pool)
    local = program.solve_batch(*values)
    for a, b in zip(batch.values, local.values):
        np.testing.assert_allclose(a, b, atol=1e-12)
    # solutions that crossed a process boundary refactorize lazily and still differentiate
    g = batch.vjp(np.ones((3, *batch.values[0].shape[1:])), None)
    h = local.vjp(np.ones((3, *local.values[0].shape[1:])), None)
    for a, b in zip(g, h):
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_batch_errors_name_the_element():
    x, b = cp.Variable(2), cp.Parameter(2)
    program = ci.compile(cp.Problem(cp.Minimize(cp.sum(x)), [x >= b, x <= 1]), [b], [x])
    values = np.array([[0.0, 0.0], [0.0, 0.5], [2.0, 0.0]])
    with pytest.raises(ci.InfeasibleError, match="batch element 2") as info:
        program.solve_batch(values)
    assert info.value.batch_index == 2
    with pytest.raises(ci.ParameterError, match="disagree on the batch size"):
        y, c = cp.Variable(2), cp.Parameter(2)
        two = ci.compile(cp.Problem(cp.Minimize(cp.sum_squares(y - b) + c @ y)), [b, c], [y])
        two.solve_batch(np.zeros((3, 2)), np.zeros((4, 2)))


def test_unbatched_call_is_a_batch_of_one():
    family = FAMILIES["lasso"](np.random.default_rng(1))
    program = ci.compile(family.problem, family.parameters, family.variables)
    batch = program.solve_batch(*family.values)
    assert len(batch) == 1
    np.testing.assert_allclose(
        batch.values[0][0], program.solve(*family.values).values[0], atol=1e-12
    )


def _check_batch_against_loop(program, family, size, rng, atol=1e-9):
    values = _batch(family, size, rng)
    batch = program.solve_batch(*values)
    cot = [rng.standard_normal(v.shape) for v in batch.values]
    tan = [rng.standard_normal(np.shape(v)) for v in values]
    grads, jvps = batch.vjp(*cot), batch.jvp(*tan)
    for i in range(size):
        single = program.solve(values[0][i], *values[1:])
        for a, b in zip(batch.values, single.values):
            np.testing.assert_allclose(a[i], b, atol=atol)
        g = single.vjp(*[c[i] for c in cot])
        np.testing.assert_allclose(grads[0][i], g[0], atol=atol, rtol=1e-7)
        j = single.jvp(tan[0][i], *tan[1:])
        for a, b in zip(jvps, j):
            np.testing.assert_allclose(a[i], b, atol=atol, rtol=1e-7)
    return batch


@pytest.mark.parametrize(
    "name", ["lp_box", "maxcut_sdp", "entropy_simplex", "pnorm", "logistic", "socp_ball"]
)
def test_vectorised_batch_equals_loop_on_every_cone(name, rng):
    """Polishing and derivatives run vectorised across the batch, for every cone kind."""
    family = FAMILIES[name](np.random.default_rng(5))
    program = ci.compile(family.problem, family.parameters, family.variables)
    batch = _check_batch_against_loop(program, family, 4, rng)
    assert batch.ok.all() and batch._result.vectorised.all()
    assert all("batched" in (d.linear_solve or "") for d in batch.diagnostics if d)
    if name == "maxcut_sdp":  # D moved a little in the last step: the LU was refined
        assert all("refinement" in (d.linear_solve or "") for d in batch.diagnostics if d)


@pytest.mark.parametrize("name", ["lp_box", "socp"])
def test_batch_of_large_programs_runs_per_element(name, rng):
    """Above `Tolerances.batch_max_size` rows or `batch_max_nnz` entries of ``B`` (lowered
    here so small programs cross them), each element runs the single-problem path on the
    threads: values and derivatives equal one-by-one solves, and each element factorizes its
    own ``B`` (no block-diagonal or batched LU)."""
    family = FAMILIES[name](np.random.default_rng(5))
    for limits in (dict(batch_max_size=1), dict(batch_max_nnz=1)):
        tol = ci.Tolerances(**limits)
        program = ci.compile(family.problem, family.parameters, family.variables, tolerances=tol)
        assert not program._prepared.newton.batched(tol)
        batch = _check_batch_against_loop(program, family, 4, rng)
        assert batch.ok.all() and not batch._result.vectorised.any()
        assert not any("batched" in (d.linear_solve or "") for d in batch.diagnostics if d)


def test_batch_refinement_falls_back_to_exact_factorizations(rng):
    """`BatchRefined`: rows whose refinement does not converge get their own LU; solves
    equal the exact factorization's either way."""
    from cvximplicit._batch import BatchFactorization, BatchRefined

    family = FAMILIES["maxcut_sdp"](np.random.default_rng(5))
    program = ci.compile(family.problem, family.parameters, family.variables)
    values = _batch(family, 3, rng)
    batch = program.solve_batch(*values)
    layout, data = program._engine.layout(3), batch._data
    D, tol = batch._result.D, program.tolerances
    exact = BatchFactorization(layout, data, D, tol)
    R = rng.standard_normal((3, exact.N))
    for moved, falls_back in ((1e-9, False), (0.5, True)):
        near = BatchFactorization(layout, data, D + moved * rng.standard_normal(D.shape), tol)
        refined = BatchRefined(near, layout, data, D, tol)
        for transpose in (False, True):
            np.testing.assert_allclose(
                refined.solve(R, transpose), exact.solve(R, transpose), rtol=1e-9, atol=1e-11
            )
        assert (refined._exact is not None) is falls_back
        element = refined.element(1)
        assert element is not None
        np.testing.assert_allclose(element.solve(R[1]), exact.solve(R)[1], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", ["socp", "lp_box", "maxcut_sdp", "logistic"])
def test_batch_with_sparse_factorization_is_vectorised(name, rng):
    """A sparse B (forced on small programs): one SuperLU of the block-diagonal B per chunk,
    polishing and derivatives vectorised, equal to one-by-one solves; the elements' own
    factorizations (made on first use) agree with the batch's."""
    family = FAMILIES[name](np.random.default_rng(6))
    sparse = ci.Tolerances(dense_lu_limit=0, dense_fill_limit=0)
    program = ci.compile(family.problem, family.parameters, family.variables, tolerances=sparse)
    assert not program._prepared.newton.dense
    batch = _check_batch_against_loop(program, family, 3, rng)
    assert batch._result.vectorised.all()
    assert all("block-diagonal" in (d.linear_solve or "") for d in batch.diagnostics if d)
    cot = [rng.standard_normal(np.shape(v)) for v in batch.values]
    grads = batch.vjp(*cot)
    own = batch[1].vjp(*[c[1] for c in cot])
    np.testing.assert_allclose(grads[0][1], own[0], rtol=1e-9, atol=1e-11)


def test_block_sparse_lu_leaves_singular_elements_out(rng):
    """`BatchSparseLU`: elements with a singular B (two parallel active constraints: an exact
    zero pivot; a D that makes B structurally singular) are marked degenerate and get zero
    solves; the others' solves equal their own sparse LUs, and the batch's degenerate
    elements warn as one-by-one solves do."""
    import scipy.sparse.linalg as spla

    from cvximplicit._batch import BatchSparseLU
    from cvximplicit._conic import Jacobian

    x, b = cp.Variable(2), cp.Parameter(2)
    constraints = [x[0] + x[1] <= 1, 2 * x[0] + 2 * x[1] <= 2, x >= -5]
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x - b)), constraints)
    sparse = ci.Tolerances(dense_lu_limit=0, dense_fill_limit=0)
    program = ci.compile(prob, [b], [x], tolerances=sparse)
    batch = program.solve_batch(np.array([[0.0, 0.0], [2.0, 2.0], [0.1, -0.2], [3.0, 1.0]]))
    layout, data, tol = program._engine.layout(4), batch._data, program.tolerances
    np.testing.assert_array_equal(batch._result.vectorised, [True, False, True, False])
    with pytest.warns(ci.DegenerateDerivativeWarning):
        batch.vjp(np.ones((4, 2)))
    structural = batch._result.D.copy()
    structural[2] = 1.0  # every v-row of B then reads A x: more rows than x
    for D, singular in ((batch._result.D, [1, 3]), (structural, [1, 2, 3])):
        fact = BatchSparseLU(layout, data, D, tol)
        np.testing.assert_array_equal(np.flatnonzero(fact.degenerate), singular)
        R = rng.standard_normal((4, fact.N))
        for transpose in (False, True):
            Z = fact.solve(R, transpose)
            assert not Z[singular].any()
            for i in np.flatnonzero(~fact.degenerate):
                jac = Jacobian(*program._cones.pattern, D[i], program.m, program._cones.diagonal)
                own = spla.splu(layout.newton.matrix(data.element(i), jac))
                np.testing.assert_allclose(
                    Z[i], own.solve(R[i], trans="T" if transpose else "N"), rtol=1e-9
                )


def test_on_failure_nan_masks_failed_elements():
    x, b = cp.Variable(2), cp.Parameter(2)
    program = ci.compile(cp.Problem(cp.Minimize(cp.sum(x)), [x >= b, x <= 1]), [b], [x])
    values = np.array([[0.0, 0.0], [2.0, 0.5], [0.0, 0.5], [0.0, 3.0]])
    batch = program.solve_batch(values, on_failure="nan")
    np.testing.assert_array_equal(batch.ok, [True, False, True, False])
    assert isinstance(batch.errors[1], ci.InfeasibleError) and batch.errors[1].batch_index == 1
    assert batch.solutions[1] is None and batch.diagnostics[3] is None
    assert np.isnan(batch.values[0][[1, 3]]).all()
    np.testing.assert_allclose(batch.values[0][[0, 2]], [[0.0, 0.0], [0.0, 0.5]], atol=1e-9)
    (grad,) = batch.vjp(np.ones((4, 2)))
    assert np.all(np.isfinite(grad)) and np.all(grad[[1, 3]] == 0.0)
    np.testing.assert_allclose(grad[[0, 2]], [[1.0, 1.0], [1.0, 1.0]], atol=1e-9)
    (tangent,) = batch.jvp(np.ones((4, 2)))
    assert np.isnan(tangent[1]).all() and np.isfinite(tangent[0]).all()
    with pytest.raises(ci.InfeasibleError):
        batch[1]
    with pytest.raises(ValueError, match="on_failure"):
        program.solve_batch(values, on_failure="ignore")


def test_batch_derivatives_check_the_batch_length():
    family = FAMILIES["qp"](np.random.default_rng(2))
    program = ci.compile(family.problem, family.parameters, family.variables)
    batch = program.solve_batch(*_batch(family, 2, np.random.default_rng(0)))
    for size in (1, 3):
        cot = [np.ones((size, *v.shape[1:])) for v in batch.values]
        with pytest.raises(ci.ParameterError, match="batch of 2"):
            batch.vjp(*cot)
    with pytest.raises(ci.ParameterError, match="tangent"):
        batch.jvp(np.ones((3, *np.shape(family.values[0]))), *[None] * (len(family.values) - 1))


@pytest.mark.parametrize(
    "name", ["qp", "socp", "entropy_simplex", "nearest_correlation", "maxcut_sdp", "max_eigenvalue"]
)
def test_moreau_backend_matches_clarabel(rng, name):
    """Moreau's points, polished, equal Clarabel's; PSD cones included (Moreau stores them in
    Clarabel's layout, so a wrong layout would show here as uncertified points)."""
    pytest.importorskip("moreau")
    family = FAMILIES[name](np.random.default_rng(4))
    moreau = ci.compile(family.problem, family.parameters, family.variables, solver="MOREAU")
    clarabel = ci.compile(family.problem, family.parameters, family.variables)
    a, b = moreau.solve(*family.values), clarabel.solve(*family.values)
    assert a.info.solver == "MOREAU" and a.info.certified and not a.info.retried
    for u, v in zip(a.values, b.values):
        np.testing.assert_allclose(u, v, atol=1e-9)
    batch = _check_batch_against_loop(moreau, family, 4, rng)
    assert batch.diagnostics[0] is not None and batch.diagnostics[0].solver == "MOREAU"


def test_moreau_method_by_size():
    """Moreau's interior-point method is asked for from `Moreau.ipm_min_nnz` entries of ``P``
    and ``A`` (its ``auto`` choice otherwise), unless a ``solver`` setting is given; the
    settings object Moreau receives says so."""
    moreau = pytest.importorskip("moreau")
    small, large = (
        ci.Moreau()._settings_object(moreau, 1, 10),
        ci.Moreau()._settings_object(moreau, 1, ci.Moreau.ipm_min_nnz),
    )
    assert str(small.solver.value) == "auto" and str(large.solver.value) == "ipm"
    chosen = ci.Moreau(solver="active_set")._settings_object(moreau, 1, 10**6)
    assert str(chosen.solver.value) == "active_set"


def test_variables_on_a_bound_are_exactly_on_it():
    """Sparsemax: entries on the face p >= 0 are returned as exact zeros (not -1.7e-15), on
    the single and the batched path, so p > 0 counts the support."""
    n = 12
    z, p = cp.Parameter(n), cp.Variable(n)
    program = ci.compile(
        cp.Problem(cp.Minimize(cp.sum_squares(p - z)), [p >= 0, cp.sum(p) == 1]), [z], [p]
    )
    rng = np.random.default_rng(0)
    values = rng.standard_normal((16, n))
    batched = program.solve_batch(values).values[0]
    for i, v in enumerate(values):
        single = program.solve(v).values[0]
        expected = np.maximum(v - _sparsemax_threshold(v), 0.0)
        for out in (single, batched[i]):
            assert np.all(out >= 0.0)
            np.testing.assert_array_equal(out > 0, expected > 0)
            np.testing.assert_allclose(out, expected, atol=1e-12)


def _sparsemax_threshold(v):
    s = np.sort(v)[::-1]
    k = np.arange(1, v.size + 1)
    support = 1 + k * s > np.cumsum(s)
    kmax = k[support][-1]
    return (np.cumsum(s)[kmax - 1] - 1) / kmax


def test_patched_factorizations_solve_each_row_with_its_latest(rng):
    """`PatchedLU`: rows refactorized at a later polishing step are solved with their new
    factorization, the others with the first; parts that own no row any more are dropped,
    and `element()` and `degenerate` follow the owner."""
    from cvximplicit._batch import BatchFactorization, PatchedLU, batch_factorize

    family = FAMILIES["maxcut_sdp"](np.random.default_rng(5))
    program = ci.compile(family.problem, family.parameters, family.variables)
    batch = program.solve_batch(*_batch(family, 4, rng))
    layout, data, tol = program._engine.layout(4), batch._data, program.tolerances
    D = batch._result.D
    moved = D + 1e-3 * rng.standard_normal(D.shape)
    patched = PatchedLU(4, layout.newton.size)
    patched.put(batch_factorize(layout, data, D, tol), np.arange(4))
    rows = np.array([1, 3])
    patched.put(BatchFactorization(layout, data.take(rows), moved[rows], tol), rows)
    expected = np.where(np.isin(np.arange(4), rows)[:, None], moved, D)
    exact = BatchFactorization(layout, data, expected, tol)
    R = rng.standard_normal((4, exact.N))
    for transpose in (False, True):
        np.testing.assert_allclose(
            patched.solve(R, transpose), exact.solve(R, transpose), rtol=1e-10, atol=1e-12
        )
    element = patched.element(3)
    assert element is not None
    np.testing.assert_allclose(element.solve(R[3]), exact.solve(R)[3], rtol=1e-10, atol=1e-12)
    patched.put(
        BatchFactorization(layout, data.take(np.array([0, 2])), D[[0, 2]], tol), np.array([0, 2])
    )
    assert len(patched._parts) == 2 and not patched.degenerate.any()
    np.testing.assert_allclose(patched.solve(R), exact.solve(R), rtol=1e-10, atol=1e-12)


def test_projections_of_a_few_rows_equal_the_whole_batch(rng):
    """`BatchLayout.project_dual_rows` (the line search's stragglers) projects just those rows
    and keeps the others: equal to projecting the whole batch, for every cone kind."""
    family = ci.problems.FAMILIES["pnorm"](m=8, n=3, seed=1)
    program = ci.compile(family.problem, family.parameters, family.variables)
    layout = program._engine.layout(6)
    V = rng.standard_normal((6, program.m))
    Y = layout.project_dual(V)
    moved = V.copy()
    rows = np.array([1, 4])
    moved[rows] += rng.standard_normal((2, program.m))
    np.testing.assert_array_equal(
        layout.project_dual_rows(moved, rows, Y), layout.project_dual(moved)
    )
