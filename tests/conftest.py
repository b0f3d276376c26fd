"""Shared fixtures for every test folder: hand-written GlaS-layout folders (glas_writer) and a
one-thread torch setting for tiny networks (one_thread)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


def _square_glands(h: int, w: int, labels: tuple[int, ...]) -> np.ndarray:
    """Instance map with one 4x4 square per label, the first two touching side by side."""
    inst = np.zeros((h, w), np.uint8)
    for k, lab in enumerate(labels):
        y, x = 2, 2 + 4 * k
        inst[y:y + 4, x:x + 4] = lab
    return inst


def write_bmp(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(arr).save(path, format="BMP")


@pytest.fixture
def glas_writer(tmp_path: Path) -> Callable[..., Path]:
    """Write a tiny GlaS-layout folder and return its path.

    Default content: train_1, train_2, train_10 (sizes 16x24, 16x24, 20x18), testA_1,
    testB_1; glands labelled (3, 200) touching in train_1; Grade.csv with padded headers
    and values. ``names`` picks other images; ``grades=False`` omits Grade.csv.
    """

    def write(names: tuple[str, ...] = ("train_1", "train_2", "train_10", "testA_1", "testB_1"),
              grades: bool = True, folder: str = "glas") -> Path:
        root = tmp_path / folder
        root.mkdir()
        rng = np.random.default_rng(0)
        rows = ["name, patient ID, grade (GlaS), grade (Sirinukunwattana et al. 2015)"]
        for i, name in enumerate(names):
            h, w = (20, 18) if name == "train_10" else (16, 24)
            write_bmp(root / f"{name}.bmp", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            labels = (3, 200) if name == "train_1" else (1, 2, 3)[: 1 + i % 3]
            write_bmp(root / f"{name}_anno.bmp", _square_glands(h, w, labels))
            rows.append(f"{name}, {i + 1},  {'benign' if i % 2 == 0 else 'malignant'} , adenomatous")
        if grades:
            (root / "Grade.csv").write_text("\n".join(rows) + "\n")
        (root / "README.txt").write_text("not a GlaS file\n")
        return root

    return write


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks run fastest on one thread (two threads on two busy cores thrash);
    restores the thread count after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
