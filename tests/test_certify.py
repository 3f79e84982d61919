"""Certificates modulo symmetry (ufm.landscape.certify) and the certified solve (ufm.compare)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm
from ufm import landscape
from ufm.compare import certified_solve


def _construct(problem, seed=0):
    return problem.params(**ufm.theory.predict(problem).construct(seed=seed))


def _rank(params):
    X = np.concatenate([np.asarray(params.W), np.asarray(params.H)])
    return int(np.linalg.matrix_rank(X, tol=1e-8 * np.linalg.norm(X)))


@pytest.mark.parametrize("problem, bias_flat", [
    (ufm.UFM(3, 2, 5, ufm.losses.CrossEntropy(), 1e-2, 1e-2), True),   # r = K-1 = 2 < d
    (ufm.UFM(3, 2, 3, ufm.losses.MSE(), 2e-2, 2e-2, bias=False), False),  # OF, r = K = d
    (ufm.UFM(3, 2, 4, ufm.losses.CrossEntropy(), 1e-2, 1e-2, lambda_b=1e-2), False),
    (ufm.SphericalUFM(4, 2, 5, ufm.losses.CrossEntropy(), temperature=0.5), False),
])
def test_symmetry_rank_and_null_vectors(problem, bias_flat):
    x = _construct(problem)
    S = landscape.symmetry_directions(problem, x)
    d = problem.dim
    expected = landscape.rotation_orbit_dimension(d, _rank(x)) + bias_flat
    assert _rank(x) < d or expected == d * (d - 1) // 2 + bias_flat
    assert S.shape[1] == expected
    assert np.allclose(S.T @ S, np.eye(expected), atol=1e-12)
    Hm = np.asarray(landscape.hessian(problem, x))
    scale = np.max(np.abs(np.linalg.eigvalsh(Hm)))
    assert np.max(np.abs(Hm @ S)) < 1e-10 * scale  # orbit tangents are Hessian null vectors
    cert = landscape.certify(problem, x)
    assert cert.verdict() == "local minimum (strict, modulo symmetry)" and cert.num_degenerate == 0


def test_deep_linear_symmetries_are_null_vectors():
    p = ufm.DeepUFM(3, 2, (4, 4), ufm.losses.MSE(), 1e-2, 1e-2, activation="identity", bias=False)
    x = _construct(p)
    S = landscape.symmetry_directions(p, x)
    Hm = np.asarray(landscape.hessian(p, x))
    assert S.shape[1] > 6  # input rotations + hidden rotations (rank-deficient orbit allowed)
    assert np.max(np.abs(Hm @ S)) < 1e-10 * np.max(np.abs(np.linalg.eigvalsh(Hm)))


def test_degenerate_minimiser_set_is_counted():
    """Bias-free MSE with d < K: any rank-d projector Π (a Grassmannian, dimension d(K−d))."""
    K, d = 4, 2
    p = ufm.UFM(K, 2, d, ufm.losses.MSE(), 1e-2, 1e-2, bias=False)
    cert = landscape.certify(p, _construct(p))
    assert cert.num_degenerate == d * (K - d)
    assert cert.mu > 0 and not cert.is_saddle
    report = ufm.compare(p, _construct(p), ufm.theory.predict(p))
    assert report.ok and any("beyond symmetry" in n for n in report.notes)


def test_matrix_free_matches_dense():
    p = ufm.UFM(3, 3, 4, ufm.losses.CrossEntropy(), 1e-2, 2e-2)
    x = _construct(p)
    dense = landscape.certify(p, x, method="dense")
    free = landscape.certify(p, x, method="matrix-free")
    assert free.num_symmetry == dense.num_symmetry
    assert free.mu == pytest.approx(dense.mu, rel=1e-6)
    assert np.allclose(free.eigenvalues[:3], dense.eigenvalues[:3], rtol=1e-6)


def test_dense_refuses_above_guard(monkeypatch):
    p = ufm.UFM(3, 2, 3, ufm.losses.MSE(), 1e-2, 1e-2)
    monkeypatch.setattr(landscape, "DENSE_MAX", 10)
    with pytest.raises(ValueError, match="matrix-free"):
        landscape.hessian(p, p.init(jax.random.key(0)))


@pytest.mark.parametrize("problem", [
    ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 1e-2, 1e-2),
    ufm.UFM(4, 2, 4, ufm.losses.MSE(), 2e-2, 1e-2, bias=False),
    ufm.UFM(3, 2, 3, ufm.losses.MSE(), 0.3, 0.3, bias=False),  # zero regime: the origin
])
def test_bounds_hold_at_perturbed_minimisers(problem):
    """The certificate's bounds against the true error: perturb an exact minimiser by ε along a
    random direction; every bounded quantity's error must lie within its bound, and the bound must
    not be vacuous (≤ 1e4 × the error, or at the rounding floor)."""
    pred = ufm.theory.predict(problem)
    x = _construct(problem)
    flat, unravel = jax.flatten_util.ravel_pytree(x)
    rng = np.random.default_rng(1)
    for eps in (1e-7, 1e-5):
        v = rng.standard_normal(flat.size)
        y = unravel(flat + eps * jnp.asarray(v / np.linalg.norm(v)))
        report = ufm.compare(problem, y, pred)
        bounded = [r for r in report.rows if r.basis == "certificate"]
        assert bounded
        for r in bounded:
            assert r.error <= r.tolerance, (eps, r)
        assert max(r.tolerance for r in bounded) < 1e4 * max(max(r.error for r in bounded), 1e-12)
        assert report["grad_norm"].ok is False  # not stationary: raw params fail at rounding level


def test_certified_solve_escapes_the_origin_saddle():
    """L-BFGS started exactly at the origin below the threshold stops at once (zero gradient, a
    strict saddle); the certified solve escapes along the negative eigenvector to the ETF."""
    p = ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
    origin = p.params(jnp.zeros((3, 3)), jnp.zeros((6, 3)), jnp.zeros(3))
    pred = ufm.theory.predict(p)
    stuck = ufm.solve(p, ufm.solvers.LBFGS(), origin, gtol=1e-10)
    assert stuck.status_name == "converged" and float(stuck.value) == pytest.approx(math.log(3))
    at_saddle = ufm.compare(p, stuck, pred)
    assert not at_saddle.ok and not at_saddle["hessian_min_eig"].ok  # never PASS at a saddle
    sol = certified_solve(p, ufm.solvers.LBFGS(), origin, gtol=1e-10)
    report = ufm.compare(p, sol, pred)
    assert report.ok, str(report)
    assert float(sol.value) == pytest.approx(pred.value, rel=1e-10)
