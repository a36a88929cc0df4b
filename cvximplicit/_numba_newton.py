"""numba twins of the polishing path's small kernels (see `_compiled`).

* `residual_values`: the normal-map residual of `residual()`, ``F``, its relative size and
  its norm in one pass over ``P`` and ``A``, where numpy makes three sparse products through
  scipy's dispatch and a dozen array passes (measured on the 19-row geometric program: 6 vs
  45 us per evaluation, three to five evaluations per solve);
* `pattern_product`: ``D z`` (or ``D' z``) on ``D``'s fixed pattern, where ``np.bincount``
  with weights took 30 us on the SOCP benchmark's 10,000-entry block;
* `newton_product`: ``B z`` or ``B' z`` for ``B = [[P, A'D], [A, D - I]]`` without
  assembling ``B`` (every sweep of iterative refinement makes one; scipy's dispatch costs
  about 6 us per sparse product, five of them per call).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._typing import FloatArray, IntArray

__all__ = ["newton_product", "pattern_product", "residual_values"]


@numba.njit(cache=True, nogil=True)
def _add_product(indptr: IntArray, indices: IntArray, data: FloatArray, x: FloatArray,
                 out: FloatArray) -> None:  # fmt: skip
    """``out += M x`` for CSC ``M``."""
    for j in range(x.size):
        xj = x[j]
        for k in range(indptr[j], indptr[j + 1]):
            out[indices[k]] += data[k] * xj


@numba.njit(cache=True, nogil=True)
def _add_both(indptr: IntArray, indices: IntArray, data: FloatArray, x: FloatArray,
              w: FloatArray, Mx: FloatArray, Mtw: FloatArray) -> None:  # fmt: skip
    """``Mx += M x`` and ``Mtw += M' w`` for CSC ``M``, in one pass over its entries."""
    for j in range(x.size):
        xj = x[j]
        acc = 0.0
        for k in range(indptr[j], indptr[j + 1]):
            i = indices[k]
            Mx[i] += data[k] * xj
            acc += data[k] * w[i]
        Mtw[j] += acc


@numba.njit(cache=True, nogil=True)
def residual_values(
    P_indptr: IntArray, P_indices: IntArray, P_data: FloatArray,
    A_indptr: IntArray, A_indices: IntArray, A_data: FloatArray,
    b: FloatArray, c: FloatArray, x: FloatArray, y: FloatArray, v: FloatArray,
) -> tuple[FloatArray, float, float]:  # fmt: skip
    """``(F, relative, norm)`` for CSC ``P`` (both triangles) and ``A``; the same formulas
    as the numpy code: ``F = [P x + A' y + c; A x + (y - v) - b]``, ``relative`` the largest
    ``|F_i| / (1 + |terms_i|)``, ``norm`` the 2-norm computed without overflow."""
    n, m = x.size, v.size
    Px = np.zeros(n)
    Ax = np.zeros(m)
    F = np.empty(n + m)
    relative = 0.0
    big = 0.0
    nan_ratio = nan_entry = False
    Aty = np.zeros(n)
    _add_product(P_indptr, P_indices, P_data, x, Px)
    _add_both(A_indptr, A_indices, A_data, x, y, Ax, Aty)
    for j in range(n):
        aty = Aty[j]
        f = Px[j] + aty + c[j]
        F[j] = f
        ratio = abs(f) / (1.0 + abs(Px[j]) + abs(aty) + abs(c[j]))
        if ratio > relative:
            relative = ratio
        elif ratio != ratio:  # NaN propagates, as in numpy's max
            nan_ratio = True
        if abs(f) > big:
            big = abs(f)
        elif f != f:
            nan_entry = True
    for i in range(m):
        s = y[i] - v[i]
        f = Ax[i] + s - b[i]
        F[n + i] = f
        ratio = abs(f) / (1.0 + abs(Ax[i]) + abs(s) + abs(b[i]))
        if ratio > relative:
            relative = ratio
        elif ratio != ratio:
            nan_ratio = True
        if abs(f) > big:
            big = abs(f)
        elif f != f:
            nan_entry = True
    if nan_ratio:
        relative = math.nan
    if nan_entry:
        big = math.nan
    if not (0.0 < big < math.inf):
        return F, relative, big
    total = 0.0
    for i in range(n + m):
        r = F[i] / big
        total += r * r
    return F, relative, big * math.sqrt(total)


@numba.njit(cache=True, nogil=True)
def pattern_product(
    rows: IntArray, cols: IntArray, values: FloatArray, z: FloatArray, dim: int
) -> FloatArray:
    """``out[rows[k]] += values[k] z[cols[k]]`` (``D z``; swap ``rows`` and ``cols`` for
    ``D' z``)."""
    out = np.zeros(dim)
    for k in range(values.size):
        out[rows[k]] += values[k] * z[cols[k]]
    return out


@numba.njit(cache=True, nogil=True)
def newton_product(
    P_indptr: IntArray, P_indices: IntArray, P_data: FloatArray,
    A_indptr: IntArray, A_indices: IntArray, A_data: FloatArray,
    d_rows: IntArray, d_cols: IntArray, d_values: FloatArray, diagonal: bool,
    z: FloatArray, transpose: bool,
) -> FloatArray:  # fmt: skip
    """``B z`` (``B' z`` with ``transpose``) for ``B = [[P, A'D], [A, D - I]]``, ``P`` and
    ``A`` in CSC format (``P`` symmetric, both triangles), ``D`` on its pattern (the
    diagonal in order when ``diagonal``)."""
    n = P_indptr.size - 1
    m = z.size - n
    out = np.zeros(n + m)
    x = z[:n]
    v = z[n:]
    top = out[:n]
    _add_product(P_indptr, P_indices, P_data, x, top)  # P x (P' = P)
    if transpose:  # [P x + A' v; D'(A x + v) - v]
        u = v.copy()
        _add_both(A_indptr, A_indices, A_data, x, v, u, top)
        out[n:] = _d_product(d_rows, d_cols, d_values, diagonal, u, True) - v
        return out
    # [P x + A' D v; A x + D v - v]
    Dv = _d_product(d_rows, d_cols, d_values, diagonal, v, False)
    out[n:] = Dv - v
    _add_both(A_indptr, A_indices, A_data, x, Dv, out[n:], top)
    return out


@numba.njit(cache=True, nogil=True)
def _d_product(
    rows: IntArray, cols: IntArray, values: FloatArray, diagonal: bool, z: FloatArray,
    transpose: bool,
) -> FloatArray:  # fmt: skip
    """``D z`` (``D' z``), ``D`` on its pattern or, when ``diagonal``, its diagonal."""
    if diagonal:
        return values * z
    if transpose:
        return pattern_product(cols, rows, values, z, z.size)
    return pattern_product(rows, cols, values, z, z.size)
