"""The PyTorch layer: gradcheck on every family, batching, dtypes, training, compatibility."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import cvxpy as cp  # noqa: E402
from helpers import SMALL  # noqa: E402

import cvximplicit as ci  # noqa: E402
from cvximplicit.torch import CvxpyLayer  # noqa: E402


def tensors(values, requires_grad=True):
    return [torch.tensor(v, dtype=torch.float64, requires_grad=requires_grad) for v in values]


@pytest.mark.parametrize("name", list(SMALL))
def test_gradcheck_every_family(name):
    fam = ci.problems.FAMILIES[name](**SMALL[name], seed=3)
    layer = CvxpyLayer(fam.problem, fam.parameters, fam.variables)
    inputs = tensors(fam.values)
    assert torch.autograd.gradcheck(
        lambda *p: layer(*p), inputs, eps=1e-6, atol=1e-6, rtol=1e-4, check_forward_ad=True
    )


def test_gradcheck_geometric_program():
    fam = ci.problems.geometric_program(seed=1)
    layer = CvxpyLayer(fam.problem, fam.parameters, fam.variables, gp=True)
    assert torch.autograd.gradcheck(
        lambda *p: layer(*p), tensors(fam.values), atol=1e-6, rtol=1e-4, check_forward_ad=True
    )


@pytest.mark.parametrize("name", ["nnls", "qp", "socp"])
def test_batched_equals_one_by_one(name):
    fam = ci.problems.FAMILIES[name](**SMALL[name], seed=4)
    layer = CvxpyLayer(fam.problem, fam.parameters, fam.variables)
    rng = np.random.default_rng(0)
    first = np.stack(
        [fam.values[0] + 0.05 * rng.standard_normal(np.shape(fam.values[0])) for _ in range(6)]
    )
    if fam.parameters[0].attributes["PSD"]:
        first = 0.5 * (first + np.swapaxes(first, 1, 2)) + np.eye(first.shape[1])
    batched = tensors([first, *fam.values[1:]])
    outs = layer(*batched)
    loss = sum((o**2).sum() for o in outs)
    loss.backward()
    grads = [p.grad.clone() for p in batched]
    shared = [torch.zeros_like(p) for p in batched[1:]]
    for i in range(6):
        single = tensors([first[i], *fam.values[1:]])
        outs_i = layer(*single)
        for a, b in zip(outs, outs_i):
            torch.testing.assert_close(a[i], b, atol=1e-9, rtol=1e-9)
        sum((o**2).sum() for o in outs_i).backward()
        torch.testing.assert_close(grads[0][i], single[0].grad, atol=1e-9, rtol=1e-9)
        for acc, p in zip(shared, single[1:]):
            acc += p.grad
    for g, acc in zip(grads[1:], shared):
        torch.testing.assert_close(g, acc, atol=1e-9, rtol=1e-9)
    assert len(layer.last_diagnostics) == 1  # the last call was unbatched


def test_dtypes_devices_and_no_grad(monkeypatch):
    fam = ci.problems.nnls(m=6, n=4, seed=0)
    layer = CvxpyLayer(fam.problem, fam.parameters, fam.variables, polish=False, strict=True)
    A = torch.tensor(fam.values[0], dtype=torch.float32, requires_grad=True)
    b = torch.tensor(fam.values[1], dtype=torch.float32, requires_grad=True)
    x, dual = layer(A, b)
    assert x.dtype == torch.float32 and dual.dtype == torch.float32
    x.sum().backward()
    assert A.grad is not None and A.grad.dtype == torch.float32
    import cvximplicit._conic as conic

    def refuse(*args, **kwargs):
        raise AssertionError("derivative work under no_grad")

    monkeypatch.setattr(conic, "factorize", refuse)
    with torch.no_grad():
        x64, _ = layer(A.double(), b.double())
    assert x64.dtype == torch.float64 and not x64.requires_grad


def test_diagnostics_and_errors():
    x, b = cp.Variable(2), cp.Parameter(2)
    prob = cp.Problem(cp.Minimize(cp.sum(x)), [x >= b, x <= 1])
    layer = CvxpyLayer(prob, [b], [x])
    layer(torch.zeros(3, 2, dtype=torch.float64))
    assert len(layer.last_diagnostics) == 3
    assert all(d.status is ci.SolverStatus.SOLVED for d in layer.last_diagnostics)
    bad = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ci.InfeasibleError, match="batch element 1"):
        layer(bad)
    with pytest.raises(ci.ParameterError, match="NaN"):
        layer(torch.tensor([np.nan, 0.0]))


def test_training_loop_learns_a_qp_layer():
    """Learn the linear term of a box-constrained QP layer from input/output pairs."""
    torch.manual_seed(0)
    n = 4
    x, q, z = cp.Variable(n), cp.Parameter(n), cp.Parameter(n)
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - z) + q @ x), [x >= -1, x <= 1])
    layer = CvxpyLayer(prob, [q, z], [x])
    q_true = torch.tensor([0.5, -0.3, 0.2, -0.8], dtype=torch.float64)
    Z = 1.5 * torch.randn(24, n, dtype=torch.float64)
    with torch.no_grad():
        (target,) = layer(q_true, Z)
    q_hat = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([q_hat], lr=0.1)
    losses = []
    for _ in range(50):
        opt.zero_grad()
        (pred,) = layer(q_hat, Z)
        loss = ((pred - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 100
    torch.testing.assert_close(q_hat.detach(), q_true, atol=5e-2, rtol=0)


def test_cvxpylayers_compatible_call():
    """The cvxpylayers 1.x constructor and call, unchanged (keyword names included)."""
    fam = ci.problems.nnls(m=6, n=4, seed=2)
    layer = CvxpyLayer(
        fam.problem,
        parameters=fam.parameters,
        variables=fam.variables[:1],
        solver="SCS",
        gp=False,
        verbose=False,
        canon_backend=None,
        solver_args={"eps_abs": 1e-8},
    )
    (x,) = layer(*tensors(fam.values), solver_args={"eps_rel": 1e-8})
    assert x.shape == (4,)


@pytest.mark.parametrize("blocked,module", [("jax", "cvximplicit.torch"), ("torch", "cvximplicit")])
def test_works_without_the_other_framework(blocked, module):
    # A meta-path hook makes the framework impossible to import, as if it were not installed.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] == {blocked!r}:\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np, cvxpy as cp, cvximplicit as ci\n"
        f"import {module}\n"
        "x, b = cp.Variable(2), cp.Parameter(2)\n"
        "p = ci.compile(cp.Problem(cp.Minimize(cp.sum_squares(x - b)), [x >= 0]), [b], [x])\n"
        "print(p.solve(np.array([1.0, -1.0])).vjp(np.ones(2))[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "[1. 0.]" in out.stdout


def test_on_failure_nan_is_forwarded_to_the_core_batch():
    x, b = cp.Variable(2), cp.Parameter(2)
    prob = cp.Problem(cp.Minimize(cp.sum(x)), [x >= b, x <= 1])
    layer = CvxpyLayer(prob, [b], [x], on_failure="nan")
    values = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 0.5]], dtype=torch.float64)
    values.requires_grad_(True)
    (out,) = layer(values)
    assert torch.isnan(out[1]).all() and torch.isfinite(out[[0, 2]]).all()
    out[[0, 2]].sum().backward()
    assert values.grad is not None and torch.all(values.grad[1] == 0)
    assert list(layer.last_solution.ok) == [True, False, True]


def test_torch_func_transformations():
    """torch.func.vmap maps onto the batched solve; jacrev and jacfwd give the same exact
    Jacobian; second derivatives and nested transforms say what is not provided."""
    fam = ci.problems.qp(n=4, p=3, q=1, seed=0)
    layer = CvxpyLayer(fam.problem, fam.parameters, fam.variables)
    Q, c, h, g = (torch.tensor(v) for v in fam.values)  # float64 from numpy
    noise = torch.randn(5, c.shape[0], generator=torch.Generator().manual_seed(0))
    C = c + 0.1 * noise.double()
    mapped = torch.func.vmap(lambda ci_: layer(Q, ci_, h, g)[0])(C)
    batched = layer(Q, C, h, g)[0]
    torch.testing.assert_close(mapped, batched, rtol=1e-10, atol=1e-12)
    f = lambda ci_: layer(Q, ci_, h, g)[0]  # noqa: E731
    rev, fwd = torch.func.jacrev(f)(c), torch.func.jacfwd(f)(c)
    torch.testing.assert_close(rev, fwd, rtol=1e-9, atol=1e-11)
    sol = layer.program.solve(*fam.values)
    column = sol.jvp(None, np.eye(c.shape[0])[0], None, None)[0]
    np.testing.assert_allclose(rev[:, 0].numpy(), column, atol=1e-10)
    with pytest.raises(ci.SecondDerivativeError):
        torch.func.hessian(lambda ci_: f(ci_).sum())(c)
    with pytest.raises(NotImplementedError, match="batched"):
        torch.func.vmap(torch.func.jacrev(f))(C)


def test_to_a_device_says_what_happens():
    fam = ci.problems.nnls(m=4, n=3, seed=0)
    layer = CvxpyLayer(fam.problem, fam.parameters, fam.variables)
    with pytest.warns(UserWarning, match="moves nothing"):
        assert layer.to("cuda") is layer
    assert layer.to(torch.float64) is layer  # dtype moves are silent no-ops
    assert "solver_args" in (CvxpyLayer.__init__.__doc__ or "")


def test_layers_from_a_compiled_program():
    fam = ci.problems.nnls(m=5, n=3, seed=1)
    program = ci.compile(fam.problem, fam.parameters, fam.variables)
    layer = CvxpyLayer(program)
    assert layer.program is program
    params = [torch.tensor(v) for v in fam.values]
    np.testing.assert_allclose(layer(*params)[0].numpy(), program.solve(*fam.values).values[0])
    with pytest.raises(ci.ParameterError, match="omit `parameters`"):
        CvxpyLayer(program, fam.parameters, fam.variables)
    with pytest.raises(ci.ParameterError, match="needs `parameters`"):
        CvxpyLayer(fam.problem)
    jax_layer = pytest.importorskip("cvximplicit.jax").CvxpyLayer(program)
    assert jax_layer.program is program
