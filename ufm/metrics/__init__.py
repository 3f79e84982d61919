"""Metrics: NC1-NC4 on any features, and ``measure(problem, params)``, the invariant quantities
that :func:`ufm.compare` sets against a :class:`ufm.theory.Prediction`.

The registry (``measure``, the error kind of each quantity) lives in ``ufm.metrics._registry``;
each model's module registers its measurement beside its own metrics, and this package imports
them all (they import only the registry, never this package: no import cycle).
"""

from __future__ import annotations

from ufm.metrics._registry import KINDS, measure, objective, quantity_kind, register_kinds
from ufm.metrics.classification import (bias_relation, class_means, equiangle, equinorm,
                                        etf_distance, frame_distance, frame_pair, nc1, nc1_trace,
                                        nc3_duality, nc3_zhu, nc4, of_distance)
from ufm.metrics import plain  # registers measure for UFM
from ufm.metrics import spherical  # registers measure for SphericalUFM
from ufm.metrics import multilabel  # registers measure for MultiLabelUFM
from ufm.metrics import regression  # registers measure for RegressionUFM
from ufm.metrics import deep  # registers measure for DeepUFM
from ufm.metrics import streaming  # batch-by-batch metrics of real features
from ufm.metrics.streaming import (CollapseAccumulator, CollapseReport, NC4Accumulator,
                                   RegressionAccumulator, cdnv)

__all__ = ["measure", "objective", "quantity_kind", "register_kinds", "KINDS", "nc1", "nc1_trace",
           "etf_distance", "of_distance", "frame_distance", "equinorm", "equiangle", "nc3_duality",
           "nc3_zhu", "nc4", "bias_relation", "class_means", "frame_pair", "streaming",
           "CollapseAccumulator", "CollapseReport", "NC4Accumulator", "RegressionAccumulator", "cdnv"]
