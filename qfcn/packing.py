"""Packed export of a quantized model: real n-bit codes, read back without pickle.

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
``numpy.packbits`` (see :func:`qfcn.quant.inq_encode` / :func:`qfcn.quant.uniform_encode`
for the code tables) plus the per-layer exponent ``n1`` (in the header) or per-channel
float32 scales (``scale_offset`` / ``scale_nbytes`` in the payload). Everything else
(biases, batch-norm parameters and buffers) is stored raw in its own dtype.

Example:
    >>> import tempfile, os, torch
    >>> from qfcn.models import SAFCN
    >>> from qfcn import quant, packing
    >>> net = SAFCN(width=0.25, n_stages=2)
    >>> q = quant.attach_quantizer(net, "inq", 5); q.quantize_all(); q.detach()
    >>> path = os.path.join(tempfile.mkdtemp(), "net.qfcn")
    >>> rep = packing.save_packed(net, path, "inq", 5)
    >>> rep["weight_compression"] > 6
    True
    >>> _ = packing.load_packed(SAFCN(width=0.25, n_stages=2), path)
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from qfcn import quant
from qfcn.io import atomic_write_bytes

__all__ = ["MAGIC", "FORMAT_VERSION", "pack_bits", "unpack_bits", "save_packed", "load_packed", "packed_size_report"]

MAGIC = b"QFCNPACK"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIQ")
_DIGEST = 32

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


# ---------------------------------------------------------------------------- bit packing
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


# ---------------------------------------------------------------------------- helpers
def _float_state(model: nn.Module, qnames: set[str]) -> dict[str, torch.Tensor]:
    """State-dict tensors that stay float: everything but the conv weights (and their latent originals)."""
    skip = set()
    for layer in qnames:
        skip.add(f"{layer}.weight")
        skip.add(f"{layer}.parametrizations.weight.original")
    return {k: v for k, v in model.state_dict().items() if k not in skip}


def _inq_n1_from_grid(w: torch.Tensor, bits: int) -> int:
    """``n1`` for weights already on an INQ grid (0 if all zero).

    The largest exponent present, raised if needed so that the smallest magnitude present
    is still a level (a layer whose top level ended up unused keeps a valid grid).
    """
    nz = w[w != 0].abs()
    if nz.numel() == 0:
        return 0
    _, e_max = torch.frexp(nz.max())
    _, e_min = torch.frexp(nz.min())
    return max(int(e_max) - 1, int(e_min) - 1 + 2 ** (bits - 2) - 1)


def _layer_codes(model: nn.Module, scheme: str, bits: int) -> dict[str, dict]:
    ctl = quant.attached_quantizer(model)
    if ctl is not None:
        return ctl.codes()
    out = {}
    for name, m in quant.quantized_layers(model):
        if parametrize.is_parametrized(m, "weight"):
            raise ValueError(f"layer {name!r} has a parametrization but no attached qfcn quantizer")
        w = m.weight.detach()
        try:
            if scheme == "inq":
                n1 = _inq_n1_from_grid(w, bits)
                out[name] = {"codes": quant.inq_encode(w, bits, n1), "n1": n1}
            else:
                ax = quant.layer_ch_axis(m)
                try:
                    scale, per_channel = quant.recover_uniform_scale(w, bits, True, ax), True
                except ValueError:
                    scale, per_channel = quant.recover_uniform_scale(w, bits, False, ax), False
                out[name] = {"codes": quant.uniform_encode(w, bits, scale, per_channel, ax), "scale": scale,
                             "ch_axis": ax, "per_channel": per_channel}
        except ValueError as e:
            raise ValueError(f"layer {name!r} is not on the {bits}-bit {scheme} grid: {e}") from None
    return out


def _tensor_bytes(t: torch.Tensor) -> tuple[bytes, str]:
    t = t.detach().cpu().contiguous()
    if t.dtype not in _DTYPE_NAME:
        raise ValueError(f"cannot pack a tensor of dtype {t.dtype}; supported: {sorted(_DTYPES)}")
    name = _DTYPE_NAME[t.dtype]
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().astype(_DTYPES[name][1], copy=False).tobytes(), name


def _float32_checkpoint_bytes(state: dict[str, torch.Tensor], folder: Path) -> int:
    fd, tmp = tempfile.mkstemp(suffix=".pt", dir=folder)
    os.close(fd)
    try:
        torch.save({k: v.detach().cpu() for k, v in state.items()}, tmp)
        return os.path.getsize(tmp)
    finally:
        os.unlink(tmp)


# ---------------------------------------------------------------------------- save
def save_packed(model: nn.Module, path: str | os.PathLike, scheme: str | None = None, bits: int | None = None) -> dict:
    """Write ``model`` to ``path`` as packed n-bit codes plus float parts; return the size report.

    ``scheme`` / ``bits`` come from the attached quantizer (after ``step``/``quantize_all``),
    or from the arguments for a model whose weights were put on the grid by other means
    (for 'uniform' the per-channel, else per-tensor, scales are recovered exactly). A weight
    not on the grid raises ValueError. Write is atomic (temp file + ``os.replace``).

    Report keys (bytes measured, not computed): ``weight_bytes`` (packed codes + scales),
    ``float_bytes`` (raw float parts), ``header_bytes``, ``file_bytes`` (on disk),
    ``float32_weight_bytes`` (the same conv weights as float32), ``float32_checkpoint_bytes``
    (``torch.save`` of the float32 state dict, on disk), ``weight_compression`` and
    ``file_compression`` (float32 / packed), ``n_quantized_weights``, ``scheme``, ``bits``, ``path``.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder of the packed file does not exist: {path.parent}")
    ctl = quant.attached_quantizer(model)
    if ctl is not None:
        if (scheme is not None and scheme != ctl.scheme) or (bits is not None and bits != ctl.bits):
            raise ValueError(f"scheme={scheme!r} bits={bits} contradict the attached quantizer "
                             f"(scheme={ctl.scheme!r} bits={ctl.bits})")
        scheme, bits = ctl.scheme, ctl.bits
    elif scheme is None or bits is None:
        raise ValueError("model has no attached quantizer: pass scheme and bits (e.g. scheme='inq', bits=5)")
    scheme, bits = quant.check_scheme(scheme, bits)

    layers = quant.quantized_layers(model)
    qnames = {n for n, _ in layers}
    codes = _layer_codes(model, scheme, bits) if scheme != "float" else {}
    float_state = _float_state(model, qnames)

    entries, chunks, offset = [], [], 0
    weight_bytes = float_bytes = n_q = 0
    ckpt_state: dict[str, torch.Tensor] = {}

    def add(buf: bytes) -> int:
        nonlocal offset
        chunks.append(buf)
        start, offset = offset, offset + len(buf)
        return start

    for name, m in layers:
        key = f"{name}.weight"
        w = m.weight.detach()
        ckpt_state[key] = w.float()
        if scheme == "float":
            buf, dt = _tensor_bytes(w)
            entries.append({"name": key, "kind": "float", "shape": list(w.shape), "dtype": dt,
                            "offset": add(buf), "nbytes": len(buf)})
            float_bytes += len(buf)
            continue
        if w.dtype != torch.float32:
            raise ValueError(f"quantized weight {key!r} must be float32 to round-trip exactly, got {w.dtype}")
        c = codes[name]
        buf = pack_bits(c["codes"].cpu().numpy(), bits)
        entry = {"name": key, "kind": scheme, "shape": list(w.shape), "dtype": "float32",
                 "offset": add(buf), "nbytes": len(buf)}
        weight_bytes += len(buf)
        n_q += w.numel()
        if scheme == "inq":
            entry["n1"] = int(c["n1"])
        else:
            sbuf = c["scale"].detach().float().cpu().contiguous().numpy().astype("<f4").tobytes()
            entry.update(ch_axis=int(c["ch_axis"]), per_channel=bool(c["per_channel"]),
                         scale_offset=add(sbuf), scale_nbytes=len(sbuf))
            weight_bytes += len(sbuf)
        entries.append(entry)
    for key, t in float_state.items():
        buf, dt = _tensor_bytes(t)
        entries.append({"name": key, "kind": "float", "shape": list(t.shape), "dtype": dt,
                        "offset": add(buf), "nbytes": len(buf)})
        float_bytes += len(buf)
        ckpt_state[key] = t.float() if t.is_floating_point() else t

    payload = b"".join(chunks)
    header = {"format": "qfcn-packed", "version": FORMAT_VERSION, "scheme": scheme, "bits": bits,
              "payload_bytes": len(payload), "payload_sha256": hashlib.sha256(payload).hexdigest(),
              "entries": entries}
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(hbytes))
    digest = hashlib.sha256(prefix + hbytes + payload).digest()
    atomic_write_bytes(path, b"".join([prefix, hbytes, payload, digest]))

    file_bytes = os.path.getsize(path)
    ckpt_bytes = _float32_checkpoint_bytes(ckpt_state, path.parent)
    f32_w = 4 * sum(m.weight.numel() for _, m in layers)
    return {
        "path": str(path), "scheme": scheme, "bits": bits, "n_quantized_weights": n_q,
        "weight_bytes": weight_bytes if scheme != "float" else f32_w, "float_bytes": float_bytes,
        "header_bytes": len(prefix) + len(hbytes) + _DIGEST, "file_bytes": file_bytes,
        "float32_weight_bytes": f32_w, "float32_checkpoint_bytes": ckpt_bytes,
        "weight_compression": f32_w / max(weight_bytes if scheme != "float" else f32_w, 1),
        "file_compression": ckpt_bytes / file_bytes,
    }


def packed_size_report(model: nn.Module, scheme: str | None = None, bits: int | None = None) -> dict:
    """The :func:`save_packed` report of ``model``, written to (and removed from) a temporary folder."""
    with tempfile.TemporaryDirectory() as d:
        rep = save_packed(model, Path(d) / "model.qfcn", scheme=scheme, bits=bits)
    rep["path"] = None
    return rep


# ---------------------------------------------------------------------------- load
def _read_header(path: Path) -> tuple[dict, bytes, int]:
    if not path.is_file():
        raise FileNotFoundError(f"packed model file not found: {path}")
    data = path.read_bytes()
    if len(data) < _PREFIX.size + _DIGEST:
        raise PackedFormatError(f"{path}: file is truncated ({len(data)} bytes)")
    magic, version, hlen = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise PackedFormatError(f"{path}: not a qfcn packed file (magic {magic!r}, expected {MAGIC!r})")
    if version != FORMAT_VERSION:
        raise PackedFormatError(f"{path}: packed format version {version}, expected {FORMAT_VERSION}")
    if hashlib.sha256(data[:-_DIGEST]).digest() != data[-_DIGEST:]:
        raise PackedFormatError(f"{path}: checksum mismatch: the file is truncated or was modified")
    start = _PREFIX.size + hlen
    if start > len(data) - _DIGEST:
        raise PackedFormatError(f"{path}: header length {hlen} runs past the end of the file")
    try:
        header = json.loads(data[_PREFIX.size : start].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PackedFormatError(f"{path}: header is not valid JSON ({e})") from None
    payload = data[start:-_DIGEST]
    if len(payload) != header.get("payload_bytes") or hashlib.sha256(payload).hexdigest() != header.get(
        "payload_sha256"
    ):
        raise PackedFormatError(f"{path}: payload size or sha256 does not match the header")
    return header, payload, len(data)


def _decode_entry(e: dict, payload: bytes, bits: int, path: Path) -> torch.Tensor:
    shape = tuple(int(s) for s in e["shape"])
    count = int(np.prod(shape, dtype=np.int64))
    buf = payload[e["offset"] : e["offset"] + e["nbytes"]]
    if len(buf) != e["nbytes"]:
        raise PackedFormatError(f"{path}: entry {e['name']!r} runs past the payload")
    if e["kind"] == "float":
        if e["dtype"] not in _DTYPES:
            raise PackedFormatError(f"{path}: entry {e['name']!r} has unsupported dtype {e['dtype']!r}")
        tdt, ndt = _DTYPES[e["dtype"]]
        if len(buf) != count * ndt.itemsize:
            raise PackedFormatError(f"{path}: entry {e['name']!r} holds {len(buf)} bytes for shape {shape}")
        t = torch.from_numpy(np.frombuffer(buf, dtype=ndt).copy()).reshape(shape)
        return t.view(torch.bfloat16) if tdt == torch.bfloat16 else t
    codes = torch.from_numpy(unpack_bits(buf, bits, count)).reshape(shape)
    if e["kind"] == "inq":
        return quant.inq_decode(codes, bits, int(e["n1"]))
    if e["kind"] == "uniform":
        sbuf = payload[e["scale_offset"] : e["scale_offset"] + e["scale_nbytes"]]
        scale = torch.from_numpy(np.frombuffer(sbuf, dtype="<f4").copy())
        n_scale = shape[e["ch_axis"]] if e["per_channel"] else 1
        if scale.numel() != n_scale:
            raise PackedFormatError(f"{path}: entry {e['name']!r} has {scale.numel()} scales, expected {n_scale}")
        if not e["per_channel"]:
            scale = scale.reshape(())
        return quant.uniform_decode(codes, bits, scale, e["per_channel"], e["ch_axis"])
    raise PackedFormatError(f"{path}: entry {e['name']!r} has unknown kind {e['kind']!r}")


def load_packed(model: nn.Module, path: str | os.PathLike) -> dict:
    """Load a file written by :func:`save_packed` into ``model`` (bit-identical weights).

    ``model`` must be a plain model of the same architecture (no quantizer attached:
    detach it first). The file is checked before anything is written into the model:
    magic, version, sha256 of header and payload, entry names and shapes against the
    model's state dict. Returns ``{"path", "scheme", "bits", "version", "file_bytes",
    "n_entries"}``. Errors: FileNotFoundError, :class:`PackedFormatError` (a ValueError).
    """
    path = Path(path)
    if quant.attached_quantizer(model) is not None or any(
        parametrize.is_parametrized(m, "weight") for _, m in quant.quantized_layers(model)
    ):
        raise ValueError("load_packed needs a plain model: detach the attached quantizer first")
    header, payload, file_bytes = _read_header(path)
    scheme, bits = header.get("scheme"), header.get("bits")
    try:
        quant.check_scheme(scheme, bits)
    except ValueError as e:
        raise PackedFormatError(f"{path}: {e}") from None
    expected = model.state_dict()
    by_name = {e["name"]: e for e in header["entries"]}
    missing, unexpected = sorted(set(expected) - set(by_name)), sorted(set(by_name) - set(expected))
    if missing or unexpected:
        raise PackedFormatError(f"{path}: entries do not match the model: missing {missing[:5]}, "
                                f"unexpected {unexpected[:5]}")
    for name, e in by_name.items():
        if tuple(e["shape"]) != tuple(expected[name].shape):
            raise PackedFormatError(f"{path}: {name!r} has shape {tuple(e['shape'])} in the file, "
                                    f"expected {tuple(expected[name].shape)} by the model")
    state = {name: _decode_entry(e, payload, bits, path) for name, e in by_name.items()}
    model.load_state_dict(state, strict=True)
    return {"path": str(path), "scheme": scheme, "bits": bits, "version": header["version"],
            "file_bytes": file_bytes, "n_entries": len(by_name)}
