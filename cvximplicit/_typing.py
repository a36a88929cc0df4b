"""Type aliases shared by the modules (scipy's sparse stubs return loose unions)."""

from __future__ import annotations

from typing import Any, TypeAlias, cast

import numpy as np
from numpy.typing import NDArray

FloatArray: TypeAlias = NDArray[np.float64]
IntArray: TypeAlias = NDArray[np.int64]
#: A scipy sparse matrix or array.  Kept as ``Any``: scipy's stubs type the results of
#: ``block_diag``, ``bmat`` and arithmetic as loose unions without the methods we call.
Sparse: TypeAlias = Any


def shape2(matrix: Any) -> tuple[int, int]:
    """The ``(rows, cols)`` of a sparse or dense matrix, as plain ints."""
    rows, cols = cast("tuple[int, int]", matrix.shape)
    return int(rows), int(cols)
