"""The LASSO homotopy on hard designs: collinear synthetic spectra, degree-3 polynomial
features, duplicated and near-duplicated columns, p > n, sparse X.

Every check is against something the homotopy did not compute: the KKT conditions of the
path's coefficients evaluated with plain numpy on the training rows (at breakpoints and
at interval midpoints, where the coefficients are interpolated), the held-out criterion of
those coefficients, and a 300-point grid of exact solves (coordinate descent, polished and
certified by its own KKT check)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_diabetes
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from cvximplicit.lasso import HomotopyWarning, ImplicitLassoCV, criterion_path
from cvximplicit.lasso._homotopy import fold_path
from cvximplicit.lasso._linalg import correlations, make_fold
from cvximplicit.lasso._tuning import _alpha_max
from cvximplicit.problems import spectra


def poly3():
    X, y = load_diabetes(return_X_y=True)
    X = PolynomialFeatures(3, include_bias=False).fit_transform(X)
    return StandardScaler().fit_transform(X), y


def duplicated(seed: int = 1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((80, 30))
    X = np.hstack([X, X[:, :5], X[:, 5:10] + 1e-6 * rng.standard_normal((80, 5))])
    y = X[:, :8] @ rng.standard_normal(8) + 0.5 * rng.standard_normal(80)
    return X, y


def wide(seed: int = 2):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((50, 400))
    X[:, 1:] = 0.7 * X[:, :-1] + np.sqrt(0.51) * X[:, 1:]
    w = np.zeros(400)
    w[rng.choice(400, 10, replace=False)] = rng.uniform(-2, 2, 10)
    return X, X @ w + rng.standard_normal(50)


def sparse_design(seed: int = 3):
    rng = np.random.default_rng(seed)
    X = sp.random(120, 600, density=0.03, format="csc", random_state=seed)
    X.data = rng.standard_normal(X.data.size)
    w = np.zeros(600)
    w[:12] = rng.uniform(-3, 3, 12)
    return X, np.asarray(X @ w).ravel() + 0.3 * rng.standard_normal(120)


def kkt(fold, alpha, beta):
    """Relative KKT violation of ``beta`` at ``alpha`` on the fold's (centred) rows."""
    X = fold.X.toarray() - fold.x_mean if sp.issparse(fold.X) else fold.X
    c = X.T @ (fold.y - X @ beta) / X.shape[0]
    S = np.abs(beta) > 1e-12 * max(1.0, np.abs(beta).max())
    on = np.abs(c[S] - alpha * np.sign(beta[S])).max(initial=0.0)
    return max(on, np.abs(c[~S]).max(initial=0.0) - alpha) / alpha


def held_out(fold, beta):
    Xv = fold.X_val.toarray() - fold.x_mean if sp.issparse(fold.X_val) else fold.X_val
    r = fold.y_val - Xv @ beta
    return float(r @ r / r.size)


CASES = {
    "spectra 100 channels": lambda: spectra(200, 100),
    "spectra 1000 channels": lambda: spectra(200, 1000, seed=1),
    "diabetes degree 3": poly3,
    "duplicated columns": duplicated,
    "p > n": wide,
    "sparse X": sparse_design,
}


@pytest.mark.parametrize("case", list(CASES))
def test_path_is_exact_on_hard_designs(case):
    """No early stop; every breakpoint and every interval midpoint satisfies the KKT
    conditions, and the merged criterion equals the held-out error of those solutions."""
    X, y = CASES[case]()
    n = X.shape[0]
    rng = np.random.default_rng(0)
    perm = rng.permutation(n)
    splits = [(np.setdiff1d(np.arange(n), te), te) for te in np.array_split(perm, 3)]
    a_max = _alpha_max(X, y, True)
    folds = [make_fold(X, y, tr, te, True) for tr, te in splits]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = criterion_path(X, y, cv=splits)
    stops = [w for w in caught if w.category is HomotopyWarning and "stopped" in str(w.message)]
    assert not stops and path.lowest == pytest.approx(1e-3 * a_max, rel=1e-9), path.messages
    for fold in folds:
        messages: list[str] = []
        alphas, coefs = fold_path(fold, 1e-3 * a_max, 10 * n + 100, messages)
        assert alphas[-1] == pytest.approx(1e-3 * a_max, rel=1e-12)
        interpolated = [m for m in messages if "interpolated" in m]
        C = coefs.toarray()
        picks = np.unique(np.linspace(0, alphas.size - 2, 25).astype(int))
        # near-duplicated columns (1e-6 apart) are numerically in the span of their twins
        # and kept at zero; their correlations are certified only to that accuracy
        tol = 1e-4 if case == "duplicated columns" else 1e-7
        for i in picks:
            assert kkt(fold, alphas[i], C[:, i]) <= tol, (case, i)
            if interpolated:  # (a repaired segment is not linear: only its ends are exact)
                continue
            mid = 0.5 * (alphas[i] + alphas[i + 1])
            beta = 0.5 * (C[:, i] + C[:, i + 1])
            assert kkt(fold, mid, beta) <= tol, (case, i, "midpoint")
    # the merged criterion against the held-out error of each fold's own solutions
    picks = np.unique(np.linspace(0, path.alphas.size - 2, 15).astype(int))
    for i in picks:
        mid = float(0.5 * (path.alphas[i] + path.alphas[i + 1]))
        values = []
        for fold in folds:
            alphas, coefs = fold_path(fold, mid, 10 * n + 100)
            beta = coefs[:, -1].toarray().ravel()
            if alphas.size > 1:
                assert alphas[-1] == pytest.approx(mid, rel=1e-12)
            else:  # mid is above this fold's alpha_max: beta = 0
                assert alphas[0] <= mid and not np.any(beta)
            values.append(held_out(fold, beta))
        assert np.mean(values) == pytest.approx(path(mid)[0], rel=1e-8), (case, i)


@pytest.mark.parametrize("case", ["spectra 100 channels", "p > n"])
def test_global_minimum_beats_an_exact_grid(case):
    """Hold-out split: the estimator's minimum is at most every value of a 300-point grid
    of certified exact solves over the same range."""
    from cvximplicit.lasso._engine import solve_inner

    X, y = CASES[case]()
    n = X.shape[0]
    split = [(np.arange(n) % 3 != 0).nonzero()[0], (np.arange(n) % 3 == 0).nonzero()[0]]
    est = ImplicitLassoCV(cv=[tuple(split)]).fit(X, y)
    assert est.path_ is not None
    fold = make_fold(X, y, split[0], split[1], True)
    grid = np.geomspace(est.path_.alphas[0], est.path_.alphas[-1], 300)
    warm, values = None, []
    for a in grid:
        sol = solve_inner(fold, "lasso", np.array([a]), warm, 1e-10)
        assert sol.violation <= 1e-7, a
        warm = sol.coef
        values.append(held_out(fold, sol.coef))
    best = held_out(fold, solve_inner(fold, "lasso", np.array([est.alpha_]), None, 1e-10).coef)
    assert best <= min(values) * (1 + 1e-9)
    assert est.path_.best_value == pytest.approx(best, rel=1e-8)


def test_columns_of_a_sparse_design_equal_the_dense_ones():
    """`columns` reads single CSC columns from the arrays directly; the same centred values
    as the dense design, for one column, a few, and many."""
    import scipy.sparse as sp

    from cvximplicit.lasso._linalg import columns

    rng = np.random.default_rng(0)
    X = sp.random(40, 60, density=0.1, format="csc", random_state=1)
    dense, mean = X.toarray(), rng.standard_normal(60)
    for S in (np.array([3]), np.array([0, 59, 7]), np.arange(0, 60, 3)):
        for centred in (False, True):
            expected = dense[:, S] - mean[S] if centred else dense[:, S]
            np.testing.assert_array_equal(columns(X, S, mean, centred), expected)
        # the layout of scipy's toarray() (later products then sum in the same order)
        assert columns(X, S, mean, False).flags["F_CONTIGUOUS"]


def weighted_kkt(fold, a, beta):
    """Relative KKT violation of ``beta`` for per-feature l1 weights ``a``."""
    X = fold.X.toarray() - fold.x_mean if sp.issparse(fold.X) else fold.X
    c = X.T @ (fold.y - X @ beta) / X.shape[0]
    S = beta != 0
    on = np.abs(c[S] - a[S] * np.sign(beta[S])).max(initial=0.0)
    return max(on, (np.abs(c[~S]) - a[~S]).max(initial=0.0)) / a.max()


def weighted_start(X, y):
    """The whole data as one fold, uniform weights at 5% of alpha_max (the end of its
    LASSO path) and the solution there: a start for `penalty_path`."""
    from cvximplicit.lasso._homotopy import max_steps

    fold = make_fold(X, y, np.arange(len(y)), np.arange(len(y)), True)
    a_max = _alpha_max(X, y, True) / len(y)
    alphas, coefs = fold_path(fold, 0.05 * a_max, max_steps(*X.shape))
    return fold, np.full(X.shape[1], alphas[-1]), coefs[:, [-1]].toarray().ravel()


@pytest.mark.parametrize("case", ["spectra 100 channels", "diabetes degree 3", "p > n", "sparse X"])
def test_penalty_path_between_weight_vectors_is_exact(case):
    """`penalty_path` follows the solution from one vector of l1 weights to another (the
    weighted LASSO's inner solves between outer iterations): its end point satisfies the
    optimality conditions for the new weights or it is refused (None); small steps are
    always followed, on collinear designs too; a start that does not solve the old weights
    is refused."""
    from cvximplicit.lasso._engine import KKT_CHECK, _polish
    from cvximplicit.lasso._homotopy import max_steps, penalty_path
    from cvximplicit.lasso._penalty import penalty_named

    X, y = CASES[case]()
    fold, a_from, beta_from = weighted_start(X, y)
    p = X.shape[1]
    rng = np.random.default_rng(0)
    assert weighted_kkt(fold, a_from, beta_from) < 1e-7
    for spread in (0.01, 0.3, 2.0):
        a_to = a_from * np.exp(spread * rng.standard_normal(p))
        beta = penalty_path(fold, a_from, a_to, beta_from, max_steps(*X.shape))
        if spread == 0.01 and case != "diabetes degree 3":  # the steps outer iterations take
            assert beta is not None  # (on degree-3 features, cond(H) ~ 1e12, it may refuse)
        if beta is not None:  # the right support and signs, or refused (None)
            assert weighted_kkt(fold, a_to, beta) < 1e-4, (spread, weighted_kkt(fold, a_to, beta))
            # the caller polishes on that support: exact
            assert _polish(fold, penalty_named("weighted"), a_to, beta).violation <= KKT_CHECK
    # a start that is not the solution for a_from
    wrong = beta_from.copy()
    wrong[np.flatnonzero(wrong == 0)[:3]] = 1.0
    assert penalty_path(fold, a_from, a_from * 1.1, wrong, max_steps(*X.shape)) is None


def _python_fold_path(monkeypatch, *args):
    """`fold_path` by its Python loop (the compiled kernel switched off)."""
    from cvximplicit.lasso import _homotopy

    with monkeypatch.context() as m:
        m.setattr(_homotopy, "compiled", lambda name: None)
        return fold_path(*args)


@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_compiled_homotopy_follows_the_python_loop(case, intercept, monkeypatch):
    """The numba kernel (`_numba_homotopy`) follows the same path as the Python loop: the
    same fitted values at 40 penalties over the range (coefficients are not unique where
    columns are dependent), and the same breakpoints where the design has no dependent
    columns (sparse X without an intercept: not centred)."""
    from cvximplicit._compiled import compiled
    from cvximplicit.lasso._homotopy import _interpolate, _segments

    kernel = compiled("lasso._numba_homotopy")
    if kernel is None:
        pytest.skip("numba is not installed (or disabled)")
    statuses = []
    original = kernel.lasso_fold_path

    def recorded(*args):
        out = original(*args)
        statuses.append(out[0])
        return out

    monkeypatch.setattr(kernel, "lasso_fold_path", recorded)
    X, y = CASES[case]()
    n = X.shape[0]
    fold = make_fold(X, y, np.arange(n)[n // 3 :], np.arange(n)[: n // 3], intercept)
    a_max = np.abs(correlations(fold.X, fold.y, fold.x_mean, fold.sparse_centered)).max()
    steps = 10 * n + 100
    messages: list[str] = []
    alphas, coefs = fold_path(fold, 1e-3 * a_max, steps, messages)
    assert statuses == [kernel.REACHED]  # (the kernel's path, not a fallback's)
    ref_messages: list[str] = []
    ref_alphas, ref_coefs = _python_fold_path(monkeypatch, fold, 1e-3 * a_max, steps, ref_messages)
    assert messages == ref_messages
    Xc = fold.X.toarray() - fold.x_mean if sp.issparse(fold.X) else fold.X
    at = np.geomspace(ref_alphas[-1], ref_alphas[0], 40)
    fit = Xc @ _interpolate(coefs, *_segments(alphas, at))
    ref = Xc @ _interpolate(ref_coefs, *_segments(ref_alphas, at))
    assert np.abs(fit - ref).max() <= 1e-7 * np.abs(ref).max(), case
    if case not in ("diabetes degree 3", "duplicated columns"):
        assert alphas.size == ref_alphas.size
        assert np.abs(alphas - ref_alphas).max() <= 1e-9 * ref_alphas[0]
        assert abs(coefs - ref_coefs).max() <= 1e-7 * abs(ref_coefs).max()


def test_breakpoints_the_kernel_cannot_certify_go_to_the_python_loop(monkeypatch):
    """Where a breakpoint fails its check in the compiled kernel (forced here with a
    negative tolerance), the fold's path is the Python loop's, which repairs."""
    from cvximplicit._compiled import compiled

    kernel = compiled("lasso._numba_homotopy")
    if kernel is None:
        pytest.skip("numba is not installed (or disabled)")
    X, y = CASES["p > n"]()
    fold = make_fold(X, y, np.arange(40), np.arange(40, 50), True)
    a_max = float(np.abs(fold.X.T @ fold.y).max()) / 40
    statuses = []
    original = kernel.lasso_fold_path

    def strict(*args):
        out = original(*args[:-3], -1.0, *args[-2:])  # kkt_tol < 0: every check fails
        statuses.append(out[0])
        return out

    monkeypatch.setattr(kernel, "lasso_fold_path", strict)
    alphas, coefs = fold_path(fold, 0.01 * a_max, 600)
    assert statuses == [kernel.REPAIR]
    ref_alphas, ref_coefs = _python_fold_path(monkeypatch, fold, 0.01 * a_max, 600)
    assert np.array_equal(alphas, ref_alphas) and abs(coefs - ref_coefs).max() == 0


def enet_kkt(fold, l1, l2, beta):
    """Relative KKT violation of the elastic net ``(l1, l2)`` at ``beta`` (plain numpy)."""
    X = fold.X.toarray() - fold.x_mean if sp.issparse(fold.X) else fold.X
    c = X.T @ (fold.y - X @ beta) / X.shape[0] - l2 * beta
    S = beta != 0
    on = np.abs(c[S] - l1 * np.sign(beta[S])).max(initial=0.0)
    return max(on, (np.abs(c[~S]) - l1).max(initial=0.0)) / l1


@pytest.mark.parametrize("case", list(CASES))
def test_exact_elastic_net_solves_on_hard_designs(case):
    """`enet_exact` (the compiled active-set solver behind `ImplicitElasticNetCV`'s grid and
    exact solves) returns solutions that satisfy the elastic net's KKT conditions along
    ElasticNetCV's grid for l1_ratio 0.5 and 0.9, warm-started from each other, and from
    a warm start far from the solution; its objective is no higher than coordinate
    descent's run to a tight tolerance."""
    from sklearn.linear_model import ElasticNet

    from cvximplicit._compiled import compiled
    from cvximplicit.lasso._linalg import enet_exact

    if compiled("lasso._numba_homotopy") is None:
        pytest.skip("numba is not installed (or disabled)")
    X, y = CASES[case]()
    n = X.shape[0]
    fold = make_fold(X, y, np.arange(n)[n // 4 :], np.arange(n)[: n // 4], True)
    c0 = np.abs(correlations(fold.X, fold.y, fold.x_mean, fold.sparse_centered)).max()
    for ratio in (0.5, 0.9):
        alphas = c0 / ratio * np.logspace(0, -3, 30)
        out = enet_exact(fold, alphas * ratio, alphas * (1 - ratio), None)
        assert out is not None
        coefs, ok = out
        assert ok.all()
        for alpha, beta in zip(alphas, coefs):
            assert enet_kkt(fold, alpha * ratio, alpha * (1 - ratio), beta) <= 1e-8, (ratio, alpha)
        # a warm start far away (every sign of the support flipped, five columns too
        # many) gets there too
        alpha = alphas[-5]
        far = -coefs[-5]
        far[np.flatnonzero(far == 0)[:5]] = 1.0
        (beta,), (good,) = enet_exact(
            fold, np.array([alpha * ratio]), np.array([alpha * (1 - ratio)]), far
        )
        assert good and np.abs(beta - coefs[-5]).max() <= 1e-7 * np.abs(coefs[-5]).max()
    Xd = fold.X.toarray() - fold.x_mean if sp.issparse(fold.X) else fold.X
    cd = ElasticNet(alpha=alpha, l1_ratio=0.9, fit_intercept=False, tol=1e-14, max_iter=200_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cd.fit(Xd, fold.y)

    def objective(b):
        r = fold.y - Xd @ b
        return r @ r / (2 * Xd.shape[0]) + alpha * (0.9 * np.abs(b).sum() + 0.05 * b @ b)

    # (coordinate descent is slow on collinear designs: compare objectives, ours no higher)
    assert objective(beta) <= objective(cd.coef_) + 1e-12 * objective(beta)


def test_elastic_net_solves_give_up_on_large_supports(monkeypatch):
    """The active-set solver gives up (``ok`` False from there on) where the support would
    outgrow its limit; the grid is then tabulated by coordinate descent, as without numba."""
    from cvximplicit.lasso import _linalg, _tuning
    from cvximplicit.lasso._linalg import enet_exact
    from cvximplicit.lasso._penalty import ElasticNetPenalty

    if _linalg.compiled("lasso._numba_homotopy") is None:
        pytest.skip("numba is not installed (or disabled)")
    X, y = CASES["p > n"]()
    fold = make_fold(X, y, np.arange(40), np.arange(40, 50), True)
    c0 = np.abs(correlations(fold.X, fold.y, fold.x_mean, False)).max()
    alphas = 2 * c0 * np.logspace(0, -2, 20)
    monkeypatch.setattr(_linalg, "ENET_MAX_ACTIVE", 3)
    out = enet_exact(fold, alphas / 2, alphas / 2, None)
    assert out is not None
    coefs, ok = out
    first_bad = int(np.argmin(ok))
    assert ok[0] and not ok[first_bad:].any()
    for alpha, beta in zip(alphas[:first_bad], coefs[:first_bad]):
        assert np.count_nonzero(beta) <= 3
        assert enet_kkt(fold, alpha / 2, alpha / 2, beta) <= 1e-8
    crit = _tuning._Criterion(X, y, ElasticNetPenalty(), "cv", 3, True, None, 1e-10)
    limited, _ = crit.path(alphas, l1_ratio=0.5)
    monkeypatch.setattr(_linalg, "compiled", lambda name: None)
    cd, _ = crit.path(alphas, l1_ratio=0.5)
    assert np.array_equal(limited, cd)


@pytest.mark.parametrize("case", list(CASES))
def test_compiled_penalty_path_follows_the_python_loop(case, monkeypatch):
    """`penalty_path`'s numba twin refuses where the Python loop refuses (None) and
    otherwise returns the same coefficients, for small and large changes of the weights."""
    from cvximplicit._compiled import compiled
    from cvximplicit.lasso import _homotopy
    from cvximplicit.lasso._homotopy import max_steps, penalty_path

    if compiled("lasso._numba_homotopy") is None:
        pytest.skip("numba is not installed (or disabled)")
    X, y = CASES[case]()
    fold, a_from, beta_from = weighted_start(X, y)
    p = X.shape[1]
    rng = np.random.default_rng(0)
    followed = 0
    for spread in (0.01, 0.3, 2.0):
        a_to = a_from * np.exp(spread * rng.standard_normal(p))
        fast = penalty_path(fold, a_from, a_to, beta_from, max_steps(*X.shape))
        with monkeypatch.context() as m:
            m.setattr(_homotopy, "compiled", lambda name: None)
            slow = penalty_path(fold, a_from, a_to, beta_from, max_steps(*X.shape))
        assert (fast is None) == (slow is None), spread
        if fast is not None and slow is not None:
            followed += 1
            assert np.abs(fast - slow).max() <= 1e-8 * np.abs(slow).max(), spread
    if case not in ("diabetes degree 3", "duplicated columns"):
        assert followed  # (degree-3 features and duplicates: both may refuse every change)
