"""cvximplicit: differentiable convex optimization by nonsmooth implicit differentiation.

A DPP CVXPY problem is compiled once to a parametric cone program; each solve is polished by
semismooth Newton steps on a normal-map residual ``F``, and derivatives are
``-B^{-1} dF/dtheta`` for one element ``B`` of the conservative Jacobian of ``F`` (Bolte, Le,
Pauwels and Silveti-Falls, 2021), so they stay valid at kinks of the solution map.

Example:
    >>> import cvxpy as cp, numpy as np, cvximplicit as ci
    >>> x = cp.Variable(2); b = cp.Parameter(2)
    >>> program = ci.compile(cp.Problem(cp.Minimize(cp.sum_squares(x - b)), [x >= 0]), [b], [x])
    >>> sol = program.solve(np.array([1.0, -1.0]))
    >>> (gb,) = sol.vjp(np.ones(2))
"""

from . import problems as problems
from ._batch import OnFailure as OnFailure
from ._cones import Cone as Cone
from ._cones import ExponentialCone as ExponentialCone
from ._cones import KinkPolicy as KinkPolicy
from ._cones import NonnegativeCone as NonnegativeCone
from ._cones import PowerCone as PowerCone
from ._cones import PSDCone as PSDCone
from ._cones import SecondOrderCone as SecondOrderCone
from ._cones import ZeroCone as ZeroCone
from ._conic import ConicSolution as ConicSolution
from ._conic import DataTangent as DataTangent
from ._diagnostics import Diagnostics as Diagnostics
from ._diagnostics import PolishOutcome as PolishOutcome
from ._diagnostics import Timings as Timings
from ._errors import ConvergenceError as ConvergenceError
from ._errors import ConvergenceWarning as ConvergenceWarning
from ._errors import CvximplicitError as CvximplicitError
from ._errors import DegenerateDerivativeError as DegenerateDerivativeError
from ._errors import DegenerateDerivativeWarning as DegenerateDerivativeWarning
from ._errors import InaccurateSolutionWarning as InaccurateSolutionWarning
from ._errors import InfeasibleError as InfeasibleError
from ._errors import NonDCPError as NonDCPError
from ._errors import NonDPPError as NonDPPError
from ._errors import OutputError as OutputError
from ._errors import ParameterError as ParameterError
from ._errors import SecondDerivativeError as SecondDerivativeError
from ._errors import SolverError as SolverError
from ._errors import SolverFailedError as SolverFailedError
from ._errors import SolverNotInstalledError as SolverNotInstalledError
from ._errors import SolverSettingsError as SolverSettingsError
from ._errors import UnboundedError as UnboundedError
from ._errors import UnsupportedProblemError as UnsupportedProblemError
from ._implicit import BackwardSolver as BackwardSolver
from ._implicit import FailurePolicy as FailurePolicy
from ._implicit import ForwardSolver as ForwardSolver
from ._implicit import Gradient as Gradient
from ._implicit import ImplicitInfo as ImplicitInfo
from ._implicit import ImplicitOptions as ImplicitOptions
from ._implicit import ImplicitStatus as ImplicitStatus
from ._implicit import IterationReport as IterationReport
from ._program import BatchSolution as BatchSolution
from ._program import Program as Program
from ._program import Solution as Solution
from ._program import compile as compile
from ._solvers import OSQP as OSQP
from ._solvers import SCS as SCS
from ._solvers import Clarabel as Clarabel
from ._solvers import ConeData as ConeData
from ._solvers import Moreau as Moreau
from ._solvers import Solver as Solver
from ._solvers import SolverStatus as SolverStatus
from ._tolerances import Tolerances as Tolerances

__version__ = "0.1.0"
