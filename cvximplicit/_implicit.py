"""Framework-free pieces of implicit layers: options, the report, failure diagnosis, the
Anderson mixing step and the matrix-free adjoint solve.

An implicit layer returns ``z*(x)`` defined by a root ``F(z, x) = 0``; a fixed point
``z = f(z, x)`` is the root of ``F(z, x) = z - f(z, x)`` (as in jaxopt's ``custom_root``).
By the nonsmooth implicit function theorem, with ``A = d/dx`` and ``B = d/dz`` of ``F``
taken as any element of its conservative Jacobian (what autodiff returns, even at kinks of
``relu``), ``dz*/dx = -B^{-1} A``.  The backward pass solves

    B' w = g,    that is    (I - J_z f)' w = g  for a fixed point,

with vector-Jacobian products only, then returns ``-A' w``.

Both frameworks follow this module: one `ImplicitOptions` (the same names, values
and defaults), one `ImplicitInfo`, one failure diagnosis (`classify()`,
`failure_message()`) and one Anderson formulation (`anderson_weights()`, called with
``numpy`` by PyTorch and with ``jax.numpy`` inside ``jax.lax`` loops).  The loops
themselves run in each framework (PyTorch: one small host transfer per iteration; JAX:
none): a numpy loop would force host callbacks into JAX (breaking ``vmap``) and copies of
every iterate into PyTorch.
GMRES and BiCGSTAB for PyTorch are SciPy's (`solve_linear()`); JAX uses
``jax.scipy.sparse.linalg``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse.linalg as spla

from ._compiled import compiled
from ._typing import FloatArray, parse_option

_TINY = float(np.finfo(np.float64).tiny)

__all__ = [
    "BackwardSolver",
    "FailurePolicy",
    "ForwardSolver",
    "Gradient",
    "ImplicitInfo",
    "ImplicitOptions",
    "ImplicitStatus",
    "IterationReport",
    "Problem",
    "Tracker",
    "anderson_host",
    "anderson_weights",
    "anderson_weights_host",
    "classify",
    "default_tol",
    "failure_message",
    "solve_linear",
]


class Problem(str, enum.Enum):
    """What defines ``z*``: a fixed point ``z = f(z)`` or a root ``F(z) = 0``."""

    FIXED_POINT = "fixed_point"
    ROOT = "root"


class ForwardSolver(str, enum.Enum):
    """The forward solver.  Fixed points: ``ANDERSON`` (default) or ``ITERATION``; roots:
    ``NEWTON`` (default; dense Jacobian, backtracking) or ``BROYDEN``."""

    ANDERSON = "anderson"
    ITERATION = "iteration"
    NEWTON = "newton"
    BROYDEN = "broyden"


class BackwardSolver(str, enum.Enum):
    """The solver of the adjoint equation ``B' w = g`` (``B = J_z F``; ``I - J_z f`` for a
    fixed point).

    ``FIXED_POINT``: the iteration ``w <- w + g - B' w`` (for a fixed point
    ``w <- g + J_z f' w``), which converges when the spectral radius of ``J_z f`` is below
    one; its successive residual ratios estimate that radius for free.  ``ANDERSON``: the same
    iteration with Anderson acceleration (the forward's formulation).  ``GMRES`` and
    ``BICGSTAB``: Krylov methods, exact whenever ``B`` is invertible.  ``DENSE``: ``B`` built
    from ``n`` VJPs and factorized (small ``n`` only).
    """

    FIXED_POINT = "fixed_point"
    ANDERSON = "anderson"
    GMRES = "gmres"
    BICGSTAB = "bicgstab"
    DENSE = "dense"


class Gradient(str, enum.Enum):
    """How the layer is differentiated.

    ``IMPLICIT`` (default): the exact implicit gradient, constant memory.  ``PHANTOM``
    (**inexact**, Geng et al. 2021): autograd through ``phantom_steps`` damped steps
    ``z <- z - phantom_damping F(z)`` (for a fixed point ``(1 - d) z + d f(z)``) started at
    the detached ``z*``; its error shrinks like ``((1 - d) + d rho)^k`` with ``rho`` the
    spectral radius of ``J_z f``, and its memory grows with ``k``.  ``UNROLL`` (fixed points,
    for comparison): autograd through exactly ``max_iter`` plain iterations ``z <- f(z)`` from
    ``z0``; memory grows with ``max_iter``.
    """

    IMPLICIT = "implicit"
    PHANTOM = "phantom"
    UNROLL = "unroll"


class FailurePolicy(str, enum.Enum):
    """What a forward or backward solve that misses its tolerance does (both frameworks).

    ``RAISE`` (default): `ConvergenceError` with a diagnosis (precision
    floor, divergence, stall or slow contraction) and the option that fixes it.  Inside a
    traced JAX computation (``jit``, ``vmap``, ``grad`` transformations) nothing can raise:
    the values (or gradients) become NaN, the info's ``status`` records the cause and a
    `ConvergenceWarning` with the same message is emitted when the
    computation runs.  ``WARN``: warn and return the last iterate.  ``NAN``: NaN values or
    gradients, silently (the info still reports the status).
    """

    RAISE = "raise"
    WARN = "warn"
    NAN = "nan"


class ImplicitStatus(enum.IntEnum):
    """Outcome of an iteration, as diagnosed by `classify()`."""

    CONVERGED = 0
    #: Still converging when ``max_iter`` ran out.
    SLOW = 1
    #: Stalled at the rounding floor of the dtype: ``tol`` is below what it can resolve.
    PRECISION_FLOOR = 2
    #: Stalled well above the rounding floor (no progress for ``STALL_WINDOW`` iterations).
    STALLED = 3
    #: The residual grew beyond its initial value.
    DIVERGED = 4
    #: The iterates became NaN or infinite.
    NOT_FINITE = 5


#: Iterations without a new best residual after which an iteration counts as stalled.
STALL_WINDOW = 10
#: Iterations without a new best residual after which a solve gives up early.
STOP_WINDOW = 2 * STALL_WINDOW
#: A stalled relative residual at most this many machine epsilons is the rounding floor.
FLOOR_EPS = 1e3


def default_tol(eps: float) -> float:
    """The default tolerance for a dtype with machine epsilon ``eps``: ``100 eps``, but no
    tighter than ``1e-8``; that is 1.2e-5 in float32 (about a hundred times its rounding
    floor for the relative residual) and 1e-8 in float64."""
    return max(100.0 * eps, 1e-8)


def dtype_name(eps: float) -> str:
    """The floating dtype with machine epsilon ``eps``."""
    names = {2.0**-52: "float64", 2.0**-23: "float32", 2.0**-10: "float16", 2.0**-7: "bfloat16"}
    return names.get(eps, f"a dtype with eps {eps:.1e}")


def _enum(kind: type[enum.Enum], value: Any, name: str) -> Any:
    return None if value is None else parse_option(kind, value, name)


@dataclasses.dataclass(frozen=True)
class ImplicitOptions:
    """Every option of ``fixed_point`` and ``root_find``, the same in PyTorch and JAX.

    ``None`` means the default for the problem and the dtype of ``z0``; the functions'
    keyword arguments override the fields of an ``options`` object.  Residuals are
    relative: a solve stops when ``||F(z)|| <= tol (1 + ||z||)`` (for a fixed point
    ``F(z) = z - f(z)``), and the backward solve when ``||B' w - g|| <= backward_tol ||g||``.

    Attributes:
        solver: forward solver (`ForwardSolver`); default ``anderson`` for fixed points
            and ``newton`` for roots.
        tol: forward tolerance; default ``max(100 eps, 1e-8)`` for the dtype's machine
            epsilon ``eps``: 1.2e-5 in float32, 1e-8 in float64, both well above the dtype's
            rounding floor.
        max_iter: forward iterations; default 500 (fixed points) or 100 (roots).
        memory: Anderson's number of kept iterates (forward and ``backward_solver=anderson``).
        regularization: Anderson's Tikhonov term, relative to the trace of the residuals' Gram
            matrix; default ``max(1e-10, 100 eps)``.
        gradient: `Gradient`: ``implicit`` (exact, default), ``phantom`` (inexact) or
            ``unroll``.
        backward_solver: `BackwardSolver`; default ``anderson`` for fixed points and
            ``gmres`` for roots.
        backward_tol: default as ``tol``.
        backward_max_iter: default ``max_iter`` (restart cycles for GMRES).
        phantom_steps: ``k`` of the phantom gradient.
        phantom_damping: damping ``d`` in ``(0, 1]`` of the phantom steps.
        on_failure: `FailurePolicy`, ``raise`` by default.

    Example:
        >>> import cvximplicit as ci
        >>> opts = ci.ImplicitOptions(tol=1e-6, backward_solver="gmres")
        >>> opts.backward_solver
        <BackwardSolver.GMRES: 'gmres'>
        >>> resolved = opts.resolve(fixed_point=True, eps=2.0**-23)  # float32 defaults
        >>> resolved.solver.value, resolved.backward_tol
        ('anderson', 1.1920928955078125e-05)
    """

    solver: ForwardSolver | str | None = None
    tol: float | None = None
    max_iter: int | None = None
    memory: int = 5
    regularization: float | None = None
    gradient: Gradient | str = Gradient.IMPLICIT
    backward_solver: BackwardSolver | str | None = None
    backward_tol: float | None = None
    backward_max_iter: int | None = None
    phantom_steps: int = 5
    phantom_damping: float = 1.0
    on_failure: FailurePolicy | str = FailurePolicy.RAISE

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("solver", _enum(ForwardSolver, self.solver, "solver"))
        set_("gradient", _enum(Gradient, self.gradient, "gradient"))
        set_("backward_solver", _enum(BackwardSolver, self.backward_solver, "backward_solver"))
        set_("on_failure", _enum(FailurePolicy, self.on_failure, "on_failure"))
        for name in ("tol", "backward_tol", "regularization"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        for name in ("max_iter", "backward_max_iter", "memory", "phantom_steps"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 < self.phantom_damping <= 1:
            raise ValueError(f"phantom_damping must lie in (0, 1], got {self.phantom_damping!r}")

    def replace(self, **overrides: Any) -> ImplicitOptions:
        """A copy with the fields given (``None`` values are ignored)."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **changes) if changes else self

    def resolve(self, *, fixed_point: bool, eps: float) -> ImplicitOptions:
        """Every ``None`` replaced by its default for a fixed point (or a root) in a dtype
        with machine epsilon ``eps``; checks that the choices fit the problem."""
        fixed = fixed_point
        problem = Problem.FIXED_POINT if fixed else Problem.ROOT
        solver = ForwardSolver(self.solver or ("anderson" if fixed else "newton"))
        allowed = (
            (ForwardSolver.ANDERSON, ForwardSolver.ITERATION)
            if fixed
            else (ForwardSolver.NEWTON, ForwardSolver.BROYDEN)
        )
        if solver not in allowed:
            names = " or ".join(repr(s.value) for s in allowed)
            raise ValueError(
                f"solver {solver.value!r} does not apply to {problem.value}; use {names}"
            )
        if self.gradient is Gradient.UNROLL and not fixed:
            raise ValueError("gradient='unroll' applies to fixed points only; use 'implicit'")
        max_iter = self.max_iter or (500 if fixed else 100)
        backward = self.backward_solver or (
            BackwardSolver.ANDERSON if fixed else BackwardSolver.GMRES
        )
        return dataclasses.replace(
            self,
            solver=solver,
            tol=self.tol or default_tol(eps),
            max_iter=max_iter,
            regularization=self.regularization or max(1e-10, 100 * eps),
            backward_solver=backward,
            backward_tol=self.backward_tol or default_tol(eps),
            backward_max_iter=self.backward_max_iter or max_iter,
        )


@dataclasses.dataclass
class IterationReport:
    """One solve (forward or backward): iterations, residuals and the diagnosed status.

    ``residual`` is the last relative residual, ``initial_residual`` the first and
    ``best_residual`` the smallest (at iteration ``best_iteration``); ``growth`` is the ratio
    of the last absolute residual ``||F(z)||`` to the first (above one: diverging, which the
    relative residual can hide when ``||z||`` grows too).  In JAX the numeric
    fields are arrays (batched under ``vmap``); ``status`` is then an integer array of
    `ImplicitStatus` codes.
    """

    iterations: Any
    residual: Any
    initial_residual: Any
    best_residual: Any
    best_iteration: Any
    growth: Any
    status: Any

    @property
    def converged(self) -> Any:
        """Whether the tolerance was reached (an array in JAX)."""
        return self.status == ImplicitStatus.CONVERGED


@dataclasses.dataclass
class ImplicitInfo:
    """What the forward and backward solves of an implicit layer did.

    Attributes:
        problem: the `Problem` solved.
        options: the resolved `ImplicitOptions` (every default filled in).
        dtype: the dtype name of ``z`` (for the diagnosis of precision floors).
        forward: the forward `IterationReport`.
        backward: the backward one, filled when the backward pass runs (PyTorch; the JAX
            backward pass cannot report back, so it stays ``None`` there).
        spectral_radius: estimate of the spectral radius of ``J_z f`` (fixed points), read off
            the residual ratios of the ``fixed_point`` backward iteration; ``None`` otherwise.
        traced: the values were traced (JAX ``jit``/``vmap``/``grad``), where failures cannot
            raise: with ``on_failure="raise"`` they became NaN and were warned about.

    Example:
        >>> import torch
        >>> from cvximplicit.torch import fixed_point
        >>> z, info = fixed_point(lambda z: 0.5 * z + 1.0, torch.zeros(2), return_info=True)
        >>> bool(info.forward.converged), round(info.options.tol, 7)  # float32 default
        (True, 1.19e-05)
    """

    problem: Problem
    options: ImplicitOptions
    dtype: str
    forward: IterationReport
    backward: IterationReport | None = None
    spectral_radius: float | None = None
    traced: bool = False

    @property
    def message(self) -> str:
        """The diagnosis of the forward (and backward) solve, as a failure would report it."""
        eps = _eps_of(self.dtype)
        parts = [failure_message(self.forward, self.options, self.problem, "forward", eps)]
        if self.backward is not None:
            parts.append(
                failure_message(
                    self.backward,
                    self.options,
                    self.problem,
                    "backward",
                    eps,
                    spectral_radius=self.spectral_radius,
                )
            )
        return "\n".join(parts)

    def __str__(self) -> str:
        rho = "not estimated" if self.spectral_radius is None else f"{self.spectral_radius:.3f}"
        lines = [f"{self.problem.value}, {self.dtype}"]
        for stage, rep, method in (
            ("forward ", self.forward, self.options.solver),
            ("backward", self.backward, self.options.backward_solver),
        ):
            if rep is None:
                lines.append(f"{stage}  not run")
                continue
            name = getattr(method, "value", method)
            lines.append(
                f"{stage}  {name}, {int(rep.iterations)} iterations, residual "
                f"{float(rep.residual):.2e}, {ImplicitStatus(int(rep.status)).name.lower()}"
            )
        lines.append(f"spectral radius of J_z f: {rho}")
        return "\n".join(lines)


def _eps_of(dtype: str) -> float:
    return {"float64": 2.0**-52, "float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7}.get(
        dtype, 2.0**-52
    )


def classify(
    xp: Any,
    iterations: Any,
    residual: Any,
    best: Any,
    best_iteration: Any,
    growth: Any,
    tol: float,
    eps: float,
) -> Any:
    """The `ImplicitStatus` code of an iteration from its residual summary (``xp`` is
    numpy or ``jax.numpy``; the arguments may be scalars or arrays of the same shape)."""
    s = ImplicitStatus
    stalled = (iterations - best_iteration) >= STALL_WINDOW
    code = xp.where(stalled, int(s.STALLED), int(s.SLOW))
    code = xp.where(growth > 1, int(s.DIVERGED), code)
    code = xp.where(stalled & (best <= FLOOR_EPS * eps), int(s.PRECISION_FLOOR), code)
    code = xp.where(xp.isfinite(residual) & xp.isfinite(growth), code, int(s.NOT_FINITE))
    return xp.where(residual <= tol, int(s.CONVERGED), code)


def should_stop(iterations: Any, residual: Any, best_iteration: Any, tol: float) -> Any:
    """Whether an iteration stops before ``max_iter``: converged, non-finite, or no new best
    residual for ``STOP_WINDOW`` iterations (works on scalars and JAX arrays alike)."""
    return (residual <= tol) | (residual != residual) | (iterations - best_iteration >= STOP_WINDOW)


class Tracker:
    """The residual summary of one solve on the host (PyTorch's loops and the core's
    `anderson_host()`), from which `classify()` diagnoses the status."""

    def __init__(self, tol: float, eps: float) -> None:
        self.tol, self.eps = tol, eps
        self.k, self.r, self.r0, self.best, self.k_best = 0, math.inf, math.inf, math.inf, 0
        self.a0 = self.a = 1.0
        self.previous = math.nan

    def add(self, a: float, scale: float) -> bool:
        """Record the absolute residual ``a`` of the next iterate (relative: ``a / scale``);
        whether to stop."""
        r = a / scale
        self.k += 1
        self.previous, self.r, self.a = self.r, r, a
        if self.k == 1:
            self.r0, self.a0 = r, a
        if r < self.best:
            self.best, self.k_best = r, self.k
        return bool(should_stop(self.k, r, self.k_best, self.tol))

    def report(self) -> IterationReport:
        growth = self.a / self.a0 if self.a0 > 0 else 1.0
        k, r, best, k_best = self.k, self.r, self.best, self.k_best
        status = int(classify(np, k, r, best, k_best, growth, self.tol, self.eps))
        return IterationReport(k, r, self.r0, best, k_best, growth, status)


def failure_message(
    report: IterationReport,
    options: ImplicitOptions,
    problem: Problem,
    stage: str,
    eps: float,
    *,
    spectral_radius: float | None = None,
) -> str:
    """Why a solve stopped and which option fixes it (``stage``: forward or backward)."""
    status = ImplicitStatus(int(report.status))
    k, r = int(report.iterations), float(report.residual)
    best, k_best = (
        float(report.best_residual),
        int(report.best_iteration),
    )
    fixed = problem is Problem.FIXED_POINT
    forward = stage == "forward"
    what = f"{'fixed_point' if fixed else 'root_find'} {stage} solve"
    method = options.solver if forward else options.backward_solver
    method = getattr(method, "value", method)
    tol = float(options.tol if forward else options.backward_tol)  # type: ignore[arg-type]
    tol_name = "tol" if forward else "backward_tol"
    iter_name = "max_iter" if forward else "backward_max_iter"
    head = f"{what} ({method}) did not reach {tol_name}={tol:.1e}: residual {r:.2e}"
    head += f" after {k} iterations"
    if status is ImplicitStatus.CONVERGED:
        return f"{what} ({method}) converged: residual {r:.2e} after {k} iterations"
    if status is ImplicitStatus.NOT_FINITE:
        return (
            f"{head}. The iterates became NaN or infinite: "
            + (
                "f overflowed or returned NaN; check f at z0 and make f a contraction"
                if forward
                else "J_z f is far from a contraction or the cotangent is not finite; "
                "use backward_solver='gmres'"
            )
            + "."
        )
    if status is ImplicitStatus.PRECISION_FLOOR:
        name = dtype_name(eps)
        suggest = 10 * best
        return (
            f"{head}. It stalled at {best:.2e}, the rounding floor of {name} arithmetic "
            f"(eps {eps:.1e}): {tol_name}={tol:.1e} is below what {name} can resolve. Use "
            f"{tol_name} >= {suggest:.1e} (the {name} default is {default_tol(eps):.1e}) or "
            "compute in float64."
        )
    rho = ""
    if spectral_radius is not None:
        rho = f" The spectral radius of J_z f is about {spectral_radius:.3f}"
        rho += " (>= 1: not a contraction)." if spectral_radius >= 1 else "."
    if status is ImplicitStatus.DIVERGED or status is ImplicitStatus.STALLED:
        grew = status is ImplicitStatus.DIVERGED
        trend = (
            f"the residual ||F(z)|| grew {float(report.growth):.3g}-fold"
            if grew
            else f"it stalled (best {best:.2e} at iteration {k_best})"
        )
        if forward and fixed:
            fix = (
                "The map f is not a contraction along the iterates: keep it contractive (e.g. "
                "||W||_2 < 1, Jacobian regularisation), start closer with z0, or solve "
                "z - f(z) = 0 with root_find (Newton)"
            )
            if method == "anderson" and not grew:
                fix += ", or try solver='iteration' or a different memory"
        elif forward:
            fix = "J_z F may be singular or z0 too far: start closer or try the other solver"
        elif fixed:
            fix = (
                "The 'fixed_point'/'anderson' backward iterations need the spectral radius "
                "of J_z f below 1; backward_solver='gmres' solves (I - J_z f)' w = g "
                "exactly whenever I - J_z f is invertible"
            )
        else:
            fix = "J_z F may be singular at the root; try backward_solver='dense'"
        return f"{head}: {trend}.{rho} {fix}."
    # SLOW: still converging.
    growth = float(report.growth)
    rate = growth ** (1.0 / (k - 1)) if k > 1 and 0 < growth < math.inf else 1.0
    more = ""
    if 0 < rate < 1 and r > tol:
        needed = math.ceil(math.log(tol / r) / math.log(rate))
        more = f", shrinking by about {rate:.3f} per iteration: about {needed} more are needed"
    faster = {
        ("forward", "iteration"): " or solver='anderson'",
        ("backward", "fixed_point"): " or backward_solver='anderson' or 'gmres'",
    }.get((stage, str(method)), "")
    return f"{head}; it was still converging{more}. Raise {iter_name}{faster}.{rho}"


def anderson_weights(xp: Any, gram: Any, filled: Any, regularization: float) -> Any:
    """Anderson's mixing weights from the Gram matrix of the kept residuals.

    ``gram[i, j] = r_i . r_j`` for the residuals ``r_i = g(x_i) - x_i`` of the kept iterates
    (a ring buffer of ``m`` slots; ``filled`` masks the slots in use, ``None`` when all are).
    The weights solve

        min ||sum_i a_i r_i||^2 + lam ||a||^2   subject to  sum_i a_i = 1,

    ``lam = regularization * trace(gram)``, i.e. ``a = c / sum(c)`` with
    ``(gram + lam I) c = 1`` on the filled slots (zero elsewhere); the next iterate is
    ``sum_i a_i g(x_i)`` (type II, Walker and Ni 2011).  ``xp`` is numpy or ``jax.numpy``
    (PyTorch passes the filled block in numpy; JAX masks inside ``lax`` loops).
    """
    m = gram.shape[0]
    eye = xp.eye(m, dtype=gram.dtype)
    if filled is None:
        trace = xp.maximum(xp.trace(gram), xp.finfo(gram.dtype).tiny)
        c = xp.linalg.solve(gram + (regularization * trace) * eye, xp.ones(m, dtype=gram.dtype))
        return c / xp.sum(c)
    mask = filled[:, None] & filled[None, :]
    trace = xp.sum(xp.where(filled, xp.diagonal(gram), 0.0))
    trace = xp.maximum(trace, xp.finfo(gram.dtype).tiny)
    system = xp.where(mask, gram + regularization * trace * eye, eye)
    c = xp.linalg.solve(system, xp.where(filled, 1.0, 0.0).astype(gram.dtype))
    return c / xp.sum(c)


def anderson_weights_host(gram: list[list[float]], size: int, regularization: float) -> list[float]:
    """`anderson_weights()` on the host, for the loops that run in Python (PyTorch's): the
    same formula on the leading ``size x size`` block of ``gram`` (a list of rows), solved by
    a Cholesky factorization in plain Python (``gram + lam I`` is positive definite for
    ``lam > 0``).  For the memories used (``size <= 10``) this is faster than any numpy or
    LAPACK call, whose entry costs, between tensor operations, dominate an iteration of a
    small layer (measured: the digits DEQ's float32 gradient 3.7 vs 4.4 ms).  Falls back to
    least squares if rounding breaks the factorization, and to equal weights if all
    residuals are zero.  `anderson_step_weights()` uses its numba twin
    (``_numba_anderson.anderson_weights_into``) when numba is installed.
    """
    n = size
    lam = regularization * max(sum([gram[i][i] for i in range(n)]), _TINY)
    L: list[list[float]] = []  # explicit loops: generator expressions cost twice as much
    for i in range(n):
        gi, Li = gram[i], [0.0] * (i + 1)
        for c in range(i):
            Lc, s = L[c], gi[c]
            for t in range(c):
                s -= Li[t] * Lc[t]
            Li[c] = s / Lc[c]
        s = gi[i] + lam
        for t in range(i):
            s -= Li[t] * Li[t]
        if not 0.0 < s < math.inf:
            return _weights_lstsq(gram, n, lam)
        Li[i] = math.sqrt(s)
        L.append(Li)
    y: list[float] = []
    for i in range(n):
        Li, s = L[i], 1.0
        for t in range(i):
            s -= Li[t] * y[t]
        y.append(s / Li[i])
    c = [0.0] * n
    for i in range(n - 1, -1, -1):
        s = y[i]
        for t in range(i + 1, n):
            s -= L[t][i] * c[t]
        c[i] = s / L[i][i]
    return _normalized(c)


def _weights_lstsq(gram: list[list[float]], n: int, lam: float) -> list[float]:
    system = np.array([row[:n] for row in gram[:n]]) + lam * np.eye(n)
    return _normalized(np.linalg.lstsq(system, np.ones(n), rcond=None)[0].tolist())


def _normalized(c: list[float]) -> list[float]:
    total = sum(c)
    if not (math.isfinite(total) and total != 0.0):  # all residuals zero: nothing to mix
        return [1.0 / len(c)] * len(c)
    return [v / total for v in c]


def anderson_host(
    g: Callable[[FloatArray], FloatArray],
    x: FloatArray,
    gx: FloatArray,
    max_iter: int,
    memory: int,
    regularization: float,
    track: Tracker,
    scale: float | None = None,
) -> FloatArray:
    """Anderson acceleration of ``x <- g(x)`` on host vectors (float32 or float64), with
    `anderson_step_weights()` on a ring buffer of ``memory`` iterates; returns the last
    ``g(x)``.  Residuals ``||g(x) - x||`` are relative to ``1 + ||x||``, or to ``scale``
    when given (an adjoint equation: ``||g||``); ``track`` records them and decides when
    to stop.

    This is the loop PyTorch runs for CPU tensors (``torch.from_numpy`` shares memory):
    besides ``g``, six numpy calls per iteration, where the same steps as tensor operations
    cost about twice as much, which on small layers is more than ``g`` itself.
    """
    m, n = memory, x.size
    G = np.zeros((m, n), x.dtype)
    R = np.zeros((m, n), x.dtype)
    gram = np.zeros((m, m))
    for k in range(max_iter):
        slot, j = k % m, min(k + 1, m)  # the filled slots are a prefix of the ring buffer
        r = np.subtract(gx, x, out=R[slot])
        G[slot] = gx
        row = R[:j] @ r
        size = scale or 1.0 + math.sqrt(float(x @ x))
        if track.add(math.sqrt(max(float(row[slot]), 0.0)), size) or track.k == max_iter:
            break
        x = anderson_step_weights(gram, row, slot, j, regularization).astype(x.dtype) @ G[:j]
        gx = g(x)
    return gx


def anderson_step_weights(
    gram: FloatArray, row: FloatArray, slot: int, size: int, regularization: float
) -> FloatArray:
    """One iteration's Anderson weights on the host: ``row`` (the new residual's inner
    products with the ``size`` kept ones) goes into row and column ``slot`` of the
    float64 Gram array ``gram``, and the weights of its leading ``size x size`` block come
    back.  One numba call when numba is installed (``_numba_anderson``, about 1 us);
    otherwise, and where the kernel declines (rounding breaks its Cholesky, or all
    residuals are zero), `anderson_weights_host()` in plain Python."""
    kernel, out = compiled("_numba_anderson"), np.empty(size)
    if kernel is not None and kernel.anderson_weights_into(
        gram, row, slot, size, regularization, out
    ):
        return out
    gram[slot, :size] = gram[:size, slot] = row
    return np.asarray(anderson_weights_host(gram[:size, :size].tolist(), size, regularization))


def solve_linear(
    apply: Callable[[FloatArray], FloatArray],
    rhs: FloatArray,
    *,
    method: BackwardSolver,
    tol: float,
    max_iter: int,
) -> tuple[FloatArray, int, float]:
    """Solve ``M w = rhs`` matrix-free (``apply(w) = M w``) with SciPy's GMRES or BiCGSTAB.

    Returns the solution, the products used and the relative residual.
    """
    if method not in (BackwardSolver.GMRES, BackwardSolver.BICGSTAB):
        raise ValueError(f"solve_linear runs 'gmres' or 'bicgstab', not {method.value!r}")
    norm = max(float(np.linalg.norm(rhs)), np.finfo(float).tiny)
    op = _Counting(apply, rhs.size)
    if method is BackwardSolver.GMRES:
        w, _ = spla.gmres(op, rhs, rtol=tol, atol=0.0, maxiter=max_iter, restart=min(rhs.size, 50))
    else:
        w, _ = spla.bicgstab(op, rhs, rtol=tol, atol=0.0, maxiter=max_iter)
    res = float(np.linalg.norm(apply(w) - rhs)) / norm
    return w, op.count, res


class _Counting(spla.LinearOperator):
    """A matrix-free operator that counts its products."""

    def __init__(self, op: Callable[[FloatArray], FloatArray], size: int) -> None:
        super().__init__(dtype=np.float64, shape=(size, size))
        self.op = op
        self.count = 0

    def _matvec(self, x: FloatArray) -> FloatArray:
        self.count += 1
        return self.op(np.asarray(x, dtype=np.float64).ravel())
