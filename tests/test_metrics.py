"""Tests for qfcn.metrics: hand-worked GlaS fixtures, edge cases, public-port bugs (matching
and Hausdorff details are in test_matching.py)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from qfcn import metrics
from qfcn.metrics import glas_metrics

from instance_maps import instance_map, one

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_metrics", ROOT / "benchmarks" / "bench_metrics.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------- hand fixtures
def test_perfect_segmentation():
    gt = instance_map((40, 60), (3, 0, 10, 0, 10), (9, 20, 35, 30, 50))
    r = one(gt, gt.copy())
    assert (r["f1"], r["precision"], r["recall"]) == (1.0, 1.0, 1.0)
    assert (r["tp"], r["fp"], r["fn"], r["n_gt"], r["n_pred"]) == (2, 0, 0, 2, 2)
    assert r["object_dice"] == 1.0 and r["object_hausdorff"] == 0.0
    assert r["pixel_dice"] == 1.0 and r["pixel_iou"] == 1.0


def test_one_gland_split_in_two():
    # G: 10 x 20 (area 200); S1 = cols 0..11 (120 px, 60% -> tp), S2 = cols 12..19 (80 px, fp).
    gt = instance_map((20, 30), (1, 0, 10, 0, 20))
    pred = instance_map((20, 30), (1, 0, 10, 0, 12), (2, 0, 10, 12, 20))
    r = one(gt, pred)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 0)
    assert r["f1"] == pytest.approx(2 / 3)  # P = 1/2, R = 1
    # G term: Dice(G, S1) = 240/320 = 0.75. S term: 0.6 * 0.75 + 0.4 * 160/280.
    assert r["object_dice"] == pytest.approx(0.5 * (0.75 + 0.6 * 0.75 + 0.4 * 160 / 280))
    assert r["object_dice"] == pytest.approx(5 / 7)
    # H(G, S1) = 8 (col 19 to col 11), H(G, S2) = 12 (col 0 to col 12).
    assert r["object_hausdorff"] == pytest.approx(0.5 * (8 + 0.6 * 8 + 0.4 * 12))


def test_two_touching_glands_merged():
    gt = instance_map((20, 30), (1, 0, 10, 0, 10), (2, 0, 10, 10, 20))
    pred = instance_map((20, 30), (5, 0, 10, 0, 20))
    r = one(gt, pred)
    assert r["n_gt"] == 2  # touching ground-truth glands are not merged
    assert (r["tp"], r["fp"], r["fn"]) == (1, 0, 1)  # S matches G1 (tie -> smallest label)
    assert r["f1"] == pytest.approx(2 / 3)
    assert r["object_dice"] == pytest.approx(2 / 3)  # every Dice is 200/300
    assert r["object_hausdorff"] == pytest.approx(10.0)


def test_false_positive_far_away():
    gt = instance_map((60, 60), (1, 0, 10, 0, 10))
    pred = instance_map((60, 60), (1, 0, 10, 0, 10), (2, 50, 52, 50, 52))
    r = one(gt, pred)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 0)
    assert r["f1"] == pytest.approx(2 / 3)
    assert r["object_dice"] == pytest.approx(0.5 * (1 + 100 / 104))
    # FP paired with G: H = |(0,0) - (50,50)| = 50 sqrt 2, weight 4/104.
    assert r["object_hausdorff"] == pytest.approx(0.5 * 4 * 50 * math.sqrt(2) / 104)


def test_missed_gland():
    gt = instance_map((20, 40), (1, 0, 10, 0, 10), (2, 0, 10, 20, 30))
    pred = instance_map((20, 40), (1, 0, 10, 0, 10))
    r = one(gt, pred)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 0, 1)
    assert (r["precision"], r["recall"]) == (1.0, 0.5)
    assert r["object_dice"] == pytest.approx(0.5 * (0.5 + 1.0))
    # G2 pairs with S (H = 20), weight 1/2; S term 0.
    assert r["object_hausdorff"] == pytest.approx(0.5 * (0.5 * 20))


@pytest.mark.parametrize(
    "shift, tp, dice, hd",
    [(3, 1, 0.7, 3.0), (5, 0, 0.5, 5.0), (6, 0, 0.4, 6.0)],  # 70%, exactly 50%, 40% covered
)
def test_shifted_glands(shift, tp, dice, hd):
    gt = instance_map((20, 30), (1, 0, 10, 0, 10))
    pred = instance_map((20, 30), (4, 0, 10, shift, shift + 10))
    r = one(gt, pred)
    assert (r["tp"], r["fp"], r["fn"]) == (tp, 1 - tp, 1 - tp)
    assert r["f1"] == float(tp)
    assert r["object_dice"] == pytest.approx(dice)
    assert r["object_hausdorff"] == pytest.approx(hd)


def test_exactly_half_coverage_is_not_a_true_positive_but_51_percent_is():
    gt = instance_map((20, 30), (1, 0, 10, 0, 10))
    half = instance_map((20, 30), (2, 0, 10, 0, 5))  # 50 of 100 pixels
    assert one(gt, half)["tp"] == 0
    more = half.copy()
    more[0, 5] = 2  # 51 of 100
    assert one(gt, more)["tp"] == 1


def test_pooled_differs_from_per_image():
    gt_a = instance_map((20, 20), (1, 0, 10, 0, 10))
    gt_b = instance_map((30, 40), (1, 0, 10, 0, 10))
    r = glas_metrics([gt_a, gt_b], [gt_a.copy(), np.zeros_like(gt_b)], names=["a", "b"])
    a, b = r["per_image"]
    assert (a["name"], b["name"]) == ("a", "b")
    assert (a["f1"], b["f1"]) == (1.0, 0.0)
    assert (a["object_dice"], b["object_dice"]) == (1.0, 0.0)
    assert (a["object_hausdorff"], b["object_hausdorff"]) == (0.0, 50.0)  # hypot(30, 40)
    assert r["per_image_mean"] == {"f1": 0.5, "object_dice": 0.5, "object_hausdorff": 25.0}
    assert r["f1"] == pytest.approx(2 / 3)  # tp 1, fp 0, fn 1 pooled
    assert r["object_dice"] == pytest.approx(0.5 * (0.5 + 1.0))
    assert r["object_hausdorff"] == pytest.approx(0.5 * (0.5 * 0 + 0.5 * 50.0))
    assert r["pixel_dice"] == pytest.approx(200 / 300)


# --------------------------------------------------------------------------- edge cases
def test_empty_prediction():
    gt = instance_map((30, 40), (1, 0, 10, 0, 10))
    r = one(gt, np.zeros_like(gt))
    assert (r["f1"], r["precision"], r["recall"], r["object_dice"]) == (0.0, 0.0, 0.0, 0.0)
    assert r["object_hausdorff"] == 50.0  # the image diagonal
    assert (r["pixel_dice"], r["pixel_iou"]) == (0.0, 0.0)


def test_empty_ground_truth():
    pred = instance_map((30, 40), (1, 0, 10, 0, 10))
    r = one(np.zeros_like(pred), pred)
    assert (r["f1"], r["precision"], r["recall"], r["object_dice"]) == (0.0, 0.0, 0.0, 0.0)
    assert (r["tp"], r["fp"], r["fn"]) == (0, 1, 0)
    assert r["object_hausdorff"] == 50.0


def test_both_empty():
    z = np.zeros((30, 40), np.int64)
    r = one(z, z)
    assert (r["f1"], r["precision"], r["recall"]) == (1.0, 1.0, 1.0)
    assert (r["object_dice"], r["object_hausdorff"], r["pixel_dice"], r["pixel_iou"]) == (1.0, 0.0, 1.0, 1.0)


def test_hausdorff_counterpart_empty_in_one_image_only():
    # Image 1 has a far pair; image 2 has a prediction but no ground truth: its object is
    # paired with the diagonal of its own image, not with image 1's ground truth.
    gt1 = instance_map((20, 20), (1, 0, 4, 0, 4))
    p1 = instance_map((20, 20), (1, 0, 4, 0, 4))
    p2 = instance_map((6, 8), (1, 0, 2, 0, 2))
    r = glas_metrics([gt1, np.zeros_like(p2)], [p1, p2])
    # Pooled pred term: (16 * 0 + 4 * 10) / 20 = 2; gt term 0.
    assert r["object_hausdorff"] == pytest.approx(0.5 * 2.0)
    assert r["per_image"][1]["object_hausdorff"] == 10.0


def test_result_is_json_serialisable_plain_types():
    gt = instance_map((20, 30), (1, 0, 10, 0, 20))
    pred = instance_map((20, 30), (1, 0, 10, 0, 12), (2, 0, 10, 12, 20))
    r = glas_metrics([gt, gt], [pred, gt])
    json.dumps(r)
    for key in ("tp", "fp", "fn", "n_gt", "n_pred"):
        assert type(r[key]) is int and type(r["per_image"][0][key]) is int
    for key in ("f1", "object_dice", "object_hausdorff", "pixel_dice", "pixel_iou"):
        assert type(r[key]) is float and type(r["per_image"][1][key]) is float


# --------------------------------------------------------------------------- public-port bugs
def test_touching_glands_are_not_relabelled():
    gt = instance_map((20, 30), (1, 0, 10, 0, 10), (2, 0, 10, 10, 20))
    r = one(gt, gt.copy())
    assert (r["n_gt"], r["n_pred"], r["tp"], r["object_dice"]) == (2, 2, 2, 1.0)


def test_weights_are_areas_not_label_values():
    gt = instance_map((30, 40), (1, 0, 10, 0, 10), (100, 20, 24, 20, 25))  # areas 100, 20
    pred = instance_map((30, 40), (1, 0, 10, 0, 10))
    # G term (100 * 1 + 20 * 0) / 120, S term 1.
    assert one(gt, pred)["object_dice"] == pytest.approx(0.5 * (100 / 120 + 1))


def test_true_positive_uses_the_matched_object_not_the_union():
    gt = instance_map((20, 30), (1, 0, 10, 0, 10), (2, 0, 10, 10, 20))
    pred = instance_map((20, 30), (1, 0, 10, 4, 12))  # 60 px of G1, 20 px of G2
    r = one(gt, pred)  # union coverage would be 80 / 200 = 40%
    assert (r["tp"], r["fp"], r["fn"]) == (1, 0, 1)


# --------------------------------------------------------------------------- single-image API
def test_single_image_functions():
    gt = instance_map((20, 30), (1, 0, 10, 0, 20))
    pred = instance_map((20, 30), (1, 0, 10, 0, 12), (2, 0, 10, 12, 20))
    assert metrics.object_f1(gt, pred) == pytest.approx(2 / 3)
    assert metrics.object_dice(gt, pred) == pytest.approx(5 / 7)
    assert metrics.object_hausdorff(gt, pred) == pytest.approx(8.8)
    assert metrics.pixel_dice(gt, pred) == 1.0 and metrics.pixel_iou(gt, pred) == 1.0


def test_pixel_metrics_agree_with_monai():
    from monai.metrics import compute_dice, compute_iou

    rng = np.random.default_rng(2)
    for _ in range(5):
        gt = (rng.random((32, 48)) < 0.4) * rng.integers(1, 600, (32, 48))
        pred = (rng.random((32, 48)) < 0.5) * rng.integers(1, 600, (32, 48))
        y = torch.as_tensor(gt > 0, dtype=torch.float32)[None, None]
        yp = torch.as_tensor(pred > 0, dtype=torch.float32)[None, None]
        assert metrics.pixel_dice(gt, pred) == pytest.approx(float(compute_dice(yp, y)), rel=1e-6)
        assert metrics.pixel_iou(gt, pred) == pytest.approx(float(compute_iou(yp, y)), rel=1e-6)


def test_agrees_with_per_object_reference_on_random_instances():
    bench = load_bench()
    rng = np.random.default_rng(3)
    gts, preds = [], []
    for k in range(8):
        h, w = 48, 64
        gt = np.zeros((h, w), np.int32)
        pred = np.zeros((h, w), np.int32)
        for m in (gt, pred):
            for _ in range(rng.integers(0 if k % 4 == 0 else 1, 6)):
                r0, c0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
                m[r0:r0 + rng.integers(2, 15), c0:c0 + rng.integers(2, 15)] = rng.integers(1, 1000)
        gts.append(gt)
        preds.append(pred)
    ours = glas_metrics(gts, preds)
    ref = bench.reference_glas_metrics(gts, preds)
    for key in ("f1", "object_dice", "object_hausdorff"):
        assert ours[key] == pytest.approx(ref[key], rel=1e-9, abs=1e-12)
        for o, r in zip(ours["per_image"], ref["per_image"]):
            assert o[key] == pytest.approx(r[key], rel=1e-9, abs=1e-12)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "pred, message",
    [
        (np.zeros((10, 10), np.float32), "integer labels"),
        (-np.ones((10, 10), np.int32), ">= 0"),
        (np.zeros((10, 12), np.int32), "differ"),
        (np.zeros((10, 10, 3), np.int32), "2-D"),
        (np.zeros((10, 10), bool), "integer labels"),
    ],
)
def test_bad_input_names_the_image(pred, message):
    gt = np.zeros((10, 10), np.int32)
    with pytest.raises(ValueError, match=message) as err:
        glas_metrics([gt, gt], [gt, pred], names=["testA_1", "testA_2"])
    assert "image 1" in str(err.value) and "testA_2" in str(err.value)


def test_bad_sequence_lengths():
    gt = np.zeros((10, 10), np.int32)
    with pytest.raises(ValueError, match="predictions"):
        glas_metrics([gt, gt], [gt])
    with pytest.raises(ValueError, match="names"):
        glas_metrics([gt], [gt], names=["a", "b"])
    with pytest.raises(ValueError, match="no images"):
        glas_metrics([], [])


def test_hausdorff_can_be_skipped_without_changing_the_rest():
    gt = np.zeros((30, 30), np.int32)
    gt[2:12, 2:12], gt[15:28, 10:25] = 1, 2
    pred = np.roll(gt, 2, axis=1)
    pred[0:3, 25:29] = 9
    full = glas_metrics([gt, gt], [pred, np.zeros_like(gt)])
    fast = glas_metrics([gt, gt], [pred, np.zeros_like(gt)], hausdorff=False)
    assert math.isnan(fast["object_hausdorff"]) and math.isnan(fast["per_image"][1]["object_hausdorff"])
    for key in ("f1", "object_dice", "pixel_dice", "tp", "fp", "fn"):
        assert fast[key] == full[key]
    both_empty = glas_metrics([np.zeros_like(gt)], [np.zeros_like(gt)], hausdorff=False)
    assert math.isnan(both_empty["object_hausdorff"]) and both_empty["f1"] == 1.0
