"""Implicit layers for PyTorch: fixed points and roots with conservative-Jacobian gradients."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .._errors import ConvergenceError, ConvergenceWarning
from .._implicit import ImplicitInfo, solve_linear, spectral_radius

__all__ = ["fixed_point", "root_find"]

Tensor = torch.Tensor


def _fail(message: str, on_failure: str) -> None:
    if on_failure == "raise":
        raise ConvergenceError(message)
    if on_failure == "warn":
        warnings.warn(message, ConvergenceWarning, stacklevel=4)


def _residual(a: Tensor, b: Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / (1.0 + torch.linalg.vector_norm(b)))


def _iterate(g: Callable[[Tensor], Tensor], z: Tensor, tol: float, max_iter: int):
    res = float("inf")
    for k in range(1, max_iter + 1):
        z_new = g(z)
        res = _residual(z_new, z)
        z = z_new
        if res <= tol:
            return z, k, res, True
    return z, max_iter, res, False


def _anderson(
    g: Callable[[Tensor], Tensor], z: Tensor, tol: float, max_iter: int, memory: int, lam: float
):
    """Anderson acceleration (type II, Walker and Ni 2011) on the flattened iterate."""
    shape = z.shape
    x = z.reshape(-1)
    X: list[Tensor] = []
    G: list[Tensor] = []
    res = float("inf")
    for k in range(1, max_iter + 1):
        gx = g(x.reshape(shape)).reshape(-1)
        res = _residual(gx, x)
        if res <= tol:
            return gx.reshape(shape), k, res, True
        X.append(x)
        G.append(gx)
        if len(X) > memory + 1:
            X.pop(0)
            G.pop(0)
        if len(X) == 1:
            x = gx
            continue
        F = torch.stack([gi - xi for gi, xi in zip(G, X)], dim=1)  # residuals, (N, m)
        dF = F[:, 1:] - F[:, :-1]
        dG = torch.stack(G, dim=1)[:, 1:] - torch.stack(G, dim=1)[:, :-1]
        gram = dF.T @ dF + lam * torch.eye(dF.shape[1], dtype=dF.dtype, device=dF.device)
        gamma = torch.linalg.solve(gram, dF.T @ F[:, -1])
        x = G[-1] - dG @ gamma
    return x.reshape(shape), max_iter, res, False


def _forward(
    f_z: Callable[[Tensor], Tensor], z0: Tensor, solver: str, tol: float, max_iter: int, memory: int
) -> tuple[Tensor, int, float, bool]:
    if solver == "iteration":
        return _iterate(f_z, z0, tol, max_iter)
    if solver == "anderson":
        return _anderson(f_z, z0, tol, max_iter, memory, 1e-10)
    raise ValueError(f"unknown fixed-point solver {solver!r}; choose 'anderson' or 'iteration'")


def _numpy_vjp(out: Tensor, inp: Tensor) -> Callable[[np.ndarray], np.ndarray]:
    def apply(v: np.ndarray) -> np.ndarray:
        vt = torch.as_tensor(v, dtype=out.dtype, device=out.device).reshape(out.shape)
        (g,) = torch.autograd.grad(out, inp, vt, retain_graph=True)
        return g.detach().reshape(-1).to(torch.float64).cpu().numpy()

    return apply


def _torch_fixed_point_adjoint(
    f_in: Tensor, z_in: Tensor, g: Tensor, tol: float, max_iter: int
) -> tuple[Tensor, int, float, bool]:
    """``w = g + J' w`` iterated with autograd VJPs, entirely in torch."""
    g = g.detach()
    gnorm = float(torch.linalg.vector_norm(g)) or 1.0
    w = g
    for k in range(1, max_iter + 1):
        (jw,) = torch.autograd.grad(f_in, z_in, w, retain_graph=True)
        w_new = g + jw
        step = float(torch.linalg.vector_norm(w_new - w))
        w = w_new
        if step <= tol * gnorm:
            (jw,) = torch.autograd.grad(f_in, z_in, w, retain_graph=True)
            res = float(torch.linalg.vector_norm(w - jw - g)) / gnorm
            return w, k, res, True
    (jw,) = torch.autograd.grad(f_in, z_in, w, retain_graph=True)
    res = float(torch.linalg.vector_norm(w - jw - g)) / gnorm
    return w, max_iter, res, res <= tol


def fixed_point(
    f: Callable[..., Tensor],
    z0: Tensor,
    *args: Any,
    solver: str = "anderson",
    tol: float = 1e-8,
    max_iter: int = 500,
    memory: int = 5,
    backward: str = "implicit",
    backward_solver: str = "fixed_point",
    backward_tol: float | None = None,
    backward_max_iter: int | None = None,
    spectral_radius_iterations: int = 10,
    on_failure: str = "raise",
    return_info: bool = False,
) -> Any:
    r"""A fixed point $z^\star = f(z^\star, \mathrm{args})$, differentiable in ``args`` and in
    every tensor ``f`` closes over (e.g. the weights of ``torch.nn`` modules).

    Forward: ``solver="anderson"`` (default) or ``"iteration"`` from ``z0``, without building
    a graph, until $\|f(z) - z\| \le \mathrm{tol}\,(1 + \|z\|)$.  Backward
    (``backward="implicit"``): with $J = J_z f(z^\star)$ the vector-Jacobian products autograd
    gives, solve $(I - J)^\top w = g$ matrix-free (``backward_solver``: ``"fixed_point"``,
    ``"gmres"`` or ``"bicgstab"``), then propagate $w$ through one application of $f$.  No
    unrolling; ``backward="unroll"`` differentiates through the forward iterations instead,
    for comparison.

    Why this is valid at kinks: autograd's VJPs of ``relu``, ``abs``, ``max`` ... are
    elements of a conservative Jacobian, and by the nonsmooth implicit function theorem
    $-B^{-1} A$ built from any such element (here $B = I - J$) is a conservative Jacobian
    of $z^\star$: a legitimate gradient for first-order training, provided every such $B$ is
    invertible.  When $f$ is a contraction for every Jacobian element (e.g.
    $\operatorname{relu}(Wz + Ux)$ with $\|W\|_2 < 1$) this holds and the backward fixed-point
    iteration converges.

    Failures: if the forward or backward iteration does not reach its tolerance,
    ``on_failure="raise"`` (default) raises :class:`cvximplicit.ConvergenceError` (the
    backward message includes a power-iteration estimate of the spectral radius of ``J``),
    ``"warn"`` warns with :class:`cvximplicit.ConvergenceWarning` and returns the last
    iterate.  ``spectral_radius_iterations`` (default 10; 0 disables) power-iteration steps on
    VJPs estimate the spectral radius of ``J`` in every backward pass (at least 20 when the
    backward solve failed, for the error message).  With ``return_info=True`` the result is
    ``(z, info)``, an
    :class:`~cvximplicit.ImplicitInfo` whose backward fields are filled when the backward
    pass runs.

    Examples:
        >>> import torch
        >>> from cvximplicit.torch import fixed_point
        >>> W = 0.5 * torch.eye(3, dtype=torch.float64)
        >>> x = torch.ones(3, dtype=torch.float64, requires_grad=True)
        >>> f = lambda z, x: torch.relu(W @ z + x)
        >>> z = fixed_point(f, torch.zeros(3, dtype=torch.float64), x)
        >>> z.sum().backward()
        >>> torch.round(x.grad, decimals=6)  # dz/dx = (I - W)^{-1} = 2 I
        tensor([2., 2., 2.], dtype=torch.float64)
    """
    if on_failure not in ("raise", "warn"):
        raise ValueError(f"on_failure must be 'raise' or 'warn', got {on_failure!r}")
    info = ImplicitInfo(forward_method=solver)
    if backward == "unroll":
        f_z = lambda z: f(z, *args)  # noqa: E731
        z, k, res, ok = _forward(f_z, z0, solver, tol, max_iter, memory)
        info.forward_iterations, info.forward_residual, info.forward_converged = k, res, ok
        if not ok:
            _fail(
                f"fixed_point did not converge: residual {res:.2e} after {k} iterations", on_failure
            )
        return (z, info) if return_info else z
    if backward != "implicit":
        raise ValueError(f"backward must be 'implicit' or 'unroll', got {backward!r}")
    with torch.no_grad():
        z_star, k, res, ok = _forward(
            lambda z: f(z, *args), z0.detach(), solver, tol, max_iter, memory
        )
    info.forward_iterations, info.forward_residual, info.forward_converged = k, res, ok
    if not ok:
        _fail(
            f"fixed_point did not converge: residual {res:.2e} after {k} iterations "
            f"({solver}); increase max_iter or check that f is a contraction",
            on_failure,
        )
    if not torch.is_grad_enabled():
        return (z_star, info) if return_info else z_star
    z_star = z_star.detach()
    z_out = f(z_star, *args)  # one differentiable application: connects z* to the parameters
    if not z_out.requires_grad:
        return (z_out, info) if return_info else z_out
    z_in = z_star.clone().requires_grad_()
    with torch.enable_grad():
        f_in = f(z_in, *args)
    b_tol = tol if backward_tol is None else backward_tol
    b_iter = max_iter if backward_max_iter is None else backward_max_iter

    def hook(grad: Tensor) -> Tensor:
        apply = _numpy_vjp(f_in, z_in)
        g = grad.detach().reshape(-1).to(torch.float64).cpu().numpy()
        if backward_solver == "fixed_point":  # in torch: no host round trips per iteration
            w_t, its, rres, conv = _torch_fixed_point_adjoint(f_in, z_in, grad, b_tol, b_iter)
            w = w_t.reshape(-1).to(torch.float64).cpu().numpy()
        else:
            w, its, rres, conv = solve_linear(
                apply, g, method=backward_solver, fixed_point=True, tol=b_tol, max_iter=b_iter
            )
        info.backward_method, info.backward_iterations = backward_solver, its
        info.backward_residual, info.backward_converged = rres, conv
        if spectral_radius_iterations or not conv:
            iters = spectral_radius_iterations if conv else max(spectral_radius_iterations, 20)
            info.spectral_radius = spectral_radius(apply, g.size, iterations=iters)
        if not conv:
            _fail(
                f"fixed_point backward solve did not converge ({backward_solver}: residual "
                f"{rres:.2e} after {its} iterations); estimated spectral radius of J_z f is "
                f"{info.spectral_radius:.3f} (it must be below 1 for I - J_z f to be safely "
                "invertible and for the 'fixed_point' backward solver to converge)",
                on_failure,
            )
        return torch.as_tensor(w, dtype=grad.dtype, device=grad.device).reshape(grad.shape)

    z_out.register_hook(hook)
    return (z_out, info) if return_info else z_out


def root_find(
    F: Callable[..., Tensor],
    z0: Tensor,
    *args: Any,
    solver: str = "newton",
    tol: float = 1e-10,
    max_iter: int = 100,
    backward_solver: str = "gmres",
    backward_tol: float | None = None,
    backward_max_iter: int | None = None,
    on_failure: str = "raise",
    return_info: bool = False,
) -> Any:
    r"""A root $F(z^\star, \mathrm{args}) = 0$, differentiable in ``args`` and in tensors ``F``
    closes over.

    Forward: ``solver="newton"`` (dense Jacobian from autograd, backtracking on $\|F\|$) or
    ``"broyden"`` (good Broyden on the inverse Jacobian), until $\|F\| \le \mathrm{tol}$.
    Backward: solve $(J_z F)^\top w = g$ matrix-free with VJPs of $F$
    (``backward_solver="gmres"`` or ``"bicgstab"``) and return $-(J_{\mathrm{args}} F)^\top w$:
    the implicit function theorem with $B = J_z F$ (any element of its conservative Jacobian,
    as autograd returns at kinks).

    Examples:
        >>> import torch
        >>> from cvximplicit.torch import root_find
        >>> x = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
        >>> z = root_find(lambda z, x: z**3 + z - x, torch.zeros((), dtype=torch.float64), x)
        >>> z.backward(); round(float(x.grad), 6)  # dz/dx = 1 / (3 z^2 + 1) at z = 1
        0.25
    """
    if on_failure not in ("raise", "warn"):
        raise ValueError(f"on_failure must be 'raise' or 'warn', got {on_failure!r}")
    info = ImplicitInfo(forward_method=solver)
    shape = z0.shape

    def flat_F(z: Tensor) -> Tensor:
        return F(z.reshape(shape), *args).reshape(-1)

    with torch.no_grad():
        z = z0.detach().reshape(-1).clone()
        r = flat_F(z)
        norm = float(torch.linalg.vector_norm(r))
        H: Tensor | None = None
        k = 0
        while k < max_iter and norm > tol:
            k += 1
            if solver == "newton":
                with torch.enable_grad():
                    J = torch.autograd.functional.jacobian(flat_F, z)
                step = -torch.linalg.lstsq(J, r[:, None]).solution[:, 0]
            elif solver == "broyden":
                if H is None:
                    with torch.enable_grad():
                        J = torch.autograd.functional.jacobian(flat_F, z)
                    H = torch.linalg.pinv(J)
                assert H is not None
                step = -(H @ r)
            else:
                raise ValueError(f"unknown root solver {solver!r}; choose 'newton' or 'broyden'")
            alpha = 1.0
            while True:
                z_new = z + alpha * step
                r_new = flat_F(z_new)
                new = float(torch.linalg.vector_norm(r_new))
                if new < norm or alpha < 1e-4:
                    break
                alpha *= 0.5
            if solver == "broyden" and H is not None:
                s, y = z_new - z, r_new - r
                Hy = H @ y
                denom = s @ Hy
                if abs(float(denom)) > 1e-300:
                    H = H + torch.outer(s - Hy, s @ H) / denom
            z, r, norm = z_new, r_new, new
        ok = norm <= tol
    info.forward_iterations, info.forward_residual, info.forward_converged = k, norm, ok
    if not ok:
        _fail(f"root_find did not converge: ||F|| = {norm:.2e} after {k} iterations", on_failure)
    z_star = z.reshape(shape)
    if not torch.is_grad_enabled():
        return (z_star, info) if return_info else z_star
    z_in = z_star.clone().requires_grad_()
    with torch.enable_grad():
        F_in = F(z_in, *args)
    F_star = F(z_star, *args)
    z_out = z_star - (F_star - F_star.detach())  # value exactly z*; gradient -J_args F' w
    if not z_out.requires_grad:
        return (z_star, info) if return_info else z_star
    b_tol = 1e-12 if backward_tol is None else backward_tol
    b_iter = 10 * z_star.numel() if backward_max_iter is None else backward_max_iter

    def hook(grad: Tensor) -> Tensor:
        apply = _numpy_vjp(F_in, z_in)
        g = grad.detach().reshape(-1).to(torch.float64).cpu().numpy()
        w, its, rres, conv = solve_linear(
            apply, g, method=backward_solver, fixed_point=False, tol=b_tol, max_iter=b_iter
        )
        info.backward_method, info.backward_iterations = backward_solver, its
        info.backward_residual, info.backward_converged = rres, conv
        if not conv:
            _fail(
                f"root_find backward solve did not converge ({backward_solver}: residual "
                f"{rres:.2e}); J_z F may be singular at the root",
                on_failure,
            )
        return torch.as_tensor(w, dtype=grad.dtype, device=grad.device).reshape(grad.shape)

    z_out.register_hook(hook)
    return (z_out, info) if return_info else z_out
