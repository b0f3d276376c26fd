"""The data layer (docs/method.md §2): GlaS-layout loading and manifests, gland object / contour
targets, seeded augmented training crops, the synthetic GlaS generator, and the training /
validation / bootstrap splits. This module is the public API: callers write
``from qfcn import data`` and use ``data.load_glas``, ``data.GlasCrops``, ``data.make_glas``, ...

Modules: :mod:`~qfcn.data.glas` (files, readers, manifest, targets), :mod:`~qfcn.data.load`
(:func:`load_glas` at a working scale, label checks, validation images, :func:`load_from_manifest`),
:mod:`~qfcn.data.crops`
(training crops), :mod:`~qfcn.data.augment` (stain jitter, elastic warps),
:mod:`~qfcn.data.splits`, :mod:`~qfcn.data.synth` (generator and writer, drawing from
``synth_shapes``, ``synth_glands``, ``synth_stroma``, ``synth_artefacts``, ``synth_stain``)
and :mod:`~qfcn.data.prepare` (the study's data step).

>>> from qfcn import data
>>> data.SPLIT_PREFIXES["test_a"], data.is_test(data.Sample("testA_1", "test_a", None, None))
('testA', True)
"""

from qfcn.data.crops import GlasCrops, to_tensor_image
from qfcn.data.glas import (
    SPLIT_PREFIXES,
    UNKNOWN_GRADE,
    GlasDataset,
    GlasFormatError,
    Sample,
    canonical_name,
    gland_areas,
    glas_manifest,
    object_contour_targets,
    read_grades,
    read_image,
    read_instances,
)
from qfcn.data.load import LABEL_SOURCES, load_from_manifest, load_glas, resample, working_shape
from qfcn.data.prepare import check_data_params, contour_width_px, prepare_glas
from qfcn.data.splits import bootstrap_resample, carve_validation, is_test, member_seed, split_validation
from qfcn.data.synth import GENERATOR_VERSION, draw_split_image, make_glas, render_image
from qfcn.data.synth_shapes import count_touching_pairs

__all__ = [
    "GENERATOR_VERSION",
    "LABEL_SOURCES",
    "SPLIT_PREFIXES",
    "UNKNOWN_GRADE",
    "GlasCrops",
    "GlasDataset",
    "GlasFormatError",
    "Sample",
    "bootstrap_resample",
    "canonical_name",
    "carve_validation",
    "check_data_params",
    "contour_width_px",
    "count_touching_pairs",
    "draw_split_image",
    "gland_areas",
    "glas_manifest",
    "is_test",
    "load_from_manifest",
    "load_glas",
    "make_glas",
    "member_seed",
    "object_contour_targets",
    "prepare_glas",
    "read_grades",
    "read_image",
    "read_instances",
    "render_image",
    "resample",
    "split_validation",
    "to_tensor_image",
    "working_shape",
]
