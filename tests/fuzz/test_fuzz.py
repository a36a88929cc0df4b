"""Randomized problems against the oracles in ``oracles.py`` (issue 17).

The quick profile (run by ``make test`` and CI) tries a few hundred problems;
``make fuzz`` sets ``CVXIMPLICIT_FUZZ=N`` (a multiplier of the quick counts) and
``CVXIMPLICIT_FUZZ_SEED``.  Every failure message starts with a one-line reproducer:
``make_case(kind, seed, index)`` from ``tests/fuzz/generator.py`` rebuilds the problem.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import oracles
import pytest
from generator import Case, make_case

import cvximplicit as ci

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")  # overflow, NaN, ...

SCALE = int(os.environ.get("CVXIMPLICIT_FUZZ", "1"))
SEED = int(os.environ.get("CVXIMPLICIT_FUZZ_SEED", "0"))
QUICK = {"smooth": 120, "scaled": 50, "infeasible": 30, "unbounded": 30, "degenerate": 60}


def _ids(kind: str) -> list[int]:
    return list(range(QUICK[kind] * SCALE))


def _fail(case: Case, problems: list[str]) -> None:
    if problems:
        pytest.fail(case.reproducer + "\n  " + "\n  ".join(problems), pytrace=False)


def _copies(case: Case) -> list[np.ndarray]:
    return [np.array(v, copy=True) for v in case.values]


def _mutated(case: Case, before: list[np.ndarray]) -> list[str]:
    changed = [k for k, (a, b) in enumerate(zip(case.values, before)) if not np.array_equal(a, b)]
    return [f"parameter values {changed} were mutated"] if changed else []


@pytest.mark.parametrize("index", _ids("smooth"))
def test_smooth(index: int) -> None:
    case = make_case("smooth", SEED, index)
    rng = np.random.default_rng([SEED, index, 99])
    before = _copies(case)
    program = ci.compile(case.problem, case.parameters, case.outputs)
    ref = oracles.reference(case)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sol = program.solve(*case.values)
    problems: list[str] = []
    ours = oracles._flat(sol.values)
    if not np.all(np.isfinite(ours)):
        problems.append(f"non-finite values {ours}")
    elif ref is not None:
        err = oracles._rel(ours, oracles._flat(ref), 1e-6)
        if err > oracles.VALUE_TOL:
            problems.append(f"values off CVXPY's by {err:.2e}")
    degenerate = any(issubclass(w.category, ci.DegenerateDerivativeWarning) for w in caught)
    t = oracles.tangents(case, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ci.DegenerateDerivativeWarning)
        found, judged = oracles.check_jvp(program, case, sol, t, ours)
        if not (degenerate and judged.startswith("skipped")):
            problems += found
        problems += oracles.check_adjoint(sol, t, rng)
    if index % 3 == 0:
        problems += oracles.check_batch(program, case, t)
    if index % 5 == 0:
        problems += oracles.check_torch_float32(case)
    problems += _mutated(case, before)
    _fail(case, problems)


@pytest.mark.parametrize("index", _ids("scaled"))
def test_badly_scaled(index: int) -> None:
    """Accurate, or an InaccurateSolutionWarning; never a silent error above 1e-3."""
    case = make_case("scaled", SEED, index)
    program = ci.compile(case.problem, case.parameters, case.outputs)
    ref = oracles.reference(case)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sol = program.solve(*case.values)
    except ci.SolverFailedError:
        return  # a typed refusal is an allowed outcome
    warned = any(issubclass(w.category, ci.InaccurateSolutionWarning) for w in caught)
    ours = oracles._flat(sol.values)
    problems: list[str] = []
    if not np.all(np.isfinite(ours)):
        problems.append(f"non-finite values {ours}")
    elif ref is not None and not warned:
        err = oracles._rel(ours, oracles._flat(ref), 1e-8)
        if err > oracles.SILENT_TOL:
            # CVXPY's reference may be the inaccurate one: compare objective and feasibility.
            primal = [v for o, v in zip(case.outputs, sol.values) if not hasattr(o, "dual_value")]
            obj, viol = oracles.objective_at(case, primal)
            ref_obj, _ = oracles.objective_at(
                case, [v for o, v in zip(case.outputs, ref) if not hasattr(o, "dual_value")]
            )
            if obj > ref_obj + 1e-7 * max(1.0, abs(ref_obj)) or viol > 1e-6:
                problems.append(
                    f"silent error {err:.2e} (objective {obj:.9g} vs CVXPY {ref_obj:.9g}, "
                    f"violation {viol:.1e})"
                )
    _fail(case, problems)


def _expect_error(kind: str, index: int, error: type[ci.SolverError]) -> None:
    """The typed error, never values, for a construction that has no solution."""
    case = make_case(kind, SEED, index)
    program = ci.compile(case.problem, case.parameters, case.outputs)
    try:
        sol = program.solve(*case.values)
    except error:
        return
    except Exception as exc:
        _fail(case, [f"expected {error.__name__}, got {type(exc).__name__}: {exc}"])
    else:
        _fail(case, [f"{kind} problem returned values {sol.values}"])


@pytest.mark.parametrize("index", _ids("infeasible"))
def test_infeasible(index: int) -> None:
    _expect_error("infeasible", index, ci.InfeasibleError)


@pytest.mark.parametrize("index", _ids("unbounded"))
def test_unbounded(index: int) -> None:
    _expect_error("unbounded", index, ci.UnboundedError)


@pytest.mark.parametrize("index", _ids("degenerate"))
def test_degenerate(index: int) -> None:
    """A derivative equal to a one-sided difference, or a DegenerateDerivativeWarning or
    typed error; never a silent NaN; values optimal."""
    case = make_case("degenerate", SEED, index)
    rng = np.random.default_rng([SEED, index, 98])
    program = ci.compile(case.problem, case.parameters, case.outputs)
    ref = oracles.reference(case)
    problems: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            sol = program.solve(*case.values)
            t = oracles.tangents(case, rng)
            jvp = oracles._flat(sol.jvp(*t))
            vjp = oracles._flat(sol.vjp(*[np.ones(np.shape(v)) for v in sol.values]))
        except ci.DegenerateDerivativeError:
            return
    warned = any(issubclass(w.category, ci.DegenerateDerivativeWarning) for w in caught)
    ours = oracles._flat(sol.values)
    if not (np.all(np.isfinite(ours)) and np.all(np.isfinite(jvp)) and np.all(np.isfinite(vjp))):
        _fail(case, [f"non-finite values or derivatives: {ours}, {jvp}, {vjp}"])
    if ref is not None:
        primal = [v for o, v in zip(case.outputs, sol.values) if not hasattr(o, "dual_value")]
        ref_primal = [v for o, v in zip(case.outputs, ref) if not hasattr(o, "dual_value")]
        obj, viol = oracles.objective_at(case, primal)
        ref_obj, _ = oracles.objective_at(case, ref_primal)
        if abs(obj - ref_obj) > 1e-7 * max(1.0, abs(ref_obj)) or viol > 1e-7:
            problems.append(f"not optimal: objective {obj:.12g} vs {ref_obj:.12g}, viol {viol}")
    if not warned:
        h = 1e-6
        central, plus, minus = oracles.central(program, case.values, t, h)
        forward, backward = (plus - ours) / h, (ours - minus) / h
        floor = 1e-6 * max(1.0, float(np.linalg.norm(ours)))
        errs = [oracles._rel(jvp, fd, floor) for fd in (central, forward, backward)]
        if min(errs) > 1e-4:
            problems.append(
                f"silent derivative matching no finite difference (errors {errs}); jvp {jvp}"
            )
    _fail(case, problems)
