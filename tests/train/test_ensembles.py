"""Tests of qfcn.train.ensembles: splits, ensembles, PTQ, BN re-estimation, notebook 04's variants."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from train_tiny import TINY, make_samples, tiny_cfg

from qfcn import data, quant, train
from qfcn.models import SAFCN

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
