import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from qfcn import figures  # noqa: E402


def _fig():
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1, 2], [1, 0, 1])
    return fig


def test_save_is_byte_reproducible_and_closes(tmp_path):
    f1 = _fig()
    figures.save(f1, tmp_path / "a" / "x.png")
    figures.save(_fig(), tmp_path / "y.png")
    assert (tmp_path / "a" / "x.png").read_bytes() == (tmp_path / "y.png").read_bytes()
    assert (tmp_path / "y.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(f1.number)


def test_outline_keeps_the_boundary_between_touching_instances():
    img = np.zeros((6, 8, 3), np.uint8)
    inst = np.zeros((6, 8), np.int32)
    inst[1:5, 1:4], inst[1:5, 4:7] = 1, 2
    out = figures.outline(img, inst, color=(0, 1, 0))
    assert out.shape == (6, 8, 3) and out.dtype == np.float32
    assert out[2, 3, 1] == 1 and out[2, 4, 1] == 1  # both sides of the shared border are drawn
    assert out[0, 0].sum() == 0


def test_label_colors_background_black():
    inst = np.array([[0, 1], [2, 0]])
    col = figures.label_colors(inst)
    assert col[0, 0].sum() == 0 and col[0, 1].sum() > 0 and not np.allclose(col[0, 1], col[1, 0])
