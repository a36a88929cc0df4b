"""Solver backends, one class per backend (see ``_base.Solver`` for the contract)."""

from __future__ import annotations

from typing import Any

from .._errors import UnsupportedProblemError
from ._base import ConeData as ConeData
from ._base import DataLayout as DataLayout
from ._base import RawSolution as RawSolution
from ._base import Solver as Solver
from ._base import SolverStatus as SolverStatus
from ._base import StackedData as StackedData
from ._clarabel import Clarabel as Clarabel
from ._moreau import Moreau as Moreau
from ._osqp import OSQP as OSQP
from ._scs import SCS as SCS

#: Backends known by name; ``solver="scs"`` looks here.
SOLVERS: dict[str, type[Solver]] = {cls.name: cls for cls in (Clarabel, SCS, OSQP, Moreau)}

SolverLike = Solver | type[Solver] | str | None


#: cvxpylayers' solver names with no backend of that name here, and what to use instead.
_PEER_SOLVERS = {
    "CUCLARABEL": (
        ' (CUCLARABEL, Clarabel on the GPU, is a cvxpylayers backend: use "CLARABEL", which'
        ' takes tensors on any device, or cvximplicit.Moreau(device="cuda") to solve on'
        " the GPU)"
    ),
    "DIFFCP": ' (DIFFCP is cvxpylayers\' diffcp backend, SCS by default: use "SCS")',
    "MPAX": ' (MPAX is a cvxpylayers backend: use "OSQP" or "CLARABEL")',
}


def get_solver(solver: SolverLike, settings: dict[str, Any] | None = None) -> Solver:
    """Resolve ``solver`` (an instance, a class, a name or ``None`` for Clarabel) to an instance
    with ``settings`` applied on top of its own."""
    if solver is None:
        instance: Solver = Clarabel()
    elif isinstance(solver, Solver):
        instance = solver
    elif isinstance(solver, type) and issubclass(solver, Solver):
        instance = solver()
    elif isinstance(solver, str):
        try:
            instance = SOLVERS[solver.upper()]()
        except KeyError:
            known = ", ".join(sorted(SOLVERS))
            hint = _PEER_SOLVERS.get(solver.upper(), "")
            raise UnsupportedProblemError(
                f"unknown solver {solver!r}; known solvers are {known}{hint}"
            ) from None
    else:
        raise TypeError(
            f"solver must be a Solver instance or class, a name or None, got {type(solver)!r}"
        )
    return instance.with_settings(settings)
