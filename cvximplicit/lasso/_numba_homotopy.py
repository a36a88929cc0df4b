"""numba twin of `_homotopy.fold_path` (see `cvximplicit._compiled`): one fold's LASSO path
in a single compiled call.

The Python loop spends 100-300 us per breakpoint on interpreter and numpy dispatch costs
(about 20 array operations, each a few microseconds, around a handful of small products
and solves); the arithmetic itself is a few tens of microseconds on the hard benchmark
designs.  This kernel follows the same path with the same rules and checks: the
restricted solution re-solved from ``c0`` whenever the support or the factor changes, the
KKT conditions checked at every breakpoint to ``KKT_TOL`` plus the round-off floor, columns
in the span of the active ones kept at zero with their slack, the Cholesky factor grown
by rank-one steps and refactorized every ``REFACTOR_EVERY`` updates and at every removal.
What it does not do is *repair*: a breakpoint failing its check returns `REPAIR`, and the
caller runs the Python loop for that fold, which repairs (both are exact; the repairs are
rare, none on the benchmark sets).

Dense designs (centred) keep ``G = X'X_S/n`` row by row (``GT[a] = X'x_{S_a}/n``); sparse
designs (CSC, centred implicitly through ``x_mean``) make their products through ``X``
instead, as the Python loop does.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .._typing import FloatArray

#: a design as the kernels take it (`_linalg.design_arrays`): ``(dense, X, ptr, idx, val,
#: rptr, ridx, rval, x_mean, centered)``, the centred dense ``X`` (C order), or a sparse
#: one's CSC (``ptr, idx, val``) and CSR (``rptr, ridx, rval``) arrays centred through
#: ``x_mean`` when ``centered``
Design = tuple

__all__ = ["EMPTIED", "MAX_STEPS", "REACHED", "REPAIR", "VANISHED", "lasso_fold_path"]

#: how the path ended: ``alpha_min`` reached; the support emptied (round-off); the
#: training residual vanished; ``max_steps`` breakpoints; a breakpoint failed its check
REACHED, EMPTIED, VANISHED, MAX_STEPS, REPAIR = 0, 1, 2, 3, 4

_EPS = float(np.finfo(np.float64).eps)
#: reductions (dot products, triangular solves) may be reassociated, so that they vectorise
#: (a different rounding, not a different result; no other fast-math assumption)
_REASSOC = {"reassoc"}


@numba.njit(cache=True, nogil=True, fastmath=_REASSOC)
def _forward(L: FloatArray, k: int, b: FloatArray, out: FloatArray) -> None:
    """``out = L^{-1} b`` (``L`` lower triangular, its leading ``k x k`` block)."""
    for i in range(k):
        s = b[i]
        for j in range(i):
            s -= L[i, j] * out[j]
        out[i] = s / L[i, i]


@numba.njit(cache=True, nogil=True, fastmath=_REASSOC)
def _solve2(
    L: FloatArray, k: int, r0: FloatArray, r1: FloatArray, x0: FloatArray, x1: FloatArray
) -> None:
    """``H [x0, x1] = [r0, r1]`` with ``H = L L'``: both right-hand sides in one sweep."""
    for i in range(k):
        s0, s1 = r0[i], r1[i]
        for j in range(i):
            s0 -= L[i, j] * x0[j]
            s1 -= L[i, j] * x1[j]
        x0[i] = s0 / L[i, i]
        x1[i] = s1 / L[i, i]
    for i in range(k - 1, -1, -1):
        x0[i] /= L[i, i]
        x1[i] /= L[i, i]
        a0, a1 = x0[i], x1[i]
        for j in range(i):
            x0[j] -= L[i, j] * a0
            x1[j] -= L[i, j] * a1


@numba.njit(cache=True, nogil=True, fastmath=_REASSOC)
def _solve1(L: FloatArray, k: int, r: FloatArray, x: FloatArray) -> None:
    """``H x = r`` with ``H = L L'``."""
    for i in range(k):
        s = r[i]
        for j in range(i):
            s -= L[i, j] * x[j]
        x[i] = s / L[i, i]
    for i in range(k - 1, -1, -1):
        x[i] /= L[i, i]
        xi = x[i]
        for j in range(i):
            x[j] -= L[i, j] * xi


@numba.njit(cache=True, nogil=True)
def _column(
    design: Design,
    j: int,
    col: FloatArray,
) -> None:
    """Column ``j`` of the centred design into ``col``."""
    dense, X, ptr, idx, val, _, _, _, x_mean, centered = design
    if dense:
        for i in range(col.size):
            col[i] = X[i, j]
    else:
        col[:] = -x_mean[j] if centered else 0.0
        for q in range(ptr[j], ptr[j + 1]):
            col[idx[q]] += val[q]


@numba.njit(cache=True, nogil=True)
def _correlate(
    design: Design,
    r: FloatArray,
    out: FloatArray,
) -> None:
    """``out = X'r/n`` with ``X`` centred (implicitly when sparse: then ``rptr, ridx, rval``
    are its CSR arrays, scattered row by row, which measured 3x faster than gathering
    along CSC columns of a few entries each)."""
    dense, X, _, _, _, rptr, ridx, rval, x_mean, centered = design
    n = r.size
    if dense:
        out[:] = np.dot(r, X) / n
        return
    out[:] = 0.0
    total = 0.0
    for i in range(n):
        ri = r[i]
        total += ri
        for e in range(rptr[i], rptr[i + 1]):
            out[ridx[e]] += rval[e] * ri
    for q in range(out.size):
        out[q] = (out[q] - x_mean[q] * total) / n if centered else out[q] / n


@numba.njit(cache=True, nogil=True)
def _refactor(H: FloatArray, k: int, L: FloatArray) -> None:
    """``L``: the Cholesky factor of ``H[:k, :k]`` (``H = X_S'X_S/n``, kept exactly from
    products with the columns)."""
    if k:
        F = np.linalg.cholesky(np.ascontiguousarray(H[:k, :k]))
        for a in range(k):
            for b in range(a + 1):
                L[a, b] = F[a, b]


@numba.njit(cache=True, nogil=True)
def _counted(H: FloatArray, k: int, L: FloatArray, updates: int, every: int) -> int:
    """One more update of the factor ``L`` of ``H[:k, :k]``: refactorized from ``H`` every
    ``every`` updates (round-off accumulates in the rank-one updates).  Returns the count."""
    updates += 1
    if updates % every == 0:
        _refactor(H, k, L)
    return updates


@numba.njit(cache=True, nogil=True)
def _downdate(L: FloatArray, k: int, pos: int) -> None:
    """Remove row and column ``pos`` from ``H = L L'`` (``k x k``): delete row ``pos`` of
    ``L`` and restore its triangular form by Givens rotations of columns ``i, i + 1``
    (``O((k - pos)^2)`` instead of a refactorization's ``O(k^3)``)."""
    for i in range(pos, k - 1):
        for b in range(i + 2):
            L[i, b] = L[i + 1, b]
    for i in range(pos, k - 1):
        a, b = L[i, i], L[i, i + 1]
        r = math.hypot(a, b)
        c, s = a / r, b / r
        for m in range(i, k - 1):
            x, z = L[m, i], L[m, i + 1]
            L[m, i] = c * x + s * z
            L[m, i + 1] = c * z - s * x
        L[i, i + 1] = 0.0


@numba.njit(cache=True, nogil=True, fastmath=_REASSOC)
def _dot(u: FloatArray, v: FloatArray, n: int) -> float:
    """``u[:n] . v[:n]`` (a plain loop: BLAS calls on vectors this short cost more)."""
    s = 0.0
    for i in range(n):
        s += u[i] * v[i]
    return s


@numba.njit(cache=True, nogil=True)
def _residual(y: FloatArray, XT: FloatArray, beta: FloatArray, k: int, r: FloatArray) -> float:
    """``r = y - X_S beta``; returns ``||r||^2``."""
    n = y.size
    for i in range(n):
        r[i] = y[i]
    for a in range(k):
        ba = beta[a]
        for i in range(n):
            r[i] -= XT[a, i] * ba
    return _dot(r, r, n)


@numba.njit(cache=True, nogil=True)
def _line(
    design: Design,
    c0: FloatArray,
    GT: FloatArray,
    XT: FloatArray,
    L: FloatArray,
    index: np.ndarray,
    signs: FloatArray,
    k: int,
    beta0: FloatArray,
    dirn: FloatArray,
    u0: FloatArray,
    rate: FloatArray,
    R0: FloatArray,
    R1: FloatArray,
    a0: FloatArray,
    da: FloatArray,
) -> float:
    """The restricted solution and correlations on the support, affine in one parameter
    ``t``: ``H [beta0, dirn] = [c0_S - a0_S s, da_S s]``, ``u0 = c0 - G beta0``,
    ``rate = G dirn``, so that ``beta_S(t) = beta0 - t dirn`` and ``c(t) = u0 + t rate``
    solve the restricted optimality equations for the thresholds ``a0 + t da`` (the LASSO
    path: ``a0 = 0``, ``da = 1``, ``t = alpha``); returns the condition number of ``H``
    estimated from the Cholesky diagonal."""
    dense, _, _, _, _, rptr, ridx, rval, _, centered = design
    p = c0.size
    n = XT.shape[1]
    for a in range(k):  # (R0, R1 hold the right-hand sides first)
        j = index[a]
        R0[a] = c0[j] - a0[j] * signs[a]
        R1[a] = da[j] * signs[a]
    _solve2(L, k, R0, R1, beta0, dirn)
    if dense:
        for q in range(p):
            u0[q] = c0[q]
            rate[q] = 0.0
        for a in range(k):
            b0, b1 = beta0[a], dirn[a]
            for q in range(p):
                u0[q] -= GT[a, q] * b0
                rate[q] += GT[a, q] * b1
    else:
        R0[:] = 0.0
        R1[:] = 0.0
        for a in range(k):
            b0, b1 = beta0[a], dirn[a]
            for i in range(n):
                R0[i] += XT[a, i] * b0
                R1[i] += XT[a, i] * b1
        if centered:
            m0, m1 = R0[:n].mean(), R1[:n].mean()
            for i in range(n):
                R0[i] -= m0
                R1[i] -= m1
        for q in range(p):
            u0[q] = 0.0
            rate[q] = 0.0
        for i in range(n):  # X'[R0, R1] in one pass over the rows' nonzeros
            r0, r1 = R0[i], R1[i]
            for e in range(rptr[i], rptr[i + 1]):
                q = ridx[e]
                u0[q] += rval[e] * r0
                rate[q] += rval[e] * r1
        for q in range(p):
            u0[q] = c0[q] - u0[q] / n
            rate[q] /= n
    if not k:
        return 1.0
    dmax, dmin = 0.0, np.inf
    for a in range(k):
        dmax = max(dmax, abs(L[a, a]))
        dmin = min(dmin, abs(L[a, a]))
    return (dmax / dmin) ** 2


@numba.njit(cache=True, nogil=True)
def _cross(
    design: Design,
    GT: FloatArray,
    XT: FloatArray,
    xsum: FloatArray,
    k: int,
    j: int,
    col: FloatArray,
    b: FloatArray,
) -> float:
    """``b = X_S'x_j/n`` for the centred column ``col`` of feature ``j`` (from ``G`` when
    dense); returns ``||x_j||^2/n``."""
    dense, _, ptr, idx, val, _, _, _, x_mean, centered = design
    n = col.size
    if dense:
        for a in range(k):
            b[a] = GT[a, j]
    else:  # x_S'(x_j - m_j 1) through x_j's few nonzeros (xsum: the active columns' sums)
        for a in range(k):
            s = -x_mean[j] * xsum[a] if centered else 0.0
            for e in range(ptr[j], ptr[j + 1]):
                s += XT[a, idx[e]] * val[e]
            b[a] = s / n
    return _dot(col, col, n) / n


@numba.njit(cache=True, nogil=True)
def _residual_in_span(
    design: Design,
    GT: FloatArray,
    XT: FloatArray,
    xsum: FloatArray,
    L: FloatArray,
    k: int,
    j: int,
    col: FloatArray,
    b: FloatArray,
    w: FloatArray,
) -> tuple[float, float]:
    """``(d2, norm2)``: the squared norm (over ``n``) of column ``j``'s part outside the
    span of the active columns, and of the column itself; ``b = X_S'x_j/n`` and
    ``w = L^{-1} b``."""
    norm2 = _cross(design, GT, XT, xsum, k, j, col, b)
    _forward(L, k, b, w)
    return norm2 - _dot(w, w, k), norm2


@numba.njit(cache=True, nogil=True)
def _certify(
    alpha: float,
    k: int,
    beta0: FloatArray,
    dirn: FloatArray,
    u0: FloatArray,
    rate: FloatArray,
    gmax: FloatArray,
    c0_max: float,
    cond: float,
    kkt_tol: float,
    y: FloatArray,
    XT: FloatArray,
    index: np.ndarray,
    signs: FloatArray,
    active: np.ndarray,
    dependent: np.ndarray,
    dep_res: FloatArray,
    n_dep: int,
    beta: FloatArray,
    c: FloatArray,
    r: FloatArray,
) -> tuple[float, bool]:
    """The exact restricted solution ``beta`` and correlations ``c`` at ``alpha``, and the
    KKT check: ``(over, wrong)``, the largest violation beyond ``kkt_tol alpha`` plus the
    round-off floor (positive: failed) and whether a coefficient has the wrong sign."""
    n, p = y.size, c.size
    bmax, scale = 1.0, c0_max
    for a in range(k):
        beta[a] = beta0[a] - alpha * dirn[a]
        bmax = max(bmax, abs(beta[a]))
        scale += gmax[a] * abs(beta[a])
    for q in range(p):
        c[q] = u0[q] + alpha * rate[q]
    tol = kkt_tol * alpha + 10 * _EPS * cond * scale
    rnorm = math.sqrt(_residual(y, XT, beta, k, r) / n) if n_dep else 0.0
    off_max, on_max = 0.0, 0.0
    for q in range(p):
        if not active[q]:
            v = abs(c[q]) - (dep_res[q] * rnorm if dependent[q] else 0.0)
            off_max = max(off_max, v)
    for a in range(k):
        on_max = max(on_max, abs(c[index[a]] - alpha * signs[a]))
    wrong = False
    for a in range(k):
        wrong = wrong or beta[a] * signs[a] < -1e-9 * bmax
    return max(off_max - alpha, on_max) - tol, wrong


@numba.njit(cache=True, nogil=True)
def _add_column(
    design: Design,
    GT: FloatArray,
    XT: FloatArray,
    xsum: FloatArray,
    H: FloatArray,
    index: np.ndarray,
    signs: FloatArray,
    gmax: FloatArray,
    k: int,
    j: int,
    sign: float,
    norm2: float,
    col: FloatArray,
    g: FloatArray,
    b: FloatArray,
) -> None:
    """Column ``j`` (centred in ``col``, with ``sign``, ``b = X_S'x_j/n`` and
    ``norm2 = ||x_j||^2/n``) in active position ``k``: a row and column of ``H``, the column
    and its sum, its correlations ``X'x_j/n`` (``G``'s row, dense designs) and their
    largest entry."""
    dense, _, ptr, idx, val, rptr, ridx, rval, x_mean, centered = design
    n, p = col.size, g.size
    if dense:
        _correlate(design, col, g)
    else:  # X'x_j/n through x_j's few nonzero rows: (X'x_j - n m_j m)/n when centred
        for q in range(p):
            g[q] = -n * x_mean[j] * x_mean[q] if centered else 0.0
        for e in range(ptr[j], ptr[j + 1]):
            i, v = idx[e], val[e]
            for f in range(rptr[i], rptr[i + 1]):
                g[ridx[f]] += rval[f] * v
        for q in range(p):
            g[q] /= n
    for a in range(k):
        H[k, a] = H[a, k] = b[a]
    H[k, k] = norm2
    index[k] = j
    signs[k] = sign
    XT[k, :] = col
    xsum[k] = col.sum()
    gm = 0.0
    for q in range(p):
        gm = max(gm, abs(g[q]))
        if dense:
            GT[k, q] = g[q]
    gmax[k] = gm


@numba.njit(cache=True, nogil=True)
def _append(
    design: Design,
    GT: FloatArray,
    XT: FloatArray,
    xsum: FloatArray,
    H: FloatArray,
    L: FloatArray,
    index: np.ndarray,
    signs: FloatArray,
    gmax: FloatArray,
    k: int,
    j: int,
    sign: float,
    dependent_tol: float,
    col: FloatArray,
    g: FloatArray,
    b: FloatArray,
    w: FloatArray,
) -> tuple[bool, float]:
    """Column ``j`` (with ``sign``) joins the ``k`` active ones in position ``k``: a rank-one
    extension of ``L``, and `_add_column`.  Returns whether it was added (not where it is
    numerically in the active span, or no room is left: ``k`` at capacity) and the
    squared norm (over ``n``) of its part outside that span."""
    n = col.size
    _column(design, j, col)
    d2, norm2 = _residual_in_span(design, GT, XT, xsum, L, k, j, col, b, w)
    if d2 <= dependent_tol * norm2 or k == index.size:
        # in the span: the norm of its part outside from that part itself (the difference
        # above cancels to round-off, whose noise would decide its slack)
        z = np.empty(k)
        _solve1(L, k, b, z)
        out = 0.0
        for i in range(n):
            ri = col[i]
            for a in range(k):
                ri -= XT[a, i] * z[a]
            out += ri * ri
        return False, out / n
    for a in range(k):
        L[k, a] = w[a]
    L[k, k] = math.sqrt(d2)
    _add_column(design, GT, XT, xsum, H, index, signs, gmax, k, j, sign, norm2, col, g, b)
    return True, d2


@numba.njit(cache=True, nogil=True)
def _remove(
    dense: bool,
    GT: FloatArray,
    XT: FloatArray,
    xsum: FloatArray,
    H: FloatArray,
    L: FloatArray,
    index: np.ndarray,
    signs: FloatArray,
    gmax: FloatArray,
    k: int,
    pos: int,
) -> None:
    """The active column in position ``pos`` (of ``k``) leaves: the later ones move up one
    place, ``H`` loses its row and column and ``L`` is downdated to match."""
    for a in range(pos, k - 1):
        index[a] = index[a + 1]
        signs[a] = signs[a + 1]
        gmax[a] = gmax[a + 1]
        xsum[a] = xsum[a + 1]
        XT[a, :] = XT[a + 1, :]
        if dense:
            GT[a, :] = GT[a + 1, :]
        H[a, :k] = H[a + 1, :k]
    for a in range(pos, k - 1):
        H[:k, a] = H[:k, a + 1]
    _downdate(L, k, pos)


@numba.njit(cache=True, nogil=True)
def lasso_fold_path(
    design: Design,
    y: FloatArray,
    alpha_min: float,
    max_steps: int,
    kkt_tol: float,
    dependent_tol: float,
    refactor_every: int,
) -> tuple[int, int, FloatArray, np.ndarray, np.ndarray, FloatArray, float, int]:
    """One fold's LASSO path from ``alpha_max`` down to ``alpha_min`` (`_homotopy.fold_path`'s
    rules) for the `Design` ``design``.

    Returns ``(status, count, alphas, ptr, rows, values, alpha, k)``: how the path ended
    (`REACHED` ... `REPAIR`), the breakpoints ``alphas[:count]`` and the coefficients there
    (CSC arrays of a ``p x count`` matrix, in the active set's order), and the penalty and
    support size where it ended."""
    dense, x_mean = design[0], design[8]
    n = y.size
    p = x_mean.size
    kcap = min(n, p) + 1  # (independent columns: k <= rank <= min(n, p))
    c0 = np.empty(p)
    _correlate(design, y, c0)
    c0_max = 0.0
    j = 0
    for q in range(p):
        if abs(c0[q]) > c0_max:
            c0_max, j = abs(c0[q]), q
    yy = float(np.dot(y, y))

    # records: breakpoints and the coefficients there, grown by doubling
    out_alpha = np.empty(64)
    out_ptr = np.zeros(65, dtype=np.int64)
    out_idx = np.empty(256, dtype=np.int64)
    out_val = np.empty(256)

    # active set: indices, signs, columns (rows of XT), G = X'X_S/n (rows of GT, dense),
    # the largest |G| entry of each column, the Cholesky factor of H = X_S'X_S/n
    index = np.zeros(kcap, dtype=np.int64)
    signs = np.zeros(kcap)
    XT = np.zeros((kcap, n))
    GT = np.zeros((kcap, p) if dense else (1, 1))
    gmax = np.zeros(kcap)
    xsum = np.zeros(kcap)  # sums of the active columns (sparse: centred through x_mean)
    H = np.zeros((kcap, kcap))
    L = np.zeros((kcap, kcap))
    active = np.zeros(p, dtype=np.bool_)
    # columns numerically in the span of the active ones (kept at zero) and the norm of
    # their part outside it (their correlations' slack, see `_homotopy.fold_path`)
    dependent = np.zeros(p, dtype=np.bool_)
    dep_res = np.zeros(p)
    n_dep = 0
    k = 0
    updates = 0

    beta0 = np.zeros(kcap)
    dirn = np.zeros(kcap)
    u0 = np.empty(p)
    rate = np.empty(p)
    stale = True
    cond = 1.0
    beta = np.zeros(kcap)
    c = c0.copy()
    col = np.empty(n)
    g = np.empty(p)
    w = np.empty(kcap)
    b = np.empty(kcap)
    r = np.empty(n)
    R0 = np.empty(max(n, kcap))  # (the right-hand sides first: up to kcap entries)
    R1 = np.empty(max(n, kcap))
    zero, one = np.zeros(p), np.ones(p)  # (the thresholds are alpha itself: a0 = 0, da = 1)

    alpha = c0_max
    out_alpha[0] = alpha
    count = 1
    if alpha <= alpha_min or alpha == 0.0:
        return REACHED, count, out_alpha, out_ptr, out_idx, out_val, alpha, 0
    status = MAX_STEPS
    just_left, left_sign = -1, 0.0
    sign_j = 1.0 if c0[j] > 0 else -1.0
    for step in range(max_steps + 1):  # (step 0 enters the first column)
        if step > 0:
            if k == 0:
                status = EMPTIED
                break
            if stale:
                cond = _line(
                    design, c0, GT, XT, L, index, signs, k, beta0, dirn, u0, rate, R0, R1, zero, one
                )
                stale = False
            # -- the next event: a coordinate reaching the threshold, or one leaving --
            t_in, j_in = np.inf, -1
            for q in range(p):
                if active[q] or dependent[q]:
                    continue
                # |c_q| reaches the threshold at t = (alpha -+ c_q)/(1 -+ rate_q) (clipped at
                # 0); divided only where it can be the first (most coordinates are not)
                tu, td = np.inf, np.inf
                den = 1.0 - rate[q]
                if den > 1e-12 and alpha - c[q] < t_in * den:
                    tu = max((alpha - c[q]) / den, 0.0)
                den = 1.0 + rate[q]
                if den > 1e-12 and alpha + c[q] < t_in * den:
                    td = max((alpha + c[q]) / den, 0.0)
                if q == just_left:  # it may re-enter, but not on its old side
                    if left_sign > 0:
                        tu = np.inf
                    else:
                        td = np.inf
                t = min(tu, td)
                if t < t_in:
                    t_in, j_in = t, q
            t_out, k_out = np.inf, 0
            for a in range(k):
                if dirn[a] * signs[a] < 0:
                    t = max(beta[a] * signs[a], 0.0) / abs(dirn[a])
                    if t < t_out:
                        t_out, k_out = t, a
            t_end = alpha - alpha_min
            if t_end <= min(t_out, t_in):
                alpha, kind, j = alpha_min, 0, -1  # stop
            elif t_out <= t_in:
                alpha, kind, j = alpha - t_out, 2, index[k_out]  # leave
            else:
                alpha, kind, j = alpha - t_in, 1, j_in  # enter
            if kind == 2:  # leave at once: certify the reduced support
                left_sign = signs[k_out]
                _remove(dense, GT, XT, xsum, H, L, index, signs, gmax, k, k_out)
                k -= 1
                active[j] = False
                updates = _counted(H, k, L, updates, refactor_every)
                cond = _line(
                    design, c0, GT, XT, L, index, signs, k, beta0, dirn, u0, rate, R0, R1, zero, one
                )
            # -- certify: the exact restricted solution and the KKT conditions there --
            while True:
                over, wrong = _certify(
                    alpha,
                    k,
                    beta0,
                    dirn,
                    u0,
                    rate,
                    gmax,
                    c0_max,
                    cond,
                    kkt_tol,
                    y,
                    XT,
                    index,
                    signs,
                    active,
                    dependent,
                    dep_res,
                    n_dep,
                    beta,
                    c,
                    r,
                )
                if not ((over > 0 or wrong) and k and updates % refactor_every):
                    break
                # the factor was updated since its last refactorization: refactorize (its
                # round-off, not the path, may fail the check) and certify again (once:
                # updates is then 0)
                _refactor(H, k, L)
                updates = 0
                cond = _line(
                    design, c0, GT, XT, L, index, signs, k, beta0, dirn, u0, rate, R0, R1, zero, one
                )
            if kind == 2 and n_dep:  # dependent columns no longer in the span become free
                for q in range(p):
                    if dependent[q]:
                        _column(design, q, col)
                        d2, norm2 = _residual_in_span(design, GT, XT, xsum, L, k, q, col, b, w)
                        if d2 > dependent_tol * norm2:
                            dependent[q] = False
                            n_dep -= 1
            if over > 0 or wrong:
                status = REPAIR
                break
            # -- record the breakpoint --
            if count == out_alpha.size:
                grown = np.empty(2 * count)
                grown[:count] = out_alpha[:count]
                out_alpha = grown
                grown_ptr = np.zeros(2 * count + 1, dtype=np.int64)
                grown_ptr[: count + 1] = out_ptr[: count + 1]
                out_ptr = grown_ptr
            start = out_ptr[count]
            if start + k > out_idx.size:
                size = max(2 * out_idx.size, start + k)
                grown_idx = np.empty(size, dtype=np.int64)
                grown_idx[:start] = out_idx[:start]
                out_idx = grown_idx
                grown_val = np.empty(size)
                grown_val[:start] = out_val[:start]
                out_val = grown_val
            out_alpha[count] = alpha
            for a in range(k):
                out_idx[start + a] = index[a]
                out_val[start + a] = beta[a]
            out_ptr[count + 1] = start + k
            count += 1
            if kind == 0:
                status = REACHED
                break
            if _residual(y, XT, beta, k, r) <= 1e-20 * yy:
                status = VANISHED
                break
            if kind == 2:
                just_left = j
                continue
            just_left = -1
            sign_j = 1.0 if c[j] > 0 else -1.0
        # -- column j enters (a rank-one extension of L), unless it is in the span --
        added, d2 = _append(
            design,
            GT,
            XT,
            xsum,
            H,
            L,
            index,
            signs,
            gmax,
            k,
            j,
            sign_j,
            dependent_tol,
            col,
            g,
            b,
            w,
        )
        if not added:  # in the span of the active columns
            dependent[j] = True
            dep_res[j] = math.sqrt(d2)
            n_dep += 1
            continue
        beta[k] = 0.0
        active[j] = True
        k += 1
        updates = _counted(H, k, L, updates, refactor_every)
        stale = True
    return status, count, out_alpha, out_ptr, out_idx, out_val, alpha, k


@numba.njit(cache=True, nogil=True)
def enet_solutions(
    design: Design,
    y: FloatArray,
    lam1: FloatArray,
    lam2: FloatArray,
    warm: FloatArray,
    kkt_tol: float,
    max_iter: int,
    max_active: int,
) -> tuple[FloatArray, np.ndarray]:
    """Exact elastic-net solutions of ``1/(2n)||y - X b||^2 + lam1 ||b||_1 + lam2/2 ||b||^2``
    for the penalty pairs ``(lam1[i], lam2[i])`` in turn (``lam2 > 0``), each warm-started
    from the previous one (the first from ``warm``), by an active-set method.

    On a support ``S`` with signs ``s`` the solution solves ``(X_S'X_S/n + lam2 I) b_S =
    X_S'y/n - lam1 s``.  When a coefficient of that solution has the wrong sign, the step
    from the current point stops where the first coefficient reaches zero and that column
    leaves (Lawson-Hanson's backtracking: the objective decreases); otherwise the most
    violating inactive column enters with the sign of its correlation (its coefficient then
    moves that way: the restricted objective decreases along it).  A point is returned when
    its KKT conditions hold to ``kkt_tol lam1`` plus the round-off floor.  Each iteration
    factorizes ``|S| x |S|``, so the method gives up where ``max_iter`` iterations do not get
    there or the support would exceed ``max_active`` columns: ``ok[i]`` is then ``False``
    for that point and the ones after it (the caller solves them otherwise).  Returns
    ``(coefs, ok)`` with ``coefs`` of shape ``(points, p)``."""
    dense, x_mean = design[0], design[8]
    n = y.size
    p = x_mean.size
    m = lam1.size
    c0 = np.empty(p)
    _correlate(design, y, c0)
    c0_max = 0.0
    for q in range(p):
        c0_max = max(c0_max, abs(c0[q]))
    kcap = min(max_active, p) + 1  # (k <= max_active; the ridge allows k > n)
    index = np.zeros(kcap, dtype=np.int64)
    signs = np.zeros(kcap)
    beta = np.zeros(kcap)  # the active coefficients, in the active order
    XT = np.zeros((kcap, n))
    GT = np.zeros((kcap, p) if dense else (1, 1))
    H = np.zeros((kcap, kcap))
    gmax = np.zeros(kcap)
    xsum = np.zeros(kcap)
    active = np.zeros(p, dtype=np.bool_)
    k = 0
    coefs = np.zeros((m, p))
    ok = np.zeros(m, dtype=np.bool_)
    c = np.empty(p)
    col = np.empty(n)
    g = np.empty(p)
    r = np.empty(n)
    rhs = np.empty(kcap)
    hat = np.empty(kcap)
    b = np.empty(kcap)
    k_warm = 0
    for q in range(p):
        if warm[q] != 0.0:
            k_warm += 1
    for q in range(p if k_warm <= max_active else 0):  # (larger: from the empty support)
        if warm[q] != 0.0:  # the warm start's support, signs and values
            _column(design, q, col)
            norm2 = _cross(design, GT, XT, xsum, k, q, col, b)
            sign = 1.0 if warm[q] > 0 else -1.0
            _add_column(design, GT, XT, xsum, H, index, signs, gmax, k, q, sign, norm2, col, g, b)
            beta[k] = warm[q]
            active[q] = True
            k += 1
    for i in range(m):
        l1, l2 = lam1[i], lam2[i]
        for _ in range(max_iter):
            # -- the restricted solution with the current signs --
            cond = 1.0
            if k:
                M = np.empty((k, k))
                for a in range(k):
                    for f in range(k):
                        M[a, f] = H[a, f]
                    M[a, a] += l2
                    rhs[a] = c0[index[a]] - l1 * signs[a]
                L = np.asarray(np.linalg.cholesky(M), dtype=np.float64)
                _solve1(L, k, rhs, hat)
                dmax, dmin = 0.0, np.inf
                for a in range(k):
                    dmax = max(dmax, L[a, a])
                    dmin = min(dmin, L[a, a])
                cond = (dmax / dmin) ** 2
            t_stop, a_stop = 1.0, -1
            for a in range(k):
                if hat[a] * signs[a] <= 0.0:  # wrong sign: the step stops at zero
                    t = beta[a] / (beta[a] - hat[a]) if beta[a] != hat[a] else 0.0
                    if t < t_stop:
                        t_stop, a_stop = t, a
            if a_stop >= 0:  # backtrack: move to the first zero, drop the columns there
                keep = np.empty(k, dtype=np.int64)
                kept = 0
                for a in range(k):
                    b_new = beta[a] + t_stop * (hat[a] - beta[a])
                    if a == a_stop or b_new * signs[a] <= 0.0:
                        active[index[a]] = False
                    else:
                        keep[kept] = a
                        beta[a] = b_new
                        kept += 1
                for e in range(kept):  # (in place: keep[e] >= e)
                    a = keep[e]
                    index[e], signs[e], beta[e], gmax[e] = index[a], signs[a], beta[a], gmax[a]
                    xsum[e] = xsum[a]
                    XT[e, :] = XT[a, :]
                    if dense:
                        GT[e, :] = GT[a, :]
                    for f in range(kept):
                        H[e, f] = H[a, keep[f]]
                k = kept
                continue
            for a in range(k):
                beta[a] = hat[a]
            # -- correlations and the KKT check --
            if dense:
                for q in range(p):
                    c[q] = c0[q]
                for a in range(k):
                    ba = beta[a]
                    for q in range(p):
                        c[q] -= GT[a, q] * ba
            else:
                _residual(y, XT, beta, k, r)
                _correlate(design, r, c)
            scale = c0_max
            for a in range(k):
                scale += (gmax[a] + l2) * abs(beta[a])
            tol = kkt_tol * l1 + 10 * _EPS * cond * scale
            on = 0.0
            for a in range(k):
                on = max(on, abs(c[index[a]] - l2 * beta[a] - l1 * signs[a]))
            worst, j = 0.0, -1
            for q in range(p):
                if not active[q] and abs(c[q]) - l1 > worst:
                    worst, j = abs(c[q]) - l1, q
            if worst <= tol and on <= tol:
                ok[i] = True
                break
            if j < 0 or k == max_active:  # (j < 0: round-off beyond the floor)
                break
            # -- the most violating column enters --
            _column(design, j, col)
            norm2 = _cross(design, GT, XT, xsum, k, j, col, b)
            sign = 1.0 if c[j] > 0 else -1.0
            _add_column(design, GT, XT, xsum, H, index, signs, gmax, k, j, sign, norm2, col, g, b)
            beta[k] = 0.0
            active[j] = True
            k += 1
        if not ok[i]:
            break
        for a in range(k):
            coefs[i, index[a]] = beta[a]
    return coefs, ok


@numba.njit(cache=True, nogil=True)
def penalty_path(
    design: Design,
    y: FloatArray,
    a_from: FloatArray,
    a_to: FloatArray,
    beta_from: FloatArray,
    max_steps: int,
    kkt_tol: float,
    dependent_tol: float,
    refactor_every: int,
) -> tuple[bool, FloatArray]:
    """`_homotopy.penalty_path` compiled (same events, same start and end checks): the
    LASSO solution for the per-feature l1 weights ``a_to``, following the solution path from
    ``beta_from`` (the solution for ``a_from``) along ``a(t) = a_from + t (a_to - a_from)``.
    Returns ``(ok, coefficients)``; ``ok`` is ``False`` where the Python version returns
    ``None``."""
    dense, _, _, _, _, _, _, _, x_mean, _ = design
    n = y.size
    p = x_mean.size
    kcap = min(n, p) + 1  # (independent columns: k <= rank <= min(n, p))
    c0 = np.empty(p)
    _correlate(design, y, c0)
    da = a_to - a_from
    index = np.zeros(kcap, dtype=np.int64)
    signs = np.zeros(kcap)
    XT = np.zeros((kcap, n))
    GT = np.zeros((kcap, p) if dense else (1, 1))
    gmax = np.zeros(kcap)
    xsum = np.zeros(kcap)
    H = np.zeros((kcap, kcap))
    L = np.zeros((kcap, kcap))
    active = np.zeros(p, dtype=np.bool_)
    dependent = np.zeros(p, dtype=np.bool_)
    beta0 = np.zeros(kcap)
    dirn = np.zeros(kcap)
    u0 = np.empty(p)
    rate = np.empty(p)
    col = np.empty(n)
    g = np.empty(p)
    w = np.empty(kcap)
    b = np.empty(kcap)
    R0 = np.empty(max(n, kcap))  # (the right-hand sides first: up to kcap entries)
    R1 = np.empty(max(n, kcap))
    out = np.zeros(p)
    k = 0
    updates = 0
    for j in range(p):  # the start's support (a column in the span of the others: refused)
        if beta_from[j] != 0.0:
            sign = 1.0 if beta_from[j] > 0 else -1.0
            added, _ = _append(
                design,
                GT,
                XT,
                xsum,
                H,
                L,
                index,
                signs,
                gmax,
                k,
                j,
                sign,
                dependent_tol,
                col,
                g,
                b,
                w,
            )
            if not added:
                return False, out
            active[j] = True
            k += 1
            updates = _counted(H, k, L, updates, refactor_every)
    a_max = 0.0
    for j in range(p):
        a_max = max(a_max, abs(a_from[j]))
    t = 0.0
    for _ in range(max_steps):
        _line(design, c0, GT, XT, L, index, signs, k, beta0, dirn, u0, rate, R0, R1, a_from, da)
        # b_S(t) = beta0 - t dirn, c(t) = u0 + t rate, a(t) = a_from + t da
        if t == 0.0:  # the start must solve a_from (the caller's warm start may not)
            scale = 1e3 * kkt_tol * max(a_max, 1e-300)
            bmax = 1.0
            for a in range(k):
                bmax = max(bmax, abs(beta0[a]))
            for a in range(k):
                if beta0[a] * signs[a] < -1e-9 * bmax:
                    return False, out
            for q in range(p):
                if not active[q] and abs(u0[q]) > a_from[q] + scale:
                    return False, out
        after = t + 1e-12 * max(t, 1.0)  # not the event just taken (round-off)
        t_in, j_in, s_in = np.inf, -1, 0.0
        for q in range(p):
            if active[q] or dependent[q]:
                continue
            den = rate[q] - da[q]
            if den > 0:
                e = (a_from[q] - u0[q]) / den
                if after < e < t_in:
                    t_in, j_in, s_in = e, q, 1.0
            den = rate[q] + da[q]
            if den < 0:
                e = (-a_from[q] - u0[q]) / den
                if after < e < t_in:
                    t_in, j_in, s_in = e, q, -1.0
        t_out, k_out = np.inf, -1
        for a in range(k):
            if dirn[a] * signs[a] > 0:  # b_a = beta0_a - t dirn_a shrinks in |.|
                e = beta0[a] / dirn[a]
                if after < e < t_out:
                    t_out, k_out = e, a
        if min(t_in, t_out) >= 1.0:  # the end point, checked
            scale = kkt_tol * max(np.abs(a_to).max(), 1e-300)
            bmax = 1.0
            for a in range(k):
                out[index[a]] = beta0[a] - dirn[a]
                bmax = max(bmax, abs(out[index[a]]))
            for a in range(k):
                j = index[a]
                if out[j] * signs[a] < -1e-9 * bmax:
                    return False, out
                if abs(u0[j] + rate[j] - a_to[j] * signs[a]) > scale:
                    return False, out
            for q in range(p):
                if not active[q] and abs(u0[q] + rate[q]) - a_to[q] > scale:
                    return False, out
            return True, out
        if t_out <= t_in:
            t = t_out
            active[index[k_out]] = False
            _remove(dense, GT, XT, xsum, H, L, index, signs, gmax, k, k_out)
            k -= 1
            updates = _counted(H, k, L, updates, refactor_every)
            dependent[:] = False  # the span shrank: they are tested again at their events
        else:
            t = t_in
            added, _ = _append(
                design,
                GT,
                XT,
                xsum,
                H,
                L,
                index,
                signs,
                gmax,
                k,
                j_in,
                s_in,
                dependent_tol,
                col,
                g,
                b,
                w,
            )
            if added:
                active[j_in] = True
                k += 1
                updates = _counted(H, k, L, updates, refactor_every)
            else:
                dependent[j_in] = True
    return False, out
