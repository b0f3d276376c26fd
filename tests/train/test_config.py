"""Tests of qfcn.train.config: validation, round trips, extra steps, schedules."""

from __future__ import annotations

import json

import pytest

from qfcn import train
from qfcn.train.phases import _plan

pytestmark = pytest.mark.usefixtures("one_thread")


def test_config_defaults_and_roundtrip():
    cfg = train.TrainConfig()
    again = train.TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert isinstance(again.iterative_steps, tuple)
    assert train.TrainConfig(scheme="inq", bits=32).scheme == "float"  # 32 bits means float


@pytest.mark.parametrize("bad", [
    {"lr": 0.0}, {"float_steps": -1}, {"batch_size": 0}, {"scheme": "ternary"}, {"scheme": "inq", "bits": 9},
    {"optimizer": "rmsprop"}, {"schedule": "step"}, {"iterative_steps": [0.5, 0.4, 1.0]},
    {"iterative_steps": [0.5, 0.75]}, {"scheme": "inq", "bits": 5, "control_steps": 3}, {"bf16": 1},
    {"crop_size": 64.0}, {"model": "tiny"}, {"device": "tpu"},
])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        train.TrainConfig(**bad)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown keys.*learning_rate"):
        train.TrainConfig.from_dict({"learning_rate": 0.1})


def test_extra_steps_and_float_control():
    inq = train.TrainConfig(scheme="inq", bits=5, retrain_steps=10)  # 4 partitions -> 3 retrainings
    uni = train.TrainConfig(scheme="uniform", bits=5, retrain_steps=10)
    assert train.extra_steps(inq) == train.extra_steps(uni) == 30
    ctl = train.float_control_config(inq)
    assert (ctl.scheme, ctl.bits, ctl.control_steps) == ("float", 32, 30)
    assert train.extra_steps(ctl) == 0
    assert [(p.name, p.steps) for p in _plan(inq, False)] == [
        ("float", 200), ("inq_1", 10), ("inq_2", 10), ("inq_3", 10), ("inq_4", 0)]
    assert [(p.name, p.steps) for p in _plan(uni, True)] == [("uniform_1", 30)]


def test_lr_schedules():
    assert train.lr_at("constant", 0.1, 7, 10) == 0.1
    assert train.lr_at("cosine", 1.0, 0, 10) == 1.0
    assert train.lr_at("cosine", 1.0, 5, 10) == pytest.approx(0.5)
    assert train.lr_at("poly", 1.0, 5, 10) == pytest.approx(0.5 ** 0.9)
    with pytest.raises(ValueError):
        train.lr_at("linear", 1.0, 0, 1)


def test_retrain_lr_drives_the_retraining_and_the_float_control_alike():
    """Notebook 04's ``retrain_lr``: every retraining phase and the step-matched float control run at it,
    and the default (1e-4, written 0.0001 in the notebook) leaves a config's identity unchanged."""
    assert train.TrainConfig(retrain_lr=0.0001).identity() == train.TrainConfig().identity()
    inq = train.TrainConfig(scheme="inq", bits=5, retrain_steps=10, retrain_lr=3e-3)
    ctl = train.float_control_config(inq)
    assert ctl.retrain_lr == 3e-3
    assert {p.lr for p in _plan(inq, True)} == {p.lr for p in _plan(ctl, True)} == {3e-3}
    assert sum(p.steps for p in _plan(ctl, True)) == sum(p.steps for p in _plan(inq, True)) == 30
    with pytest.raises(ValueError, match="retrain_lr"):
        train.TrainConfig(retrain_lr=0)
