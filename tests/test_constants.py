"""One declaration per shared number or name (engine/constants.py; bit positions in engine/codec/layout.py)."""

from __future__ import annotations

import re

from conftest import ROOT
from engine import constants as k
from engine.codec import layout, packets
from engine.codec.flows import FlowConfig
from engine.codec.image import HEIGHT

# (what, pattern of a re-declaration, the one file allowed to hold it)
DECLARATIONS = [
    ("IP protocol numbers", r'"tcp":\s*6\b|\{\s*6:\s*"tcp"|=\s*6,\s*17,\s*1\b|\[6,\s*17,\s*1\]|==\s*(6|17)\b',
     "engine/constants.py"),
    ("capture extensions", r'\(\s*"\.pcap",\s*"\.pcapng"', "engine/constants.py"),
    ("flow-file extensions", r'\(\s*"\.npz",\s*"\.png"', "engine/constants.py"),
    ("the direction column", r'cols\("meta_direction"\)\.start', "engine/codec/layout.py"),
    ("the 1024-packet limit", r'(HEIGHT|max_packets|FULL_FLOW|MAX_PACKETS)\s*(:\s*int\s*)?=\s*1024\b',
     "engine/constants.py"),
]


def test_each_shared_constant_is_declared_once():
    found = []
    for base in ("engine", "netdiff_tui"):
        for p in sorted((ROOT / base).rglob("*.py")):
            rel = p.relative_to(ROOT).as_posix()
            text = p.read_text()
            for what, pat, home in DECLARATIONS:
                if rel != home and re.search(pat, text):
                    found.append(f"{rel}: {what}")
    assert found == []


def test_the_values_everything_reads():
    assert (k.TCP, k.UDP, k.ICMP) == (packets.TCP, packets.UDP, packets.ICMP) == (6, 17, 1)
    assert k.PROTO_NAME == {6: "tcp", 17: "udp", 1: "icmp"}
    assert FlowConfig().max_packets == HEIGHT == k.MAX_FLOW_PACKETS == 1024
    assert layout.COL_DIR == layout.LAYOUT.cols("meta_direction").start
