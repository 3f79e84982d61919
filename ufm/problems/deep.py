"""Deep unconstrained features models: deep linear, extended (two-layer ReLU) and ReLU DUFM
(THEORY.md §4, §5).

Free features H_1 [N, d_1] are followed by L weight layers W_l [d_{l+1}, d_l] (d_{L+1} = K). In the
sample-major layout of the code, H_{l+1} = σ(H_l @ W_l.T) for l < L and the outputs are
H_L @ W_L.T (+ b). The last layer is always linear. THEORY.md writes the same model in the papers'
d×N notation, H_{l+1} = σ(W_l H_l).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ufm import theory
from ufm._types import Array, ArrayLike, check_int, check_scalar, default_float, is_concrete
from ufm.losses import CrossEntropy, MSE
from ufm.manifolds import Euclidean
from ufm.problems._base import ClassLabels, normalise_counts, problem_dataclass, to_float

_ACTIVATIONS = ("relu", "identity")


class DeepParams(NamedTuple):
    """Parameters of :class:`DeepUFM`: H [N, d_1], Ws = (W_1 [d_2, d_1], ..., W_L [K, d_L]), b [K]
    or None (no bias)."""

    H: Array
    Ws: tuple
    b: Optional[Array]


def _activation(name: str):
    return jax.nn.relu if name == "relu" else (lambda x: x)


@problem_dataclass(meta=("num_classes", "num_per_class", "widths", "activation", "bias"))
class DeepUFM(ClassLabels):
    """Deep UFM: F = mean_i ℓ(W_L σ(⋯σ(W_1 h_i)) + b, y_i) + (λ_H/2)‖H_1‖² + Σ_l (λ_l/2)‖W_l‖²
    (+ (λ_b/2)‖b‖²).

    The library normalisation (THEORY.md §0): the loss is a mean over samples, the H_1 penalty a
    sum over samples, every weight matrix has its own λ_l. ``activation="identity"`` is the deep
    linear UFM (Dang et al. 2023); ``"relu"`` is the DUFM (Súkeník et al. 2023), and with two layers
    Tirer & Bruna's extended UFM (see :meth:`extended`). Labels are class-major.

    Static fields (a change recompiles): ``num_classes``, ``num_per_class``, ``widths``,
    ``activation``, ``bias``; the depth is ``len(widths)``. Leaves (sweep them under ``vmap``):
    ``loss``, ``lambda_H``, ``lambdas`` (one array of shape [L]) and ``lambda_b``.

    Args (everything after ``widths`` is keyword-only):
        num_classes: K ≥ 2.
        num_per_class: n ≥ 1, or a sequence of K per-class counts (imbalanced data).
        widths: (d_1, ..., d_L), the input width of each weight layer (d_1 is the feature
            dimension); W_l has shape [d_{l+1}, d_l] with d_{L+1} = K. Depth L = len(widths) ≥ 1.
        activation: ``"relu"`` or ``"identity"`` between layers (the last layer is linear).
        loss: ``MSE()`` or ``CrossEntropy()`` (CE only with ``activation="identity"``: the deep CE
            theory of THEORY.md §5 is for the linear model).
        lambda_H: decay of the free features H_1, ≥ 0.
        lambdas: one decay ≥ 0 per weight layer (λ_1, ..., λ_L), stored as an array leaf.
        bias: free last-layer bias b.
        lambda_b: bias decay ≥ 0 (must be 0 without a bias).

    Closed forms: ``ufm.theory.predict(problem)`` (THEORY.md §4-§5; see :mod:`ufm.theory.deep`)
    refuses with ``NoClosedForm`` where collapse is not optimal; :meth:`dnc_candidate` gives the
    collapsed configuration there. The landscape has spurious minima for L ≥ 2: solve with
    :func:`ufm.sweep.multi_start` (init scales 0.5-2) and keep the best run.

    Examples:
        >>> import jax, ufm
        >>> p = ufm.DeepUFM(3, 2, (4, 5), loss=ufm.losses.MSE(), lambda_H=1e-3, lambdas=(1e-3, 2e-3))
        >>> params = p.init(jax.random.key(0))
        >>> params.H.shape, [W.shape for W in params.Ws], params.b
        ((6, 4), [(5, 4), (3, 5)], None)
    """

    num_classes: int
    num_per_class: int | tuple
    widths: tuple
    _: dataclasses.KW_ONLY
    activation: str = "relu"
    loss: object = MSE()
    lambda_H: ArrayLike
    lambdas: ArrayLike
    bias: bool = False
    lambda_b: ArrayLike = 0.0

    def __post_init__(self):
        object.__setattr__(self, "num_per_class", normalise_counts(self.num_classes, self.num_per_class))
        widths = self.widths
        if isinstance(widths, (int, np.integer)) and not isinstance(widths, bool):
            widths = (int(widths),)
        if not isinstance(widths, (tuple, list)) or len(widths) < 1:
            raise ValueError(f"widths must be a non-empty sequence (d_1, ..., d_L) of integers >= 1 "
                             f"(depth L >= 1), got {self.widths!r}")
        widths = tuple(check_int(f"widths[{i}]", int(w) if isinstance(w, np.integer) else w, low=1)
                       for i, w in enumerate(widths))
        object.__setattr__(self, "widths", widths)
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {self.activation!r}")
        if not isinstance(self.bias, (bool, np.bool_)):
            raise ValueError(f"bias must be True or False, got {self.bias!r}")
        if not isinstance(self.loss, (MSE, CrossEntropy)):
            raise ValueError(f"loss must be MSE() or CrossEntropy() from ufm.losses, got {self.loss!r}")
        if isinstance(self.loss, CrossEntropy) and self.activation != "identity":
            raise ValueError(f"loss=CrossEntropy() needs activation='identity' (the deep CE model of "
                             f"THEORY.md §5 is linear), got activation={self.activation!r}")
        lambdas = self.lambdas
        if isinstance(lambdas, (tuple, list)):
            lambdas = np.asarray(lambdas, dtype=np.float64)
            object.__setattr__(self, "lambdas", lambdas)
        if is_concrete(lambdas):
            shape = np.shape(lambdas)
            if len(shape) == 0 or shape[-1] != len(widths):
                raise ValueError(f"lambdas must hold one decay per weight layer (depth L={len(widths)}), "
                                 f"got shape {shape}: {lambdas!r}")
        check_scalar("lambdas", lambdas, low=0.0, high=None, allowed=">= 0", shape=None)
        check_scalar("lambda_H", self.lambda_H, low=0.0, high=None, allowed=">= 0")
        check_scalar("lambda_b", self.lambda_b, low=0.0, high=None, allowed=">= 0")
        if not self.bias and is_concrete(self.lambda_b) and np.any(np.asarray(self.lambda_b) != 0):
            raise ValueError(f"lambda_b must be 0 when bias=False, got {self.lambda_b!r}")

    @classmethod
    def extended(cls, num_classes: int, num_per_class, dim_features: int, dim_hidden: int,
                 lambda_H: ArrayLike, lambda_1: ArrayLike, lambda_2: ArrayLike, *,
                 loss=None, activation: str = "relu", bias: bool = False,
                 lambda_b: ArrayLike = 0.0) -> "DeepUFM":
        """Tirer & Bruna's extended UFM W₂ σ(W₁ H₁) (ICML 2022): two layers, ReLU.

        Args:
            dim_features: d_1, the width of the free features H₁.
            dim_hidden: d_2, the width of σ(W₁H₁); W₁ is [d_2, d_1] and W₂ is [K, d_2].
            lambda_H, lambda_1, lambda_2: the decays of H₁, W₁ and W₂ (the paper's λ_{H₁},
                λ_{W₁}, λ_{W₂}; same normalisation, THEORY.md §0).

        Examples:
            >>> import ufm
            >>> p = ufm.DeepUFM.extended(3, 4, 5, 6, 1e-3, 2e-3, 3e-3)
            >>> p.depth, p.widths, p.activation
            (2, (5, 6), 'relu')
        """
        check_int("dim_features", dim_features, low=1)
        check_int("dim_hidden", dim_hidden, low=1)
        return cls(num_classes, num_per_class, (dim_features, dim_hidden), activation=activation,
                   loss=MSE() if loss is None else loss, lambda_H=lambda_H,
                   lambdas=_stack(lambda_1, lambda_2), bias=bias, lambda_b=lambda_b)

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
        """Frame of the DNC metrics (THEORY.md §11.8): 'of' for bias-free MSE, else 'etf'."""
        return "of" if isinstance(self.loss, MSE) and not self.bias else "etf"

    def step_scale(self, params: DeepParams) -> DeepParams:
        """Per-block step multipliers: N on H_1, whose gradient carries the 1/N of the mean loss."""
        return DeepParams(float(self.num_samples), (1.0,) * self.depth,
                          None if params.b is None else 1.0)

    # ---- parameters ------------------------------------------------------------------------
    def init(self, key: Array, scale: float = 1.0) -> DeepParams:
        """Gaussian initialisation with standard deviation ``scale`` for H_1 and every W_l; b = 0.

        For L ≥ 2 the origin is a strict local minimum (THEORY.md §10.2): use scales 0.5-2.
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
        """The origin (b = 0): a strict local minimum for L ≥ 2 (THEORY.md §10.2)."""
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
        for l, W in enumerate(params.Ws):
            reg = reg + self.lambdas[..., l] * jnp.sum(W ** 2)
        if params.b is not None:
            reg = reg + self.lambda_b * jnp.sum(params.b ** 2)
        return fit + 0.5 * reg

    def dnc_candidate(self) -> theory.Prediction:
        """The deep-neural-collapse configuration and its value, optimal or not.

        ``ufm.theory.predict`` refuses where collapse is not optimal in general (ReLU with K ≥ 3
        and L ≥ 3, deep CE with L ≥ 3); this returns the collapsed configuration there, with the
        regime ``"collapsed configuration, not necessarily global"`` (an upper bound on F*).
        """
        return theory.deep.collapsed_configuration(
            counts=self.counts, widths=self.widths, activation=self.activation, loss=self.loss.name,
            lambda_H=float(self.lambda_H), lambdas=[float(x) for x in np.asarray(self.lambdas)],
            bias=self.bias)

    def config(self) -> dict:
        """All parameters, JSON-friendly."""
        return dict(model="deep_ufm", num_classes=self.num_classes, num_per_class=self.num_per_class,
                    widths=list(self.widths), depth=self.depth, activation=self.activation,
                    loss={"name": self.loss.name}, lambda_H=to_float(self.lambda_H),
                    lambdas=to_float(self.lambdas), bias=self.bias, lambda_b=to_float(self.lambda_b))


def _stack(*values):
    """λ_1, λ_2 as one array leaf (NumPy for numbers, jnp for traced values)."""
    if all(is_concrete(v) and not isinstance(v, jax.Array) for v in values):
        return np.asarray([float(np.asarray(v)) for v in values], dtype=np.float64)
    return jnp.stack([jnp.asarray(v) for v in values], axis=-1)


@theory.predict.register(DeepUFM)
def _predict_deep(problem: DeepUFM) -> theory.Prediction:
    return theory.deep.predict_deep(
        counts=problem.counts, widths=problem.widths, activation=problem.activation,
        loss=problem.loss.name, lambda_H=float(problem.lambda_H),
        lambdas=[float(x) for x in np.asarray(problem.lambdas)], bias=problem.bias,
        lambda_b=float(problem.lambda_b))
