"""Weight quantizers of the study: INQ (powers of two) and uniform fixed-point (docs/method.md §4).

The one public API of :mod:`qfcn.quant`; callers write ``from qfcn import quant`` then
``quant.attach_quantizer(...)``, ``quant.save_packed(...)``. Where things live:

- :mod:`~qfcn.quant.common`: :data:`SCHEMES`, :func:`check_scheme`, the quantized layers
  (every ``nn.Conv2d`` / ``nn.ConvTranspose2d`` weight; biases, batch-norm and
  activations stay float) and their output-channel axis.
- :mod:`~qfcn.quant.inq`: INQ levels, rule, codes. :mod:`~qfcn.quant.uniform`: uniform
  fixed-point scales, fake quantization, codes, ``round_ste``.
- :mod:`~qfcn.quant.controllers`: :func:`attach_quantizer` / :func:`attached_quantizer`;
  the controllers (:mod:`~qfcn.quant.base`, :mod:`~qfcn.quant.inq_controller`,
  :mod:`~qfcn.quant.uniform_controller`) live on the quantized layers, so
  ``copy.deepcopy(model)`` carries them.
- :mod:`~qfcn.quant.packing` (file layout in :mod:`~qfcn.quant.packformat`): packed n-bit files.

Bit-width 32 with any scheme means float.

>>> from qfcn.models import SAFCN
>>> net = SAFCN(width=0.25, n_stages=2)
>>> q = attach_quantizer(net, "uniform", 5); q.quantize_all()
>>> packed_size_report(net)["weight_compression"] > 4  # 5-bit codes plus per-channel scales
True
"""

from qfcn.quant.base import FloatQuantizer, WeightQuantizer
from qfcn.quant.common import SCHEMES, check_scheme, layer_ch_axis, quantized_layers
from qfcn.quant.controllers import attach_quantizer, attached_quantizer
from qfcn.quant.inq import inq_decode, inq_encode, inq_levels, inq_n1, inq_quantize
from qfcn.quant.inq_controller import INQQuantizer
from qfcn.quant.packformat import PackedFormatError
from qfcn.quant.packing import load_packed, packed_size_report, save_packed
from qfcn.quant.uniform import (recover_uniform_scale, round_ste, uniform_decode, uniform_encode, uniform_quantize,
                                uniform_scale)
from qfcn.quant.uniform_controller import UniformQuantizer

__all__ = [
    "SCHEMES",
    "check_scheme",
    "quantized_layers",
    "layer_ch_axis",
    "round_ste",
    "inq_n1",
    "inq_levels",
    "inq_quantize",
    "inq_encode",
    "inq_decode",
    "uniform_scale",
    "uniform_quantize",
    "uniform_encode",
    "uniform_decode",
    "recover_uniform_scale",
    "attach_quantizer",
    "attached_quantizer",
    "WeightQuantizer",
    "FloatQuantizer",
    "INQQuantizer",
    "UniformQuantizer",
    "save_packed",
    "load_packed",
    "packed_size_report",
    "PackedFormatError",
]
