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
        assert cone.kinks(v, 1e-6) == 0
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
