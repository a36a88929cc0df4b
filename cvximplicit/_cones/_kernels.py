"""Compiled per-member projections onto the exponential and power cones (optional numba).

The numpy implementations in ``_exp.py`` and ``_pow.py`` run a vectorised root finder whose
every iteration is a few dozen numpy calls on all unfinished members; on the handful of cones
a layer has, that is milliseconds of interpreter overhead per projection.  The kernels in
``_numba_kernels.py`` run the *same* algorithms (the same heuristics, brackets,
Newton/Illinois iteration and reconstruction, so results agree to rounding;
``tests/test_cones.py`` checks it) one member at a time in machine code: microseconds per
projection (measured: 100 exponential cones in 0.014 ms instead of 1.5 ms).

They are compiled by numba when it is installed (``pip install cvximplicit[fast]``), with the
machine code cached on disk (``cache=True``), and release the GIL.  numba is imported on the
first projection, not with ``cvximplicit``.  Set ``CVXIMPLICIT_DISABLE_NUMBA=1`` to use the
numpy code.
"""

from __future__ import annotations

from types import ModuleType

from .._compiled import compiled

__all__ = ["compiled_kernels"]


def compiled_kernels() -> ModuleType | None:
    """The compiled kernels module, or ``None`` without numba (or when disabled)."""
    return compiled("_cones._numba_kernels")
