"""The plain unconstrained features model (THEORY.md §1-§3)."""

from __future__ import annotations

from ufm import theory
from ufm._types import ArrayLike, check_int
from ufm.losses import CrossEntropy, Focal, LabelSmoothing, MSE
from ufm.problems._base import (ClassLabels, LinearClassifier, check_bias, check_decays, check_loss,
                                normalise_counts, problem_dataclass, to_float)
from ufm.problems._base import UFMParams  # noqa: F401  (re-exported: the plain UFM's parameters)

_SUPPORTED_LOSSES = (MSE, CrossEntropy, LabelSmoothing, Focal)


@problem_dataclass(meta=("num_classes", "num_per_class", "dim", "bias"))
class UFM(ClassLabels, LinearClassifier):
    """Plain UFM: F = mean_i ℓ(W h_i + b, y_i) + (λ_W/2)‖W‖² + (λ_H/2)‖H‖² + (λ_b/2)‖b‖².

    Labels are class-major (``repeat(arange(K), n_k)``); the H penalty is a sum over samples
    (Zhu et al. 2021 normalisation, THEORY.md §0).

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

    @property
    def reference_geometry(self) -> str:
        """Frame of the NC metrics (THEORY.md §11): 'of' for bias-free MSE, else 'etf'."""
        return "of" if isinstance(self.loss, MSE) and not self.bias else "etf"

    def config(self) -> dict:
        """All parameters, JSON-friendly."""
        loss = {"name": self.loss.name, **{k: to_float(v) for k, v in vars(self.loss).items()}}
        return dict(model="ufm", num_classes=self.num_classes, num_per_class=self.num_per_class,
                    dim=self.dim, loss=loss, lambda_W=to_float(self.lambda_W),
                    lambda_H=to_float(self.lambda_H), lambda_b=to_float(self.lambda_b), bias=self.bias)


@theory.predict.register(UFM)
def _predict_ufm(problem: UFM) -> theory.Prediction:
    loss = problem.loss
    return theory.plain.predict_plain(
        counts=problem.counts, dim=problem.dim, loss=loss.name,
        lambda_W=float(problem.lambda_W), lambda_H=float(problem.lambda_H),
        lambda_b=float(problem.lambda_b), bias=problem.bias,
        alpha=float(getattr(loss, "alpha", 0.0)), gamma=float(getattr(loss, "gamma", 0.0)))
