"""The repair pipeline: the ordered rule list, ``repair_flows`` and ``check_flows``.

Order matters: each rule may rely on the ones before it (see docs/repair.md).
Structure first (values, which headers exist, header lengths, options),
then the TCP control bits that decide lengths (SYN carries no payload),
then lengths, then flow-wide state (ports, TTL, IP ID, sequence and
acknowledgment numbers, windows, timestamps), and the checksums last, since
they cover everything else.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from engine.codec.matrix import FlowMeta, present_rows
from engine.codec.layout import ABSENT, LAYOUT
from . import checksum as ck
from . import rules_flow as rf
from . import rules_stream as rs
from . import rules_packet as rp
from .batch import PROTO_NUM, TRANSPORTS, Batch
from .report import ComplianceReport, RuleReport
from .rule import Changes, Rule

RULES: list[Rule] = [
    rp.Snap(),
    rp.Direction(),
    rp.Iat(),
    rp.Ipv6Absent(),
    rp.Transport(),
    rp.Ipv4Header(),
    rp.Ipv4Ihl(),
    rp.Ipv4Options(),
    rp.Ipv4Flags(),
    rp.Ipv4Ttl(),
    rp.TcpDoff(),
    rf.TcpHandshake(),
    rp.TcpOptions(),
    rp.IcmpType(),
    rp.Ipv4Length(),
    rs.TcpWindowSpace(),
    rp.UdpLength(),
    rf.TcpTeardown(),
    rp.TcpFlags(),
    rp.TcpUrgent(),
    rf.FlowAddresses(),
    rf.FlowPorts(),
    rf.FlowUnique(),
    rf.Ipv4TtlConstant(),
    rf.Ipv4Id(),
    rs.TcpSeq(),
    rs.TcpAck(),
    rs.TcpWindow(),
    rs.TcpTimestamps(),
    ck.Ipv4Checksum(),
    ck.TcpChecksum(),
    ck.UdpChecksum(),
    ck.IcmpChecksum(),
]
RULE_NAMES = [r.name for r in RULES]
REQUIRED = frozenset({"snap"})      # nothing downstream can read unsnapped values
PROTO_OF = {i: PROTO_NUM[t] for i, t in enumerate(TRANSPORTS)}


@dataclass(frozen=True)
class RepairOptions:
    """How to repair.

    Attributes:
        mtu: largest IPv4 total length (120..65535).
        allow_fragments: keep MF / fragment offset (off: no fragments).
        disabled: rule names to switch off (``snap`` cannot be).
        server_port: the responder's (service) port for every TCP/UDP flow, e.g. 443.
        client_port_range: where replacement initiator ports are drawn from.
        seed: makes every replacement (addresses, ports) deterministic.
        max_gap_s: longest gap between two packets of a flow; the default is
            encoding's idle timeout (``FlowConfig.idle_timeout``), so a repaired
            flow reads back as one flow.
    """

    mtu: int = 1500
    allow_fragments: bool = False
    disabled: frozenset[str] = frozenset()
    server_port: int | None = None
    client_port_range: tuple[int, int] = (49152, 65535)
    seed: int = 0
    max_gap_s: float = 120.0

    def __post_init__(self):
        object.__setattr__(self, "disabled", frozenset(self.disabled))
        unknown = sorted(self.disabled - set(RULE_NAMES))
        if unknown:
            raise ValueError(f"unknown repair rule(s): {', '.join(unknown)}; known: {', '.join(RULE_NAMES)}")
        req = sorted(self.disabled & REQUIRED)
        if req:
            raise ValueError(f"rule(s) {', '.join(req)} cannot be switched off")
        if not 120 <= self.mtu <= 65535:
            raise ValueError(f"mtu must be 120..65535, got {self.mtu}")
        if self.server_port is not None and not 1 <= self.server_port <= 65535:
            raise ValueError(f"server_port must be 1..65535, got {self.server_port}")
        if not self.max_gap_s > 0:
            raise ValueError(f"max_gap_s must be > 0, got {self.max_gap_s}")
        lo, hi = self.client_port_range
        if not 1 <= lo <= hi <= 65535:
            raise ValueError(f"client_port_range must be within 1..65535, got {self.client_port_range}")

    def to_dict(self) -> dict:
        return {"mtu": self.mtu, "allow_fragments": self.allow_fragments, "disabled": sorted(self.disabled),
                "server_port": self.server_port, "client_port_range": list(self.client_port_range),
                "seed": self.seed, "max_gap_s": self.max_gap_s}


def rule_table() -> list[dict]:
    """The rule list as plain rows (name, scope, description), in pipeline order."""
    return [{"name": r.name, "scope": r.scope, "description": r.description} for r in RULES]


# -- input ---------------------------------------------------------------------------------

def _snap(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Matrix -> (int8 {1,0,-1}, rows that changed)."""
    a = np.asarray(x)
    if a.ndim != 2 or a.shape[1] != LAYOUT.width:
        raise ValueError(f"a flow matrix must be (packets, {LAYOUT.width}), got {a.shape}")
    if a.dtype.kind == "f":
        y = np.where(np.isnan(a), ABSENT, np.clip(np.rint(a), -1, 1)).astype(np.int8)
        changed = (y != a).any(axis=1) | np.isnan(a).any(axis=1)
    elif a.dtype.kind in "iub":
        y = np.clip(a, -1, 1).astype(np.int8)
        changed = (y != a).any(axis=1)
    else:
        raise ValueError(f"a flow matrix must be numeric, got dtype {a.dtype}")
    return y, changed


def _build(mats, metas, opts: RepairOptions, payload_sums=None):
    if len(mats) != len(metas):
        raise ValueError(f"{len(mats)} matrices but {len(metas)} metas")
    parts, snaps, keep_flows, psums = [], [], [], []
    dropped = 0
    for i, x in enumerate(mats):
        y, ch = _snap(x)
        pres = present_rows(y)
        dropped += int((~pres).sum())
        if pres.any():
            parts.append(y[pres])
            snaps.append(ch[pres])
            keep_flows.append(i)
            if payload_sums is not None:
                psums.append(np.asarray(payload_sums[i], np.int64)[pres])
    if parts:
        m = np.concatenate(parts)
        snap_rows = np.concatenate(snaps)
    else:
        m = np.zeros((0, LAYOUT.width), np.int8)
        snap_rows = np.zeros(0, bool)
    sizes = np.array([len(p) for p in parts], np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    km = [metas[i] for i in keep_flows]
    b = Batch(m, offsets, [x.init_ip for x in km], [x.resp_ip for x in km], [x.flow_id for x in km], opts,
              start_ns=[x.start_ns for x in km])
    b.snap_rows = snap_rows
    if payload_sums is not None:
        b.payload_sum = np.concatenate(psums) if psums else np.zeros(0, np.int64)
    return b, keep_flows, dropped


def make_batch(mats: list[np.ndarray], metas: list[FlowMeta], opts: RepairOptions = RepairOptions()) -> Batch:
    """The :class:`Batch` the rules work on (snapped, padding rows and empty flows dropped),
    for calling a rule's ``count(batch)`` / ``fix(batch)`` directly."""
    return _build(mats, metas, opts)[0]


def _union(masks: list[np.ndarray], n: int) -> np.ndarray:
    out = np.zeros(n, bool)
    for x in masks:
        out |= x
    return out


def _count_all(b: Batch) -> dict:
    return {r.name: r.count(b) for r in RULES}


# -- API -------------------------------------------------------------------------------------

def check_flows(mats: list[np.ndarray], metas: list[FlowMeta], opts: RepairOptions = RepairOptions(),
                source: str = "", payload_sums: list[np.ndarray] | None = None) -> ComplianceReport:
    """Count every rule's violations in the flows as they are (after snapping and
    dropping padding rows, which a decoder would do too). Nothing is changed.

    ``payload_sums`` (one array per flow, aligned with its rows; see
    :attr:`engine.codec.pipeline.EncodedFlows.psum`) makes the transport checksum
    rules judge a real capture's packets with their real payloads: without it
    checksums are those of zero payloads, as the decoder writes them. Rows
    whose payload was not captured (-1) cannot be judged and are not counted.
    """
    t0 = time.perf_counter()
    b, keep, dropped = _build(mats, metas, opts, payload_sums)
    before = _count_all(b)
    rules, tp, tf = _rule_reports(b, opts, before, None, None)
    return ComplianceReport(
        mode="check", packets=b.n, flows=b.nf, rules=rules, total_before=tp, flows_before=tf,
        total_after=tp, flows_after=tf, padding_rows_dropped=dropped, empty_flows=len(mats) - len(keep),
        options=opts.to_dict(), seconds=time.perf_counter() - t0, source=source)


def repair_flows(mats: list[np.ndarray], metas: list[FlowMeta], opts: RepairOptions = RepairOptions(),
                 source: str = "") -> tuple[list[np.ndarray], list[FlowMeta], ComplianceReport]:
    """Repair flows so every enabled rule holds.

    Any numeric matrix is accepted (floats snap to the nearest of 1, 0, -1;
    padding rows are dropped). Returns new int8 matrices and metas (one per
    input, in order; a flow without packets stays empty) and the report.
    """
    t0 = time.perf_counter()
    b, keep, dropped = _build(mats, metas, opts)
    v0 = b.version
    before = _count_all(b)
    changes = {}
    for r in RULES:
        if r.name in opts.disabled:
            continue
        if b.version == v0 and not before[r.name][0].any():
            # nothing has changed since this rule found nothing: its fix would change nothing
            changes[r.name] = Changes(np.zeros(b.n, bool))
            continue
        changes[r.name] = r.fix(b)
    after = _count_all(b)
    rules, tp, tf = _rule_reports(b, opts, before, changes, after)
    _, ta, tfa = _totals(b, opts, after)
    ch_mask = _union([c.packets for c in changes.values()], b.n)
    rep = ComplianceReport(
        mode="repair", packets=b.n, flows=b.nf, rules=rules, total_before=tp, flows_before=tf,
        total_after=ta, flows_after=tfa, packets_changed=int(ch_mask.sum()),
        flows_changed=int(b.flow_any(ch_mask).sum()), padding_rows_dropped=dropped,
        empty_flows=len(mats) - len(keep), options=opts.to_dict(), seconds=0.0, source=source)

    out_m = [np.zeros((0, LAYOUT.width), np.int8) for _ in mats]
    out_meta = [dataclasses.replace(x, packets=0) for x in metas]
    ft = b.flow_transport()
    fwd = b.fwd
    for j, i in enumerate(keep):
        s, e = b.offsets[j], b.offsets[j + 1]
        out_m[i] = b.m[s:e].copy()
        r0 = s
        init_port = resp_port = 0
        if ft[j] == 0:
            sp, dp = b.get("tcp_sprt")[r0], b.get("tcp_dprt")[r0]
        elif ft[j] == 1:
            sp, dp = b.get("udp_sport")[r0], b.get("udp_dport")[r0]
        else:
            sp = dp = 0
        init_port, resp_port = (sp, dp) if fwd[r0] else (dp, sp)
        out_meta[i] = dataclasses.replace(
            metas[i], proto=PROTO_OF.get(int(ft[j]), metas[i].proto), init_ip=int(b.init_ip[j]),
            resp_ip=int(b.resp_ip[j]), init_port=int(init_port), resp_port=int(resp_port), packets=int(e - s))
    rep.seconds = time.perf_counter() - t0
    return out_m, out_meta, rep


def _totals(b: Batch, opts: RepairOptions, counts: dict, advisory: bool = True) -> tuple[np.ndarray, int, int]:
    """Packets and flows violating any enabled rule (advisory rules only when ``advisory``)."""
    names = [r.name for r in RULES if r.name not in opts.disabled and (advisory or not r.advisory)]
    mask = _union([counts[n][0] for n in names], b.n)
    return mask, int(mask.sum()), int(b.flow_any(mask).sum())


def _rule_reports(b, opts, before, changes, after):
    rules = []
    for r in RULES:
        pm, fm = before[r.name]
        rr = RuleReport(r.name, r.description, r.scope, r.name not in opts.disabled,
                        int(pm.sum()), int(fm.sum()), advisory=r.advisory)
        if after is not None:
            ch = changes.get(r.name)
            if ch is None:
                rr.changed_packets, rr.changed_flows = 0, 0
            else:
                rr.changed_packets = int(ch.packets.sum())
                rr.changed_flows = int(b.flow_any(ch.packets).sum())
                rr.changed_fields = dict(ch.fields)
            apm, afm = after[r.name]
            rr.after_packets, rr.after_flows = int(apm.sum()), int(afm.sum())
        rules.append(rr)
    # a check judges what the protocols require; a repair must also meet the conventions
    _, tp, tf = _totals(b, opts, before, advisory=after is not None)
    return rules, tp, tf
