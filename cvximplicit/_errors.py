"""Exceptions and warnings raised by cvximplicit.

Every error a user can provoke derives from `CvximplicitError` and from the
built-in exception that best describes it (``ValueError`` for bad input,
``RuntimeError`` for failed solves, ``ImportError`` for a missing solver), so that
``except ValueError`` keeps working in code written for other libraries.
"""

from __future__ import annotations

__all__ = [
    "ConvergenceError",
    "ConvergenceWarning",
    "CvximplicitError",
    "DegenerateDerivativeError",
    "DegenerateDerivativeWarning",
    "InaccurateSolutionWarning",
    "InfeasibleError",
    "NonDCPError",
    "NonDPPError",
    "OutputError",
    "ParameterError",
    "SecondDerivativeError",
    "SolverError",
    "SolverFailedError",
    "SolverNotInstalledError",
    "SolverSettingsError",
    "UnboundedError",
    "UnsupportedProblemError",
]


class CvximplicitError(Exception):
    """Base class of every exception raised by cvximplicit."""


class NonDPPError(CvximplicitError, ValueError):
    """The CVXPY problem does not follow the disciplined parametrized programming rules.

    Only DPP problems have problem data that is an affine function of the parameters,
    which is what makes them differentiable layers.
    """


class NonDCPError(CvximplicitError, ValueError):
    """The CVXPY problem is not convex by the disciplined convex programming rules (or, with
    ``gp=True``, not a disciplined geometric program), so it is not a cone program at all."""


class OutputError(CvximplicitError, ValueError):
    """An entry of ``variables`` is not something the layer can return: a variable that is
    not in the problem, a constraint of another problem, or an object of the wrong type."""


class SecondDerivativeError(CvximplicitError, NotImplementedError):
    """A second derivative of a layer was requested (``create_graph=True`` followed by a
    second ``backward``/``grad``, ``jax.hessian``); layers provide first derivatives only."""


class UnsupportedProblemError(CvximplicitError, ValueError):
    """The problem is valid CVXPY but cannot be compiled to a differentiable cone program
    (integer variables, a cone no registered solver handles, an output that is not a
    linear function of the solver's solution, ...)."""


class ParameterError(CvximplicitError, ValueError):
    """A parameter list or a parameter value is wrong: unknown or missing parameters,
    wrong shapes or dtypes, NaN/Inf entries, or values outside the parameter's domain."""


class SolverNotInstalledError(CvximplicitError, ImportError):
    """The requested solver's Python package is not installed."""


class SolverSettingsError(CvximplicitError, TypeError):
    """A solver setting the backend does not have (checked when the solver or layer is
    built); the message lists the backend's settings."""


class SolverError(CvximplicitError, RuntimeError):
    """The inner solver did not return a usable solution.

    Attributes:
        status: the `cvximplicit.SolverStatus` the solver reported.
        solver: the solver's name.
        batch_index: index of the failing instance in a batched solve (``None`` otherwise).
    """

    def __init__(
        self,
        message: str,
        *,
        status: object = None,
        solver: str | None = None,
        batch_index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.solver = solver
        self.batch_index = batch_index

    def with_batch_index(self, index: int) -> SolverError:
        """A copy of this error that names the failing batch element."""
        return type(self)(
            f"batch element {index}: {self}",
            status=self.status,
            solver=self.solver,
            batch_index=index,
        )


class InfeasibleError(SolverError):
    """The inner problem is (primal) infeasible for the given parameter values."""


class UnboundedError(SolverError):
    """The inner problem is unbounded (dual infeasible) for the given parameter values."""


class SolverFailedError(SolverError):
    """The solver stopped without a solution (numerical trouble, iteration limit, ...)."""


class DegenerateDerivativeError(CvximplicitError, ArithmeticError):
    """The derivative system is singular and ``strict=True`` was requested.

    The implicit function theorem's hypothesis (every element ``B`` of the conservative
    Jacobian of the residual with respect to the solution is invertible) fails at this
    solution, so no derivative formula is guaranteed to be valid there.
    """


class DegenerateDerivativeWarning(UserWarning):
    """The derivative system is singular; a least-squares solution was returned instead."""


class InaccurateSolutionWarning(UserWarning):
    """The solver reported an inaccurate solution; it is returned (and polished) anyway."""


class ConvergenceError(CvximplicitError, RuntimeError):
    r"""An implicit layer's forward or backward iteration did not converge.

    For a fixed point $z = f(z, x)$ the backward solve $(I - J_z f)^\top w = g$ converges
    when the spectral radius of $J_z f$ is below one; the message reports an estimate.
    """


class ConvergenceWarning(UserWarning):
    """An implicit layer's iteration stopped before reaching its tolerance
    (``on_failure="warn"``)."""
