"""Deep unconstrained features models: deep linear, extended (two-layer ReLU) and ReLU DUFM
(docs/theory/deep.md).

Free features H_1 [N, d_1] are followed by L weight layers W_l [d_{l+1}, d_l] (d_{L+1} = K). In the
sample-major layout of the code, H_{l+1} = σ(H_l @ W_l.T) for l < L and the outputs are
H_L @ W_L.T (+ b). The last layer is always linear. docs/theory/deep.md writes the same model in the papers'
d×N notation, H_{l+1} = σ(W_l H_l).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ufm import theory
from ufm._types import (Array, ArrayLike, check_fits_in_memory, check_int, check_scalar, default_float,
                        is_concrete)
from ufm.losses import CrossEntropy, Focal, LabelSmoothing, MSE
from ufm.manifolds import Euclidean
from ufm.problems._base import (ClassLabels, loss_config, loss_from_config, check_bias, check_loss, normalise_counts,
                                problem_dataclass, to_float)

_ACTIVATIONS = ("relu", "identity")
_SUPPORTED_LOSSES = (MSE, CrossEntropy, LabelSmoothing, Focal)


def _layer_decays(lambda_W, depth: int):
    """λ_W as one decay per layer, shape [depth]: a scalar broadcasts (NumPy for numbers; traced
    values, as in a vmapped sweep, pass unchanged and are validated where they were built)."""
    if isinstance(lambda_W, (tuple, list)):
        for i, x in enumerate(lambda_W):
            check_scalar(f"lambda_W[{i}]", x, low=0.0, high=None, allowed=">= 0")
        lambda_W = np.asarray(lambda_W, dtype=np.float64)
    check_scalar("lambda_W", lambda_W, low=0.0, high=None, allowed=">= 0 (a scalar or one per layer)",
                 shape=None)
    if not is_concrete(lambda_W):
        return lambda_W
    shape = np.shape(lambda_W)
    if shape == ():
        if isinstance(lambda_W, jax.Array):
            return jnp.broadcast_to(lambda_W, (depth,))
        return np.full(depth, float(lambda_W))
    if len(shape) != 1 or shape[0] != depth:
        raise ValueError(f"lambda_W must be a scalar or hold one decay per weight layer (shape "
                         f"({depth},) for depth L={depth}), got shape {shape}")
    return lambda_W


class DeepParams(NamedTuple):
    """Parameters of :class:`DeepUFM`: H [N, d_1], Ws = (W_1 [d_2, d_1], ..., W_L [K, d_L]), b [K]
    or None (no bias)."""

    H: Array
    Ws: tuple
    b: Optional[Array]


def _activation(name: str):
    return jax.nn.relu if name == "relu" else (lambda x: x)


@problem_dataclass(meta=("num_classes", "num_per_class", "widths", "bias", "activation"))
class DeepUFM(ClassLabels):
    """Deep UFM: F = mean_i ℓ(W_L σ(⋯σ(W_1 h_i)) + b, y_i) + (λ_H/2)‖H_1‖² + Σ_l (λ_l/2)‖W_l‖²
    + (λ_b/2)‖b‖².

    The library normalisation (docs/theory/conventions.md): the loss is a mean over samples, the H_1 penalty a
    sum over samples, every weight matrix has its own λ_l. ``activation="identity"`` is the deep
    linear UFM (Dang et al. 2023); ``"relu"`` is the DUFM (Súkeník et al. 2023), and with two layers
    Tirer & Bruna's extended UFM (see :meth:`extended`). Labels are class-major. Every loss of the
    family (MSE, CrossEntropy, LabelSmoothing, Focal) solves with either activation at any depth;
    ``ufm.theory.predict`` refuses where no theorem applies.

    Static fields (a change recompiles): ``num_classes``, ``num_per_class``, ``widths``,
    ``bias``, ``activation``; the depth is ``len(widths)``. Leaves (sweep them under ``vmap``):
    ``loss``, ``lambda_W`` (one array of shape [L]), ``lambda_H`` and ``lambda_b``.

    Args:
        num_classes: K ≥ 2.
        num_per_class: n ≥ 1, or a sequence of K per-class counts (imbalanced data).
        widths: (d_1, ..., d_L), the input width of each weight layer (d_1 is the feature
            dimension); W_l has shape [d_{l+1}, d_l] with d_{L+1} = K. Depth L = len(widths) ≥ 1.
        loss: MSE(), CrossEntropy(), LabelSmoothing(alpha) or Focal(gamma) from :mod:`ufm.losses`.
        lambda_W: the weight decays (λ_1, ..., λ_L) ≥ 0, one per weight layer; a scalar is used
            for every layer. Stored as an array leaf of shape [L].
        lambda_H: decay of the free features H_1, ≥ 0.
        lambda_b: bias decay ≥ 0 (0: a free bias). Must be 0 when ``bias`` is False.
        bias: a last-layer bias b [K].
        activation: keyword-only, ``"relu"`` (default) or ``"identity"`` between layers (the last
            layer is linear).

    Closed forms: ``ufm.theory.predict(problem)`` (docs/theory/deep.md; see :mod:`ufm.theory.deep`)
    refuses with ``NoClosedForm`` where no theorem applies; :meth:`dnc_candidate` gives the
    collapsed configuration there (an upper bound on F*). The landscape has spurious minima for
    L ≥ 2: solve with :func:`ufm.sweep.multi_start` (init scales 0.5-2) and keep the best run.

    Examples:
        >>> import jax, ufm
        >>> p = ufm.DeepUFM(3, 2, (4, 5), ufm.losses.MSE(), (1e-3, 2e-3), 1e-3, bias=False)
        >>> params = p.init(jax.random.key(0))
        >>> params.H.shape, [W.shape for W in params.Ws], params.b
        ((6, 4), [(5, 4), (3, 5)], None)
        >>> ufm.DeepUFM(3, 2, (4, 5, 6), ufm.losses.CrossEntropy(), 1e-3, 1e-3).lambda_W.tolist()
        [0.001, 0.001, 0.001]
    """

    num_classes: int
    num_per_class: int | tuple
    widths: tuple
    loss: object
    lambda_W: ArrayLike
    lambda_H: ArrayLike
    lambda_b: ArrayLike = 0.0
    bias: bool = True
    _: dataclasses.KW_ONLY
    activation: str = "relu"

    def __post_init__(self):
        object.__setattr__(self, "num_per_class", normalise_counts(self.num_classes, self.num_per_class))
        widths = self.widths
        if isinstance(widths, (int, np.integer)) and not isinstance(widths, (bool, np.bool_)):
            widths = (int(widths),)
        if not isinstance(widths, (tuple, list)) or len(widths) < 1:
            raise ValueError(f"widths must be a non-empty sequence (d_1, ..., d_L) of integers >= 1 "
                             f"(depth L >= 1), got {self.widths!r}")
        widths = tuple(check_int(f"widths[{i}]", int(w) if isinstance(w, np.integer) else w, low=1)
                       for i, w in enumerate(widths))
        object.__setattr__(self, "widths", widths)
        if not isinstance(self.activation, str) or self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {self.activation!r}")
        check_bias(self.bias)
        check_loss(self.loss, _SUPPORTED_LOSSES,
                   "one of MSE(), CrossEntropy(), LabelSmoothing(alpha), Focal(gamma)")
        object.__setattr__(self, "lambda_W", _layer_decays(self.lambda_W, len(widths)))
        check_scalar("lambda_H", self.lambda_H, low=0.0, high=None, allowed=">= 0")
        check_scalar("lambda_b", self.lambda_b, low=0.0, high=None, allowed=">= 0")
        if not self.bias and is_concrete(self.lambda_b) and np.any(np.asarray(self.lambda_b) != 0):
            raise ValueError(f"lambda_b must be 0 when bias=False, got {self.lambda_b!r}")
        K, N = self.num_classes, self.num_samples
        dims = widths + (K,)
        check_fits_in_memory(f"DeepUFM(K={K}, N={N}, widths={widths})",
                             N * sum(widths) + sum(dims[l] * dims[l + 1] for l in range(len(widths)))
                             + 2 * N * K)

    @property
    def smooth(self) -> bool:
        """Whether F is twice differentiable everywhere: False with a ReLU between layers (F is
        piecewise smooth, with kinks where a hidden unit's input is 0); ``ufm.solvers.default_solver``
        then picks L-BFGS, because a trust region's quadratic model is wrong across a kink."""
        return self.activation == "identity" or len(self.widths) == 1

    @classmethod
    def extended(cls, num_classes: int, num_per_class, dim: int, dim_hidden: int, loss,
                 lambda_W: ArrayLike, lambda_H: ArrayLike, lambda_b: ArrayLike = 0.0,
                 bias: bool = True, *, activation: str = "relu") -> "DeepUFM":
        """Tirer & Bruna's extended UFM W₂ σ(W₁ H₁) (ICML 2022): two layers, ReLU by default.

        Args:
            dim: d_1, the width of the free features H₁.
            dim_hidden: d_2, the width of σ(W₁H₁); W₁ is [d_2, d_1] and W₂ is [K, d_2].
            lambda_W: λ_1 (of W₁) and λ_2 (of W₂) as a pair, or one scalar for both (the paper's
                λ_{W₁}, λ_{W₂}; same normalisation, docs/theory/conventions.md).
            loss, lambda_H, lambda_b, bias, activation: as in :class:`DeepUFM`.

        Examples:
            >>> import ufm
            >>> p = ufm.DeepUFM.extended(3, 4, 5, 6, ufm.losses.MSE(), (2e-3, 3e-3), 1e-3, bias=False)
            >>> p.depth, p.widths, p.activation, p.lambda_W.tolist()
            (2, (5, 6), 'relu', [0.002, 0.003])
        """
        check_int("dim", dim, low=1)
        check_int("dim_hidden", dim_hidden, low=1)
        return cls(num_classes, num_per_class, (dim, dim_hidden), loss, lambda_W, lambda_H,
                   lambda_b, bias, activation=activation)

    @classmethod
    def from_config(cls, config: dict) -> "DeepUFM":
        """The problem whose :meth:`config` is ``config`` (the exact inverse of ``config()``).

        Examples:
            >>> import ufm
            >>> p = ufm.DeepUFM(3, 2, (4, 4), ufm.losses.LabelSmoothing(0.1), 1e-3, 2e-3)
            >>> ufm.DeepUFM.from_config(p.config()).config() == p.config()
            True
        """
        if not isinstance(config, dict) or config.get("model") != "deep_ufm":
            raise ValueError(f"config must be a DeepUFM config (model='deep_ufm'), got {config!r}")
        counts = config["num_per_class"]
        return cls(config["num_classes"], tuple(counts) if isinstance(counts, list) else counts,
                   tuple(config["widths"]), loss_from_config(config["loss"]), config["lambda_W"],
                   config["lambda_H"], config["lambda_b"], config["bias"],
                   activation=config["activation"])

    # ---- sizes and data -------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Number of weight layers L."""
        return len(self.widths)

    @property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        """Shapes of W_1, ..., W_L: [d_{l+1}, d_l] with d_{L+1} = K."""
        dims = self.widths + (self.num_classes,)
        return tuple((dims[l + 1], dims[l]) for l in range(self.depth))

    @property
    def manifold(self) -> Euclidean:
        return Euclidean()

    @property
    def reference_geometry(self) -> str:
        """Frame of the DNC metrics (docs/theory/metrics.md): 'of' for bias-free MSE, else 'etf'."""
        return "of" if isinstance(self.loss, MSE) and not self.bias else "etf"

    def step_scale(self, params: DeepParams) -> DeepParams:
        """Per-block step multipliers: N on H_1, whose gradient carries the 1/N of the mean loss."""
        return DeepParams(float(self.num_samples), (1.0,) * self.depth,
                          None if params.b is None else 1.0)

    # ---- parameters ------------------------------------------------------------------------
    def init(self, key: Array, scale: float = 0.5) -> DeepParams:
        """Gaussian initialisation with standard deviation ``scale`` for H_1 and every W_l; b = 0.

        For L ≥ 2 the origin is a strict local minimum (docs/theory/deep.md): use scales 0.5-2.
        """
        keys = jax.random.split(key, self.depth + 1)
        dtype = default_float()
        H = scale * jax.random.normal(keys[0], (self.num_samples, self.widths[0]), dtype)
        Ws = tuple(scale * jax.random.normal(k, s, dtype) for k, s in zip(keys[1:], self.shapes))
        return DeepParams(H, Ws, jnp.zeros(self.num_classes, dtype) if self.bias else None)

    def params(self, H, Ws, b=None) -> DeepParams:
        """Wrap arrays (e.g. ``prediction.construct()``) as parameters of this problem."""
        dtype = default_float()
        Ws = tuple(jnp.asarray(W, dtype) for W in Ws)
        if len(Ws) != self.depth:
            raise ValueError(f"Ws must hold {self.depth} matrices (one per layer), got {len(Ws)}")
        for l, (W, s) in enumerate(zip(Ws, self.shapes)):
            if W.shape != s:
                raise ValueError(f"Ws[{l}] must have shape {s}, got {W.shape}")
        return DeepParams(jnp.asarray(H, dtype), Ws,
                          jnp.asarray(np.zeros(self.num_classes) if b is None else b, dtype)
                          if self.bias else None)

    def zeros(self) -> DeepParams:
        """The origin (b = 0): a strict local minimum for L ≥ 2 (docs/theory/deep.md)."""
        dtype = default_float()
        return DeepParams(jnp.zeros((self.num_samples, self.widths[0]), dtype),
                          tuple(jnp.zeros(s, dtype) for s in self.shapes),
                          jnp.zeros(self.num_classes, dtype) if self.bias else None)

    # ---- objective ---------------------------------------------------------------------------
    def features(self, params: DeepParams) -> tuple[Array, ...]:
        """(H_1, ..., H_L): the input [N, d_l] of every weight layer, post-activation for l ≥ 2."""
        act = _activation(self.activation)
        feats = [params.H]
        for W in params.Ws[:-1]:
            feats.append(act(jnp.matmul(feats[-1], W.T, precision="highest")))
        return tuple(feats)

    def outputs(self, params: DeepParams) -> Array:
        """Outputs H_L W_Lᵀ + b, shape [N, K]."""
        z = jnp.matmul(self.features(params)[-1], params.Ws[-1].T, precision="highest")
        return z if params.b is None else z + params.b[None, :]

    def value(self, params: DeepParams) -> Array:
        """The objective F in the library normalisation."""
        fit = jnp.mean(self.loss(self.outputs(params), self.targets))
        reg = self.lambda_H * jnp.sum(params.H ** 2)
        lam = jnp.asarray(self.lambda_W)
        for l, W in enumerate(params.Ws):
            reg = reg + (lam if lam.ndim == 0 else lam[..., l]) * jnp.sum(W ** 2)
        if params.b is not None:
            reg = reg + self.lambda_b * jnp.sum(params.b ** 2)
        return fit + 0.5 * reg

    def dnc_candidate(self) -> theory.Prediction:
        """The deep-neural-collapse configuration and its value: an upper bound on F*.

        ``ufm.theory.predict`` refuses where no theorem says collapse is optimal (deep CE at
        L ≥ 2, ReLU with K ≥ 3 and L ≥ 3); this returns the collapsed configuration there, with
        the note "not necessarily global" (a solver may find lower values). MSE and CE only.
        """
        return theory.deep.collapsed_configuration(**_numbers(self))

    def config(self) -> dict:
        """All parameters, JSON-friendly (:meth:`from_config` is the inverse)."""
        return dict(model="deep_ufm", num_classes=self.num_classes, num_per_class=self.num_per_class,
                    widths=list(self.widths), depth=self.depth, activation=self.activation,
                    loss=loss_config(self.loss), lambda_W=to_float(self.lambda_W),
                    lambda_H=to_float(self.lambda_H), lambda_b=to_float(self.lambda_b), bias=self.bias)


def _numbers(problem: DeepUFM) -> dict:
    """The problem as the numbers the closed forms of :mod:`ufm.theory.deep` take."""
    loss = problem.loss
    return dict(counts=problem.counts, widths=problem.widths, activation=problem.activation,
                loss=loss.name, lambda_H=float(problem.lambda_H),
                lambdas=[float(x) for x in np.broadcast_to(np.asarray(problem.lambda_W, float),
                                                           (problem.depth,))],
                bias=problem.bias, lambda_b=float(problem.lambda_b),
                alpha=float(getattr(loss, "alpha", 0.0)), gamma=float(getattr(loss, "gamma", 0.0)))


@theory.predict.register(DeepUFM)
def _predict_deep(problem: DeepUFM) -> theory.Prediction:
    return theory.deep.predict_deep(**_numbers(problem))


@theory.threshold.register(DeepUFM)
def _threshold_deep(problem: DeepUFM) -> float:
    """The critical decay product P* = λ_H Π_l λ_l: the global minimiser is non-zero iff P < P*
    (for the balanced deep linear MSE model P* = (κ*/K)^{L+1}/n; imbalanced: where the last
    class vanishes). ``NoClosedForm`` where no theorem gives one (deep CE/LS/FL at L ≥ 2, ReLU
    outside §4.2). At L = 1 with focal loss the plain UFM's global threshold is used."""
    nums = _numbers(problem)

    def focal():  # L = 1: the plain UFM with W = W_1 and λ_W = λ_1
        from ufm.problems.ufm import UFM

        return theory.threshold(UFM(problem.num_classes, problem.num_per_class, problem.widths[0],
                                    problem.loss, nums["lambdas"][0], nums["lambda_H"],
                                    nums["lambda_b"], problem.bias))

    return theory.deep.threshold_deep(**nums, focal_threshold=focal)
