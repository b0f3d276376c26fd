"""Tests of qfcn.score: gland counts, and evaluate_ensemble on tiny hand-made inputs, scored in
the images' original pixels."""

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from torch import nn

from qfcn import infer, postprocess, score
from qfcn.data import Sample


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
    assert entries["ntq"]["tuning"] == res["ntq"]["tuning"] and entries["float"]["edge"] == res["float"]["edge"]
    assert entries["ntq"]["fragments"]["test_a"]["n_objects"] == 3


def test_paper_rows_have_every_column():
    assert len(score.PAPER_ROWS) == 3
    assert all(set(r) == {"method", "f1_A", "f1_B", "dice_A", "dice_B", "haus_A", "haus_B"} for r in score.PAPER_ROWS)


# ------------------------------------------------------------------ original-resolution scoring
@dataclass
class SourceSample:
    """A sample as the data step builds it (interface 1): ``image`` / ``instances`` at the
    working scale, ``source_instances`` at the file's original resolution."""

    name: str
    split: str
    image: np.ndarray = field(repr=False)
    instances: np.ndarray = field(repr=False)
    source_instances: np.ndarray = field(repr=False)
    source_shape: tuple
    scale: float


def at_scale(name, split, glands, *, factor, shift=0, prob=0.9):
    """Glands (y, x, side) in original pixels on a (24 f) x (24 f) original image; the working
    image is 24 x 24 (scale 1 / f) and paints each gland moved down by ``shift`` working pixels."""
    src = np.zeros((24 * factor, 24 * factor), np.int32)
    p = np.zeros((24, 24))
    for k, (y, x, side) in enumerate(glands, 1):
        src[y:y + side, x:x + side] = k
        wy, wx, ws = y // factor + shift, x // factor, side // factor
        p[wy:wy + ws, wx:wx + ws] = prob
    red = np.round((1.0 - p) * 255).astype(np.uint8)
    work = src[::factor, ::factor]
    return SourceSample(name, split, np.stack([red, red, red], -1), work, src, src.shape, 1.0 / factor)


def test_scores_against_source_maps_at_twice_the_size():
    glands = [(4, 4, 12), (28, 28, 12)]
    val = [at_scale("train_1", "train", glands, factor=2)]
    test = [at_scale("testA_1", "testA", glands, factor=2, shift=1)]
    r = score.evaluate_ensemble(DarkIsGland(), {"test_a": test, "val": val}, val=val, min_area=4, grid=GRID,
                                keep_instances=True)
    assert r["instances"]["test_a"][0].shape == (48, 48) and r["object_prob"]["val"][0].shape == (48, 48)
    assert r["splits"]["val"]["f1"] == 1.0 and r["splits"]["val"]["object_dice"] == pytest.approx(1.0)
    m = r["splits"]["test_a"]
    assert m["f1"] == 1.0 and m["n_gt"] == 2
    # moved one working pixel = 2 original pixels: Hausdorff in original pixels is 2, not 1
    assert m["object_hausdorff"] == pytest.approx(2.0)
    assert m["object_dice"] == pytest.approx(2 * 120 / 288)
    same = [at_scale("testA_1", "testA", glands, factor=1, shift=1)]
    one = score.evaluate_ensemble(DarkIsGland(), {"test_a": same}, val=same, min_area=4, grid=GRID)
    assert one["splits"]["test_a"]["object_hausdorff"] == pytest.approx(1.0)  # scales with 1 / scale


def test_min_area_is_in_original_pixels():
    # a 3 x 3 working-pixel gland is 36 original pixels at scale 0.5: kept by min_area=20
    val = [at_scale("train_1", "train", [(4, 4, 12), (30, 30, 6)], factor=2)]
    kept = score.evaluate_ensemble(DarkIsGland(), {"val": val}, val=val, min_area=20, grid=GRID)
    dropped = score.evaluate_ensemble(DarkIsGland(), {"val": val}, val=val, min_area=40, grid=GRID)
    assert kept["splits"]["val"]["n_pred"] == 2 and dropped["splits"]["val"]["n_pred"] == 1
    assert dropped["fragments"]["val"] == {"n_components": 2, "n_small": 1, "n_objects": 1}


@pytest.mark.parametrize("shape", [(48, 64), (37, 101), (24, 32), (12, 20)])
def test_to_source_is_torch_bilinear(shape):
    prob = np.random.default_rng(0).random((24, 32)).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(prob)[None, None], size=shape, mode="bilinear",
                                          align_corners=False)[0, 0].numpy()
    out = score.to_source(prob, shape)
    assert out.dtype == np.float32 and out.shape == shape and np.abs(out - ref).max() < 1e-5  # float32 rounding


def test_source_shape_must_agree():
    s = at_scale("train_1", "train", TWO, factor=2)
    s.source_shape = (24, 24)
    with pytest.raises(ValueError, match="source_shape"):
        score.source_instances(s)


def test_validation_is_predicted_once_and_the_sensitivity_table_recorded(monkeypatch):
    calls = []
    predict = infer.predict_dataset

    def spy(models, samples, **kw):
        calls.append([s.name for s in samples])
        return predict(models, samples, **kw)

    monkeypatch.setattr(infer, "predict_dataset", spy)
    val = [sample("train_1", "train", TWO, 0.9), sample("train_2", "train", TWO, 0.9)]
    test = [sample("testA_1", "testA", TWO, 0.9)]
    r = score.evaluate_ensemble(DarkIsGland(), {"val": val, "test_a": test}, val=val, min_area=4)
    assert calls == [["train_1", "train_2"], ["testA_1"]]
    grid = postprocess.DEFAULT_GRID
    assert len(r["tuning"]) == len(grid["object_threshold"]) * len(grid["contour_threshold"])  # a plateau: no edge
    assert set(r["tuning"][0]) >= {"object_threshold", "contour_threshold", "f1", "object_dice", "best"}
    assert sum(row["best"] for row in r["tuning"]) == 1
    assert r["edge"] == {"object_threshold": False, "contour_threshold": False}


def test_edge_thresholds_extend_the_grid():
    val = [sample("train_1", "train", TWO, 0.45)]  # found only below 0.45
    grid = {"object_threshold": [0.4, 0.5, 0.6], "contour_threshold": [0.5]}
    flat = score.evaluate_ensemble(DarkIsGland(), {}, val=val, min_area=4, grid=grid, extend=0)
    assert flat["edge"] == {"object_threshold": True} and len(flat["tuning"]) == 3
    grown = score.evaluate_ensemble(DarkIsGland(), {}, val=val, min_area=4, grid=grid)
    assert [row["object_threshold"] for row in grown["tuning"]] == [0.4, 0.5, 0.6, 0.3]
    assert grown["edge"] == {"object_threshold": False} and grown["thresholds"]["object_threshold"] == 0.4
