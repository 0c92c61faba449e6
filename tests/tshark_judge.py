"""Independent judge: what Wireshark (tshark) thinks of a capture.

Runs tshark with IPv4, TCP and UDP checksum validation switched on (ICMP
checksums are validated by default) and TCP sequence analysis on (the
default), and collects, per frame, malformed-packet markers and expert-info
entries of severity warning or error.

Application dissectors are switched off (a private Wireshark configuration
directory whose ``disabled_protos`` lists every protocol but frame, Ethernet,
IPv4, TCP, UDP, ICMP and data). Our packets' payloads are zero bytes by
design -- the matrix holds headers only -- so a TLS, DNS or QUIC dissector
reading zeros would report on bytes we never generated; the headers we do
generate are all still dissected and analysed.

Allowed (not counted) expert messages, each justified:

- ``Connection reset (RST)``: Wireshark files every RST under "warning" to
  draw the eye, but an RST is a legitimate way for a connection to end, and
  our rules only keep RSTs in a flow's final run of packets.

Nothing else is allowed: "previous segment not captured", "ACKed unseen
segment", out-of-order, zero window, window full, D-SACK, bad checksums,
options errors, malformed packets all count. Chat- and note-level entries
(connection establish request, duplicate ACK, retransmission of a SYN...) are
below the warning threshold and are not collected.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

TSHARK = shutil.which("tshark") or "/usr/bin/tshark"
KEEP_PROTOCOLS = {"frame", "eth", "ip", "tcp", "udp", "icmp", "data"}
SEV_WARN, SEV_ERROR = 0x00600000, 0x00800000
SEV_NAMES = {0x00200000: "chat", 0x00400000: "note", SEV_WARN: "warning", SEV_ERROR: "error"}
ALLOWED = ("Connection reset (RST)",)
CHECK_PREFS = ["-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
               "-o", "udp.check_checksum:TRUE", "-o", "tcp.analyze_sequence_numbers:TRUE"]


def available() -> bool:
    return os.path.exists(TSHARK)


@lru_cache(maxsize=1)
def _config_dir() -> str:
    """A Wireshark personal configuration directory with application dissectors off."""
    d = tempfile.mkdtemp(prefix="netdiff-tshark-")
    atexit.register(shutil.rmtree, d, True)
    out = subprocess.run([TSHARK, "-G", "protocols"], capture_output=True, text=True, check=True).stdout
    names = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            filt = parts[2]
            if filt not in KEEP_PROTOCOLS and not filt.startswith("_ws."):
                names.append(filt)
    with open(os.path.join(d, "disabled_protos"), "w") as f:
        f.write("\n".join(names) + "\n")
    return d


@dataclass
class Finding:
    frame: int
    severity: str
    message: str


@dataclass
class Verdict:
    """tshark's view of one capture.

    Attributes:
        frames: frames read.
        findings: warning/error expert entries (and malformed markers) not allowed.
        allowed: counts of allowed entries by message.
    """

    frames: int = 0
    findings: list[Finding] = field(default_factory=list)
    allowed: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self, limit: int = 12) -> str:
        c = Counter(f"{f.severity}: {f.message.split(' [should be')[0]}" for f in self.findings)
        lines = [f"{self.frames} frames, {len(self.findings)} findings"]
        lines += [f"  {n:6d}  {msg}" for msg, n in c.most_common(limit)]
        if self.findings:
            lines.append("  first frames: " + ", ".join(str(f.frame) for f in self.findings[:10]))
        return "\n".join(lines)


def judge(pcap: str | os.PathLike, allowed: tuple[str, ...] = ALLOWED) -> Verdict:
    """Run tshark over ``pcap``; return its warnings/errors (minus ``allowed``)."""
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=_config_dir())
    cmd = [TSHARK, "-n", "-r", os.fspath(pcap), *CHECK_PREFS, "-T", "fields",
           "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=\x1f",
           "-e", "frame.number", "-e", "_ws.expert.severity", "-e", "_ws.expert.message",
           "-e", "_ws.malformed"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"tshark failed ({res.returncode}): {res.stderr.strip()[-500:]}")
    v = Verdict()
    for line in res.stdout.splitlines():
        cols = line.split("\t")
        if not cols or not cols[0]:
            continue
        v.frames += 1
        frame = int(cols[0])
        sevs = cols[1].split("\x1f") if len(cols) > 1 and cols[1] else []
        msgs = cols[2].split("\x1f") if len(cols) > 2 and cols[2] else []
        malformed = len(cols) > 3 and cols[3] != ""
        for sev, msg in zip(sevs, msgs):
            s = int(sev)
            if s < SEV_WARN:
                continue
            if msg.startswith(allowed):
                v.allowed[msg] += 1
                continue
            v.findings.append(Finding(frame, SEV_NAMES.get(s, hex(s)), msg))
        if malformed and not any(f.frame == frame and "Malformed" in f.message for f in v.findings):
            v.findings.append(Finding(frame, "error", "Malformed packet"))
    return v
