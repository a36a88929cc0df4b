"""Quickstart: a nonnegative least-squares layer, its derivatives and its diagnostics.

Run with ``make demo`` (or ``python examples/quickstart.py``).
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np

import cvximplicit as ci


def main() -> None:
    rng = np.random.default_rng(0)
    m, n = 30, 10

    # 1. An inner problem written in CVXPY, with parameters A and b.
    x = cp.Variable(n)
    A, b = cp.Parameter((m, n)), cp.Parameter(m)
    nonneg = x >= 0
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(A @ x - b)), [nonneg])

    # 2. Compile once: outputs are x and the dual of `x >= 0`.
    program = ci.compile(problem, parameters=[A, b], variables=[x, nonneg])
    print(program)

    # 3. Solve (numpy in, numpy out) and differentiate.
    A_val, b_val = rng.standard_normal((m, n)), rng.standard_normal(m)
    sol = program.solve(A_val, b_val)
    x_val, dual = sol.values
    print(f"\nx* = {np.round(x_val, 4) + 0.0}")
    print(f"dual of x >= 0: {np.round(dual, 4) + 0.0}")
    print(f"active constraints: {int(np.sum(x_val < 1e-9))} of {n}")

    # Reverse mode: gradient of sum(x*) with respect to A and b.
    gA, gb = sol.vjp(np.ones(n), None)
    # Forward mode: directional derivative of x* along a random (dA, db).
    dA, db = rng.standard_normal((m, n)), rng.standard_normal(m)
    dx, _ = sol.jvp(dA, db)

    # 4. Check against central finite differences of re-solves.
    h = 1e-6
    x_plus = program.solve(A_val + h * dA, b_val + h * db).values[0]
    x_minus = program.solve(A_val - h * dA, b_val - h * db).values[0]
    fd = (x_plus - x_minus) / (2 * h)
    error = np.linalg.norm(dx - fd) / np.linalg.norm(fd)
    print(f"\nJVP vs finite differences: relative error {error:.1e}")
    adjoint = abs(np.sum(gA * dA) + gb @ db - dx.sum())
    print(f"VJP/JVP adjoint identity: |<g, J t> - <J'g, t>| = {adjoint:.1e}")

    # 5. What the solve and the derivative report about themselves.
    print("\nDiagnostics:")
    print(sol.diagnostics)

    # 6. A batch of 8 instances (A batched, b shared), solved in parallel threads.
    batch = program.solve_batch(A_val + 0.1 * rng.standard_normal((8, m, n)), b_val)
    gA_batch, gb_shared = batch.vjp(np.ones((8, n)), None)
    print(
        f"\nbatch of {len(batch)}: x has shape {batch.values[0].shape}, "
        f"dL/dA {gA_batch.shape} (per instance), dL/db {gb_shared.shape} (summed)"
    )


if __name__ == "__main__":
    main()
