"""The verification registry: ``measure(problem, params)`` and each quantity's error kind.

Each model registers, in its own ``ufm/metrics/<model>.py``, what it measures
(``@measure.register(Problem)``) and, beside it, the error kind of any quantity the shared table
:data:`KINDS` does not know (``register_kinds``). ``ufm.compare`` looks both up here; the
tolerances themselves are bounds derived from each point's certificate (:mod:`ufm.compare`).
This module imports nothing from the model modules, so they import it without a cycle.
"""

from __future__ import annotations

import functools

import jax

# "rel": the error is ‖measured − predicted‖ / ‖predicted‖ (absolute where the prediction is 0);
# "abs": ‖measured − predicted‖. Scale-carrying quantities are relative, normalised metrics
# (distances to frames, NC1, cosines) absolute.
KINDS: dict[str, str] = {
    "value": "rel",
    "norm_W_sq": "rel", "norm_H_sq": "rel", "norm_W": "abs", "norm_H": "abs",
    "gram_W": "rel", "gram_W_spectrum": "rel", "gram_means": "rel", "gram_H": "rel",
    "W_means": "rel", "W_means_spectrum": "rel", "outputs": "rel",
    "means_minus_beta_W": "abs",
    "bias": "rel", "bias_centred": "abs", "bias_relation": "rel",
    "margin": "rel",
    "nc1": "abs", "nc2_W": "abs", "nc2_means": "abs",
    "equinorm_W": "abs", "equinorm_means": "abs", "equiangle_W": "abs", "equiangle_means": "abs",
    "nc3_duality": "abs", "nc3_zhu": "abs", "nc4": "abs",
    "grad_norm": "abs", "max_sphere_error": "abs",
}
DEFAULT_KIND = "rel"

# Normalised metrics that are unsquared differences of O(1) numbers (cosines, unit-normalised
# frames and Grams, ratios of norms or singular values): computing one rounds at eps × O(1) in
# absolute terms, whatever its value, so a collapsed point measures a few ulps (e.g. at K = 2 the
# centred rows are antipodal and equiangle is identically 0, measured as 1e-16). ``ufm.compare``
# adds that absolute rounding to their floor. Squared metrics (NC1, NRC1) and angles are not in
# the list: their rounding is not eps × O(1) (rounding_noise measures theirs).
UNIT_SCALE: frozenset[str] = frozenset({
    "nc2_W", "nc2_means", "equinorm_W", "equinorm_means", "equiangle_W", "equiangle_means",
    "nc3_duality", "nc3_zhu", "nc3_single", "balancedness",
})
UNIT_SCALE_PREFIXES: tuple[str, ...] = ("dnc2_", "dnc3_spread_", "equinorm_means_")


@functools.singledispatch
def measure(problem, params) -> dict:
    """Invariant quantities of ``params`` for ``problem``, keyed as in ``Prediction.quantities``.

    Registered per problem class (beside the model's metrics); values are NumPy floats or arrays.
    """
    raise NotImplementedError(f"no measurement is registered for {type(problem).__name__}")


def register_kinds(kinds: dict[str, str]) -> None:
    """Add error kinds ("rel" or "abs") for a model's own quantity names."""
    for name, kind in kinds.items():
        if kind not in ("rel", "abs"):
            raise ValueError(f"kind of {name!r} must be 'rel' or 'abs', got {kind!r}")
        if KINDS.get(name, kind) != kind:
            raise ValueError(f"quantity {name!r} is already registered as {KINDS[name]!r}")
        KINDS[name] = kind


def unit_scale(name: str) -> bool:
    """Whether ``name`` is a normalised metric computed from O(1) numbers (:data:`UNIT_SCALE`), whose
    rounding is eps × O(1) absolute even where its value is 0.

    Examples:
        >>> unit_scale("equiangle_W"), unit_scale("dnc2_means_2"), unit_scale("nc1"), unit_scale("gram_W")
        (True, True, False, False)
    """
    return name in UNIT_SCALE or name.startswith(UNIT_SCALE_PREFIXES)


def quantity_kind(name: str) -> str:
    """'rel' or 'abs' for a quantity name (``DEFAULT_KIND`` for unregistered names)."""
    return KINDS.get(name, DEFAULT_KIND)


@jax.jit
def objective(problem, params):
    """``problem.value(params)`` compiled once per problem structure (eager evaluation would
    dispatch and compile every primitive separately)."""
    return problem.value(params)
