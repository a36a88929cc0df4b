"""numba twin of `_implicit.anderson_weights_host` (see `_compiled`): the Gram update and the
Cholesky solve of one Anderson iteration in one call of about a microsecond, where the
plain-Python version costs 7-10 us (measured between the tensor operations of a small
layer's iteration)."""

from __future__ import annotations

import math

import numba
import numpy as np

from ._typing import FloatArray

__all__ = ["anderson_weights_into"]

_TINY = float(np.finfo(np.float64).tiny)


@numba.njit(cache=True, nogil=True)
def anderson_weights_into(
    gram: FloatArray, row: FloatArray, slot: int, size: int, regularization: float,
    out: FloatArray,
) -> bool:  # fmt: skip
    """Write ``row`` (the new residual's inner products with the ``size`` kept ones) into row
    and column ``slot`` of ``gram``, then Anderson's weights (`anderson_weights_host`'s
    formula) into ``out[:size]``.  Returns ``False``, leaving ``out`` unspecified, where
    rounding breaks the factorization or all residuals are zero (the caller falls back)."""
    n = size
    for i in range(n):
        gram[slot, i] = row[i]
        gram[i, slot] = row[i]
    trace = 0.0
    for i in range(n):
        trace += gram[i, i]
    lam = regularization * max(trace, _TINY)
    L = np.zeros((n, n))
    for i in range(n):
        for c in range(i + 1):
            s = gram[i, c] + (lam if i == c else 0.0)
            for t in range(c):
                s -= L[i, t] * L[c, t]
            if i != c:
                L[i, c] = s / L[c, c]
            elif 0.0 < s < math.inf:
                L[i, i] = math.sqrt(s)
            else:
                return False
    y = np.empty(n)
    for i in range(n):
        s = 1.0
        for t in range(i):
            s -= L[i, t] * y[t]
        y[i] = s / L[i, i]
    total = 0.0
    for i in range(n - 1, -1, -1):
        s = y[i]
        for t in range(i + 1, n):
            s -= L[t, i] * y[t]
        y[i] = s / L[i, i]
        total += y[i]
    if not (total != 0.0 and math.isfinite(total)):
        return False
    for i in range(n):
        out[i] = y[i] / total
    return True
