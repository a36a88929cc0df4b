"""Optional numba-compiled kernels, loaded on first use.

Small kernels whose numpy or Python versions are dominated by per-call interpreter costs
have a compiled twin (the exponential/power cone projections in
``_cones/_numba_kernels.py``, the Anderson weights in ``_numba_anderson.py``).  They are
compiled by numba when it is installed (``pip install cvximplicit[fast]``), with the machine
code cached on disk (``cache=True``), and release the GIL.  numba is imported on the first
use, not with ``cvximplicit``.  Set ``CVXIMPLICIT_DISABLE_NUMBA=1`` to run the numpy/Python
versions, which the tests compare with the compiled ones.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

__all__ = ["compiled"]

_loaded: dict[str, ModuleType | None] = {}


def compiled(name: str) -> ModuleType | None:
    """The compiled module ``cvximplicit.<name>``, or ``None`` without numba (or when
    disabled)."""
    if name not in _loaded:
        module = None
        if not os.environ.get("CVXIMPLICIT_DISABLE_NUMBA") and importlib.util.find_spec("numba"):
            module = importlib.import_module(f"cvximplicit.{name}")
        _loaded[name] = module
    return _loaded[name]
