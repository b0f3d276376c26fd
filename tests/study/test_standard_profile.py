"""params/standard.yaml is the study issue 10 asks for: every required contrast has both arms in
its runs, at least ten seeds, and efficiency budgets that fall exactly on the suggestion stages'
annotated sets (so the curve's points are real stages, not rounded neighbours)."""
import pytest

from qfcn.data.splits import carve_validation
from qfcn.io import ROOT
from qfcn.study import contrasts as C
from qfcn.study import params as P
from qfcn.suggest.ensemble import initial_split
from qfcn.train.budgets import budget_count

REQUIRED = ("ntq_vs_float_control", "inq_vs_uniform", "ntq_vs_ptq", "qsa_vs_sa", "sa_ntq_vs_sa", "qsa_ntq_vs_sa",
            "suggestive_vs_random", "ensemble_vs_single")
WITHIN_VARIANT = {"ntq_vs_float_control": "float_control", "inq_vs_uniform": "other_scheme", "ntq_vs_ptq": "ptq"}


@pytest.fixture(scope="module")
def standard():
    params = P.load(ROOT / "params" / "standard.yaml")
    points = P.batch_points(params)
    runs = {}
    for pt in points:
        runs.setdefault(pt["name"], P.notebook_parameters(params, "training", pt))
    return params, points, runs


def _variants(training: dict) -> set[str]:
    quantized = training["ntq_bits"] != 32
    return {"float", "single"} | ({"ntq", *training["variants"]} if quantized else set())


def test_every_required_contrast_has_its_arms(standard):
    params, points, runs = standard
    by_id = {c["id"]: c for c in C.CONTRASTS}
    for cid in REQUIRED:
        c = by_id[cid]
        if c["kind"] == "within":
            need = WITHIN_VARIANT.get(cid, "single")
            assert any(need in _variants(t) for t in runs.values()), cid
            continue
        for arm in (c["a"], c["b"]):
            found = []
            for cand in C.RUN_NAMES[arm]:
                name, variant = (cand, None) if isinstance(cand, str) else cand
                if name in runs and (variant is None or variant in _variants(runs[name])):
                    found.append(cand)
            assert found, f"{cid}: arm {arm} is in no run of params/standard.yaml"


def test_ten_seeds_and_budgets_on_the_stages(standard):
    params, points, runs = standard
    assert len(params["batch"]["seeds"]) >= 10
    n_train, frac = params["data"]["n_train"], params["data"]["val_fraction"]
    names = [f"train_{i}" for i in range(n_train)]
    pool = [n for n in names if n not in carve_validation(names, ["benign"] * n_train, frac, 0)]
    initial, _ = initial_split(pool, params["ensemble"]["initial_fraction"], 0)
    k_pick, budget = params["suggestion"]["k_pick"], budget_count(params["suggestion"]["budget"], len(pool))
    stages = list(range(len(initial), budget, k_pick)) + [budget]
    assert len(stages) - 1 >= 4  # at least four picking stages
    own = budget / len(pool)  # each run's own result is its point at the suggestion budget
    shared = {b for t in runs.values() for b in t.get("efficiency_budgets") or []
              if b == 1.0 or budget_count(b, len(pool)) == len(initial)}  # the same images in every arm
    lines = {}
    for pt in points:
        t = P.notebook_parameters(params, "training", pt)
        if t.get("efficiency_budgets"):
            for b in t["efficiency_budgets"]:
                assert b == 1.0 or budget_count(b, len(pool)) in stages, b  # a real stage, not a neighbour
            lines.setdefault(pt["selection"], set()).update({*t["efficiency_budgets"], own, *shared})
    assert set(lines) >= {"suggestive", "random"}
    assert all(len(budgets) >= 4 for budgets in lines.values()), lines
