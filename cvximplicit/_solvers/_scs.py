"""SCS (operator splitting; quadratic objectives and every cone)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

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

__all__ = ["SCS"]

# SCS 3 ``info["status_val"]``.
_STATUS = {
    1: SolverStatus.SOLVED,
    2: SolverStatus.INACCURATE,
    -1: SolverStatus.UNBOUNDED,
    -6: SolverStatus.UNBOUNDED,
    -2: SolverStatus.INFEASIBLE,
    -7: SolverStatus.INFEASIBLE,
    0: SolverStatus.INCOMPLETE,
    -3: SolverStatus.FAILED,
    -4: SolverStatus.FAILED,
    -5: SolverStatus.FAILED,
}


class SCS(Solver):
    """The SCS splitting conic solver (``pip install scs``).

    SCS reaches moderate accuracy quickly; polishing then brings its point to machine
    precision.  Defaults: ``eps_abs = eps_rel = 1e-7`` and no verbosity.  For finite-difference
    references use ``SCS(eps_abs=1e-12, eps_rel=1e-12)``.
    """

    name = "SCS"
    module = "scs"
    requirement = "scs"
    convention = "scs"
    supported_cones: ClassVar[tuple[type[Cone], ...]] = (
        ZeroCone,
        NonnegativeCone,
        SecondOrderCone,
        PSDCone,
        ExponentialCone,
        PowerCone,
    )
    defaults: ClassVar[Mapping[str, Any]] = {"verbose": False, "eps_abs": 1e-7, "eps_rel": 1e-7}
    tight: ClassVar[Mapping[str, Any]] = {"eps_abs": 1e-11, "eps_rel": 1e-11, "max_iters": 500_000}
    aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "eps": ("eps_abs", "eps_rel"),  # SCS 2 / diffcp, as cvxpylayers documents
        "mode": (),
        "solve_method": (),
    }
    known: ClassVar[frozenset[str] | None] = frozenset(
        {
            "verbose", "normalize", "scale", "adaptive_scale", "rho_x", "max_iters",
            "eps_abs", "eps_rel", "eps_infeas", "alpha", "time_limit_secs",
            "acceleration_lookback", "acceleration_interval", "write_data_filename",
            "log_csv_filename", "use_indirect", "mkl", "gpu",
        }
    )  # fmt: skip

    def _cone_dict(self, cones: Sequence[Cone]) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        adders = {
            ZeroCone: lambda c: fields.__setitem__("z", fields.get("z", 0) + c.dim),
            NonnegativeCone: lambda c: fields.__setitem__("l", fields.get("l", 0) + c.dim),
            SecondOrderCone: lambda c: fields.setdefault("q", []).extend(c.sizes),
            PSDCone: lambda c: fields.setdefault("s", []).extend(c.orders),
            ExponentialCone: lambda c: fields.__setitem__("ep", fields.get("ep", 0) + c.count),
            PowerCone: lambda c: fields.setdefault("p", []).extend(c.exponents),
        }
        for cone in cones:
            if cone.dim:
                adders[type(cone)](cone)
        return fields

    def _solve(self, module: ModuleType, data: ConeData, cones: Sequence[Cone]) -> RawSolution:
        problem: dict[str, Any] = {"P": data.P_upper, "A": data.A, "b": data.b, "c": data.c}
        cone_dict = self._cone_dict(cones)
        m = data.m
        if m == 0:  # SCS needs a constraint: add 0'x + s = 1, s >= 0 (inactive, y = 0)
            problem["A"] = sp.csc_matrix((1, data.n))
            problem["b"] = np.ones(1)
            cone_dict = {"l": 1}
        result = module.SCS(problem, cone_dict, **self.settings).solve()
        info = result["info"]
        return RawSolution(
            x=np.asarray(result["x"], dtype=np.float64),
            y=np.asarray(result["y"], dtype=np.float64)[:m],
            s=np.asarray(result["s"], dtype=np.float64)[:m],
            status=_STATUS.get(int(info["status_val"]), SolverStatus.FAILED),
            raw_status=str(info["status"]),
            iterations=int(info["iter"]),
            solve_time=1e-3 * float(info.get("solve_time", 0.0) + info.get("setup_time", 0.0)),
            solver=self.name,
        )
