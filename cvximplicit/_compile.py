"""Compilation: a DPP CVXPY problem becomes a parametric canonical cone program.

``compile`` canonicalises the problem once with CVXPY (keeping the quadratic objective) and
extracts three linear maps, after which no CVXPY code runs on the solve path:

* user parameter values ``u`` -> program data ``(P, A, b, c) = G u + g0`` (one sparse matrix
  ``G`` on the fixed sparsity patterns of ``P`` and ``A``);
* the canonical solution ``(x, y)`` -> the requested variables and constraint duals (scaled
  selections, recovered by running CVXPY's own solution inversion on tagged vectors);
* cones: CVXPY's cone dimensions -> `Cone` objects.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Sequence
from typing import Any, cast

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from cvxpy import settings as cvxpy_settings
from cvxpy.constraints.constraint import Constraint
from cvxpy.error import DCPError, DGPError, DPPError
from cvxpy.reductions.chain import Chain

from ._cones import (
    Cone,
    ExponentialCone,
    NonnegativeCone,
    PowerCone,
    PSDCone,
    SecondOrderCone,
    ZeroCone,
)
from ._errors import (
    NonDCPError,
    NonDPPError,
    OutputError,
    ParameterError,
    UnsupportedProblemError,
)

__all__ = ["OVERFLOW", "Compiled", "OutputMap", "ParameterSpec", "canonicalize"]

from ._typing import FloatArray, IntArray, shape2

#: Largest parameter magnitude accepted: squares of larger entries (1e308 is the largest
#: double) overflow inside any solver, which then reports nonsense such as infeasibility.
OVERFLOW = 1e150


def _dtype_kind(dtype: Any) -> str:
    """NumPy's kind letter of a NumPy, JAX or PyTorch dtype."""
    if isinstance(getattr(dtype, "is_complex", None), bool):  # a torch.dtype
        if dtype.is_complex:
            return "c"
        if dtype.is_floating_point:
            return "f"
        return "b" if str(dtype) == "torch.bool" else "i"
    np_dtype = np.dtype(dtype)
    if np_dtype.kind == "V" and "float" in np_dtype.name:  # bfloat16 and friends (ml_dtypes)
        return "f"
    return np_dtype.kind


@dataclasses.dataclass(frozen=True)
class ParameterSpec:
    """Shape, position and domain of one user parameter in the stacked vector ``u``."""

    name: str
    shape: tuple[int, ...]
    offset: int
    size: int
    nonneg: bool
    nonpos: bool
    positive: bool
    psd: bool
    nsd: bool
    symmetric: bool
    diag: bool = False
    position: int = 0

    @property
    def label(self) -> str:
        """How messages name the parameter: its name and its place in ``parameters``."""
        return f"{self.name} (parameters[{self.position}])"

    def check_dtype(self, dtype: Any) -> None:
        """Reject complex and non-numeric dtypes (NumPy, JAX or PyTorch dtypes)."""
        kind = _dtype_kind(dtype)
        if kind == "c":
            raise ParameterError(
                f"parameter {self.label}: got complex values (dtype {dtype}); cvximplicit "
                "layers are real-valued: pass the real part, or split real and imaginary "
                "parts into two real parameters"
            )
        if kind not in "biuf":
            raise ParameterError(
                f"parameter {self.label}: expected a real numeric array, got dtype {dtype}"
            )

    def leading_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The leading (batch) axes of a value of this ``shape``: what precedes the
        parameter's own shape.  Raises `ParameterError` when the trailing axes differ."""
        shape = tuple(int(d) for d in shape)
        own = len(self.shape)
        if len(shape) < own or shape[len(shape) - own :] != self.shape:
            raise ParameterError(
                f"parameter {self.label}: expected shape {self.shape} (with optional leading "
                f"batch dimensions), got {shape}"
            )
        return shape[: len(shape) - own]

    def check(
        self, value: Any, batch: int | None, others: Sequence[ParameterSpec] = ()
    ) -> FloatArray:
        """Validate one value (with a leading batch axis of length ``batch`` if given) and
        return it as a float64 array; never a view the caller could see mutated.

        ``others`` (the program's other parameters) only improve the message of a shape
        mismatch: a value whose shape is another parameter's hints at a swapped order.
        """
        try:
            arr = np.asarray(value)
        except Exception as exc:  # pragma: no cover - exotic array-likes
            raise ParameterError(f"parameter {self.label}: cannot convert value: {exc}") from exc
        self.check_dtype(arr.dtype)
        expected = self.shape if batch is None else (batch, *self.shape)
        if arr.shape != expected:
            accepted = (
                f"{self.shape} or (batch, {', '.join(map(str, self.shape))})"
                if self.shape
                else "() (a scalar) or (batch,)"
            )
            hint = ""
            for other in others:
                if other is not self and arr.shape in (
                    other.shape,
                    (arr.shape[:1] + other.shape) if arr.ndim else (),
                ):
                    hint = (
                        f"; that is the shape of parameter {other.label}: are the values "
                        "passed in the order of `parameters`?"
                    )
                    break
            raise ParameterError(
                f"parameter {self.label}: expected shape {accepted}, got {arr.shape}"
                + ("" if batch is None else f" (the batch size of the other values is {batch})")
                + hint
            )
        arr = np.array(arr, dtype=np.float64, copy=True)
        # One min and one max decide finiteness, magnitude and the sign domains (NaN fails
        # every comparison); the messages below are worked out only for a value that fails.
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if not (lo >= -OVERFLOW and hi <= OVERFLOW):
            if not np.all(np.isfinite(arr)):
                raise ParameterError(
                    f"parameter {self.label}: value contains NaN or Inf; pass finite values"
                )
            raise ParameterError(
                f"parameter {self.label}: entries of magnitude {np.abs(arr).max():.1e} exceed "
                f"{OVERFLOW:.0e}, beyond which a solver's arithmetic (squares, norms, "
                "scalings) overflows double precision: rescale the problem (change units) so "
                "that its data is moderate"
            )
        if self.diag and arr.size:
            off = arr * (1.0 - np.eye(self.shape[0]))
            if np.any(off != 0):
                raise ParameterError(
                    f"parameter {self.label} is declared diag=True but its value has nonzero "
                    f"off-diagonal entries (largest {np.abs(off).max():.3g}); pass a diagonal "
                    "matrix such as np.diag(d)"
                )
        if self.positive and lo <= 0:
            raise ParameterError(
                f"parameter {self.label} must be positive (a geometric program's parameters "
                f"enter through their logarithm), got min {lo:.3g}"
            )
        if self.nonneg and lo < 0:
            raise ParameterError(
                f"parameter {self.label} is declared nonneg but has negative entries (min {lo:.3g})"
            )
        if self.nonpos and hi > 0:
            raise ParameterError(
                f"parameter {self.label} is declared nonpos but has positive entries (max {hi:.3g})"
            )
        if self.psd or self.nsd:
            sym = 0.5 * (arr + np.swapaxes(arr, -1, -2))
            eig = np.linalg.eigvalsh(sym)
            sign = 1.0 if self.psd else -1.0
            worst = float((sign * eig).min())
            tol = 1e-8 * max(1.0, float(np.abs(eig).max()))
            if worst < -tol:
                kind = "PSD" if self.psd else "NSD"
                raise ParameterError(
                    f"parameter {self.label} is declared {kind} but its symmetric part has "
                    f"eigenvalue {sign * worst:.3g}; pass a {kind} matrix"
                )
        return arr

    def flatten(self, arr: FloatArray, batch: bool) -> FloatArray:
        """Column-major (CVXPY) flattening, per batch element when ``batch``."""
        if batch:
            return arr.reshape(arr.shape[0], -1, order="F") if arr.ndim > 1 else arr[:, None]
        return arr.ravel(order="F")

    def unflatten(self, flat: FloatArray) -> FloatArray:
        return flat.reshape(self.shape, order="F")


@dataclasses.dataclass(frozen=True)
class OutputMap:
    """One requested output as a scaled selection of ``x`` (primal) or ``y`` (dual):
    ``out.ravel() = scale * z[index]`` with ``z = x`` or ``y``, followed by ``exp`` for the
    variables of a geometric program (which the cone program holds as logarithms)."""

    name: str
    dual: bool
    index: IntArray
    scale: FloatArray
    shape: tuple[int, ...]
    exp: bool = False
    #: Whether ``index`` has no repeated entries (cotangents then add without ``np.add.at``).
    unique: bool = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "unique", np.unique(self.index).size == self.index.size)

    def _linear(self, x: FloatArray, y: FloatArray) -> FloatArray:
        z = y if self.dual else x
        return (self.scale * z[self.index]).reshape(self.shape)

    def value(self, x: FloatArray, y: FloatArray) -> FloatArray:
        out = self._linear(x, y)
        return np.asarray(np.exp(out)) if self.exp else out

    def tangent(self, dx: FloatArray, dy: FloatArray, value: FloatArray) -> FloatArray:
        """The output's tangent for solution tangents ``(dx, dy)``, at output ``value``."""
        out = self._linear(dx, dy)
        return out * value if self.exp else out

    def add_cotangent(
        self, g: FloatArray, gx: FloatArray, gy: FloatArray, value: FloatArray
    ) -> None:
        g = np.ravel(g * value) if self.exp else np.ravel(g)
        target = gy if self.dual else gx
        if self.unique:
            target[self.index] += self.scale * g
        else:
            np.add.at(target, self.index, self.scale * g)


@dataclasses.dataclass(frozen=True)
class Compiled:
    """Everything the solve path needs, free of CVXPY objects (so it pickles cheaply)."""

    parameters: tuple[ParameterSpec, ...]
    outputs: tuple[OutputMap, ...]
    cones: tuple[Cone, ...]
    n: int
    m: int
    G: sp.csr_array
    GT: sp.csr_array
    g0: FloatArray
    #: Geometric programs: data also depends on ``log(u)`` through ``G_log`` (else ``None``).
    G_log: sp.csr_array | None
    G_logT: sp.csr_array | None
    P_indices: IntArray
    P_indptr: IntArray
    A_indices: IntArray
    A_indptr: IntArray

    @property
    def nnz_P(self) -> int:
        return int(self.P_indices.size)

    @property
    def nnz_A(self) -> int:
        return int(self.A_indices.size)

    def data_vector(self, u: FloatArray) -> FloatArray:
        """``[P-values; A-values; b; c]`` for stacked parameter values ``u``."""
        d = self.G @ u + self.g0
        if self.G_log is not None:
            d = d + self.G_log @ np.log(u)
        return d

    def data_tangent(self, u: FloatArray, du: FloatArray) -> FloatArray:
        d = self.G @ du
        if self.G_log is not None:
            d = d + self.G_log @ (du / u)
        return d

    def data_cotangent(self, u: FloatArray, gd: FloatArray) -> FloatArray:
        gu = self.GT @ gd
        if self.G_logT is not None:
            gu = gu + (self.G_logT @ gd) / u
        return gu

    def split_data(self, d: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        a = self.nnz_P
        b = a + self.nnz_A
        c = b + self.m
        return d[:a], d[a:b], d[b:c], d[c:]


def _resolve_outputs(problem: cp.Problem, variables: Any, gp: bool) -> list[Any]:
    """Check ``variables`` and map constraint dual variables (cvxpylayers' spelling
    ``con.dual_variables[0]``) to their constraints."""
    outputs = (
        list(variables) if not isinstance(variables, (cp.Variable, Constraint)) else [variables]
    )
    if not outputs:
        raise OutputError("`variables` is empty: list the variables (or constraints) to return")
    var_ids = {v.id for v in problem.variables()}
    con_ids = {c.id for c in problem.constraints}
    duals = {
        d.id: c for c in problem.constraints for d in c.dual_variables if len(c.dual_variables) == 1
    }
    resolved = []
    for position, out in enumerate(outputs):
        if isinstance(out, cp.Variable) and out.id in duals:
            out = duals[out.id]
        if isinstance(out, cp.Variable):
            if out.id not in var_ids:
                raise OutputError(
                    f"variables[{position}] ({out.name()}, shape {out.shape}) is not a variable "
                    "of the problem: list variables that appear in its objective or "
                    "constraints, constraints for their duals"
                )
        elif isinstance(out, Constraint):
            if out.id not in con_ids:
                raise OutputError(
                    f"variables[{position}] ({out}) is not a constraint of the problem: for a "
                    "dual value, list a constraint object of this problem"
                )
            if gp:
                raise UnsupportedProblemError(
                    "dual values of geometric programs are not supported as outputs; list "
                    "variables only"
                )
        else:
            raise OutputError(
                "`variables` may hold cvxpy Variables and Constraints (for their duals), got "
                f"{type(out).__name__} at variables[{position}]"
            )
        resolved.append(out)
    return resolved


def _cvxpy_reason(exc: Exception) -> str:
    """CVXPY's message without its generic advice lines."""
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines[:4])


def _not_dpp_parts(problem: cp.Problem, gp: bool) -> str:
    """Name the objective or constraints that break DPP (best effort; '' if none found)."""
    context = "dgp" if gp else "dcp"
    parts = []
    try:
        if not problem.objective.is_dpp(context):
            parts.append("the objective")
        for k, con in enumerate(problem.constraints):
            if not con.is_dpp(context):
                parts.append(f"constraints[{k}] ({str(con)[:60]})")
    except Exception:  # pragma: no cover - a CVXPY version without per-part checks
        return ""
    return f": {', '.join(parts[:3])} {'is' if len(parts) == 1 else 'are'} not DPP" if parts else ""


def _cones_from_dims(dims: Any) -> list[Cone]:
    """CVXPY's cone dimensions, in CVXPY's row order, as cone objects."""
    if getattr(dims, "pnd", None):
        raise UnsupportedProblemError(
            "the problem needs n-dimensional power cones (PowConeND), which cvximplicit does "
            "not support; express the constraint with 3-dimensional power cones (PowCone3D)"
        )
    return [
        ZeroCone(dims.zero),
        NonnegativeCone(dims.nonneg),
        SecondOrderCone(dims.soc),
        PSDCone(dims.psd),
        ExponentialCone(dims.exp),
        PowerCone(dims.p3d),
    ]


def _parameter_specs(
    problem: cp.Problem, parameters: Sequence[cp.Parameter], gp: bool = False
) -> tuple[ParameterSpec, ...]:
    if isinstance(parameters, cp.Parameter):
        parameters = [parameters]
    params = list(parameters)
    for p in params:
        if not isinstance(p, cp.Parameter):
            raise ParameterError(f"parameters must be cvxpy Parameters, got {type(p).__name__}")
    ids = [p.id for p in params]
    if len(set(ids)) != len(ids):
        raise ParameterError("a parameter is listed twice in `parameters`")
    in_problem = {p.id: p for p in problem.parameters()}
    unknown = [p.name() for p in params if p.id not in in_problem]
    if unknown:
        raise ParameterError(
            f"parameters {unknown} do not appear in the problem; remove them from `parameters`"
        )
    missing = [p.name() for pid, p in in_problem.items() if pid not in set(ids)]
    if missing:
        raise ParameterError(
            f"the problem's parameters {missing} are missing from `parameters`; list every "
            "parameter of the problem (values are passed at solve time)"
        )
    specs, offset = [], 0
    for position, p in enumerate(params):
        if p.attributes.get("complex") or p.attributes.get("imag") or p.attributes.get("hermitian"):
            raise UnsupportedProblemError(f"complex parameter {p.name()} is not supported")
        attrs = p.attributes
        specs.append(
            ParameterSpec(
                name=p.name(),
                shape=tuple(int(d) for d in p.shape),
                offset=offset,
                size=int(p.size),
                # pos=True outside a geometric program only gives the sign DCP uses: 0 is
                # accepted, as cvxpylayers does (a GP takes logarithms: strictly positive)
                nonneg=bool(attrs["nonneg"] or attrs["pos"]),
                positive=bool(gp),
                nonpos=bool(attrs["nonpos"] or attrs["neg"]),
                psd=bool(attrs["PSD"]),
                nsd=bool(attrs["NSD"]),
                symmetric=bool(attrs["symmetric"] or attrs["PSD"] or attrs["NSD"]),
                diag=bool(attrs.get("diag")),
                position=position,
            )
        )
        offset += int(p.size)
    return tuple(specs)


def _theta_map(
    params: Sequence[cp.Parameter],
    specs: Sequence[ParameterSpec],
    chain: Any,
    param_prob: Any,
    log_ids: dict[int, list[int]],
) -> tuple[sp.csr_array, sp.csr_array | None]:
    """Sparse ``R, R_log`` with ``theta = R u + R_log log(u)``: user values -> CVXPY's reduced
    parameter vector.

    Parameters with dimension-reducing attributes (symmetric, PSD, diag, sparsity) are
    replaced by CVXPY with reduced parameters; a symmetric parameter enters through its
    symmetric part ``(X + X')/2``, so that its gradient is symmetric and the map is defined
    for every square input.  In a geometric program CVXPY replaces each parameter by its
    logarithm (``log_ids``), which ``R_log`` carries.
    """
    from cvxpy.reductions.cvx_attr2constr import lower_value

    id_to_col = param_prob.param_id_to_col
    total = sum(s.size for s in specs)
    shape = (param_prob.total_param_size, total)
    R_log = None
    if log_ids:
        lrows, lcols = [], []
        for p, spec in zip(params, specs):
            for new_id in log_ids.get(p.id, []):
                if new_id in id_to_col:
                    lrows.append(id_to_col[new_id] + np.arange(spec.size))
                    lcols.append(spec.offset + np.arange(spec.size))
        if lrows:
            rr, cc = np.concatenate(lrows), np.concatenate(lcols)
            R_log = sp.csr_array((np.ones(rr.size), (rr, cc)), shape=shape)
    replaced = chain.compose_param_id_map() if hasattr(chain, "compose_param_id_map") else {}
    replaced = {k: v for k, v in replaced.items() if k not in log_ids}
    rows: list[IntArray] = []
    cols: list[IntArray] = []
    vals: list[FloatArray] = []
    for p, spec in zip(params, specs):
        if p.id in id_to_col:
            k = np.arange(spec.size)
            rows.append(id_to_col[p.id] + k)
            cols.append(spec.offset + k)
            vals.append(np.ones(spec.size))
            continue
        new_ids = [i for i in replaced.get(p.id, []) if i in id_to_col]
        if not new_ids:
            continue  # the parameter does not influence the data: zero derivative
        col = id_to_col[new_ids[0]]
        probe = np.arange(spec.size, dtype=np.float64).reshape(spec.shape, order="F")
        picked = np.rint(np.asarray(lower_value(p, probe), dtype=np.float64)).astype(np.int64)
        picked = picked.ravel(order="F")
        k = np.arange(picked.size)
        if spec.symmetric:
            transposed = np.arange(spec.size).reshape(spec.shape, order="F").T.ravel(order="F")
            rows += [col + k, col + k]
            cols += [spec.offset + picked, spec.offset + transposed[picked]]
            vals += [np.full(k.size, 0.5), np.full(k.size, 0.5)]
        else:
            rows.append(col + k)
            cols.append(spec.offset + picked)
            vals.append(np.ones(k.size))
    if not rows:
        return sp.csr_array(shape), R_log
    R = sp.csr_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape
    )
    return R, R_log


def _data_map(param_prob: Any, n: int, m: int) -> tuple[Any, tuple[IntArray, ...]]:
    """``M`` with ``[P-values; A-values; b; c] = M[:, :-1] theta + M[:, -1]``, and patterns."""
    param_prob.reduced_A.cache()
    ncol = param_prob.total_param_size + 1
    if param_prob.reduced_A.problem_data_index is not None:
        a_ind, a_ptr, _ = param_prob.reduced_A.problem_data_index
        MA_full = sp.csr_array(param_prob.reduced_A.reduced_mat)
    else:  # no constraints
        a_ind, a_ptr = np.zeros(0, np.int64), np.zeros(n + 2, np.int64)
        MA_full = sp.csr_array((0, ncol))
    a_ind = np.asarray(a_ind, dtype=np.int64)
    a_ptr = np.asarray(a_ptr, dtype=np.int64)
    split = int(a_ptr[n])
    MA = -MA_full[:split]  # CVXPY stores (A, b) with A x + b in K; solvers take -A
    b_rows = a_ind[split:]
    scatter = sp.csr_array(
        (np.ones(b_rows.size), (b_rows, np.arange(b_rows.size))), shape=(m, b_rows.size)
    )
    Mb = scatter @ MA_full[split:]
    if param_prob.P is not None:
        param_prob.reduced_P.cache()
        p_ind, p_ptr, _ = param_prob.reduced_P.problem_data_index
        MP = sp.csr_array(param_prob.reduced_P.reduced_mat)
        p_ind = np.asarray(p_ind, dtype=np.int64)
        p_ptr = np.asarray(p_ptr, dtype=np.int64)
    else:
        p_ind, p_ptr = np.zeros(0, np.int64), np.zeros(n + 1, np.int64)
        MP = sp.csr_array((0, ncol))
    Mc = sp.csr_array(param_prob.q)[:n]
    M = sp.vstack([MP, MA, Mb, Mc], format="csr")
    return M, (p_ind, p_ptr, a_ind[:split], a_ptr[: n + 1])


def _probe_outputs(
    outputs: Sequence[Any],
    chain: Any,
    inverse_data: Any,
    n: int,
    m: int,
    log_vars: dict[int, list[int]] | None = None,
) -> tuple[OutputMap, ...]:
    """Recover each output as a scaled selection of ``x`` or ``y`` by inverting tagged vectors.

    CVXPY's inversion is linear on the tags except where it projects a variable onto its
    sign domain, so tags of both signs are used and an entry is read off whichever sign
    survives; a third random probe checks the result.
    """
    rng = np.random.default_rng(0)

    def invert(xv: FloatArray, zv: FloatArray) -> tuple[dict[int, Any], dict[int, Any]]:
        fake = types.SimpleNamespace(
            status="Solved", solve_time=0.0, iterations=0, x=xv, z=zv, s=np.zeros(m), obj_val=0.0
        )
        sol = chain.invert(fake, inverse_data)
        return sol.primal_vars or {}, sol.dual_vars or {}

    t1x, t1z = np.arange(1.0, n + 1), np.arange(1.0, m + 1)
    r_x, r_z = rng.uniform(1.0, 2.0, n), rng.uniform(1.0, 2.0, m)
    probes = {
        sign: [
            invert(sign * t1x, sign * t1z),
            invert(sign * t1x**2, sign * t1z**2),
            invert(sign * r_x, sign * r_z),
        ]
        for sign in (1.0, -1.0)
    }
    maps = []
    for out in outputs:
        dual = isinstance(out, Constraint)
        key = out.id
        if log_vars is not None:  # geometric program: the cone program holds log(x)
            key = log_vars.get(key, [key])[0]
        size = n if not dual else m
        name = str(out) if dual else out.name()
        got = {}
        for sign, results in probes.items():
            arrays = [res[1 if dual else 0].get(key) for res in results]
            if any(a is None for a in arrays):
                break
            got[sign] = [np.asarray(a, dtype=np.float64) for a in arrays]
        if len(got) < 2:
            what = "constraint" if dual else "variable"
            raise UnsupportedProblemError(
                f"the {what} {name} does not appear in the canonical problem, so it has no "
                "value to return; remove it from `variables`"
            )
        shape = got[1.0][0].shape
        flat = {s: [a.ravel() for a in arrs] for s, arrs in got.items()}
        index = np.zeros(flat[1.0][0].size, dtype=np.int64)
        scale = np.zeros(index.size)
        for sign in (1.0, -1.0):
            o1, o2, _ = flat[sign]
            todo = (scale == 0) & (o1 != 0)
            k = np.rint(o2[todo] / o1[todo]).astype(np.int64) - 1
            if np.any((k < 0) | (k >= size)):
                raise UnsupportedProblemError(f"output {name} is not a selection of the solution")
            index[todo] = k
            scale[todo] = o1[todo] / (sign * (k + 1))
        for sign in (1.0, -1.0):
            _, _, o3 = flat[sign]
            r = r_z if dual else r_x
            expected = scale * sign * r[index]
            ok = np.isclose(o3, expected, rtol=1e-9, atol=0) | (o3 == 0)
            if not np.all(ok):
                raise UnsupportedProblemError(
                    f"output {name} is not a linear function of the canonical solution; "
                    "cvximplicit cannot differentiate it"
                )
        maps.append(
            OutputMap(
                name=name,
                dual=dual,
                index=index,
                scale=scale,
                shape=shape,
                exp=log_vars is not None,
            )
        )
    return tuple(maps)


def canonicalize(
    problem: cp.Problem,
    parameters: Sequence[cp.Parameter],
    variables: Sequence[Any],
    gp: bool = False,
) -> Compiled:
    """Build the `Compiled` maps of a DPP problem (see the module docstring)."""
    if not isinstance(problem, cp.Problem):
        raise TypeError(f"expected a cvxpy.Problem, got {type(problem).__name__}")
    if any(v.attributes.get("boolean") or v.attributes.get("integer") for v in problem.variables()):
        raise UnsupportedProblemError(
            "integer and boolean variables are not supported: the solution map of a "
            "mixed-integer problem is piecewise constant and has no useful derivative"
        )
    specs = _parameter_specs(problem, parameters, gp)
    outputs = _resolve_outputs(problem, variables, gp)
    # A fresh Problem object, so that CVXPY's compilation cache is not stored on the user's.
    work = cp.Problem(problem.objective, problem.constraints)
    try:
        data, chain, inverse_data = work.get_problem_data(
            solver=cp.CLARABEL, gp=gp, enforce_dpp=True, solver_opts={"use_quad_obj": True}
        )
    except DPPError as exc:
        where = _not_dpp_parts(problem, gp)
        if gp:
            raise NonDPPError(
                "the problem is not DGP-DPP (disciplined geometric programming with "
                f"parameters), which gp=True requires{where}; see "
                "https://www.cvxpy.org/tutorial/dgp/"
            ) from exc
        raise NonDPPError(
            f"the problem is not DPP (disciplined parametrized programming){where}, so its "
            "data is not an affine function of the parameters. Rewrite products of parameters "
            "as a new parameter, keep parameters out of nonlinear atoms' curvature-defining "
            "arguments, and see https://www.cvxpy.org/tutorial/dpp/"
        ) from exc
    except DCPError as exc:
        raise NonDCPError(
            "the problem is not convex by the disciplined convex programming (DCP) rules, so "
            "it has no cone-program form to differentiate. CVXPY said: " + _cvxpy_reason(exc)
        ) from exc
    except DGPError as exc:
        raise NonDCPError(
            "the problem is not a disciplined geometric program (gp=True). CVXPY said: "
            + _cvxpy_reason(exc)
        ) from exc
    param_prob = data[cvxpy_settings.PARAM_PROB]
    m, n = (int(d) for d in data["A"].shape)
    cones = _cones_from_dims(data["dims"])
    params = list(parameters) if not isinstance(parameters, cp.Parameter) else [parameters]
    log_ids: dict[int, list[int]] = {}
    log_vars: dict[int, list[int]] | None = None
    probe_chain, probe_inverse = chain, inverse_data
    if gp:
        # Dgp2Dcp replaces parameters and variables by their logarithms; probe the rest of
        # the chain (which is linear) and apply exp to the outputs ourselves.
        reductions = cast(Any, chain).reductions
        dgp = reductions[0]
        log_ids, log_vars = dict(dgp.param_id_map), dict(dgp.var_id_map)
        probe_chain = Chain(reductions=reductions[1:])
        probe_inverse = inverse_data[1:]
    R, R_log = _theta_map(params, specs, chain, param_prob, log_ids)
    M, (p_ind, p_ptr, a_ind, a_ptr) = _data_map(param_prob, n, m)
    const_col = param_prob.param_id_to_col.get(-1, param_prob.total_param_size)
    linear = M[:, :const_col] if const_col == shape2(M)[1] - 1 else None
    if linear is None:  # pragma: no cover - CVXPY always puts the constant last
        raise UnsupportedProblemError("unexpected CVXPY parameter layout")
    G = sp.csr_array(linear @ R)
    G_log = None if R_log is None else sp.csr_array(linear @ R_log)
    g0 = np.asarray(M[:, [const_col]].toarray()).ravel()
    maps = _probe_outputs(outputs, probe_chain, probe_inverse, n, m, log_vars)
    return Compiled(
        parameters=specs,
        outputs=maps,
        cones=tuple(cones),
        n=n,
        m=m,
        G=G,
        GT=sp.csr_array(G.T),
        g0=g0,
        G_log=G_log,
        G_logT=None if G_log is None else sp.csr_array(G_log.T),
        P_indices=p_ind,
        P_indptr=p_ptr,
        A_indices=a_ind,
        A_indptr=a_ptr,
    )
