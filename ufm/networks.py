"""A small multilayer perceptron and a full-batch optax training loop, to set a real network's
features against the unconstrained features model (docs/real-networks.md).

Parameters are a tuple of layers, each a dict ``{"W": [d_out, d_in], "b": [d_out]}`` (the library's
layout: a layer maps H [N, d_in] to H @ W.T + b). :func:`layer_inputs` returns the input of every
linear layer — the data, then each hidden layer's post-activation features; the last entry is the
penultimate features H that the UFM treats as free. :func:`train` runs full-batch steps of any
optax optimiser on the mean loss plus (wd/2)·Σ‖θ‖² over every weight and bias, so that a
converged run is a stationary point of the objective the UFM models, and returns snapshots of the
parameters every few steps.

Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> params = mlp_init(jax.random.key(0), [3, 8, 2])
    >>> X = jax.random.normal(jax.random.key(1), (6, 3)); y = jnp.array([0, 1, 0, 1, 0, 1])
    >>> [h.shape for h in layer_inputs(params, X)], mlp_apply(params, X).shape
    ([(6, 3), (6, 8)], (6, 2))
    >>> run = train(params, X, y, "cross_entropy", optax.sgd(0.1), num_steps=20, record_every=10,
    ...             weight_decay=1e-3)
    >>> [s for s, _ in run.snapshots], bool(run.objective[-1] < run.objective[0])
    ([0, 10, 20], True)
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ufm._types import Array, ArrayLike, check_int, check_scalar, is_concrete

LOSSES = ("cross_entropy", "mse")


def mlp_init(key, sizes: Sequence[int], *, dtype=None) -> tuple:
    """He-initialised MLP layers for widths ``sizes`` = [d_0, d_1, …, d_out], zero biases.

    W_l has i.i.d. N(0, 2/d_in) entries (He et al. 2015, the scale that keeps ReLU activations
    of order one through depth).

    Args:
        key: a JAX PRNG key.
        sizes: at least two positive widths, input first.
        dtype: float dtype of the parameters (default: JAX's default float).
    """
    if not isinstance(key, jax.Array):
        raise TypeError(f"key must be a JAX PRNG key (jax.random.key(seed)), got {key!r}")
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or len(sizes) < 2:
        raise ValueError(f"sizes must be a sequence of at least two widths [d_0, ..., d_out], got {sizes!r}")
    sizes = [check_int(f"sizes[{i}]", s, low=1) for i, s in enumerate(sizes)]
    dtype = jnp.asarray(0.0).dtype if dtype is None else dtype
    layers = []
    for k, (d_in, d_out) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:])):
        W = jax.random.normal(k, (d_out, d_in), dtype) * float(np.sqrt(2.0 / d_in))  # weak: keeps dtype
        layers.append({"W": W, "b": jnp.zeros((d_out,), dtype)})
    return tuple(layers)


def _check_inputs(params, X) -> Array:
    """X as a 2-D array with as many columns as the first layer takes, else ValueError."""
    try:
        d_in = params[0]["W"].shape[1]
    except (TypeError, KeyError, IndexError, AttributeError):
        raise ValueError("params must be a tuple of layers {'W': [d_out, d_in], 'b': [d_out]} "
                         "(from mlp_init)") from None
    X = jnp.asarray(X)
    if X.ndim != 2 or X.shape[1] != d_in:
        raise ValueError(f"X must be [N, {d_in}] (the first layer's input width), got shape {tuple(X.shape)}")
    if not jnp.issubdtype(X.dtype, jnp.floating):
        # integer (e.g. pixel) inputs: compute in the parameters' float dtype. Left as integers,
        # train() cast the mse targets to X's dtype too and trained on truncated targets.
        X = X.astype(params[0]["W"].dtype)
    return X


def _check_data(params, X, targets, loss: str, weight_decay) -> tuple:
    """Validate what :func:`train` and :func:`objective` share; returns (X, targets)."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    check_scalar("weight_decay", weight_decay, low=0.0, high=None, allowed="a real number >= 0")
    X = _check_inputs(params, X)
    targets = jnp.asarray(targets)
    if targets.ndim == 0 or targets.shape[0] != X.shape[0]:
        raise ValueError(f"X and targets need the same number of rows, got {X.shape} and {targets.shape}")
    d_out = params[-1]["W"].shape[0]
    if loss == "cross_entropy" and (targets.ndim != 1 or not jnp.issubdtype(targets.dtype, jnp.integer)):
        raise ValueError(f"cross_entropy targets must be integer labels [N], got {targets.dtype} {targets.shape}")
    if loss == "mse" and targets.shape != (X.shape[0], d_out):
        raise ValueError(f"mse targets must be [N, d_out] = {(X.shape[0], d_out)}, got {targets.shape}")
    # NumPy on the concrete arrays: inside a trace (objective under jit) jnp would stage them
    if is_concrete(X) and not np.all(np.isfinite(np.asarray(X))):
        raise ValueError("X has non-finite entries (NaN or inf): the loss would be NaN")
    if is_concrete(targets):
        if loss == "cross_entropy":
            lo, hi = int(np.min(np.asarray(targets))), int(np.max(np.asarray(targets)))
            if lo < 0 or hi >= d_out:
                # optax would give NaN (label >= d_out) or silently wrap (−1: the last class)
                raise ValueError(f"cross_entropy targets must be labels in [0, {d_out}) (the last "
                                 f"layer's width), got values in [{lo}, {hi}]")
        elif not np.all(np.isfinite(np.asarray(targets))):
            raise ValueError("mse targets have non-finite entries (NaN or inf): the loss would be NaN")
    if loss == "mse":
        targets = targets.astype(X.dtype)
    return X, targets


def _forward(params, X, activation):
    inputs = [X]
    H = X
    for i, layer in enumerate(params):
        Z = H @ layer["W"].T + layer["b"][None, :]
        if i == len(params) - 1:
            return inputs, Z
        H = activation(Z)
        inputs.append(H)


def mlp_apply(params, X: ArrayLike, activation: Callable = jax.nn.relu) -> Array:
    """Outputs [N, d_out] of the MLP (no activation after the last layer)."""
    return _forward(params, _check_inputs(params, X), activation)[1]


def layer_inputs(params, X: ArrayLike, activation: Callable = jax.nn.relu) -> list:
    """The input H_l [N, d_l] of every linear layer l: X, then each hidden post-activation.

    The last entry is the penultimate features H, with ``params[-1]["W"]`` the classifier (or
    regression head) W acting on it.
    """
    return _forward(params, _check_inputs(params, X), activation)[0]


def _sample_loss(loss: str, outputs, targets):
    if loss == "cross_entropy":
        return optax.softmax_cross_entropy_with_integer_labels(outputs, targets)
    return 0.5 * jnp.sum((outputs - targets) ** 2, axis=-1)  # the library's MSE: ½‖z − y‖²


def squared_norm(params) -> Array:
    """Σ‖θ‖² over every leaf (weights and biases)."""
    return sum(jnp.sum(x ** 2) for x in jax.tree.leaves(params))


def objective(params, X, targets, loss: str, weight_decay: float,
              activation: Callable = jax.nn.relu) -> Array:
    """mean_i ℓ(f(x_i), y_i) + (wd/2) Σ‖θ‖²: the objective :func:`train` minimises.

    Raises:
        ValueError: as :func:`train` for an unknown ``loss``, a ``weight_decay`` that is not a
            finite number >= 0, targets of the wrong shape, labels outside [0, d_out), non-finite
            inputs or targets.
    """
    X, targets = _check_data(params, X, targets, loss, weight_decay)
    out = _forward(params, X, activation)[1]
    return jnp.mean(_sample_loss(loss, out, targets)) + 0.5 * weight_decay * squared_norm(params)


class TrainRun(NamedTuple):
    """A training run: final parameters, snapshots (step, params) and the objective per snapshot."""

    params: tuple
    snapshots: list
    objective: np.ndarray
    loss: np.ndarray


def train(params, X: ArrayLike, targets: ArrayLike, loss: str, optimizer: optax.GradientTransformation,
          *, num_steps: int, record_every: int, weight_decay: float = 0.0,
          activation: Callable = jax.nn.relu) -> TrainRun:
    """Full-batch training of :func:`objective` with ``optimizer``; snapshots every ``record_every``.

    The weight decay is coupled (its gradient wd·θ enters the optimiser, as in
    ``optax.add_decayed_weights`` before the update), so every stationary point of the run is one
    of mean loss + (wd/2)Σ‖θ‖² whatever the optimiser (decoupled AdamW would change the objective).
    The steps between snapshots are one compiled ``lax.scan``.

    Args:
        params: from :func:`mlp_init`.
        X: inputs [N, d_0].
        targets: integer labels [N] (``loss="cross_entropy"``) or targets [N, d_out] (``"mse"``).
        loss: ``"cross_entropy"`` or ``"mse"`` (½‖z − y‖² per sample).
        optimizer: any optax transformation (e.g. ``optax.sgd(0.05, momentum=0.9)``).
        num_steps: total steps (a multiple of ``record_every``).
        record_every: steps between snapshots; snapshot 0 is the initial point.
        weight_decay: wd ≥ 0 on every weight and bias.
        activation: the hidden nonlinearity.

    Returns:
        :class:`TrainRun`.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    steps = check_int("num_steps", num_steps, low=1)
    every = check_int("record_every", record_every, low=1)
    if steps % every:
        raise ValueError(f"num_steps ({steps}) must be a multiple of record_every ({every})")
    check_scalar("weight_decay", weight_decay, low=0.0, high=None, allowed="a real number >= 0")
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax.GradientTransformation, got {optimizer!r}")
    X, targets = _check_data(params, X, targets, loss, weight_decay)
    wd = jnp.asarray(weight_decay, X.dtype)
    tx = optax.chain(optax.add_decayed_weights(wd), optimizer)
    data_loss = lambda p: jnp.mean(_sample_loss(loss, mlp_apply(p, X, activation), targets))

    def step(carry, _):
        p, state = carry
        grads = jax.grad(data_loss)(p)
        updates, state = tx.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), None

    @jax.jit
    def chunk(p, state):
        (p, state), _ = jax.lax.scan(step, (p, state), None, length=every)
        return p, state, data_loss(p)

    state = tx.init(params)
    snapshots, losses = [(0, params)], [float(data_loss(params))]
    for i in range(steps // every):
        params, state, value = chunk(params, state)
        snapshots.append(((i + 1) * every, params))
        losses.append(float(value))
    losses = np.asarray(losses)
    norms = np.asarray([float(squared_norm(p)) for _, p in snapshots])
    return TrainRun(params, snapshots, losses + 0.5 * float(weight_decay) * norms, losses)


__all__ = ["mlp_init", "mlp_apply", "layer_inputs", "objective", "squared_norm", "train", "TrainRun",
           "LOSSES"]
