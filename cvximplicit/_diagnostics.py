"""What a solve and its derivative report about themselves."""

from __future__ import annotations

import dataclasses

from ._solvers import SolverStatus

__all__ = ["Diagnostics"]


@dataclasses.dataclass
class Diagnostics:
    """Report of one solve: the solver, the polishing and the derivative system.

    Attributes:
        status: normalised solver status.
        solver: the solver's name; ``raw_status`` its own status string.
        iterations: solver iterations; ``solve_time``: solver seconds.
        residual_before_polish: ``||F(x, v)||`` at the solver's point.
        residual: ``||F(x, v)||`` at the returned point (after polishing).
        polish_steps: semismooth Newton steps accepted.
        polish: ``"converged"``, ``"stalled"`` (a step did not decrease ``||F||``; the last
            accepted point is kept), ``"singular"`` (``B`` could not be factorized),
            ``"max_iter"`` or ``"off"``.
        kink_policy: the :class:`~cvximplicit.KinkPolicy` value used at kinks.
        kinks: number of kink coordinates per cone kind at the returned point.
        linear_solve: how ``B`` is solved for derivatives (``"sparse LU"``, or a least-squares
            method when ``B`` is singular); ``None`` until a derivative was requested.
        condition: estimate of the 1-norm condition number of ``B`` (``inf`` when singular);
            ``None`` until computed.
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
    polish: str
    kink_policy: str
    kinks: dict[str, int]
    linear_solve: str | None = None
    condition: float | None = None
    degenerate: bool = False

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
            f"(polish: {self.polish}, {self.polish_steps} steps)",
            f"kinks         {kinks} (policy: {self.kink_policy})",
            f"derivative    {self.linear_solve or 'not factorized yet'}, condition {cond}"
            + (" [DEGENERATE]" if self.degenerate else ""),
        ]
        return "\n".join(lines)
