"""Derivatives against finite differences of tight re-solves, the adjoint identity, diffcp's
dense mode and closed forms, on random instances of every family and with every solver."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import FAMILIES, fd_jvp, flat, random_tangents, reference_solver, rel_error

import cvximplicit as ci

SEEDS = [0, 1, 2]


def _check_family(family, solver, seed, rtol=1e-5):
    rng = np.random.default_rng(1000 + seed)
    program = ci.compile(family.problem, family.parameters, family.variables, solver=solver)
    ref_solver, ref_polish = reference_solver(program)
    reference = ci.compile(
        family.problem, family.parameters, family.variables, solver=ref_solver, polish=ref_polish
    )
    sol = program.solve(*family.values)
    assert sol.info.total_kinks == 0, "random instances must be at smooth points"
    assert sol.info.polish == "converged"
    # Forward values agree with the tight reference solve.
    ref = reference.solve(*family.values)
    for a, b in zip(sol.values, ref.values):
        assert rel_error(a, b, 1e-3) < 1e-7
    for k in range(len(family.parameters)):
        tangents = random_tangents(rng, family, only=k)
        jvp = sol.jvp(*tangents)
        fd5 = fd_jvp(reference, family.values, tangents, 1e-5)
        fd6 = fd_jvp(reference, family.values, tangents, 1e-6)
        # Both steps agree: the point is smooth at this scale (math.md section 6).
        assert rel_error(flat(fd5), flat(fd6), 1e-3) < 1e-4
        assert rel_error(flat(jvp), flat(fd5), 1e-3) < rtol, family.parameters[k].name()
        # Adjoint identity <g, J t> = <J' g, t>.
        cot = [rng.standard_normal(np.shape(v)) for v in sol.values]
        vjp = sol.vjp(*cot)
        lhs, rhs = np.dot(flat(cot), flat(jvp)), np.dot(flat(vjp), flat(tangents))
        assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_against_finite_differences(name, seed):
    family = FAMILIES[name](np.random.default_rng(seed))
    _check_family(family, None, seed)


@pytest.mark.parametrize(
    "solver,name",
    [("SCS", n) for n in FAMILIES] + [("OSQP", n) for n in ("nnls", "lasso", "qp", "lp_box")],
)
def test_every_solver_gives_the_same_exact_derivatives(solver, name):
    family = FAMILIES[name](np.random.default_rng(7))
    _check_family(family, solver, 7)


def test_vjp_reuses_one_factorization(monkeypatch):
    import cvximplicit._conic as conic

    family = FAMILIES["socp"](np.random.default_rng(3))
    program = ci.compile(family.problem, family.parameters, family.variables)
    sol = program.solve(*family.values)
    calls = []
    original = conic.factorize

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(conic, "factorize", counting)
    for _ in range(5):
        sol.vjp(*[np.ones_like(v) for v in sol.values])
        sol.jvp(*[np.ones_like(v) for v in family.values])
    assert len(calls) <= 1


def test_polished_lp_needs_no_second_factorization(monkeypatch):
    """For polyhedral cones the polishing factorization is the derivative's."""
    import cvximplicit._conic as conic

    family = FAMILIES["lp_box"](np.random.default_rng(4))
    program = ci.compile(family.problem, family.parameters, family.variables)
    sol = program.solve(*family.values)
    monkeypatch.setattr(conic, "factorize", lambda *a, **k: pytest.fail("refactorized"))
    sol.vjp(*[np.ones_like(v) for v in sol.values])


@pytest.mark.parametrize("name", ["lp_box", "socp_ball", "maxcut_sdp", "entropy_simplex"])
def test_agrees_with_diffcp_dense_mode(name):
    diffcp = pytest.importorskip("diffcp")
    family = FAMILIES[name](np.random.default_rng(11))
    program = ci.compile(family.problem, family.parameters, family.variables)
    data = program.canonical_data(*family.values)
    sol = program.solve(*family.values).conic
    assert data.P.nnz == 0
    cone_dict: dict = {}
    for cone in program.cones:
        if isinstance(cone, ci.ZeroCone):
            cone_dict["z"] = cone.dim
        elif isinstance(cone, ci.NonnegativeCone):
            cone_dict["l"] = cone.dim
        elif isinstance(cone, ci.SecondOrderCone):
            cone_dict["q"] = list(cone.sizes)
        elif isinstance(cone, ci.PSDCone):
            cone_dict["s"] = list(cone.orders)
        elif isinstance(cone, ci.ExponentialCone):
            cone_dict["ep"] = cone.count
    # diffcp takes SCS's layout (lower-triangle PSD blocks): permute rows once.
    perm = np.concatenate(
        [sl.start + c.permutation("scs") for c, sl in zip(sol.cones.cones, sol.cones.slices)]
    )
    inverse = np.argsort(perm)
    A = sp.csc_matrix(data.A.toarray()[perm])
    _, _, _, _, adjoint = diffcp.solve_and_derivative(
        A,
        data.b[perm],
        data.c,
        cone_dict,
        mode="dense",
        solve_method="SCS",
        eps=1e-12,
        max_iters=200_000,
    )
    rng = np.random.default_rng(0)
    dx = rng.standard_normal(data.n)
    dy = rng.standard_normal(data.m)
    ds = rng.standard_normal(data.m)
    dA_ref, db_ref, dc_ref = adjoint(dx, dy[perm], ds[perm])
    ours = sol.vjp(dx, dy, ds)
    dA = sp.csc_array((ours.A, data.A.indices, data.A.indptr), shape=data.A.shape).toarray()
    assert rel_error(ours.c, dc_ref) < 1e-5
    assert rel_error(ours.b, np.asarray(db_ref)[inverse]) < 1e-5
    mask = data.A.toarray() != 0
    assert rel_error(dA[mask], np.asarray(dA_ref.toarray())[inverse][mask]) < 1e-5


def test_unconstrained_least_squares_closed_form(rng):
    import cvxpy as cp

    m, n = 9, 4
    x = cp.Variable(n)
    A, b = cp.Parameter((m, n)), cp.Parameter(m)
    program = ci.compile(cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b))), [A, b], [x])
    Av, bv = rng.standard_normal((m, n)), rng.standard_normal(m)
    sol = program.solve(Av, bv)
    np.testing.assert_allclose(sol.values[0], np.linalg.lstsq(Av, bv, rcond=None)[0], atol=1e-10)
    # d x / d b = (A'A)^{-1} A'
    jac_b = np.column_stack([sol.jvp(None, e)[0] for e in np.eye(m)])
    np.testing.assert_allclose(jac_b, np.linalg.solve(Av.T @ Av, Av.T), atol=1e-10)
    # gradient of <g, x> in A: (A'A)^{-1} g r' - A (A'A)^{-1} g x'  ... written as below
    g = rng.standard_normal(n)
    gA, gb = sol.vjp(g)
    w = np.linalg.solve(Av.T @ Av, g)
    r = bv - Av @ sol.values[0]
    np.testing.assert_allclose(gA, np.outer(r, w) - np.outer(Av @ w, sol.values[0]), atol=1e-10)
    np.testing.assert_allclose(gb, Av @ w, atol=1e-10)


def test_simplex_projection_closed_form():
    import cvxpy as cp

    n = 6
    x, z = cp.Variable(n), cp.Parameter(n)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x - z)), [x >= 0, cp.sum(x) == 1])
    program = ci.compile(prob, [z], [x])
    zv = np.array([0.9, 0.35, 0.1, -0.4, 0.3, -1.0])
    sol = program.solve(zv)
    support = sol.values[0] > 1e-9
    jac = np.column_stack([sol.jvp(e)[0] for e in np.eye(n)])
    k = support.sum()
    expected = np.zeros((n, n))
    expected[np.ix_(support, support)] = np.eye(k) - 1.0 / k
    np.testing.assert_allclose(jac, expected, atol=1e-10)


@pytest.mark.parametrize("kink", ["active", "inactive"])
def test_kink_returns_a_one_sided_limit(kink):
    """Projection onto the orthant at a point with z_1 = 0 exactly (y_1 = s_1 = 0)."""
    import cvxpy as cp

    x, z = cp.Variable(3), cp.Parameter(3)
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - z)), [x >= 0])
    program = ci.compile(prob, [z], [x], kink=kink)
    zv = np.array([1.0, 0.0, -1.0])
    sol = program.solve(zv)
    assert sol.info.kinks["nonnegative"] == 1
    jac = np.column_stack([sol.jvp(e)[0] for e in np.eye(3)])
    h = 1e-6
    e1 = np.eye(3)[1]
    right = (program.solve(zv + h * e1).values[0] - sol.values[0]) / h
    left = (sol.values[0] - program.solve(zv - h * e1).values[0]) / h
    np.testing.assert_allclose(jac[:, 1], left if kink == "active" else right, atol=1e-8)
    assert not np.allclose(left, right)


def test_strict_and_degenerate_derivatives():
    """An LP whose solution is not unique: B is singular."""
    import cvxpy as cp

    x, c = cp.Variable(2), cp.Parameter(2)
    prob = cp.Problem(cp.Minimize(c @ x), [x >= 0, x <= 1])
    values = np.array([1.0, 0.0])  # x_2 is free in [0, 1]
    program = ci.compile(prob, [c], [x])
    sol = program.solve(values)
    with pytest.warns(ci.DegenerateDerivativeWarning, match="implicit function theorem"):
        grads = sol.vjp(np.ones(2))
    assert np.all(np.isfinite(grads[0]))
    assert sol.diagnostics.degenerate
    assert sol.condition() == float("inf")
    assert sol.diagnostics.condition == float("inf")
    strict = ci.compile(prob, [c], [x], strict=True)
    with pytest.raises(ci.DegenerateDerivativeError):
        strict.solve(values).vjp(np.ones(2))


def test_refined_reuse_matches_fresh_factorization():
    """Curved cones, sparse B: polishing reuses a nearby LU with refinement; B is still exact."""
    from cvximplicit._conic import newton_matrix
    from cvximplicit._factor import factorize

    family = FAMILIES["socp"](np.random.default_rng(8))
    sparse = ci.Tolerances(dense_lu_limit=0, dense_fill_limit=0)  # force the sparse path
    program = ci.compile(family.problem, family.parameters, family.variables, tolerances=sparse)
    sol = program.solve(*family.values).conic
    system = sol.factorization()
    assert "refinement" in system.method
    reference = newton_matrix(sol.data, sol.D)
    np.testing.assert_allclose(
        sol.structure.matrix(sol.data, sol.jacobian).toarray(), reference.toarray(), atol=1e-15
    )
    fresh = factorize(reference)
    rhs = np.random.default_rng(0).standard_normal(fresh.size)
    for transpose in (False, True):
        np.testing.assert_allclose(
            system.solve(rhs, transpose), fresh.solve(rhs, transpose), rtol=1e-10, atol=1e-12
        )


def test_reused_factorization_of_a_singular_b_is_found_before_derivatives(monkeypatch):
    """A solution whose last factorization is of a nearby nonsingular ``B`` while its own
    ``B`` is singular: the derivative's refinement fails, ``B`` itself is factorized, and
    the least-squares derivative comes with the degenerate-derivative warning."""
    from cvximplicit._factor import Refined, factorize

    family = FAMILIES["socp"](np.random.default_rng(8))
    program = ci.compile(family.problem, family.parameters, family.variables)
    sol = program.solve(*family.values).conic
    B = sol.structure.dense_matrix(sol.data, sol.jacobian)
    singular = B.copy()
    singular[-1] = singular[-2]  # two equal rows
    sol._factorization = Refined(
        factorize(B),
        lambda z: singular @ z,
        lambda w: w @ singular,
        lambda: factorize(singular),
        6,
    )
    sol.diagnostics.linear_solve = None
    with pytest.warns(ci.DegenerateDerivativeWarning):
        sol.vjp(np.ones(sol.data.n))
    assert sol.diagnostics.degenerate


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_geometric_program(seed):
    import cvxpy as cp

    family = ci.problems.geometric_program(seed=seed)
    program = ci.compile(family.problem, family.parameters, family.variables, gp=True)
    sol = program.solve(*family.values)
    for p, v in zip(family.parameters, family.values):
        p.value = v
    family.problem.solve(gp=True, solver=cp.CLARABEL)
    for ours, var in zip(sol.values, family.variables):
        assert abs(ours - var.value) <= 1e-6 * abs(var.value)
    for p in family.parameters:
        p.value = None
    ref_solver, polish = reference_solver(program)
    reference = ci.compile(
        family.problem,
        family.parameters,
        family.variables,
        gp=True,
        solver=ref_solver,
        polish=polish,
    )
    rng = np.random.default_rng(seed)
    tangents = [rng.standard_normal() * np.ones(()) for _ in family.values]
    jvp = sol.jvp(*tangents)
    fd = fd_jvp(reference, family.values, tangents, 1e-5)
    assert rel_error(flat(jvp), flat(fd)) < 1e-5
    cot = [rng.standard_normal() for _ in sol.values]
    vjp = sol.vjp(*cot)
    assert abs(np.dot(cot, flat(jvp)) - np.dot(flat(vjp), flat(tangents))) < 1e-10


def test_geometric_program_errors():
    import cvxpy as cp

    family = ci.problems.geometric_program()
    program = ci.compile(family.problem, family.parameters, family.variables, gp=True)
    with pytest.raises(ci.ParameterError, match="positive"):
        program.solve(np.array(-1.0), family.values[1])
    with pytest.raises(ci.UnsupportedProblemError, match="dual values of geometric"):
        ci.compile(family.problem, family.parameters, [family.problem.constraints[0]], gp=True)
    x, a = cp.Variable(pos=True), cp.Parameter(pos=True)
    not_dgp = cp.Problem(cp.Minimize(x - a), [x >= 1])
    with pytest.raises(ci.NonDCPError, match="not a disciplined geometric program"):
        ci.compile(not_dgp, [a], [x], gp=True)


@pytest.mark.parametrize("kink", ["active", "inactive"])
def test_psd_projection_kink_is_a_one_sided_limit(kink):
    """Projection onto the PSD cone of a matrix with a zero eigenvalue (a kink): the
    Jacobian equals the derivative on one side of it, and the two policies differ."""
    import cvxpy as cp

    k = 3
    X, C = cp.Variable((k, k), symmetric=True), cp.Parameter((k, k), symmetric=True)
    program = ci.compile(
        cp.Problem(cp.Minimize(cp.sum_squares(X - C)), [X >> 0]), [C], [X], kink=kink
    )
    U, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((k, k)))
    at = U @ np.diag([-1.0, 0.0, 2.0]) @ U.T
    E = np.random.default_rng(1).standard_normal((k, k))
    E = E + E.T
    sol = program.solve(at)
    assert sol.info.kinks["psd"] >= 1
    here = sol.jvp(E)[0]
    sides = []
    for eps in (1e-6, -1e-6):
        moved = U @ np.diag([-1.0, eps, 2.0]) @ U.T
        sides.append(program.solve(moved).jvp(E)[0])
    assert not np.allclose(sides[0], sides[1], atol=1e-3)
    # "active" keeps the PSD constraint binding in the zero eigendirection: the side where
    # that eigenvalue of C is negative (projected to zero); "inactive" is the other side.
    expected = sides[1] if kink == "active" else sides[0]
    np.testing.assert_allclose(here, expected, atol=1e-5)


def test_structurally_singular_sparse_B_never_reaches_superlu(monkeypatch):
    """A sparse B with an empty column goes to least squares without calling SuperLU (which
    was seen to crash the process on rank-deficient input)."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    from cvximplicit._factor import factorize

    monkeypatch.setattr(spla, "splu", lambda *a, **k: pytest.fail("SuperLU called"))
    B = sp.random_array((400, 400), density=0.01, rng=0, format="csc") + sp.eye_array(400)
    B = B.tolil()
    B[:, 7] = 0.0
    sparse = ci.Tolerances(dense_lu_limit=0, dense_fill_limit=0)
    fact = factorize(B.tocsc(), sparse)
    assert fact.degenerate and "structurally singular" in fact.reason
    x = fact.solve(np.ones(400))
    assert np.all(np.isfinite(x))


#: Every sparse B of zero/nonnegative cones through the reduced LDL (qdldl), none through it.
LDL = ci.Tolerances(dense_lu_limit=0, dense_fill_limit=0, ldl_min_size=0)
NO_LDL = ci.Tolerances(dense_lu_limit=0, dense_fill_limit=0, ldl_min_size=10**9)


@pytest.mark.parametrize("name", ["nnls", "lasso", "qp", "lp_box"])
def test_reduced_ldl_gives_the_lu_derivatives(name):
    """Zero and nonnegative cones: solves through the reduced symmetric LDL, refined against
    B, equal SuperLU's to rounding, in both directions, and the derivatives match finite
    differences (``_check_family``)."""
    pytest.importorskip("qdldl")
    family = FAMILIES[name](np.random.default_rng(11))
    args = (family.problem, family.parameters, family.variables)
    ldl = ci.compile(*args, tolerances=LDL).solve(*family.values)
    lu = ci.compile(*args, tolerances=NO_LDL).solve(*family.values)
    rng = np.random.default_rng(0)
    fact, ref = ldl.conic.factorization(), lu.conic.factorization()
    assert "qdldl" in fact.method and "qdldl" not in ref.method
    rhs = rng.standard_normal(fact.size)
    for transpose in (False, True):
        np.testing.assert_allclose(
            fact.solve(rhs, transpose), ref.solve(rhs, transpose), rtol=1e-10, atol=1e-12
        )
    cot = [rng.standard_normal(np.shape(v)) for v in ldl.values]
    np.testing.assert_allclose(flat(ldl.vjp(*cot)), flat(lu.vjp(*cot)), rtol=1e-9, atol=1e-12)


def test_reduced_ldl_with_fractional_d():
    """``ReducedLDL`` eliminates rows with ``0 < d < 1`` too (``H = P + A_0' d/(1-d) A_0``):
    refined, it solves ``B z = r`` and ``B' z = r`` for a random sparse program."""
    pytest.importorskip("qdldl")
    from cvximplicit._factor import factorize, reduced_ldl

    rng = np.random.default_rng(3)
    n, m = 60, 90
    M = sp.random_array((n, n), density=0.05, rng=rng)
    P = sp.csc_array(M @ M.T + 0.1 * sp.eye_array(n))
    A = sp.csc_array(sp.random_array((m, n), density=0.1, rng=rng) + sp.eye_array(m, n))
    d = rng.choice([0.0, 1.0, 0.3, 0.9], m)
    B = sp.bmat([[P, A.T @ sp.diags_array(d)], [A, sp.diags_array(d - 1.0)]], format="csc")
    fact = reduced_ldl(
        P, A, d, lambda z: B @ z, lambda w: B.T @ w, lambda: factorize(B), ci.Tolerances()
    )
    assert fact is not None and "qdldl" in fact.method
    rhs = rng.standard_normal(n + m)
    for transpose in (False, True):
        z = fact.solve(rhs, transpose)
        np.testing.assert_allclose((B.T if transpose else B) @ z, rhs, atol=1e-11)


def test_reduced_ldl_leaves_singular_B_to_the_lu_path():
    """A degenerate LP (B singular) large enough for the LDL path: the probe's refinement
    fails, so B is factorized by the LU path, which flags it (warning, least squares)."""
    pytest.importorskip("qdldl")
    import cvxpy as cp

    x, c = cp.Variable(300), cp.Parameter(300)
    prob = cp.Problem(cp.Minimize(c @ x), [x >= 0, x <= 1])
    values = np.ones(300)
    values[7] = 0.0  # x_7 is free in [0, 1]
    sol = ci.compile(prob, [c], [x], tolerances=LDL).solve(values)
    with pytest.warns(ci.DegenerateDerivativeWarning):
        grads = sol.vjp(np.ones(300))
    assert np.all(np.isfinite(grads[0]))
    assert sol.diagnostics.degenerate and "qdldl" not in sol.conic.factorization().method


@pytest.mark.parametrize("name", ["nnls", "socp", "maxcut_sdp"])
def test_compiled_data_cotangent_agrees_with_numpy(name, monkeypatch):
    """A VJP's data cotangent (``dP``, ``dA`` on the patterns) and its map to parameters,
    from the numba kernel (`ConicSolution.vjp_mapped`), equal the numpy formulas followed by
    the parameter map."""
    pytest.importorskip("cvximplicit._numba_tangent")
    import cvximplicit._conic as conic

    fam = FAMILIES[name](np.random.default_rng(3))
    program = ci.compile(fam.problem, fam.parameters, fam.variables)
    sol = program.solve(*fam.values)
    cot = [np.random.default_rng(4).standard_normal(np.shape(v)) for v in sol.values]
    compiled = sol.vjp(*cot)
    monkeypatch.setattr(conic, "compiled", lambda name: None)
    plain = program.solve(*fam.values).vjp(*cot)
    for a, b in zip(compiled, plain):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["nnls", "qp", "socp", "maxcut_sdp", "logistic"])
def test_compiled_residual_agrees_with_numpy(name, monkeypatch):
    """The normal-map residual from the numba kernel equals the numpy formulas: ``F``, its
    relative size and its norm, at random points and at points of entries near 1e160 (the
    norm must not overflow) or infinite."""
    import cvximplicit._conic as conic

    if conic.compiled("_numba_newton") is None:
        pytest.skip("numba is not installed (or CVXIMPLICIT_DISABLE_NUMBA is set)")
    fam = FAMILIES[name](np.random.default_rng(3))
    program = ci.compile(fam.problem, fam.parameters, fam.variables)
    data, cones = program.canonical_data(*fam.values), program._cones
    rng = np.random.default_rng(5)
    points = [(rng.standard_normal(program.n), rng.standard_normal(program.m)) for _ in range(3)]
    points.append((1e160 * rng.standard_normal(program.n), rng.standard_normal(program.m)))
    points.append((np.full(program.n, np.inf), rng.standard_normal(program.m)))
    fast = [conic.residual(data, cones, x, v) for x, v in points]
    monkeypatch.setattr(conic, "compiled", lambda name: None)
    for (x, v), a in zip(points, fast):
        with np.errstate(invalid="ignore", over="ignore"):
            b = conic.residual(data, cones, x, v)
        np.testing.assert_allclose(a.F, b.F, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose([a.relative, a.norm], [b.relative, b.norm], rtol=1e-13)
    assert np.isnan(fast[-1].relative) and fast[3].norm > 1e150


@pytest.mark.parametrize("name", ["nnls", "socp", "maxcut_sdp", "logistic"])
def test_compiled_newton_products_agree_with_numpy(name, monkeypatch):
    """``B z`` and ``B' w`` (and ``D z``, ``D' w``) from the numba kernels equal the numpy
    products and the assembled reference ``B``."""
    import cvximplicit._conic as conic

    if conic.compiled("_numba_newton") is None:
        pytest.skip("numba is not installed (or CVXIMPLICIT_DISABLE_NUMBA is set)")
    fam = FAMILIES[name](np.random.default_rng(3))
    program = ci.compile(fam.problem, fam.parameters, fam.variables)
    sol = program.solve(*fam.values).conic
    data, D, structure = sol.data, sol.jacobian, sol.structure
    B = conic.newton_matrix(data, D.sparse())
    rng = np.random.default_rng(6)
    z, w = rng.standard_normal(B.shape[0]), rng.standard_normal(B.shape[0])
    u = rng.standard_normal(program.m)
    fast = [structure.matvec(data, D, z), structure.rmatvec(data, D, w), D.matvec(u)]
    fast.append(D.rmatvec(u))
    monkeypatch.setattr(conic, "compiled", lambda name: None)
    plain = [structure.matvec(data, D, z), structure.rmatvec(data, D, w), D.matvec(u)]
    plain.append(D.rmatvec(u))
    for a, b in zip(fast, plain):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fast[0], B @ z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fast[1], B.T @ w, rtol=1e-12, atol=1e-12)


def test_known_orderings_factorize_like_superlu(monkeypatch):
    """A pattern's second factorization reuses the ordering its first one found (B permuted
    symmetrically, no ordering step) and solves to rounding like a fresh SuperLU, in both
    directions; on a numerically singular B of the same pattern it gives least squares with
    the pivot ratio as the reason."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    from cvximplicit._factor import SparsePatterns, factorize, natural_lu

    rng = np.random.default_rng(5)
    n = 300
    B = sp.random_array((n, n), density=0.02, rng=1, format="csc") + 4.0 * sp.eye_array(n)
    dense = (B + B.T).toarray()  # a symmetric pattern, as for curved cones
    # columns 3 and 7 share a pattern (made dependent below)
    dense[:, 7] = np.where(dense[:, 3] != 0, rng.uniform(1.0, 2.0, n), 0.0)
    B = sp.csc_array(dense)
    sparse = ci.Tolerances(dense_lu_limit=0, dense_fill_limit=0)
    patterns = SparsePatterns()
    for curved in (True, False):
        first = factorize(B, sparse, patterns, curved)
        ordering = patterns(B).ordering()
        assert ordering is not None
        B2 = sp.csc_array(B, copy=True)
        B2.data = B.data * rng.uniform(0.5, 1.5, B.nnz)
        calls = []
        with monkeypatch.context() as patch:
            patch.setattr(
                spla, "splu", lambda *a, c=calls, f=spla.splu, **k: c.append(1) or f(*a, **k)
            )
            second = factorize(B2, sparse, patterns, curved)
        assert not first.degenerate and not second.degenerate
        r = rng.standard_normal(n)
        for fact, M in ((first, B), (second, B2)):
            for transpose in (False, True):
                op = M.T if transpose else M
                z = fact.solve(r, transpose=transpose)
                assert np.linalg.norm(op @ z - r) < 1e-12 * np.linalg.norm(r)
        assert not calls  # no SuperLU call with an ordering step
        lu = natural_lu(B2.data, ordering, curved, sparse)
        assert lu is not None
        np.testing.assert_allclose(lu.solve(r), second.solve(r), rtol=1e-12)
        # Numerically singular, same pattern: column 7 = 2 x column 3.
        singular = sp.csc_array(B2, copy=True)
        s3, s7 = (
            slice(singular.indptr[3], singular.indptr[4]),
            slice(singular.indptr[7], singular.indptr[8]),
        )
        singular.data[s7] = 2.0 * singular.data[s3]
        assert natural_lu(singular.data, ordering, curved, sparse) is None
        fact = factorize(singular, sparse, patterns, curved)
        assert fact.degenerate and ("pivot ratio" in fact.reason or "singular" in fact.reason)


@pytest.mark.parametrize("name", ["entropy_simplex", "lp_box", "nnls"])
def test_factorizations_in_a_known_order_are_exact(name, monkeypatch):
    """`NewtonStructure.factorize` assembles B straight in a known pattern's order: on a
    later solve its factorization solves the solution's own B to rounding."""
    family = FAMILIES[name](np.random.default_rng(2))
    sparse = ci.Tolerances(dense_lu_limit=0, dense_fill_limit=0, ldl_min_size=10**9)
    program = ci.compile(family.problem, family.parameters, family.variables, tolerances=sparse)
    program.solve(*family.values)
    conic = program.solve(*[v * 1.01 for v in family.values]).conic
    structure = conic.structure
    recorded = structure.patterns_cache._patterns.values()
    assert any(p.ordering() is not None for p in recorded), "no ordering was recorded"
    fact = structure.factorize(conic.data, conic.jacobian, sparse)
    B = structure.matrix(conic.data, conic.jacobian)
    r = np.random.default_rng(0).standard_normal(B.shape[0])
    for transpose in (False, True):
        op = B.T if transpose else B
        z = fact.solve(r, transpose=transpose)
        assert np.linalg.norm(op @ z - r) < 1e-11 * np.linalg.norm(r) * max(1.0, np.linalg.norm(z))
