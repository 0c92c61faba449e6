"""Port prior: which (transport, port pair) a sampled flow of each class gets.

Ports are categorical: 443 is a service and 441 is not, though they differ in
one bit. Sampled bit by bit, they came out as neighbours of real ports
(``generate --label dns``: 8 of 30 flows on 53, the rest on 37, 52, 33, 241,
...). So, like the length and the transport (:mod:`engine.model.lengths`), each
flow's port pair is drawn from the class's training flows and held in every
predicted clean flow while the model samples the rest; the model sees the port
it is writing a flow for.

The table (``config.json`` key ``ports``) holds per class
``[length, protocol, initiator port, responder port, flows]`` counted over the
training flows (length cut at ``max_packets``; ports as the first packet shows
them, by direction). The server's port is kept; the client's is written 0, an
ephemeral port drawn at sampling time, unless it is a fixed one that real
clients use too (below 1024, or equal to the server's: NTP 123/123, SIP
5060/5060, mDNS 5353/5353). Which side is the server is decided by
:func:`server_is_responder`; captures that start mid-flow have it as the
initiator, and the table keeps that side.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from engine.codec.layout import COL_DIR, LAYOUT, get, put
from engine.codec.matrix import row_proto
from engine.errors import InputError
from engine.model import streams

#: per transport: (source port field, destination port field)
PORT_FIELDS = {6: ("tcp_sprt", "tcp_dprt"), 17: ("udp_sport", "udp_dport")}
#: a client port below this is a fixed, well-known one (DHCP 68, NTP 123), not an ephemeral one
WELL_KNOWN = 1024


def flow_ports(m: np.ndarray) -> tuple[int, int, int]:
    """``(protocol, initiator port, responder port)`` of a flow as its first packet shows them
    (ports 0 for a flow that is not TCP or UDP)."""
    if len(m) == 0:
        return 0, 0, 0
    p = int(row_proto(m[:1])[0])
    if p not in PORT_FIELDS:
        return p, 0, 0
    sn, dn = PORT_FIELDS[p]
    s, d = int(get(m[:1], sn)[0]), int(get(m[:1], dn)[0])
    return (p, s, d) if m[0, COL_DIR] != 0 else (p, d, s)


def port_counts(flows) -> Counter:
    """How often each ``(protocol, port)`` occurs on either side of ``flows``
    (``(protocol, initiator port, responder port)`` triples)."""
    c: Counter = Counter()
    for p, a, b in flows:
        if p in PORT_FIELDS:
            c[(p, a)] += 1
            c[(p, b)] += 1
    return c


def server_is_responder(p: int, a: int, b: int, counts: Counter) -> bool:
    """Whether the responder's port ``b`` (not the initiator's ``a``) is the server's.

    The server's port is the one the class's flows share: the side whose port occurs more
    often in the class (``counts``, :func:`port_counts`; a client reuses its port for a few
    flows, a server for all of them); on a tie the lower port, as services sit low."""
    ca, cb = counts[(p, a)], counts[(p, b)]
    return cb > ca if ca != cb else b <= a


def server_port(p: int, a: int, b: int, counts: Counter) -> int:
    """The server's port of a flow ``(protocol, initiator port, responder port)``; 0 when not TCP/UDP."""
    if p not in PORT_FIELDS:
        return 0
    return b if server_is_responder(p, a, b, counts) else a


def pattern(p: int, a: int, b: int, counts: Counter) -> tuple[int, int]:
    """``(initiator port, responder port)`` with the client's port 0 where it is ephemeral."""
    if p not in PORT_FIELDS:
        return 0, 0
    srv_resp = server_is_responder(p, a, b, counts)
    srv, cli = (b, a) if srv_resp else (a, b)
    if cli != srv and cli >= WELL_KNOWN:
        cli = 0
    return (cli, srv) if srv_resp else (srv, cli)


def fit_port_table(rows: np.ndarray, offsets: np.ndarray, labels: np.ndarray, classes: list[str],
                   max_packets: int, top: int = 4096) -> dict:
    """Per class, ``[[length, protocol, initiator port, responder port, flows], ...]`` (see the
    module doc), the ``top`` most frequent entries. Input as in :class:`engine.model.data.FlowTable`."""
    lens = np.minimum(np.diff(offsets), max_packets)
    triples = [flow_ports(rows[offsets[i]:offsets[i + 1]]) for i in range(len(labels))]
    out = {}
    for ci, c in enumerate(classes):
        idx = np.nonzero(labels == ci)[0]
        counts = port_counts(triples[i] for i in idx)
        keys = np.array([[lens[i], triples[i][0], *pattern(*triples[i], counts)] for i in idx], np.int64).reshape(-1, 4)
        key, n = np.unique(keys, axis=0, return_counts=True)
        keep = np.sort(np.argsort(-n, kind="stable")[:top])
        out[c] = [[int(v) for v in key[i]] + [int(n[i])] for i in keep]
    return out


def check_table(table, label: str) -> list[list[int]]:
    """A class's port table as read from config.json, range-checked."""
    if not isinstance(table, list):
        raise InputError(None, f"config.json: ports of class {label!r} is not a list")
    for e in table:
        if not (isinstance(e, list) and len(e) == 5 and all(isinstance(v, int) for v in e)
                and 1 <= e[0] and e[1] in (0, 1, 6, 17) and 0 <= e[2] <= 65535 and 0 <= e[3] <= 65535
                and e[4] >= 1):
            raise InputError(None, f"config.json: ports of class {label!r}: bad entry {e!r} "
                                   "(want [length >= 1, protocol, port, port, flows >= 1])")
    return table


def draw_ports(table: list[list[int]], seed: int, length: int, proto: int,
               client_range: tuple[int, int]) -> tuple[int, int] | None:
    """``(initiator port, responder port)`` for a flow of ``length`` packets and transport
    ``proto``, decided by ``seed``: drawn from the class's entries of that length and
    transport (those of that transport when none has the length); an ephemeral side gets a
    port of ``client_range``. ``None`` when the table has no entry of the transport (or it is
    not TCP/UDP): the model's ports stay."""
    if proto not in PORT_FIELDS or not table:
        return None
    t = np.array(table, np.int64)
    same = t[t[:, 1] == proto]
    if len(same) == 0:
        return None
    exact = same[same[:, 0] == length]
    pool = exact if len(exact) else same
    rng = streams.of(seed, streams.PORTS)
    e = pool[rng.choice(len(pool), p=pool[:, 4] / pool[:, 4].sum())]
    lo, hi = client_range
    eph = int(rng.integers(lo, hi + 1))
    a, b = int(e[2]), int(e[3])
    return (a or eph, b or eph)


def guide_ports(m: np.ndarray, table: list[list[int]], seed: int,
                client_range: tuple[int, int]) -> tuple[int, int, int] | None:
    """``(protocol, initiator port, responder port)`` for a flow started from the real flow ``m``
    (``--like``): the guide's own server port (and fixed client port), an ephemeral client port
    from ``client_range`` drawn by ``seed``; the server's side decided with the class's table as
    the reference. ``None`` when the guide is not TCP/UDP."""
    p, a, b = flow_ports(m)
    if p not in PORT_FIELDS:
        return None
    counts: Counter = Counter()
    for e in table:
        if e[1] == p:
            for port in e[2:4]:
                if port:
                    counts[(p, port)] += e[4]
    ini, res = pattern(p, a, b, counts)
    lo, hi = client_range
    eph = int(streams.of(seed, streams.PORTS).integers(lo, hi + 1))
    return p, ini or eph, res or eph


def write_ports(m: np.ndarray, proto: int, init_port: int, resp_port: int) -> None:
    """Write the initiator's and responder's ports into a flow's TCP/UDP rows (by direction), in place."""
    if proto not in PORT_FIELDS or len(m) == 0:
        return
    a, b = PORT_FIELDS[proto]
    have = m[:, LAYOUT.cols(a).start] != -1
    fwd = have & (m[:, COL_DIR] != 0)
    back = have & (m[:, COL_DIR] == 0)
    for rows, s, d in ((fwd, init_port, resp_port), (back, resp_port, init_port)):
        if rows.any():
            put(m, a, s, rows)
            put(m, b, d, rows)


def _bits(v: torch.Tensor, n: int) -> torch.Tensor:
    """``(B,)`` integers -> ``(B, n)`` float bits, most significant first."""
    shifts = torch.arange(n - 1, -1, -1, device=v.device)
    return ((v[:, None] >> shifts) & 1).float()


def impose_ports(x0: torch.Tensor, rows: torch.Tensor, protos: torch.Tensor, ports: torch.Tensor) -> torch.Tensor:
    """Hold the port fields of predicted clean flows ``x0`` ``(B, L, width)`` (in place) to
    ``ports`` ``(B, 2)`` (initiator, responder; -1 = free) on the packet rows of each flow's
    transport, by the direction the model predicts for each row."""
    ports = ports.to(x0.device)
    fwd = x0[..., COL_DIR] > 0.5                                            # (B, L)
    for p, (sn, dn) in PORT_FIELDS.items():
        f = ((protos.to(x0.device) == p) & (ports[:, 0] >= 0))[:, None] & rows.to(x0.device)
        if not f.any():
            continue
        s, d = LAYOUT.cols(sn), LAYOUT.cols(dn)
        ib, rb = _bits(ports[:, 0].clamp(min=0), s.stop - s.start), _bits(ports[:, 1].clamp(min=0), d.stop - d.start)
        src = torch.where(fwd[..., None], ib[:, None, :], rb[:, None, :]).to(x0.dtype)
        dst = torch.where(fwd[..., None], rb[:, None, :], ib[:, None, :]).to(x0.dtype)
        x0[..., s] = torch.where(f[..., None], src, x0[..., s])
        x0[..., d] = torch.where(f[..., None], dst, x0[..., d])
    return x0
