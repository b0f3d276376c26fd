"""Efficiency points that need no training of their own: the run's own result at its budget, and
the whole pool and the initial random set shared between the arms of one seed."""
from qfcn.io import atomic_write_json
from qfcn.study import efficiency


def _record(tmp_path, name, seed, selection, main, budgets, stage0, annotated, n_pool=40):
    run_dir = tmp_path / f"{name}-s{seed}"
    atomic_write_json(run_dir / "suggestion.json", {"annotated": annotated, "stages": [{"picked": stage0}]})
    variants = {"float": {"splits": {"test_a": {"f1": 0.70}, "test_b": {"f1": 0.60}}}}
    if main == "ntq":
        variants["ntq"] = {"splits": {"test_a": {"f1": 0.72}, "test_b": {"f1": 0.61}}}
    rows = [dict(selection=selection, quantized=q, budget=b, n_images=n, n_pool=n_pool, seed=seed, f1_a=f, f1_b=f)
            for b, n, f in budgets for q in ((False, True) if main == "ntq" else (False,))]
    return {"run": {"name": name, "seed": seed, "qsa_bits": 32}, "main": main, "variants": variants,
            "efficiency": rows, "run_dir": str(run_dir)}


def test_every_line_gets_its_own_point_and_the_shared_ones(tmp_path):
    init, ann = ["a", "b", "c", "d"], [f"x{i}" for i in range(20)]
    sa = _record(tmp_path, "sa-ntq5", 0, "suggestive", "ntq", [(0.3, 12, 0.66)], init, ann)
    rnd = _record(tmp_path, "random-float", 0, "random", "float", [(0.1, 4, 0.4), (0.3, 12, 0.6), (1.0, 40, 0.8)],
                  init, ann)
    other_seed = _record(tmp_path, "sa-ntq5", 1, "suggestive", "ntq", [(0.3, 12, 0.5)], init, ann)
    rows = efficiency.study_rows([sa, rnd, other_seed])
    pts = {(r["name"], r["seed"], r["quantized"], r["n_images"]): r for r in rows}
    assert pts[("sa-ntq5", 0, False, 20)]["source"] == "own run" and pts[("sa-ntq5", 0, False, 20)]["f1_a"] == 0.70
    assert pts[("sa-ntq5", 0, True, 20)]["f1_a"] == 0.72  # NTQ's own point
    assert pts[("sa-ntq5", 0, False, 4)]["source"] == "shared with random-float"
    assert pts[("sa-ntq5", 0, False, 4)]["selection"] == "suggestive" and pts[("sa-ntq5", 0, False, 40)]["f1_a"] == 0.8
    assert ("sa-ntq5", 0, True, 4) not in pts  # shared points are float only
    assert ("sa-ntq5", 1, False, 4) not in pts  # no random run of seed 1 to share from
    assert pts[("random-float", 0, False, 20)]["source"] == "own run"
    assert sorted(r["n_images"] for r in rows if r["name"] == "sa-ntq5" and r["seed"] == 0 and not r["quantized"]) \
        == [4, 12, 20, 40]


def test_the_initial_set_is_shared_only_when_the_stage0_lists_are_equal(tmp_path):
    ann = [f"x{i}" for i in range(20)]
    sa = _record(tmp_path, "sa-ntq5", 0, "suggestive", "ntq", [(0.3, 12, 0.66)], ["a", "b", "c", "d"], ann)
    rnd = _record(tmp_path, "random-float", 0, "random", "float", [(0.1, 4, 0.4), (1.0, 40, 0.8)],
                  ["a", "b", "c", "z"], ann)
    sizes = {r["n_images"] for r in efficiency.study_rows([sa, rnd]) if r["name"] == "sa-ntq5"}
    assert 4 not in sizes and 40 in sizes  # the whole pool is always the same images
