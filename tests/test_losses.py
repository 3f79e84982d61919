"""Losses against optax and hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ufm import losses


def test_mse_hand_value():
    z = jnp.array([[1.0, 2.0, -1.0]])
    y = jnp.array([[0.0, 1.0, 0.0]])
    assert float(losses.MSE()(z, y)[0]) == pytest.approx(0.5 * (1 + 1 + 1), abs=1e-15)


def test_cross_entropy_hand_value_and_optax():
    z = jnp.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    y = jnp.eye(3)[jnp.array([1, 2])]
    hand = [math.log(math.exp(1) + math.exp(2) + math.exp(0.5)) - 2.0, math.log(3.0)]
    np.testing.assert_allclose(losses.CrossEntropy()(z, y), hand, rtol=1e-14)
    np.testing.assert_allclose(losses.CrossEntropy()(z, y),
                               optax.softmax_cross_entropy_with_integer_labels(z, jnp.array([1, 2])),
                               rtol=1e-14)


def test_ce_family_reductions():
    z = jax.random.normal(jax.random.key(0), (7, 5))
    y = jnp.eye(5)[jnp.arange(7) % 5]
    ce = losses.CrossEntropy()(z, y)
    np.testing.assert_allclose(losses.LabelSmoothing(0.0)(z, y), ce, rtol=1e-14)
    np.testing.assert_allclose(losses.Focal(0.0)(z, y), ce, rtol=1e-14)


def test_focal_hand_value():
    z = jnp.array([[1.0, 2.0, 0.5]])
    y = jnp.array([[0.0, 1.0, 0.0]])
    p = math.exp(2) / (math.exp(1) + math.exp(2) + math.exp(0.5))
    assert float(losses.Focal(2.0)(z, y)[0]) == pytest.approx(-(1 - p) ** 2 * math.log(p), rel=1e-14)


def test_label_smoothing_hand_value():
    z = jnp.array([[1.0, 2.0, 0.5]])
    y = jnp.array([[0.0, 1.0, 0.0]])
    logp = np.log(np.exp([1.0, 2.0, 0.5]) / np.exp([1.0, 2.0, 0.5]).sum())
    alpha = 0.3
    target = (1 - alpha) * np.array([0, 1, 0]) + alpha / 3
    assert float(losses.LabelSmoothing(alpha)(z, y)[0]) == pytest.approx(-(target * logp).sum(), rel=1e-14)


def test_pick_all_label_hand_value():
    z = jnp.array([[1.0, 2.0, 0.5]])
    y = jnp.array([[1.0, 1.0, 0.0]])
    lse = math.log(math.exp(1) + math.exp(2) + math.exp(0.5))
    assert float(losses.PickAllLabel()(z, y)[0]) == pytest.approx(2 * lse - 3.0, rel=1e-14)
    assert float(losses.PickAllLabelNormalised()(z, y)[0]) == pytest.approx((2 * lse - 3.0) / 2, rel=1e-14)


@pytest.mark.parametrize("make, match", [
    (lambda: losses.LabelSmoothing(1.0), "alpha"),
    (lambda: losses.LabelSmoothing(-0.1), "alpha"),
    (lambda: losses.Focal(-1.0), "gamma"),
    (lambda: losses.Focal(float("nan")), "gamma"),
    (lambda: losses.Focal(None), "gamma"),
    (lambda: losses.Focal("2"), "gamma"),
    (lambda: losses.Focal(True), "gamma"),
    (lambda: losses.LabelSmoothing([0.1]), "alpha"),
    (lambda: losses.LabelSmoothing(0.1 + 0j), "alpha"),
    (lambda: losses.LabelSmoothing(np.full(3, 0.1)), "alpha"),
])
def test_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_loss_hyperparameters_are_leaves():
    leaves = jax.tree.leaves(losses.Focal(2.0))
    assert len(leaves) == 1 and float(leaves[0]) == 2.0


@pytest.mark.parametrize("loss", [losses.MSE(), losses.CrossEntropy(), losses.LabelSmoothing(0.2),
                                  losses.Focal(0.5), losses.Focal(2.0)])
def test_integer_labels_equal_one_hot_rows(loss):
    z = jnp.asarray(np.random.default_rng(0).standard_normal((5, 3)))
    y = jnp.asarray([0, 2, 1, 1, 0])
    np.testing.assert_allclose(loss(z, y), loss(z, jax.nn.one_hot(y, 3, dtype=z.dtype)), rtol=1e-13, atol=1e-15)


def test_hyperparameters_sweep_under_vmap_without_validation_errors():
    z = jnp.zeros((2, 3))
    y = jnp.asarray([0, 1])
    out = jax.vmap(lambda a: losses.LabelSmoothing(a)(z, y))(jnp.asarray([0.0, 0.5]))
    np.testing.assert_allclose(out, np.full((2, 2), np.log(3.0)), rtol=1e-13)  # uniform logits
