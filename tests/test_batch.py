"""Batched solves equal one-by-one solves, with any executor, and name failing elements."""

from __future__ import annotations

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
    if executor == "serial":
        assert ex.calls == 5


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
