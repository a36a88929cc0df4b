"""Tune the LASSO penalty by hypergradients, as a scikit-learn estimator.

Diabetes data with degree-2 polynomial features (64 features): ``ImplicitLassoCV`` (5-fold
CV: the exact piecewise-quadratic criterion by homotopy, certified by an exact solve and its
nonsmooth hypergradient) against scikit-learn's ``LassoCV`` (grid of 100 alphas), then the
weighted LASSO (one penalty per feature) tuned by hypergradients.  Writes
``lasso_tuning.png`` (the exact criterion against alpha and the chosen penalty).

Run: ``python examples/lasso_tuning.py``.
"""

from __future__ import annotations

import os
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LassoCV
from sklearn.model_selection import KFold, train_test_split
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from cvximplicit.lasso import ImplicitLassoCV, ImplicitWeightedLassoCV, hypergradient

SMOKE = os.environ.get("CVXIMPLICIT_SMOKE") == "1"


def main() -> None:
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(PolynomialFeatures(2, include_bias=False).fit_transform(X))
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0)
    cv = KFold(5, shuffle=True, random_state=0)

    t0 = time.perf_counter()
    ours = ImplicitLassoCV(cv=cv, max_outer_iter=10 if SMOKE else 50).fit(X_tr, y_tr)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    grid = LassoCV(cv=cv, alphas=100, tol=1e-8, max_iter=100_000).fit(X_tr, y_tr)
    t_grid = time.perf_counter() - t0

    crit = lambda a: hypergradient(X_tr, y_tr, a, cv=cv)[0]  # noqa: E731
    print(
        f"ImplicitLassoCV: alpha {ours.alpha_:.4g}, CV MSE {crit(ours.alpha_):.2f}, "
        f"{ours.path_.alphas.size} path breakpoints, {ours.n_evaluations_} exact evaluation(s), "
        f"{t_ours:.2f} s"
    )
    if ours.path_.slopes is not None:
        below, above = ours.path_.slopes
        print(
            f"the minimum sits at a kink: one-sided slopes dC/dalpha {below:.3g} (below), "
            f"{above:.3g} (above)"
        )
    print(
        f"LassoCV (100):   alpha {grid.alpha_:.4g}, CV MSE {crit(grid.alpha_):.2f}, {t_grid:.2f} s"
    )
    for name, model in (("ImplicitLassoCV", ours), ("LassoCV", grid)):
        mse = np.mean((model.predict(X_te) - y_te) ** 2)
        print(f"{name:16s} test MSE {mse:.1f}, {np.count_nonzero(model.coef_)} nonzeros")

    if not SMOKE:
        weighted = ImplicitWeightedLassoCV(cv=cv, max_outer_iter=100).fit(X_tr, y_tr)
        mse = np.mean((weighted.predict(X_te) - y_te) ** 2)
        print(f"weighted LASSO (64 penalties) test MSE {mse:.1f}")

    ax = ours.plot()
    ax.set_title("5-fold CV MSE, diabetes degree-2 features")
    ax.figure.savefig("lasso_tuning.png", dpi=120)
    plt.close(ax.figure)
    print("wrote lasso_tuning.png")


if __name__ == "__main__":
    main()
