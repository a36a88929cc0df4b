"""Fit the costs of a transport-like LP layer in JAX, under jit and vmap.

A linear program with a box and one equality (a budget) turns a cost vector into an
allocation.  We observe allocations made with unknown costs ``c_true + noise_i`` and learn
the costs by gradient descent through a quadratically regularised version of the LP (so
the allocation is unique and differentiable), batching the examples with ``jax.vmap`` and
compiling the whole step with ``jax.jit``.  Plain gradient steps, no optimiser library.

Writes ``jax_layer_loss.png``.  Run: ``python examples/jax_layer.py``.
"""

from __future__ import annotations

import os

import cvxpy as cp
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

from cvximplicit.jax import CvxpyLayer

jax.config.update("jax_enable_x64", True)
SMOKE = os.environ.get("CVXIMPLICIT_SMOKE") == "1"


def allocation_layer(n: int) -> CvxpyLayer:
    """``x = argmin c'x + ||x||^2 s.t. 0 <= x <= 1, sum(x) = budget``."""
    x, c = cp.Variable(n), cp.Parameter(n)
    budget = n / 3
    objective = c @ x + cp.sum_squares(x)
    problem = cp.Problem(cp.Minimize(objective), [x >= 0, x <= 1, cp.sum(x) == budget])
    return CvxpyLayer(problem, parameters=[c], variables=[x])


def main() -> None:
    n, samples, steps = (6, 16, 5) if SMOKE else (12, 64, 150)
    layer = allocation_layer(n)
    rng = np.random.default_rng(0)
    c_true = jnp.asarray(0.5 * rng.standard_normal(n))
    noise = jnp.asarray(0.1 * rng.standard_normal((samples, n)))
    targets = jax.vmap(lambda e: layer(c_true + e)[0])(noise)

    def loss(c: jax.Array) -> jax.Array:
        pred = jax.vmap(lambda e: layer(c + e)[0])(noise)  # one batched host solve
        return jnp.mean(jnp.sum((pred - targets) ** 2, axis=1))

    step = jax.jit(jax.value_and_grad(loss))
    c = jnp.zeros(n)
    losses = []
    for _ in tqdm(range(steps), desc="gradient steps", disable=SMOKE):
        value, grad = step(c)
        c = c - 1.0 * grad
        losses.append(float(value))
    err = float(jnp.max(jnp.abs((c - c.mean()) - (c_true - c_true.mean()))))
    print(f"loss {losses[0]:.3e} -> {losses[-1]:.3e}; cost error (up to a shift) {err:.2e}")

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.semilogy(losses)
    ax.set_xlabel("gradient step")
    ax.set_ylabel("mean squared error")
    ax.set_title("Learning LP costs through a JAX layer")
    fig.tight_layout()
    fig.savefig("jax_layer_loss.png", dpi=120)
    print("wrote jax_layer_loss.png")


if __name__ == "__main__":
    main()
