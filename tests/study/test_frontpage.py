"""The front page: every question answered in a sentence with an interval, the paper-form table,
captioned figures, overlays, notebooks by run and failed runs; from hand-made records and from
the committed reports/fast records."""
import re
import shutil

import pytest
from test_report import make_run, make_study

from qfcn.io import ROOT, atomic_write_bytes, atomic_write_json
from qfcn.study import contrasts, frontpage, report

INTERVAL = re.compile(r"[−+]\d+\.\d+ \[[−+]\d+\.\d+, [−+]\d+\.\d+\], n = \d+, MDE \d+\.\d+")


def _questions(page):
    """{question: its block of HTML} from the questions section."""
    section = page.split("<h2>Questions and answers</h2>")[1].split("<h2>")[0]
    return {q: block for q, block in re.findall(r"<div class='q'><b>(.*?)</b>(.*?)</div>", section, re.S)}


def _page(study, links=()):
    summary = report.summary(study)
    return frontpage.write_index(study, summary, list(links)).read_text(), summary


def test_every_question_measured_has_a_sentence_with_an_interval(tmp_path):
    page, summary = _page(make_study(tmp_path))
    blocks = _questions(page)
    assert len(blocks) == len({c["id"] for c in contrasts.CONTRASTS})
    measured = {c["question"] for c in summary["contrasts"] if c["verdict"] != "missing"}
    assert measured >= {"Does NTQ beat a float network given the same extra training steps?",
                        "Does suggestive selection beat random selection?"}
    for q, block in blocks.items():
        if q.replace("&#x27;", "'") in measured:
            assert len(INTERVAL.findall(block)) >= 2, q  # Test A and Test B
        else:
            assert "Not run in this study" in block, q
    # sd 0.005, n 3: half width 4.303 * 0.005 / sqrt(3) = 0.012, MDE 5.363 * 0.005 / sqrt(3) = 0.015; n = 5: 0.008
    ntq = re.search(r"NTQ-5 vs its float control \(same extra steps\) \[qsa5-ntq5\], Test A F1: −0.025 \[.*?</li>",
                    page).group(0)
    assert ntq.endswith("[−0.037, −0.013], n = 3, MDE 0.015; about 5 seeds would give MDE 0.01: "
                        "its float control (same extra steps) better.</li>")
    assert page.index("Questions and answers") < page.index("<h2>The paper") < page.index("<h2>Figures")
    assert "<script" not in page and "original-resolution pixels" in page


def test_paper_table_intervals_seed_counts_and_memory(tmp_path):
    page, _ = _page(make_study(tmp_path))
    table = page.split("<h2>The paper")[1].split("<h2>")[0]
    assert "paper (real GlaS)" in table and "0.930" in table and "unverified" in table
    assert "this study: qsa5-ntq5 (ntq)" in table and "<td class='n'>3</td>" in table
    assert "seeds: 0.780, 0.790, 0.800" in table and "6.4x smaller than float32" in table
    assert "3.0x smaller than float32" in table  # the whole packed file, not only the conv weights
    assert "not run in this study" in table


def test_figures_overlays_notebooks_and_failed_runs(tmp_path):
    study = make_study(tmp_path)
    png = b"\x89PNG\r\n\x1a\nfake"
    atomic_write_bytes(study / "figures" / "main_results.png", png)
    atomic_write_bytes(study / "figures" / "stray.png", png)
    atomic_write_json(study / "figure_captions.json", {"main_results.png": "F1 per configuration, n = 3 seeds."})
    atomic_write_bytes(study / "runs" / "sa-float-s0" / "figures" / "overlays_test_a.png", png)
    atomic_write_json(study / "failed.json", {"n_runs": 2, "failed": [
        {"name": "bad", "seed": 0, "run_dir": "runs/bad-s0", "error": "Traceback\nValueError: out of memory"}]})
    links = [study / "05-ablations.html", study / "runs" / "sa-float-s0" / "04-quantized-training.html"]
    page, _ = _page(study, links)
    assert "<img src='figures/main_results.png' alt='main_results'><figcaption>F1 per configuration, n = 3" in page
    assert "stray (no caption recorded)" in page
    assert "src='runs/sa-float-s0/figures/overlays_test_a.png'" in page and "sa-float-s0, Test A" in page
    assert "<li>study: <a href='05-ablations.html'>" in page
    assert "<li>sa-float-s0: <a href='runs/sa-float-s0/04-quantized-training.html'>" in page
    assert "<li>bad-s0: ValueError: out of memory</li>" in page


def test_failed_runs_from_the_study_level_record(tmp_path):
    assert frontpage.failed_runs(tmp_path) == []
    atomic_write_json(tmp_path / "failed.json", {"n_runs": 3, "failed": [
        {"name": "q", "seed": 1, "run_dir": "runs/q-s1", "error": "boom\nKeyError: 'x'"},
        {"name": "q", "seed": 2, "run_dir": "runs/q-s2", "error": ""}]})
    assert frontpage.failed_runs(tmp_path) == [{"run": "q-s1", "cause": "KeyError: 'x'"},
                                               {"run": "q-s2", "cause": "unknown cause"}]


def test_one_run_study_says_comparisons_need_more_seeds(tmp_path):
    make_run(tmp_path, "sa-float-s0", name="sa-float", seed=0, f1=(0.8, 0.7), extra={"single": (0.7, 0.6)})
    page, _ = _page(tmp_path)
    assert "from n = 1 seed; no interval: needs more seeds." in page
    assert "0.800 (no interval, n = 1)" in page


def test_front_page_of_the_committed_fast_records(tmp_path):
    src = ROOT / "reports" / "fast"
    if not (src / "runs").is_dir():
        pytest.skip("no committed reports/fast")
    for pattern in ("runs/*/final/metrics.json", "runs/*/done.json", "runs/*/suggestion.json", "data/manifest.json"):
        for f in src.glob(pattern):
            (tmp_path / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, tmp_path / f.relative_to(src))
    page, summary = _page(tmp_path)
    blocks = _questions(page)
    ntq = blocks["Does NTQ beat a float network given the same extra training steps?"].split("<details>")[0]
    assert len(INTERVAL.findall(ntq)) == 2 and "[qsa5-ntq5]" in ntq and "n = 2" in ntq
    for q, block in blocks.items():
        assert INTERVAL.search(block) or "Not run in this study" in block, q


def test_regime_and_selection_section_reports_overlap_between_arms(tmp_path):
    study = make_study(tmp_path)
    for run, names in (("sa-float-s0", ["a", "b", "c", "d"]), ("random-float-s0", ["a", "b", "x", "y"])):
        atomic_write_json(study / "runs" / run / "suggestion.json", {"annotated": names, "stages": []})
    page, summary = _page(study)
    section = page.split("<h2>Regime and selection</h2>")[1].split("<h2>")[0]
    assert summary["selection"]["overlap"] == [dict(a="random-float", b="sa-float", n_seeds=1, shared=2.0, size=4.0,
                                                    shared_share=0.5)]
    assert "Annotated sets of random-float and sa-float share 2.0 of 4.0 images (50%, mean over 1 seeds" in section
    assert "train − Test A gap" in section
