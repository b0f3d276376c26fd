"""Tests of qfcn.quant.packing: bit packing, bit-identical round trips, sizes, bad and tampered files."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from qfcn import quant
from qfcn.models import SAFCN
from qfcn.quant import PackedFormatError, load_packed, save_packed
from qfcn.quant import packformat
from qfcn.quant.packformat import pack_bits, unpack_bits

from .helpers import assert_bit_identical, make_net


# ---------------------------------------------------------------------------- bit packing
def test_pack_bits_hand_computed() -> None:
    assert pack_bits(np.array([1, 2, 3, 0], dtype=np.uint8), 2) == bytes([0b01101100])
    # 3-bit codes 5, 7, 1 -> 101 111 001 + 7 zero bits
    assert pack_bits(np.array([5, 7, 1], dtype=np.uint8), 3) == bytes([0b10111100, 0b10000000])
    assert unpack_bits(bytes([0b10111100, 0b10000000]), 3, 3).tolist() == [5, 7, 1]
    with pytest.raises(ValueError, match="< 2\\*\\*bits"):
        pack_bits(np.array([4], dtype=np.uint8), 2)
    with pytest.raises(ValueError, match="expected 2"):
        unpack_bits(b"\x00", 3, 3)


@pytest.mark.parametrize("bits", range(2, 9))
def test_pack_unpack_round_trip(bits: int) -> None:
    rng = np.random.default_rng(bits)
    for n in (1, 7, 1001):
        codes = rng.integers(0, 2**bits, size=n, dtype=np.uint8)
        buf = pack_bits(codes, bits)
        assert len(buf) == -(-n * bits // 8)
        assert np.array_equal(unpack_bits(buf, bits, n), codes)


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("scheme", ["inq", "uniform"])
@pytest.mark.parametrize("bits", range(2, 9))
def test_round_trip_every_bit_width(tmp_path: Path, scheme: str, bits: int) -> None:
    net = make_net()
    q = quant.attach_quantizer(net, scheme, bits)
    q.quantize_all()
    path = tmp_path / "m.qfcn"
    rep = save_packed(net, path)  # scheme and bits from the attached quantizer
    assert (rep["scheme"], rep["bits"]) == (scheme, bits)
    assert rep["file_bytes"] == os.path.getsize(path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.qfcn"]  # atomic write left no temp file
    n_codes_bytes = sum(-(-m.weight.numel() * bits // 8) for _, m in q.layers)
    assert rep["weight_bytes"] >= n_codes_bytes
    q.detach()
    fresh = make_net(seed=1)
    info = load_packed(fresh, path)
    assert info["scheme"] == scheme and info["bits"] == bits
    assert_bit_identical(net, fresh)
    # a detached model is saved from the arguments (grid recovered from the weights), same weights
    rep2 = save_packed(net, tmp_path / "m2.qfcn", scheme=scheme, bits=bits)
    fresh2 = make_net(seed=2)
    load_packed(fresh2, tmp_path / "m2.qfcn")
    assert_bit_identical(net, fresh2)
    assert rep2["weight_bytes"] == rep["weight_bytes"]


def test_inq_5bit_size_and_float_round_trip(tmp_path: Path) -> None:
    net = make_net()
    ref = SAFCN.from_config(net.config)
    ref.load_state_dict(net.state_dict())
    q = quant.attach_quantizer(net, "inq", 5)
    q.quantize_all()
    rep = save_packed(net, tmp_path / "inq5.qfcn")
    assert rep["weight_compression"] >= 6.0
    assert rep["float32_weight_bytes"] == 4 * rep["n_quantized_weights"]
    assert rep["file_bytes"] < rep["float32_checkpoint_bytes"]
    assert quant.packed_size_report(net)["weight_bytes"] == rep["weight_bytes"]
    # float32: stored raw
    frep = save_packed(ref, tmp_path / "f.qfcn", scheme="float", bits=32)
    assert frep["scheme"] == "float" and frep["weight_compression"] == 1.0
    out = make_net(seed=5)
    load_packed(out, tmp_path / "f.qfcn")
    assert_bit_identical(ref, out)


def test_uniform_per_tensor_recovered(tmp_path: Path) -> None:
    net = make_net()
    q = quant.attach_quantizer(net, "uniform", 6, per_channel=False)
    q.quantize_all()
    q.detach()
    save_packed(net, tmp_path / "u.qfcn", "uniform", 6)
    header = json.loads(_split(tmp_path / "u.qfcn")[1])
    assert any(e.get("per_channel") is False for e in header["entries"])
    out = make_net(seed=3)
    load_packed(out, tmp_path / "u.qfcn")
    assert_bit_identical(net, out)


def test_quant_module_reexports(tmp_path: Path) -> None:
    net = make_net()
    q = quant.attach_quantizer(net, "inq", 3)
    q.quantize_all()
    rep = quant.save_packed(net, tmp_path / "r.qfcn")
    q.detach()
    out = make_net(seed=4)
    assert quant.load_packed(out, tmp_path / "r.qfcn")["bits"] == 3 == rep["bits"]
    assert_bit_identical(net, out)


# ---------------------------------------------------------------------------- bad input
def test_save_errors(tmp_path: Path) -> None:
    net = make_net()
    with pytest.raises(ValueError, match="pass scheme and bits"):
        save_packed(net, tmp_path / "x.qfcn")
    with pytest.raises(ValueError, match="not on the 5-bit inq grid"):
        save_packed(net, tmp_path / "x.qfcn", "inq", 5)  # float weights: never a silent rounding
    with pytest.raises(ValueError, match="not on the 5-bit uniform grid"):
        save_packed(net, tmp_path / "x.qfcn", "uniform", 5)
    with pytest.raises(ValueError, match="bits=9"):
        save_packed(net, tmp_path / "x.qfcn", "inq", 9)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_packed(net, tmp_path / "nope" / "x.qfcn", "float", 32)
    q = quant.attach_quantizer(net, "inq", 5)
    q.step()
    with pytest.raises(ValueError, match="quantize_all"):
        save_packed(net, tmp_path / "x.qfcn")  # half quantized
    q.quantize_all()
    with pytest.raises(ValueError, match="contradict the attached quantizer"):
        save_packed(net, tmp_path / "x.qfcn", "inq", 7)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture()
def packed(tmp_path: Path) -> Path:
    net = make_net()
    q = quant.attach_quantizer(net, "inq", 5)
    q.quantize_all()
    path = tmp_path / "good.qfcn"
    save_packed(net, path)
    return path


def _split(path: Path) -> tuple[bytes, bytes, bytes, bytes]:
    data = path.read_bytes()
    _, _, hlen = struct.unpack_from("<8sIQ", data)
    start = 20 + hlen
    return data[:20], data[20:start], data[start:-32], data[-32:]


def _rewrite(path: Path, prefix: bytes, header: bytes, payload: bytes) -> None:
    """Write a file with a valid trailing digest (to reach the checks behind it)."""
    body = prefix[:12] + struct.pack("<Q", len(header)) + header + payload
    path.write_bytes(body + hashlib.sha256(body).digest())


def test_load_errors(packed: Path, tmp_path: Path) -> None:
    good = packed.read_bytes()
    with pytest.raises(FileNotFoundError, match="missing.qfcn"):
        load_packed(make_net(), tmp_path / "missing.qfcn")

    bad = tmp_path / "bad.qfcn"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(PackedFormatError, match="truncated"):
        load_packed(make_net(), bad)
    bad.write_bytes(good[:10])
    with pytest.raises(PackedFormatError, match="truncated"):
        load_packed(make_net(), bad)

    flipped = bytearray(good)
    flipped[len(good) - 100] ^= 0x01  # one bit of the payload
    bad.write_bytes(bytes(flipped))
    with pytest.raises(PackedFormatError, match="checksum"):
        load_packed(make_net(), bad)

    bad.write_bytes(b"NOTQFCN!" + good[8:])
    with pytest.raises(PackedFormatError, match="magic"):
        load_packed(make_net(), bad)

    bad.write_bytes(good[:8] + struct.pack("<I", 2) + good[12:])
    with pytest.raises(PackedFormatError, match="version 2, expected 1"):
        load_packed(make_net(), bad)

    prefix, header, payload, digest = _split(packed)
    h = json.loads(header)
    h["entries"][0]["n1"] += 1  # header edited (same length would not help either): digest catches it
    new_header = json.dumps(h, separators=(",", ":")).encode()
    bad.write_bytes(prefix[:12] + struct.pack("<Q", len(new_header)) + new_header + payload + digest)
    with pytest.raises(PackedFormatError, match="checksum"):
        load_packed(make_net(), bad)

    _rewrite(bad, prefix, header, payload[:-1] + bytes([payload[-1] ^ 1]))
    with pytest.raises(PackedFormatError, match="payload size or sha256"):
        load_packed(make_net(), bad)

    # the model never changed on any failed load
    net = make_net(seed=9)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(PackedFormatError):
        bad.write_bytes(good[:-1])
        load_packed(net, bad)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_load_into_mismatched_model(packed: Path) -> None:
    with pytest.raises(PackedFormatError, match="shape"):
        load_packed(make_net(width=0.25), packed)
    with pytest.raises(PackedFormatError, match="missing"):
        load_packed(make_net(n_stages=4), packed)
    with pytest.raises(PackedFormatError, match="unexpected"):
        load_packed(make_net(n_stages=2), packed)
    net = make_net()
    quant.attach_quantizer(net, "uniform", 5)
    with pytest.raises(ValueError, match="detach"):
        load_packed(net, packed)


def test_header_is_plain_json(packed: Path) -> None:
    prefix, header, payload, digest = _split(packed)
    assert prefix[:8] == packformat.MAGIC
    h = json.loads(header)
    assert h["format"] == "qfcn-packed" and h["version"] == packformat.FORMAT_VERSION
    assert h["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    kinds = {e["kind"] for e in h["entries"]}
    assert kinds == {"inq", "float"}
    assert all(e["kind"] == "float" for e in h["entries"] if "bn" in e["name"] or e["name"].endswith("bias"))
