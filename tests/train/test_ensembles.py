"""Tests of qfcn.train.ensembles: splits, ensembles, PTQ, BN re-estimation, notebook 04's variants."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from train_tiny import TINY, make_samples, tiny_cfg

from qfcn import data, quant, train
from qfcn.models import SAFCN
from qfcn.train import diagnostics, ensembles

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def samples() -> list:
    return make_samples()


# ------------------------------------------------------------------ samples
def test_split_validation(samples):
    many = make_samples(10, h=32, w=32, seed=1)
    tr, va = data.split_validation(many, 0.2, seed=3)
    assert len(va) == 2 and len(tr) == 8
    assert {s.name for s in tr} | {s.name for s in va} == {s.name for s in many}
    assert not {s.name for s in tr} & {s.name for s in va}
    assert [s.name for s in data.split_validation(many, 0.2, seed=3)[1]] == [s.name for s in va]
    with pytest.raises(ValueError, match="test"):
        data.split_validation(many + make_samples(1, 32, 32, split="testA"), 0.2, seed=0)
    with pytest.raises(ValueError, match="fraction"):
        data.split_validation(many, 1.5, seed=0)


def test_bootstrap_resample_is_deterministic(samples):
    many = make_samples(8, h=32, w=32)
    a = [s.name for s in data.bootstrap_resample(many, 0, 1)]
    assert a == [s.name for s in data.bootstrap_resample(many, 0, 1)]
    assert len(a) == 8 and len(set(a)) < 8  # with replacement: 8 draws from 8 almost surely repeat
    members = {tuple(s.name for s in data.bootstrap_resample(many, 0, m)) for m in range(4)}
    assert len(members) == 4
    assert len({data.member_seed(0, m) for m in range(5)}) == 5


def test_train_ensemble_trains_distinct_members(samples, tmp_path):
    cfg = tiny_cfg(float_steps=2)
    res = train.train_ensemble(samples, cfg, k=2, out_dir=tmp_path, progress=False)
    assert len(res) == 2 and all((tmp_path / f"member_{m}" / "done.json").is_file() for m in range(2))
    w0, w1 = (r.model.state_dict()["stem.0.weight"] for r in res)
    assert not torch.equal(w0, w1)
    assert res[1].config.seed == data.member_seed(cfg.seed, 1)
    # warm start from the previous stage: one checkpoint per member
    res2 = train.train_ensemble(samples, cfg, k=2, out_dir=tmp_path / "stage2", init=[r.final_path for r in res],
                                progress=False)
    assert [h["phase"] for h in res2[0].history if "loss" in h] == ["float"] * 2
    with pytest.raises(ValueError, match="one per member"):
        train.train_ensemble(samples, cfg, k=3, out_dir=tmp_path / "x", init=[r.final_path for r in res])


def test_recalibrate_bn_and_post_training_quantize(samples):
    torch.manual_seed(0)
    net = SAFCN(**TINY).eval()
    ptq = train.post_training_quantize(net, "inq", 5)
    for (name, m), (_, m0) in zip(quant.quantized_layers(ptq), quant.quantized_layers(net)):
        assert torch.equal(quant.inq_quantize(m.weight, 5), m.weight)
        assert not torch.equal(m.weight, m0.weight)  # the input model is untouched
    before = {k: v.clone() for k, v in ptq.state_dict().items()}
    cfg = tiny_cfg()
    train.recalibrate_bn(ptq, samples, cfg, n_batches=2)
    after = ptq.state_dict()
    assert not torch.equal(before["stem.1.running_mean"], after["stem.1.running_mean"])
    assert torch.equal(before["stem.0.weight"], after["stem.0.weight"])
    assert int(after["stem.1.num_batches_tracked"]) == 2
    again = train.recalibrate_bn(train.post_training_quantize(net, "inq", 5), samples, cfg, n_batches=2)
    assert torch.equal(again.state_dict()["stem.1.running_var"], after["stem.1.running_var"])
    assert isinstance(ptq, nn.Module) and not ptq.training


# ------------------------------------------------------------------ notebook 04's variants
def test_scheme_bits():
    assert train.scheme_bits("float", "inq", 5) == train.scheme_bits("float_control", "inq", 5) == ("float", 32)
    assert [train.scheme_bits(n, "inq", 5) for n in ("ntq", "ptq", "ptq_bn", "single")] == [("inq", 5)] * 4
    assert train.scheme_bits("uniform", "inq", 5) == ("uniform", 5)
    assert train.scheme_bits("ntq", "float", 5) == train.scheme_bits("single", "uniform", 32) == ("float", 32)
    assert train.scheme_bits("ntq7", "inq", 5) == train.scheme_bits("ntq7", "inq", 32) == ("inq", 7)
    assert train.scheme_bits("ntq3", "uniform", 5) == ("uniform", 3)
    assert train.scheme_bits("float_control7", "inq", 5) == ("float", 32)


def test_derive_variants_from_the_same_float_members(samples, tmp_path):
    ntq = tiny_cfg(scheme="inq", bits=5, float_steps=2, retrain_steps=1, ckpt_every=50)
    float_cfg = train.TrainConfig.from_dict({**ntq.to_dict(), "scheme": "float", "bits": 32})
    members = train.train_ensemble(samples, float_cfg, k=2, out_dir=tmp_path / "float", bootstrap=False,
                                   progress=False)
    ens = train.derive_variants(members, samples, ntq, n_members=2, variants=list(train.VARIANTS),
                                out_dir=tmp_path, progress=False)
    assert list(ens) == ["float", "ntq", "float_control", "uniform", "ptq", "ptq_bn", "single"]
    assert ens["float"] == [r.model for r in members] and ens["single"] == ens["ntq"][:1]
    assert all(len(v) == 2 for k, v in ens.items() if k != "single")
    # every derived ensemble starts from the float members' weights: no float phase, same extra steps
    ctl_cfg = train.float_control_config(ntq)
    assert ctl_cfg.control_steps == train.extra_steps(ntq) == 3
    for name, phases in (("ntq", ["inq_1", "inq_2", "inq_3"]), ("float_control", ["control"] * 3),
                         ("uniform", ["uniform_1"] * 3)):
        done = torch.load(tmp_path / name / "member_0" / "final.pt", weights_only=True)
        assert [h["phase"] for h in done["history"] if "loss" in h] == phases, name
    ptq = train.post_training_quantize(members[1].model, "inq", 5)
    assert all(torch.equal(ptq.state_dict()[k], v) for k, v in ens["ptq"][1].state_dict().items())
    assert torch.equal(ens["ptq_bn"][0].stem[0].weight, ens["ptq"][0].stem[0].weight)
    assert not torch.equal(ens["ptq_bn"][0].stem[1].running_mean, ens["ptq"][0].stem[1].running_mean)
    only = train.derive_variants(members, samples, ntq, n_members=2, variants=["ptq"], out_dir=tmp_path,
                                 progress=False)
    assert list(only) == ["float", "ntq", "ptq", "single"]
    flt = train.derive_variants(members, samples, float_cfg, n_members=2, variants=list(train.VARIANTS),
                                out_dir=tmp_path / "f", progress=False)
    assert list(flt) == ["float", "single"] and flt["single"] == flt["float"][:1]
    with pytest.raises(ValueError, match="unknown"):
        train.derive_variants(members, samples, ntq, n_members=2, variants=["ptq", "ternary"], out_dir=tmp_path)
    sizes = train.pack_variants(ens, tmp_path / "packed", "inq", 5)
    assert list(sizes) == ["ntq", "uniform", "ptq", "ptq_bn", "single"]
    assert (tmp_path / "packed" / "uniform.qfcn").stat().st_size == sizes["uniform"]["file_bytes"]


def test_size_table_on_a_tiny_model(tmp_path):
    torch.manual_seed(0)
    net = SAFCN(**TINY).eval()
    rows = train.size_table(net, [8, 5, 3], tmp_path)
    assert [r["bits"] for r in rows] == [8, 5, 3]
    assert [r["weight_bytes"] for r in rows] == sorted((r["weight_bytes"] for r in rows), reverse=True)
    for r in rows:
        assert r["file_bytes"] == (tmp_path / f"inq{r['bits']}.qfcn").stat().st_size
        assert r["weight_ratio"] == r["float32_weight_bytes"] / r["weight_bytes"]
        assert r["float32_weight_bytes"] == rows[0]["float32_weight_bytes"]
    assert rows[0]["weight_ratio"] == pytest.approx(4.0, rel=0.05)  # 8-bit codes: a quarter of float32


# ------------------------------------------------------------------ extra bit-widths
def test_check_extra_bits():
    assert ensembles.check_extra_bits("inq", []) == [] == ensembles.check_extra_bits("float", [])
    assert ensembles.check_extra_bits("uniform", (7, 3)) == [7, 3]
    for scheme, bad, match in (("inq", [7, 7], "distinct"), ("inq", [32], "needs ntq_scheme"), ("inq", [9], "bits=9"),
                               ("float", [5], "extra_ntq_bits"), ("inq", 7, "a list"), ("inq", [7.0], "int")):
        with pytest.raises(ValueError, match=match):
            ensembles.check_extra_bits(scheme, bad)


def test_derive_extra_bits_from_the_same_float_members(samples, tmp_path):
    ntq = tiny_cfg(scheme="inq", bits=5, float_steps=2, retrain_steps=1, ckpt_every=50)
    float_cfg = train.TrainConfig.from_dict({**ntq.to_dict(), "scheme": "float", "bits": 32})
    members = train.train_ensemble(samples, float_cfg, k=2, out_dir=tmp_path / "float", bootstrap=False,
                                   progress=False)
    ens = train.derive_variants(members, samples, ntq, n_members=2, variants=["float_control"], out_dir=tmp_path,
                                progress=False)
    assert ensembles.derive_extra_bits(members, samples, ntq, scheme="inq", bits=[], n_members=2,
                                       out_dir=tmp_path) == {}
    extra = ensembles.derive_extra_bits(members, samples, ntq, scheme="inq", bits=[7, 5], n_members=2,
                                        out_dir=tmp_path, progress=False)
    assert list(extra) == ["ntq7", "float_control7", "ntq5", "float_control5"]
    assert all(len(v) == 2 for v in extra.values())
    same = [(extra["ntq5"], ens["ntq"]), (extra["float_control7"], ens["float_control"]),
            (extra["float_control5"], ens["float_control"])]
    for a, b in same:  # same config, same folder: reused, not retrained
        assert all(torch.equal(x.stem[0].weight, y.stem[0].weight) for x, y in zip(a, b))
    assert not (tmp_path / "ntq5").exists() and not (tmp_path / "float_control7").exists()
    # ntq7 starts from the same float members (its first partition is theirs, on the 7-bit grid) ...
    moved = diagnostics.variants_movement({**ens, **extra}, ntq, "inq")
    assert [(k, v["scheme"], v["bits"], v["overall"]["frozen_changed"]) for k, v in moved.items()] == [
        ("ntq", "inq", 5, 0), ("ntq7", "inq", 7, 0), ("ntq5", "inq", 5, 0)]
    sizes = train.pack_variants({"ntq7": extra["ntq7"]}, tmp_path / "packed", "inq", 5)  # raises off the grid
    assert (sizes["ntq7"]["scheme"], sizes["ntq7"]["bits"]) == ("inq", 7)
    # ... and its float control gets exactly its extra steps, float
    phases = {}
    for name in ("ntq7", "float_control"):
        done = torch.load(tmp_path / name / "member_1" / "final.pt", weights_only=True)
        phases[name] = [h["phase"] for h in done["history"] if "loss" in h]
    assert phases == {"ntq7": ["inq_1", "inq_2", "inq_3"], "float_control": ["control"] * 3}
    steps = ensembles.variant_steps(list(ens) + list(extra), ntq, "inq")
    assert steps["float_control7"] == dict(float_steps=2, extra_steps=3, step_matched_to="ntq7")
    assert steps["ntq7"]["extra_steps"] == steps["ntq"]["extra_steps"] == 3 and steps["float"]["extra_steps"] == 0
    assert steps["single"] == steps["ntq"] and steps["float_control"]["step_matched_to"] == "ntq"


def test_derive_extra_bits_for_a_float_run(samples, tmp_path):
    """SA+NTQ-b: a float run (the SA arm) derives NTQ at b bits from its own float members."""
    float_cfg = tiny_cfg(float_steps=2, retrain_steps=1, ckpt_every=50)
    members = train.train_ensemble(samples, float_cfg, k=1, out_dir=tmp_path / "float", bootstrap=False,
                                   progress=False)
    extra = ensembles.derive_extra_bits(members, samples, float_cfg, scheme="uniform", bits=[6], n_members=1,
                                        out_dir=tmp_path, progress=False)
    assert list(extra) == ["ntq6", "float_control6"]
    assert train.scheme_bits("ntq6", "uniform", 32) == ("uniform", 6)
    moved = diagnostics.variants_movement({"float": [m.model for m in members], **extra}, float_cfg, "uniform")
    assert list(moved) == ["ntq6"] and (moved["ntq6"]["scheme"], moved["ntq6"]["bits"]) == ("uniform", 6)
    assert moved["ntq6"]["overall"]["free_fraction"] == 1.0
    assert train.pack_variants(extra, tmp_path / "packed", "uniform", 32)["ntq6"]["bits"] == 6  # on its grid
    steps = ensembles.variant_steps(["float", "single", *extra], float_cfg, "uniform")
    assert steps["float"]["extra_steps"] == steps["single"]["extra_steps"] == 0
    assert steps["ntq6"]["extra_steps"] == steps["float_control6"]["extra_steps"] == 3
