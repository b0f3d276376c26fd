"""The README's results sections quote their committed study: every interval written as
``diff [low, high]`` in a section about ``reports/<name>`` is one of that study's
``summary.json`` contrasts (diff, low and high each rounded as printed), so a regenerated study
with a stale README fails here rather than in a reader's hands (issue 10)."""
import json
import re

import pytest

from qfcn.io import ROOT

NUM = r"[−+-]?\d+\.\d+"
INTERVAL = re.compile(rf"({NUM}) \[({NUM}), ({NUM})\]")


def _number(text: str) -> float:
    return float(text.replace("−", "-"))


def _decimals(text: str) -> int:
    return len(text.split(".")[1])


def intervals(text: str) -> list[tuple[str, str, str]]:
    """Every ``diff [low, high]`` in ``text`` (whitespace, line breaks included, collapsed).

    >>> intervals("Test A −0.017 [−0.219,\\n +0.184] and 3 [1, 2]")
    [('−0.017', '−0.219', '+0.184')]
    """
    return INTERVAL.findall(re.sub(r"\s+", " ", text))


def section(readme: str, study: str) -> str:
    """The README sections (from a ``## `` heading to the next) that link or name ``reports/<study>``."""
    parts = re.split(r"\n(?=## )", readme)
    return "\n".join(p for p in parts if p.startswith("## ") and f"reports/{study}" in p)


def matches(quoted: tuple[str, str, str], contrast: dict) -> bool:
    """Whether a quoted (diff, low, high) is ``contrast`` rounded as printed."""
    keys = ("diff", "low", "high")
    if any(contrast.get(k) is None for k in keys):
        return False
    return all(abs(round(contrast[k], _decimals(q)) - _number(q)) < 10 ** -_decimals(q) / 2 + 1e-9
               for q, k in zip(quoted, keys))


def test_matches_rounds_as_printed():
    c = {"diff": -0.0174, "low": -0.2186, "high": 0.1844}
    assert matches(("−0.017", "−0.219", "+0.184"), c)
    assert not matches(("−0.018", "−0.219", "+0.184"), c)
    assert not matches(("−0.017", "−0.219", "+0.184"), {**c, "low": None})


@pytest.mark.parametrize("study", ["fast", "standard"])
def test_every_interval_in_the_readme_is_in_its_summary(study):
    summary_path = ROOT / "reports" / study / "summary.json"
    if not summary_path.is_file():
        pytest.skip(f"no committed reports/{study}/summary.json")
    quoted = intervals(section((ROOT / "README.md").read_text(), study))
    assert quoted, f"the README quotes no interval from reports/{study}"
    found = json.loads(summary_path.read_text())["contrasts"]
    stale = [q for q in quoted if not any(matches(q, c) for c in found)]
    assert not stale, f"README intervals not in reports/{study}/summary.json: {stale}"
