"""Thread safety: concurrent calls of one Program or layer equal sequential calls."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import FAMILIES, flat

import cvximplicit as ci


def _sequential_and_concurrent(run, values, workers):
    """Pairs (sequential result, result of the same call made from a thread pool)."""
    sequential = [run(v) for v in values]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        concurrent = list(pool.map(run, values))
    return zip(sequential, concurrent)


@pytest.mark.parametrize("name", ["qp", "socp", "logistic", "nearest_correlation"])
def test_concurrent_program_calls_equal_sequential(name, rng):
    family = FAMILIES[name](rng)
    program = ci.compile(family.problem, family.parameters, family.variables)
    values = [
        [
            v + 1e-2 * rng.standard_normal(np.shape(v)) * (not p.attributes["PSD"])
            for p, v in zip(family.parameters, family.values)
        ]
        for _ in range(24)
    ]

    def run(vals):
        sol = program.solve(*vals)
        return flat(sol.values), flat(sol.vjp(*[np.ones(np.shape(v)) for v in sol.values]))

    for (a, ga), (b, gb) in _sequential_and_concurrent(run, values, workers=6):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ga, gb, rtol=1e-8, atol=1e-10)


def test_concurrent_torch_layer_calls_equal_sequential(rng):
    torch = pytest.importorskip("torch")
    from cvximplicit.torch import CvxpyLayer

    family = FAMILIES["qp"](rng)
    layer = CvxpyLayer(family.problem, family.parameters, family.variables)
    values = [
        [v + 1e-2 * rng.standard_normal(np.shape(v)) for v in family.values] for _ in range(16)
    ]

    def run(vals):
        params = [torch.tensor(v, requires_grad=True) for v in vals]
        outs = layer(*params)
        sum(o.sum() for o in outs).backward()
        return torch.cat([o.detach().ravel() for o in outs]), torch.cat(
            [p.grad.ravel() for p in params]
        )

    for (a, ga), (b, gb) in _sequential_and_concurrent(run, values, workers=4):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(ga, gb, rtol=1e-8, atol=1e-10)


def test_pattern_found_before_its_rank_is_known():
    """A pattern record that another thread registered but has not ranked yet (the window
    between the two steps) gets its rank computed by the thread that finds it, instead of
    failing (seen as "the structural rank of this pattern is not known yet" in batches of
    32 NNLS problems cut into chunks on two threads)."""
    from scipy.sparse.csgraph import structural_rank

    from cvximplicit.problems import FAMILIES as SIZED

    family = SIZED["nnls"](m=150, n=100, seed=0)  # 500 rows: a sparse B
    program = ci.compile(family.problem, family.parameters, family.variables)
    structure = program._prepared.newton
    assert not structure.dense
    keep = np.ones(structure._nnz, dtype=bool)
    B = structure._blocks(keep[None].astype(np.float64))
    record = structure._patterns(B, np.packbits(keep).tobytes())  # registered, not ranked
    assert not record.rank_known
    expected = structural_rank(B.tocsr()) == structure.size
    assert structure._nonsingular(keep) == expected
    assert structure._patterns.aliased(np.packbits(keep).tobytes()).rank_known
