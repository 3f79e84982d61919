"""Problem classes: each holds sizes (static) and hyperparameters (array leaves) and defines
``value(params)``, ``manifold``, ``init(key)`` and ``config()``."""

from ufm.problems.ufm import UFM, UFMParams
from ufm.problems.regression import RegressionParams, RegressionUFM, synthetic_targets
from ufm.problems.deep import DeepParams, DeepUFM
from ufm.problems.spherical import SphericalParams, SphericalUFM
from ufm.problems.multilabel import MultiLabelUFM

__all__ = ["UFM", "UFMParams", "RegressionUFM", "RegressionParams", "synthetic_targets", "DeepUFM",
           "DeepParams", "SphericalUFM", "SphericalParams", "MultiLabelUFM"]
