"""Implicit layers: time, gradient accuracy and memory of implicit vs unrolled vs phantom.

Models: the deep equilibrium classifier of ``examples/deq_digits.py``
(``z = relu(W z + U x + b)``, ``||W||_2 <= 0.9``, hidden 64, batch 64) and a larger one
(hidden 256, batch 128), each trained for a few epochs on scikit-learn's digits so that the
spectral radius of ``J_z f`` is what training produces.  For PyTorch (eager) and JAX
(``jit``), float32 and float64, one cross-entropy forward + backward on a fixed batch:

- ``implicit``: ``fixed_point`` with its defaults for the dtype (Anderson forward,
  ``backward_solver`` default), and with ``backward_solver="fixed_point"``;
- ``phantom``: ``gradient="phantom"`` (5 steps; **inexact**);
- ``unrolled``: autograd through ``k`` plain iterations ``z <- f(z)`` written by hand, with
  ``k`` the smallest of a grid whose gradient is at least as accurate as the implicit one
  (equal gradient accuracy).

Gradient errors are relative to a float64 implicit gradient at tolerance 1e-12.  Times are
medians over rounds that alternate the methods (so machine load affects all alike).
Memory: bytes autograd saves for the backward pass (PyTorch) and the temporary buffers of
the compiled ``jit(grad)`` (JAX).  Writes ``benchmarks/results/implicit.{md,json}``.
Run ``python benchmarks/implicit.py`` (about 3 minutes on 2 cores; ``--quick`` for a smoke
run).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from sklearn.datasets import load_digits

from cvximplicit.jax import fixed_point as jax_fixed_point
from cvximplicit.torch import fixed_point

jax.config.update("jax_enable_x64", True)
torch.set_num_threads(1)
RESULTS = Path(__file__).parent / "results"
QUICK = "--quick" in sys.argv
GRID = tuple(range(5, 201, 5))  # unrolled steps tried, smallest first


def train(hidden: int, batch: int, epochs: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Train the example's DEQ briefly (float32, implicit gradients); its weights."""
    torch.manual_seed(seed)
    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    U, V = torch.nn.Linear(64, hidden), torch.nn.Linear(hidden, 10)
    W = torch.nn.Linear(hidden, hidden, bias=False)
    opt = torch.optim.Adam([*U.parameters(), *V.parameters(), *W.parameters()], lr=5e-3)

    def weight() -> torch.Tensor:
        return W.weight * torch.clamp(0.9 / torch.linalg.matrix_norm(W.weight, ord=2), max=1.0)

    for _ in range(epochs):
        perm = torch.randperm(len(X))
        for i in range(0, len(X) - batch + 1, batch):
            idx = perm[i : i + batch]
            Wn, inj = weight(), U(X[idx])
            f = lambda z, inj, Wn=Wn: torch.relu(z @ Wn.T + inj)  # noqa: E731
            z = fixed_point(f, torch.zeros_like(inj), inj)
            loss = torch.nn.functional.cross_entropy(V(z), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    idx = torch.arange(batch)
    with torch.no_grad():
        return {
            "W": weight().double().numpy(),
            "U": U.weight.double().numpy(),
            "b": U.bias.double().numpy(),
            "V": V.weight.double().numpy(),
            "c": V.bias.double().numpy(),
            "X": X[idx].double().numpy(),
            "y": y[idx].numpy(),
        }


# --- PyTorch -------------------------------------------------------------------------------


def torch_case(w: dict[str, np.ndarray], dtype: torch.dtype):
    params = [torch.tensor(w[k], dtype=dtype, requires_grad=True) for k in ("W", "U", "b", "V")]
    X, y, c = (
        torch.tensor(w["X"], dtype=dtype),
        torch.tensor(w["y"]),
        torch.tensor(w["c"], dtype=dtype),
    )

    def loss_of(z: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(z @ V.T + c, y)

    def implicit(**kw: Any):
        W, U, b, V = params
        inj = X @ U.T + b
        z, info = fixed_point(
            lambda z, inj: torch.relu(z @ W.T + inj), torch.zeros_like(inj), inj,
            return_info=True, **kw,
        )  # fmt: skip
        return loss_of(z, V), info

    def unrolled(k: int):
        W, U, b, V = params
        inj = X @ U.T + b
        z = torch.zeros_like(inj)
        for _ in range(k):
            z = torch.relu(z @ W.T + inj)
        return loss_of(z, V), None

    def grad(fn, **kw):
        loss, info = fn(**kw)
        return torch.autograd.grad(loss, params), info

    return params, implicit, unrolled, grad


def saved_bytes(fn) -> int:
    total = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total[0]


def rel_error(grads, ref) -> float:
    return max(
        float(np.linalg.norm(np.asarray(a, dtype=np.float64) - r) / np.linalg.norm(r))
        for a, r in zip(grads, ref)
    )


def timed_rounds(fns: dict[str, Any], rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm up (and compile, for JAX)
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def run_torch(w, dtype, ref, rounds) -> tuple[list[dict[str, Any]], int]:
    _, implicit, unrolled, grad = torch_case(w, dtype)
    to_np = lambda g: [t.detach().double().numpy() for t in g]  # noqa: E731
    methods: dict[str, tuple[Any, dict[str, Any]]] = {
        "implicit": (implicit, {}),
        "implicit, backward fixed_point": (implicit, {"backward_solver": "fixed_point"}),
        "phantom (5 steps, inexact)": (implicit, {"gradient": "phantom"}),
    }
    g_imp, _ = grad(implicit)
    target = rel_error(to_np(g_imp), ref)
    k = next((k for k in GRID if rel_error(to_np(grad(unrolled, k=k)[0]), ref) <= target), GRID[-1])
    methods[f"unrolled (k={k})"] = (unrolled, {"k": k})
    fwd_bwd = {n: (lambda fn=fn, kw=kw: grad(fn, **kw)) for n, (fn, kw) in methods.items()}

    def forward_only(fn, kw):
        with torch.no_grad():
            fn(**kw)

    fwd = {n: (lambda fn=fn, kw=kw: forward_only(fn, kw)) for n, (fn, kw) in methods.items()}
    t_total = timed_rounds(fwd_bwd, rounds)
    t_fwd = timed_rounds(fwd, rounds)
    rows = []
    for name, (fn, kw) in methods.items():
        g, info = grad(fn, **kw)
        rows.append(
            {
                "method": name,
                "forward+backward ms": t_total[name],
                "forward ms": t_fwd[name],
                "gradient error": rel_error(to_np(g), ref),
                "iterations": _iterations(info, kw),
                "memory KiB": saved_bytes(lambda fn=fn, kw=kw: fn(**kw)) / 1024,
            }
        )
    return rows, k


def _iterations(info, kw) -> str:
    if info is None:
        return str(kw.get("k", ""))
    back = "-" if info.backward is None else str(int(info.backward.iterations))
    return f"{int(info.forward.iterations)} / {back}"


# --- JAX -------------------------------------------------------------------------------------


def run_jax(w, dtype, ref, rounds, k: int) -> list[dict[str, Any]]:
    params = {key: jnp.asarray(w[key], dtype) for key in ("W", "U", "b", "V")}
    X, c = jnp.asarray(w["X"], dtype), jnp.asarray(w["c"], dtype)
    onehot = jax.nn.one_hot(jnp.asarray(w["y"]), 10, dtype=dtype)
    f = lambda z, W, inj: jax.nn.relu(z @ W.T + inj)  # noqa: E731

    def loss_of(z, V):
        return -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(z @ V.T + c), axis=1))

    def implicit(p, **kw):
        inj = X @ p["U"].T + p["b"]
        return loss_of(jax_fixed_point(f, jnp.zeros_like(inj), p["W"], inj, **kw), p["V"])

    def unrolled(p, k=k):
        inj = X @ p["U"].T + p["b"]
        z = jax.lax.fori_loop(0, k, lambda _, z: f(z, p["W"], inj), jnp.zeros_like(inj))
        return loss_of(z, p["V"])

    methods = {
        "implicit": lambda p: implicit(p),
        "implicit, backward fixed_point": lambda p: implicit(p, backward_solver="fixed_point"),
        "phantom (5 steps, inexact)": lambda p: implicit(p, gradient="phantom"),
        f"unrolled (k={k})": unrolled,
    }
    grads = {n: jax.jit(jax.grad(fn)) for n, fn in methods.items()}
    fwds = {n: jax.jit(fn) for n, fn in methods.items()}
    t_total = timed_rounds(
        {n: lambda g=g: jax.block_until_ready(g(params)) for n, g in grads.items()}, rounds
    )
    t_fwd = timed_rounds(
        {n: lambda g=g: jax.block_until_ready(g(params)) for n, g in fwds.items()}, rounds
    )
    rows = []
    for name in methods:
        g = grads[name](params)
        memory = grads[name].lower(params).compile().memory_analysis()
        rows.append(
            {
                "method": name,
                "forward+backward ms": t_total[name],
                "forward ms": t_fwd[name],
                "gradient error": rel_error([g[key] for key in ("W", "U", "b", "V")], ref),
                "iterations": str(k) if name.startswith("unrolled") else "",
                "memory KiB": (memory.temp_size_in_bytes if memory else float("nan")) / 1024,
            }
        )
    return rows


def reference(w) -> list[np.ndarray]:
    _, implicit, _, grad = torch_case(w, torch.float64)
    g, _ = grad(implicit, tol=1e-12, backward_tol=1e-12, max_iter=2000)
    return [t.detach().numpy() for t in g]


def main() -> None:
    rounds = 3 if QUICK else 9
    models = {"digits DEQ (hidden 64, batch 64)": (64, 64, 1 if QUICK else 4)}
    if not QUICK:
        models["large (hidden 256, batch 128)"] = (256, 128, 3)
    rows: list[dict[str, Any]] = []
    for model, (hidden, batch, epochs) in models.items():
        w = train(hidden, batch, epochs)
        ref = reference(w)
        rho = _spectral_radius(w)
        print(f"{model}: spectral radius of J_z f at the batch's solution {rho:.3f}")
        for dtype_name, tdtype, jdtype in (
            ("float32", torch.float32, jnp.float32),
            ("float64", torch.float64, jnp.float64),
        ):
            trows, k = run_torch(w, tdtype, ref, rounds)
            jrows = run_jax(w, jdtype, ref, rounds, k)
            for fw, rs in (("torch", trows), ("jax", jrows)):
                for r in rs:
                    r.update(model=model, framework=fw, dtype=dtype_name, spectral_radius=rho)
                    rows.append(r)
                    print(
                        f"{fw:5s} {dtype_name} {r['method']:32s} {r['forward+backward ms']:8.2f} ms"
                        f" (fwd {r['forward ms']:6.2f}) err {r['gradient error']:.1e} "
                        f"mem {r['memory KiB']:8.0f} KiB {r['iterations']}"
                    )
    if QUICK:
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "implicit.json").write_text(json.dumps(rows, indent=1))
    lines = [
        "# Implicit layers: implicit vs unrolled vs phantom gradients",
        "",
        "`python benchmarks/implicit.py` on 2 CPU cores (shared), PyTorch eager and JAX `jit`, "
        f"medians of {rounds} alternated rounds. One cross-entropy forward + backward on a "
        "fixed batch; gradient error relative to a float64 implicit gradient at tolerance "
        "1e-12 (largest over W, U, b, V). `unrolled (k)`: autograd through k plain iterations, "
        "k the smallest in a grid at least as accurate as `implicit` (torch, same dtype). "
        "Iterations: forward / backward (PyTorch's info; JAX's backward does not report). "
        "Memory: bytes autograd saves (PyTorch), temporary buffers of the compiled "
        "`jit(grad)` (JAX).",
        "",
    ]
    for model in models:
        rho = next(r["spectral_radius"] for r in rows if r["model"] == model)
        lines += [
            f"## {model}; spectral radius of J_z f {rho:.2f}",
            "",
            "| framework | dtype | method | fwd+bwd ms | fwd ms | gradient error | iterations "
            "| memory KiB |",
            "|---|---|---|---:|---:|---:|---|---:|",
        ]
        for r in rows:
            if r["model"] != model:
                continue
            lines.append(
                f"| {r['framework']} | {r['dtype']} | {r['method']} | "
                f"{r['forward+backward ms']:.2f} | {r['forward ms']:.2f} | "
                f"{r['gradient error']:.1e} | {r['iterations']} | {r['memory KiB']:.0f} |"
            )
        lines.append("")
    (RESULTS / "implicit.md").write_text("\n".join(lines))
    print(f"wrote {RESULTS / 'implicit.md'}")


def _spectral_radius(w) -> float:
    z = np.zeros((len(w["X"]), w["W"].shape[0]))
    inj = w["X"] @ w["U"].T + w["b"]
    for _ in range(3000):
        z = np.maximum(z @ w["W"].T + inj, 0.0)
    active = (z @ w["W"].T + inj > 0).astype(float)
    return max(max(abs(np.linalg.eigvals(a[:, None] * w["W"]))) for a in active)


if __name__ == "__main__":
    main()
