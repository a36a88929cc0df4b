"""A vectorised, bracketed root finder shared by the curved cones' projections."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._typing import FloatArray, IntArray

__all__ = ["bracketed_root"]

Fun = Callable[[IntArray, FloatArray], tuple[FloatArray, FloatArray]]


def bracketed_root(
    fun: Fun,
    lo: FloatArray,
    hi: FloatArray,
    x: FloatArray,
    *,
    rtol: float = 4e-16,
    max_iter: int = 100,
) -> FloatArray:
    """Roots of many increasing scalar functions, each bracketed by ``[lo, hi]``.

    ``fun(idx, x)`` returns ``(f, df)`` of the functions ``idx`` at ``x``; each ``f`` is
    increasing through its root (``f(lo) <= 0 <= f(hi)``).  Newton steps are taken when they
    stay inside the bracket, otherwise Illinois-modified false-position steps (superlinear,
    unlike bisection, which Newton falls back to in the textbook safeguard and which cost up
    to 50 iterations on the exponential cone's badly scaled function).  Iteration stops per
    function at an exact root, a step below ``rtol`` relative, or a collapsed bracket.
    """
    lo, hi, x = lo.astype(float), hi.astype(float), x.astype(float)
    all_idx = np.arange(x.size)
    flo, _ = fun(all_idx, lo)
    fhi, _ = fun(all_idx, hi)
    last = np.zeros(x.size, dtype=np.int8)  # +1: lo moved last, -1: hi moved last
    active = lo < hi
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        xa = x[idx]
        f, df = fun(idx, xa)
        below = f < 0
        lo_a, hi_a, flo_a, fhi_a = lo[idx], hi[idx], flo[idx], fhi[idx]
        lo_a = np.where(below, xa, lo_a)
        hi_a = np.where(below, hi_a, xa)
        # Illinois: halve the value kept at the end that did not move twice in a row.
        flo_a = np.where(below, f, np.where(last[idx] == -1, 0.5 * flo_a, flo_a))
        fhi_a = np.where(below, np.where(last[idx] == 1, 0.5 * fhi_a, fhi_a), f)
        last[idx] = np.where(below, 1, -1)
        with np.errstate(all="ignore"):
            newton = xa - f / df
            falsi = (lo_a * fhi_a - hi_a * flo_a) / (fhi_a - flo_a)
        use_newton = np.isfinite(newton) & (newton > lo_a) & (newton < hi_a)
        use_falsi = np.isfinite(falsi) & (falsi > lo_a) & (falsi < hi_a)
        nxt = np.where(use_newton, newton, np.where(use_falsi, falsi, 0.5 * (lo_a + hi_a)))
        nxt = np.where(f == 0, xa, nxt)
        scale = np.maximum(np.abs(xa), np.finfo(float).tiny)
        done = (f == 0) | (np.abs(nxt - xa) <= rtol * scale) | (hi_a - lo_a <= rtol * scale)
        lo[idx], hi[idx], flo[idx], fhi[idx], x[idx] = lo_a, hi_a, flo_a, fhi_a, nxt
        active[idx[done]] = False
    return x
