"""What is compared: per-packet field values, flow statistics, and classifier inputs.

Per-packet values (:func:`packet_values`) cover every header field of the
layout table as an integer (``ABSENT_CODE`` when the packet lacks that header),
except IPv6 (the reader encodes IPv4 only) and the two option blobs, which are
replaced by their length in bytes and, for TCP, the sequence of option kinds
(e.g. ``2,4,8,1,3`` = MSS, SACK-permitted, timestamps, NOP, window scale).
On top come packet size (IPv4 total length), inter-arrival time (decoded, in
microseconds), and per flow: its length in packets and its share of
initiator -> responder packets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.codec.matrix import COL_DIR, COL_IAT, iat_to_gaps, present_rows
from engine.codec.layout import ABSENT, LAYOUT, bits_to_uint, get
from .metrics import ABSENT_CODE, log_edges

PORT_FIELDS = ("tcp_sprt", "tcp_dprt", "udp_sport", "udp_dport")
OPT_FIELDS = ("ipv4_opt", "tcp_opt")
SKIP_PROTOS = ("ipv6", "meta")


@dataclass(frozen=True)
class Spec:
    """How one compared quantity is binned: ``exact`` values, fixed ``edges``, or ``auto``."""

    name: str
    group: str             # "header" (a field of the layout table), "packet", "flow"
    mode: str              # "exact" | "auto" | "edges"
    edges: tuple = ()

    def bin_kwargs(self) -> dict:
        if self.mode == "exact":
            return {"exact": True}
        if self.mode == "edges":
            return {"edges": np.asarray(self.edges, np.float64)}
        return {}


def _flow_len_edges() -> tuple:
    return tuple(sorted({int(round(2 ** (k / 2))) for k in range(0, 21)}))   # 1, 2, 3, 4, 6, 8, ... 1024


SPECS: list[Spec] = []
for _f in LAYOUT.image_fields():
    if _f.proto in SKIP_PROTOS:
        continue
    if _f.qualname in OPT_FIELDS:
        SPECS.append(Spec(f"{_f.qualname}_len", "header", "exact"))
        if _f.qualname == "tcp_opt":
            SPECS.append(Spec("tcp_opt_kinds", "header", "exact"))
        continue
    SPECS.append(Spec(_f.qualname, "header", "exact" if _f.width <= 8 else "auto"))
SPECS += [
    Spec("direction", "packet", "exact"),
    Spec("packet_size", "packet", "edges", tuple(range(0, 1537, 64))),
    Spec("iat_us", "packet", "edges", tuple(log_edges(1.0, 1e9, 4))),
    Spec("flow_packets", "flow", "edges", _flow_len_edges()),
    Spec("flow_dir_share", "flow", "edges", tuple(np.round(np.arange(0, 1.01, 0.1), 2))),
]
SPEC_BY_NAME = {s.name: s for s in SPECS}


def _present(mats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All packet rows of the flows back to back, and each row's position in its flow."""
    rows, pos = [], []
    for m in mats:
        r = m[present_rows(m)]
        rows.append(r)
        pos.append(np.arange(len(r)))
    if not rows:
        return np.zeros((0, LAYOUT.width), np.int8), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(pos)


def _field(m: np.ndarray, name: str) -> np.ndarray:
    c = LAYOUT.cols(name)
    v = get(m, name).astype(np.int64)
    v[(m[:, c] == ABSENT).all(axis=1)] = ABSENT_CODE
    return v


def _opt_len(m: np.ndarray, name: str, block: str) -> np.ndarray:
    c = LAYOUT.cols(name)
    n = (m[:, c] != ABSENT).sum(axis=1) // 8
    absent = m[:, LAYOUT.block(block)].max(axis=1) == ABSENT if len(m) else np.zeros(0, bool)
    return np.where(absent, ABSENT_CODE, n).astype(np.int64)


_KIND_CODES: dict[str, int] = {"": 0}


def tcp_option_kinds(m: np.ndarray) -> np.ndarray:
    """Per packet, an integer code of its TCP option-kind sequence (same sequence, same code).

    Codes are shared by all calls in one process, so real and synthetic values
    are comparable; the sequences are kept in :func:`kind_names`.
    """
    c = LAYOUT.cols("tcp_opt")
    bits = m[:, c]
    present = m[:, LAYOUT.cols("tcp_sprt").start] != ABSENT
    out = np.full(len(m), ABSENT_CODE, np.int64)
    nbytes = (bits != ABSENT).sum(axis=1) // 8
    out[present & (nbytes == 0)] = 0
    idx = np.nonzero(present & (nbytes > 0))[0]
    if len(idx):
        raw = np.packbits(bits[idx] == 1, axis=1)
        cache: dict[bytes, int] = {}
        for j, i in enumerate(idx):
            b = raw[j, :nbytes[i]].tobytes()
            code = cache.get(b)
            if code is None:
                code = _KIND_CODES.setdefault(_kinds(b), len(_KIND_CODES))
                cache[b] = code
            out[i] = code
    return out


def _kinds(b: bytes) -> str:
    ks, i = [], 0
    while i < len(b):
        k = b[i]
        ks.append(str(k))
        if k == 0:
            break
        if k == 1:
            i += 1
            continue
        ln = b[i + 1] if i + 1 < len(b) else 0
        i += ln if ln >= 2 else len(b)
    return ",".join(ks)


def kind_names() -> dict[int, str]:
    return {v: (k or "none") for k, v in _KIND_CODES.items()}


def gaps_us(m: np.ndarray) -> np.ndarray:
    """Inter-arrival times (us) of a flow's packets after the first."""
    r = m[present_rows(m)]
    if len(r) < 2:
        return np.zeros(0)
    return iat_to_gaps(bits_to_uint(r[1:, COL_IAT]).astype(np.int64)) / 1000.0


def packet_values(mats: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Every compared quantity of a set of flows (per packet, or per flow for ``flow_*``)."""
    m, pos = _present(mats)
    out: dict[str, np.ndarray] = {}
    for s in SPECS:
        if s.group != "header":
            continue
        if s.name == "ipv4_opt_len":
            out[s.name] = _opt_len(m, "ipv4_opt", "ipv4")
        elif s.name == "tcp_opt_len":
            out[s.name] = _opt_len(m, "tcp_opt", "tcp")
        elif s.name == "tcp_opt_kinds":
            out[s.name] = tcp_option_kinds(m)
        else:
            out[s.name] = _field(m, s.name)
    d = m[:, COL_DIR].astype(np.int64)
    d[d == ABSENT] = ABSENT_CODE
    out["direction"] = d
    out["packet_size"] = out["ipv4_tl"].copy()
    g = iat_to_gaps(bits_to_uint(m[:, COL_IAT]).astype(np.int64)) / 1000.0
    out["iat_us"] = g[pos > 0]
    lens, share = [], []
    for x in mats:
        r = x[present_rows(x)]
        if len(r) == 0:
            continue
        lens.append(len(r))
        share.append(float((r[:, COL_DIR] == 1).mean()))
    out["flow_packets"] = np.asarray(lens, np.float64)
    out["flow_dir_share"] = np.asarray(share, np.float64)
    return out


# -- classifier inputs -------------------------------------------------------------------

def port_columns() -> np.ndarray:
    return np.concatenate([np.arange(LAYOUT.cols(p).start, LAYOUT.cols(p).stop) for p in PORT_FIELDS])


def packet_bits(mats: list[np.ndarray], cap: int | None, rng: np.random.Generator,
                mask_ports: bool = False, with_flows: bool = False):
    """The paper's per-packet features: the 1088 header bit columns (-1 kept), ``cap`` rows at most.

    With ``with_flows`` also each row's flow (one id per flow, in order): rows of one flow share
    that flow's constants (sequence base, IP ID counter, addresses), so a classifier scored
    on held-out rows must hold out whole flows.
    """
    m, pos = _present(mats)
    flow = np.cumsum(pos == 0) - 1
    if cap is not None and len(m) > cap:
        keep = np.sort(rng.choice(len(m), cap, replace=False))
        m, flow = m[keep], flow[keep]
    x = m[:, :LAYOUT.base_width]
    if mask_ports:
        x = np.delete(x, port_columns(), axis=1)
    return (x.astype(np.int8), flow) if with_flows else x.astype(np.int8)


FLOW_FEATURES = (
    ["log_packets", "log_duration", "dir_share", "proto",
     "size_mean", "size_std", "size_min", "size_max", "size_median", "size_fwd_mean", "size_rev_mean",
     "gap_mean", "gap_std", "gap_median", "gap_max",
     "syn", "fin", "rst", "psh", "ack", "ttl_mean", "wsize_mean", "tcp_opt_bytes_mean", "ip_hl_mean", "tos_mean"]
    + [f"size_{k}" for k in range(8)] + ["init_port", "resp_port"]
)
FLOW_PORT_FEATURES = ("init_port", "resp_port")


def _stats(v: np.ndarray) -> list[float]:
    if len(v) == 0:
        return [0.0] * 5
    return [float(v.mean()), float(v.std()), float(v.min()), float(v.max()), float(np.median(v))]


def flow_vector(m: np.ndarray) -> np.ndarray:
    """One flow's statistics, in :data:`FLOW_FEATURES` order."""
    r = m[present_rows(m)]
    n = len(r)
    if n == 0:
        return np.zeros(len(FLOW_FEATURES))
    fwd = r[:, COL_DIR] == 1
    size = get(r, "ipv4_tl").astype(np.float64)
    g = iat_to_gaps(bits_to_uint(r[1:, COL_IAT]).astype(np.int64)) / 1000.0 if n > 1 else np.zeros(0)
    lg = np.log1p(g)
    proto = float(get(r[:1], "ipv4_proto")[0])
    is_tcp = r[:, LAYOUT.cols("tcp_sprt").start] != ABSENT

    def flag(name):
        return float((r[is_tcp, LAYOUT.cols(name).start] == 1).mean()) if is_tcp.any() else 0.0

    def mean_of(name, rows):
        return float(get(r[rows], name).mean()) if rows.any() else 0.0
    first = r[0]
    if first[LAYOUT.cols("tcp_sprt").start] != ABSENT:
        sp, dp = get(first[None], "tcp_sprt")[0], get(first[None], "tcp_dprt")[0]
    elif first[LAYOUT.cols("udp_sport").start] != ABSENT:
        sp, dp = get(first[None], "udp_sport")[0], get(first[None], "udp_dport")[0]
    else:
        sp = dp = 0
    if first[COL_DIR] == 0:
        sp, dp = dp, sp
    allrows = np.ones(n, bool)
    first_sizes = np.zeros(8)
    k = min(n, 8)
    first_sizes[:k] = size[:k] * np.where(fwd[:k], 1.0, -1.0)
    v = [np.log1p(n), np.log1p(g.sum() / 1e6), float(fwd.mean()), proto,
         *_stats(size), float(size[fwd].mean()) if fwd.any() else 0.0,
         float(size[~fwd].mean()) if (~fwd).any() else 0.0,
         *(_stats(lg)[:2] + _stats(lg)[4:5] + _stats(lg)[3:4]),
         flag("tcp_syn"), flag("tcp_fin"), flag("tcp_rst"), flag("tcp_psh"), flag("tcp_ackf"),
         mean_of("ipv4_ttl", allrows), mean_of("tcp_wsize", is_tcp),
         float(((r[is_tcp][:, LAYOUT.cols("tcp_opt")] != ABSENT).sum(axis=1) // 8).mean()) if is_tcp.any() else 0.0,
         mean_of("ipv4_hl", allrows), mean_of("ipv4_tos", allrows),
         *first_sizes, float(sp), float(dp)]
    return np.asarray(v, np.float64)


def flow_matrix(mats: list[np.ndarray], mask_ports: bool = False) -> np.ndarray:
    x = np.stack([flow_vector(m) for m in mats]) if mats else np.zeros((0, len(FLOW_FEATURES)))
    if mask_ports:
        keep = [i for i, n in enumerate(FLOW_FEATURES) if n not in FLOW_PORT_FEATURES]
        x = x[:, keep]
    return x
