"""The solver contract: one small class per backend.

A `Solver` takes the canonical data of

    minimise 1/2 x'Px + c'x   subject to   Ax + s = b,  s in K

(``P`` symmetric, full storage) and returns a `RawSolution` ``(x, y, s)`` satisfying,
to the solver's tolerance, ``Px + A'y + c = 0``, ``s in K``, ``y in K*``, ``s'y = 0``.
Each class imports its package lazily (so a missing solver only matters when it is used),
translates the cones it supports into its own objects and layouts, and maps every status it
can report to a `SolverStatus`.  User settings are passed through unchanged, on top of
the class defaults.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import importlib
import os
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from .._cones import Cone
from .._errors import SolverNotInstalledError, SolverSettingsError, UnsupportedProblemError
from .._typing import IntArray, Sparse

__all__ = ["ConeData", "DataLayout", "RawSolution", "Solver", "SolverStatus", "StackedData"]


class SolverStatus(enum.Enum):
    """What the inner solver reported, normalised across backends."""

    SOLVED = "solved"
    #: Solved to reduced accuracy; returned with an ``InaccurateSolutionWarning``.
    INACCURATE = "solved_inaccurate"
    #: Stopped early (iteration/time limit, insufficient progress) with a point that polishing
    #: may still turn into an accurate solution.
    INCOMPLETE = "incomplete"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    FAILED = "failed"


class DataLayout:
    """The fixed sparsity of a program's ``P`` and ``A`` with what backends precompute on it.

    One per compiled program, shared by all its solves: it identifies the structure (solvers
    key kept workspaces on it, see `Solver.solve()`) and selects the upper triangle of
    ``P`` without building a new matrix structure on every solve.
    """

    __slots__ = (
        "A_indices",
        "A_indptr",
        "P_indices",
        "P_indptr",
        "P_upper_indices",
        "P_upper_indptr",
        "P_upper_mask",
        "__weakref__",
        "_templates",
        "m",
        "n",
    )

    def __init__(
        self,
        n: int,
        m: int,
        P_indices: IntArray,
        P_indptr: IntArray,
        A_indices: IntArray,
        A_indptr: IntArray,
    ) -> None:
        self.n, self.m = n, m
        self.P_indices, self.P_indptr = P_indices, P_indptr
        self.A_indices, self.A_indptr = A_indices, A_indptr
        cols = np.repeat(np.arange(n, dtype=np.int64), np.diff(P_indptr))
        self.P_upper_mask = P_indices <= cols
        self.P_upper_indices = np.ascontiguousarray(P_indices[self.P_upper_mask])
        counts = np.bincount(cols[self.P_upper_mask], minlength=n)
        self.P_upper_indptr = np.concatenate([[0], np.cumsum(counts)]).astype(P_indptr.dtype)
        self._templates: dict[str, Sparse | None] = {}

    def _matrix(self, kind: str, values: NDArray[np.float64]) -> Sparse:
        """The matrix ``kind`` (``P``, ``A``, ``AT`` or ``P_upper``) with the stored values
        ``values``: a shallow copy of a template that shares its index arrays (10 us less
        per matrix than scipy's constructor, which validates them every time).  Templates
        are used only in canonical format (sorted, no duplicates), so that no scipy
        operation rewrites the shared index arrays in place."""
        n, m = self.n, self.m
        cls, shape, index = {
            "P": (sp.csc_array, (n, n), (self.P_indices, self.P_indptr)),
            "A": (sp.csc_array, (m, n), (self.A_indices, self.A_indptr)),
            "AT": (sp.csr_array, (n, m), (self.A_indices, self.A_indptr)),
            "P_upper": (sp.csc_array, (n, n), (self.P_upper_indices, self.P_upper_indptr)),
        }[kind]
        template = self._templates.get(kind, False)
        if template is False:
            template = cls((np.zeros(index[0].size), *index), shape=shape)
            self._templates[kind] = template if template.has_canonical_format else None
        if template is None:
            return cls((values, *index), shape=shape)
        out = copy.copy(template)
        out.data = values
        return out

    def P_matrix(self, values: NDArray[np.float64]) -> Sparse:
        """``P`` (CSC, both triangles) with the stored values ``values``."""
        return self._matrix("P", values)

    def A_matrix(self, values: NDArray[np.float64]) -> Sparse:
        """``A`` (CSC) with the stored values ``values``."""
        return self._matrix("A", values)

    def transpose(self, A_values: NDArray[np.float64]) -> Sparse:
        """``A'`` in CSR format: the same arrays as ``A`` in CSC format."""
        return self._matrix("AT", A_values)

    def upper(self, P_values: NDArray[np.float64]) -> Sparse:
        """The upper triangle of ``P`` (CSC) from ``P``'s stored values."""
        return self._matrix("P_upper", P_values[self.P_upper_mask])

    def __getstate__(self) -> dict[str, Any]:
        return {
            k: getattr(self, k) for k in self.__slots__ if k not in ("__weakref__", "_templates")
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        self._templates = {}


@dataclasses.dataclass
class StackedData:
    """The data of a batch of programs of one structure, one row per element, on the fixed
    patterns of ``layout`` (values of ``P`` and ``A`` in CSC order)."""

    P: NDArray[np.float64]
    A: NDArray[np.float64]
    b: NDArray[np.float64]
    c: NDArray[np.float64]
    layout: DataLayout

    @property
    def size(self) -> int:
        return int(self.b.shape[0])

    def take(self, rows: Any) -> StackedData:
        return StackedData(self.P[rows], self.A[rows], self.b[rows], self.c[rows], self.layout)

    def element(self, i: int) -> ConeData:
        lay = self.layout
        return ConeData(
            P=lay.P_matrix(self.P[i]),
            A=lay.A_matrix(self.A[i]),
            b=self.b[i],
            c=self.c[i],
            layout=lay,
        )


@dataclasses.dataclass(frozen=True)
class ConeData:
    """Numerical data of one canonical cone program.

    Attributes:
        P: ``n x n`` symmetric CSC matrix, full storage (both triangles).
        A: ``m x n`` CSC matrix.
        b: length ``m``.
        c: length ``n``.
        layout: the program's fixed structure when the data comes from a compiled program
            (lets backends reuse work across solves); ``None`` for one-off data.
    """

    P: sp.csc_array
    A: sp.csc_array
    b: NDArray[np.float64]
    c: NDArray[np.float64]
    layout: DataLayout | None = None

    @property
    def n(self) -> int:
        return int(self.c.size)

    @property
    def m(self) -> int:
        return int(self.b.size)

    @functools.cached_property
    def AT(self) -> Sparse:
        """``A'`` in CSR format (built once per data; ``A.T`` would build a view per use)."""
        if self.layout is None:
            return self.A.T.tocsr()
        return self.layout.transpose(np.asarray(self.A.data, dtype=np.float64))

    @functools.cached_property
    def A_rows(self) -> Sparse:
        """``A`` in CSR format (built once per data: row selections of the reduced LDL)."""
        return sp.csr_array(self.A)

    @functools.cached_property
    def patterns(self) -> tuple[tuple[IntArray, IntArray], tuple[IntArray, IntArray]]:
        """(row, column) index arrays of the stored entries of ``P`` and ``A``, in CSC order."""
        out = []
        for M in (self.P, self.A):
            cols = np.repeat(np.arange(M.indptr.size - 1, dtype=np.int64), np.diff(M.indptr))
            out.append((M.indices.astype(np.int64), cols))
        return out[0], out[1]

    @property
    def P_upper(self) -> Sparse:
        """The upper triangle of ``P`` (what Clarabel, SCS and OSQP take)."""
        if self.layout is None:
            return sp.triu(self.P, format="csc")
        return self.layout.upper(np.asarray(self.P.data, dtype=np.float64))


@dataclasses.dataclass
class RawSolution:
    """A solver's answer, before polishing and differentiation."""

    x: NDArray[np.float64] | None
    y: NDArray[np.float64] | None
    s: NDArray[np.float64] | None
    status: SolverStatus
    raw_status: str
    iterations: int
    solve_time: float
    solver: str
    #: Wall seconds spent building (or updating) the backend's problem before it solves.
    setup_time: float = 0.0

    @property
    def has_point(self) -> bool:
        return all(a is not None and bool(np.all(np.isfinite(a))) for a in (self.x, self.y, self.s))


#: diffcp's batch settings (threads of the batched forward and backward passes), which
#: cvxpylayers passes through ``solver_args``: no backend has them; dropped with the warning.
_BATCH_SETTINGS: Mapping[str, tuple[str, ...]] = {"n_jobs_forward": (), "n_jobs_backward": ()}


class Solver(ABC):
    """Base class of the solver backends.

    Args:
        **settings: solver settings, passed to the backend unchanged on top of
            `defaults` (for example ``Clarabel(tol_gap_rel=1e-10)``,
            ``SCS(eps_abs=1e-12, eps_rel=1e-12)``).
    """

    #: Name used in diagnostics and accepted by ``solver="..."`` (case-insensitive).
    name: ClassVar[str]
    #: Module to import and the pip requirement that provides it.
    module: ClassVar[str]
    requirement: ClassVar[str]
    #: Cone classes this backend can handle.
    supported_cones: ClassVar[tuple[type[Cone], ...]]
    #: Default settings; chosen so that solve + polish + derivative is fast and accurate.
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: Whether the backend releases the GIL while solving (then batches use threads).
    releases_gil: ClassVar[bool] = True
    #: Vector layout of the backend (see ``Cone.permutation``); ``"canonical"`` needs no change.
    convention: ClassVar[str] = "canonical"
    #: Settings of the one retry made when a solve's point cannot be certified (tighter
    #: tolerances, more iterations); they override the user's.
    tight: ClassVar[Mapping[str, Any]] = {}
    #: Settings of other tools (cvxpylayers/diffcp, SCS 2) translated to this backend's:
    #: name -> the backend's names it sets (an empty tuple: no counterpart, dropped).
    aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: The backend's own setting names, checked when a solver is built (``None``: the
    #: backend's own settings object checks them, or nothing can be checked).
    known: ClassVar[frozenset[str] | None] = None

    def __init__(self, **settings: Any) -> None:
        settings = self._translate(settings)
        known = self.known_settings()
        if known is not None:
            unknown = sorted(set(settings) - known)
            if unknown:
                raise SolverSettingsError(
                    f"{self.name} has no setting {', '.join(map(repr, unknown))}; its settings "
                    f"are: {', '.join(sorted(known))}"
                )
        self.settings: dict[str, Any] = {**self.defaults, **settings}

    def known_settings(self) -> frozenset[str] | None:
        """The backend's setting names (``None`` when they cannot be listed)."""
        return self.known

    def _translate(self, settings: dict[str, Any]) -> dict[str, Any]:
        aliases = {**_BATCH_SETTINGS, **self.aliases}
        foreign = [k for k in settings if k in aliases]
        if not foreign:
            return settings
        out = {k: v for k, v in settings.items() if k not in aliases}
        notes = []
        for key in foreign:
            targets = aliases[key]
            for target in targets:
                out.setdefault(target, settings[key])
            if targets:
                notes.append(f"{key}={settings[key]!r} -> {', '.join(targets)}")
            elif key in _BATCH_SETTINGS and key not in self.aliases:
                notes.append(f"{key} dropped (batches run through the layer's executor=)")
            else:
                notes.append(f"{key} dropped ({self.name} has no counterpart)")
        warnings.warn(
            f"solver settings translated for {self.name} (cvxpylayers/diffcp names): "
            + "; ".join(notes),
            UserWarning,
            stacklevel=4,
        )
        return out

    def with_settings(self, settings: Mapping[str, Any] | None) -> Solver:
        """A copy of this solver with ``settings`` overriding the current ones."""
        if not settings:
            return self
        # translate first, so that a foreign name overrides the current value it maps to
        return type(self)(**{**self.settings, **self._translate(dict(settings))})

    def tightened(self) -> Solver | None:
        """A copy with `tight` settings, or ``None`` when they change nothing."""
        if all(self.settings.get(k) == v for k, v in self.tight.items()):
            return None
        return type(self)(**{**self.settings, **self.tight})

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.settings.items() if self.defaults.get(k) != v}
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"{type(self).__name__}({args})"

    def _import(self) -> ModuleType:
        try:
            return importlib.import_module(self.module)
        except ImportError as exc:
            raise SolverNotInstalledError(
                f"solver {self.name} needs the package '{self.requirement}': "
                f"pip install {self.requirement}"
            ) from exc

    def check_cones(self, cones: Sequence[Cone]) -> None:
        """Raise `UnsupportedProblemError` if a cone is not supported."""
        for cone in cones:
            if not isinstance(cone, self.supported_cones):
                names = ", ".join(c.__name__ for c in self.supported_cones)
                raise UnsupportedProblemError(
                    f"solver {self.name} does not support {type(cone).__name__} "
                    f"(it supports {names}); choose another solver, e.g. solver='CLARABEL'"
                )

    def solve(self, data: ConeData, cones: Sequence[Cone]) -> RawSolution:
        """Solve the canonical program and return the solver's point and status."""
        self.check_cones(cones)
        module = self._import()
        perm = self._row_permutation(cones)
        if perm is not None:
            data = ConeData(
                P=data.P, A=data.A[perm, :].tocsc(), b=data.b[perm], c=data.c, layout=data.layout
            )
        start = time.perf_counter()
        raw = self._solve(module, data, cones)
        if raw.solve_time <= 0.0:
            raw.solve_time = max(time.perf_counter() - start - raw.setup_time, 0.0)
        if perm is not None:
            inverse = np.empty_like(perm)
            inverse[perm] = np.arange(perm.size)
            raw.y = None if raw.y is None else raw.y[inverse]
            raw.s = None if raw.s is None else raw.s[inverse]
        return raw

    def solve_many(self, data: StackedData, cones: Sequence[Cone]) -> list[RawSolution]:
        """Solve every element of a batch of programs of one structure.

        By default one `solve()` per element, on a thread pool with one worker per CPU
        when the backend releases the GIL.  Backends with a batched solver override this.
        """
        size = data.size
        workers = min(size, os.cpu_count() or 1)
        if workers <= 1 or not self.releases_gil:
            return [self.solve(data.element(i), cones) for i in range(size)]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda i: self.solve(data.element(i), cones), range(size)))

    def _row_permutation(self, cones: Sequence[Cone]) -> NDArray[np.int64] | None:
        """Row order of the backend's layout (``None`` when it is the canonical one)."""
        if self.convention == "canonical":
            return None
        parts, start = [], 0
        for cone in cones:
            parts.append(start + cone.permutation(self.convention))
            start += cone.dim
        perm = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return None if np.array_equal(perm, np.arange(perm.size)) else perm

    @abstractmethod
    def _solve(self, module: ModuleType, data: ConeData, cones: Sequence[Cone]) -> RawSolution:
        """Backend-specific solve; ``module`` is the imported backend package."""
