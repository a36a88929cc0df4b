"""Spreading a batch over a Dask cluster gives the same results as the local path."""

from __future__ import annotations

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import cvximplicit as ci  # noqa: E402


def test_dask_local_cluster_matches_local_batch():
    fam = ci.problems.socp(m=8, n=4, seed=0)
    program = ci.compile(fam.problem, fam.parameters, fam.variables)
    rng = np.random.default_rng(0)
    A = fam.values[0] + 0.1 * rng.standard_normal((12, *fam.values[0].shape))
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = program.solve_batch(A, *fam.values[1:], executor=client.get_executor())
    local = program.solve_batch(A, *fam.values[1:])
    for a, b in zip(remote.values, local.values):
        np.testing.assert_allclose(a, b, atol=1e-12)
    cot = [np.ones_like(v) for v in local.values]
    for a, b in zip(remote.vjp(*cot), local.vjp(*cot)):
        np.testing.assert_allclose(a, b, atol=1e-10)
    assert all(d.status is ci.SolverStatus.SOLVED for d in remote.diagnostics)
