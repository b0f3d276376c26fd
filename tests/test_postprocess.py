"""Tests for qfcn.postprocess: probabilities to instances, and threshold tuning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qfcn import metrics, postprocess
from qfcn.postprocess import instances_from_probs, tune_postprocess


def touching_pair(contour: bool = True):
    """Two touching 10 x 15 glands (gt labels 1, 2) with object/contour probabilities."""
    gt = np.zeros((20, 40), np.int32)
    gt[5:15, 5:20] = 1
    gt[5:15, 20:35] = 2
    obj = np.where(gt > 0, 0.9, 0.05)
    cnt = np.full(gt.shape, 0.05)
    if contour:
        cnt[5:15, 19:21] = 0.8  # the shared border, 2 px wide
    return gt, obj, cnt


def test_separates_touching_glands_when_contour_predicted():
    gt, obj, cnt = touching_pair(contour=True)
    lab = instances_from_probs(obj, cnt, min_area=10)
    assert lab.dtype == np.int32 and lab.shape == gt.shape
    assert np.unique(lab).tolist() == [0, 1, 2]
    assert ((lab > 0) == (gt > 0)).all()  # contour pixels are grown back
    assert metrics.object_f1(gt, lab) == 1.0
    assert metrics.object_dice(gt, lab) > 0.9


def test_touching_glands_merge_without_contour():
    gt, obj, cnt = touching_pair(contour=False)
    lab = instances_from_probs(obj, cnt, min_area=10)
    assert np.unique(lab).tolist() == [0, 1]


@pytest.mark.parametrize("grow", ["watershed", "dilation", "none"])
def test_grow_methods(grow):
    gt, obj, cnt = touching_pair(contour=True)
    lab = instances_from_probs(obj, cnt, min_area=10, grow=grow, grow_distance=1)
    assert np.unique(lab).tolist() == [0, 1, 2]
    fg = (lab > 0).sum()
    assert fg == (300 if grow != "none" else 280)  # "none" leaves the contour columns out


def test_min_area_drops_small_objects():
    obj = np.zeros((30, 30))
    obj[2:12, 2:12] = 0.9  # 100 px
    obj[20:25, 20:26] = 0.9  # 30 px
    cnt = np.zeros_like(obj)
    assert np.unique(instances_from_probs(obj, cnt, min_area=50)).tolist() == [0, 1]
    assert np.unique(instances_from_probs(obj, cnt, min_area=20)).tolist() == [0, 1, 2]


def test_holes_filled_up_to_hole_area():
    obj = np.zeros((30, 30))
    obj[5:25, 5:25] = 0.9
    obj[12:16, 12:16] = 0.1  # a 16 px lumen
    cnt = np.zeros_like(obj)
    filled = instances_from_probs(obj, cnt, hole_area=16)
    assert (filled[12:16, 12:16] == 1).all() and (filled > 0).sum() == 400
    kept = instances_from_probs(obj, cnt, hole_area=15)
    assert (kept[12:16, 12:16] == 0).all() and (kept > 0).sum() == 384


def test_threshold_is_strict():
    obj = np.zeros((20, 20))
    obj[2:12, 2:12] = 0.5
    cnt = np.zeros_like(obj)
    assert instances_from_probs(obj, cnt, object_threshold=0.5).max() == 0
    assert instances_from_probs(obj, cnt, object_threshold=0.49).max() == 1


@pytest.mark.parametrize(
    "obj, message",
    [
        (np.full((8, 8), 1.5), r"\[0, 1\]"),
        (np.full((8, 8), -0.1), r"\[0, 1\]"),
        (np.full((8, 8), np.nan), "NaN"),
        (np.zeros((8, 9)), "differ"),
        (np.zeros((8, 8, 2)), "2-D"),
    ],
)
def test_bad_probabilities(obj, message):
    with pytest.raises(ValueError, match=message):
        instances_from_probs(obj, np.zeros((8, 8)))


def test_bad_parameters():
    z = np.zeros((8, 8))
    with pytest.raises(ValueError, match="grow"):
        instances_from_probs(z, z, grow="erode")
    with pytest.raises(ValueError, match="object_threshold"):
        instances_from_probs(z, z, object_threshold=1.2)
    with pytest.raises(ValueError, match="min_area"):
        instances_from_probs(z, z, min_area=-1)


def test_tune_refuses_test_split():
    gt, obj, cnt = touching_pair()
    for split in ("test", "testA", "Test_B", " test"):
        with pytest.raises(ValueError, match="validation"):
            tune_postprocess([obj], [cnt], [gt], split=split)


def test_tune_finds_thresholds_on_validation():
    # Objects at 0.45 and the shared contour at 0.55: only object thresholds below 0.45
    # find the glands, and only contour thresholds below 0.55 separate them.
    gt, _, _ = touching_pair()
    obj = np.where(gt > 0, 0.45, 0.0)
    cnt = np.zeros(gt.shape)
    cnt[5:15, 19:21] = 0.55
    grid = {"object_threshold": [0.3, 0.5], "contour_threshold": [0.6, 0.5]}
    best, table, _ = tune_postprocess([obj, obj], [cnt, cnt], [gt, gt], grid=grid, min_area=10)
    assert isinstance(table, pd.DataFrame) and len(table) == 4
    assert best["object_threshold"] == 0.3 and best["contour_threshold"] == 0.5
    assert best["min_area"] == 10 and type(best["object_threshold"]) is float
    assert table["best"].sum() == 1 and table.loc[table["best"], "f1"].item() == 1.0
    assert table["f1"].tolist() == [pytest.approx(2 / 3), 1.0, 0.0, 0.0]


def test_tune_minimises_hausdorff_and_default_grid_is_small():
    gt, obj, cnt = touching_pair()
    best, table, _ = tune_postprocess([obj], [cnt], [gt], metric="object_hausdorff", min_area=10)
    assert len(table) == len(postprocess.DEFAULT_GRID["object_threshold"]) * len(
        postprocess.DEFAULT_GRID["contour_threshold"]
    ) <= 50
    assert table.loc[table["best"], "object_hausdorff"].item() == table["object_hausdorff"].min()


def test_tune_bad_arguments():
    gt, obj, cnt = touching_pair()
    with pytest.raises(ValueError, match="metric"):
        tune_postprocess([obj], [cnt], [gt], metric="accuracy")
    with pytest.raises(ValueError, match="unknown"):
        tune_postprocess([obj], [cnt], [gt], grid={"threshold": [0.5]})
    with pytest.raises(ValueError, match="equal"):
        tune_postprocess([obj], [cnt], [gt, gt])
    with pytest.raises(ValueError, match=r"object_probs\[0\]"):
        tune_postprocess([obj * 2], [cnt], [gt])


def test_thousands_of_fragments_are_rejected_before_growing():
    obj = np.zeros((512, 512))
    obj[::7, ::7] = 0.9  # isolated one-pixel fragments (74 x 74 grid)
    obj[95:145, 195:265] = 0.0
    obj[100:140, 200:260] = 0.95  # and one gland
    n_frag = int((obj == 0.9).sum())
    cnt = np.zeros_like(obj)
    lab, stats = instances_from_probs(obj, cnt, min_area=50, return_stats=True)
    assert n_frag > 5000
    assert stats == {"n_components": n_frag + 1, "n_small": n_frag, "n_objects": 1}
    assert np.unique(lab).tolist() == [0, int(lab.max())] and (lab > 0).sum() == 2400


def test_tuning_table_is_the_threshold_sensitivity_table():
    gt, obj, cnt = touching_pair()
    best, table, edge = tune_postprocess([obj], [cnt], [gt], min_area=10)
    assert list(table.columns) == ["object_threshold", "contour_threshold", "f1", "object_dice", "precision",
                                   "recall", "pixel_dice", "n_pred", "best"]
    assert len(table) == 20 and set(edge) == {"object_threshold", "contour_threshold"}


def test_tie_break_is_object_dice():
    # both thresholds find the two glands (F1 = 1); 0.3 also takes a 1-pixel halo: lower Dice
    gt, obj, cnt = touching_pair()
    obj = np.where(gt > 0, 0.9, 0.0)
    obj[4, 5:15] = 0.4
    best, table, _ = tune_postprocess([obj], [cnt], [gt], grid={"object_threshold": [0.3, 0.5]}, min_area=10)
    assert table["f1"].tolist() == [1.0, 1.0] and table["object_dice"].iloc[0] < table["object_dice"].iloc[1]
    assert best["object_threshold"] == 0.5


def test_edge_extension_is_bounded():
    # a gland with a halo whose probability falls off column by column: the higher the object
    # threshold, the smaller the halo and the better the object Dice, up to the range bound
    gt = np.zeros((20, 60), np.int32)
    gt[5:15, 5:15] = 1
    obj = np.where(gt > 0, 1.0, 0.0)
    obj[5:15, 15:55] = 0.999 - 0.005 * np.arange(40)
    cnt = np.zeros_like(obj)
    best, table, edge = tune_postprocess([obj], [cnt], [gt], grid={"object_threshold": [0.8, 0.85]}, min_area=10,
                                         extend=6)
    values = table["object_threshold"].tolist()
    assert values[:2] == [0.8, 0.85] and max(values) <= 0.99 and len(values) <= 2 + 6
    assert values == sorted(values) and best["object_threshold"] == max(values)
    assert edge == {"object_threshold": True}  # still the best at the bound: recorded
