"""The general route to bilevel LASSO: a CVXPY layer and a PyTorch optimiser.

The inner LASSO is written in CVXPY with the penalty as a parameter; a PyTorch optimiser
minimises the validation MSE over ``log(alpha)``, the gradient flowing through the layer.
The fast route (``cvximplicit.lasso``) computes the same hypergradient with one small
solve on the support; this script prints both.  Run: ``python examples/bilevel_lasso_layer.py``.
"""

from __future__ import annotations

import os

import cvxpy as cp
import numpy as np
import torch

from cvximplicit.lasso import hypergradient
from cvximplicit.torch import CvxpyLayer

SMOKE = os.environ.get("CVXIMPLICIT_SMOKE") == "1"


def main() -> None:
    rng = np.random.default_rng(0)
    n, p = 80, 30
    X = rng.standard_normal((n, p))
    w = np.zeros(p)
    w[:5] = [2.0, -1.5, 1.0, 0.8, -0.5]
    y = X @ w + 0.8 * rng.standard_normal(n)
    train, val = np.arange(50), np.arange(50, 80)

    beta, alpha = cp.Variable(p), cp.Parameter(nonneg=True)
    objective = cp.sum_squares(X[train] @ beta - y[train]) / (2 * len(train))
    layer = CvxpyLayer(cp.Problem(cp.Minimize(objective + alpha * cp.norm1(beta))), [alpha], [beta])

    X_val, y_val = torch.tensor(X[val]), torch.tensor(y[val])
    log_alpha = torch.tensor(np.log(0.3), requires_grad=True)
    optimizer = torch.optim.Adam([log_alpha], lr=0.1)
    for step in range(5 if SMOKE else 60):
        optimizer.zero_grad()
        (b,) = layer(log_alpha.exp())
        loss = ((X_val @ b - y_val) ** 2).mean()
        loss.backward()
        if step == 0:
            layer_grad = log_alpha.grad.item() / log_alpha.exp().item()
            _, fast = hypergradient(
                X, y, log_alpha.exp().item(), cv=[(train, val)], fit_intercept=False
            )
            print(f"dC/dalpha: layer {layer_grad:.10f}, fast route {fast[0]:.10f}")
        optimizer.step()
    print(f"alpha {log_alpha.exp().item():.4f}, validation MSE {loss.item():.4f}")


if __name__ == "__main__":
    main()
