"""Fuzzing the params space (issue 13): whatever a params file holds, the up-front checks of the
study command (:func:`qfcn.study.commands.check`) either accept it or end in ONE line naming the
file; no other exception (a traceback) escapes. Bounded examples, no notebook is executed."""
import math

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from qfcn.study import commands
from qfcn.study import params as P

DEFAULTS = {sec: P.notebook_defaults(nb) for sec, nb in P.SECTIONS.items()}
NAMES = sorted({k for d in DEFAULTS.values() for k in d} | {"name", "seeds", "runs", "grid"})

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=8), st.sampled_from([32, 8, 7, 5, 3, 1, 0, -1, 0.5, "inq", "float", "f1",
                                                          "random", "suggestive", "components"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(NAMES) | st.text(max_size=5), inner, max_size=3), max_leaves=8)
keys = st.sampled_from(NAMES) | st.text(min_size=1, max_size=6)


def _section(sec):
    """A section: mostly its own parameters with nearby values, sometimes anything."""
    own = st.sampled_from(sorted(DEFAULTS[sec]))
    return st.dictionaries(own | keys, st.one_of(values, st.sampled_from(
        [v for v in DEFAULTS[sec].values()] or [0])), max_size=4)


batch = st.fixed_dictionaries({}, optional={
    "seeds": st.one_of(values, st.lists(st.integers(-2, 3), max_size=3)),
    "runs": st.one_of(values, st.lists(st.dictionaries(st.sampled_from(NAMES), values, max_size=3), max_size=3)),
    "grid": st.one_of(values, st.dictionaries(st.sampled_from(NAMES), st.lists(scalars, max_size=3), max_size=2)),
})
files = st.one_of(
    st.fixed_dictionaries({}, optional={**{sec: st.one_of(_section(sec), values) for sec in P.SECTIONS}, "batch": batch}),
    st.dictionaries(keys, values, max_size=3),
    values,
)


def _one_line_or_ok(path, out):
    try:
        commands.check(path, out)
    except commands.StudyError as exc:
        msg = str(exc)
        assert "\n" not in msg and str(path) in msg, msg
        return msg
    return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(obj=files)
@example(obj={"\n": None}).via("found by this test: a key with a newline was printed raw, on two lines")
@example(obj={"data": {"": 1}})
def test_generated_params_files_give_one_line_or_pass(tmp_path, obj):
    path = tmp_path / "fuzz.yaml"
    try:
        path.write_text(yaml.safe_dump(obj))
    except yaml.YAMLError:
        return
    _one_line_or_ok(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # checks read only


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
       | st.sampled_from(["a: 1\na: 2", "batch:\n  seeds: [0]\n  seeds: [1]", "{", "- [", "data: !!python/object:os.system {}"]))
def test_arbitrary_text_gives_one_line_or_passes(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    _one_line_or_ok(path, tmp_path / "out")


@pytest.mark.parametrize("obj", [{"ensemble": {"float_steps": -3}}, {"ensemble": {"disagreement_bits": [32, 1]}},
                                 {"batch": {"runs": [{"name": "x", "qsa_bits": 9}]}}, {"training": {"lr": math.inf}}])
def test_known_bad_files_are_caught(tmp_path, obj):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(obj))
    assert _one_line_or_ok(path, tmp_path / "out")
