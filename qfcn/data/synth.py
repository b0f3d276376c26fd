"""Procedural GlaS-like H&E images written in the GlaS (Warwick-QU) layout (docs/method.md §2).

GlaS is research-only and cannot be shipped, so the study's default data set is drawn
here: glands (epithelial rings of nuclei around lumens) in textured, eosin-rich stroma,
with the things that make real GlaS hard, more of them as ``difficulty`` grows:

* irregular outlines (radial Fourier perturbation of an ellipse) with budding lobes; crowding
  down to TOUCHING glands (distinct labels sharing a border); fragmented malignant glands cut
  by stroma into pieces, each piece its own label (GlaS: a gland is one connected region);
* varied interiors: epithelium thickness, lumen size and shape, secretion / mucin / dirty
  necrosis in lumens, solid nests, cribriform glands; mottled cytoplasm, patchy nuclear
  density and a stain shift per gland;
* gland-like DECOYS, never labelled: vessels (empty or full of red cells), fat, tears, clefts,
  lymphoid aggregates, ring-like stroma;
* tissue folds, global and local blur, uneven illumination, noise, JPEG-like compression.

:func:`render_image` draws one image from its pieces, in this order of random draws:
outlines (:mod:`~qfcn.data.synth_glands`), interiors (:mod:`~qfcn.data.synth_epithelium`),
fragmentation, lumen contents (:mod:`~qfcn.data.synth_lumen`), nuclei, stroma
(:mod:`~qfcn.data.synth_stroma`), decoys (:mod:`~qfcn.data.synth_artefacts`), colour
(:mod:`~qfcn.data.synth_stain`: haematoxylin / eosin / DAB optical densities converted by
:func:`skimage.color.hed2rgb`) and artefacts (:mod:`~qfcn.data.synth_optics`).

Layout written by :func:`make_glas` (see :mod:`qfcn.data.glas`): ``train_<i>.bmp`` /
``testA_<i>.bmp`` / ``testB_<i>.bmp`` (RGB, uint8), ``<name>_anno.bmp`` (8-bit instance
map, 0 = background), ``Grade.csv`` and ``synth.json`` (arguments, generator version and
per-image grade / difficulty / counts). Everything is deterministic: each image is drawn
from ``np.random.SeedSequence([seed, split_id, index])`` alone.

Example::

    >>> import numpy as np
    >>> from qfcn import data
    >>> rng = np.random.default_rng(0)
    >>> image, instances, info = data.render_image(rng, 0.5, 130, 194, scale=0.25)
    >>> image.shape, image.dtype, instances.dtype
    ((130, 194, 3), dtype('uint8'), dtype('int32'))
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from qfcn.data.synth_artefacts import decoys
from qfcn.data.synth_epithelium import epithelial_nuclei, gland_interior
from qfcn.data.synth_glands import fragment, place_glands
from qfcn.data.synth_lumen import lumen_contents
from qfcn.data.synth_optics import fold_thickness, optics
from qfcn.data.synth_shapes import count_touching_pairs
from qfcn.data.synth_stain import optical_densities, stain_to_rgb
from qfcn.data.synth_stroma import stroma

GENERATOR_VERSION = "3.0"  # 3.0: fragment cuts 6-22 px wide and nuclei kept inside their gland (visible cuts)

#: (file prefix, split id used in the seed, GlaS-like benign fraction)
SPLITS: tuple[tuple[str, int, float], ...] = (("train", 0, 0.45), ("testA", 1, 0.55), ("testB", 2, 0.20))

#: per-image base difficulty range by (split prefix, grade); Test B sits higher than Test A
_BASE_RANGE = {
    ("train", "benign"): (0.05, 0.50), ("train", "malignant"): (0.45, 0.95),
    ("testA", "benign"): (0.05, 0.50), ("testA", "malignant"): (0.45, 0.95),
    ("testB", "benign"): (0.20, 0.65), ("testB", "malignant"): (0.60, 1.00),
}
#: GlaS image sizes (H, W) at scale 1 and how often they are drawn
_SIZES = (((522, 775), 0.85), ((453, 589), 0.10), ((433, 574), 0.05))


# --------------------------------------------------------------------------- one image
def _check_render_args(difficulty: float, height: int, width: int, grade: str, scale: float) -> None:
    if grade not in ("benign", "malignant"):
        raise ValueError(f"grade must be 'benign' or 'malignant', got {grade!r}")
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    if height < 16 or width < 16:
        raise ValueError(f"height and width must be >= 16 pixels, got {height}x{width}")
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")


def render_layers(rng: np.random.Generator, difficulty: float, height: int, width: int, *,
                  grade: str = "benign",
                  scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """:func:`render_image` plus the (H, W) bool mask of the decoys (never on a gland)."""
    _check_render_args(difficulty, height, width, grade, scale)
    d, mal, shape = float(difficulty), grade == "malignant", (int(height), int(width))
    whole, glands = place_glands(rng, shape, d, mal, scale)
    inner = gland_interior(rng, whole, len(glands), d, mal, scale)
    instances, n_frag = fragment(rng, whole, d, mal, scale)
    fg = instances > 0
    inner.restrict(fg)
    contents = lumen_contents(rng, instances, inner.lumen, d, mal, scale)
    nuc, goblet = epithelial_nuclei(rng, inner, instances, d, mal, scale)
    nuc *= ndimage.gaussian_filter(fg.astype(np.float32), max(0.5, scale))  # nuclei stay in their gland
    fibres, fine, snuc = stroma(rng, fg, d, scale)
    dec = decoys(rng, fg, len(glands), d, scale)
    tissue = dict(inst=instances, sep=inner.sep, lumen=inner.lumen, fibres=fibres, wobble=inner.wobble,
                  goblet=goblet, nuc=nuc, snuc=snuc, fine=fine, **contents,
                  **{k: dec[k] for k in ("white", "rim", "rbc", "dnuc", "ring")})
    h_od, e_od = optical_densities(rng, tissue, d, mal, scale)
    thickness = fold_thickness(rng, shape, d, scale)
    image = optics(rng, stain_to_rgb(rng, h_od, e_od, d, thickness), d, scale)
    info = {"grade": grade, "difficulty": round(d, 6), "n_glands": int(instances.max()),
            "n_touching_pairs": count_touching_pairs(instances), "n_decoys": dec["n"],
            "n_solid": int(inner.solid[1:].sum()), "n_cribriform": int(inner.cribriform[1:].sum()),
            "n_fragmented": n_frag, "n_buds": int(sum(g["bud_r"].size for g in glands)),
            "decoy_fraction": round(float(dec["mask"].mean()), 6),
            "fold_fraction": round(float((thickness > 1.3).mean()), 6),
            "irregularity": round(float(np.mean([g["irregularity"] for g in glands])) if glands else 0.0, 6)}
    return image, instances, dec["mask"], info


def render_image(rng: np.random.Generator, difficulty: float, height: int, width: int, *,
                 grade: str = "benign", scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Draw one GlaS-like H&E image.

    Args:
        rng: the only source of randomness (same state -> identical output).
        difficulty: in [0, 1]; every hardship listed in the module docstring grows with it.
        height, width: image size in pixels (any size >= 16).
        grade: 'benign' or 'malignant' (larger irregular glands, stratified nuclei, solid,
            cribriform and fragmented glands, dirty necrosis).
        scale: pixel scale relative to GlaS at 20x (glands have a mean radius ~66 * scale px).

    Returns:
        image (H, W, 3) uint8 RGB; instances (H, W) int32, 0 = background, glands 1..n, each
        one connected region; info: grade, difficulty, n_glands, n_touching_pairs, n_decoys,
        n_fragmented (glands cut into >= 2 pieces), n_solid, n_cribriform, n_buds (these three
        before cutting), decoy_fraction, fold_fraction (of all pixels), irregularity.
    """
    image, instances, _, info = render_layers(rng, difficulty, height, width, grade=grade, scale=scale)
    return image, instances, info


# --------------------------------------------------------------------------- data set
def _image_difficulty(base: float, knob: float) -> float:
    """Monotone shift of a base difficulty by the global knob: base ** 4 ** (0.5 - knob).

    knob 0.5 keeps base; knob 1 gives sqrt(base) (harder); knob 0 gives base**2 (easier).
    Order between images is kept at every knob value.
    """
    return float(min(1.0, max(0.0, base)) ** (4.0 ** (0.5 - knob)))


def _split_grades(seed: int, split_id: int, n: int, benign_fraction: float) -> list[str]:
    """Grades of the ``n`` images of a split: ``round(benign_fraction * n)`` benign, shuffled by seed."""
    n_benign = round(benign_fraction * n)
    grades = np.array(["benign"] * n_benign + ["malignant"] * (n - n_benign))
    return list(np.random.default_rng(np.random.SeedSequence([seed, split_id, 10 ** 6])).permutation(grades))


def draw_split_image(seed: int, prefix: str, index: int, *, grade: str, difficulty: float = 0.5,
                     scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Image ``<prefix>_<index>`` of a set (index from 1) exactly as :func:`make_glas` draws it."""
    split_id = {p: i for p, i, _ in SPLITS}[prefix]
    rng = np.random.default_rng(np.random.SeedSequence([seed, split_id, index]))
    sizes, probs = zip(*_SIZES)
    h, w = sizes[int(rng.choice(len(sizes), p=probs))]
    lo, hi = _BASE_RANGE[(prefix, grade)]
    d = _image_difficulty(rng.uniform(lo, hi), difficulty)
    h, w = max(16, round(h * scale)), max(16, round(w * scale))
    return render_image(rng, d, h, w, grade=grade, scale=scale)


_SIRINUKUNWATTANA = {"benign": ("healthy", "adenomatous"),
                     "malignant": ("moderately differentiated", "moderately-to-poorly differentated",
                                   "poorly differentiated")}


def _is_glas_like(folder: Path) -> bool:
    """True when ``folder`` holds only files this generator writes (safe to replace)."""
    pat = re.compile(r"^(train|testA|testB)_\d+(_anno)?\.bmp$|^Grade\.csv$|^synth\.json$")
    return all(p.is_file() and pat.match(p.name) for p in folder.iterdir())


def _check_set_args(n_train: int, n_test_a: int, n_test_b: int, scale: float, difficulty: float) -> None:
    for name, v in (("n_train", n_train), ("n_test_a", n_test_a), ("n_test_b", n_test_b)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if not 0.0 <= float(difficulty) <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    if not 0.05 <= float(scale) <= 4.0:
        raise ValueError(f"scale must be in [0.05, 4], got {scale}")


def _finished(root: Path, args: dict[str, Any], overwrite: bool) -> bool:
    """True when ``root`` already holds the finished set for ``args``; raises when ``root`` holds
    anything else that may not (or, without ``overwrite``, should not) be replaced."""
    if not root.exists():
        return False
    if not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a folder")
    meta_path = root / "synth.json"
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("args") == args and old.get("complete"):
            return True
    if any(root.iterdir()):
        what = "a synthetic set with other arguments" if meta_path.is_file() else "other files"
        if not overwrite:
            raise FileExistsError(f"{root} already holds {what}; pass overwrite=True to replace it "
                                  f"(wanted {args})")
        if not _is_glas_like(root):
            raise FileExistsError(f"{root} holds files that are not GlaS-layout files; refusing to "
                                  "delete it even with overwrite=True: choose another folder")
    return False


def _write_images(folder: Path, seed: int, counts: dict[str, int], difficulty: float,
                  scale: float) -> tuple[dict[str, Any], list[list[str]]]:
    """Draw and write every image and annotation; returns (name -> info, Grade.csv rows)."""
    images: dict[str, Any] = {}
    rows = []
    for prefix, split_id, frac in SPLITS:
        grades = _split_grades(seed, split_id, counts[prefix], frac)
        for i, grade in enumerate(grades, start=1):
            name = f"{prefix}_{i}"
            image, inst, info = draw_split_image(seed, prefix, i, grade=grade, difficulty=difficulty, scale=scale)
            if inst.max() > 255:
                raise RuntimeError(f"{name}: {inst.max()} glands do not fit an 8-bit annotation")
            Image.fromarray(image, "RGB").save(folder / f"{name}.bmp", format="BMP")
            Image.fromarray(inst.astype(np.uint8), "L").save(folder / f"{name}_anno.bmp", format="BMP")
            images[name] = info
            sub = _SIRINUKUNWATTANA[grade]
            sub_grade = sub[min(len(sub) - 1, int(info["difficulty"] * len(sub)))]
            rows.append([name, str(1 + (i - 1) // 4 + 100 * split_id), f" {grade}", f" {sub_grade}"])
    return images, rows


def _grade_csv(rows: list[list[str]]) -> str:
    """Grade.csv text with GlaS's header (leading spaces kept, as in GlaS)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", " patient ID", " grade (GlaS)", " grade (Sirinukunwattana et al. 2015)"])
    writer.writerows(rows)
    return buf.getvalue()


def _swap_in(tmp: Path, root: Path) -> None:
    """Rename the finished ``tmp`` folder to ``root``, replacing (then deleting) an old ``root``."""
    old_dir = None
    if root.exists():
        old_dir = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
        root.rename(old_dir)
    tmp.rename(root)
    if old_dir is not None:
        shutil.rmtree(old_dir, ignore_errors=True)


def make_glas(root: str | os.PathLike, *, seed: int = 0, n_train: int = 85, n_test_a: int = 60,
              n_test_b: int = 20, scale: float = 1.0, difficulty: float = 0.5,
              overwrite: bool = False) -> Path:
    """Write a synthetic GlaS set at ``root`` and return its path.

    Files: ``train_1.bmp`` ... ``testB_<n>.bmp`` (RGB uint8), ``<name>_anno.bmp`` (8-bit
    instance maps), ``Grade.csv`` (GlaS columns, values with leading spaces as in GlaS),
    ``synth.json`` (arguments, ``generator_version``, per-image grade / difficulty / counts).

    Grades follow GlaS-like mixes (benign: train 45%, Test A 55%, Test B 20%); each image's
    difficulty is drawn from a grade- and split-dependent range (Test B higher) and shifted
    monotonically by ``difficulty`` in [0, 1]. Same arguments -> byte-identical files.

    The set is written to a temporary sibling folder and renamed into place, so a failed run
    leaves nothing at ``root``. A finished set with the same arguments at ``root`` is returned
    at once. A different set or any other non-empty folder raises ``FileExistsError`` unless
    ``overwrite=True``; even then only a folder holding nothing but GlaS-layout files is
    replaced (a safety guard against deleting unrelated data).
    """
    _check_set_args(n_train, n_test_a, n_test_b, scale, difficulty)
    root = Path(root)
    args = {"seed": int(seed), "n_train": int(n_train), "n_test_a": int(n_test_a), "n_test_b": int(n_test_b),
            "scale": float(scale), "difficulty": float(difficulty), "generator_version": GENERATOR_VERSION}
    if _finished(root, args, overwrite):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        counts = {"train": n_train, "testA": n_test_a, "testB": n_test_b}
        images, rows = _write_images(tmp, int(seed), counts, float(difficulty), float(scale))
        (tmp / "Grade.csv").write_text(_grade_csv(rows))
        meta = {"args": args, "complete": True, "images": images}
        (tmp / "synth.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        _swap_in(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
