"""Shared machinery of problem classes: pytree dataclasses and validation helpers."""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ufm._types import Array, check_scalar, default_float, derived_leaf, is_concrete, pytree_dataclass
from ufm.labels import counts_tuple, normalise_counts  # noqa: F401  (normalise_counts: re-exported)
from ufm.manifolds import Euclidean


def problem_dataclass(meta: Sequence[str]):
    """Frozen pytree dataclass of a problem (:func:`ufm._types.pytree_dataclass`). A problem
    with ``_build_targets`` carries its targets as a derived leaf: labels are an argument of
    every compiled solve, not a constant inside it."""
    def wrap(cls):
        return pytree_dataclass(cls, meta=meta, derived=("targets",) if hasattr(cls, "_build_targets") else ())

    return wrap


def check_bias(bias) -> None:
    """``bias`` must be a real bool (static: it changes the parameters' layout)."""
    if not isinstance(bias, (bool, np.bool_)):
        raise ValueError(f"bias must be True or False, got {bias!r}")


def check_loss(loss, supported: tuple, allowed: str) -> None:
    """``loss`` must be an instance of one of ``supported``; ``allowed`` describes them."""
    if not isinstance(loss, supported):
        raise ValueError(f"loss must be {allowed} from ufm.losses, got {loss!r}")


def check_decays(problem) -> None:
    """λ_W, λ_H, λ_b ≥ 0, and λ_b = 0 without a bias."""
    for name in ("lambda_W", "lambda_H", "lambda_b"):
        check_scalar(name, getattr(problem, name), low=0.0, high=None, allowed=">= 0")
    if not problem.bias and is_concrete(problem.lambda_b) and np.any(np.asarray(problem.lambda_b) != 0):
        raise ValueError(f"lambda_b must be 0 when bias=False, got {problem.lambda_b!r}")


def loss_config(loss) -> dict:
    """A loss as JSON: its name and hyperparameters (``{"name": "ls", "alpha": 0.1}``)."""
    return {"name": loss.name, **{k: to_float(v) for k, v in vars(loss).items()}}


def loss_from_config(spec) -> object:
    """The loss of a config's ``{"name": ..., hyperparameters...}`` entry (inverse of
    :func:`loss_config`)."""
    from ufm.losses import LOSSES

    if not isinstance(spec, dict) or spec.get("name") not in LOSSES:
        raise ValueError(f"config loss must be {{'name': one of {sorted(LOSSES)}, ...}}, got {spec!r}")
    return LOSSES[spec["name"]](**{k: v for k, v in spec.items() if k != "name"})


def to_float(x):
    """JSON-friendly version of a hyperparameter leaf."""
    arr = np.asarray(x)
    return float(arr) if arr.ndim == 0 else arr.tolist()


class ClassLabels:
    """Mixin: class-major single labels from ``num_classes`` and ``num_per_class`` fields."""

    @property
    def counts(self) -> tuple[int, ...]:
        """Per-class sample counts n_k."""
        return counts_tuple(self.num_classes, self.num_per_class)

    @property
    def num_samples(self) -> int:
        # balanced: K * n without a K-tuple (the memory guard must see an absurd K before it is built)
        return self.num_classes * self.num_per_class if self.balanced else sum(self.counts)

    @property
    def balanced(self) -> bool:
        return isinstance(self.num_per_class, int)

    @property
    def labels(self) -> np.ndarray:
        """Integer labels, class-major: ``repeat(arange(K), n_k)``."""
        return np.repeat(np.arange(self.num_classes), self.counts)

    @property
    def targets(self) -> Array:
        """Integer labels [N] (int32; no one-hot matrix): what the problem passes to its loss.

        They are a leaf of the problem: in a compiled solve (the problem an argument) they are an
        argument too. Where the problem is closed over instead (``jax.jit(problem.value)``), they
        are built in the graph from the static counts (an iota), never an N-sized constant.
        """
        leaf = self.__dict__.get("_derived_targets")
        if isinstance(leaf, jax.core.Tracer):
            return leaf
        K = self.num_classes
        counts = self.num_per_class if self.balanced else np.asarray(self.counts)
        return jnp.repeat(jnp.arange(K, dtype=jnp.int32), counts, total_repeat_length=self.num_samples)

    def _build_targets(self):
        return jnp.asarray(self.labels, dtype=jnp.int32)

    @property
    def one_hot(self) -> np.ndarray:
        """Dense one-hot targets [N, K] (NumPy; for metrics and plots, never the objective)."""
        return np.eye(self.num_classes)[self.labels]


class UFMParams(NamedTuple):
    """Parameters of the plain UFM: W [K, d], H [N, d] (sample-major), b [K] or None (no bias)."""

    W: Array
    H: Array
    b: Optional[Array]


class LinearClassifier:
    """Mixin: the two-factor objective mean_i ℓ(W h_i + b, y_i) + (λ_W/2)‖W‖² + (λ_H/2)‖H‖²
    + (λ_b/2)‖b‖² over Euclidean ``UFMParams``, for problems with ``targets``, ``num_samples``,
    ``num_classes``, ``dim``, ``bias``, ``loss`` and the three λ fields."""

    @property
    def manifold(self) -> Euclidean:
        return Euclidean()

    def step_scale(self, params: UFMParams) -> UFMParams:
        """Per-block step multipliers: N on H, whose gradient carries the 1/N of the mean loss."""
        return UFMParams(1.0, float(self.num_samples), None if params.b is None else 1.0)

    def init(self, key: Array, scale: float = 0.5) -> UFMParams:
        """Gaussian initialisation with standard deviation ``scale`` (b starts at 0)."""
        kw, kh = jax.random.split(key)
        dtype = default_float()
        W = scale * jax.random.normal(kw, (self.num_classes, self.dim), dtype)
        H = scale * jax.random.normal(kh, (self.num_samples, self.dim), dtype)
        return UFMParams(W, H, jnp.zeros(self.num_classes, dtype) if self.bias else None)

    def params(self, W, H, b=None) -> UFMParams:
        """Wrap arrays (e.g. ``prediction.construct()``) as parameters of this problem."""
        dtype = default_float()
        return UFMParams(jnp.asarray(W, dtype), jnp.asarray(H, dtype),
                         jnp.asarray(b, dtype) if self.bias else None)

    def outputs(self, params: UFMParams) -> Array:
        """Logits / outputs H Wᵀ + b, shape [N, K]."""
        z = jnp.matmul(params.H, params.W.T, precision="highest")
        return z if params.b is None else z + params.b[None, :]

    def value(self, params: UFMParams) -> Array:
        """The objective F(W, H, b) in the library normalisation."""
        fit = jnp.mean(self.loss(self.outputs(params), self.targets))
        reg = self.lambda_W * jnp.sum(params.W ** 2) + self.lambda_H * jnp.sum(params.H ** 2)
        if params.b is not None:
            reg = reg + self.lambda_b * jnp.sum(params.b ** 2)
        return fit + 0.5 * reg
