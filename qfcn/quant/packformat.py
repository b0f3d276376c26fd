"""The packed file format: bit packing, the header, reading and decoding entries (docs/method.md §4).

File layout (all integers little-endian)::

    b"QFCNPACK"            8 bytes  magic
    version                uint32   (FORMAT_VERSION)
    header_len             uint64
    header                 header_len bytes of UTF-8 JSON
    payload                header["payload_bytes"] bytes
    sha256                 32 bytes over everything before it (truncation / tampering check)

The JSON header holds ``scheme``, ``bits``, ``payload_sha256`` and ``entries``: one per
state-dict tensor with ``name``, ``kind`` (``"inq"``, ``"uniform"`` or ``"float"``),
``shape``, ``dtype``, ``offset`` and ``nbytes`` into the payload. Quantized conv / transposed
conv weights (``kind`` inq/uniform) are stored as ``bits``-bit codes packed MSB-first with
``numpy.packbits`` (see :func:`~qfcn.quant.inq.inq_encode` / :func:`~qfcn.quant.uniform.uniform_encode`
for the code tables) plus the per-layer exponent ``n1`` (in the header) or per-channel
float32 scales (``scale_offset`` / ``scale_nbytes`` in the payload). Everything else
(biases, batch-norm parameters and buffers) is stored raw in its own dtype.

>>> buf, dt = tensor_bytes(torch.tensor([1.0, -2.0]))
>>> dt, len(buf), unpack_bits(pack_bits(np.array([5, 7, 1], dtype=np.uint8), 3), 3, 3).tolist()
('float32', 8, [5, 7, 1])
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import torch

from qfcn.quant.inq import inq_decode
from qfcn.quant.uniform import uniform_decode

__all__ = ["MAGIC", "FORMAT_VERSION", "PREFIX", "DIGEST_BYTES", "PackedFormatError", "pack_bits", "unpack_bits",
           "tensor_bytes", "read_packed", "decode_entry"]

MAGIC = b"QFCNPACK"
FORMAT_VERSION = 1
#: magic, version, header length
PREFIX = struct.Struct("<8sIQ")
#: trailing sha256
DIGEST_BYTES = 32

_DTYPES: dict[str, tuple[torch.dtype, np.dtype]] = {
    "float32": (torch.float32, np.dtype("<f4")),
    "float64": (torch.float64, np.dtype("<f8")),
    "float16": (torch.float16, np.dtype("<f2")),
    "bfloat16": (torch.bfloat16, np.dtype("<i2")),  # stored as raw 16-bit patterns
    "int64": (torch.int64, np.dtype("<i8")),
    "int32": (torch.int32, np.dtype("<i4")),
    "uint8": (torch.uint8, np.dtype("u1")),
    "bool": (torch.bool, np.dtype("?")),
}
_DTYPE_NAME = {v[0]: k for k, v in _DTYPES.items()}


class PackedFormatError(ValueError):
    """A packed file is truncated, tampered with, of another version, or does not match the model."""


def pack_bits(codes: np.ndarray, bits: int) -> bytes:
    """Pack unsigned codes (each ``< 2**bits``) into ``ceil(len * bits / 8)`` bytes, MSB first.

    >>> pack_bits(np.array([1, 2, 3, 0], dtype=np.uint8), 2).hex()
    '6c'
    """
    codes = np.ascontiguousarray(codes, dtype=np.uint8).ravel()
    if codes.size and int(codes.max()) >= 2**bits:
        raise ValueError(f"codes must be < 2**bits = {2**bits}, got {int(codes.max())}")
    bitmat = np.unpackbits(codes[:, None], axis=1)[:, 8 - bits :]
    return np.packbits(bitmat.ravel()).tobytes()


def unpack_bits(buf: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``count`` uint8 codes from ``buf``."""
    need = -(-count * bits // 8)
    if len(buf) != need:
        raise ValueError(f"packed codes hold {len(buf)} bytes, expected {need} for {count} {bits}-bit codes")
    flat = np.unpackbits(np.frombuffer(buf, dtype=np.uint8))[: count * bits].reshape(count, bits)
    full = np.zeros((count, 8), dtype=np.uint8)
    full[:, 8 - bits :] = flat
    return np.packbits(full, axis=1).ravel()


def tensor_bytes(t: torch.Tensor) -> tuple[bytes, str]:
    """Raw little-endian bytes of ``t`` (C order) and its dtype name in the header."""
    t = t.detach().cpu().contiguous()
    if t.dtype not in _DTYPE_NAME:
        raise ValueError(f"cannot pack a tensor of dtype {t.dtype}; supported: {sorted(_DTYPES)}")
    name = _DTYPE_NAME[t.dtype]
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().astype(_DTYPES[name][1], copy=False).tobytes(), name


def read_packed(path: Path) -> tuple[dict, bytes, int]:
    """``(header, payload, file bytes)`` of a packed file, every checksum checked.

    Errors: FileNotFoundError, :class:`PackedFormatError`.
    """
    if not path.is_file():
        raise FileNotFoundError(f"packed model file not found: {path}")
    data = path.read_bytes()
    if len(data) < PREFIX.size + DIGEST_BYTES:
        raise PackedFormatError(f"{path}: file is truncated ({len(data)} bytes)")
    magic, version, hlen = PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise PackedFormatError(f"{path}: not a qfcn packed file (magic {magic!r}, expected {MAGIC!r})")
    if version != FORMAT_VERSION:
        raise PackedFormatError(f"{path}: packed format version {version}, expected {FORMAT_VERSION}")
    if hashlib.sha256(data[:-DIGEST_BYTES]).digest() != data[-DIGEST_BYTES:]:
        raise PackedFormatError(f"{path}: checksum mismatch: the file is truncated or was modified")
    start = PREFIX.size + hlen
    if start > len(data) - DIGEST_BYTES:
        raise PackedFormatError(f"{path}: header length {hlen} runs past the end of the file")
    try:
        header = json.loads(data[PREFIX.size : start].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PackedFormatError(f"{path}: header is not valid JSON ({e})") from None
    payload = data[start:-DIGEST_BYTES]
    if len(payload) != header.get("payload_bytes") or hashlib.sha256(payload).hexdigest() != header.get(
        "payload_sha256"
    ):
        raise PackedFormatError(f"{path}: payload size or sha256 does not match the header")
    return header, payload, len(data)


def _decode_float(e: dict, buf: bytes, shape: tuple[int, ...], count: int, path: Path) -> torch.Tensor:
    if e["dtype"] not in _DTYPES:
        raise PackedFormatError(f"{path}: entry {e['name']!r} has unsupported dtype {e['dtype']!r}")
    tdt, ndt = _DTYPES[e["dtype"]]
    if len(buf) != count * ndt.itemsize:
        raise PackedFormatError(f"{path}: entry {e['name']!r} holds {len(buf)} bytes for shape {shape}")
    t = torch.from_numpy(np.frombuffer(buf, dtype=ndt).copy()).reshape(shape)
    return t.view(torch.bfloat16) if tdt == torch.bfloat16 else t


def decode_entry(e: dict, payload: bytes, bits: int, path: Path) -> torch.Tensor:
    """The tensor of header entry ``e`` (float32 weights for inq/uniform codes); ``path`` names errors."""
    shape = tuple(int(s) for s in e["shape"])
    count = int(np.prod(shape, dtype=np.int64))
    buf = payload[e["offset"] : e["offset"] + e["nbytes"]]
    if len(buf) != e["nbytes"]:
        raise PackedFormatError(f"{path}: entry {e['name']!r} runs past the payload")
    if e["kind"] == "float":
        return _decode_float(e, buf, shape, count, path)
    codes = torch.from_numpy(unpack_bits(buf, bits, count)).reshape(shape)
    if e["kind"] == "inq":
        return inq_decode(codes, bits, int(e["n1"]))
    if e["kind"] == "uniform":
        sbuf = payload[e["scale_offset"] : e["scale_offset"] + e["scale_nbytes"]]
        scale = torch.from_numpy(np.frombuffer(sbuf, dtype="<f4").copy())
        n_scale = shape[e["ch_axis"]] if e["per_channel"] else 1
        if scale.numel() != n_scale:
            raise PackedFormatError(f"{path}: entry {e['name']!r} has {scale.numel()} scales, expected {n_scale}")
        if not e["per_channel"]:
            scale = scale.reshape(())
        return uniform_decode(codes, bits, scale, e["per_channel"], e["ch_axis"])
    raise PackedFormatError(f"{path}: entry {e['name']!r} has unknown kind {e['kind']!r}")
