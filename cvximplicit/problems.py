"""Random instances of standard parametrized problem families.

Used by the tests, the examples and the benchmarks, and handy for trying a solver or a
derivative setting on something realistic.  Each function returns a `Family`: a
CVXPY problem, its parameters, the outputs to differentiate and random parameter values.

Examples:
    >>> import cvximplicit as ci
    >>> fam = ci.problems.nnls(m=20, n=10, seed=0)
    >>> program = ci.compile(fam.problem, fam.parameters, fam.variables)
    >>> x, dual = program.solve(*fam.values).values
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import cvxpy as cp
import numpy as np

__all__ = [
    "FAMILIES",
    "Family",
    "banded_qp",
    "entropy_simplex",
    "geometric_program",
    "grid_qp",
    "lasso",
    "logistic",
    "lp_box",
    "max_eigenvalue",
    "maxcut_sdp",
    "nearest_correlation",
    "nnls",
    "pnorm_regression",
    "qp",
    "socp",
    "socp_ball",
    "spectra",
]


@dataclasses.dataclass
class Family:
    """A problem instance: ``problem`` with ``parameters`` set to ``values``; ``variables``
    are the outputs (variables, or constraints for their duals)."""

    name: str
    problem: cp.Problem
    parameters: list[cp.Parameter]
    variables: list[Any]
    values: list[np.ndarray]
    has_quadratic: bool = True


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def nnls(m: int = 12, n: int = 8, seed: int | np.random.Generator = 0) -> Family:
    r"""Nonnegative least squares $\min_x \tfrac12 \|Ax - b\|_2^2$ s.t. $x \ge 0$; parameters
    ``A, b``; outputs ``x`` and the dual of ``x >= 0``."""
    rng = _rng(seed)
    x = cp.Variable(n)
    A, b = cp.Parameter((m, n)), cp.Parameter(m)
    con = x >= 0
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(A @ x - b)), [con])
    values = [rng.standard_normal((m, n)), rng.standard_normal(m)]
    return Family("nnls", prob, [A, b], [x, con], values)


def lasso(m: int = 15, n: int = 10, seed: int | np.random.Generator = 0) -> Family:
    r"""LASSO $\min_x \tfrac12 \|Ax - b\|_2^2 + \lambda \|x\|_1$; parameters ``A, b, lam``
    ($\lambda$); output ``x``."""
    rng = _rng(seed)
    x = cp.Variable(n)
    A, b = cp.Parameter((m, n)), cp.Parameter(m)
    lam = cp.Parameter(nonneg=True)
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(A @ x - b) + lam * cp.norm1(x)))
    Av = rng.standard_normal((m, n))
    bv = rng.standard_normal(m)
    lam_max = float(np.abs(Av.T @ bv).max())
    return Family("lasso", prob, [A, b, lam], [x], [Av, bv, np.array(0.2 * lam_max)])


def qp(n: int = 10, p: int = 6, q: int = 2, seed: int | np.random.Generator = 0) -> Family:
    r"""QP $\min_x \tfrac12 x^\top Q x + c^\top x$ s.t. $Gx \le h$, $Fx = g$ with ``Q`` a PSD
    parameter (``quad_form``); parameters ``Q, c, h, g``; outputs ``x`` and both duals."""
    rng = _rng(seed)
    x = cp.Variable(n)
    Q = cp.Parameter((n, n), PSD=True)
    c, h, g = cp.Parameter(n), cp.Parameter(p), cp.Parameter(q)
    G = rng.standard_normal((p, n))
    F = rng.standard_normal((q, n))
    ineq, eq = G @ x <= h, F @ x == g
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, Q) + c @ x), [ineq, eq])
    L = rng.standard_normal((n, n))
    x0 = rng.standard_normal(n)
    values = [
        L @ L.T / n + 0.5 * np.eye(n),
        rng.standard_normal(n),
        G @ x0 + rng.uniform(0, 1, p),
        F @ x0,
    ]
    return Family("qp", prob, [Q, c, h, g], [x, ineq, eq], values)


def lp_box(n: int = 8, p: int = 3, seed: int | np.random.Generator = 0) -> Family:
    r"""LP with box constraints $\min_x c^\top x$ s.t. $Ax = b$, $-1 \le x \le 1$; parameters
    ``c, b``; outputs ``x`` and the equality dual."""
    rng = _rng(seed)
    x = cp.Variable(n)
    c, b = cp.Parameter(n), cp.Parameter(p)
    A = rng.standard_normal((p, n))
    eq = A @ x == b
    constraints: list[Any] = [eq, x >= -1, x <= 1]
    prob = cp.Problem(cp.Minimize(c @ x), constraints)
    values = [rng.standard_normal(n), A @ rng.uniform(-0.5, 0.5, n)]
    return Family("lp_box", prob, [c, b], [x, eq], values, has_quadratic=False)


def socp(m: int = 10, n: int = 6, seed: int | np.random.Generator = 0) -> Family:
    r"""Robust least squares $\min_x \|Ax - b\|_2 + \mu \|x\|_2 + 0.1 \|x\|_2^2$ s.t.
    $\sum_i x_i = 1$; parameters ``A, b, mu`` ($\mu$); outputs ``x`` and the equality dual."""
    rng = _rng(seed)
    x = cp.Variable(n)
    A, b = cp.Parameter((m, n)), cp.Parameter(m)
    mu = cp.Parameter(nonneg=True)
    eq = cp.sum(x) == 1
    objective = cp.norm2(A @ x - b) + mu * cp.norm2(x) + 0.1 * cp.sum_squares(x)
    constraints: list[Any] = [eq]
    prob = cp.Problem(cp.Minimize(objective), constraints)
    values = [rng.standard_normal((m, n)), rng.standard_normal(m), np.array(0.3)]
    return Family("socp", prob, [A, b, mu], [x, eq], values)


def socp_ball(n: int = 6, seed: int | np.random.Generator = 0) -> Family:
    """Linear objective over a ball cut by a halfspace (the SOC constraint is active);
    parameters ``c, r``; outputs ``x`` and the ball constraint's dual."""
    rng = _rng(seed)
    x = cp.Variable(n)
    c, r = cp.Parameter(n), cp.Parameter(nonneg=True)
    ball = cp.norm2(x) <= r
    constraints: list[Any] = [ball, cp.sum(x) <= 0.5]
    prob = cp.Problem(cp.Minimize(c @ x), constraints)
    values = [rng.standard_normal(n), np.array(1.5)]
    return Family("socp_ball", prob, [c, r], [x, ball], values, has_quadratic=False)


def nearest_correlation(k: int = 5, seed: int | np.random.Generator = 0) -> Family:
    r"""Nearest correlation matrix $\min_X \|X - C\|_F^2$ s.t. $X \succeq 0$,
    $\operatorname{diag}(X) = 1$; parameter ``C`` (symmetric); outputs ``X`` and the PSD
    constraint's dual."""
    rng = _rng(seed)
    X = cp.Variable((k, k), symmetric=True)
    C = cp.Parameter((k, k), symmetric=True)
    psd = X >> 0
    constraints: list[Any] = [psd, cp.diag(X) == 1]
    prob = cp.Problem(cp.Minimize(cp.sum_squares(X - C)), constraints)
    G = rng.standard_normal((k, 2 * k))
    corr = np.corrcoef(G)
    noise = 0.3 * rng.standard_normal((k, k))
    return Family("nearest_correlation", prob, [C], [X, psd], [corr + 0.5 * (noise + noise.T)])


def maxcut_sdp(k: int = 5, seed: int | np.random.Generator = 0) -> Family:
    r"""The max-cut SDP relaxation $\min_X \langle C, X\rangle$ s.t. $\operatorname{diag}(X) = 1$,
    $X \succeq 0$ (a linear SDP, no
    quadratic term); parameter ``C`` (symmetric); outputs ``X`` and the PSD dual."""
    rng = _rng(seed)
    X = cp.Variable((k, k), symmetric=True)
    C = cp.Parameter((k, k), symmetric=True)
    psd = X >> 0
    constraints: list[Any] = [psd, cp.diag(X) == 1]
    prob = cp.Problem(cp.Minimize(cp.trace(C @ X)), constraints)
    B = rng.standard_normal((k, k))
    return Family("maxcut_sdp", prob, [C], [X, psd], [(B + B.T) / 2], has_quadratic=False)


def max_eigenvalue(k: int = 5, seed: int | np.random.Generator = 0) -> Family:
    r"""Smallest $t$ with $tI - (A_0 + \sum_i w_i A_i) \succeq 0$ plus a ridge on $w$
    (a max-eigenvalue minimisation); parameter ``A0`` (symmetric); output ``w``."""
    rng = _rng(seed)
    m = 3
    w, t = cp.Variable(m), cp.Variable()
    A0 = cp.Parameter((k, k), symmetric=True)
    basis = []
    for _ in range(m):
        B = rng.standard_normal((k, k))
        basis.append((B + B.T) / 2)
    M = A0 + sum(w[i] * basis[i] for i in range(m))
    constraints: list[Any] = [t * np.eye(k) - M >> 0]
    prob = cp.Problem(cp.Minimize(t + 0.5 * cp.sum_squares(w)), constraints)
    B0 = rng.standard_normal((k, k))
    return Family("max_eigenvalue", prob, [A0], [w, t], [(B0 + B0.T) / 2], has_quadratic=True)


def entropy_simplex(n: int = 6, seed: int | np.random.Generator = 0) -> Family:
    r"""Entropy-regularised projection onto a capped simplex
    $\min_x -z^\top x - \sum_i \operatorname{entr}(x_i)$ s.t. $\sum_i x_i = 1$,
    $x \le \mathrm{cap}$ (a constrained softmax);
    parameters ``z, cap``; outputs ``x`` and the equality dual."""
    rng = _rng(seed)
    x = cp.Variable(n)
    z, cap = cp.Parameter(n), cp.Parameter(nonneg=True)
    eq = cp.sum(x) == 1
    constraints: list[Any] = [eq, x <= cap]
    prob = cp.Problem(cp.Minimize(-z @ x - cp.sum(cp.entr(x))), constraints)
    return Family(
        "entropy_simplex",
        prob,
        [z, cap],
        [x, eq],
        [rng.standard_normal(n), np.array(1.5 / n)],
        has_quadratic=False,
    )


def logistic(m: int = 30, n: int = 4, seed: int | np.random.Generator = 0) -> Family:
    r"""L2-regularised logistic regression with per-sample weights
    $\min_\beta \sum_i w_i \log\bigl(1 + e^{-y_i a_i^\top \beta}\bigr) + \lambda \|\beta\|_2^2$;
    parameters ``w, lam`` ($\lambda$; nonnegative); output ``beta``."""
    rng = _rng(seed)
    A = rng.standard_normal((m, n))
    y = np.sign(A @ rng.standard_normal(n) + 0.5 * rng.standard_normal(m))
    beta = cp.Variable(n)
    w = cp.Parameter(m, nonneg=True)
    lam = cp.Parameter(nonneg=True)
    loss = w @ cp.logistic(-cp.multiply(y, A @ beta))
    prob = cp.Problem(cp.Minimize(loss + lam * cp.sum_squares(beta)))
    return Family("logistic", prob, [w, lam], [beta], [rng.uniform(0.5, 1.5, m), np.array(0.1)])


def pnorm_regression(
    m: int = 12, n: int = 5, p: float = 3.0, seed: int | np.random.Generator = 0
) -> Family:
    r"""$\min_x \|Ax - b\|_p + 0.1 \|x\|_2^2$ (power cones); parameters ``A, b``; output ``x``."""
    rng = _rng(seed)
    x = cp.Variable(n)
    A, b = cp.Parameter((m, n)), cp.Parameter(m)
    objective = cp.pnorm(A @ x - b, p, approx=False) + 0.1 * cp.sum_squares(x)  # type: ignore[arg-type]
    prob = cp.Problem(cp.Minimize(objective))
    return Family("pnorm", prob, [A, b], [x], [rng.standard_normal((m, n)), rng.standard_normal(m)])


def geometric_program(seed: int | np.random.Generator = 0) -> Family:
    """Box design GP: maximise ``h w d`` s.t. wall and floor areas and aspect ratios bounded;
    parameters ``A_wall, A_flr`` (positive); outputs ``h, w, d``.  Compile with ``gp=True``."""
    rng = _rng(seed)
    h, w, d = cp.Variable(pos=True), cp.Variable(pos=True), cp.Variable(pos=True)
    A_wall, A_flr = cp.Parameter(pos=True), cp.Parameter(pos=True)
    constraints: list[Any] = [
        2 * (h * w + h * d) <= A_wall,
        w * d <= A_flr,
        h / w <= 2.0,
        w / h <= 2.0,
        d / w <= 2.0,
        w / d <= 2.0,
    ]
    prob = cp.Problem(cp.Maximize(h * w * d), constraints)
    values = [np.array(100.0 * rng.uniform(0.9, 1.1)), np.array(10.0 * rng.uniform(0.9, 1.1))]
    return Family("gp_box", prob, [A_wall, A_flr], [h, w, d], values, has_quadratic=False)


def banded_qp(n: int = 5000, seed: int | np.random.Generator = 0) -> Family:
    r"""Box-constrained smoothing of a 1-D signal
    $\min_x \tfrac12 \|x - y\|_2^2 + 5 \|Dx\|_2^2$ s.t. $-1 \le x \le 1$, $D$ the first
    differences (banded); parameter ``y``; output ``x``.  A large sparse QP (not in
    `FAMILIES`: too large for the per-family test loops)."""
    import scipy.sparse as sp

    rng = _rng(seed)
    D = sp.eye_array(n - 1, n, k=1) - sp.eye_array(n - 1, n)  # first differences
    x, y = cp.Variable(n), cp.Parameter(n)
    objective = 0.5 * cp.sum_squares(x - y) + 5 * cp.sum_squares(D @ x)
    prob = cp.Problem(cp.Minimize(objective), [x >= -1, x <= 1])
    signal = 1.5 * np.sin(np.linspace(0, 12, n)) + 0.3 * rng.standard_normal(n)
    return Family(f"banded_qp_{n}", prob, [y], [x], [signal])


def grid_qp(k: int = 141, lam: float = 5.0, seed: int | np.random.Generator = 0) -> Family:
    r"""Box-constrained denoising of a ``k x k`` image
    $\min_X \|X - Y\|_F^2 + \lambda (\|\Delta_1 X\|_F^2 + \|\Delta_2 X\|_F^2)$ s.t.
    $0 \le X \le 1$ ($\Delta_i$ differences along each axis: a 2-D grid); parameter ``Y``;
    output ``X``.  ``k = 141``: about 20,000 variables (not in `FAMILIES`)."""
    rng = _rng(seed)
    X, Y = cp.Variable((k, k)), cp.Parameter((k, k))
    smooth = cp.sum_squares(cp.diff(X, axis=0)) + cp.sum_squares(cp.diff(X, axis=1))
    prob = cp.Problem(cp.Minimize(cp.sum_squares(X - Y) + lam * smooth), [X >= 0, X <= 1])
    ramp = np.add.outer(np.linspace(0, 1, k), np.linspace(0, 1, k)) / 2
    return Family(f"grid_qp_{k}", prob, [Y], [X], [ramp + 0.3 * rng.standard_normal((k, k))])


def spectra(
    n: int = 200, p: int = 100, seed: int | np.random.Generator = 0, noise: float = 3e-4
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic absorbance spectra for regression ``(X, y)`` (not a cone program: a hard
    design for the LASSO tools).  Each row mixes six Gaussian bands with random
    concentrations, plus a baseline offset and a little noise, so neighbouring channels
    correlate above 0.999; ``y`` is a linear function of three concentrations plus noise."""
    rng = _rng(seed)
    grid = np.linspace(0, 1, p)
    centers, widths = rng.uniform(0.05, 0.95, 6), rng.uniform(0.05, 0.2, 6)
    bands = np.exp(-0.5 * ((grid[None, :] - centers[:, None]) / widths[:, None]) ** 2)
    conc = rng.uniform(0, 1, (n, 6))
    X = conc @ bands + noise * rng.standard_normal((n, p)) + rng.uniform(-0.05, 0.05, (n, 1))
    y = 3 * conc[:, 0] + conc[:, 1] - 2 * conc[:, 2] + 0.05 * rng.standard_normal(n)
    return X, y


#: Every family by name, each a function of ``seed`` (and sizes).
FAMILIES: dict[str, Callable[..., Family]] = {
    "nnls": nnls,
    "lasso": lasso,
    "qp": qp,
    "lp_box": lp_box,
    "socp": socp,
    "socp_ball": socp_ball,
    "nearest_correlation": nearest_correlation,
    "max_eigenvalue": max_eigenvalue,
    "maxcut_sdp": maxcut_sdp,
    "entropy_simplex": entropy_simplex,
    "logistic": logistic,
    "pnorm": pnorm_regression,
}
