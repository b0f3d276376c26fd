"""Tests of qfcn.score: areas, gland counts, and evaluate_ensemble on tiny hand-made inputs."""

import numpy as np
import pytest
import torch
from torch import nn

from qfcn import postprocess, score
from qfcn.data import Sample


def test_scaled_areas_follow_the_square_of_the_scale():
    assert score.scaled_areas(1.0) == {"min_area": 50, "hole_area": 500}
    assert score.scaled_areas(0.5, 40, 400) == {"min_area": 10, "hole_area": 100}
    assert score.scaled_areas(0.01) == {"min_area": 1, "hole_area": 1}
    with pytest.raises(ValueError, match="scale=0"):
        score.scaled_areas(0)


def test_n_glands_counts_instances_over_samples():
    inst = np.zeros((8, 8), np.int32)
    inst[1:3, 1:3], inst[1:3, 3:5], inst[5:7, 5:7] = 1, 2, 3
    s = [Sample("train_1", "train", np.zeros((8, 8, 3), np.uint8), inst),
         Sample("train_2", "train", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.int32))]
    assert score.n_glands(s) == 3


def test_evaluate_ensemble_needs_a_validation_split():
    with pytest.raises(ValueError, match="validation split is empty"):
        score.evaluate_ensemble([], {}, val=[])


# ------------------------------------------------------------------ evaluate_ensemble on a stub model
class DarkIsGland(nn.Module):
    """Object probability = 1 - red channel (so the image paints the prediction); contour ~0."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x, return_descriptor=False):
        p = (1.0 - x[:, :1]).clamp(1e-6, 1 - 1e-6)
        obj = torch.log(p / (1 - p)) + 0 * self.w
        con = torch.full_like(obj, -20.0)
        return obj, con, torch.zeros(x.shape[0], 4)


def sample(name, split, glands, prob, background=0.0):
    """24x24 image whose object probability is ``prob`` inside the drawn squares (each
    (y, x, side)) and ``background`` elsewhere; ``glands`` are also the ground truth."""
    inst = np.zeros((24, 24), np.int32)
    p = np.full((24, 24), background)
    for k, (y, x, side) in enumerate(glands, 1):
        inst[y:y + side, x:x + side] = k
        p[y:y + side, x:x + side] = prob
    red = np.round((1.0 - p) * 255).astype(np.uint8)
    return Sample(name, split, np.stack([red, red, red], -1), inst)


TWO = [(2, 2, 6), (14, 14, 6)]
GRID = {"object_threshold": [0.5, 0.7], "contour_threshold": [0.5]}


def test_evaluate_ensemble_hand_computed_f1_and_dice():
    val = [sample("train_1", "train", TWO, 0.9)]
    test = sample("testA_1", "testA", TWO, 0.9)
    test.image[14:20, 14:20] = 255  # the second gland is not predicted
    r = score.evaluate_ensemble(DarkIsGland(), {"test_a": [test], "val": val}, val=val, min_area=4, grid=GRID)
    assert r["splits"]["val"]["f1"] == 1.0 and r["splits"]["val"]["object_dice"] == pytest.approx(1.0)
    m = r["splits"]["test_a"]
    # 1 TP, 0 FP, 1 FN -> F1 = 2/3; object Dice = (0.5 * (0.5 * 1 + 0.5 * 0) + 0.5 * 1) = 0.75
    assert (m["tp"], m["fp"], m["fn"], m["n_gt"]) == (1, 0, 1, 2)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["object_dice"] == pytest.approx(0.75)
    assert [p["name"] for p in m["per_image"]] == ["testA_1"]
    assert "instances" not in r and len(r["tuning"]) == 2


def test_thresholds_are_tuned_on_val_only(monkeypatch):
    low = [sample("train_1", "train", TWO, 0.6)]  # found at 0.5 only
    high = [sample("train_2", "train", TWO, 0.8, background=0.65)]  # separated at 0.7 only
    test = [sample("testA_1", "testA", TWO, 0.6)]
    seen = []
    tune = postprocess.tune_postprocess

    def spy(obj, con, gts, **kw):
        seen.append((len(gts), kw["split"]))
        return tune(obj, con, gts, **kw)

    monkeypatch.setattr(postprocess, "tune_postprocess", spy)
    a = score.evaluate_ensemble(DarkIsGland(), {"test_a": test}, val=low, min_area=4, grid=GRID)
    b = score.evaluate_ensemble(DarkIsGland(), {"test_a": test}, val=high, min_area=4, grid=GRID)
    assert seen == [(1, "validation"), (1, "validation")]
    assert a["thresholds"]["object_threshold"] == 0.5 and b["thresholds"]["object_threshold"] == 0.7
    assert a["splits"]["test_a"]["f1"] == 1.0 and b["splits"]["test_a"]["f1"] == 0.0  # test never tunes
    c = score.evaluate_ensemble(DarkIsGland(), {"test_a": low}, val=low, min_area=4, grid=GRID)
    assert c["thresholds"] == a["thresholds"]


def test_keep_instances_and_variants():
    val = [sample("train_1", "train", TWO, 0.9)]
    test = [sample("testA_1", "testA", TWO, 0.9), sample("testA_2", "testA", TWO[:1], 0.9)]
    ens = {"float": [DarkIsGland()], "ntq": [DarkIsGland(), DarkIsGland()]}
    res = score.evaluate_variants(ens, {"test_a": test, "empty": []}, val=val, main="ntq", min_area=4)
    assert list(res) == ["float", "ntq"] and "instances" not in res["float"]
    inst = res["ntq"]["instances"]["test_a"]
    assert [int(i.max()) for i in inst] == [2, 1] and inst[0].shape == (24, 24)
    assert res["ntq"]["object_prob"]["test_a"][0][3, 3] == pytest.approx(0.9, abs=0.01)
    assert "empty" not in res["ntq"]["splits"]
    rows = score.variant_scores(res)
    assert [(r["variant"], r["split"], r["f1"], r["n_gt"]) for r in rows] == [("float", "test_a", 1.0, 3),
                                                                             ("ntq", "test_a", 1.0, 3)]
    sizes = {"ntq": {"weight_bytes": 10, "file_bytes": 20}}
    table = [{"bits": 8, "float32_weight_bytes": 40, "float32_checkpoint_bytes": 90}]
    entries = score.variant_entries(ens, res, sizes=sizes, size_table=table, ntq_scheme="inq", ntq_bits=5)
    assert {k: (v["scheme"], v["bits"], v["n_members"], v["weight_bytes"], v["file_bytes"])
            for k, v in entries.items()} == {"float": ("float", 32, 1, 40, 90), "ntq": ("inq", 5, 2, 10, 20)}
    assert entries["ntq"]["thresholds"] == res["ntq"]["thresholds"]
    assert entries["ntq"]["splits"] is res["ntq"]["splits"]


def test_paper_rows_have_every_column():
    assert len(score.PAPER_ROWS) == 3
    assert all(set(r) == {"method", "f1_A", "f1_B", "dice_A", "dice_B", "haus_A", "haus_B"} for r in score.PAPER_ROWS)
