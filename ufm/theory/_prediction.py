"""The result type of every closed form, and the refusal raised outside a theorem."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np


# The one regime vocabulary of every model's prediction (``Prediction.regime``); finer detail
# (which bias regime, which classes vanished) goes into ``Prediction.notes``.
COLLAPSE = "collapse"  # a non-zero minimiser of full rank: the model's collapsed geometry
PARTIAL_RANK = "partial-rank"  # a non-zero minimiser of lower rank (d < K, dropped directions, vanished classes)
ZERO = "zero"  # past the threshold: W = H = 0 (the origin, with its bias)
REGIMES = (COLLAPSE, PARTIAL_RANK, ZERO)


class NoClosedForm(Exception):
    """Raised by :func:`ufm.theory.predict` where no theorem (or derivation) covers the problem.

    The message names the reason, e.g. "CE with d < K-1: the minimiser is an open problem".
    """


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Closed-form prediction of a global minimiser, in rotation-invariant quantities.

    Attributes:
        value: the optimal objective value F* in the library normalisation.
        quantities: predicted invariant quantities by name (floats or NumPy arrays). The names are
            shared with :func:`ufm.metrics.measure`, which measures the same quantities at a point:
            ``norm_W_sq``, ``gram_W`` (W Wᵀ), ``gram_W_spectrum``, ``gram_means`` (uncentred
            class-mean Gram), ``W_means`` (W @ M_raw.T), ``bias``, ``bias_centred``, ``margin``,
            ``nc1``, ``nc2_W``, ... (see ``ufm.metrics.measure``).
        regime: which side of the thresholds the problem is on: one of :data:`REGIMES`
            (``"collapse"``, ``"partial-rank"``, ``"zero"``).
        geometry: ``"etf"``, ``"of"`` or ``"zero"``; the reference frame of the NC metrics.
        notes: caveats (non-uniqueness, conventions).
        params_builder: ``rng -> dict of arrays`` building one exact minimiser; use
            :meth:`construct`.
    """

    value: float
    quantities: Mapping[str, Any]
    regime: str
    geometry: str
    notes: tuple[str, ...] = ()
    params_builder: Callable[[np.random.Generator | None], dict] | None = dataclasses.field(
        default=None, repr=False, compare=False)
    scalars: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def construct(self, seed: int | None = None) -> dict:
        """One exact global minimiser as NumPy arrays (a random rotation when ``seed`` is given)."""
        if self.params_builder is None:
            raise NoClosedForm("this prediction has no construction")
        rng = None if seed is None else np.random.default_rng(seed)
        return self.params_builder(rng)

    def __getitem__(self, name: str):
        return self.quantities[name]
