"""Clarabel, the default solver (interior point, quadratic objectives, every cone)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from .._cones import (
    Cone,
    ExponentialCone,
    NonnegativeCone,
    PowerCone,
    PSDCone,
    SecondOrderCone,
    ZeroCone,
)
from ._base import ConeData, RawSolution, Solver, SolverStatus

__all__ = ["Clarabel"]

_STATUS = {
    "Solved": SolverStatus.SOLVED,
    "AlmostSolved": SolverStatus.INACCURATE,
    "PrimalInfeasible": SolverStatus.INFEASIBLE,
    "AlmostPrimalInfeasible": SolverStatus.INFEASIBLE,
    "DualInfeasible": SolverStatus.UNBOUNDED,
    "AlmostDualInfeasible": SolverStatus.UNBOUNDED,
    "MaxIterations": SolverStatus.INCOMPLETE,
    "MaxTime": SolverStatus.INCOMPLETE,
    "InsufficientProgress": SolverStatus.INCOMPLETE,
    "NumericalError": SolverStatus.FAILED,
    "CallbackTerminated": SolverStatus.FAILED,
    "Unsolved": SolverStatus.FAILED,
}


class Clarabel(Solver):
    """The Clarabel interior-point solver (``pip install clarabel``).

    Defaults: the ``qdldl`` direct solve method (on 2 cores 1.5-3.5x faster than ``faer`` on
    the larger benchmark families; see ``benchmarks/core.py``) and Clarabel's own
    tolerances, except with exponential or power cones, where gap and feasibility tolerances
    of 1e-10 are used: at Clarabel's 1e-8 points the normal-map residual on those cones was
    up to 2e-4 and semismooth Newton sometimes stalled outside its region of fast
    convergence; the few extra interior-point iterations cost less than they save.
    """

    name = "CLARABEL"
    module = "clarabel"
    requirement = "clarabel"
    supported_cones: ClassVar[tuple[type[Cone], ...]] = (
        ZeroCone,
        NonnegativeCone,
        SecondOrderCone,
        PSDCone,
        ExponentialCone,
        PowerCone,
    )
    defaults: ClassVar[Mapping[str, Any]] = {"verbose": False, "direct_solve_method": "qdldl"}
    #: Used instead of Clarabel's own tolerances when the program has exponential or power
    #: cones (unless the user sets them).
    curved_defaults: ClassVar[Mapping[str, Any]] = {
        "tol_gap_abs": 1e-10,
        "tol_gap_rel": 1e-10,
        "tol_feas": 1e-10,
    }

    def _cone_objects(self, clarabel: Any, cone: Cone) -> list[Any]:
        makers = {
            ZeroCone: lambda c: [clarabel.ZeroConeT(c.dim)],
            NonnegativeCone: lambda c: [clarabel.NonnegativeConeT(c.dim)],
            SecondOrderCone: lambda c: [clarabel.SecondOrderConeT(d) for d in c.sizes],
            PSDCone: lambda c: [clarabel.PSDTriangleConeT(k) for k in c.orders],
            ExponentialCone: lambda c: [clarabel.ExponentialConeT() for _ in range(c.count)],
            PowerCone: lambda c: [clarabel.PowerConeT(a) for a in c.exponents],
        }
        return makers[type(cone)](cone)

    def _solve(self, module: ModuleType, data: ConeData, cones: Sequence[Cone]) -> RawSolution:
        settings = module.DefaultSettings()
        chosen = dict(self.settings)
        if any(isinstance(c, (ExponentialCone, PowerCone)) for c in cones):
            chosen = {**self.curved_defaults, **chosen}
        for key, value in chosen.items():
            try:
                setattr(settings, key, value)
            except AttributeError:
                raise TypeError(f"Clarabel has no setting {key!r}") from None
        objects = [obj for cone in cones if cone.dim for obj in self._cone_objects(module, cone)]
        solver = module.DefaultSolver(data.P_upper, data.c, data.A, data.b, objects, settings)
        result = solver.solve()
        raw_status = str(result.status)
        x, z, s = (np.asarray(v, dtype=np.float64) for v in (result.x, result.z, result.s))
        return RawSolution(
            x=x,
            y=z,
            s=s,
            status=_STATUS.get(raw_status, SolverStatus.FAILED),
            raw_status=raw_status,
            iterations=int(result.iterations),
            solve_time=float(result.solve_time),
            solver=self.name,
        )
