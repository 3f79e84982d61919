"""The multi-label UFM under the pick-all-label loss (docs/theory/multilabel.md)."""

from __future__ import annotations

from typing import Mapping

import jax.numpy as jnp
import numpy as np

from ufm import theory
from ufm._types import Array, ArrayLike, check_fits_in_memory, check_int, default_float, derived_leaf
from ufm.losses import PickAllLabel, PickAllLabelNormalised
from ufm.problems._base import (LinearClassifier, check_bias, check_decays, check_loss,
                                problem_dataclass, to_float)
from ufm.labels import balanced_counts, canonical_label_sets, multi_hot, normalise_label_sets
from ufm.problems._base import loss_from_config
from ufm.problems.ufm import _check_config

_SUPPORTED_LOSSES = (PickAllLabel, PickAllLabelNormalised)


@problem_dataclass(meta=("num_classes", "label_sets", "dim", "bias"))
class MultiLabelUFM(LinearClassifier):
    """Multi-label UFM: F = mean_i ℓ(W h_i + b, S_i) + (λ_W/2)‖W‖² + (λ_H/2)‖H‖² + (λ_b/2)‖b‖².

    ℓ is the pick-all-label loss |S| logsumexp(z) − Σ_{k∈S} z_k (docs/theory/multilabel.md) or its normalised
    variant (divided by |S|). Sample i has the label set ``label_sets[i]``; the H penalty is a sum
    over samples (Zhu et al. 2021 normalisation, identical to Li et al. 2024).

    Args:
        num_classes: K ≥ 2.
        label_sets: one label set per sample, a sequence of collections of class indices in
            [0, K), or a multi-hot array [N, K]. Stored as a tuple of sorted tuples (a static
            field, so it must be hashable).
        dim: feature dimension d ≥ 1.
        loss: :class:`ufm.losses.PickAllLabel` or :class:`ufm.losses.PickAllLabelNormalised`
            (required, as in every classification model).
        lambda_W, lambda_H: weight decays ≥ 0 (array leaves).
        lambda_b: bias decay ≥ 0; must be 0 when ``bias`` is False.
        bias: whether the model has a bias b.

    Examples:
        >>> import jax, ufm
        >>> pal = ufm.losses.PickAllLabel()
        >>> p = ufm.MultiLabelUFM(3, [[0], [1], [2], [0, 1]], 3, pal, 1e-2, 1e-2)
        >>> p.num_samples, p.targets.shape, p.counts_by_size is None
        (4, (4, 3), True)
        >>> ufm.MultiLabelUFM.balanced(3, {1: 2, 2: 1}, 3, pal, 1e-2, 1e-2).counts_by_size
        {1: 2, 2: 1}
    """

    num_classes: int
    label_sets: tuple
    dim: int
    loss: object
    lambda_W: ArrayLike
    lambda_H: ArrayLike
    lambda_b: ArrayLike = 0.0
    bias: bool = True

    def __post_init__(self):
        K = check_int("num_classes", self.num_classes, low=2)
        object.__setattr__(self, "label_sets", normalise_label_sets(self.label_sets, K))
        check_int("dim", self.dim, low=1)
        check_bias(self.bias)
        check_loss(self.loss, _SUPPORTED_LOSSES, "PickAllLabel() or PickAllLabelNormalised()")
        check_decays(self)
        K, N, d = self.num_classes, self.num_samples, self.dim
        # parameters W, H, b, the [N, K] outputs and the [N, K] multi-hot targets
        check_fits_in_memory(f"MultiLabelUFM(num_classes={K}, N={N}, dim={d})",
                             K * d + N * d + K + 2 * N * K)

    @classmethod
    def balanced(cls, num_classes: int, counts_by_size: Mapping[int, int], dim: int, loss,
                 lambda_W: ArrayLike, lambda_H: ArrayLike, lambda_b: ArrayLike = 0.0,
                 bias: bool = True) -> "MultiLabelUFM":
        """Data balanced within each multiplicity: every label set of size m occurs n_m times.

        Samples are set-major (sizes ascending, sets in ``itertools.combinations`` order, each
        repeated n_m times in a row); see :func:`ufm.theory.multilabel.canonical_label_sets`.

        Args:
            counts_by_size: {m: n_m} with 1 ≤ m ≤ K and n_m ≥ 1, e.g. {1: 2, 2: 1}.
        """
        K = check_int("num_classes", num_classes, low=2)
        return cls(K, canonical_label_sets(K, counts_by_size), dim, loss, lambda_W, lambda_H,
                   lambda_b=lambda_b, bias=bias)

    @classmethod
    def from_config(cls, config: Mapping) -> "MultiLabelUFM":
        """The problem whose :meth:`config` is ``config`` (the exact inverse; JSON round trips too).

        Examples:
            >>> import ufm
            >>> p = ufm.MultiLabelUFM.balanced(3, {1: 2, 2: 1}, 3, ufm.losses.PickAllLabel(), 1e-2, 1e-2)
            >>> ufm.MultiLabelUFM.from_config(p.config()) == p
            True
        """
        cfg = _check_config(config, "multilabel_ufm", ("num_classes", "label_sets", "dim", "loss",
                                                       "lambda_W", "lambda_H", "lambda_b", "bias"))
        return cls(cfg["num_classes"], cfg["label_sets"], cfg["dim"], loss_from_config(cfg["loss"]),
                   cfg["lambda_W"], cfg["lambda_H"], lambda_b=cfg["lambda_b"], bias=cfg["bias"])

    # ---- sizes and data -------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        return len(self.label_sets)

    @property
    def set_sizes(self) -> np.ndarray:
        """|S_i| per sample."""
        return np.array([len(S) for S in self.label_sets])

    @property
    def counts_by_size(self) -> dict[int, int] | None:
        """{m: n_m} when the data are balanced within each multiplicity, else None."""
        return balanced_counts(self.num_classes, self.label_sets)

    @property
    def multi_hot(self) -> np.ndarray:
        """Multi-hot targets as a NumPy array [N, K]."""
        return multi_hot(self.label_sets, self.num_classes)

    @property
    def targets(self) -> Array:
        """Multi-hot targets [N, K]: a leaf of the problem (an argument of the compiled solve,
        not a constant inside it)."""
        return derived_leaf(self, "targets")

    def _build_targets(self):
        return jnp.asarray(self.multi_hot, dtype=default_float())

    @property
    def reference_geometry(self) -> str:
        """Frame of the NC metrics (docs/theory/metrics.md): the simplex ETF."""
        return "etf"

    def config(self) -> dict:
        """All parameters, JSON-friendly (``counts_by_size`` too when the data are balanced)."""
        counts = self.counts_by_size
        out = dict(model="multilabel_ufm", num_classes=self.num_classes,
                   label_sets=[list(S) for S in self.label_sets], dim=self.dim,
                   loss={"name": self.loss.name}, lambda_W=to_float(self.lambda_W),
                   lambda_H=to_float(self.lambda_H), lambda_b=to_float(self.lambda_b), bias=self.bias)
        if counts is not None:
            out["counts_by_size"] = {str(m): n for m, n in counts.items()}
        return out


def _covered_counts(problem: MultiLabelUFM, what: str) -> dict:
    """{m: n_m} of a problem the PAL theory covers, or NoClosedForm naming why (``what``: the
    missing result, "closed form" or "threshold")."""
    if isinstance(problem.loss, PickAllLabelNormalised):
        raise theory.NoClosedForm(f"the normalised pick-all-label loss (PAL-N, divided by |S|) has no "
                                  f"{what} in docs/theory/multilabel.md")
    counts = problem.counts_by_size
    if counts is None:
        raise theory.NoClosedForm(f"the label sets are not balanced within each multiplicity (every "
                                  f"set of size m occurring n_m times): no {what} in docs/theory/multilabel.md")
    return counts


@theory.predict.register(MultiLabelUFM)
def _predict_multilabel(problem: MultiLabelUFM) -> theory.Prediction:
    counts = _covered_counts(problem, "closed form")
    return theory.multilabel.pal_ufm(
        problem.num_classes, counts, problem.dim, float(problem.lambda_W), float(problem.lambda_H),
        float(problem.lambda_b), problem.bias, label_sets=problem.label_sets)


@theory.threshold.register(MultiLabelUFM)
def _threshold_multilabel(problem: MultiLabelUFM) -> float:
    """P* = Σ_m n_m C(K−2, m−1)/N² of P = λ_W λ_H (:func:`ufm.theory.multilabel.pal_threshold`)."""
    return theory.multilabel.pal_threshold(problem.num_classes, _covered_counts(problem, "threshold"))
