"""Single-threaded BLAS while the solve path runs.

The dense linear algebra of polishing and derivatives works on small matrices (a few hundred
rows), where OpenBLAS's threads cost more than they bring: measured on 2 cores, an LU of a
205 x 205 matrix took 0.48 ms with 2 threads and 0.27 ms with one, and interleaved with
solver calls the threaded version stalled for up to 10 ms.  Batches already run one solve per
core.  So the solve path asks BLAS for one thread (through threadpoolctl, when installed) and
restores the previous setting when the outermost call ends; concurrent calls share one
reference count, so the setting is restored only after the last of them.
"""

from __future__ import annotations

import contextlib
import threading
from types import TracebackType
from typing import Any

__all__ = ["single_thread_blas"]


class _SingleThreadBLAS(contextlib.ContextDecorator):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._controllers: list[Any] | None = None
        self._saved: list[int] = []

    def _libraries(self) -> list[Any]:
        if self._controllers is None:
            try:
                import threadpoolctl
            except ImportError:  # pragma: no cover - threadpoolctl is a dependency
                self._controllers = []
            else:
                ctl = threadpoolctl.ThreadpoolController()
                self._controllers = list(ctl.select(user_api="blas").lib_controllers)
        return self._controllers

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                libs = self._libraries()
                self._saved = [lib.get_num_threads() for lib in libs]
                for lib, n in zip(libs, self._saved):
                    if n != 1:
                        lib.set_num_threads(1)
            self._depth += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                for lib, n in zip(self._libraries(), self._saved):
                    if n != 1:
                        lib.set_num_threads(n)


#: Context manager and decorator: BLAS runs single-threaded inside it (see the module
#: docstring).
single_thread_blas = _SingleThreadBLAS()
