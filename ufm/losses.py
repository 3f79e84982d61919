"""Per-sample losses ``loss(outputs [N, K], targets) -> [N]``.

Single-label losses (MSE, CrossEntropy, LabelSmoothing, Focal) take integer labels [N] (the
problems pass these: no dense one-hot matrix is ever built) or dense target rows [N, K] (one-hot,
soft, or real-valued rows for MSE). The multi-label pick-all-label losses take multi-hot rows. Every loss is a frozen dataclass
registered as a pytree whose hyperparameters (``alpha``, ``gamma``) are array leaves, so a sweep
over them runs under ``jax.vmap`` without recompiling.

Examples:
    >>> import jax.numpy as jnp
    >>> from ufm.losses import CrossEntropy
    >>> float(CrossEntropy()(jnp.zeros((1, 4)), jnp.eye(4)[:1])[0])  # log 4
    1.386294...
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ufm._types import Array, ArrayLike, check_scalar, pytree_dataclass


def _is_labels(targets) -> bool:
    """Integer class labels [N] (as opposed to dense target rows [N, K])."""
    return jnp.issubdtype(jnp.asarray(targets).dtype, jnp.integer)


def _true_class(values: Array, labels: Array) -> Array:
    """values[i, labels[i]] without a one-hot matrix."""
    return jnp.take_along_axis(values, labels[..., None], axis=-1)[..., 0]


def _residual(outputs: Array, targets: Array) -> Array:
    if _is_labels(targets):
        return outputs - jax.nn.one_hot(targets, outputs.shape[-1], dtype=outputs.dtype)
    return outputs - targets


def _cross_entropy(outputs: Array, targets: Array) -> Array:
    if _is_labels(targets):
        return jax.nn.logsumexp(outputs, axis=-1) - _true_class(outputs, targets)
    return optax.softmax_cross_entropy(outputs, targets)


@pytree_dataclass
class MSE:
    """Squared error ½‖z − y‖² per sample (docs/theory/conventions.md: the fit term is (1/2N)‖WH + b1ᵀ − Y‖²)."""

    name = "mse"

    def __call__(self, outputs: Array, targets: Array) -> Array:
        return 0.5 * jnp.sum(_residual(outputs, targets) ** 2, axis=-1)


@pytree_dataclass
class CrossEntropy:
    """Softmax cross-entropy logsumexp(z) − z_y (labels), or optax's softmax_cross_entropy (rows)."""

    name = "ce"

    def __call__(self, outputs: Array, targets: Array) -> Array:
        return _cross_entropy(outputs, targets)


@pytree_dataclass
class LabelSmoothing:
    """Cross-entropy against smoothed targets (1 − α) y + α/K (optax's smooth_labels).

    Args:
        alpha: smoothing weight, 0 ≤ α < 1; α = 0 is cross-entropy.
    """

    alpha: ArrayLike = 0.1
    name = "ls"

    def __post_init__(self):
        check_scalar("alpha", self.alpha, low=0.0, high=1.0, allowed="in [0, 1)")

    def __call__(self, outputs: Array, targets: Array) -> Array:
        if _is_labels(targets):  # (1 − α) CE + α (logsumexp − mean z): no smoothed target matrix
            lse = jax.nn.logsumexp(outputs, axis=-1)
            return ((1 - self.alpha) * (lse - _true_class(outputs, targets))
                    + self.alpha * (lse - jnp.mean(outputs, axis=-1)))
        return optax.softmax_cross_entropy(outputs, optax.smooth_labels(targets, self.alpha))


@pytree_dataclass
class Focal:
    """Softmax focal loss −(1 − p_y)^γ log p_y on the true class (docs/theory/ce-family.md).

    Args:
        gamma: focusing parameter, γ ≥ 0; γ = 0 is cross-entropy.
    """

    gamma: ArrayLike = 2.0
    name = "fl"

    def __post_init__(self):
        check_scalar("gamma", self.gamma, low=0.0, allowed=">= 0", high=None)

    def __call__(self, outputs: Array, targets: Array) -> Array:
        log_softmax = jax.nn.log_softmax(outputs, axis=-1)
        log_p = (_true_class(log_softmax, targets) if _is_labels(targets)
                 else jnp.sum(targets * log_softmax, axis=-1))
        # (1 - p)^γ via -expm1(log p): accurate when p → 1, where the collapse happens.
        one_minus_p = -jnp.expm1(log_p)
        # Where log p rounds to 0 (margins ≳ 37 in float64, ≳ 17 in float32), d(x^γ)/dx at x = 0
        # is 0·inf = NaN for γ < 1; take x^γ = 0^γ there (1 at γ = 0) through a safe branch.
        positive = one_minus_p > 0
        weight = jnp.where(positive, jnp.power(jnp.where(positive, one_minus_p, 1.0), self.gamma),
                           jnp.where(self.gamma == 0, 1.0, 0.0))
        return -weight * log_p


@pytree_dataclass
class PickAllLabel:
    """Pick-all-label cross-entropy Σ_{k∈S} CE(z, k) = |S| logsumexp(z) − Σ_{k∈S} z_k (docs/theory/multilabel.md).

    Targets are multi-hot rows. The sum is *not* divided by |S|: that is :class:`PickAllLabelNormalised`.
    """

    name = "pal"

    def __call__(self, outputs: Array, targets: Array) -> Array:
        return optax.softmax_cross_entropy(outputs, targets)


@pytree_dataclass
class PickAllLabelNormalised:
    """Pick-all-label loss divided by the label-set size (PAL-N; no closed form in docs/theory/)."""

    name = "pal_normalised"

    def __call__(self, outputs: Array, targets: Array) -> Array:
        return optax.softmax_cross_entropy(outputs, targets) / jnp.sum(targets, axis=-1)


LOSSES = {cls.name: cls for cls in (MSE, CrossEntropy, LabelSmoothing, Focal, PickAllLabel,
                                     PickAllLabelNormalised)}
