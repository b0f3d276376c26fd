"""Hand-made instance maps for the metric tests (shared by test_metrics and test_matching)."""
import numpy as np

from qfcn.metrics import glas_metrics


def instance_map(shape, *boxes, dtype=np.int32):
    """Instance map from (label, r0, r1, c0, c1) boxes, rows r0..r1-1, cols c0..c1-1."""
    out = np.zeros(shape, dtype)
    for lab, r0, r1, c0, c1 in boxes:
        out[r0:r1, c0:c1] = lab
    return out


def one(gt, pred):
    """GlaS metrics of one image pair."""
    return glas_metrics([gt], [pred])
