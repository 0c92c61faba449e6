"""pcap -> matrix -> pcap reproduces headers byte for byte, on every real capture."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from conftest import real_captures
from engine.codec import capture as cap
from engine.codec import packets as pk
from engine.codec.matrix import write_pcap
from engine.codec.flows import FlowConfig
from engine.codec.layout import IAT_REL_ERROR
from engine.codec.packets import Packets
from engine.codec.pipeline import CaptureStats, encode_capture

CAPTURES = real_captures()


def read_all(path) -> Packets:
    sk = Counter()
    parts = [pk.parse(b, 0, sk) for b in cap.CaptureReader(path)]
    return Packets.concat(parts) if parts else Packets.empty()


def _sort_key(p: Packets) -> np.ndarray:
    # a packet's identity: addresses, ports, IP id, TCP seq / UDP-ICMP words, time
    return np.lexsort((p.ts_ns, p.l4[:, 4:8].copy().view(">u4").ravel(), p.ip[:, 4], p.ip[:, 5],
                       p.dport, p.sport, p.dst, p.src))


@pytest.mark.skipif(not CAPTURES, reason="real captures not found (set NETDIFF_DATA)")
@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_roundtrip_real_capture(path, tmp_path):
    stats = CaptureStats(str(path))
    mats, metas = [], []
    for batch in encode_capture(path, FlowConfig(min_packets=1), stats=stats):
        mats += [batch.flow(i) for i in range(len(batch))]
        metas += batch.metas
    out = tmp_path / "rt.pcap"
    write_pcap(out, mats, metas)
    orig, back = read_all(path), read_all(out)
    # every IPv4 TCP/UDP/ICMP packet went through
    assert len(orig) == stats.encoded_packets == len(back)
    a, b = orig.take(_sort_key(orig)), back.take(_sort_key(back))
    # headers byte for byte (bytes a snaplen cut from the original read as 0 on both sides)
    assert np.array_equal(a.ip, b.ip)
    assert np.array_equal(a.l4, b.l4)
    # payload lengths exactly: IP total length is part of the header; frames carry it all
    # timestamps within the documented bound: IAT_REL_ERROR * (1 + gap_us) per packet
    gap_us = np.zeros(len(a))
    err = np.abs(a.ts_ns - b.ts_ns)
    # bound per flow-gap: every decoded time is within rel * (1 + previous gap) of the truth;
    # the largest gap inside any flow is below the idle timeout (120 s)
    bound = IAT_REL_ERROR * (1 + 120e6) * 1000 + 1
    assert err.max(initial=0) <= bound
    print(f"{path.name}: {len(orig)} packets, {len(metas)} flows, max time error {err.max(initial=0)} ns, "
          f"skipped {dict((k, v) for k, v in stats.skipped.items() if v)}")
    del gap_us


def test_timestamp_error_bound_is_per_gap():
    from engine.codec.matrix import gaps_to_iat, iat_codes, iat_to_gaps
    rng = np.random.default_rng(0)
    gaps = (10 ** rng.uniform(0, 11, 5000)).astype(np.int64)   # 1 ns .. 100 s
    ts = 1_700_000_000_000_000_000 + np.cumsum(gaps)
    code = iat_codes(ts, np.array([0, len(ts)]))
    rec = ts[0] + np.cumsum(np.where(np.arange(len(ts)) == 0, 0, iat_to_gaps(code)))
    # errors do not add up: each time is within REL * (1 + largest gap so far) of the truth
    max_gap_us = np.maximum.accumulate(np.diff(ts, prepend=ts[0])) / 1000
    assert np.all(np.abs(rec - ts) <= IAT_REL_ERROR * (1 + max_gap_us) * 1000 * (1 + 2 * IAT_REL_ERROR) + 1)
    assert gaps_to_iat(np.array([0]))[0] == 0
