"""Labels, one home: class-major labels, per-class counts, one-hot and multi-hot rows, label sets.

Every problem and metric takes its labels from here, so a label of −1 or K, a count of 0 or an empty
label set is refused the same way everywhere (``ValueError`` naming the argument).

Examples:
    >>> class_major_labels((2, 1, 3))
    array([0, 0, 1, 2, 2, 2])
    >>> one_hot([0, 2], 3)
    array([[1., 0., 0.],
           [0., 0., 1.]])
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections import Counter
from typing import Mapping, Sequence

import jax
import numpy as np

from ufm._types import check_int

# Guards against label-set specs that enumerate astronomically many sets (C(K, m) grows fast).
MAX_LABEL_SETS = 10_000_000


def class_major_labels(counts: Sequence[int]) -> np.ndarray:
    """Integer labels ``repeat(arange(K), n_k)`` for per-class counts n_k."""
    return np.repeat(np.arange(len(counts)), counts)


def one_hot(labels, num_classes: int) -> np.ndarray:
    """Dense one-hot rows [N, K] (NumPy) of integer labels in [0, K)."""
    num_classes = check_int("num_classes", num_classes, low=1)
    labels = check_labels(labels, num_classes)
    return np.eye(num_classes)[labels]


def check_labels(labels, num_classes: int, name: str = "labels") -> np.ndarray:
    """Integer labels [N] in [0, K) as a NumPy array, or ``ValueError`` naming ``name``."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of class indices, got shape {arr.shape}")
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    bad = (arr < 0) | (arr >= num_classes)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] = {int(arr[i])} is out of range: labels must be integers in "
                         f"[0, {num_classes - 1}] (num_classes={num_classes})")
    return arr.astype(np.int64)


def multi_hot(label_sets: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """Multi-hot rows [N, K] (NumPy) of label sets (each a collection of indices in [0, K)).

    Examples:
        >>> multi_hot([(0, 2), (1,)], 3)
        array([[1., 0., 1.],
               [0., 1., 0.]])
    """
    K = check_int("num_classes", num_classes, low=1)
    Y = np.zeros((len(label_sets), K))
    for i, S in enumerate(label_sets):
        S = list(S)
        # a label of -1 would silently index the last column
        if not S or not all(_is_index(k) and 0 <= k < K for k in S):
            raise ValueError(f"label_sets[{i}] = {S!r}: a label set is a non-empty collection of "
                             f"integers in [0, {K - 1}] (num_classes={K})")
        Y[i, S] = 1.0
    return Y


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


def _is_index(k) -> bool:
    return isinstance(k, (numbers.Integral, np.integer)) and not isinstance(k, (bool, np.bool_))


def _label_sets_from_multi_hot(Y, K: int) -> tuple[tuple[int, ...], ...]:
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape[0] < 1 or Y.shape[1] != K:
        raise ValueError(f"label_sets given as a multi-hot matrix must have shape [N, num_classes="
                         f"{K}] with N >= 1, got shape {Y.shape}")
    if Y.dtype.kind not in "biuf" or not np.all((Y == 0) | (Y == 1)):
        raise ValueError("label_sets given as a multi-hot matrix must have entries in {0, 1}")
    empty = np.flatnonzero(Y.sum(axis=1) == 0)
    if empty.size:
        raise ValueError(f"label_sets row {int(empty[0])} is empty: every sample needs at least "
                         "one label")
    return tuple(tuple(int(k) for k in np.flatnonzero(row)) for row in Y)


def normalise_label_sets(label_sets, num_classes: int) -> tuple[tuple[int, ...], ...]:
    """Validate label sets and return them as a tuple of sorted tuples (hashable, static).

    Args:
        label_sets: a sequence of label sets (each a list, tuple or set of class indices), or a
            multi-hot array [N, K] (NumPy or JAX) of zeros and ones.
        num_classes: K.

    Raises:
        ValueError: naming the offending sample for an empty set, an index outside [0, K), a
            non-integer index or a repeated index.

    Examples:
        >>> normalise_label_sets([[1, 0], {2}], 3)
        ((0, 1), (2,))
    """
    K = num_classes
    if isinstance(label_sets, (np.ndarray, jax.Array)):
        return _label_sets_from_multi_hot(label_sets, K)
    if isinstance(label_sets, (str, bytes)) or not isinstance(label_sets, Sequence) or not label_sets:
        raise ValueError(f"label_sets must be a non-empty sequence of label sets or a multi-hot "
                         f"[N, {K}] array, got {label_sets!r}")
    out = []
    for i, S in enumerate(label_sets):
        if isinstance(S, (np.ndarray, jax.Array)):
            S = np.asarray(S).tolist()
        if isinstance(S, (str, bytes)) or not isinstance(S, (Sequence, set, frozenset)):
            raise ValueError(f"label_sets[{i}] must be a collection of class indices, got {S!r}")
        S = list(S)
        if not S:
            raise ValueError(f"label_sets[{i}] is empty: every sample needs at least one label")
        for k in S:
            if not _is_index(k) or not 0 <= k < K:
                raise ValueError(f"label_sets[{i}] = {S!r} has label {k!r}; labels must be integers "
                                 f"in [0, {K - 1}] (num_classes={K})")
        if len(set(S)) != len(S):
            raise ValueError(f"label_sets[{i}] = {S!r} repeats a label; a label set has distinct labels")
        out.append(tuple(sorted(int(k) for k in S)))
    return tuple(out)


def _check_counts(K: int, counts_by_size: Mapping[int, int]) -> dict[int, int]:
    if not isinstance(K, (int, np.integer)) or isinstance(K, bool) or K < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {K!r}")
    if not isinstance(counts_by_size, Mapping) or not counts_by_size:
        raise ValueError(f"counts_by_size must be a non-empty mapping {{set size m: count n_m}}, "
                         f"got {counts_by_size!r}")
    out = {}
    for m, n in counts_by_size.items():
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 1 <= m <= K:
            raise ValueError(f"counts_by_size keys (label-set sizes) must be integers in [1, {K}], "
                             f"got {m!r}")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"counts_by_size[{m}] must be an integer >= 1, got {n!r}")
        out[int(m)] = int(n)
    return dict(sorted(out.items()))


def canonical_label_sets(K: int, counts_by_size: Mapping[int, int]) -> tuple[tuple[int, ...], ...]:
    """Label sets of the balanced data, set-major: sizes ascending, each set of size m (in
    ``itertools.combinations`` order) repeated n_m times in a row.

    Examples:
        >>> canonical_label_sets(3, {1: 2, 2: 1})
        ((0,), (0,), (1,), (1,), (2,), (2,), (0, 1), (0, 2), (1, 2))
    """
    counts = _check_counts(K, counts_by_size)
    total = sum(n * math.comb(K, m) for m, n in counts.items())
    if total > MAX_LABEL_SETS:
        raise ValueError(f"counts_by_size={counts_by_size!r} with num_classes={K} describes {total:.3g} "
                         f"samples (Σ_m n_m C(K, m)); at most {MAX_LABEL_SETS:.0e} are enumerated")
    return tuple(S for m, n in counts.items() for S in itertools.combinations(range(K), m)
                 for _ in range(n))


def balanced_counts(K: int, label_sets: Sequence[Sequence[int]]) -> dict[int, int] | None:
    """{m: n_m} when every label set of each occurring size m occurs exactly n_m times, else None.

    The order of the samples does not matter. Label sets must already be valid (sorted tuples).

    Examples:
        >>> balanced_counts(3, [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2)])
        {1: 1, 2: 1}
        >>> balanced_counts(3, [(0,), (1,)]) is None
        True
    """
    occurrences = Counter(tuple(sorted(S)) for S in label_sets)
    counts: dict[int, int] = {}
    for m in sorted({len(S) for S in occurrences}):
        seen = {S: c for S, c in occurrences.items() if len(S) == m}
        values = set(seen.values())
        if len(seen) != math.comb(K, m) or len(values) != 1:
            return None
        counts[m] = values.pop()
    return counts


