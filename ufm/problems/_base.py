"""Shared machinery of problem classes: pytree dataclasses and validation helpers."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import numpy as np

from ufm._types import check_int


def problem_dataclass(meta: Sequence[str]):
    """Frozen dataclass registered as a pytree; ``meta`` fields are static, the rest are leaves."""

    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        return jax.tree_util.register_dataclass(
            cls, data_fields=[n for n in names if n not in meta], meta_fields=list(meta))

    return wrap


def normalise_counts(num_classes, num_per_class) -> tuple[int, ...] | int:
    """Validate ``num_per_class`` (an int, or one count per class) and return it hashable."""
    K = check_int("num_classes", num_classes, low=2)
    if isinstance(num_per_class, (list, tuple, np.ndarray)):
        counts = tuple(check_int(f"num_per_class[{k}]", int(c) if isinstance(c, np.integer) else c, low=1)
                       for k, c in enumerate(num_per_class))
        if len(counts) != K:
            raise ValueError(f"num_per_class must have one count per class (num_classes={K}), "
                             f"got {len(counts)} counts")
        return counts[0] if len(set(counts)) == 1 else counts
    return check_int("num_per_class", num_per_class, low=1)


def counts_tuple(num_classes: int, num_per_class) -> tuple[int, ...]:
    return (num_per_class,) * num_classes if isinstance(num_per_class, int) else tuple(num_per_class)


def to_float(x):
    """JSON-friendly version of a hyperparameter leaf."""
    arr = np.asarray(x)
    return float(arr) if arr.ndim == 0 else arr.tolist()
