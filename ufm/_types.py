"""Array type aliases and small dtype/validation helpers shared by every module."""

from __future__ import annotations

import dataclasses
import numbers
import os
from typing import Any, Sequence

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
                 low_open: bool = False, high_open: bool = True, allowed: str = "",
                 shape: tuple | None = ()) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a real number in the range.

    ``None``, strings, bools, lists, complex numbers and arrays of another ``shape`` (default: a
    scalar; ``shape=None`` accepts any shape) are refused with the argument's name. Tracers and
    non-numeric placeholders (as created by ``jax.tree_util`` internals while unflattening) pass
    silently: validation happens once, in Python, when a user builds the object.
    """
    desc = allowed or "a real number"
    if value is None or isinstance(value, (str, bytes, bool, np.bool_, complex, list, tuple, dict, set)):
        raise ValueError(f"{name} must be {desc}, got {value!r}")
    if not is_concrete(value):
        return
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a real number ({desc}), got {value!r}")
    if shape is not None and arr.shape != tuple(shape):
        what = "a scalar" if shape == () else f"an array of shape {tuple(shape)}"
        raise ValueError(f"{name} must be {what} ({desc}), got an array of shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite ({desc}), got {value!r}")
    bad = np.zeros(arr.shape, bool)
    if low is not None:
        bad |= (arr <= low) if low_open else (arr < low)
    if high is not None:
        bad |= (arr >= high) if high_open else (arr > high)
    if np.any(bad):
        raise ValueError(f"{name} must be {desc}, got {value!r}")


def check_int(name: str, value: Any, *, low: int, high: int | None = None) -> int:
    """Return ``value`` as an int, or raise ``ValueError`` unless it is an integer ≥ ``low``
    (and ≤ ``high`` when given: e.g. a step budget that must fit the device's int32)."""
    allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)


def derived_leaf(obj, name: str):
    """The derived array ``name`` of a pytree dataclass (see :func:`pytree_dataclass`): the leaf it
    was rebuilt with (inside a trace, a traced argument), else ``obj._build_<name>()``, cached."""
    value = obj.__dict__.get("_derived_" + name)
    if not (hasattr(value, "shape") and hasattr(value, "dtype")):  # unset, or a placeholder
        with jax.ensure_compile_time_eval():  # built under a user's jit: a value, not a tracer to leak
            value = getattr(obj, "_build_" + name)()
        object.__setattr__(obj, "_derived_" + name, value)
    return value


def replace_keeping_derived(obj, **changes):
    """``dataclasses.replace`` that keeps ``obj``'s derived leaves when no static field changes
    (a new λ keeps the traced labels of a sweep instead of rebuilding them as a constant)."""
    new = dataclasses.replace(obj, **changes)
    if not set(changes) & set(getattr(type(obj), "_pytree_meta", ())):
        for name in getattr(type(obj), "_pytree_derived", ()):
            if "_derived_" + name in obj.__dict__:
                object.__setattr__(new, "_derived_" + name, obj.__dict__["_derived_" + name])
    return new


def _field_key(value):
    """A field as something hashable and comparable with ``==``: arrays (a per-layer λ, a
    regression's targets) by dtype, shape and bytes, containers element by element."""
    if isinstance(value, (np.ndarray, np.generic, jax.Array)) and not isinstance(value, jax.core.Tracer):
        arr = np.asarray(value)
        return ("array", arr.dtype.str, arr.shape, arr.tobytes()) if arr.ndim else arr.item()
    if isinstance(value, (tuple, list)):
        return type(value).__name__, tuple(_field_key(v) for v in value)
    return value


def _dataclass_eq(self, other):
    # The generated __eq__ compares field tuples, which raises on array fields ("truth value of an
    # array ... is ambiguous") and compares a jnp scalar by identity-hash rules; fields by value.
    if other.__class__ is not self.__class__:
        return NotImplemented
    return all(_field_key(getattr(self, f.name)) == _field_key(getattr(other, f.name))
               for f in dataclasses.fields(self))


def _dataclass_hash(self):
    return hash((type(self),) + tuple(_field_key(getattr(self, f.name)) for f in dataclasses.fields(self)))


def pytree_dataclass(cls=None, *, meta: Sequence[str] = (), derived: Sequence[str] = ()):
    """Frozen dataclass registered as a pytree: ``meta`` fields are static (a change recompiles),
    every other field is an array leaf (hyperparameters: sweep them under ``vmap``).

    The one decorator of the library's problems, losses, manifolds and solvers.

    ``derived`` names arrays that are functions of the static fields (a problem's labels,
    ``_build_<name>()``) but travel as leaves: they enter a compiled program as arguments, never
    as constants baked into it (an N-sized constant costs compile time and memory, and its
    in-graph construction ~10% per step on small problems). Read them with :func:`derived_leaf`.
    """

    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True, eq=False)(cls)
        cls.__eq__, cls.__hash__ = _dataclass_eq, _dataclass_hash
        names = [f.name for f in dataclasses.fields(cls)]
        data = tuple(n for n in names if n not in meta)
        static = tuple(meta)
        derived_names = tuple(derived)
        keys = tuple(jax.tree_util.GetAttrKey(n) for n in data + derived_names)
        cls._pytree_meta, cls._pytree_derived = tuple(meta), derived_names

        def children(obj):
            return tuple(getattr(obj, n) for n in data) + tuple(derived_leaf(obj, n) for n in derived_names)

        # Not jax.tree_util.register_dataclass: in jax 0.10.2 the tree structures of two *different*
        # classes registered that way with the same field layout compare equal (MSE() and
        # CrossEntropy(), both without fields; LabelSmoothing and Focal, one leaf each), so a jit
        # cache could hand the program compiled for a CE problem to an MSE problem of the same
        # shapes whenever their hashes met. That happened: 1 in ~25 runs of `ufm verify`, three
        # MSE-with-bias rows were measured with the CE objective. A node registered with its own
        # flatten functions compares its type (tests/test_problems.py checks both).
        def flatten_with_keys(obj):
            return tuple(zip(keys, children(obj))), tuple(getattr(obj, m) for m in static)

        def flatten(obj):
            return children(obj), tuple(getattr(obj, m) for m in static)

        def unflatten(aux, leaves):
            # No __init__: the fields were checked and normalised when the object was built, and
            # JAX unflattens with leaves that are not arrays (``jit(f).lower`` passes ArgInfo
            # placeholders, tree utilities pass None or sentinels), which __post_init__ would refuse.
            leaves = tuple(leaves)
            obj = object.__new__(cls)
            for name, value in zip(static, aux):
                object.__setattr__(obj, name, value)
            for name, value in zip(data, leaves[:len(data)]):
                object.__setattr__(obj, name, value)
            for name, value in zip(derived_names, leaves[len(data):]):
                object.__setattr__(obj, "_derived_" + name, value)
            return obj

        jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
        return cls

    return wrap if cls is None else wrap(cls)


def available_memory() -> int:
    """Bytes of physical memory of this machine (a generous bound for a size guard)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not POSIX: no guard
        return 1 << 62


# A solve holds the parameters several times over (gradient, solver state such as L-BFGS
# memory, line-search trial points, outputs): the guard asks for this many copies to fit.
SOLVE_COPIES = 16


def check_fits_in_memory(what: str, num_floats: int, itemsize: int = 8) -> None:
    """Raise ``ValueError`` before anything is allocated when a problem of ``num_floats`` floats
    (parameters plus per-sample outputs) could not be solved in this machine's memory."""
    need = int(num_floats) * int(itemsize) * SOLVE_COPIES
    have = available_memory()
    if need > have:
        raise ValueError(f"{what} needs about {need / 2**30:.3g} GiB to solve ({int(num_floats):,} floats of "
                         f"{itemsize} bytes, {SOLVE_COPIES} working copies) but this machine has "
                         f"{have / 2**30:.3g} GiB: reduce the sizes")
