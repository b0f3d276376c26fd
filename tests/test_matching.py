"""Tests for qfcn.matching: label compaction, largest-overlap matching and exact Hausdorff
distances, directly and through the public functions of qfcn.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import directed_hausdorff
from skimage.metrics import hausdorff_distance as sk_hd

from qfcn import matching, metrics
from qfcn.metrics import glas_metrics

from instance_maps import instance_map, one


def test_labels_above_255_do_not_wrap():
    gt = instance_map((20, 30), (1, 0, 10, 0, 10), (257, 0, 10, 15, 25))  # 257 -> 1 in uint8
    pred = instance_map((20, 30), (1, 0, 10, 0, 10), (2, 0, 10, 15, 25))
    r = one(gt, pred)
    assert (r["n_gt"], r["tp"], r["f1"], r["object_dice"]) == (2, 2, 1.0, 1.0)
    r16 = one(gt.astype(np.uint16), pred.astype(np.uint64))
    assert r16["f1"] == 1.0


def test_background_never_wins_the_match():
    gt = instance_map((20, 40), (1, 0, 10, 0, 10))
    pred = instance_map((20, 40), (1, 0, 10, 4, 30))  # 60 px on G, 200 px on background
    m = metrics.match_objects(gt, pred)
    assert m["pred_match"].tolist() == [1] and m["pred_overlap"].tolist() == [60]
    assert one(gt, pred)["tp"] == 1


def test_non_overlapping_object_paired_by_hausdorff_not_centroid():
    # FP pixel at (0, 0). G_a rows/cols 2..21: centroid 16.3 away but H = |(21, 21)| = 29.7.
    # G_b pixel (0, 20): centroid 20 away and H = 20, the Hausdorff-nearest.
    gt = instance_map((40, 40), (1, 2, 22, 2, 22), (2, 0, 1, 20, 21))
    pred = gt.copy()
    pred[0, 0] = 3
    r = one(gt, pred)
    assert r["object_hausdorff"] == pytest.approx(0.5 * 20 / 402)


def test_labels_not_one_to_n_and_empty_images():
    gt = instance_map((20, 30), (5, 0, 10, 0, 10), (1000, 12, 20, 0, 10))
    pred = instance_map((20, 30), (77, 0, 10, 0, 10), (2**40, 12, 20, 0, 10), dtype=np.int64)
    r = glas_metrics([gt, np.zeros_like(gt)], [pred, np.zeros_like(gt)])  # 2**40: sort path
    assert (r["tp"], r["n_gt"], r["f1"], r["object_dice"]) == (2, 2, 1.0, 1.0)
    assert r["per_image"][1]["f1"] == 1.0


def test_hausdorff_uses_point_sets_and_is_exact_for_ring():
    # A square ring (rows/cols 0..20 minus 5..15) with a 3 x 3 object (9..11) in its hole.
    # Ring -> object: corner (0, 0) to (9, 9) = 9 sqrt 2; object -> ring: (10, 10) to
    # (10, 4) = 6. The farthest ring pixel is not the nearest boundary.
    ring = np.zeros((25, 25), bool)
    ring[0:21, 0:21] = True
    ring[5:16, 5:16] = False
    inner = np.zeros_like(ring)
    inner[9:12, 9:12] = True
    assert metrics.hausdorff_distance(ring, inner) == pytest.approx(9 * math.sqrt(2))
    a, b = np.argwhere(ring), np.argwhere(inner)
    assert metrics.hausdorff_distance(ring, inner) == pytest.approx(
        max(directed_hausdorff(a, b)[0], directed_hausdorff(b, a)[0])
    )
    gt = ring.astype(np.int32) * 12
    gt[inner] = 40
    r = one(gt, gt * (gt == 12))  # the inner object is missed; H pairs it with the ring
    assert r["object_hausdorff"] == pytest.approx(0.5 * 9 / (ring.sum() + 9) * 9 * math.sqrt(2))


def test_hausdorff_distance_matches_point_set_reference():
    rng = np.random.default_rng(1)
    for _ in range(20):
        a = rng.random((25, 33)) < rng.uniform(0.01, 0.2)
        b = rng.random((25, 33)) < rng.uniform(0.01, 0.2)
        pa, pb = np.argwhere(a), np.argwhere(b)
        expected = max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0])
        assert metrics.hausdorff_distance(a, b) == pytest.approx(expected)
        assert metrics.hausdorff_distance(a, b) == pytest.approx(sk_hd(a, b))
    z = np.zeros((5, 5), bool)
    assert metrics.hausdorff_distance(z, z) == 0.0
    assert metrics.hausdorff_distance(z, ~z) == math.inf


def test_tie_goes_to_smallest_label():
    gt = instance_map((20, 30), (7, 0, 10, 0, 10), (3, 10, 15, 0, 20))  # both area 100
    pred = instance_map((20, 30), (4, 0, 15, 0, 20))  # covers both fully
    m = metrics.match_objects(gt, pred)
    assert m["pred_match"].tolist() == [3]
    assert m["gt_labels"].tolist() == [3, 7] and m["gt_match"].tolist() == [4, 4]


def test_objects_dense_and_sorted_paths_agree():
    gt = instance_map((20, 30), (5, 0, 10, 0, 10), (1000, 12, 20, 0, 10), (7, 0, 4, 20, 30), dtype=np.int64)
    dense, sort = matching.Objects(gt), matching.Objects(gt * 2**40)  # 2**40: sort path
    assert dense.labels.tolist() == [5, 7, 1000] and sort.labels.tolist() == [5 * 2**40, 7 * 2**40, 1000 * 2**40]
    assert dense.areas.tolist() == sort.areas.tolist() == [100, 40, 80]
    assert np.array_equal(dense.index, sort.index) and dense.boxes == sort.boxes


def test_sparse_overlap_table_matches_dense(monkeypatch):
    rng = np.random.default_rng(4)
    gt = np.arange(1, 31 * 31 + 1).reshape(31, 31)[:30, :30] * (rng.random((30, 30)) < 0.9)
    pred = np.roll(gt, 1, axis=1)
    g, s = matching.Objects(gt), matching.Objects(pred)
    dense = matching.overlaps(g, s)
    monkeypatch.setattr(matching, "_DENSE_TABLE_LIMIT", 0)  # cells > pixels: the sparse path
    sparse = matching.overlaps(g, s)
    order = np.lexsort((dense[1], dense[0]))
    for d, sp in zip(dense, sparse):
        assert d[order].tolist() == sp.tolist()


def test_box_bounds_never_exceed_the_exact_distance():
    rng = np.random.default_rng(5)
    for _ in range(10):
        a = (rng.random((30, 40)) < 0.02) * rng.integers(1, 9, (30, 40))
        b = (rng.random((30, 40)) < 0.02) * rng.integers(1, 9, (30, 40))
        g, s = matching.Objects(a), matching.Objects(b)
        if not (g.n and s.n):
            continue
        for k in range(1, g.n + 1):
            exact = [matching.pair_hausdorff(g, k, s, m) for m in range(1, s.n + 1)]
            assert np.all(matching.box_bounds(g, k, s) <= np.array(exact) + 1e-12)
            best, d = matching.nearest_by_hausdorff(g, k, s, lambda i, j: matching.pair_hausdorff(g, i, s, j))
            assert d == min(exact) and best == 1 + exact.index(min(exact))


def test_thousands_of_fragments_on_both_sides_use_a_sparse_overlap_table():
    # 5476 one-pixel objects in each map: a dense table would have 30 million cells
    gt = np.zeros((512, 512), np.int32)
    gt[::7, ::7] = np.arange(1, 74 * 74 + 1).reshape(74, 74)
    pred = gt.copy()
    pred[pred > 0] += 10  # other labels, same pixels
    g, s = matching.Objects(gt), matching.Objects(pred)
    assert (g.n + 1) * (s.n + 1) > max(matching._DENSE_TABLE_LIMIT, gt.size)  # the sparse path
    gi, si, cnt = matching.overlaps(g, s)
    assert gi.size == g.n == 5476 and (gi == si).all() and (cnt == 1).all()
    r = glas_metrics([gt], [pred])
    assert (r["f1"], r["object_dice"], r["object_hausdorff"]) == (1.0, 1.0, 0.0)
