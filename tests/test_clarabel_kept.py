"""The kept Clarabel solver: data updated in place, only what changed, gives the solves of a
fresh solver."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import FAMILIES, flat

import cvximplicit as ci


def _values(family, rng, count):
    """Perturbed parameter values (PSD ones by adding a PSD matrix)."""
    out = []
    for _ in range(count):
        values = []
        for p, v in zip(family.parameters, family.values):
            step = rng.standard_normal(np.shape(v))
            values.append(v + 0.05 * (step @ step.T if p.attributes["PSD"] else step))
        out.append(values)
    return out


# nnls and qp: a parameter in A / in P; lp_box, entropy_simplex and nearest_correlation:
# constant A and P (only b and c change, so the kept solver keeps its matrices)
@pytest.mark.parametrize("name", ["nnls", "qp", "lp_box", "entropy_simplex", "nearest_correlation"])
def test_kept_solver_equals_fresh_solver(name, rng):
    family = FAMILIES[name](rng)
    kept = ci.compile(family.problem, family.parameters, family.variables)
    fresh = ci.compile(
        family.problem, family.parameters, family.variables, solver=ci.Clarabel(keep=False)
    )
    values = _values(family, rng, 3)
    runs = [values[0], values[1], values[0], values[2], values[2]]
    solutions = [kept.solve(*v) for v in runs]
    for v, sol in zip(runs, solutions):
        reference = fresh.solve(*v)
        np.testing.assert_allclose(flat(sol.values), flat(reference.values), rtol=1e-8, atol=1e-9)
        # the solver's own point (polishing would repair a solve of stale data)
        before, fresh_before = (
            sol.info.residual_before_polish,
            reference.info.residual_before_polish,
        )
        assert before <= 10 * fresh_before + 1e-10, (before, fresh_before)
    # the same data gives the same solver run (up to rounding), whatever was solved between
    for i, j in ((0, 2), (3, 4)):
        assert solutions[i].info.iterations == solutions[j].info.iterations
        np.testing.assert_allclose(
            flat(solutions[i].values), flat(solutions[j].values), rtol=1e-12, atol=1e-13
        )
