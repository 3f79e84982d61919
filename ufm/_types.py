"""Array type aliases and small dtype/validation helpers shared by every module."""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
ArrayLike = Any  # jax.typing.ArrayLike, kept loose so NumPy arrays and Python floats pass
PyTree = Any


def default_float() -> jnp.dtype:
    """The float dtype JAX uses now (float64 when ``jax_enable_x64`` is on)."""
    return jnp.asarray(0.0).dtype


def is_concrete(value: Any) -> bool:
    """True when ``value`` can be inspected in Python (not a tracer or a placeholder)."""
    if isinstance(value, jax.core.Tracer):
        return False
    return isinstance(value, (numbers.Number, np.ndarray, np.generic, jax.Array))


def check_scalar(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = True, allowed: str = "") -> None:
    """Raise ``ValueError`` naming ``name`` unless every entry of ``value`` lies in the range.

    Tracers and non-numeric placeholders (as created by ``jax.tree_util`` internals) pass
    silently: validation happens once, in Python, when a user builds the object.
    """
    if not is_concrete(value):
        return
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real number, got {value!r}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    bad = np.zeros(arr.shape, bool)
    if low is not None:
        bad |= (arr <= low) if low_open else (arr < low)
    if high is not None:
        bad |= (arr >= high) if high_open else (arr > high)
    if np.any(bad):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def check_int(name: str, value: Any, *, low: int) -> int:
    """Return ``value`` as an int, or raise ``ValueError`` unless it is an integer ≥ ``low``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)
