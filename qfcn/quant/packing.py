"""Packed export of a quantized model: real n-bit codes, read back without pickle (docs/method.md §4).

The file layout is in :mod:`qfcn.quant.packformat`. :func:`save_packed` writes a model
whose conv weights are on the grid (from the attached controller or recovered from the
weights), :func:`load_packed` reads it back bit for bit, :func:`packed_size_report`
measures the bytes without keeping the file.

Example:
    >>> import tempfile, os, torch
    >>> from qfcn.models import SAFCN
    >>> from qfcn import quant
    >>> net = SAFCN(width=0.25, n_stages=2)
    >>> q = quant.attach_quantizer(net, "inq", 5); q.quantize_all(); q.detach()
    >>> path = os.path.join(tempfile.mkdtemp(), "net.qfcn")
    >>> rep = quant.save_packed(net, path, "inq", 5)
    >>> rep["weight_compression"] > 6
    True
    >>> _ = quant.load_packed(SAFCN(width=0.25, n_stages=2), path)
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from qfcn.io import atomic_write_bytes
from qfcn.quant.common import check_scheme, layer_ch_axis, quantized_layers
from qfcn.quant.controllers import attached_quantizer
from qfcn.quant.inq import inq_encode, inq_n1_from_grid
from qfcn.quant.packformat import (DIGEST_BYTES, FORMAT_VERSION, MAGIC, PREFIX, PackedFormatError, decode_entry,
                                   pack_bits, read_packed, tensor_bytes)
from qfcn.quant.uniform import recover_uniform_scale, uniform_encode

__all__ = ["save_packed", "load_packed", "packed_size_report"]


# ---------------------------------------------------------------------------- codes of the layers
def _float_state(model: nn.Module, qnames: set[str]) -> dict[str, torch.Tensor]:
    """State-dict tensors that stay float: everything but the conv weights (and their latent originals)."""
    skip = set()
    for layer in qnames:
        skip.add(f"{layer}.weight")
        skip.add(f"{layer}.parametrizations.weight.original")
    return {k: v for k, v in model.state_dict().items() if k not in skip}


def _grid_codes(w: torch.Tensor, m: nn.Module, scheme: str, bits: int) -> dict:
    """Codes of a weight already on the grid (no controller): ``n1`` or scales recovered from it."""
    if scheme == "inq":
        n1 = inq_n1_from_grid(w, bits)
        return {"codes": inq_encode(w, bits, n1), "n1": n1}
    ax = layer_ch_axis(m)
    try:
        scale, per_channel = recover_uniform_scale(w, bits, True, ax), True
    except ValueError:
        scale, per_channel = recover_uniform_scale(w, bits, False, ax), False
    return {"codes": uniform_encode(w, bits, scale, per_channel, ax), "scale": scale,
            "ch_axis": ax, "per_channel": per_channel}


def _layer_codes(model: nn.Module, scheme: str, bits: int) -> dict[str, dict]:
    ctl = attached_quantizer(model)
    if ctl is not None:
        return ctl.codes()
    out = {}
    for name, m in quantized_layers(model):
        if parametrize.is_parametrized(m, "weight"):
            raise ValueError(f"layer {name!r} has a parametrization but no attached qfcn quantizer")
        try:
            out[name] = _grid_codes(m.weight.detach(), m, scheme, bits)
        except ValueError as e:
            raise ValueError(f"layer {name!r} is not on the {bits}-bit {scheme} grid: {e}") from None
    return out


def _resolve_scheme(model: nn.Module, scheme: str | None, bits: int | None) -> tuple[str, int]:
    """(scheme, bits) from the attached controller, else from the arguments; checked."""
    ctl = attached_quantizer(model)
    if ctl is not None:
        if (scheme is not None and scheme != ctl.scheme) or (bits is not None and bits != ctl.bits):
            raise ValueError(f"scheme={scheme!r} bits={bits} contradict the attached quantizer "
                             f"(scheme={ctl.scheme!r} bits={ctl.bits})")
        scheme, bits = ctl.scheme, ctl.bits
    elif scheme is None or bits is None:
        raise ValueError("model has no attached quantizer: pass scheme and bits (e.g. scheme='inq', bits=5)")
    return check_scheme(scheme, bits)


# ---------------------------------------------------------------------------- payload
class _Payload:
    """Chunks of the payload, each entry at the running offset; byte counts by kind."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.offset = 0
        self.entries: list[dict] = []
        self.weight_bytes = self.float_bytes = self.n_quantized = 0
        self.ckpt_state: dict[str, torch.Tensor] = {}  # the same model as float32, for the size comparison

    def add(self, buf: bytes) -> int:
        start, self.offset = self.offset, self.offset + len(buf)
        self.chunks.append(buf)
        return start

    def add_float(self, key: str, t: torch.Tensor) -> None:
        buf, dt = tensor_bytes(t)
        self.entries.append({"name": key, "kind": "float", "shape": list(t.shape), "dtype": dt,
                             "offset": self.add(buf), "nbytes": len(buf)})
        self.float_bytes += len(buf)

    def add_codes(self, key: str, w: torch.Tensor, scheme: str, bits: int, c: dict) -> None:
        if w.dtype != torch.float32:
            raise ValueError(f"quantized weight {key!r} must be float32 to round-trip exactly, got {w.dtype}")
        buf = pack_bits(c["codes"].cpu().numpy(), bits)
        entry = {"name": key, "kind": scheme, "shape": list(w.shape), "dtype": "float32",
                 "offset": self.add(buf), "nbytes": len(buf)}
        self.weight_bytes += len(buf)
        self.n_quantized += w.numel()
        if scheme == "inq":
            entry["n1"] = int(c["n1"])
        else:
            sbuf = c["scale"].detach().float().cpu().contiguous().numpy().astype("<f4").tobytes()
            entry.update(ch_axis=int(c["ch_axis"]), per_channel=bool(c["per_channel"]),
                         scale_offset=self.add(sbuf), scale_nbytes=len(sbuf))
            self.weight_bytes += len(sbuf)
        self.entries.append(entry)


def _payload(model: nn.Module, layers: list[tuple[str, nn.Module]], scheme: str, bits: int) -> _Payload:
    """Conv weights in layer order (codes, or raw for float), then every other state-dict tensor raw."""
    codes = _layer_codes(model, scheme, bits) if scheme != "float" else {}
    float_state = _float_state(model, {n for n, _ in layers})
    p = _Payload()
    for name, m in layers:
        key = f"{name}.weight"
        w = m.weight.detach()
        p.ckpt_state[key] = w.float()
        if scheme == "float":
            p.add_float(key, w)
        else:
            p.add_codes(key, w, scheme, bits, codes[name])
    for key, t in float_state.items():
        p.add_float(key, t)
        p.ckpt_state[key] = t.float() if t.is_floating_point() else t
    return p


def _write(path: Path, scheme: str, bits: int, p: _Payload) -> int:
    """Write prefix, header, payload and digest atomically; return the header bytes (prefix + JSON + digest)."""
    payload = b"".join(p.chunks)
    header = {"format": "qfcn-packed", "version": FORMAT_VERSION, "scheme": scheme, "bits": bits,
              "payload_bytes": len(payload), "payload_sha256": hashlib.sha256(payload).hexdigest(),
              "entries": p.entries}
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    prefix = PREFIX.pack(MAGIC, FORMAT_VERSION, len(hbytes))
    digest = hashlib.sha256(prefix + hbytes + payload).digest()
    atomic_write_bytes(path, b"".join([prefix, hbytes, payload, digest]))
    return len(prefix) + len(hbytes) + DIGEST_BYTES


def _float32_checkpoint_bytes(state: dict[str, torch.Tensor], folder: Path) -> int:
    fd, tmp = tempfile.mkstemp(suffix=".pt", dir=folder)
    os.close(fd)
    try:
        torch.save({k: v.detach().cpu() for k, v in state.items()}, tmp)
        return os.path.getsize(tmp)
    finally:
        os.unlink(tmp)


# ---------------------------------------------------------------------------- save / load
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
    scheme, bits = _resolve_scheme(model, scheme, bits)
    layers = quantized_layers(model)
    p = _payload(model, layers, scheme, bits)
    header_bytes = _write(path, scheme, bits, p)
    file_bytes = os.path.getsize(path)
    ckpt_bytes = _float32_checkpoint_bytes(p.ckpt_state, path.parent)
    f32_w = 4 * sum(m.weight.numel() for _, m in layers)
    weight_bytes = p.weight_bytes if scheme != "float" else f32_w
    return {
        "path": str(path), "scheme": scheme, "bits": bits, "n_quantized_weights": p.n_quantized,
        "weight_bytes": weight_bytes, "float_bytes": p.float_bytes,
        "header_bytes": header_bytes, "file_bytes": file_bytes,
        "float32_weight_bytes": f32_w, "float32_checkpoint_bytes": ckpt_bytes,
        "weight_compression": f32_w / max(weight_bytes, 1),
        "file_compression": ckpt_bytes / file_bytes,
    }


def packed_size_report(model: nn.Module, scheme: str | None = None, bits: int | None = None) -> dict:
    """The :func:`save_packed` report of ``model``, written to (and removed from) a temporary folder."""
    with tempfile.TemporaryDirectory() as d:
        rep = save_packed(model, Path(d) / "model.qfcn", scheme=scheme, bits=bits)
    rep["path"] = None
    return rep


def _check_entries(expected: dict[str, torch.Tensor], by_name: dict[str, dict], path: Path) -> None:
    missing, unexpected = sorted(set(expected) - set(by_name)), sorted(set(by_name) - set(expected))
    if missing or unexpected:
        raise PackedFormatError(f"{path}: entries do not match the model: missing {missing[:5]}, "
                                f"unexpected {unexpected[:5]}")
    for name, e in by_name.items():
        if tuple(e["shape"]) != tuple(expected[name].shape):
            raise PackedFormatError(f"{path}: {name!r} has shape {tuple(e['shape'])} in the file, "
                                    f"expected {tuple(expected[name].shape)} by the model")


def load_packed(model: nn.Module, path: str | os.PathLike) -> dict:
    """Load a file written by :func:`save_packed` into ``model`` (bit-identical weights).

    ``model`` must be a plain model of the same architecture (no quantizer attached:
    detach it first). The file is checked before anything is written into the model:
    magic, version, sha256 of header and payload, entry names and shapes against the
    model's state dict. Returns ``{"path", "scheme", "bits", "version", "file_bytes",
    "n_entries"}``. Errors: FileNotFoundError, :class:`PackedFormatError` (a ValueError).
    """
    path = Path(path)
    if attached_quantizer(model) is not None or any(
        parametrize.is_parametrized(m, "weight") for _, m in quantized_layers(model)
    ):
        raise ValueError("load_packed needs a plain model: detach the attached quantizer first")
    header, payload, file_bytes = read_packed(path)
    scheme, bits = header.get("scheme"), header.get("bits")
    try:
        check_scheme(scheme, bits)
    except ValueError as e:
        raise PackedFormatError(f"{path}: {e}") from None
    by_name = {e["name"]: e for e in header["entries"]}
    _check_entries(model.state_dict(), by_name, path)
    state = {name: decode_entry(e, payload, bits, path) for name, e in by_name.items()}
    model.load_state_dict(state, strict=True)
    return {"path": str(path), "scheme": scheme, "bits": bits, "version": header["version"],
            "file_bytes": file_bytes, "n_entries": len(by_name)}
