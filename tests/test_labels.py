"""ufm.labels, the one home for labels: values built by hand, and every bad input refused by name."""

import numpy as np
import pytest

from ufm import labels as L


def test_class_major_labels_and_one_hot_by_hand():
    np.testing.assert_array_equal(L.class_major_labels((2, 1, 3)), [0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(L.one_hot([2, 0], 3), [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(L.multi_hot([(0, 2), {1}], 3), [[1, 0, 1], [0, 1, 0]])


@pytest.mark.parametrize("labels, fragment", [
    ([0, -1], r"labels\[1\] = -1 is out of range"),
    ([0, 3], r"labels\[1\] = 3 is out of range"),
    ([0.5, 1], "integer class indices"),
    ([], "non-empty 1-D"),
    ([[0, 1]], "non-empty 1-D"),
    ([True, False], "integer class indices"),
    (["a"], "integer class indices"),
])
def test_check_labels_refuses(labels, fragment):
    with pytest.raises(ValueError, match=fragment):
        L.check_labels(labels, 3)


def test_check_labels_accepts_integral_floats_and_names_the_argument():
    np.testing.assert_array_equal(L.check_labels(np.array([0.0, 2.0]), 3), [0, 2])
    with pytest.raises(ValueError, match="targets"):
        L.check_labels([5], 3, name="targets")


@pytest.mark.parametrize("sets", [[(0, -1)], [(3,)], [()], [(0.0,)], [(True,)]])
def test_multi_hot_refuses_bad_sets(sets):
    with pytest.raises(ValueError, match="label_sets"):
        L.multi_hot(sets, 3)


def test_one_hot_and_multi_hot_refuse_bad_num_classes():
    for bad in (0, None, 2.5, "3"):
        with pytest.raises(ValueError, match="num_classes"):
            L.one_hot([0], bad)
        with pytest.raises(ValueError, match="num_classes"):
            L.multi_hot([(0,)], bad)


def test_normalise_counts():
    assert L.normalise_counts(3, 2) == 2
    assert L.normalise_counts(3, (2, 2, 2)) == 2  # balanced counts collapse to one int
    assert L.normalise_counts(3, [1, 2, np.int64(3)]) == (1, 2, 3)
    assert L.counts_tuple(3, 2) == (2, 2, 2)
    for K, counts, fragment in [(1, 2, "num_classes"), (3, 0, "num_per_class"), (3, (1, 2), "one count per class"),
                                (3, (1, 0, 1), r"num_per_class\[1\]"), (3, True, "num_per_class"),
                                (3, 2.0, "num_per_class")]:
        with pytest.raises(ValueError, match=fragment):
            L.normalise_counts(K, counts)


def test_label_sets_and_balanced_counts():
    assert L.normalise_label_sets(np.array([[1, 1, 0], [0, 0, 1]]), 3) == ((0, 1), (2,))
    sets = L.canonical_label_sets(3, {1: 2, 2: 1})
    assert len(sets) == 2 * 3 + 1 * 3  # Σ_m n_m C(K, m)
    assert L.balanced_counts(3, sets[::-1]) == {1: 2, 2: 1}  # order does not matter
    assert L.balanced_counts(3, sets[1:]) is None
    for bad, fragment in [(np.array([[0, 0, 0]]), "empty"), (np.array([[2, 0, 0]]), "entries in"),
                          (np.ones((1, 4)), "shape"), ([[0], [0, 0]], "repeats"), ("abc", "non-empty sequence")]:
        with pytest.raises(ValueError, match=fragment):
            L.normalise_label_sets(bad, 3)


def test_astronomical_label_set_specs_are_refused_before_enumeration():
    with pytest.raises(ValueError, match="at most"):
        L.canonical_label_sets(200, {100: 1})  # C(200, 100) ≈ 9e58 sets
