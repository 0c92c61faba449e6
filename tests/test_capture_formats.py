"""Every link type and file variant, made by real tools (scripts/make_fixtures.sh), and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import FIXTURES
from engine.codec import capture as cap
from engine.codec.flows import FlowConfig
from engine.codec.pipeline import CaptureStats, encode_capture

SPEC = json.loads((FIXTURES / "fixtures.json").read_text())
GOOD = SPEC["good"]
BAD = SPEC["bad"]


def _stats(path):
    st = CaptureStats(str(path))
    flows = []
    for b in encode_capture(path, FlowConfig(min_packets=1), stats=st):
        flows += [b.flow(i) for i in range(len(b))]
    return st, flows


@pytest.mark.parametrize("fx", GOOD, ids=lambda f: f["file"])
def test_reads_every_link_type(fx):
    st, _ = _stats(FIXTURES / fx["file"])
    assert st.packets == fx["packets"]
    assert st.packets_by_proto.get("tcp", 0) == fx["tcp"]
    assert st.packets_by_proto.get("udp", 0) == fx["udp"]
    assert st.packets_by_proto.get("icmp", 0) == fx["icmp"]
    skipped = sum(v for k, v in st.skipped.items() if not k.startswith("kept"))
    assert skipped == fx["other"]


def test_all_variants_encode_identically():
    """The same traffic through every link type, byte order and resolution gives the same matrices."""
    from engine.codec.layout import LAYOUT
    ref = _stats(FIXTURES / "eth.pcap")[1]
    # derived byte for byte from eth.pcap: identical matrices
    exact = ("eth_nsec.pcap", "eth_bigendian.pcap", "raw101.pcap", "raw228.pcap")
    # tcprewrite recomputes checksums (loopback captures carry offloaded ones); sll/sll2 are
    # separate tcpdump instances on "any", so their times differ by microseconds
    loose = ("eth_vlan.pcap", "null.pcap", "sll.pcap", "sll2.pcap")
    keep = np.ones(LAYOUT.width, bool)
    for f in ("ipv4_cksum", "tcp_cksum", "udp_cksum", "icmp_cksum", "meta_iat"):
        keep[LAYOUT.cols(f)] = False
    for name in exact + loose:
        got = _stats(FIXTURES / name)[1]
        assert len(got) == len(ref), name
        for a, b in zip(ref, got):
            if name in exact:
                assert np.array_equal(a, b), name
            else:
                assert np.array_equal(a[:, keep], b[:, keep]), name


def test_pcapng_several_interfaces():
    st, _ = _stats(FIXTURES / "multi_if.pcapng")
    assert st.format == "pcapng"
    assert st.linktypes == [cap.LINK_ETHERNET, cap.LINK_SLL]


def test_reader_is_streaming(tmp_path):
    """Batches are bounded: a small batch size yields many batches, same result."""
    path = FIXTURES / "eth.pcap"
    batches = list(cap.CaptureReader(path, batch_packets=4))
    assert sum(len(b.ts_ns) for b in batches) == 55
    st_small = CaptureStats(str(path))
    flows_small = []
    for b in encode_capture(path, FlowConfig(min_packets=1), stats=st_small, batch_packets=4):
        flows_small += [b.flow(i) for i in range(len(b))]
    flows = _stats(path)[1]
    assert sorted(map(len, flows_small)) == sorted(map(len, flows))


EXPECT = {
    "empty": "empty file",
    "not_a_capture": "not a pcap or pcapng capture",
    "truncated_header": "truncated",
    "truncated": "truncated",
    "corrupt": "corrupt record",
}


@pytest.mark.parametrize("fx", BAD, ids=lambda f: f["file"])
def test_bad_input_one_line_exit_2(fx, tmp_path):
    path = FIXTURES / fx["file"]
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "netdiff_tui", "encode", str(path), "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(path) in lines[0]
    assert EXPECT[fx["kind"]] in lines[0]
    if fx["kind"] in ("truncated", "corrupt"):
        assert f"({fx['packets_before_error']} packets read)" in lines[0]
    assert "Traceback" not in r.stderr
    # nothing half-written: no output directory and no temp leftovers
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name != "out"]


def test_inspect_bad_and_good():
    r = subprocess.run([sys.executable, "-m", "netdiff_tui", "inspect", str(FIXTURES / "bad_text.pcap")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "netdiff_tui", "inspect", "--json", str(FIXTURES / "mixed_nonip.pcap")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["skipped"]["not IPv4"] == 26 and d["encoded_packets"] == 18
