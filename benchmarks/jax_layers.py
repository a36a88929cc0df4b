"""JAX layer timings: eager, jit, grad and vmap at batch 1 and 32, beside cvxpylayers' JAX layer.

Writes ``benchmarks/results/jax_layers.md``.  Run ``python benchmarks/jax_layers.py``.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from cvximplicit import problems
from cvximplicit.jax import CvxpyLayer

jax.config.update("jax_enable_x64", True)
RESULTS = Path(__file__).parent / "results"


def timed(fn, *args, repeats=5):
    jax.block_until_ready(fn(*args))  # compile / warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    rows = []
    for name, make, size in (
        ("nnls", problems.nnls, dict(m=30, n=20)),
        ("qp", problems.qp, dict(n=20, p=10, q=1)),
    ):
        fam = make(**size, seed=0)
        out = [v for v in fam.variables if hasattr(v, "name") and not hasattr(v, "dual_value")]
        params = [jnp.asarray(v) for v in fam.values]
        batch = [jnp.stack([p] * 32) for p in params]
        layers = {"cvximplicit": CvxpyLayer(fam.problem, fam.parameters, out)}
        try:
            from cvxpylayers.jax import CvxpyLayer as PeerLayer

            layers["cvxpylayers (jax)"] = PeerLayer(fam.problem, fam.parameters, out)
        except Exception as exc:  # a peer that cannot be built is a result
            print(f"cvxpylayers jax layer unavailable: {exc}")
        for label, layer in layers.items():
            loss = lambda *p, layer=layer: sum(jnp.sum(o) for o in layer(*p))  # noqa: E731
            grad = jax.grad(loss, argnums=tuple(range(len(params))))
            row = {"family": name, "layer": label}
            for key, fn, args in (
                ("eager b1", lambda *p, layer=layer: layer(*p), params),
                ("jit b1", jax.jit(lambda *p, layer=layer: layer(*p)), params),
                ("grad b1", grad, params),
                ("jit(grad) b1", jax.jit(grad), params),
                ("eager b32", lambda *p, layer=layer: layer(*p), batch),
                ("vmap b32", jax.vmap(lambda *p, layer=layer: layer(*p)), batch),
                ("jit(vmap) b32", jax.jit(jax.vmap(lambda *p, layer=layer: layer(*p))), batch),
                ("vmap(grad) b32", jax.vmap(grad), batch),
            ):
                try:
                    row[key] = f"{timed(fn, *args):.1f}"
                except Exception as exc:
                    row[key] = f"fails ({type(exc).__name__})"
            rows.append(row)
            print(row, flush=True)
    keys = [k for k in rows[0] if k not in ("family", "layer")]
    lines = [
        "# JAX layer timings (ms, medians of 5 after warm-up; 2 cores)",
        "",
        "| family | layer | " + " | ".join(keys) + " |",
        "|---|---|" + "---:|" * len(keys),
    ]
    for r in rows:
        lines.append(f"| {r['family']} | {r['layer']} | " + " | ".join(r[k] for k in keys) + " |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "jax_layers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
