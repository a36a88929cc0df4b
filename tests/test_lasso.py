"""Bilevel LASSO: hypergradients against finite differences, the estimators, the layer route."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.model_selection import KFold, check_cv

from cvximplicit.lasso import (
    HomotopyWarning,
    ImplicitElasticNetCV,
    ImplicitLassoCV,
    ImplicitWeightedLassoCV,
    criterion_path,
    hypergradient,
)
from cvximplicit.lasso._engine import make_fold, solve_inner


def data(seed, n=80, p=25, k=5, noise=0.5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    w = np.zeros(p)
    w[:k] = rng.standard_normal(k) * 2
    return X, X @ w + noise * rng.standard_normal(n) + 1.0


def support(X, y, penalty, theta, fit_intercept=True):
    fold = make_fold(X, y, np.arange(len(y)), np.arange(len(y)), fit_intercept)
    return tuple(solve_inner(fold, penalty, np.atleast_1d(theta), None, 1e-12).support)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("criterion", ["cv", "sure"])
@pytest.mark.parametrize("penalty", ["lasso", "weighted", "enet"])
def test_hypergradient_matches_finite_differences(seed, criterion, penalty):
    X, y = data(seed)
    if penalty == "enet" and criterion == "sure":  # df is not |S| for the elastic net
        with pytest.raises(ValueError, match="not available for the elastic net"):
            hypergradient(X, y, [0.1, 0.5], criterion, penalty=penalty)
        return
    rng = np.random.default_rng(seed)
    a_max = np.abs((X - X.mean(0)).T @ (y - y.mean())).max() / len(y)
    theta = {
        "lasso": np.array([0.1 * a_max]),
        "weighted": 0.1 * a_max * rng.uniform(0.5, 1.5, X.shape[1]),
        "enet": np.array([0.2 * a_max, 0.5]),  # (alpha, l1_ratio)
    }[penalty]
    _, grad = hypergradient(X, y, theta, criterion, penalty=penalty, cv=3)
    d = rng.standard_normal(theta.size)
    h = 1e-5  # in log(alpha), as math.md recommends; same support on both sides
    plus, minus = theta * np.exp(h * d), theta * np.exp(-h * d)
    assert support(X, y, penalty, plus) == support(X, y, penalty, minus)
    vp, _ = hypergradient(X, y, plus, criterion, penalty=penalty, cv=3)
    vm, _ = hypergradient(X, y, minus, criterion, penalty=penalty, cv=3)
    fd = (vp - vm) / (2 * h)
    analytic = grad @ (theta * d)
    assert abs(analytic - fd) <= 1e-6 * max(abs(fd), 1e-8), (analytic, fd)


def test_cv_conventions_and_sparse_input():
    X, y = data(3)
    folds = list(KFold(4).split(X))
    a = 0.05
    by_int = hypergradient(X, y, a, cv=4)
    by_splitter = hypergradient(X, y, a, cv=KFold(4))
    by_pairs = hypergradient(X, y, a, cv=folds)
    by_sparse = hypergradient(sp.csc_matrix(X), y, a, cv=folds)
    for other in (by_splitter, by_pairs, by_sparse):
        assert abs(other[0] - by_int[0]) < 1e-10
        np.testing.assert_allclose(other[1], by_int[1], rtol=1e-8, atol=1e-12)
    holdout = hypergradient(X, y, a, cv=[folds[0]])  # a single pair: hold-out validation
    assert np.isfinite(holdout[0])


def test_estimator_finds_the_best_alpha_and_records_kinks():
    X, y = data(4, n=120, p=40)
    est = ImplicitLassoCV(cv=5).fit(X, y)
    alphas = np.geomspace(est.alpha_ / 3, est.alpha_ * 3, 25)
    values = [hypergradient(X, y, a, cv=5)[0] for a in alphas]
    best, _ = hypergradient(X, y, est.alpha_, cv=5)
    assert best <= min(values) + 1e-9
    # At alpha_max the support is empty and the most correlated feature sits exactly at the
    # threshold: a kink (equicorrelation set larger than the support), which exact solves
    # report and the history records.
    fold = make_fold(X, y, np.arange(len(y)), np.arange(len(y)), True)
    a_max = np.abs(fold.X.T @ fold.y).max() / len(y)
    at_max = solve_inner(fold, "lasso", np.array([a_max]), None, 1e-12)
    assert at_max.support.size == 0 and at_max.kinks >= 1
    sure = ImplicitLassoCV(criterion="sure").fit(X, y)
    assert len(sure.history_["kinks"]) == len(sure.history_["criterion"])
    assert est.predict(X).shape == (120,)
    gd = ImplicitLassoCV(cv=5, method="gd", search="grid").fit(X, y)  # (the homotopy's
    # minimum is certified by one exact solve: no outer iterations would run)
    assert gd.n_evaluations_ > 3
    assert abs(hypergradient(X, y, gd.alpha_, cv=5)[0] - best) < 1e-4 * best


def test_weighted_lasso_beats_the_best_single_penalty_on_held_out_data():
    rng = np.random.default_rng(0)
    n, p = 150, 30
    X = rng.standard_normal((n, p)) * rng.uniform(0.2, 3.0, p)  # very different scales
    w = np.zeros(p)
    w[:6] = [3, -2, 1.5, 1, -1, 0.5]
    y = X @ w + rng.standard_normal(n)
    Xt = rng.standard_normal((2000, p)) * (X.std(0) / X.std(0).mean() * X.std(0).mean())
    yt = Xt @ w + rng.standard_normal(2000)
    single = ImplicitLassoCV(cv=[(np.arange(100), np.arange(100, 150))]).fit(X, y)
    weighted = ImplicitWeightedLassoCV(
        cv=[(np.arange(100), np.arange(100, 150))], max_outer_iter=100
    )
    weighted.fit(X, y)
    err = lambda m: np.mean((m.predict(Xt) - yt) ** 2)  # noqa: E731
    assert err(weighted) < err(single)


def test_elastic_net_estimator():
    X, y = data(5)
    est = ImplicitElasticNetCV(cv=3, alphas=20).fit(X, y)
    assert est.alpha_ > 0 and 0 < est.l1_ratio_ <= 1


def test_check_estimator():
    from sklearn.utils.estimator_checks import check_estimator

    check_estimator(ImplicitLassoCV(cv=3, n_grid=4, max_outer_iter=5))


def test_layer_route_agrees_with_the_fast_route():
    """The CVXPY layer (general route) and the support formula give the same hypergradient."""
    torch = pytest.importorskip("torch")
    import cvxpy as cp

    from cvximplicit.torch import CvxpyLayer

    X, y = data(6, n=60, p=12)
    train, val = np.arange(40), np.arange(40, 60)
    Xt, yt = X[train], y[train]
    beta, alpha = cp.Variable(12), cp.Parameter(nonneg=True)
    prob = cp.Problem(
        cp.Minimize(cp.sum_squares(Xt @ beta - yt) / (2 * len(train)) + alpha * cp.norm1(beta))
    )
    layer = CvxpyLayer(prob, [alpha], [beta])
    a = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    (b,) = layer(a)
    loss = ((torch.tensor(X[val]) @ b - torch.tensor(y[val])) ** 2).mean()
    loss.backward()
    value, grad = hypergradient(X, y, 0.05, cv=[(train, val)], fit_intercept=False)
    assert abs(loss.item() - value) < 1e-8
    assert abs(a.grad.item() - grad[0]) <= 1e-6 * abs(grad[0])


def test_alpha_is_validated_against_the_penalty():
    X, y = data(0)
    with pytest.raises(ValueError, match="takes 2 values"):
        hypergradient(X, y, 0.1, penalty="enet")
    with pytest.raises(ValueError, match="l1_ratio"):
        hypergradient(X, y, [0.1, 1.5], penalty="enet")
    with pytest.raises(ValueError, match="takes 1 positive value"):
        hypergradient(X, y, [0.1, 0.2])


@pytest.mark.parametrize("case", ["holdout", "kfold", "sparse", "sure", "no_intercept"])
def test_homotopy_criterion_matches_exact_solves(case):
    """The piecewise-quadratic criterion from the homotopy equals exact re-solves at its
    breakpoints and inside its intervals, for every criterion and input kind."""
    from cvximplicit.lasso._homotopy import exact_criterion_path

    X, y = data(7, n=70, p=40, k=6)
    fit_intercept = case != "no_intercept"
    criterion = "sure" if case == "sure" else "cv"
    cv: object = 3 if case == "kfold" else [(np.arange(45), np.arange(45, 70))]
    Xin = sp.csc_matrix(X) if case == "sparse" else X
    kwargs = dict(criterion=criterion, cv=cv, fit_intercept=fit_intercept, sigma=0.5)
    est = ImplicitLassoCV(**kwargs, eps=1e-2).fit(Xin, y)  # type: ignore[arg-type]
    path = est.path_
    assert path is not None and path.alphas.size > 10
    pairs = [(np.arange(70), np.arange(70))] if case == "sure" else check_cv(cv).split(X, y)
    folds = [make_fold(Xin, y, tr, te, fit_intercept) for tr, te in pairs]
    again = exact_criterion_path(folds, criterion, 0.5, path.alphas[-1], path.alphas[0], 1000)
    np.testing.assert_allclose(again.values, path.values)
    np.testing.assert_array_equal(path(path.alphas), path.values)
    with pytest.raises(ValueError, match="covered range"):
        path(path.alphas[0] * 1.1)
    rng = np.random.default_rng(0)
    picks = rng.choice(path.alphas.size - 1, 6, replace=False)
    for i in picks:
        mid = float(np.sqrt(path.alphas[i] * path.alphas[i + 1]))  # inside an interval
        exact, _ = hypergradient(Xin, y, mid, **kwargs)  # type: ignore[arg-type]
        assert abs(exact - path(mid)[0]) <= 1e-8 * abs(exact), (mid, exact, path(mid))
        if criterion != "sure":  # SURE jumps at breakpoints (df = |S|): an exact solve
            # there sits on the kink and may count the entering coordinate or not
            exact, _ = hypergradient(Xin, y, path.alphas[i], **kwargs)  # type: ignore[arg-type]
            assert abs(exact - path.values[i]) <= 1e-8 * abs(exact)
    best, _ = hypergradient(Xin, y, est.alpha_, **kwargs)  # type: ignore[arg-type]
    assert abs(best - path.best_value) <= 1e-8 * best
    if criterion != "sure":  # (SURE's breakpoint values can sit below its interior limits)
        assert best <= path.values.min() * (1 + 1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_homotopy_finds_the_global_minimum(seed):
    """Many features and few rows: the hold-out criterion has several local minima; the
    homotopy's minimum is below every point of a dense exact grid, and when it sits at a
    kink the one-sided slopes bracket zero."""
    rng = np.random.default_rng(seed)
    n, p = 60, 150
    X = rng.standard_normal((n, p))
    X[:, 1:] = 0.5 * X[:, :-1] + np.sqrt(0.75) * X[:, 1:]  # correlated neighbours
    w = np.zeros(p)
    w[rng.choice(p, 8, replace=False)] = rng.uniform(-2, 2, 8)
    y = X @ w + 1.5 * rng.standard_normal(n)
    split = [(np.arange(30), np.arange(30, 60))]
    est = ImplicitLassoCV(cv=split, eps=1e-2).fit(X, y)
    best, _ = hypergradient(X, y, est.alpha_, cv=split)
    a_max = float(np.asarray(est.history_["alpha"])[0])
    grid = np.geomspace(a_max * 1e-2, a_max, 300)  # (cold exact solves at tiny alphas are slow)
    values = [hypergradient(X, y, a, cv=split)[0] for a in grid]
    assert best <= min(values) * (1 + 1e-10)
    grid_est = ImplicitLassoCV(cv=split, search="grid", eps=1e-2).fit(X, y)
    assert best <= hypergradient(X, y, grid_est.alpha_, cv=split)[0] * (1 + 1e-10)
    assert est.path_ is not None
    if est.path_.slopes is not None:
        below, above = est.path_.slopes
        assert below <= 1e-9 * abs(best) and above >= -1e-9 * abs(best)


def test_search_option_is_validated():
    X, y = data(0)
    with pytest.raises(ValueError, match="search must be"):
        ImplicitLassoCV(search="lars").fit(X, y)
    grid = ImplicitLassoCV(cv=3, search="grid").fit(X, y)
    assert grid.path_ is None and "path" in grid.history_["stage"]


def test_a_path_that_stops_early_is_completed_by_a_grid_and_refinement(monkeypatch):
    """When the homotopy stops before eps * alpha_max (here: a cap of 6 breakpoints), the
    rest of the range is gridded and refined by hypergradients, and the reason is kept."""
    import cvximplicit.lasso._tuning as tuning

    X, y = data(8, n=90, p=30, k=8, noise=1.0)
    split = [(np.arange(60), np.arange(60, 90))]
    full = ImplicitLassoCV(cv=split).fit(X, y)
    monkeypatch.setattr(tuning, "_max_steps", lambda n, p: 6)
    with pytest.warns(HomotopyWarning, match="max_steps=6"):  # a warning, not only a message
        capped = ImplicitLassoCV(cv=split).fit(X, y)
    assert capped.path_ is not None and capped.path_.lowest > full.path_.lowest  # type: ignore[union-attr]
    assert any("max_steps=6" in m for m in capped.path_.messages)
    assert full.alpha_ < capped.path_.lowest  # the optimum lies in the gridded part
    below = np.asarray(capped.history_["alpha"]) < capped.path_.lowest
    assert np.any(below & (np.asarray(capped.history_["stage"]) == "path"))
    best_full = hypergradient(X, y, full.alpha_, cv=split)[0]
    best_capped = hypergradient(X, y, capped.alpha_, cv=split)[0]
    assert best_capped <= best_full * (1 + 1e-4)


def _kkt_violations(X, y, alphas, coefs):
    """Relative KKT violation of each breakpoint of a path (no intercept)."""
    n = len(y)
    out = []
    for a, b in zip(alphas, coefs.T):
        c = X.T @ (y - X @ b) / n
        S = b != 0
        on = np.abs(c[S] - a * np.sign(b[S])).max(initial=0.0)
        out.append(max(on, np.abs(c[~S]).max(initial=0.0) - a) / a)
    return np.array(out)


@pytest.mark.parametrize("seed", [217, 228, 5, 6])
def test_homotopy_breakpoints_satisfy_the_optimality_conditions(seed):
    """Every breakpoint is an exact LASSO solution, including after a coordinate leaves and
    re-enters with the opposite sign at once, and after consecutive leaves (regressions)."""
    from cvximplicit.lasso._homotopy import fold_path

    rng = np.random.default_rng(seed)
    n, p = 40, 40
    X = rng.standard_normal((n, p))
    X[:, 1:] = 0.9 * X[:, :-1] + 0.45 * X[:, 1:]  # strongly correlated neighbours
    y = X @ (rng.standard_normal(p) * (rng.random(p) < 0.3)) + rng.standard_normal(n)
    fold = make_fold(X, y, np.arange(n), np.arange(n), False)
    a_max = np.abs(X.T @ y).max() / n
    messages: list[str] = []
    alphas, coefs = fold_path(fold, 1e-4 * a_max, 2000, messages)
    assert messages == [] and alphas[-1] == pytest.approx(1e-4 * a_max)
    assert _kkt_violations(X, y, alphas, coefs.toarray()).max() <= 1e-8
    path = criterion_path(X, y, cv=4)
    assert path.messages == []
    mids = np.sqrt(path.alphas[1:] * path.alphas[:-1])
    for alpha in mids[:: max(1, mids.size // 8)]:
        exact, _ = hypergradient(X, y, alpha, cv=4)
        assert abs(exact - path(alpha)[0]) <= 1e-7 * exact


def test_sure_can_choose_the_empty_model():
    """Pure noise: SURE is smallest for the empty model at alpha_max, which the homotopy
    must consider (regression: it only looked inside intervals)."""
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((50, 10)), rng.standard_normal(50)
    est = ImplicitLassoCV(criterion="sure").fit(X, y)
    grid = ImplicitLassoCV(criterion="sure", search="grid").fit(X, y)
    assert np.count_nonzero(est.coef_) == 0
    ours, theirs = (hypergradient(X, y, m.alpha_, "sure")[0] for m in (est, grid))
    assert ours <= theirs + 1e-12


def test_exact_solves_are_certified_on_hard_binary_designs():
    """Coordinate descent stalls on this binary design (KKT violation 9e-6 after 100000
    epochs at these penalties); the exact solve then follows the homotopy, so the returned
    solution satisfies the optimality conditions."""
    from sklearn.model_selection import KFold

    rng = np.random.default_rng(31)
    n, p = int(rng.integers(5, 120)), int(rng.integers(1, 80))  # 68 x 72
    X = (rng.random((n, p)) < 0.2).astype(float)
    y = X @ (rng.standard_normal(p) * (rng.random(p) < 0.3)) + rng.standard_normal(n)
    train, _ = next(KFold(3).split(X))
    fold = make_fold(X, y, train, train, True)
    a_max = np.abs(fold.X.T @ fold.y).max() / train.size
    for frac in (0.0047, 0.03):
        sol = solve_inner(fold, "lasso", np.array([frac * a_max]), None, 1e-10)
        assert sol.violation <= 1e-7, (frac, sol.violation)


def _diabetes_poly2():
    from sklearn.datasets import load_diabetes
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    X, y = load_diabetes(return_X_y=True)
    X = PolynomialFeatures(2, include_bias=False).fit_transform(X)
    return StandardScaler().fit_transform(X), y


def test_elastic_net_is_never_worse_than_elastic_net_cv():
    """Same l1_ratio list, same folds: the exact CV error at our choice is at most that at
    ElasticNetCV's, and l1_ratio = 1 (the LASSO) is expressible and exact."""
    from sklearn.linear_model import ElasticNetCV

    X, y = _diabetes_poly2()
    cv = KFold(4, shuffle=True, random_state=0)
    ratios = [0.3, 0.8, 1.0]
    ours = ImplicitElasticNetCV(l1_ratio=ratios, cv=cv, alphas=30).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (its ConvergenceWarnings)
        theirs = ElasticNetCV(l1_ratio=ratios, cv=cv, alphas=30).fit(X, y)

    def exact(m):
        return hypergradient(X, y, [m.alpha_, m.l1_ratio_], cv=cv, penalty="enet")[0]

    assert exact(ours) <= exact(theirs) * (1 + 1e-9)
    assert ours.alphas_.shape == (3, 30) and ours.mse_path_.shape == (3, 30, 4)
    lasso = ImplicitElasticNetCV(l1_ratio=1.0, cv=cv, alphas=10).fit(X, y)
    single = ImplicitLassoCV(cv=cv).fit(X, y)
    assert lasso.l1_ratio_ == 1.0 and lasso.alpha_ == pytest.approx(single.alpha_, rel=1e-9)
    np.testing.assert_allclose(lasso.coef_, single.coef_, rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="l1_ratio"):
        ImplicitElasticNetCV(l1_ratio=[0.0, 0.5]).fit(X, y)


def test_weighted_lasso_groups_share_a_penalty():
    X, y = data(9, n=90, p=12)
    groups = np.repeat([0, 1, 2], 4)
    est = ImplicitWeightedLassoCV(cv=3, groups=groups, max_outer_iter=10).fit(X, y)
    for g in range(3):
        assert np.ptp(est.alpha_[groups == g]) == 0
    with pytest.raises(ValueError, match="one label per feature"):
        ImplicitWeightedLassoCV(cv=3, groups=[0, 1]).fit(X, y)


def test_scikit_learn_conventions_and_plot():
    """alphas_/mse_path_ as LassoCV's (the path's breakpoints and each fold's criterion
    there), n_iter_ is the refit's coordinate-descent epochs, max_iter caps them."""
    import matplotlib

    matplotlib.use("Agg")
    X, y = data(10)
    est = ImplicitLassoCV(cv=4).fit(X, y)
    assert est.path_ is not None
    np.testing.assert_array_equal(est.alphas_, est.path_.alphas)
    assert est.mse_path_.shape == (est.alphas_.size, 4)
    np.testing.assert_allclose(est.mse_path_.mean(axis=1), est.path_.values, rtol=1e-12)
    assert isinstance(est.n_iter_, int) and est.n_iter_ >= 1
    assert est.n_evaluations_ >= 1
    grid = ImplicitLassoCV(cv=4, search="grid", n_grid=7).fit(X, y)
    assert grid.alphas_.shape == (7,) and grid.mse_path_.shape == (7, 4)
    ax = est.plot()
    assert ax.figure.get_layout_engine() is not None  # constrained: labels are not clipped
