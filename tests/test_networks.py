"""ufm.networks: the MLP's layer inputs, and that train() minimises mean loss + (wd/2)Σ‖θ‖²."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ufm import networks


@pytest.fixture(scope="module")
def setup():
    params = networks.mlp_init(jax.random.key(0), [4, 6, 5, 3])
    X = jax.random.normal(jax.random.key(1), (9, 4))
    y = jnp.arange(9) % 3
    return params, X, y


def test_layer_inputs_feed_the_last_layer(setup):
    params, X, _ = setup
    H = networks.layer_inputs(params, X)
    assert [h.shape for h in H] == [(9, 4), (9, 6), (9, 5)]
    np.testing.assert_array_equal(np.asarray(H[0]), np.asarray(X))
    assert all(float(jnp.min(h)) >= 0 for h in H[1:])  # post-ReLU
    out = H[-1] @ params[-1]["W"].T + params[-1]["b"][None, :]
    np.testing.assert_allclose(np.asarray(networks.mlp_apply(params, X)), np.asarray(out), rtol=1e-14)


def test_objective_by_hand(setup):
    params, X, y = setup
    Z = np.asarray(networks.mlp_apply(params, X))
    ce = np.log(np.exp(Z).sum(axis=1)) - Z[np.arange(9), np.asarray(y)]
    norm = sum(np.sum(np.asarray(v) ** 2) for layer in params for v in layer.values())
    value = float(networks.objective(params, X, y, "cross_entropy", 0.01))
    assert abs(value - (ce.mean() + 0.005 * norm)) < 1e-13


def test_train_takes_gradient_steps_of_the_regularised_objective(setup):
    # Two SGD steps of train() equal two explicit steps θ ← θ − η ∇(mean loss + (wd/2)‖θ‖²).
    params, X, y = setup
    lr, wd = 0.1, 0.03
    run = networks.train(params, X, y, "cross_entropy", optax.sgd(lr), num_steps=2, record_every=1,
                         weight_decay=wd)
    p = params
    grad = jax.jit(jax.grad(lambda q: networks.objective(q, X, y, "cross_entropy", wd)))
    for _ in range(2):
        p = jax.tree.map(lambda a, g: a - lr * g, p, grad(p))
    for a, b in zip(jax.tree.leaves(run.params), jax.tree.leaves(p)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)
    assert [s for s, _ in run.snapshots] == [0, 1, 2]
    value = jax.jit(lambda q: networks.objective(q, X, y, "cross_entropy", wd))
    expected = [float(value(q)) for _, q in run.snapshots]
    np.testing.assert_allclose(run.objective, expected, rtol=1e-12)


def test_mse_training_decreases_the_objective():
    params = networks.mlp_init(jax.random.key(2), [3, 8, 2])
    X = jax.random.normal(jax.random.key(3), (10, 3))
    Y = jnp.stack([X[:, 0], X[:, 1] * X[:, 2]], axis=1)
    # (optax.adam's bias correction mixes int32 and float: refused under the tests' strict promotion)
    run = networks.train(params, X, Y, "mse", optax.sgd(0.05, momentum=0.9), num_steps=100, record_every=50,
                         weight_decay=1e-3)
    assert run.objective[-1] < 0.5 * run.objective[0]
    half_sq = 0.5 * np.sum((np.asarray(networks.mlp_apply(run.params, X)) - np.asarray(Y)) ** 2, axis=1)
    assert abs(run.loss[-1] - half_sq.mean()) < 1e-12  # the library's MSE: ½‖z − y‖², mean


@pytest.mark.parametrize("kwargs, match", [
    (dict(loss="hinge"), "loss must be one of"),
    (dict(num_steps=5, record_every=2), "multiple of record_every"),
    (dict(weight_decay=-1.0), "weight_decay"),
    (dict(optimizer="sgd"), "optax.GradientTransformation"),
    (dict(targets=jnp.zeros((9, 3))), "integer labels"),
    (dict(loss="mse"), "mse targets"),
    (dict(targets=jnp.arange(9) % 3 + 1), r"labels in \[0, 3\)"),      # 3 is out of range: NaN loss
    (dict(targets=jnp.arange(9) % 3 - 1), r"labels in \[0, 3\)"),      # -1 wrapped to the last class
    (dict(X=jnp.full((9, 4), jnp.nan)), "X has non-finite"),
    (dict(loss="mse", targets=jnp.full((9, 3), jnp.nan)), "mse targets have non-finite"),
])
def test_train_bad_input(setup, kwargs, match):
    params, X, y = setup
    args = dict(X=X, targets=y, loss="cross_entropy", optimizer=optax.sgd(0.1), num_steps=2, record_every=1)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        networks.train(params, args.pop("X"), args.pop("targets"), args.pop("loss"), args.pop("optimizer"),
                       **args)


@pytest.mark.parametrize("loss, targets, wd, match", [
    ("ce", None, 0.1, "loss must be one of"),                  # was silently the MSE of the labels
    ("cross_entropy", None, float("nan"), "weight_decay"),     # was a NaN objective
    ("cross_entropy", None, -1.0, "weight_decay"),             # was a negative penalty
    ("cross_entropy", jnp.arange(9) % 3 + 5, 0.1, r"labels in \[0, 3\)"),
    ("mse", jnp.arange(9) % 3, 0.1, "mse targets"),
])
def test_objective_bad_input(setup, loss, targets, wd, match):
    params, X, y = setup
    with pytest.raises(ValueError, match=match):
        networks.objective(params, X, y if targets is None else targets, loss, wd)


def test_integer_inputs_keep_float_mse_targets():
    # integer X made train() cast the mse targets to X's integer dtype: targets in (0, 1) became 0
    params = networks.mlp_init(jax.random.key(4), [3, 2])
    X = np.array([[1, 2, 0], [0, 1, 3], [2, 2, 1], [1, 0, 0]])
    Y = np.array([[0.25, 0.5], [0.75, 0.125], [0.5, 0.5], [0.875, 0.25]])
    W, b = (np.asarray(params[0][k]) for k in ("W", "b"))
    expected = 0.5 * np.mean(np.sum((X @ W.T + b - Y) ** 2, axis=1))
    run = networks.train(params, X, Y, "mse", optax.sgd(0.0), num_steps=1, record_every=1)
    assert abs(run.loss[0] - expected) < 1e-13
    assert abs(float(networks.objective(params, X, Y, "mse", 0.0)) - expected) < 1e-13


def test_apply_bad_input(setup):
    params, X, _ = setup
    with pytest.raises(ValueError, match=r"X must be \[N, 4\]"):
        networks.layer_inputs(params, X[:, :3])
    with pytest.raises(ValueError, match="params must be a tuple of layers"):
        networks.mlp_apply({"W": 1}, X)


def test_init_bad_input():
    with pytest.raises(ValueError, match="at least two widths"):
        networks.mlp_init(jax.random.key(0), [4])
    with pytest.raises(ValueError, match=r"sizes\[1\]"):
        networks.mlp_init(jax.random.key(0), [4, 0])
    with pytest.raises(TypeError, match="key"):
        networks.mlp_init(0, [4, 2])


def test_init_keeps_the_requested_dtype():
    params = networks.mlp_init(jax.random.key(0), [3, 4, 2], dtype=jnp.float32)
    assert {str(x.dtype) for x in jax.tree.leaves(params)} == {"float32"}
    W = np.asarray(params[0]["W"], np.float64)
    assert 0.2 < np.std(W) * np.sqrt(3 / 2) < 3.0  # He scale √(2/d_in), loosely (12 draws)
