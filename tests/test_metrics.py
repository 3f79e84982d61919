"""NC metrics: exact zeros on exact constructions, clearly non-zero after perturbations, hand values."""

import jax.numpy as jnp
import numpy as np
import pytest

from ufm import metrics
from ufm.theory.frames import centering, orthogonal_frame, simplex_etf


def _collapsed(W, n, beta=0.7):
    K = W.shape[0]
    return np.repeat(beta * W, n, axis=0), np.repeat(np.arange(K), n)


def test_nc1_hand_value():
    # K = 2, d = 1: means ±1, within-class deviations ±0.1.
    H = np.array([[0.9], [1.1], [-0.9], [-1.1]])
    y = np.array([0, 0, 1, 1])
    Sw, Sb = 0.01, 1.0  # (1/N) Σ dev² and (1/K) Σ (mean − global)²
    assert float(metrics.nc1(H, y, 2)) == pytest.approx(Sw / Sb / 2, rel=1e-12)
    assert float(metrics.nc1_trace(H, y, 2)) == pytest.approx(Sw / Sb, rel=1e-12)


def test_nc1_is_inf_when_class_means_coincide_but_features_vary():
    # both classes have mean (0, 0) and within-class spread: no separation at all, yet pinv(Sb = 0)
    # = 0 reported NC1 = 0, "perfect collapse"; the limit Sb -> 0 is inf, as tr(Sw)/tr(Sb)
    H = np.array([[1.0, 0.0], [-1.0, 0.0], [2.0, 1.0], [-2.0, -1.0]])
    y = np.array([0, 0, 1, 1])
    assert float(metrics.nc1(H, y, 2)) == np.inf and float(metrics.nc1_trace(H, y, 2)) == np.inf
    assert float(metrics.nc1(jnp.asarray(H), y, 2)) == np.inf
    assert float(metrics.nc1(np.zeros((4, 2)), y, 2)) == 0.0        # Sw = Sb = 0: collapsed to 0
    from ufm.metrics import streaming as st
    report = st.collapse_report(st.class_stats_update(st.class_stats_init(2, 2), H, y))
    assert report["nc1"] == np.inf and report["nc1_trace"] == np.inf


@pytest.mark.parametrize("K, d", [(3, 2), (4, 4), (6, 9)])
def test_etf_metrics_vanish_on_simplex_etf(K, d):
    W = simplex_etf(K, d, np.random.default_rng(0))
    H, y = _collapsed(W, 3)
    assert float(metrics.nc1(H, y, K)) < 1e-25
    for value in (metrics.etf_distance(W @ W.T), metrics.equinorm(W), metrics.equiangle(W, "etf"),
                  metrics.nc3_duality(W, H, y, "etf"), metrics.nc3_zhu(W, H, y, "etf"),
                  metrics.nc4(H, W, None, y)):
        assert float(value) < 1e-12


def test_of_metrics_vanish_on_orthogonal_frame():
    K, d = 4, 6
    W = orthogonal_frame(K, d, np.random.default_rng(1))
    H, y = _collapsed(W, 2)
    for value in (metrics.of_distance(W @ W.T), metrics.equiangle(W, "of"),
                  metrics.nc3_duality(W, H, y, "of"), metrics.nc3_zhu(W, H, y, "of")):
        assert float(value) < 1e-12
    # The OF is not an ETF (and vice versa): distance ‖I/√K − C/√(K−1)‖ computed by hand.
    expected = np.linalg.norm(np.eye(K) / np.sqrt(K) - centering(K) / np.sqrt(K - 1))
    assert float(metrics.etf_distance(np.eye(K))) == pytest.approx(expected, rel=1e-12)


def test_metrics_detect_perturbations():
    K, d, n = 5, 6, 4
    rng = np.random.default_rng(2)
    W = simplex_etf(K, d, rng)
    H, y = _collapsed(W, n)
    Hp = H + 0.05 * rng.standard_normal(H.shape)
    Wp = W + 0.05 * rng.standard_normal(W.shape)
    assert float(metrics.nc1(Hp, y, K)) > 1e-3
    assert float(metrics.etf_distance(Wp @ Wp.T)) > 1e-2
    assert float(metrics.equinorm(Wp)) > 1e-3
    assert float(metrics.equiangle(Wp, "etf")) > 1e-3
    assert float(metrics.nc3_duality(Wp, H, y, "etf")) > 1e-2
    assert float(metrics.nc3_zhu(Wp, H, y, "etf")) > 1e-2


def test_nc4_counts_disagreements():
    W = np.eye(2)
    H = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    y = np.array([0, 0, 1, 1])
    assert float(metrics.nc4(H, W, None, y)) == 0.0
    # A bias that flips every decision to class 0.
    assert float(metrics.nc4(H, W, np.array([5.0, 0.0]), y)) == 0.5


def test_bias_relation():
    W = np.eye(2)
    H = np.array([[1.0, 0.0], [0.0, 3.0]])
    y = np.array([0, 1])
    # μ_G = (0.5, 1.5); W μ_G + b = (0.5 + 1, 1.5 − 1)
    assert float(metrics.bias_relation(W, H, np.array([1.0, -1.0]), y)) == pytest.approx(np.hypot(1.5, 0.5))


def test_bad_geometry():
    with pytest.raises(ValueError, match="geometry"):
        metrics.equiangle(np.eye(3), "simplex")


def test_metrics_accept_numpy_and_jax():
    import jax.numpy as jnp

    W = simplex_etf(3, 3)
    H, y = _collapsed(W, 2)
    assert float(metrics.nc3_zhu(jnp.asarray(W), jnp.asarray(H), y, "etf")) == pytest.approx(
        float(metrics.nc3_zhu(W, H, y, "etf")), abs=1e-15)


@pytest.mark.parametrize("call, fragment", [
    (lambda H, W, y: metrics.nc4(H * np.nan, W, None, y), "H has non-finite"),
    (lambda H, W, y: metrics.nc4(H, np.full_like(W, np.inf), None, y), "W has non-finite"),
    (lambda H, W, y: metrics.nc1(H, y - 1, 3), r"labels\[0\] = -1"),
    (lambda H, W, y: metrics.nc1(H, np.where(y == 2, 3, y), 3), "out of range"),
    (lambda H, W, y: metrics.nc1(H, y, 1), "num_classes"),
    (lambda H, W, y: metrics.nc1(H, np.zeros_like(y), 3), "no sample of class 1"),
    (lambda H, W, y: metrics.nc1(H, y[:3], 3), "one entry per row"),
    (lambda H, W, y: metrics.nc1(H[0], y, 3), "2-D"),
    (lambda H, W, y: metrics.class_means(np.zeros((0, 3)), [], 3), "at least 1 row"),
    (lambda H, W, y: metrics.etf_distance(np.ones((2, 3))), "square"),
    (lambda H, W, y: metrics.of_distance(np.ones((1, 1))), "G must"),
    (lambda H, W, y: metrics.equinorm(W[:1]), "at least 2 row"),
    (lambda H, W, y: metrics.nc4(H, W, np.ones(2), y), "b must have 3 entries"),
    (lambda H, W, y: metrics.nc3_zhu(W[:, :2], H, y, "etf"), "H must have 2 columns"),
])
def test_bad_metric_inputs_name_the_argument(call, fragment):
    W = simplex_etf(3, 3)
    H, y = _collapsed(W, 2)
    with pytest.raises(ValueError, match=fragment):
        call(H, W, y)


def test_metrics_work_under_jit_on_tracers():
    import jax
    import jax.numpy as jnp

    W = simplex_etf(3, 3)
    H, y = _collapsed(W, 2)
    Hp = H + 0.1 * np.random.default_rng(0).standard_normal(H.shape)
    eager = float(metrics.nc1(Hp, y, 3))
    assert float(jax.jit(lambda H: metrics.nc1(H, y, 3))(jnp.asarray(Hp))) == pytest.approx(eager, rel=1e-10)
    traced_labels = jax.jit(lambda H, y: metrics.nc4(H, jnp.asarray(W), None, y))
    assert float(traced_labels(jnp.asarray(H), jnp.asarray(y))) == 0.0


def test_integer_and_float16_features_are_measured_without_overflow():
    """int8 features summed in int8 overflowed (class means of 67 and 67 came out −61) and a
    float16 Gram of entries ~ 300 had an infinite norm (ETF distance 1.0 for an exact ETF)."""
    y = np.repeat(np.arange(3), 2)
    H = np.array([[67, -35, -31], [67, -35, -31], [-33, 67, -35], [-34, 68, -35],
                  [-41, -35, 62], [-41, -35, 63]], dtype=np.int8)
    expected = np.array([H[y == k].astype(np.float64).mean(axis=0) for k in range(3)])
    for X in (H, H.astype(np.int64), H.astype(np.float16), jnp.asarray(H, jnp.bfloat16)):
        np.testing.assert_array_equal(np.asarray(metrics.class_means(X, y, 3)), expected)
        np.testing.assert_allclose(float(metrics.nc1(X, y, 3)), float(metrics.nc1(H.astype(float), y, 3)),
                                   rtol=1e-6)
    etf = 300.0 * (np.eye(3) - 1.0 / 3)  # an exact simplex-ETF Gram, representable in float16
    assert float(metrics.etf_distance(etf.astype(np.float16))) < 1e-3
    assert float(metrics.of_distance((300 * np.eye(3)).astype(np.float16))) < 1e-12
