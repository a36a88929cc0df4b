"""Defects the fuzz suite found, kept as regression tests (reproducers from its output)."""

from __future__ import annotations

import numpy as np
import pytest
from generator import make_case

import cvximplicit as ci


def _program(case):
    return ci.compile(case.problem, case.parameters, case.outputs)


def test_feasible_badly_scaled_problem_is_not_called_infeasible():
    """Clarabel at its default tolerances said 'PrimalInfeasible' (a PSD block, a quad_form
    and equalities with data scaled over 1e-4..1e4); its tight retry solves it."""
    case = make_case("scaled", seed=1, index=192)
    sol = _program(case).solve(*case.values)
    assert sol.diagnostics.retried and sol.diagnostics.certified
    assert np.all(np.isfinite(np.concatenate([np.ravel(v) for v in sol.values])))


@pytest.mark.parametrize("index", [1, 36, 107, 154, 180, 186, 218])
def test_diverging_unbounded_solves_raise_unbounded_without_overflow(index):
    """The solver's iterates reached ~1e160 (residual norms overflowed); now the failed
    solve is classified by a checked certificate."""
    case = make_case("unbounded", seed=1, index=index)
    with pytest.raises(ci.UnboundedError):
        _program(case).solve(*case.values)
