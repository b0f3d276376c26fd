"""Static checks of the pipeline notebooks (stripped, well formed, literal parameters cells)."""
import ast
import json

import pytest

from qfcn.study import params as P
from qfcn.study import runs

NOTEBOOKS = sorted(runs.NOTEBOOKS.glob("*.ipynb"))


def test_every_section_has_its_notebook():
    assert sorted(p.name for p in NOTEBOOKS) == sorted(P.SECTIONS.values())


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stripped_and_well_formed(nb_path):
    nb = json.loads(nb_path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert "papermill" not in nb["metadata"]
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown" and cells[0]["source"][0].startswith("# ")
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    for c in cells:
        if c["cell_type"] == "code":
            assert c.get("outputs") == [] and c.get("execution_count") is None, "outputs must be stripped"
            assert "papermill" not in c.get("metadata", {}) and "execution" not in c.get("metadata", {})
            src = "".join(c["source"])
            assert not any(line.lstrip().startswith(("%", "!")) for line in src.splitlines()), "no magics"
    # the parameters cell holds literal assignments only
    tree = ast.parse("".join(cells[tagged[0]]["source"]))
    for node in tree.body:
        assert isinstance(node, ast.Assign), ast.dump(node)
        ast.literal_eval(node.value)


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_sees_every_assignment_of_the_parameters_cell(nb_path):
    # papermill's parser silently drops a parameter whose comment holds '=' or '(': check all are seen
    nb = json.loads(nb_path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    names = {t.id for node in ast.parse("".join(cell["source"])).body for t in node.targets}
    assert names == set(P.notebook_defaults(nb_path.name))
