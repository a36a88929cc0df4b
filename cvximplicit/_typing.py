"""Type aliases shared by the modules (scipy's sparse stubs return loose unions), and the
one parser of string-valued options."""

from __future__ import annotations

import enum
from typing import Any, TypeAlias, TypeVar, cast

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


E = TypeVar("E", bound=enum.Enum)


def parse_option(kind: type[E], value: E | str, name: str) -> E:
    """An option given as an enum member or its string value (any case), or a
    ``ValueError`` that lists the choices."""
    if isinstance(value, kind):
        return value
    try:
        return kind(str(value).lower())
    except ValueError:
        choices = ", ".join(repr(k.value) for k in kind)
        raise ValueError(f"unknown {name} {value!r}; choose one of {choices}") from None
