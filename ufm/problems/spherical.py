"""The spherical UFM: classifier rows and features on spheres, logits divided by a temperature
(docs/theory/spherical.md; Yaras et al., NeurIPS 2022)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ufm import theory
from ufm._types import Array, ArrayLike, check_fits_in_memory, check_int, check_scalar, default_float
from ufm.losses import CrossEntropy, Focal, LabelSmoothing
from ufm.manifolds import Euclidean, Oblique, Product
from ufm.problems._base import (ClassLabels, check_bias, check_loss, loss_config, loss_from_config,
                                normalise_counts, problem_dataclass, to_float)

_SUPPORTED_LOSSES = (CrossEntropy, LabelSmoothing, Focal)


class SphericalParams(NamedTuple):
    """Parameters of the spherical UFM: W [K, d] (rows of norm r_W), H [N, d] (rows of norm r_H),
    b [K] (Euclidean, unregularised) or None."""

    W: Array
    H: Array
    b: Optional[Array]


@problem_dataclass(meta=("num_classes", "num_per_class", "dim", "bias"))
class SphericalUFM(ClassLabels):
    """Spherical UFM: F = mean_i ℓ(W h_i / T + b, y_i) s.t. ‖w_k‖ = r_W, ‖h_i‖ = r_H.

    No weight decay. The parameters live on ``manifold`` = Oblique(r_W) × Oblique(r_H)
    (× Euclidean for the bias), so solve it with a Riemannian solver (GradientDescent, Adam,
    :class:`ufm.solvers.RiemannianGradientDescent`, :class:`ufm.solvers.TrustRegion`); L-BFGS is
    Euclidean and refuses it. The problem depends on (r_W, r_H, T) only through the inverse
    temperature s = r_W r_H / T.

    Convention:
        Yaras et al. (2022) write CE(Wᵀh/τ) with unit columns of W ∈ ℝ^{d×K}: here W is [K, d]
        (rows), features are sample-major H [N, d], the radii are r_W, r_H and T = τ. Their
        repository's ``tau`` *multiplies* the logits: code-tau = 1/T.

    Args:
        num_classes: K ≥ 2.
        num_per_class: n ≥ 1, or K per-class counts (no closed form when imbalanced).
        dim: feature dimension d ≥ 2.
        loss: CrossEntropy(), LabelSmoothing(alpha) or Focal(gamma) (closed form for CE only).
        radius_W, radius_H: row norms r_W, r_H > 0 (array leaves).
        temperature: T > 0; logits are H Wᵀ / T (+ b).
        bias: add an unregularised Euclidean bias b [K]. Default False: Yaras et al.'s model has
            no bias (the one documented exception to the library's ``bias=True`` default).

    There is no weight decay, hence no threshold: ``ufm.theory.threshold`` raises NoClosedForm.

    Examples:
        >>> import jax, ufm
        >>> p = ufm.SphericalUFM(3, 2, 4, ufm.losses.CrossEntropy(), temperature=0.5)
        >>> x = p.init(jax.random.key(0))
        >>> [round(float(v), 12) for v in jax.numpy.linalg.norm(x.W, axis=1)]
        [1.0, 1.0, 1.0]
    """

    num_classes: int
    num_per_class: int | tuple
    dim: int
    loss: object
    radius_W: ArrayLike = 1.0
    radius_H: ArrayLike = 1.0
    temperature: ArrayLike = 1.0
    bias: bool = False

    def __post_init__(self):
        object.__setattr__(self, "num_per_class", normalise_counts(self.num_classes, self.num_per_class))
        check_int("dim", self.dim, low=2)
        check_bias(self.bias)
        check_loss(self.loss, _SUPPORTED_LOSSES, "one of CrossEntropy(), LabelSmoothing(alpha), Focal(gamma)")
        for name in ("radius_W", "radius_H", "temperature"):
            check_scalar(name, getattr(self, name), low=0.0, low_open=True, high=None, allowed="> 0")
        K, N, d = self.num_classes, self.num_samples, self.dim
        check_fits_in_memory(f"SphericalUFM(K={K}, N={N}, d={d})", (K + N) * d + K + 2 * N * K)

    @classmethod
    def from_config(cls, config: dict) -> "SphericalUFM":
        """The problem whose :meth:`config` is ``config`` (the exact inverse of ``config()``).

        Examples:
            >>> import ufm
            >>> p = ufm.SphericalUFM(3, 2, 4, ufm.losses.Focal(1.0), radius_H=2.0, temperature=0.5)
            >>> ufm.SphericalUFM.from_config(p.config()).config() == p.config()
            True
        """
        if not isinstance(config, dict) or config.get("model") != "spherical":
            raise ValueError(f"config must be a SphericalUFM config (model='spherical'), got {config!r}")
        counts = config["num_per_class"]
        return cls(config["num_classes"], tuple(counts) if isinstance(counts, list) else counts,
                   config["dim"], loss_from_config(config["loss"]), radius_W=config["radius_W"],
                   radius_H=config["radius_H"], temperature=config["temperature"], bias=config["bias"])

    # ---- sizes and data -------------------------------------------------------------------
    @property
    def inverse_temperature(self):
        """s = r_W r_H / T, the only combination the problem depends on."""
        return self.radius_W * self.radius_H / self.temperature

    @property
    def manifold(self) -> Product:
        """Oblique(r_W) for W, Oblique(r_H) for H, Euclidean (or None) for b."""
        return Product(SphericalParams(Oblique(self.radius_W), Oblique(self.radius_H),
                                       Euclidean() if self.bias else None))

    @property
    def reference_geometry(self) -> str:
        """Frame of the NC metrics (docs/theory/metrics.md): the simplex ETF."""
        return "etf"

    def step_scale(self, params: SphericalParams) -> SphericalParams:
        """Per-block step multipliers: N on H, whose gradient carries the 1/N of the mean loss
        (docs/theory/spherical.md: a constant rescaling of the metric)."""
        return SphericalParams(1.0, float(self.num_samples), None if params.b is None else 1.0)

    # ---- parameters ------------------------------------------------------------------------
    def init(self, key: Array, scale: float = 1.0) -> SphericalParams:
        """Uniformly random rows on the spheres (b starts at 0).

        ``scale`` is accepted for interface compatibility with the other problems and ignored:
        the radii fix the size of every row.
        """
        del scale
        kw, kh = jax.random.split(key)
        dtype = default_float()
        W = jax.random.normal(kw, (self.num_classes, self.dim), dtype)
        H = jax.random.normal(kh, (self.num_samples, self.dim), dtype)
        b = jnp.zeros(self.num_classes, dtype) if self.bias else None
        return self.manifold.projection_to_manifold(SphericalParams(W, H, b))

    def params(self, W, H, b=None) -> SphericalParams:
        """Wrap arrays (e.g. ``prediction.construct()``) as parameters; they are not projected."""
        dtype = default_float()
        bb = None
        if self.bias:
            bb = jnp.zeros(self.num_classes, dtype) if b is None else jnp.asarray(b, dtype)
        return SphericalParams(jnp.asarray(W, dtype), jnp.asarray(H, dtype), bb)

    # ---- objective ---------------------------------------------------------------------------
    def outputs(self, params: SphericalParams) -> Array:
        """Logits H Wᵀ / T + b, shape [N, K]."""
        z = jnp.matmul(params.H, params.W.T, precision="highest") / self.temperature
        return z if params.b is None else z + params.b[None, :]

    def value(self, params: SphericalParams) -> Array:
        """The objective: the mean loss of the logits (no regulariser)."""
        return jnp.mean(self.loss(self.outputs(params), self.targets))

    def config(self) -> dict:
        """All parameters, JSON-friendly."""
        return dict(model="spherical", num_classes=self.num_classes,
                    num_per_class=self.num_per_class, dim=self.dim, loss=loss_config(self.loss),
                    radius_W=to_float(self.radius_W), radius_H=to_float(self.radius_H),
                    temperature=to_float(self.temperature), bias=self.bias)


@theory.predict.register(SphericalUFM)
def _predict_spherical(problem: SphericalUFM) -> theory.Prediction:
    if problem.loss.name != "ce":
        raise theory.NoClosedForm(
            f"spherical UFM with loss {problem.loss.name!r}: no theorem; docs/theory/spherical.md (Yaras et al. "
            "2022) covers cross-entropy only")
    if not problem.balanced:
        raise theory.NoClosedForm("spherical UFM with imbalanced classes: no closed form in docs/theory/spherical.md")
    return theory.spherical.predict_spherical(
        num_classes=problem.num_classes, num_per_class=problem.num_per_class, dim=problem.dim,
        radius_W=float(problem.radius_W), radius_H=float(problem.radius_H),
        temperature=float(problem.temperature), bias=problem.bias)


@theory.threshold.register(SphericalUFM)
def _threshold_spherical(problem: SphericalUFM) -> float:
    """Always ``NoClosedForm``: the spherical UFM has no weight decay, hence no threshold (its
    minimiser is the ETF at every inverse temperature s > 0, docs/theory/spherical.md)."""
    raise theory.NoClosedForm("the spherical UFM has no weight decay and no threshold: the "
                              "minimiser is a simplex ETF at every inverse temperature s > 0")
