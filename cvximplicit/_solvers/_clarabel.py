"""Clarabel, the default solver (interior point, quadratic objectives, every cone)."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from .._cones import (
    Cone,
    ExponentialCone,
    NonnegativeCone,
    PowerCone,
    PSDCone,
    SecondOrderCone,
    ZeroCone,
)
from ._base import ConeData, DataLayout, RawSolution, Solver, SolverStatus

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


@functools.cache
def _setting_names() -> frozenset[str] | None:
    """The fields of ``clarabel.DefaultSettings`` (read once; ``None`` if not installed)."""
    try:
        settings = importlib.import_module("clarabel").DefaultSettings()
    except Exception:  # not installed: the solve will say so
        return None
    return frozenset(a for a in dir(settings) if not a.startswith("_") and a != "default")


@dataclasses.dataclass
class _Kept:
    """A kept Clarabel solver and the stored values of ``P`` (upper triangle) and ``A`` it
    holds now (copies: an update passes only what differs from them)."""

    solver: Any
    P: NDArray[np.float64]
    A: NDArray[np.float64]


class Clarabel(Solver):
    """The Clarabel interior-point solver (``pip install clarabel``).

    Defaults: the ``qdldl`` direct solve method (on 2 cores 1.5-3.5x faster than ``faer`` on
    the larger benchmark families, and what Clarabel's ``auto`` picks on the small ones; see
    ``benchmarks/core.py``) and, for programs with ``n + m`` up to 2000, gap and feasibility
    tolerances of 1e-7 (Clarabel's own, 1e-8, above): polishing takes the points to a
    relative residual of 1e-13 in 1-3 steps either way, and the interior-point method saves
    one to five iterations (measured on the benchmark families: forward 3-14% faster; at
    1e-6 the LASSO needs a second Newton step and is slower).  On large programs the looser
    point costs more Newton steps than the iterations it saves (the 35,000-row banded QP:
    10 steps and 173 ms at 1e-7, 5 steps and 107 ms at 1e-8).
    A point that polishing cannot certify is re-solved once with `tight` settings.

    Any setting of ``clarabel.DefaultSettings`` may be passed (``tol_gap_abs``,
    ``tol_gap_rel``, ``tol_feas``, ``max_iter``, ``time_limit``, ``direct_solve_method``,
    ``equilibrate_enable``, ``static_regularization_constant``, ...).  With ``keep=True``
    (the default) one Clarabel solver is kept per program and thread and its data updated
    in place (``DefaultSolver.update``), which skips the symbolic analysis and allocation
    on every call after the first.  Only what changed since the kept solver's last data is
    passed, and ``P`` and ``A`` as their stored values rather than matrices: Clarabel
    rescales every entry it is given by its equilibration, and that update cost more than
    our whole polishing on programs whose ``A`` holds no parameter (measured per call: box
    LP 0.26 -> 0.01 ms, 320-row SDP 0.058 -> 0.012 ms; NNLS with ``A`` a parameter 1.14 ->
    0.82 ms).
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
    #: Gap and feasibility tolerances for programs with ``n + m`` up to `small_size`,
    #: unless set by the user (Clarabel's own, 1e-8, above).
    small_tolerance: ClassVar[float] = 1e-7
    small_size: ClassVar[int] = 2000
    #: Settings used for the one retry of a solve whose point could not be certified.
    tight: ClassVar[Mapping[str, Any]] = {
        "tol_gap_abs": 1e-12,
        "tol_gap_rel": 1e-12,
        "tol_feas": 1e-12,
        "tol_ktratio": 1e-10,
        "max_iter": 500,
    }

    aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "eps": ("tol_gap_abs", "tol_gap_rel", "tol_feas"),
        "eps_abs": ("tol_gap_abs", "tol_feas"),
        "eps_rel": ("tol_gap_rel",),
        "max_iters": ("max_iter",),
        "acceleration_lookback": (),
        "normalize": (),
        "use_indirect": (),
        "mode": (),
        "solve_method": (),
    }

    def known_settings(self) -> frozenset[str] | None:
        return _setting_names()

    def __init__(self, *, keep: bool = True, **settings: Any) -> None:
        super().__init__(**settings)
        #: Keep one solver per program and thread and update its data in place.
        self.keep = keep
        self._local = threading.local()

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

    def __getstate__(self) -> dict[str, Any]:
        # Kept solvers are per process and per thread; a pickled copy starts without them.
        return {"settings": self.settings, "keep": self.keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(keep=state["keep"], **state["settings"])

    def _settings_object(self, module: ModuleType, cones: Sequence[Cone], size: int) -> Any:
        """Clarabel's settings object for a program with ``size = n + m``."""
        del cones
        settings = module.DefaultSettings()
        if size <= self.small_size:
            for key in ("tol_gap_abs", "tol_gap_rel", "tol_feas"):
                setattr(settings, key, self.small_tolerance)
        for key, value in self.settings.items():
            try:
                setattr(settings, key, value)
            except AttributeError:
                raise TypeError(f"Clarabel has no setting {key!r}") from None
        return settings

    def _kept_solvers(self) -> weakref.WeakKeyDictionary[DataLayout, _Kept]:
        kept = getattr(self._local, "kept", None)
        if kept is None:
            kept = self._local.kept = weakref.WeakKeyDictionary()
        return kept

    def _solve(self, module: ModuleType, data: ConeData, cones: Sequence[Cone]) -> RawSolution:
        start = time.perf_counter()
        P = data.P_upper
        P_values = np.asarray(P.data, dtype=np.float64)
        A_values = np.asarray(data.A.data, dtype=np.float64)
        # A solver kept from the last solve of the same program in this thread is updated in
        # place (same sparsity, same cones): it skips the symbolic analysis and allocation.
        layout = data.layout
        kept = self._kept_solvers() if layout is not None and self.keep else None
        entry = None if kept is None or layout is None else kept.get(layout)
        if entry is not None and entry.solver.is_data_update_allowed():
            solver = entry.solver
            changed: dict[str, Any] = {"q": data.c, "b": data.b}
            if not np.array_equal(P_values, entry.P):
                changed["P"] = entry.P = P_values.copy()
            if not np.array_equal(A_values, entry.A):
                changed["A"] = entry.A = A_values.copy()
            solver.update(**changed)
        else:
            settings = self._settings_object(module, cones, data.n + data.m)
            objects = [o for cone in cones if cone.dim for o in self._cone_objects(module, cone)]
            solver = module.DefaultSolver(P, data.c, data.A, data.b, objects, settings)
            if kept is not None and layout is not None:
                kept[layout] = _Kept(solver, P_values.copy(), A_values.copy())
        setup = time.perf_counter() - start
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
            setup_time=setup,
        )
