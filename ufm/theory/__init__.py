"""Closed-form predictions (docs/theory/). Numbers in, numbers and arrays out; never a solver.

``predict(problem)`` is a single-dispatch function: each problem class registers how it maps its
fields onto the numeric closed forms (the registration lives beside the problem class, so this
package never imports ``ufm.problems``).
"""

from __future__ import annotations

import functools

from ufm.theory import frames, plain, scalar
from ufm.theory import regression
from ufm.theory import deep
from ufm.theory import spherical
from ufm.theory import multilabel
from ufm.theory._prediction import COLLAPSE, PARTIAL_RANK, REGIMES, ZERO, NoClosedForm, Prediction
from ufm.theory.frames import factor_from_gram, orthogonal_frame, simplex_etf


@functools.singledispatch
def predict(problem) -> Prediction:
    """Closed-form global minimiser of ``problem``, or ``NoClosedForm`` naming why there is none.

    Examples:
        >>> import ufm
        >>> p = ufm.UFM(4, 5, 4, ufm.losses.CrossEntropy(), 5e-3, 5e-3)
        >>> ufm.theory.predict(p).regime
        'collapse'
    """
    raise NoClosedForm(f"no closed form is registered for {type(problem).__name__}")


@functools.singledispatch
def threshold(problem) -> float:
    """The critical regularisation P* of ``problem``: its global minimiser is non-zero iff its
    decay product P is below P*.

    P = λ_W λ_H for the two-factor models (plain, multi-label, regression) and λ_H Π_l λ_l for deep
    models; each registration's docstring names its formula. ``NoClosedForm`` (with the reason)
    where the model has no threshold or no theorem gives one.

    Examples:
        >>> import ufm
        >>> p = ufm.UFM(4, 5, 4, ufm.losses.CrossEntropy(), 5e-3, 5e-3)
        >>> ufm.theory.threshold(p) == 1 / (4 ** 2 * 5)   # Kτ < 1 with τ = √(n λ_W λ_H)
        True
    """
    raise NoClosedForm(f"no threshold is registered for {type(problem).__name__}")


__all__ = ["NoClosedForm", "Prediction", "predict", "threshold", "REGIMES", "COLLAPSE", "PARTIAL_RANK",
           "ZERO", "frames", "plain", "scalar", "simplex_etf",
           "orthogonal_frame", "factor_from_gram"]
