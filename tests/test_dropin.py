"""cvxpylayers' README snippets, run with only the import changed (issue 14, drop-in).

Each snippet is executed twice from the same source text: once with ``cvxpylayers`` and
once with ``cvximplicit`` imported instead; solutions agree to the peer's accuracy and our
gradients equal central differences.  Skips where cvxpylayers is not installed.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("cvxpylayers")

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
    pytest.importorskip("jax")
    theirs, ours = _run(JAX_README, False), _run(JAX_README, True)
    np.testing.assert_allclose(
        np.asarray(ours["solution"]), np.asarray(theirs["solution"]), atol=1e-4
    )
    np.testing.assert_allclose(np.asarray(ours["gradb"]), np.asarray(theirs["gradb"]), atol=1e-3)
