"""qfcn: quantized fully convolutional networks for gland segmentation.

A reproducible study of Xu et al., "Quantization of Fully Convolutional Networks for
Accurate Biomedical Image Segmentation" (CVPR 2018): suggestive annotation with a
quantized ensemble (QSA) and network training with quantization (NTQ), evaluated with
the GlaS challenge metrics.

The package is deliberately light to import: ``python -m qfcn`` must start under a bare
interpreter (it creates the project's environment on first use, see ``qfcn._bootstrap``),
so submodules are imported explicitly, e.g. ``from qfcn import data, models, quant``.
"""

__version__ = "0.1.0"
