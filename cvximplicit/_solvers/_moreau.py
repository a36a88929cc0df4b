"""Moreau, a batched interior-point solver (``pip install cvximplicit[moreau]``)."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from .._cones import (
    Cone,
    ExponentialCone,
    NonnegativeCone,
    PowerCone,
    PSDCone,
    SecondOrderCone,
    ZeroCone,
)
from .._errors import UnsupportedProblemError
from .._typing import IntArray
from ._base import ConeData, DataLayout, RawSolution, Solver, SolverStatus, StackedData
from ._clarabel import _STATUS, Clarabel

__all__ = ["Moreau"]

#: Settings that belong to ``moreau.Settings``; every other name goes to ``IPMSettings``.
_TOP_LEVEL = frozenset(
    {
        "solver",
        "device",
        "device_id",
        "auto_tune",
        "max_iter",
        "time_limit",
        "verbose",
        "active_set_settings",
    }
)


class _Compiled:
    """A ``moreau.CompiledSolver`` for one program structure and batch size, with the
    permutation that takes ``A``'s values from our CSC order to Moreau's CSR order."""

    def __init__(self, module: ModuleType, solver: Moreau, data: ConeData, cones, size: int):
        n, m = data.n, data.m
        A = data.A
        order = sp.csc_array(
            (np.arange(A.nnz, dtype=np.float64), A.indices, A.indptr), shape=A.shape
        ).tocsr()
        self.A_order: IntArray = order.data.astype(np.int64)
        settings = solver._settings_object(module, size, data.P.nnz + A.nnz)
        # P is symmetric and stored in full: its CSC arrays are also its CSR arrays.
        self.solver = module.CompiledSolver(
            n=n,
            m=m,
            P_row_offsets=data.P.indptr,
            P_col_indices=data.P.indices,
            A_row_offsets=order.indptr,
            A_col_indices=order.indices,
            cones=solver._cones_object(module, cones),
            settings=settings,
        )
        self.size = size


class Moreau(Solver):
    """The Moreau conic solver: one call solves a whole batch of problems of one structure.

    Install with ``pip install cvximplicit[moreau]`` (Apache-2.0; the CPU wheel is on PyPI).
    On a batch, `solve_many()` sends every element to one
    ``moreau.CompiledSolver.solve`` call built on the program's fixed sparsity patterns
    (kept per program, batch size and thread); cvximplicit then polishes, certifies and
    differentiates its points as it does every backend's, so the derivatives are exact.

    Settings: those of ``moreau.Settings`` (``device``, ``max_iter``, ``time_limit``,
    ``verbose``, ``solver``, ``auto_tune``, ...) and of ``moreau.IPMSettings``
    (``tol_gap_abs``, ``tol_gap_rel``, ``tol_feas``, ``equilibrate_enable``,
    ``direct_solve_method``, ...), passed by name: ``Moreau(device="cuda", tol_feas=1e-9)``.
    ``device="cuda"`` needs Moreau's CUDA wheel; cvximplicit's own work stays on the CPU.
    Supported cones: zero, nonnegative, second-order, exponential, power and PSD (Moreau
    stores PSD cones as Clarabel does: the scaled upper triangle, column by column).

    Without a ``solver`` setting, Moreau's ``auto`` choice is kept on small programs and
    its interior-point method used from `ipm_min_nnz` entries of ``P`` and ``A`` (see
    there).  Measured (``benchmarks/results/batch_scaling.md``): faster than Clarabel on
    threads for batches of small QPs and LPs, slower on larger dense QPs; Clarabel stays
    the default.

    Example (needs the ``moreau`` package)::

        program = ci.compile(prob, [A, b], [x], solver="MOREAU")
        batch = program.solve_batch(A_batch, b)  # one batched Moreau call
    """

    name = "MOREAU"
    module = "moreau"
    requirement = "cvximplicit[moreau]"
    supported_cones: ClassVar[tuple[type[Cone], ...]] = (
        ZeroCone,
        NonnegativeCone,
        SecondOrderCone,
        ExponentialCone,
        PowerCone,
        PSDCone,
    )
    defaults: ClassVar[Mapping[str, Any]] = {"verbose": False, "device": "cpu"}
    #: Moreau's interior-point settings have Clarabel's names.
    tight: ClassVar[Mapping[str, Any]] = Clarabel.tight

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state["settings"])

    #: Without a ``solver`` setting, programs whose ``P`` and ``A`` hold at least this many
    #: entries are solved by Moreau's interior-point method rather than the method its
    #: ``auto`` picks (its active-set method below 500 variables), which was slower there:
    #: measured solve + polish, batch 32 (batch 1): NNLS with 15,400 entries 698 -> 437 ms
    #: (44 -> 25 ms), LASSO 1179 -> 831 ms (75 -> 59 ms); on the 4,000-entry QP the
    #: active-set method stays 4x faster (9.7 vs 38 ms); equal on conic programs.
    ipm_min_nnz: ClassVar[int] = 5000

    def _settings_object(self, module: ModuleType, size: int, nnz: int = 0) -> Any:
        top = {k: v for k, v in self.settings.items() if k in _TOP_LEVEL}
        ipm = {k: v for k, v in self.settings.items() if k not in _TOP_LEVEL}
        if "solver" not in top and nnz >= self.ipm_min_nnz:
            top["solver"] = "ipm"
        try:
            return module.Settings(batch_size=size, ipm_settings=module.IPMSettings(**ipm), **top)
        except Exception as exc:  # pydantic's ValidationError names the bad field
            raise TypeError(f"invalid Moreau settings {dict(self.settings)!r}: {exc}") from None

    @staticmethod
    def _cones_object(module: ModuleType, cones: Sequence[Cone]) -> Any:
        spec: dict[str, Any] = {"so_cone_dims": [], "power_alphas": []}
        for cone in cones:
            if isinstance(cone, ZeroCone):
                spec["num_zero_cones"] = cone.dim
            elif isinstance(cone, NonnegativeCone):
                spec["num_nonneg_cones"] = cone.dim
            elif isinstance(cone, SecondOrderCone):
                if any(d < 2 for d in cone.sizes):
                    raise UnsupportedProblemError(
                        "Moreau needs second-order cones of dimension >= 2; use solver='CLARABEL'"
                    )
                spec["so_cone_dims"] = list(cone.sizes)
            elif isinstance(cone, ExponentialCone):
                spec["num_exp_cones"] = cone.count
            elif isinstance(cone, PowerCone):
                spec["power_alphas"] = list(cone.exponents)
            elif isinstance(cone, PSDCone):
                spec["psd_dims"] = list(cone.orders)
        return module.Cones(**spec)

    def _compiled(
        self, module: ModuleType, data: ConeData, cones: Sequence[Cone], size: int
    ) -> _Compiled:
        kept: weakref.WeakKeyDictionary[DataLayout, dict[int, _Compiled]] | None
        kept = getattr(self._local, "kept", None)
        if kept is None:
            kept = self._local.kept = weakref.WeakKeyDictionary()
        layout = data.layout
        if layout is None:
            return _Compiled(module, self, data, cones, size)
        per_size = kept.setdefault(layout, {})
        compiled = per_size.get(size)
        if compiled is None:
            if len(per_size) >= 4:
                per_size.pop(next(iter(per_size)))
            compiled = per_size[size] = _Compiled(module, self, data, cones, size)
        return compiled

    def _solve(self, module: ModuleType, data: ConeData, cones: Sequence[Cone]) -> RawSolution:
        compiled = self._compiled(module, data, cones, 1)
        return self._solve_batch(
            compiled, data.P.data[None], data.A.data[None], data.b[None], data.c[None]
        )[0]

    def solve_many(self, data: StackedData, cones: Sequence[Cone]) -> list[RawSolution]:
        """Every element in one ``CompiledSolver.solve`` call."""
        self.check_cones(cones)
        if data.size == 0:
            return []
        compiled = self._compiled(self._import(), data.element(0), cones, data.size)
        return self._solve_batch(compiled, data.P, data.A, data.b, data.c)

    def _solve_batch(
        self, compiled: _Compiled, P: np.ndarray, A: np.ndarray, b: np.ndarray, c: np.ndarray
    ) -> list[RawSolution]:
        start = time.perf_counter()
        size = b.shape[0]
        compiled.solver.setup(np.ascontiguousarray(P), np.ascontiguousarray(A[:, compiled.A_order]))
        setup = (time.perf_counter() - start) / size
        solution = compiled.solver.solve(c, b)
        info = compiled.solver.info
        per = (time.perf_counter() - start) / size - setup
        out = []
        for i in range(size):
            raw_status = str(info.status[i])
            iterations = info.iterations[i] if np.ndim(info.iterations) else info.iterations
            out.append(
                RawSolution(
                    x=np.array(solution.x[i], dtype=np.float64),
                    y=np.array(solution.z[i], dtype=np.float64),
                    s=np.array(solution.s[i], dtype=np.float64),
                    status=_STATUS.get(raw_status, SolverStatus.FAILED),
                    raw_status=raw_status,
                    iterations=int(iterations),
                    solve_time=per,
                    solver=self.name,
                    setup_time=setup,
                )
            )
        return out
