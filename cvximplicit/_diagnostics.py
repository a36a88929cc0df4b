"""What a solve and its derivative report about themselves."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable

from ._solvers import SolverStatus

__all__ = ["Diagnostics", "PolishOutcome", "Timings"]


class PolishOutcome(str, enum.Enum):
    """How semismooth Newton polishing ended (compares equal to its string value)."""

    #: The relative residual reached ``Tolerances.target``.
    CONVERGED = "converged"
    #: A Newton step did not decrease ``||F||``; the last accepted point is kept (at the
    #: floating-point floor this is the normal end on large or badly scaled programs).
    STALLED = "stalled"
    #: ``B`` was singular and the least-squares step did not decrease ``||F||`` either.
    SINGULAR = "singular"
    #: ``Tolerances.polish_max_iter`` steps were taken.
    MAX_ITER = "max_iter"
    #: Polishing was switched off (``polish=False``).
    OFF = "off"


@dataclasses.dataclass
class Timings:
    """Where the wall time of one solve went, in seconds.

    Attributes:
        setup: building (or updating in place) the backend's problem.
        solve: the backend's own solve (its interior-point iterations).
        polish: semismooth Newton polishing, factorizations excluded.
        factorization: factorizing ``B`` (in polishing and, once, for derivatives).
        total: the whole call, from parameter values to the returned solution.

    Examples:
        >>> import cvxpy as cp, numpy as np, cvximplicit as ci
        >>> x, b = cp.Variable(2), cp.Parameter(2)
        >>> prob = cp.Problem(cp.Minimize(cp.sum_squares(x - b)), [x >= 0])
        >>> t = ci.compile(prob, [b], [x]).solve(np.ones(2)).diagnostics.timings
        >>> t.total >= t.solve > 0 and t.other >= 0
        True
    """

    setup: float = 0.0
    solve: float = 0.0
    polish: float = 0.0
    factorization: float = 0.0
    total: float = 0.0

    @property
    def other(self) -> float:
        """Everything else: building the data from parameters, checks, bookkeeping."""
        return max(self.total - self.setup - self.solve - self.polish - self.factorization, 0.0)

    def __str__(self) -> str:
        parts = ("setup", "solve", "polish", "factorization", "other")
        return ", ".join(f"{k} {1e3 * getattr(self, k):.3g}" for k in parts) + (
            f" (total {1e3 * self.total:.3g} ms)"
        )


@dataclasses.dataclass
class Diagnostics:
    r"""Report of one solve: the solver, the polishing and the derivative system.

    Attributes:
        status: normalised solver status.
        solver: the solver's name; ``raw_status`` its own status string.
        iterations: solver iterations; ``solve_time``: solver seconds.
        residual_before_polish: $\|F(x, v)\|$ at the solver's point.
        residual: $\|F(x, v)\|$ at the returned point (after polishing).
        relative_residual: $\max_i |F_i| / (1 + |\mathrm{terms}_i|)$ at the returned point (see
            `Tolerances`).
        certified: whether ``relative_residual <= Tolerances.certify``.
        retried: whether the solve was retried with tighter solver settings because the
            first point could not be certified.
        polish_steps: semismooth Newton steps accepted.
        polish: a `PolishOutcome`.
        kink_policy: the `KinkPolicy` value used at kinks.
        kinks: number of kink coordinates per cone kind at the returned point (counted on
            first access).
        timings: the `Timings` split of the wall time.
        start: ``"cold"`` (the solver ran) or ``"warm"`` (Newton from the previous solution
            reached the polishing target without a solver call).
        start_reason: why a requested warm start fell back to a cold one (empty otherwise).
        linear_solve: how ``B`` is solved for derivatives (``"dense LU"``, ``"sparse LU"``,
            or a least-squares method when ``B`` is singular); ``None`` until a derivative
            was requested.
        condition: estimate of the 1-norm condition number of ``B`` (``inf`` when singular);
            ``None`` until computed (`cvximplicit.Solution.condition()`).
        degenerate: whether ``B`` was found singular (the implicit function theorem's
            hypothesis fails at this point).
    """

    status: SolverStatus
    solver: str
    raw_status: str
    iterations: int
    solve_time: float
    residual_before_polish: float
    residual: float
    polish_steps: int
    polish: PolishOutcome
    kink_policy: str
    kinks_counter: dataclasses.InitVar[Callable[[], dict[str, int]] | dict[str, int]]
    relative_residual: float = 0.0
    certified: bool = True
    retried: bool = False
    timings: Timings = dataclasses.field(default_factory=Timings)
    start: str = "cold"
    start_reason: str = ""
    linear_solve: str | None = None
    condition: float | None = None
    degenerate: bool = False

    def __post_init__(self, kinks_counter: Callable[[], dict[str, int]] | dict[str, int]) -> None:
        self._kinks = kinks_counter if isinstance(kinks_counter, dict) else None
        self._counter = None if isinstance(kinks_counter, dict) else kinks_counter

    @property
    def kinks(self) -> dict[str, int]:
        """Number of kink coordinates per cone kind at the returned point."""
        if self._kinks is None:
            assert self._counter is not None
            self._kinks = self._counter()
            self._counter = None
        return self._kinks

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_kinks"] = self.kinks
        state["_counter"] = None
        return state

    @property
    def total_kinks(self) -> int:
        """Number of kink coordinates over all cones."""
        return sum(self.kinks.values())

    def __str__(self) -> str:
        kinks = ", ".join(f"{k}: {v}" for k, v in self.kinks.items() if v) or "none"
        cond = "not computed" if self.condition is None else f"{self.condition:.3g}"
        lines = [
            f"status        {self.status.value} ({self.solver}: {self.raw_status}, "
            f"{self.iterations} iterations, {1e3 * self.solve_time:.3g} ms)",
            f"residual      {self.residual_before_polish:.3g} -> {self.residual:.3g} "
            f"(relative {self.relative_residual:.2g}, "
            + ("certified" if self.certified else "NOT CERTIFIED")
            + f"; polish: {self.polish.value}, {self.polish_steps} steps"
            + (", retried with tighter settings" if self.retried else "")
            + ")",
            f"kinks         {kinks} (policy: {self.kink_policy})",
            f"derivative    {self.linear_solve or 'not factorized yet'}, condition {cond}"
            + (" [DEGENERATE]" if self.degenerate else ""),
            f"time (ms)     {self.timings}",
            f"start         {self.start}"
            + (f" ({self.start_reason})" if self.start_reason else ""),
        ]
        return "\n".join(lines)
