"""Hostile captures: every record field is range-checked; only the one-line InputError escapes.

A few thousand seeded mutants of bench/fuzz.py run here (the full 100,000 are in
bench/fuzz.md), then one test per checked field, then one CLI run per command
that reads captures.
"""

from __future__ import annotations

import importlib.util
import struct
import subprocess
import sys

import pytest

from conftest import FIXTURES, ROOT
from engine.codec import capture as cap
from engine.codec.record_limits import MAX_RECORD, MAX_WIRE
from engine.errors import InputError

_spec = importlib.util.spec_from_file_location("netdiff_fuzz", ROOT / "bench" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)


def test_mutants_raise_only_input_error():
    res = fuzz.fuzz(3000, seed=11, jobs=1, deep_every=25)
    assert res["crashes"] == [], res["crashes"][:5]
    assert set(res["kinds"]) == set(fuzz.KINDS)
    outcomes = {k.split("\t")[1] for k in res["outcomes"]}
    # the mutants reach both sides: some still read, many are rejected for different fields
    assert "read" in outcomes
    assert {"error: corrupt record", "error: corrupt pcapng packet block", "error: corrupt pcapng block",
            "error: truncated"} <= outcomes


# -- builders --------------------------------------------------------------------------------

def classic(n: int = 3, nsec: bool = False) -> bytearray:
    """The first ``n`` records of eth.pcap (microsecond, little-endian), or as a nanosecond file."""
    data = bytearray(fuzz._slice(FIXTURES / "eth.pcap", n))
    if nsec:
        data[:4] = b"\x4d\x3c\xb2\xa1"
        for off in record_offsets(data):
            frac = struct.unpack_from("<I", data, off + 4)[0]
            struct.pack_into("<I", data, off + 4, frac * 1000)
    return data


def record_offsets(data) -> list[int]:
    out, off = [], 24
    while off + 16 <= len(data):
        out.append(off)
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
    return out


def pcapng(tsresol: int = 9, endian: str = "<", simple: bool = False) -> bytearray:
    recs = list(cap.CaptureReader(FIXTURES / "eth.pcap").records())[:3]
    return bytearray(fuzz._pcapng(recs, endian, tsresol, simple))


def blocks(data, endian="<") -> list[tuple[int, int, int]]:
    """(offset, type, length) of every block."""
    out, off = [], 0
    while off + 12 <= len(data):
        t, n = struct.unpack_from(endian + "II", data, off)
        out.append((off, t, n))
        off += n
    return out


def first(data, btype, endian="<") -> int:
    return next(o for o, t, _ in blocks(data, endian) if t == btype)


def read_error(tmp_path, data) -> str:
    p = tmp_path / "m.pcap"
    p.write_bytes(bytes(data))
    with pytest.raises(InputError) as ei:
        for _ in cap.CaptureReader(p):
            pass
    msg = str(ei.value)
    assert msg.startswith(str(p)) and "\n" not in msg
    return msg


def reads(tmp_path, data) -> int:
    p = tmp_path / "ok.pcap"
    p.write_bytes(bytes(data))
    return sum(len(b.ts_ns) for b in cap.CaptureReader(p))


# -- classic pcap fields -------------------------------------------------------------------

@pytest.mark.parametrize("wire", [0xFFFFFFFF, 0x80000000, MAX_WIRE + 1])
def test_classic_original_length_too_large(tmp_path, wire):
    d = classic()
    struct.pack_into("<I", d, record_offsets(d)[1] + 12, wire)
    msg = read_error(tmp_path, d)
    assert f"corrupt record 2 at byte {record_offsets(d)[1]}: original length {wire} is impossible" in msg
    assert msg.endswith("(1 packets read)")


def test_classic_original_length_below_captured(tmp_path):
    d = classic()
    off = record_offsets(d)[0]
    struct.pack_into("<I", d, off + 12, 0)
    assert "original length 0 is less than the captured length" in read_error(tmp_path, d)


def test_classic_original_length_limit_is_accepted(tmp_path):
    d = classic()
    struct.pack_into("<I", d, record_offsets(d)[0] + 12, MAX_WIRE)
    assert reads(tmp_path, d) == 3


def test_classic_captured_length_too_large(tmp_path):
    d = classic()
    struct.pack_into("<I", d, record_offsets(d)[2] + 8, MAX_RECORD + 1)
    msg = read_error(tmp_path, d)
    assert f"corrupt record 3 at byte {record_offsets(d)[2]}: captured length {MAX_RECORD + 1}" in msg
    assert msg.endswith("(2 packets read)")


@pytest.mark.parametrize("nsec,frac", [(False, 1_000_000), (False, 0xFFFFFFFF), (True, 1_000_000_000)])
def test_classic_timestamp_fraction(tmp_path, nsec, frac):
    d = classic(nsec=nsec)
    struct.pack_into("<I", d, record_offsets(d)[0] + 4, frac)
    assert f"timestamp fraction {frac}" in read_error(tmp_path, d)


def test_classic_largest_timestamp_is_accepted(tmp_path):
    d = classic(nsec=True)
    struct.pack_into("<II", d, record_offsets(d)[0], 0xFFFFFFFF, 999_999_999)
    assert reads(tmp_path, d) == 3


def test_classic_version(tmp_path):
    d = classic()
    struct.pack_into("<H", d, 4, 0xFFFF)
    assert "corrupt pcap file header: version 65535.4 (expected 2.x) (0 packets read)" in read_error(tmp_path, d)


# -- pcapng fields -------------------------------------------------------------------------

@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_original_length_too_large(tmp_path, endian):
    d = pcapng(endian=endian)
    off = first(d, 6, endian)
    struct.pack_into(endian + "I", d, off + 24, 0xFFFFFFFF)
    msg = read_error(tmp_path, d)
    assert f"corrupt pcapng packet block 1 at byte {off}: original length 4294967295 is impossible" in msg


def test_pcapng_timestamp_overflow(tmp_path):
    d = pcapng(tsresol=9)
    struct.pack_into("<I", d, first(d, 6) + 12, 0xFFFFFFFF)   # high word: ~1.8e19 ns
    assert "is out of range (1970 to 2106)" in read_error(tmp_path, d)


@pytest.mark.parametrize("r", [0xFF, 0x80 | 64, 20, 127])
def test_pcapng_timestamp_resolution(tmp_path, r):
    d = pcapng(tsresol=6)
    idb = first(d, 1)
    struct.pack_into("<B", d, idb + 20, r)       # the if_tsresol value, right after its option header
    assert "timestamp resolution" in read_error(tmp_path, d)


def test_pcapng_resolution_option_length(tmp_path):
    d = pcapng(tsresol=6)
    struct.pack_into("<H", d, first(d, 1) + 18, 2)
    assert "timestamp resolution option has length 2" in read_error(tmp_path, d)


def test_pcapng_option_past_block(tmp_path):
    d = pcapng()
    struct.pack_into("<H", d, first(d, 1) + 18, 400)
    assert "option 9 of length 400 runs past the block" in read_error(tmp_path, d)


def test_pcapng_binary_resolution_reads(tmp_path):
    assert reads(tmp_path, pcapng(tsresol=0x80 | 30)) == 3


@pytest.mark.parametrize("iid", [1, 0xFFFF, 0xFFFFFFFF])
def test_pcapng_interface_out_of_range(tmp_path, iid):
    d = pcapng()
    struct.pack_into("<I", d, first(d, 6) + 8, iid)
    assert f"interface {iid} is not defined (1 interfaces in this section)" in read_error(tmp_path, d)


def test_pcapng_captured_length_past_block(tmp_path):
    d = pcapng()
    off = first(d, 6)
    struct.pack_into("<I", d, off + 20, 0x7FFFFFFF)
    assert "captured length 2147483647 exceeds the block" in read_error(tmp_path, d)


@pytest.mark.parametrize("blen,why", [(13, "length 13"), (8, "length 8"), (16, "length 16"),
                                      (0xFFFFFFFC, "length 4294967292")])
def test_pcapng_block_length(tmp_path, blen, why):
    d = pcapng()
    off = first(d, 6)
    struct.pack_into("<I", d, off + 4, blen)
    msg = read_error(tmp_path, d)
    assert f"corrupt pcapng block at byte {off}: block type 6 has {why}" in msg


def test_pcapng_trailing_length_mismatch(tmp_path):
    d = pcapng()
    off, _, n = next(b for b in blocks(d) if b[1] == 6)
    struct.pack_into("<I", d, off + n - 4, n + 4)
    assert f"length {n} at its start but {n + 4} at its end" in read_error(tmp_path, d)


def test_pcapng_interface_block_too_short(tmp_path):
    d = pcapng()
    idb = first(d, 1)
    struct.pack_into("<I", d, idb + 4, 12)
    assert "block type 1 has length 12" in read_error(tmp_path, d)


def test_pcapng_section_header(tmp_path):
    d = pcapng()
    struct.pack_into("<H", d, 12, 2)
    assert "corrupt pcapng section header at byte 0: version 2.0 (expected 1.x)" in read_error(tmp_path, d)
    d = pcapng()
    d[8:12] = b"\x00\x01\x02\x03"
    assert "byte-order magic 0x00010203" in read_error(tmp_path, d)


def test_pcapng_simple_packet_length(tmp_path):
    d = pcapng(simple=True)
    off = first(d, 3)
    assert reads(tmp_path, d) == 3
    struct.pack_into("<I", d, off + 8, 0xFFFFFFFF)
    assert "original length 4294967295 is impossible" in read_error(tmp_path, d)


# -- through the CLI -----------------------------------------------------------------------

@pytest.mark.parametrize("command", ["inspect", "check", "encode", "repair"])
def test_cli_one_line_on_oversized_length(tmp_path, command):
    """Before the range checks these died with an OverflowError traceback."""
    d = classic(5)
    struct.pack_into("<I", d, record_offsets(d)[3] + 12, 0xFFFFFFFF)
    p = tmp_path / "bad.pcap"
    p.write_bytes(bytes(d))
    out = tmp_path / "out"
    args = {"inspect": [p], "check": [p], "encode": [p, "-o", out], "repair": [p, "-o", tmp_path / "r.pcap"]}
    r = subprocess.run([sys.executable, "-m", "netdiff_tui", command, *map(str, args[command])],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines == [f"netdiff: error: {p}: corrupt record 4 at byte {record_offsets(d)[3]}: original length "
                     f"4294967295 is impossible (more than {MAX_WIRE}) (3 packets read)"]
    assert not out.exists() and not (tmp_path / "r.pcap").exists()
