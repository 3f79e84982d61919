"""Manifold axioms for Euclidean, Oblique and Product (docs/theory/spherical.md), and Taylor slopes of the
Riemannian gradient (2) and Hessian (3) along retraction curves."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm
from ufm.manifolds import Euclidean, Oblique, Product
from ufm.problems.spherical import SphericalParams

from helpers import F64_IDENTITY, taylor_slope

ON_MANIFOLD = 1e-14


def _rows_error(X, r):
    return float(np.max(np.abs(np.linalg.norm(np.asarray(X), axis=1) - r)))


def _point(key, shape, r):
    return Oblique(r).projection_to_manifold(jax.random.normal(key, shape))


@pytest.mark.parametrize("r", [0.3, 1.0, 4.0])
def test_projection_to_manifold_and_retraction_stay_on_sphere(r):
    M = Oblique(r)
    k1, k2 = jax.random.split(jax.random.key(0))
    x = _point(k1, (7, 5), r)
    assert _rows_error(x, r) <= ON_MANIFOLD
    for t in (1e-8, 1e-3, 1.0, 1e3):  # tiny and huge tangent steps alike
        v = M.projection(x, t * jax.random.normal(k2, x.shape))
        assert _rows_error(M.retraction(x, v), r) <= ON_MANIFOLD
    # Repeated retractions do not accumulate drift.
    y = x
    for i in range(200):
        y = M.retraction(y, M.projection(y, 0.1 * jax.random.normal(jax.random.key(i), x.shape)))
    assert _rows_error(y, r) <= ON_MANIFOLD


@pytest.mark.parametrize("r", [0.5, 2.0])
def test_projection_is_tangent_idempotent_and_orthogonal(r):
    M = Oblique(r)
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    x = _point(k1, (6, 4), r)
    v = jax.random.normal(k2, x.shape)
    u = jax.random.normal(k3, x.shape)
    pv = M.projection(x, v)
    # Tangent: every row orthogonal to its point.
    assert np.max(np.abs(np.sum(np.asarray(x * pv), axis=1))) <= F64_IDENTITY
    # Idempotent and self-adjoint (an orthogonal projector).
    np.testing.assert_allclose(M.projection(x, pv), pv, atol=F64_IDENTITY)
    assert abs(float(M.inner(x, M.projection(x, u), v) - M.inner(x, u, pv))) <= F64_IDENTITY
    # The normal part is along x: v − P v is a row-wise multiple of x.
    normal = np.asarray(v - pv)
    coef = np.sum(normal * np.asarray(x), axis=1) / r ** 2
    np.testing.assert_allclose(normal, coef[:, None] * np.asarray(x), atol=F64_IDENTITY)
    # Riemannian gradient = projection of the Euclidean one; transport lands in T_y.
    np.testing.assert_allclose(M.euclidean_to_riemannian_gradient(x, v), pv, atol=0)
    y = M.retraction(x, 0.3 * pv)
    tu = M.transport(x, y, pv)
    assert np.max(np.abs(np.sum(np.asarray(y * tu), axis=1))) <= F64_IDENTITY
    assert abs(float(M.norm(x, pv)) - float(np.linalg.norm(np.asarray(pv)))) <= F64_IDENTITY


def test_oblique_validation():
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="radius"):
            Oblique(bad)


def test_euclidean_is_trivial():
    E = Euclidean()
    x, v = jnp.arange(3.0), jnp.ones(3)
    np.testing.assert_array_equal(E.projection(x, v), v)
    np.testing.assert_array_equal(E.retraction(x, v), x + v)
    assert float(E.inner(x, v, v)) == 3.0


def _product_point(key, K=3, N=5, d=4, rW=1.5, rH=0.7, bias=True):
    k1, k2, k3 = jax.random.split(key, 3)
    M = Product(SphericalParams(Oblique(rW), Oblique(rH), Euclidean() if bias else None))
    x = M.projection_to_manifold(SphericalParams(jax.random.normal(k1, (K, d)),
                                                 jax.random.normal(k2, (N, d)),
                                                 jax.random.normal(k3, (K,)) if bias else None))
    return M, x


@pytest.mark.parametrize("bias", [False, True])
def test_product_acts_componentwise(bias):
    M, x = _product_point(jax.random.key(2), bias=bias)
    assert _rows_error(x.W, 1.5) <= ON_MANIFOLD and _rows_error(x.H, 0.7) <= ON_MANIFOLD
    assert (x.b is None) == (not bias)
    v = jax.tree.map(lambda a: jax.random.normal(jax.random.key(3), a.shape), x)
    pv = M.projection(x, v)
    np.testing.assert_allclose(pv.W, Oblique(1.5).projection(x.W, v.W), atol=0)
    np.testing.assert_allclose(pv.H, Oblique(0.7).projection(x.H, v.H), atol=0)
    if bias:
        np.testing.assert_array_equal(pv.b, v.b)  # Euclidean block untouched
    y = M.retraction(x, pv)
    assert _rows_error(y.W, 1.5) <= ON_MANIFOLD and _rows_error(y.H, 0.7) <= ON_MANIFOLD
    expected = sum(float(jnp.vdot(a, b)) for a, b in zip(jax.tree.leaves(pv), jax.tree.leaves(v)))
    assert abs(float(M.inner(x, pv, v)) - expected) <= F64_IDENTITY
    assert abs(float(M.norm(x, pv)) ** 2 - float(M.inner(x, pv, pv))) <= F64_IDENTITY


def test_radius_is_a_traced_leaf():
    """Radii are array leaves: vmap over them (one compilation) gives each its own sphere."""
    x = jax.random.normal(jax.random.key(4), (4, 3))
    radii = jnp.array([0.5, 1.0, 3.0])
    out = jax.vmap(lambda r: Oblique(r).projection_to_manifold(x))(radii)
    for r, y in zip(radii, out):
        assert _rows_error(y, float(r)) <= ON_MANIFOLD


# ---- Taylor slopes along retraction curves --------------------------------------------------
def _test_function(problem_like):
    """A smooth non-quadratic test function on the product (not the UFM itself)."""
    A = jax.random.normal(jax.random.key(11), (5, 4))

    def f(x):
        out = jnp.sum(jnp.sin(x.H @ x.W.T)) + jnp.sum((x.W @ A.T) ** 2) * 0.1 + jnp.sum(jnp.cos(x.H))
        if x.b is not None:
            out = out + jnp.sum(jnp.exp(0.3 * x.b)) + x.b @ x.W @ jnp.ones(4)
        return out
    return f


class _Problem:
    """Minimal problem wrapper for ufm.landscape.hvp: value + manifold."""

    def __init__(self, value, manifold):
        self.value, self.manifold = value, manifold


def _slopes(problem, x, key):
    M = problem.manifold
    v = M.projection(x, jax.tree.map(lambda a: jax.random.normal(key, a.shape), x))
    v = jax.tree.map(lambda a: a / M.norm(x, v), v)
    g = M.euclidean_to_riemannian_gradient(x, jax.grad(problem.value)(x))
    hv = ufm.landscape.hvp(problem, x, v)

    def along(x0, t):
        return float(problem.value(M.retraction(x0, jax.tree.map(lambda a: t * a, v))))

    gv, vhv = float(M.inner(x, g, v)), float(M.inner(x, v, hv))
    return taylor_slope(along, x, v, gv), taylor_slope(along, x, v, gv, vhv)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_taylor_slopes_generic_function(bias, seed):
    M, x = _product_point(jax.random.key(20 + seed), K=5, N=6, d=4, bias=bias)
    problem = _Problem(_test_function(None), M)
    s2, s3 = _slopes(problem, x, jax.random.key(30 + seed))
    assert abs(s2 - 2) < 0.1 and abs(s3 - 3) < 0.1, (s2, s3)


@pytest.mark.parametrize("bias", [False, True])
def test_taylor_slopes_spherical_ufm(bias):
    p = ufm.SphericalUFM(4, 3, 5, ufm.losses.CrossEntropy(), radius_W=1.3, radius_H=0.8, temperature=0.5, bias=bias)
    x = p.init(jax.random.key(5))
    if bias:
        x = x._replace(b=jax.random.normal(jax.random.key(6), (4,)))
    s2, s3 = _slopes(p, x, jax.random.key(7))
    assert abs(s2 - 2) < 0.1 and abs(s3 - 3) < 0.1, (s2, s3)


def test_wrong_hessian_correction_breaks_slope_3():
    """The Weingarten term −(⟨x, ∇f⟩/r²) v matters: without it the slope drops to 2 (the test
    can fail)."""
    p = ufm.SphericalUFM(4, 3, 5, ufm.losses.CrossEntropy(), radius_W=1.3, radius_H=0.8, temperature=0.5)
    x = p.init(jax.random.key(8))
    M = p.manifold
    v = M.projection(x, jax.tree.map(lambda a: jax.random.normal(jax.random.key(9), a.shape), x))
    v = jax.tree.map(lambda a: a / M.norm(x, v), v)
    _, hv_euc = jax.jvp(jax.grad(p.value), (x,), (v,))
    g = M.projection(x, jax.grad(p.value)(x))
    wrong = float(M.inner(x, v, M.projection(x, hv_euc)))

    def along(x0, t):
        return float(p.value(M.retraction(x0, jax.tree.map(lambda a: t * a, v))))

    assert abs(taylor_slope(along, x, v, float(M.inner(x, g, v)), wrong) - 2) < 0.2


# ---- the Manifold contract --------------------------------------------------------------------
def test_every_manifold_derives_from_the_base_and_knows_its_dimension():
    from ufm.manifolds import Manifold
    x = _point(jax.random.key(40), (5, 4), 2.0)
    b = jnp.ones(3)
    assert Oblique(2.0).dim(x) == 5 * 3  # one norm constraint per row
    assert Euclidean().dim((x, b)) == 5 * 4 + 3
    P = Product(SphericalParams(Oblique(2.0), Euclidean(), None))
    assert P.dim(SphericalParams(x, x, None)) == 15 + 20
    assert all(isinstance(m, Manifold) for m in (Euclidean(), Oblique(), P))
    assert Euclidean().is_euclidean and not Oblique().is_euclidean and not P.is_euclidean
    assert Product(SphericalParams(Euclidean(), Euclidean(), None)).is_euclidean
    # The dimension is the rank of the tangent projection (counted independently: SVD of the
    # projector's matrix).
    flat = np.stack([np.asarray(Oblique(2.0).projection(x, e.reshape(x.shape)))
                     for e in np.eye(x.size)]).reshape(x.size, x.size)
    assert np.linalg.matrix_rank(flat, tol=1e-10) == Oblique(2.0).dim(x)
    # inner is the same metric as inner_product.
    u = Oblique(2.0).projection(x, jax.random.normal(jax.random.key(41), x.shape))
    assert float(Oblique(2.0).inner(x, u, u)) == float(Oblique(2.0).inner_product(x, u, u))


def test_an_incomplete_manifold_cannot_be_built():
    from ufm.manifolds import Manifold

    class Half(Manifold):
        def projection(self, x, v):
            return v

    with pytest.raises(TypeError, match="abstract"):
        Half()
