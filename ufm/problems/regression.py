"""The regression UFM (docs/theory/regression.md; Andriopoulos et al., NeurIPS 2024) and synthetic targets."""

from __future__ import annotations

import hashlib
import numbers
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ufm import theory
from typing import Mapping

from ufm._types import Array, ArrayLike, check_fits_in_memory, check_int, check_scalar, default_float
from ufm.manifolds import Euclidean
from ufm.problems._base import problem_dataclass, to_float
from ufm.problems.ufm import _check_config
import ufm.theory.regression as _theory_regression

_CONFIG_MAX_TARGETS = 10_000  # config() lists the targets up to this many numbers, else a digest


class RegressionParams(NamedTuple):
    """Parameters of the regression UFM: W [t, d], H [N, d] (sample-major), b [t]."""

    W: Array
    H: Array
    b: Array


def _validate_targets(targets) -> np.ndarray | None:
    """The targets as a float64 NumPy array, or None for tracers and pytree placeholders."""
    if isinstance(targets, jax.core.Tracer):
        return None
    if targets is None:
        raise ValueError("targets must be a 2-D array [N, t] of real numbers, got None")
    if not isinstance(targets, (np.ndarray, jax.Array, list, tuple)):
        # jax.tree_util rebuilds problems with placeholders (object(), None, in_axes ints).
        if isinstance(targets, (numbers.Number, np.generic, str)):
            raise ValueError(f"targets must be a 2-D array [N, t] of real numbers, got {targets!r}")
        return None
    try:
        arr = np.asarray(targets)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"targets must be a 2-D array [N, t] of real numbers, got {type(targets).__name__} "
                         f"that NumPy cannot read as an array ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"targets must be a 2-D array [N, t] of real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"targets must be a 2-D array [N, t] (one row per sample; use shape [N, 1] "
                         f"for t = 1), got shape {arr.shape}")
    N, t = arr.shape
    if t < 1 or N <= t:
        raise ValueError(f"targets must have shape [N, t] with t >= 1 and N > t (more samples than "
                         f"target dimensions), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise ValueError(f"targets must be finite, got {arr[tuple(bad)]!r} at index {tuple(bad)}")
    return arr.astype(np.float64)


@problem_dataclass(meta=("dim",))
class RegressionUFM:
    """Regression UFM: F = (1/(2N))‖H Wᵀ + 1bᵀ − Y‖² + (λ_W/2)‖W‖² + (λ_H/2)‖H‖², b free.

    The library normalisation (docs/theory/conventions.md, docs/theory/regression.md): a mean squared loss ½‖W h_i + b − y_i‖² over the
    N samples, the H penalty a sum over samples, an unregularised bias. Andriopoulos et al. write
    (λ_H^P/(2N))‖H‖²: use ``lambda_H = lambda_H^P / N`` (:func:`ufm.theory.regression.lambda_H_from_paper`);
    their c = λ_W λ_H^P is ``c = N λ_H λ_W`` here. Layout: W [t, d], H [N, d], b [t],
    outputs ``H @ W.T + b`` [N, t].

    Args:
        targets: Y [N, t], finite real data with N > t (an array leaf: a sweep over data sets of
            one shape compiles once).
        dim: feature dimension d ≥ 1.
        lambda_W, lambda_H: weight decays ≥ 0 (array leaves: sweep them under ``vmap``).

    Examples:
        >>> import jax, ufm
        >>> Y = synthetic_targets(0, 8, [1.0, 0.25], mean=[1.0, -1.0])
        >>> p = ufm.RegressionUFM(Y, dim=3, lambda_W=0.05, lambda_H=0.05)
        >>> params = p.init(jax.random.key(0))
        >>> params.W.shape, params.H.shape, params.b.shape, p.num_samples, p.target_dim
        ((2, 3), (8, 3), (2,), 8, 2)
    """

    targets: ArrayLike
    dim: int
    lambda_W: ArrayLike
    lambda_H: ArrayLike

    def __post_init__(self):
        arr = _validate_targets(self.targets)
        placed = isinstance(self.targets, jax.Array) and self.targets.dtype == default_float()
        if arr is not None and not placed:  # a device array keeps its placement (ufm.sharding)
            object.__setattr__(self, "targets", jnp.asarray(arr, dtype=default_float()))
        check_int("dim", self.dim, low=1)
        for name in ("lambda_W", "lambda_H"):
            check_scalar(name, getattr(self, name), low=0.0, high=None, allowed=">= 0")
        if arr is not None:
            (N, t), d = arr.shape, self.dim
            # parameters W, H, b, the targets and the [N, t] outputs
            check_fits_in_memory(f"RegressionUFM(N={N}, t={t}, dim={d})", t * d + N * d + t + 2 * N * t)

    @classmethod
    def from_config(cls, config: Mapping, targets=None) -> "RegressionUFM":
        """The problem whose :meth:`config` is ``config`` (the exact inverse).

        The config lists the targets when they hold at most 10,000 numbers; larger targets are
        recorded by their SHA-256 digest only, and must then be passed as ``targets`` (they are
        checked against the digest). ``targets`` given with a listing config must equal it.

        Examples:
            >>> import ufm
            >>> p = ufm.RegressionUFM(synthetic_targets(0, 6, [1.0, 0.5]), 3, 0.1, 0.05)
            >>> q = ufm.RegressionUFM.from_config(p.config())
            >>> q.dim == p.dim and bool((q.targets == p.targets).all()) and q.lambda_H == p.lambda_H
            True
        """
        cfg = _check_config(config, "regression", ("dim", "lambda_W", "lambda_H"))
        if "targets" in cfg:
            Y = np.asarray(cfg["targets"], dtype=np.float64)
            if targets is not None and not np.array_equal(np.asarray(targets, dtype=np.float64), Y):
                raise ValueError("targets differ from the targets listed in config")
        elif targets is None:
            raise ValueError("config records the targets by digest only (targets_sha256): pass "
                             "from_config(config, targets=Y)")
        else:
            Y = np.asarray(targets, dtype=np.float64)
            digest = hashlib.sha256(np.ascontiguousarray(Y).tobytes()).hexdigest()
            if digest != cfg.get("targets_sha256"):
                raise ValueError("targets do not match the config's targets_sha256 digest")
        return cls(Y, cfg["dim"], cfg["lambda_W"], cfg["lambda_H"])

    # ---- sizes and data -------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        """N, the number of samples (rows of the targets)."""
        return int(self.targets.shape[0])

    @property
    def target_dim(self) -> int:
        """t, the target dimension."""
        return int(self.targets.shape[1])

    @property
    def manifold(self) -> Euclidean:
        return Euclidean()

    def step_scale(self, params: RegressionParams) -> RegressionParams:
        """Per-block step multipliers: N on H, whose gradient carries the 1/N of the mean loss."""
        return RegressionParams(1.0, float(self.num_samples), 1.0)

    # ---- parameters ------------------------------------------------------------------------
    def init(self, key: Array, scale: float = 0.5) -> RegressionParams:
        """Gaussian W, H with standard deviation ``scale``; b starts at 0."""
        kw, kh = jax.random.split(key)
        dtype = default_float()
        W = scale * jax.random.normal(kw, (self.target_dim, self.dim), dtype)
        H = scale * jax.random.normal(kh, (self.num_samples, self.dim), dtype)
        return RegressionParams(W, H, jnp.zeros(self.target_dim, dtype))

    def params(self, W, H, b) -> RegressionParams:
        """Wrap arrays (e.g. ``prediction.construct()``) as parameters of this problem."""
        dtype = default_float()
        return RegressionParams(jnp.asarray(W, dtype), jnp.asarray(H, dtype), jnp.asarray(b, dtype))

    # ---- objective ---------------------------------------------------------------------------
    def outputs(self, params: RegressionParams) -> Array:
        """Predictions H Wᵀ + b, shape [N, t]."""
        return jnp.matmul(params.H, params.W.T, precision="highest") + params.b[None, :]

    def value(self, params: RegressionParams) -> Array:
        """The objective F(W, H, b) in the library normalisation."""
        residual = self.outputs(params) - self.targets
        fit = 0.5 * jnp.mean(jnp.sum(residual ** 2, axis=1))
        reg = self.lambda_W * jnp.sum(params.W ** 2) + self.lambda_H * jnp.sum(params.H ** 2)
        return fit + 0.5 * reg

    def config(self) -> dict:
        """All parameters, JSON-friendly (the targets listed, or digested when large)."""
        Y = np.asarray(self.targets, dtype=np.float64)
        cfg = dict(model="regression", num_samples=self.num_samples, target_dim=self.target_dim,
                   dim=self.dim, lambda_W=to_float(self.lambda_W), lambda_H=to_float(self.lambda_H),
                   c=to_float(self.num_samples * np.asarray(self.lambda_W) * np.asarray(self.lambda_H)),
                   target_cov_eigenvalues=_theory_regression.target_statistics(Y)[2].tolist())
        if Y.size <= _CONFIG_MAX_TARGETS:
            cfg["targets"] = Y.tolist()
        else:
            cfg["targets_sha256"] = hashlib.sha256(np.ascontiguousarray(Y).tobytes()).hexdigest()
        return cfg


def _rng_from(key) -> np.random.Generator:
    if isinstance(key, np.random.Generator):
        return key
    if isinstance(key, jax.Array):
        data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
        return np.random.default_rng(np.asarray(data, dtype=np.uint64).ravel().tolist())
    if isinstance(key, (numbers.Integral, np.integer)) and not isinstance(key, bool) and key >= 0:
        return np.random.default_rng(int(key))
    raise ValueError(f"key must be a JAX PRNG key, a NumPy Generator or a seed >= 0, got {key!r}")


def synthetic_targets(key, num_samples: int, spectrum: Sequence[float], mean=None, *,
                      rotate: bool = True) -> np.ndarray:
    """Targets Y [N, t] whose centred sample covariance has *exactly* the eigenvalues ``spectrum``.

    A Gaussian sample is centred and whitened (orthonormal columns orthogonal to 1, by QR), then
    coloured: Y = √N Q diag(√spectrum) Vᵀ + mean, so ỸᵀỸ/N = V diag(spectrum) Vᵀ to rounding and
    the thresholds c = λ_j can be placed exactly. Zeros in ``spectrum`` give low-rank targets.

    Args:
        key: a JAX PRNG key, a ``np.random.Generator`` or an integer seed (deterministic either way).
        num_samples: N > t.
        spectrum: t ≥ 1 eigenvalues ≥ 0 (any order; eigenvalue i lies along column i of V).
        mean: the sample mean ȳ [t] (default 0).
        rotate: random eigenvectors V (default); False gives Σ = diag(spectrum).

    Returns:
        A NumPy float64 array [N, t].

    Examples:
        >>> Y = synthetic_targets(1, 6, [2.0, 0.5, 0.0], mean=[1.0, 2.0, 3.0])
        >>> Yc = Y - Y.mean(0)
        >>> np.allclose(np.linalg.eigvalsh(Yc.T @ Yc / 6), [0.0, 0.5, 2.0]), np.allclose(Y.mean(0), [1, 2, 3])
        (True, True)
    """
    lam = np.asarray(spectrum, dtype=np.float64)
    if lam.ndim != 1 or lam.size < 1:
        raise ValueError(f"spectrum must be a non-empty 1-D sequence of eigenvalues, got {spectrum!r}")
    if not np.all(np.isfinite(lam)) or np.any(lam < 0):
        raise ValueError(f"spectrum must hold finite eigenvalues >= 0, got {spectrum!r}")
    t = lam.size
    N = check_int("num_samples", num_samples, low=1)
    if N <= t:
        raise ValueError(f"num_samples must exceed the target dimension t = {t} (a centred sample of "
                         f"N <= t points has rank < t), got {N}")
    mu = np.zeros(t) if mean is None else np.asarray(mean, dtype=np.float64)
    if mu.shape != (t,) or not np.all(np.isfinite(mu)):
        raise ValueError(f"mean must be a finite vector of length t = {t}, got {mean!r}")
    rng = _rng_from(key)
    Z = rng.standard_normal((N, t))
    Z -= Z.mean(axis=0)
    Q, _ = np.linalg.qr(Z)  # orthonormal columns spanning centred vectors: Qᵀ1 = 0
    Q -= Q.mean(axis=0)  # remove the rounding-level mean so that the sample mean is exactly μ
    V = np.eye(t)
    if rotate:
        V, R = np.linalg.qr(rng.standard_normal((t, t)))
        V = V * np.sign(np.diag(R))
    return np.sqrt(N) * (Q * np.sqrt(lam)) @ V.T + mu


@theory.predict.register(RegressionUFM)
def _predict_regression(problem: RegressionUFM) -> theory.Prediction:
    return _theory_regression.predict_regression(
        np.asarray(problem.targets, dtype=np.float64), problem.dim,
        float(problem.lambda_W), float(problem.lambda_H))


@theory.threshold.register(RegressionUFM)
def _threshold_regression(problem: RegressionUFM) -> float:
    """P* = λ_max/N of P = λ_W λ_H: W ≠ 0 iff c = N λ_W λ_H < λ_max (docs/theory/regression.md)."""
    Y = np.asarray(problem.targets, dtype=np.float64)
    return _theory_regression.threshold_product(Y)


__all__ = ["RegressionUFM", "RegressionParams", "synthetic_targets"]
