"""OSQP (operator splitting for QPs: zero and nonnegative cones only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from .._cones import Cone, NonnegativeCone, ZeroCone
from ._base import ConeData, RawSolution, Solver, SolverStatus

__all__ = ["OSQP"]

# OSQP's status strings (stable across 0.6 and 1.x, unlike its integer codes).
_STATUS = {
    "solved": SolverStatus.SOLVED,
    "solved inaccurate": SolverStatus.INACCURATE,
    "primal infeasible": SolverStatus.INFEASIBLE,
    "primal infeasible inaccurate": SolverStatus.INFEASIBLE,
    "dual infeasible": SolverStatus.UNBOUNDED,
    "dual infeasible inaccurate": SolverStatus.UNBOUNDED,
    "maximum iterations reached": SolverStatus.INCOMPLETE,
    "run time limit reached": SolverStatus.INCOMPLETE,
}


class OSQP(Solver):
    """The OSQP solver (``pip install osqp``), for programs with only zero and nonnegative cones.

    The program ``Ax + s = b`` is given to OSQP as ``l <= Ax <= u`` with ``l = u = b`` on
    equality rows and ``l = -inf, u = b`` on inequality rows, so OSQP's multipliers are the
    canonical duals ``y``.  Defaults: ``eps_abs = eps_rel = 1e-7``, OSQP's own polishing on.
    """

    name = "OSQP"
    module = "osqp"
    requirement = "osqp"
    supported_cones: ClassVar[tuple[type[Cone], ...]] = (ZeroCone, NonnegativeCone)
    defaults: ClassVar[Mapping[str, Any]] = {
        "verbose": False,
        "eps_abs": 1e-7,
        "eps_rel": 1e-7,
        "polishing": True,
    }
    aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "eps": ("eps_abs", "eps_rel"),
        "max_iters": ("max_iter",),
        "acceleration_lookback": (),
        "normalize": (),
        "use_indirect": (),
        "polish": ("polishing",),
    }
    known: ClassVar[frozenset[str] | None] = frozenset(
        {
            "rho", "sigma", "scaling", "adaptive_rho", "adaptive_rho_interval",
            "adaptive_rho_tolerance", "adaptive_rho_fraction", "max_iter", "eps_abs",
            "eps_rel", "eps_prim_inf", "eps_dual_inf", "alpha", "linsys_solver", "delta",
            "polishing", "polish_refine_iter", "verbose", "scaled_termination",
            "check_termination", "warm_starting", "time_limit", "check_dualgap",
            "adaptive_rho_tolerance_greater", "adaptive_rho_tolerance_less", "cg_max_iter",
            "cg_tol_reduction", "cg_tol_fraction", "cg_precond", "device", "allocate_solution",
            "profiler_level", "rho_is_vec",
        }
    )  # fmt: skip
    tight: ClassVar[Mapping[str, Any]] = {
        "eps_abs": 1e-11,
        "eps_rel": 1e-11,
        "max_iter": 400_000,
        "polishing": True,
    }

    def _solve(self, module: ModuleType, data: ConeData, cones: Sequence[Cone]) -> RawSolution:
        lower = np.empty(data.m)
        start = 0
        for cone in cones:
            stop = start + cone.dim
            lower[start:stop] = -np.inf if isinstance(cone, NonnegativeCone) else data.b[start:stop]
            start = stop
        model = module.OSQP()
        model.setup(
            P=_csc32(data.P_upper), q=data.c, A=_csc32(data.A), l=lower, u=data.b, **self.settings
        )
        result = model.solve(raise_error=False)
        info = result.info
        x = None if result.x is None else np.asarray(result.x, dtype=np.float64)
        y = None if result.y is None else np.asarray(result.y, dtype=np.float64)
        s = None if x is None else data.b - data.A @ x
        return RawSolution(
            x=x,
            y=y,
            s=s,
            status=_STATUS.get(str(info.status).lower(), SolverStatus.FAILED),
            raw_status=str(info.status),
            iterations=int(info.iter),
            solve_time=float(info.run_time),
            solver=self.name,
        )


def _csc32(M: sp.sparray) -> sp.csc_matrix:
    """OSQP's extension wants a ``csc_matrix`` with 32-bit indices."""
    out = sp.csc_matrix(M)
    out.indices = out.indices.astype(np.int32)
    out.indptr = out.indptr.astype(np.int32)
    return out
