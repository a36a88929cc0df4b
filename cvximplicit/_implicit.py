"""Framework-free pieces of implicit layers: the adjoint linear solve and its report.

An implicit layer returns ``z*(x)`` defined by a fixed point ``z = f(z, x)`` or a root
``F(z, x) = 0``.  By the nonsmooth implicit function theorem (the seed's theorem), with
``A = d/dx`` and ``B = d/dz`` of the residual taken as any element of its conservative
Jacobian (what autodiff returns, even at kinks of ``relu``), ``dz*/dx = -B^{-1} A``.  For a
fixed point the residual is ``z - f(z, x)``, so ``B = I - J_z f``; the backward pass solves

    (I - J_z f)' w = g      (fixed point)          J_z F' w = g      (root)

using vector-Jacobian products only, then returns ``J_x f' w`` (or ``-J_x F' w``).

This module holds the solver of that linear system for callers that work in numpy (the
PyTorch adapter), the spectral-radius estimate that makes invertibility visible, and the
report both adapters fill.  The JAX adapter implements the same algorithms with
``jax.lax`` loops so that they run under ``jit`` and ``vmap``; sharing one numpy
implementation would force host callbacks into JAX and copies into PyTorch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import scipy.sparse.linalg as spla

from ._typing import FloatArray

__all__ = ["BACKWARD_METHODS", "ImplicitInfo", "solve_linear", "spectral_radius"]

#: Methods for the backward linear solve.
BACKWARD_METHODS = ("fixed_point", "gmres", "bicgstab")


@dataclasses.dataclass
class ImplicitInfo:
    """What the forward and backward solves of an implicit layer did.

    ``spectral_radius`` estimates the spectral radius of $J_z f$ (fixed points; below one
    means the backward fixed-point iteration converges and $I - J_z f$ is invertible) and is
    computed when the backward pass runs, or on request.
    """

    forward_method: str = ""
    forward_iterations: int = 0
    forward_residual: float = float("nan")
    forward_converged: bool = False
    backward_method: str = ""
    backward_iterations: int = 0
    backward_residual: float = float("nan")
    backward_converged: bool | None = None
    spectral_radius: float | None = None

    def __str__(self) -> str:
        rho = "not estimated" if self.spectral_radius is None else f"{self.spectral_radius:.3f}"
        back = (
            "not run"
            if self.backward_converged is None
            else f"{self.backward_method}, {self.backward_iterations} iterations, residual "
            f"{self.backward_residual:.2e}, converged {self.backward_converged}"
        )
        return (
            f"forward   {self.forward_method}, {self.forward_iterations} iterations, residual "
            f"{self.forward_residual:.2e}, converged {self.forward_converged}\n"
            f"backward  {back}\nspectral radius of J_z f: {rho}"
        )


def solve_linear(
    apply: Callable[[FloatArray], FloatArray],
    rhs: FloatArray,
    *,
    method: str,
    fixed_point: bool,
    tol: float,
    max_iter: int,
) -> tuple[FloatArray, int, float, bool]:
    """Solve ``(I - M) w = rhs`` (``fixed_point=True``) or ``M w = rhs`` matrix-free.

    ``apply(w) = M w``.  ``method`` is ``"fixed_point"`` (the iteration ``w <- rhs + M w``,
    fixed points only), ``"gmres"`` or ``"bicgstab"`` (SciPy, restarted).  Returns the
    solution, the iterations used, the relative residual and whether ``tol`` was reached.
    """
    if method not in BACKWARD_METHODS:
        raise ValueError(f"unknown backward method {method!r}; choose from {BACKWARD_METHODS}")
    norm = max(float(np.linalg.norm(rhs)), np.finfo(float).tiny)
    if fixed_point:
        op = lambda w: w - apply(w)  # noqa: E731
    else:
        if method == "fixed_point":
            raise ValueError("method 'fixed_point' needs a fixed-point problem; use 'gmres'")
        op = apply
    if method == "fixed_point":
        w = rhs.copy()
        for k in range(1, max_iter + 1):
            w_new = rhs + apply(w)
            step = float(np.linalg.norm(w_new - w))
            w = w_new
            if step <= tol * norm:
                res = float(np.linalg.norm(op(w) - rhs)) / norm
                return w, k, res, True
        res = float(np.linalg.norm(op(w) - rhs)) / norm
        return w, max_iter, res, res <= tol
    A = _Counting(op, rhs.size)
    solver = spla.gmres if method == "gmres" else spla.bicgstab
    kwargs = {"restart": min(rhs.size, 50)} if method == "gmres" else {}
    w, _ = solver(A, rhs, rtol=tol, atol=0.0, maxiter=max_iter, **kwargs)
    res = float(np.linalg.norm(op(w) - rhs)) / norm
    return w, A.count, res, res <= 10 * tol


class _Counting(spla.LinearOperator):
    """A matrix-free operator that counts its products."""

    def __init__(self, op: Callable[[FloatArray], FloatArray], size: int) -> None:
        super().__init__(dtype=np.float64, shape=(size, size))
        self.op = op
        self.count = 0

    def _matvec(self, x: FloatArray) -> FloatArray:
        self.count += 1
        return self.op(np.asarray(x, dtype=np.float64).ravel())


def spectral_radius(
    apply: Callable[[FloatArray], FloatArray], dim: int, *, iterations: int = 30, seed: int = 0
) -> float:
    """Power-iteration estimate of the spectral radius of ``M`` from products ``M v``."""
    v = np.random.default_rng(seed).standard_normal(dim)
    v /= np.linalg.norm(v)
    estimate = 0.0
    for _ in range(iterations):
        u = apply(v)
        norm = float(np.linalg.norm(u))
        if norm == 0.0:
            return 0.0
        estimate = norm
        v = u / norm
    return estimate
