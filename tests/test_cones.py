"""The cone contract, checked for every cone class on random points near every piece."""

from __future__ import annotations

import numpy as np
import pytest

import cvximplicit as ci
from cvximplicit._cones import KinkPolicy

CONES = [
    ci.ZeroCone(5),
    ci.NonnegativeCone(7),
    ci.SecondOrderCone([1, 2, 3, 5, 5, 9]),
    ci.PSDCone([1, 2, 4, 4]),
    ci.ExponentialCone(4),
    ci.PowerCone([0.2, 0.5, 0.85]),
]


def in_cone(cone: ci.Cone, v: np.ndarray, tol: float = 1e-10) -> bool:
    return bool(np.linalg.norm(cone.project(v) - v) <= tol * max(1.0, np.linalg.norm(v)))


@pytest.mark.parametrize("cone", CONES, ids=lambda c: c.name)
def test_projection_contract(rng, cone):
    for _ in range(300):
        v = rng.standard_normal(cone.dim) * rng.lognormal(0, 2)
        p = cone.project(v)
        q = cone.project_dual(v)
        # Pi_K(v) in K (idempotent) and Pi_{K*}(v) in K* (its own projection).
        np.testing.assert_allclose(cone.project(p), p, atol=1e-12 * (1 + np.abs(v).max()))
        np.testing.assert_allclose(cone.project_dual(q), q, atol=1e-12 * (1 + np.abs(v).max()))
        # Moreau: v = Pi_{K*}(v) - Pi_K(-v), with orthogonal parts.
        s = cone.project(-v)
        np.testing.assert_allclose(q - s, v, atol=1e-12 * (1 + np.abs(v).max()))
        assert abs(q @ s) <= 1e-10 * (1 + v @ v)


@pytest.mark.parametrize("cone", CONES, ids=lambda c: c.name)
def test_dual_jacobian_matches_finite_differences(rng, cone):
    h = 1e-6
    for _ in range(40):
        v = rng.standard_normal(cone.dim)
        if cone.kinks(v, 1e-5):
            continue
        D = cone.dual_jacobian(v, KinkPolicy.ACTIVE, 1e-9).toarray()
        fd = np.column_stack(
            [
                (cone.project_dual(v + h * e) - cone.project_dual(v - h * e)) / (2 * h)
                for e in np.eye(cone.dim)
            ]
        )
        np.testing.assert_allclose(D, fd, atol=1e-7)
        np.testing.assert_allclose(D, cone.dual_jacobian(v, KinkPolicy.INACTIVE, 1e-9).toarray())


def test_nonnegative_kink_policies():
    cone = ci.NonnegativeCone(3)
    v = np.array([1.0, 0.0, -1.0])
    assert cone.kinks(v, 1e-12) == 1
    np.testing.assert_array_equal(
        cone.dual_jacobian(v, KinkPolicy.ACTIVE, 1e-12).diagonal(), [1, 1, 0]
    )
    np.testing.assert_array_equal(
        cone.dual_jacobian(v, KinkPolicy.INACTIVE, 1e-12).diagonal(), [1, 0, 0]
    )


@pytest.mark.parametrize("where", ["boundary", "polar_boundary", "origin"])
def test_soc_kinks_are_one_sided_limits(rng, where):
    """At each kind of SOC kink each policy returns the Jacobian of a neighbouring piece."""
    cone = ci.SecondOrderCone([4])
    u = rng.standard_normal(3)
    r = np.linalg.norm(u)
    v = {"boundary": np.r_[r, u], "polar_boundary": np.r_[-r, u], "origin": np.zeros(4)}[where]
    assert cone.kinks(v, 1e-12) == 1
    inward = {"boundary": np.r_[1.0, 0, 0, 0], "polar_boundary": np.r_[1.0, 0, 0, 0]}.get(
        where, np.r_[1.0, 0, 0, 0]
    )
    eps = 1e-7
    # The two sides: into int K* (the identity piece) and away from it.
    plus = cone.dual_jacobian(v + eps * inward, KinkPolicy.ACTIVE, 0.0).toarray()
    minus = cone.dual_jacobian(v - eps * inward, KinkPolicy.ACTIVE, 0.0).toarray()
    active = cone.dual_jacobian(v, KinkPolicy.ACTIVE, 1e-12).toarray()
    inactive = cone.dual_jacobian(v, KinkPolicy.INACTIVE, 1e-12).toarray()
    assert not np.allclose(active, inactive)
    for D in (active, inactive):
        assert np.allclose(D, plus, atol=1e-6) or np.allclose(D, minus, atol=1e-6), where
    # ACTIVE is the larger (more binding) piece: D_active - D_inactive is PSD.
    assert np.linalg.eigvalsh(active - inactive).min() >= -1e-9


def test_kink_policy_parsing():
    assert ci.KinkPolicy("active") is ci.KinkPolicy.ACTIVE
    from cvximplicit._cones import as_kink_policy

    assert as_kink_policy("INACTIVE") is ci.KinkPolicy.INACTIVE
    with pytest.raises(ValueError, match="unknown kink policy"):
        as_kink_policy("sometimes")


def _moreau_metrics(project, V):
    """Worst relative feasibility, polar membership and orthogonality over the rows of V."""
    P = project(V)
    Q = V - P
    scale = np.maximum(np.linalg.norm(V, axis=1), 1e-100)
    idem = np.linalg.norm(project(P) - P, axis=1) / scale  # P in K
    polar = np.linalg.norm(project(Q), axis=1) / scale  # Q in the polar cone: Pi_K(Q) = 0
    orth = np.abs(np.einsum("ij,ij->i", P, Q)) / scale**2
    return idem.max(), polar.max(), orth.max()


def _hard_points(rng, boundary, polar_boundary, count):
    """Random points of all scales plus points within 1e-12..1e-3 of each boundary piece."""
    V = rng.standard_normal((count, 3)) * rng.lognormal(0, 2, (count, 1))
    near = []
    for base in (boundary, polar_boundary):
        for eps in (1e-12, 1e-8, 1e-5, 1e-3):
            near.append(base + eps * rng.standard_normal(base.shape))
    near.append(np.zeros((10, 3)))
    near.append(1e-9 * rng.standard_normal((100, 3)))
    return np.concatenate([V, *near])


def _implementation(name: str, compiled: str, numpy_name: str, module: str):
    """The compiled kernel (skipped without numba) or the numpy implementation."""
    import importlib

    if name == "compiled":
        kernels = pytest.importorskip("cvximplicit._cones._numba_kernels")
        return getattr(kernels, compiled)
    return getattr(importlib.import_module(f"cvximplicit._cones.{module}"), numpy_name)


@pytest.mark.parametrize("impl", ["compiled", "numpy"])
def test_exponential_projection_on_1e5_points(rng, impl):
    project_exp = _implementation(impl, "project_exp_rows", "project_exp_numpy", "_exp")
    n = 20_000
    s = rng.lognormal(0, 2, n)
    r = s * rng.uniform(-30, 5, n)
    boundary = np.stack([r, s, s * np.exp(r / s)], axis=1)  # s e^{r/s} = t
    u = -rng.lognormal(0, 2, n)
    w = rng.uniform(-5, 30, n) * -u
    polar_b = -np.stack([u, w, -u * np.exp(w / u - 1)], axis=1)  # -(u, v, w) with equality
    faces = np.concatenate(
        [
            np.stack([-rng.lognormal(0, 1, n), np.zeros(n), rng.lognormal(0, 1, n)], axis=1),
            np.stack([np.zeros(n), -rng.lognormal(0, 1, n), -rng.lognormal(0, 1, n)], axis=1),
        ]
    )
    V = np.concatenate([_hard_points(rng, boundary, polar_b, 100_000), faces])
    assert V.shape[0] >= 100_000
    idem, polar, orth = _moreau_metrics(project_exp, V)
    assert idem < 1e-12 and polar < 1e-12 and orth < 1e-13, (idem, polar, orth)


@pytest.mark.parametrize("impl", ["compiled", "numpy"])
def test_power_projection_on_1e5_points(rng, impl):
    project_pow = _implementation(impl, "project_pow_rows", "project_pow_numpy", "_pow")
    n = 20_000
    a = rng.uniform(0.05, 0.95, 100_000 + 9 * 2 * n + 110)
    x, y = rng.lognormal(0, 2, n), rng.lognormal(0, 2, n)
    sign = rng.choice([-1.0, 1.0], n)
    an = a[:n]
    boundary = np.stack([x, y, sign * x**an * y ** (1 - an)], axis=1)
    polar_b = -np.stack([x, y, sign * (x / an) ** an * (y / (1 - an)) ** (1 - an)], axis=1)
    V = _hard_points(rng, boundary, polar_b, 100_000)
    a = np.resize(a, V.shape[0])
    a[100_000 : 100_000 + 4 * n] = np.tile(an, 4)
    a[100_000 + 4 * n : 100_000 + 8 * n] = np.tile(an, 4)
    idem, polar, orth = _moreau_metrics(lambda W: project_pow(W, a), V)
    assert idem < 1e-12 and polar < 1e-12 and orth < 1e-13, (idem, polar, orth)


def test_compiled_projections_agree_with_numpy(rng):
    """The numba kernels run the numpy algorithms member by member: same results to rounding."""
    kernels = pytest.importorskip("cvximplicit._cones._numba_kernels")
    from cvximplicit._cones._exp import project_exp_numpy
    from cvximplicit._cones._pow import project_pow_numpy

    V = rng.standard_normal((30_000, 3)) * rng.choice([1e-6, 1e-3, 1.0, 1e3, 1e6], (30_000, 1))
    V[::7, 2] = 0.0  # the z = 0 plane of the power cone and s-faces
    V[::11, 1] = 0.0
    a = rng.uniform(0.02, 0.98, V.shape[0])
    scale = np.maximum(1.0, np.abs(V).max(axis=1))[:, None]
    exp_gap = np.abs(kernels.project_exp_rows(V) - project_exp_numpy(V)) / scale
    pow_gap = np.abs(kernels.project_pow_rows(V, a) - project_pow_numpy(V, a)) / scale
    assert exp_gap.max() < 1e-13 and pow_gap.max() < 1e-13, (exp_gap.max(), pow_gap.max())


@pytest.mark.parametrize("kink", list(KinkPolicy))
def test_compiled_jacobians_agree_with_numpy(rng, kink, monkeypatch):
    """The compiled Jacobian kernel (piece, D and the neighbour test for kinks, member by
    member) gives the numpy code's D, kinks included, on points of all scales and on the
    faces; and D is finite everywhere (the power cone's was NaN where y underflowed next to
    the face y = 0)."""
    kernels = pytest.importorskip("cvximplicit._cones._numba_kernels")
    count = 30_000
    V = rng.standard_normal((count, 3)) * rng.choice([1e-6, 1e-3, 1.0, 1e3, 1e6], (count, 1))
    V[::7, 2] = 0.0
    V[::11, 1] = 0.0
    V[::13, 0] = 0.0
    V[0] = [-0.47653148, 0.06981086, 0.0]  # the power cone's underflow, a = 0.976
    a = rng.uniform(0.02, 0.98, count)
    a[0] = 0.9761850317208902
    assert kernels is not None
    for cone in (ci.ExponentialCone(count), ci.PowerCone(a)):
        for tol in (1e-9, 1e-6):
            fast = cone.dual_jacobian_blocks(V.ravel(), kink, tol)[3]
            with monkeypatch.context() as patch:
                patch.setattr(type(cone), "_compiled_dual_jacobian", lambda *_: None)
                slow = cone.dual_jacobian_blocks(V.ravel(), kink, tol)[3]
            assert np.isfinite(fast).all() and np.isfinite(slow).all()
            gap = np.abs(fast - slow) / np.maximum(1.0, np.abs(slow))
            assert gap.max() < 1e-10, (cone, tol, gap.max())


@pytest.mark.parametrize("kind", ["exponential", "power"])
def test_curved_cone_jacobian_at_many_points(rng, kind):
    """Away from kinks, the chosen Jacobian equals finite differences at 5000 points of all
    scales (relative error below 1e-6, limited by the differences themselves)."""
    count = 5000
    cone = (
        ci.ExponentialCone(count)
        if kind == "exponential"
        else ci.PowerCone(rng.uniform(0.1, 0.9, count))
    )
    V = rng.standard_normal((count, 3)) * rng.lognormal(0, 1, (count, 1))
    v = V.ravel()
    W = -V
    prm = cone._params
    P = cone._project3(W, prm)
    smooth = ~cone._kinked(W, prm, cone._suspects(W, P, 1e-6), 1e-6)
    D = cone.dual_jacobian(v, KinkPolicy.ACTIVE, 1e-9).toarray()
    blocks = np.stack([D[3 * i : 3 * i + 3, 3 * i : 3 * i + 3] for i in range(count)])
    h = 1e-6 * np.maximum(1.0, np.abs(V).max(axis=1))
    fd = np.zeros_like(blocks)
    for k in range(3):
        step = np.zeros_like(V)
        step[:, k] = h
        diff = cone.project_dual((V + step).ravel()) - cone.project_dual((V - step).ravel())
        fd[:, :, k] = diff.reshape(-1, 3) / (2 * h[:, None])
    err = np.abs(blocks - fd).max(axis=(1, 2)) / np.maximum(1.0, np.abs(fd).max(axis=(1, 2)))
    assert smooth.sum() > 0.9 * count
    assert err[smooth].max() < 1e-6, V[smooth][np.argmax(err[smooth])]


def test_psd_layouts_and_zero_eigenvalue_kink(rng):
    from cvximplicit._cones._psd import smat, svec, svec_order

    k = 4
    cone = ci.PSDCone([k])
    # svec is an isometry and SCS's layout is the lower triangle, column-major.
    X = rng.standard_normal((k, k))
    X = X + X.T
    v = svec(X)
    assert np.isclose(v @ v, np.sum(X * X))
    np.testing.assert_allclose(smat(v, k), X)
    lower = [X[i, j] * (1 if i == j else np.sqrt(2)) for j in range(k) for i in range(j, k)]
    np.testing.assert_allclose(v[svec_order(k, "scs")], lower)
    # A matrix with one zero eigenvalue: a kink; the policies pick Omega = 1 or 0 there.
    U, _ = np.linalg.qr(rng.standard_normal((k, k)))
    lam = np.array([-1.0, 0.0, 0.5, 2.0])
    v0 = svec(U @ np.diag(lam) @ U.T)
    assert cone.kinks(v0, 1e-9) == 1
    active = cone.dual_jacobian(v0, KinkPolicy.ACTIVE, 1e-9).toarray()
    inactive = cone.dual_jacobian(v0, KinkPolicy.INACTIVE, 1e-9).toarray()
    E = svec(np.outer(U[:, 1], U[:, 1]))  # the zero eigendirection
    for D, side in ((active, 1e-7), (inactive, -1e-7)):
        moved = svec(U @ np.diag(lam + side * np.eye(k)[1]) @ U.T)
        limit = cone.dual_jacobian(moved, KinkPolicy.ACTIVE, 0.0).toarray()
        np.testing.assert_allclose(D, limit, atol=1e-6)
    assert np.isclose(E @ active @ E, 1.0) and np.isclose(E @ inactive @ E, 0.0)


@pytest.mark.parametrize("cone", [ci.ExponentialCone(1), ci.PowerCone([0.4])], ids=str)
def test_curved_cone_kinks_pick_neighbouring_pieces(rng, cone):
    """On the boundary of K (v in bd K, so y = 0 and s on the boundary) the two policies
    return the Jacobians of the two neighbouring pieces."""
    if isinstance(cone, ci.ExponentialCone):
        w = np.array([0.3, 1.0, np.exp(0.3)])  # on bd K
    else:
        w = np.array([2.0, 0.5, 2.0**0.4 * 0.5**0.6])
    v = -w  # D is evaluated at v with the kink of Pi_K at -v = w
    assert cone.kinks(v, 1e-9) == 1
    active = cone.dual_jacobian(v, KinkPolicy.ACTIVE, 1e-9).toarray()
    inactive = cone.dual_jacobian(v, KinkPolicy.INACTIVE, 1e-9).toarray()
    inside = np.eye(3) - np.eye(3)  # -v moved into int K: Pi_K = identity, D = 0
    assert np.allclose(inactive, inside, atol=1e-6)
    assert not np.allclose(active, inactive, atol=1e-3)
    assert np.trace(active) > np.trace(inactive)


@pytest.mark.parametrize("kink", list(KinkPolicy))
def test_compiled_psd_kernels_agree_with_numpy(rng, kink, monkeypatch):
    """The compiled PSD projection and Jacobian (``K' diag(omega) K`` per member) equal the
    numpy code's on members of several orders, scales and at zero and repeated eigenvalues."""
    pytest.importorskip("cvximplicit._cones._numba_kernels")
    from cvximplicit._cones import _psd
    from cvximplicit._cones._psd import svec

    orders = [1, 2, 3, 5, 5, 8, 12]
    members = []
    for i, k in enumerate(orders):
        U, _ = np.linalg.qr(rng.standard_normal((k, k)))
        lam = rng.standard_normal(k) * 10.0 ** rng.integers(-3, 4)
        if i % 2 and k > 2:
            lam[:2] = 0.0  # a kink: two zero eigenvalues
        if i % 3 == 0 and k > 3:
            lam[2] = lam[3] = 0.7  # a repeated eigenvalue
        members.append(svec(U @ np.diag(lam) @ U.T))
    v = np.concatenate(members)
    cone = ci.PSDCone(orders)
    fast = (cone.project(v), cone.dual_jacobian(v, kink, 1e-9).toarray())
    monkeypatch.setattr(_psd, "compiled_kernels", lambda: None)
    slow_cone = ci.PSDCone(orders)
    slow = (slow_cone.project(v), slow_cone.dual_jacobian(v, kink, 1e-9).toarray())
    for a, b in zip(fast, slow):
        scale = max(1.0, float(np.abs(b).max()))
        assert np.abs(a - b).max() < 1e-13 * scale


@pytest.mark.parametrize("kink", list(KinkPolicy))
def test_compiled_soc_kernels_agree_with_numpy(rng, kink, monkeypatch):
    """The compiled second-order cone projection and Jacobian equal the numpy code's inside
    K, inside the polar, between them, on both boundaries and at the origin."""
    pytest.importorskip("cvximplicit._cones._numba_kernels")
    from cvximplicit._cones import _soc

    sizes = [1, 2, 3, 3, 3, 3, 3, 5, 5, 9, 40]
    members = []
    for i, d in enumerate(sizes):
        u = rng.standard_normal(d - 1) * 10.0 ** rng.integers(-3, 4)
        r = float(np.linalg.norm(u))
        t = [rng.standard_normal() * 3 * r, 2 * r, -2 * r, r, -r, 0.0, r * (1 + 1e-12)][i % 7]
        members.append(np.concatenate([[t], u if i != 5 else 0.0 * u]))
    v = np.concatenate(members)
    cone = ci.SecondOrderCone(sizes)
    fast = (cone.project(v), cone.dual_jacobian(v, kink, 1e-9).toarray())
    monkeypatch.setattr(_soc, "compiled_kernels", lambda: None)
    slow = (cone.project(v), cone.dual_jacobian(v, kink, 1e-9).toarray())
    for a, b in zip(fast, slow):
        scale = max(1.0, float(np.abs(b).max()))
        assert np.abs(a - b).max() < 1e-13 * scale
