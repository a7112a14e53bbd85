"""Pareto dominance, fronts and exact hypervolumes on hand-computed cases."""

import itertools

import numpy as np
import pytest

from hf_ptjf.analysis.pareto import (
    FrontComparison,
    compare_fronts,
    dominated_by,
    dominates,
    hypervolume,
    non_dominated,
    pareto_front,
    pareto_indices,
    reference_point,
)

STAIRS = [[1, 3], [2, 2], [3, 1]]  # hv vs (4, 4) = 3*1 + 2*1 + 1*1 = 6


def _hv_inclusion_exclusion(points, ref):
    """Brute-force reference: sum over subsets of (-1)^(|S|+1) * vol(intersection of boxes)."""
    pts = [p for p in np.asarray(points, float) if np.all(p < ref)]
    total = 0.0
    for r in range(1, len(pts) + 1):
        for subset in itertools.combinations(pts, r):
            corner = np.max(subset, axis=0)
            total += (-1) ** (r + 1) * np.prod(np.asarray(ref) - corner)
    return total


def test_dominates():
    assert dominates([1, 2], [2, 2]) and dominates([1, 1], [2, 2])
    assert not dominates([1, 2], [1, 2])  # never itself
    assert not dominates([1, 3], [2, 2]) and not dominates([2, 2], [1, 3])
    assert dominates([1, 1, 1], [1, 1, np.inf])
    with pytest.raises(ValueError, match="same number of objectives"):
        dominates([1, 2], [1, 2, 3])


def test_non_dominated_mask_and_front_order():
    pts = [[3, 1], [2, 2], [2.5, 2.5], [1, 3], [4, 4]]
    np.testing.assert_array_equal(non_dominated(pts), [True, True, False, True, False])
    np.testing.assert_array_equal(pareto_indices(pts), [3, 1, 0])
    np.testing.assert_array_equal(pareto_front(pts), [[1, 3], [2, 2], [3, 1]])


def test_duplicates_are_deterministic():
    pts = [[2, 1], [1, 2], [1, 2], [1, 2], [3, 3]]
    np.testing.assert_array_equal(non_dominated(pts), [True, True, False, False, False])
    np.testing.assert_array_equal(non_dominated(pts, keep_duplicates=True), [True, True, True, True, False])
    np.testing.assert_array_equal(pareto_front(pts), [[1, 2], [2, 1]])
    assert hypervolume(pts, [4, 4]) == pytest.approx(hypervolume([[2, 1], [1, 2]], [4, 4]))
    # a point only tied on one objective is still dominated
    np.testing.assert_array_equal(non_dominated([[1, 2], [1, 3]]), [True, False])


def test_single_and_empty():
    np.testing.assert_array_equal(non_dominated([[5, 5]]), [True])
    np.testing.assert_array_equal(pareto_front([[5, 5]]), [[5, 5]])
    assert hypervolume([[1, 1]], [3, 2]) == pytest.approx(2.0)
    assert non_dominated([]).shape == (0,)
    assert hypervolume([], [1, 1]) == 0.0


def test_hypervolume_2d_hand_values():
    assert hypervolume(STAIRS, [4, 4]) == pytest.approx(6.0)
    # dominated point and points outside / on the reference add nothing
    assert hypervolume(STAIRS + [[3, 3], [5, 0], [4, 0.5], [0.5, np.inf]], [4, 4]) == pytest.approx(6.0)
    assert hypervolume([[5, 5]], [4, 4]) == 0.0
    assert hypervolume([[1, 2], [2, 1]], [3, 3]) == pytest.approx(3.0)  # 2 + 2 - 1


def test_hypervolume_3d_hand_values():
    # three boxes of 6, pairwise overlaps of 2, triple overlap 1: 18 - 6 + 1 = 13
    assert hypervolume([[1, 2, 3], [2, 3, 1], [3, 1, 2]], [4, 4, 4]) == pytest.approx(13.0)
    assert hypervolume([[0, 0, 0], [0.5, 0.5, 0.5]], [1, 2, 3]) == pytest.approx(6.0)
    assert hypervolume([[0, 0, 0]], [1, 2, 3]) == pytest.approx(6.0)
    assert hypervolume([[1, 1, 5]], [4, 4, 4]) == 0.0


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_hypervolume_matches_inclusion_exclusion(k):
    rng = np.random.default_rng(k)
    pts = np.round(rng.uniform(0, 1, size=(7, k)), 2)  # rounding makes ties likely
    ref = np.full(k, 0.9)
    assert hypervolume(pts, ref) == pytest.approx(_hv_inclusion_exclusion(pts, ref), abs=1e-12)


def test_compare_fronts():
    cmp = compare_fronts([[1, 1]], [[2, 2], [0.5, 3]], [4, 4])
    assert isinstance(cmp, FrontComparison)
    np.testing.assert_array_equal(cmp.a_dominated, [False])
    np.testing.assert_array_equal(cmp.b_dominated, [True, False])
    assert cmp.hv_a == pytest.approx(9.0) and cmp.hv_b == pytest.approx(5.5)  # 3.5*1 + 2*1
    assert cmp.hv_diff == pytest.approx(3.5)
    assert not cmp.a_strictly_better
    assert compare_fronts([[0, 0]], STAIRS, [4, 4]).a_strictly_better


def test_identical_fronts():
    cmp = compare_fronts(STAIRS, STAIRS, [4, 4])
    assert not cmp.a_dominated.any() and not cmp.b_dominated.any()
    assert cmp.hv_a == cmp.hv_b == pytest.approx(6.0) and cmp.hv_diff == 0.0


def test_dominated_by():
    np.testing.assert_array_equal(dominated_by(STAIRS, [[2, 2]]), [False, False, False])
    pts = [[3, 3], [0.5, 4], [1, 4]]
    np.testing.assert_array_equal(dominated_by(pts, STAIRS), [True, False, True])
    np.testing.assert_array_equal(dominated_by(STAIRS, []), [False, False, False])


def test_reference_point():
    np.testing.assert_allclose(reference_point([[1, 5], [3, 2]]), [3.2, 5.3])
    np.testing.assert_allclose(reference_point([[2, 2]]), [2.2, 2.2])  # zero range: 10% of |max|
    np.testing.assert_allclose(reference_point([[1, 5], [3, np.inf]]), [3.2, 5.5])  # inf ignored
    with pytest.raises(ValueError, match="margin"):
        reference_point([[1, 1]], margin=0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: non_dominated([1, 2, 3]), "2-D"),
        (lambda: non_dominated([[1, np.nan]]), "NaN"),
        (lambda: hypervolume([[1, 2, 3]], [4, 4]), "objectives"),
        (lambda: hypervolume([[1, 2]], [np.inf, 4]), "finite"),
        (lambda: hypervolume([[1, 2]], 4), "reference"),
        (lambda: dominated_by([[1, 2]], [[1, 2, 3]]), "objectives"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_front_objectives_orient_each_metric_for_minimization():
    from hf_ptjf.analysis.pareto import FRONT_METRICS, front_objectives

    records = [{"trial": "a", "final": {"hr": 1.0, "lr": 2.0}, "chrf": {"hr": 40.0, "lr": 20.0},
                "off_target": {"hr": 0.0, "lr": 0.5}},
               {"trial": "b", "final": {"hr": 2.0, "lr": 1.0}, "chrf": {"hr": 30.0, "lr": 30.0},
                "off_target": {"hr": 0.1}},  # no lr rate (its target unknown to the detector): not on that front
               {"trial": "c", "final": {"hr": 3.0, "lr": 3.0}, "chrf": {"hr": 20.0, "lr": float("nan")}}]
    kept, values, minimized = front_objectives(records, ["hr", "lr"], "chrf")
    assert [r["trial"] for r in kept] == ["a", "b"] and values.tolist() == [[40.0, 20.0], [30.0, 30.0]]
    assert minimized.tolist() == [[-40.0, -20.0], [-30.0, -30.0]]  # higher chrF++ is better
    assert pareto_indices(minimized).tolist() == [0, 1]  # neither dominates the other
    kept, values, minimized = front_objectives(records, ["hr", "lr"], "off_target")
    assert [r["trial"] for r in kept] == ["a"] and (values == minimized).all()  # lower is better: as recorded
    kept, _, minimized = front_objectives(records, ["hr", "lr"], "loss")
    assert len(kept) == 3 and pareto_indices(minimized).tolist() == [0, 1]
    assert set(FRONT_METRICS) == {"loss", "chrf", "off_target", "bleu"}
    with pytest.raises(ValueError, match="not a front metric"):
        front_objectives(records, ["hr", "lr"], "ter")
