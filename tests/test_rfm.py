"""Deep RFM (ufm.rfm): the AGOP routine, the Laplace kernel and its analytic gradient, blocking,
and the toy check of docs/real-networks.md (NC1 falls monotonically over 5 layers)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ufm import rfm


def _dense_laplace_jacobians(P, C, alpha, bw, drop_self=False):
    """Reference Jacobians from explicit differences x_j − x_p (NumPy, [P, N, d] in memory)."""
    diff = C[None, :, :] - P[:, None, :]
    dist = np.linalg.norm(diff, axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        omega = np.where(dist > 0, np.exp(-dist / bw) / (bw * dist), 0.0)
    return np.einsum("pj,jk,pjd->pkd", omega, alpha, diff)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(23, 4))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y = rng.normal(size=(23, 3))
    return X, Y


def test_agop_of_a_linear_map_is_AtA():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(3, 5))
    X = rng.normal(size=(11, 5))
    for B in (1, 4, 11, 64):  # padding, exact blocks, one block
        G = np.asarray(rfm.agop(lambda x: jnp.asarray(A) @ x, X, block_size=B))
        np.testing.assert_allclose(G, A.T @ A, rtol=1e-13, atol=1e-13)


def test_agop_of_an_analytic_nonlinear_map():
    # f(x) = sin(Bx): J(x) = diag(cos(Bx)) B, so the AGOP is Bᵀ diag(mean_i cos²(B x_i)) B.
    rng = np.random.default_rng(2)
    Bm = rng.normal(size=(2, 3))
    X = rng.normal(size=(9, 3))
    expected = Bm.T @ np.diag(np.mean(np.cos(X @ Bm.T) ** 2, axis=0)) @ Bm
    G = np.asarray(rfm.agop(lambda x: jnp.sin(jnp.asarray(Bm) @ x), X, block_size=4))
    np.testing.assert_allclose(G, expected, rtol=1e-13, atol=1e-14)


def test_laplace_kernel_and_ridge(data):
    X, Y = data
    bw, mu = 2.0, 1e-3
    dist = np.linalg.norm(X[:, None] - X[None], axis=2)
    Kref = np.exp(-dist / bw)
    np.testing.assert_allclose(np.asarray(rfm.laplace_kernel(X, X, bw)), Kref, rtol=1e-12, atol=1e-14)
    alpha = np.asarray(rfm.kernel_ridge(X, Y, bw, mu))
    np.testing.assert_allclose((Kref + mu * np.eye(len(X))) @ alpha, Y, rtol=0, atol=1e-9)


def test_laplace_jacobian_matches_jacfwd_of_the_predictor(data):
    X, Y = data
    bw = 1.5
    alpha = np.asarray(rfm.kernel_ridge(X, Y, bw))
    Xj, aj = jnp.asarray(X), jnp.asarray(alpha)

    def predictor(x):  # exact differences, independent of the kernel code
        return jnp.exp(-jnp.sqrt(jnp.sum((x[None, :] - Xj) ** 2, axis=1)) / bw) @ aj

    P = np.random.default_rng(3).normal(size=(5, 4))  # new points: no centre coincides
    J = np.asarray(rfm.laplace_jacobian(P, X, alpha, bw, block_size=2))
    J_ad = np.asarray(jax.vmap(jax.jacfwd(predictor))(jnp.asarray(P)))
    np.testing.assert_allclose(J, J_ad, rtol=1e-11, atol=1e-13)


def test_laplace_agop_blocked_equals_unblocked_and_dense_reference(data):
    X, Y = data
    bw = 2.0
    alpha = np.asarray(rfm.kernel_ridge(X, Y, bw))
    Jd = _dense_laplace_jacobians(X, X, alpha, bw)  # self-term ω_ii = 0
    expected = np.einsum("ikd,ike->de", Jd, Jd) / len(X)
    for B in (1, 5, 23, 100):
        G = np.asarray(rfm.laplace_agop(X, alpha, bw, block_size=B))
        np.testing.assert_allclose(G, expected, rtol=1e-11, atol=1e-14)
    # The analytic Jacobian at the training points is the AD Jacobian of the predictor without
    # its own (singular) term.
    Jt = np.asarray(rfm.laplace_jacobian(X, X, alpha, bw, block_size=7))
    np.testing.assert_allclose(Jt, Jd, rtol=1e-11, atol=1e-14)


def test_psd_sqrt():
    rng = np.random.default_rng(4)
    A = rng.normal(size=(4, 2))
    M = A @ A.T  # rank 2: rounding gives tiny negative eigenvalues, clipped
    S = np.asarray(rfm.psd_sqrt(M))
    np.testing.assert_allclose(S, S.T, atol=1e-15)
    np.testing.assert_allclose(S @ S, M, atol=1e-12)
    assert np.linalg.eigvalsh(S).min() > -1e-7


def test_nc2_rfm_hand_value():
    # Means (1,0), (−1,0), (0,1): centred and normalised, cos(u1,u2) = −0.8, cos(u1,u3) = cos(u2,u3)
    # = −1/√10; G' has off-diagonal −1/2.
    M = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    y = np.repeat(np.arange(3), 2)
    H = np.repeat(M, 2, axis=0) + np.array([[0.1, 0], [-0.1, 0]] * 3)  # within-class noise, same means
    expected = (2 * 0.3 ** 2 + 4 * (0.5 - 1 / np.sqrt(10)) ** 2) / 9
    assert abs(rfm.nc2_rfm(H, y, 3) - expected) < 1e-15


def test_toy_check_nc1_decreases_over_five_layers():
    X, y = rfm.gaussian_mixture(jax.random.key(0), 3, 25, 30)
    res = rfm.deep_rfm(X, y, 3, num_layers=5, width=200, key=jax.random.key(100))
    nc1 = [m["nc1_data"] for m in res.metrics] + [res.metrics[-1]["nc1_relu"]]
    assert len(nc1) == 6 and nc1[0] > 1.0, nc1
    assert all(b < 0.5 * a for a, b in zip(nc1, nc1[1:])), nc1  # monotone, by a factor per layer
    assert nc1[-1] < 1e-2, nc1
    # The AGOP projection, not the ReLU, does the collapsing: every projection lowers NC1.
    for m in res.metrics:
        assert m["nc1_agop"] < 0.5 * m["nc1_data"], m
        assert m["train_accuracy"] == 1.0
    assert [f.shape for f in res.features] == [(75, 30)] + [(75, 200)] * 5
    for M in res.agops:
        assert abs(float(jnp.max(jnp.abs(M))) - 1.0) < 1e-15
        assert float(jnp.linalg.eigvalsh(M).min()) > -1e-12  # an AGOP is PSD


@pytest.mark.parametrize("call, match", [
    (lambda X: rfm.laplace_kernel(X, X, 0.0), "bandwidth"),
    (lambda X: rfm.laplace_kernel(X, X[:, :2], 1.0), "Z must have 4 columns"),
    (lambda X: rfm.kernel_ridge(X, X[:3], 1.0), "same number of rows"),
    (lambda X: rfm.kernel_ridge(X, X, 1.0, ridge=-1.0), "ridge"),
    (lambda X: rfm.laplace_agop(X, X, block_size=0), "block_size"),
    (lambda X: rfm.laplace_agop(X, X[:2]), "alpha"),
    (lambda X: rfm.agop(lambda x: x, X[0]), "2-D"),
    (lambda X: rfm.laplace_kernel(np.full((2, 2), np.nan), X[:, :2]), "non-finite"),
    (lambda X: rfm.deep_rfm(X, [0, 1] * 2 + [0] * 19, 3, key=jax.random.key(0)), "every class"),
    (lambda X: rfm.deep_rfm(X, [0, 1] * 11 + [1], 2, key=0), "key"),
    (lambda X: rfm.deep_rfm(X, [0, 1] * 11 + [1], 2, num_layers=0, key=jax.random.key(0)),
     "num_layers"),
    # repeated rows with ridge = 0: a singular system, silently NaN coefficients before
    (lambda X: rfm.kernel_ridge(np.vstack([X, X]), np.ones((46, 1)), 1.0, ridge=0.0), "singular"),
    (lambda X: rfm.deep_rfm(np.vstack([X, X]), [0, 1] * 23, 2, num_layers=1, width=3, ridge=0.0,
                            key=jax.random.key(0)), "singular"),
])
def test_bad_input(data, call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(data[0])


def test_far_from_the_origin_is_translation_invariant():
    # The Laplace kernel, its Jacobian and the AGOP depend only on differences x − z; with an
    # offset of 1e6 the expansion ‖x‖² + ‖z‖² − 2x·z made the kernel wrong by 1e-4, the AGOP by
    # 1e-3. Points on a grid of 2^-20 stay exact when offset by 1e6 (< 2^20), so the reference
    # (explicit differences of the unshifted points, NumPy) is exact too.
    rng = np.random.default_rng(5)
    X = np.round(rng.normal(size=(7, 3)) * 2.0 ** 20) / 2.0 ** 20
    alpha = rng.normal(size=(X.shape[0], 2))
    bw = 1.5
    dist = np.linalg.norm(X[:, None] - X[None], axis=2)
    J = _dense_laplace_jacobians(X, X, alpha, bw)
    G = np.einsum("pkd,pke->de", J, J) / X.shape[0]
    Xo = X + 1e6
    np.testing.assert_allclose(np.asarray(rfm.laplace_kernel(Xo, Xo, bw)), np.exp(-dist / bw), atol=1e-12)
    np.testing.assert_allclose(np.asarray(rfm.laplace_jacobian(Xo, Xo, alpha, bw)), J, atol=1e-11)
    np.testing.assert_allclose(np.asarray(rfm.laplace_agop(Xo, alpha, bw, block_size=3)), G,
                               atol=1e-11 * np.abs(G).max())
