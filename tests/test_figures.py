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


def _row(label, panel, mean, low=None, high=None, values=(), n=None, **kw):
    return dict(label=label, panel=panel, mean=mean, low=low, high=high, values=list(values),
                n=len(values) if n is None else n, **kw)


def test_photo_grids_are_saved_readable():
    assert figures.PHOTO_DPI >= 100


def test_interval_panels_one_panel_per_configuration_and_caption_with_n(tmp_path):
    rows = [_row("ntq", "qsa5 · Test A", 0.8, 0.7, 0.9, (0.75, 0.8, 0.85)),
            _row("ntq", "qsa7 · Test A", 0.82, 0.78, 0.86, (0.8, 0.82, 0.84)),
            _row("float", "qsa7 · Test A", 0.7, values=(0.7,))]  # n = 1: no interval, still drawn
    cap = figures.interval_panels(rows, tmp_path / "v.png", ylabel="F1", what="variants")
    assert "95% Student-t interval" in cap and "n = 1, 3 seeds" in cap
    again = figures.interval_panels(rows, tmp_path / "w.png", ylabel="F1", what="variants")
    assert cap == again and (tmp_path / "v.png").read_bytes() == (tmp_path / "w.png").read_bytes()


def test_panels_are_never_pooled(tmp_path, monkeypatch):
    """Each distinct panel gets its own axes; a row is drawn only on its own panel's axes."""
    seen = []
    orig = figures._interval
    monkeypatch.setattr(figures, "_interval",
                        lambda ax, x, r, **kw: (seen.append((id(ax), r["panel"])), orig(ax, x, r, **kw)))
    rows = [_row("ntq", p, 0.8, 0.7, 0.9, (0.8, 0.8)) for p in ("5-bit", "7-bit", "5-bit")]
    figures.interval_panels(rows, tmp_path / "p.png", ylabel="F1", what="x")
    axes_of = {}
    for ax, panel in seen:
        axes_of.setdefault(panel, set()).add(ax)
    assert len(axes_of) == 2 and all(len(a) == 1 for a in axes_of.values())
    assert axes_of["5-bit"] != axes_of["7-bit"]


def test_contrast_memory_and_distribution_panels(tmp_path):
    entries = [_row("NTQ vs control", "Test A", -0.01, -0.03, 0.01, (-0.02, 0.0), mde=0.02, verdict="inconclusive"),
               _row("INQ vs uniform", "Test A", 0.05, 0.01, 0.09, (0.04, 0.06), mde=0.03, verdict="a better"),
               _row("single seed", "Test B", 0.02, values=(0.02,), mde=None, verdict="needs more seeds")]
    assert "a − b" in figures.contrast_panels(entries, tmp_path / "c.png", xlabel="difference in F1")
    mem = [_row("float (32-bit)", "Test A", 0.8, 0.7, 0.9, (0.8, 0.8), bytes=50000),
           _row("ntq (5-bit)", "Test A", 0.79, 0.7, 0.88, (0.79, 0.79), bytes=7800)]
    assert "measured size" in figures.memory_panels(mem, tmp_path / "m.png", ylabel="F1")
    groups = [dict(label="sa", panel="Test A", values=[0.9, 0.8, 0.7]), dict(label="q", panel="Test B", values=[0.5])]
    assert "every test image" in figures.distribution_panels(groups, tmp_path / "d.png", ylabel="F1")
    assert all((tmp_path / f).read_bytes()[:4] == b"\x89PNG" for f in ("c.png", "m.png", "d.png"))
