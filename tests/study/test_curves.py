"""Training curves read from the members' history files: steps of derived variants continue their
own float member's count, validation entries and untrained variants are left out."""
import json

from qfcn.io import atomic_write_json
from qfcn.study import curves
from qfcn.train import phase_starts


def _hist(run, variant, member, entries):
    atomic_write_json(run / "final" / variant / f"member_{member}" / "history.json", entries)


def test_derived_variants_continue_their_own_members_steps(tmp_path):
    run = tmp_path / "run"
    _hist(run, "float", 0, [{"step": s, "phase": "float", "loss": 1.0 / s} for s in (1, 2, 3)])
    _hist(run, "float", 1, [{"step": s, "phase": "float", "loss": 0.5} for s in (1, 2, 3, 4, 5)]
          + [{"step": 5, "phase": "float", "val_loss": 0.4, "val_dice": 0.7}])
    _hist(run, "float_control", 1, [{"step": 1, "phase": "control", "loss": 0.4}])
    _hist(run, "ntq", 0, [{"step": 1, "phase": "inq_1", "loss": 0.6}, {"step": 2, "phase": "inq_2", "loss": 0.5}])
    _hist(run, "ptq", 0, [{"step": 1, "phase": "x", "loss": 9.0}])  # not a training variant: ignored
    (run / "final" / "ntq" / "member_1").mkdir(parents=True)  # no history: skipped
    rows = curves.run_curves(run)
    assert len(rows) == 3 + 5 + 1 + 2 and all(r["variant"] != "ptq" for r in rows)
    ntq = [(r["step"], r["phase"]) for r in rows if r["variant"] == "ntq"]
    assert ntq == [(4, "inq_1"), (5, "inq_2")]  # member 0 had 3 float steps
    control = [r["step"] for r in rows if r["variant"] == "float_control"]
    assert control == [6]  # member 1 had 5 float steps; its validation entry is no loss step
    assert phase_starts(rows) == [(4, "inq_1"), (5, "inq_2"), (6, "control")]


def test_phases_starting_together_share_one_boundary():
    rows = [dict(variant="ntq", phase="inq_1", step=11), dict(variant="float_control", phase="control", step=11),
            dict(variant="float", phase="float", step=1), dict(variant="ntq", phase="inq_2", step=14)]
    assert phase_starts(rows) == [(11, "control, inq_1"), (14, "inq_2")]


def test_study_curves_name_runs_by_their_batch_point(tmp_path):
    study = tmp_path / "study"
    run = study / "runs" / "qsa5-ntq5-s3-abc"
    _hist(run, "float", 0, [{"step": 1, "phase": "float", "loss": 0.9}])
    atomic_write_json(run / "final" / "metrics.json", {"run": {}})
    (run / "done.json").write_text(json.dumps({"point": {"name": "qsa5-ntq5", "seed": 3}}))
    assert curves.study_curves(study) == [dict(variant="float", member=0, step=1, phase="float", loss=0.9,
                                               name="qsa5-ntq5", seed=3)]
