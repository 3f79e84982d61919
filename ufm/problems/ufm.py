"""The plain unconstrained features model (docs/theory/mse.md, ce-family.md)."""

from __future__ import annotations

from typing import Mapping

from ufm import theory
from ufm._types import ArrayLike, check_fits_in_memory, check_int
from ufm.losses import CrossEntropy, Focal, LabelSmoothing, MSE
from ufm.problems._base import (ClassLabels, LinearClassifier, check_bias, check_decays, check_loss,
                                loss_from_config, normalise_counts, problem_dataclass,
                                to_float)
from ufm.problems._base import UFMParams  # noqa: F401  (re-exported: the plain UFM's parameters)

_SUPPORTED_LOSSES = (MSE, CrossEntropy, LabelSmoothing, Focal)


@problem_dataclass(meta=("num_classes", "num_per_class", "dim", "bias"))
class UFM(ClassLabels, LinearClassifier):
    """Plain UFM: F = mean_i ℓ(W h_i + b, y_i) + (λ_W/2)‖W‖² + (λ_H/2)‖H‖² + (λ_b/2)‖b‖².

    Labels are class-major (``repeat(arange(K), n_k)``); the H penalty is a sum over samples
    (Zhu et al. 2021 normalisation, docs/theory/conventions.md).

    Args:
        num_classes: K ≥ 2.
        num_per_class: n ≥ 1, or a sequence of K per-class counts (imbalanced data).
        dim: feature dimension d ≥ 1.
        loss: a per-sample loss from :mod:`ufm.losses` (MSE, CrossEntropy, LabelSmoothing, Focal).
        lambda_W, lambda_H: weight decays ≥ 0 (array leaves: sweep them under ``vmap``).
        lambda_b: bias decay ≥ 0 (0: unregularised bias). Must be 0 when ``bias`` is False.
        bias: whether the model has a bias b.

    Examples:
        >>> import jax, ufm
        >>> p = ufm.UFM(3, 2, 3, ufm.losses.MSE(), 1e-2, 1e-2)
        >>> params = p.init(jax.random.key(0))
        >>> params.W.shape, params.H.shape, params.b.shape
        ((3, 3), (6, 3), (3,))
    """

    num_classes: int
    num_per_class: int | tuple
    dim: int
    loss: object
    lambda_W: ArrayLike
    lambda_H: ArrayLike
    lambda_b: ArrayLike = 0.0
    bias: bool = True

    def __post_init__(self):
        object.__setattr__(self, "num_per_class", normalise_counts(self.num_classes, self.num_per_class))
        check_int("dim", self.dim, low=1)
        check_bias(self.bias)
        check_loss(self.loss, _SUPPORTED_LOSSES, "one of MSE(), CrossEntropy(), LabelSmoothing(alpha), Focal(gamma)")
        check_decays(self)
        K, N, d = self.num_classes, self.num_samples, self.dim
        # parameters W, H, b and the [N, K] outputs (labels are built in the graph, not stored)
        check_fits_in_memory(f"UFM(num_classes={K}, N={N}, dim={d})", K * d + N * d + K + N * K)

    @classmethod
    def from_config(cls, config: Mapping) -> "UFM":
        """The problem whose :meth:`config` is ``config`` (the exact inverse; JSON round trips too).

        Examples:
            >>> import ufm
            >>> p = ufm.UFM(3, (2, 1, 1), 4, ufm.losses.Focal(2.0), 1e-2, 2e-2)
            >>> ufm.UFM.from_config(p.config()) == p
            True
        """
        cfg = _check_config(config, "ufm", ("num_classes", "num_per_class", "dim", "loss", "lambda_W",
                                            "lambda_H", "lambda_b", "bias"))
        counts = cfg["num_per_class"]
        return cls(cfg["num_classes"], tuple(counts) if isinstance(counts, list) else counts, cfg["dim"],
                   loss_from_config(cfg["loss"]), cfg["lambda_W"], cfg["lambda_H"],
                   lambda_b=cfg["lambda_b"], bias=cfg["bias"])

    @property
    def reference_geometry(self) -> str:
        """Frame of the NC metrics (docs/theory/metrics.md): 'of' for bias-free MSE, else 'etf'."""
        return "of" if isinstance(self.loss, MSE) and not self.bias else "etf"

    def config(self) -> dict:
        """All parameters, JSON-friendly."""
        loss = {"name": self.loss.name, **{k: to_float(v) for k, v in vars(self.loss).items()}}
        return dict(model="ufm", num_classes=self.num_classes, num_per_class=self.num_per_class,
                    dim=self.dim, loss=loss, lambda_W=to_float(self.lambda_W),
                    lambda_H=to_float(self.lambda_H), lambda_b=to_float(self.lambda_b), bias=self.bias)


def _check_config(config, model: str, keys: tuple) -> Mapping:
    """``config`` must be a mapping of ``model`` holding ``keys`` (ValueError naming what is wrong)."""
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a mapping (as returned by config()), got {type(config).__name__}")
    if config.get("model") != model:
        raise ValueError(f"config describes model {config.get('model')!r}, expected {model!r}")
    missing = [k for k in keys if k not in config]
    if missing:
        raise ValueError(f"config of model {model!r} lacks {missing}")
    return config


@theory.predict.register(UFM)
def _predict_ufm(problem: UFM) -> theory.Prediction:
    loss = problem.loss
    return theory.plain.predict_plain(
        counts=problem.counts, dim=problem.dim, loss=loss.name,
        lambda_W=float(problem.lambda_W), lambda_H=float(problem.lambda_H),
        lambda_b=float(problem.lambda_b), bias=problem.bias,
        alpha=float(getattr(loss, "alpha", 0.0)), gamma=float(getattr(loss, "gamma", 0.0)))


@theory.threshold.register(UFM)
def _threshold_ufm(problem: UFM) -> float:
    """P* of P = λ_W λ_H: the minimiser is non-zero iff P < P* (:func:`ufm.theory.plain.threshold_plain`)."""
    loss = problem.loss
    return theory.plain.threshold_plain(
        counts=problem.counts, dim=problem.dim, loss=loss.name, bias=problem.bias,
        lambda_b=float(problem.lambda_b), alpha=float(getattr(loss, "alpha", 0.0)),
        gamma=float(getattr(loss, "gamma", 0.0)))
