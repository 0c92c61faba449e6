"""Rules within one packet: values, headers present, lengths, options, flags, types.

Every rule reads column positions from :data:`engine.codec.layout.LAYOUT` and works
on all rows of a :class:`~engine.repair.batch.Batch` at once.
"""

from __future__ import annotations

import numpy as np

from engine.codec.matrix import gaps_to_iat, iat_to_gaps
from engine.codec.layout import ABSENT
from . import options as op
from .batch import BLOCK, COL_DIR, IP4_FIXED, PROTO_NUM, TCP_FIXED, TRANSPORTS, Batch, Plan, popcount
from .tcp_state import before_established
from .rule import C, Changes, Rule, fill_absent, set_header_words, word_presence_fix


class Snap(Rule):
    name = "snap"
    description = "every cell is 1, 0 or -1 (others snap to the nearest; NaN becomes -1)"

    def plan(self, b: Batch) -> Plan:
        # The batch is snapped when it is built (nothing else could read it);
        # ``snap_rows`` remembers which rows that changed until this rule reports them.
        return Plan(flagged=b.snap_rows.copy())

    def fix(self, b: Batch) -> Changes:
        rows = b.snap_rows.copy()
        b.snap_rows[:] = False
        ch = Changes(rows)
        if rows.any():
            ch.fields["values"] = int(rows.sum())
        return ch


class Direction(Rule):
    name = "direction"
    description = "direction is 1 or 0 on every packet; a flow's first packet is the initiator's (1)"

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        d = b.m[:, COL_DIR].astype(np.int64)
        want = np.where(d == ABSENT, 1, d)
        want[b.first] = 1
        rows = np.nonzero(want != d)[0]
        p.field("meta_direction", rows, want[rows])
        return p


def max_iat_code(max_gap_s: float) -> int:
    """The largest inter-arrival code whose decoded gap is at most ``max_gap_s``."""
    lim = int(round(max_gap_s * 1e9))
    c = int(gaps_to_iat(np.array([lim]))[0])
    while c > 0 and iat_to_gaps(np.array([c]))[0] > lim:
        c -= 1
    return c


class Iat(Rule):
    name = "iat"
    description = ("inter-arrival code present on every packet (gaps >= 0, so packet times never "
                   "decrease) and no gap longer than max_gap_s (encoding's idle timeout: a longer one "
                   "would cut the flow in two when the capture is read back)")

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        code = b.get("meta_iat")                     # absent bits read as 0
        want = np.where(b.first, code, np.minimum(code, max_iat_code(b.opts.max_gap_s)))
        bad = b.absent_any(C("meta_iat")) | (want != code)
        p.field("meta_iat", bad, want[bad])
        return p


class Ipv6Absent(Rule):
    name = "ipv6_absent"
    description = "no IPv6 header bits (packets are IPv4)"

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        cols = BLOCK["ipv6"]
        rows = np.nonzero(b.present_any(cols))[0]
        p.bits("ipv6", cols, rows, lambda: np.full((len(rows), cols.stop - cols.start), ABSENT, np.int8))
        return p


def _flow_transport_choice(b: Batch) -> np.ndarray:
    """Per flow, the transport (0 tcp, 1 udp, 2 icmp) most of its packets look like.

    A packet's vote goes to the block with the largest share of present bits
    in its fixed header, plus half a point for the one the IPv4 protocol field
    names; ties go to TCP, then UDP.
    """
    def calc():
        def share(cols):
            by = np.ascontiguousarray(b.absent[:, cols.start // 8:cols.stop // 8]).view(np.uint32)
            return 1.0 - popcount(by).sum(axis=1) / (cols.stop - cols.start)
        pres = np.stack([share(TCP_FIXED), share(BLOCK["udp"]), share(BLOCK["icmp"])], axis=1)
        proto = b.get("ipv4_proto")
        pres += 0.5 * (proto[:, None] == PROTO_ARR[None, :])
        choice = np.argmax(pres, axis=1)
        votes = np.bincount(b.fid * 3 + choice, minlength=3 * b.nf).reshape(b.nf, 3)
        return np.argmax(votes, axis=1)
    return b.cached("flow_transport_choice", calc)


class Transport(Rule):
    name = "transport"
    description = ("exactly one transport header (TCP, UDP or ICMP) per packet, the same for the whole "
                   "flow, named by the IPv4 protocol field")

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        m = b.m
        if self._consistent(b):
            return p
        t = _flow_transport_choice(b)[b.fid]
        want = np.array([PROTO_NUM[x] for x in TRANSPORTS])[t]
        proto = b.get("ipv4_proto")
        p.field("ipv4_proto", proto != want, want[proto != want])
        for i, name in enumerate(TRANSPORTS):
            blk = BLOCK[name]
            sel = t == i
            other = np.nonzero(~sel & b.present_any(blk))[0]
            p.bits(name, blk, other, lambda o=other, c=blk: np.full((len(o), c.stop - c.start), ABSENT, np.int8))
            fixed = TCP_FIXED if name == "tcp" else blk
            hole = np.nonzero(sel & b.absent_any(fixed))[0]
            p.bits(name + " (absent bits)", fixed, hole, lambda h=hole, c=fixed: fill_absent(m[h, c]))
        return p


    @staticmethod
    def _consistent(b: Batch) -> bool:
        """Fast path: every packet already has exactly one complete transport header, the
        same in the whole flow, named by the protocol field (then the vote is unanimous)."""
        t0 = b.transport()
        if b.n == 0 or (t0 < 0).any() or (t0 != t0[b.starts][b.fid]).any():
            return False
        if (b.get("ipv4_proto") != PROTO_ARR[t0]).any():
            return False
        for i, name in enumerate(TRANSPORTS):
            sel = t0 == i
            fixed = TCP_FIXED if name == "tcp" else BLOCK[name]
            if (~sel & b.present_any(BLOCK[name])).any() or (sel & b.absent_any(fixed)).any():
                return False
        return True


PROTO_ARR = np.array([PROTO_NUM[x] for x in TRANSPORTS])


class Ipv4Header(Rule):
    name = "ipv4_header"
    description = "fixed IPv4 header bits all present; version 4"

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        hole = np.nonzero(b.absent_any(IP4_FIXED))[0]
        p.bits("ipv4 (absent bits)", IP4_FIXED, hole, lambda: fill_absent(b.m[hole, IP4_FIXED]))
        ver = b.get("ipv4_ver")
        p.field("ipv4_ver", ver != 4, 4)
        return p


class Ipv4Ihl(Rule):
    name = "ipv4_ihl"
    description = "IHL counts exactly the option words present (5 + words); option bits present inside, absent beyond"

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        word_presence_fix(b, p, b.idx, "ipv4_opt", "ipv4_hl")
        return p


def _option_bytes(b: Batch, rows: np.ndarray, name: str) -> np.ndarray:
    c = C(name)
    return b.ones[rows, c.start // 8:c.stop // 8]


def _any_per_row(k: int, rows: np.ndarray, flag: np.ndarray) -> np.ndarray:
    """Per packet (of ``k``): any record in ``rows`` has ``flag``."""
    return np.bincount(rows[flag], minlength=k) > 0


def _option_bits(new: np.ndarray, olen: np.ndarray) -> np.ndarray:
    bits = np.unpackbits(new, axis=1).astype(np.int8)
    bits[np.arange(bits.shape[1])[None, :] >= (olen * 8)[:, None]] = ABSENT
    return bits


class Ipv4Options(Rule):
    name = "ipv4_options"
    description = ("IPv4 options well-formed: only EOL, NOP and Router Alert (148, length 4, value 0), "
                   "each at most once, zero padding after EOL; anything else is cut and the header "
                   "re-padded to 32 bits")

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        olen = np.clip(b.get("ipv4_hl"), 5, 15) * 4 - 20
        rows = np.nonzero(olen > 0)[0]
        if len(rows) == 0:
            return p
        raw = _option_bytes(b, rows, "ipv4_opt")
        t = op.walk(raw, olen[rows], op.IP_LEN_TABLE, sack=False)
        val = np.zeros(len(t.row), np.int64)
        if len(t.row):
            val = (raw[t.row, np.minimum(t.pos + 2, 39)].astype(np.int64) << 8) | raw[t.row, np.minimum(t.pos + 3, 39)]
        keep = (t.kind == op.IP_RA) & (val == 0) & op.first_of_kind(t)
        bad = ~t.ok | _any_per_row(len(rows), t.row, ~keep)
        if not bad.any():
            return p
        sel = np.nonzero(bad)[0]
        if b.counting:      # the option edit marks every bad row; lengths only matter when fixing
            p.bits("ipv4_opt", C("ipv4_opt"), rows[sel], None)
            return p
        new, nlen = op.rebuild(raw, t, keep)
        p.bits("ipv4_opt", C("ipv4_opt"), rows[sel], _option_bits(new[sel], nlen[sel]))
        set_header_words(b, p, rows[sel], "ipv4_hl", 5 + nlen[sel] // 4)
        return p


class Ipv4Flags(Rule):
    name = "ipv4_flags"
    description = ("reserved flag 0; no fragments (MF 0, offset 0) unless fragments are allowed, and "
                   "never DF together with MF or an offset")

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        rbit, df, mf, foff = (b.get(f"ipv4_{x}") for x in ("rbit", "dfbit", "mfbit", "foff"))
        p.field("ipv4_rbit", rbit != 0, 0)
        if b.opts.allow_fragments:
            p.field("ipv4_mfbit", (df == 1) & (mf != 0), 0)
            p.field("ipv4_foff", (df == 1) & (foff != 0), 0)
        else:
            p.field("ipv4_mfbit", mf != 0, 0)
            p.field("ipv4_foff", foff != 0, 0)
        return p


class Ipv4Ttl(Rule):
    name = "ipv4_ttl"
    description = "TTL > 0 (0 becomes 64)"

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        p.field("ipv4_ttl", b.get("ipv4_ttl") == 0, 64)
        return p


class TcpDoff(Rule):
    name = "tcp_doff"
    description = "TCP data offset counts exactly the option words present (5 + words)"

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        rows = np.nonzero(b.rows_of("tcp"))[0]
        if len(rows):
            word_presence_fix(b, p, rows, "tcp_opt", "tcp_doff")
        return p


def tcp_option_area(b: Batch) -> np.ndarray:
    """Per row: bytes of TCP option area the data offset declares (0..40)."""
    return np.clip(b.get("tcp_doff"), 5, 15) * 4 - 20


def tcp_option_table(b: Batch):
    """Parse the TCP options of every TCP row with options: ``(rows, bytes, table)``.

    The commonest list by far -- NOP, NOP, timestamps (12 bytes) -- is
    recognised by its bytes; only the other rows are walked.
    """
    def calc():
        olen = tcp_option_area(b)
        rows = np.nonzero(b.rows_of("tcp") & (olen > 0))[0]
        raw = _option_bytes(b, rows, "tcp_opt")
        ol = olen[rows]
        nnt = (ol == 12) & (raw[:, 0] == op.NOP) & (raw[:, 1] == op.NOP) & (raw[:, 2] == op.TS) & (raw[:, 3] == 10)
        if not nnt.any():
            return rows, raw, op.walk(raw, ol, op.TCP_LEN_TABLE, sack=True)
        rest = np.nonzero(~nnt)[0]
        t = op.walk(raw[rest], ol[rest], op.TCP_LEN_TABLE, sack=True)
        k = len(rows)
        ok = np.ones(k, bool)
        ok[rest] = t.ok
        end = ol.copy()
        end[rest] = t.end
        fast = np.nonzero(nnt)[0]
        row = np.concatenate([fast, rest[t.row]])
        pos = np.concatenate([np.full(len(fast), 2), t.pos])
        kind = np.concatenate([np.full(len(fast), op.TS), t.kind])
        length = np.concatenate([np.full(len(fast), 10), t.length])
        order = np.lexsort((pos, row))
        return rows, raw, op.OptionTable(row[order], pos[order], kind[order], length[order], ok, end)
    return b.cached("tcp_options", calc)


class TcpOptions(Rule):
    name = "tcp_options"
    description = ("TCP options well-formed: only MSS (4), window scale (3, shift <= 14), SACK-permitted (2) "
                   "-- these three on SYN packets only -- and timestamps (10), each at most once, NOP/EOL "
                   "padding to 32 bits; a bad list is rebuilt from its good options (a known kind with a wrong "
                   "length byte gets its fixed length); SACK blocks are dropped (acks always cover all data sent, "
                   "so there is no hole to report)")

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        rows, raw, t = tcp_option_table(b)
        if len(rows) == 0:
            return p
        fixed = np.zeros(len(rows), bool)
        if not t.ok.all():
            # re-walk the broken lists, correcting length bytes of known kinds, so that the
            # options after a damaged one survive the rebuild
            t = op.walk(raw, tcp_option_area(b)[rows], op.TCP_LEN_TABLE, sack=True, fix_lengths=True)
            raw, fixed = t.opt, t.fixed
        syn = (b.get("tcp_syn")[rows] == 1)[t.row]
        keep = op.TCP_KNOWN[t.kind] & (~op.TCP_SYN_ONLY_T[t.kind] | syn) & op.first_of_kind(t)
        ws_val = raw[t.row, np.minimum(t.pos + 2, 39)] if len(t.row) else np.zeros(0, np.uint8)
        big_ws = keep & (t.kind == op.WS) & (ws_val > op.MAX_WS)
        bad = ~t.ok | fixed | _any_per_row(len(rows), t.row, ~keep | big_ws)
        if not bad.any():
            return p
        if big_ws.any():
            raw = raw.copy()
            raw[t.row[big_ws], t.pos[big_ws] + 2] = op.MAX_WS
        sel = np.nonzero(bad)[0]
        if b.counting:
            p.bits("tcp_opt", C("tcp_opt"), rows[sel], None)
            return p
        new, nlen = op.rebuild(raw, t, keep)
        p.bits("tcp_opt", C("tcp_opt"), rows[sel], _option_bits(new[sel], nlen[sel]))
        set_header_words(b, p, rows[sel], "tcp_doff", 5 + nlen[sel] // 4)
        return p


# ICMP types the matrix can carry: (type -> allowed codes, payload bytes or -1 for any).
# Error messages (3, 11, 12) would quote the offending datagram, which a header-only
# matrix cannot hold (zero bytes there parse as a bogus IP header), so they carry none.
ICMP_TYPES = {
    0: ((0,), -1),                  # echo reply
    3: (tuple(range(16)), 0),       # destination unreachable
    8: ((0,), -1),                  # echo request
    10: ((0,), 0),                  # router solicitation
    11: ((0, 1), 0),                # time exceeded
    12: ((0, 1, 2), 0),             # parameter problem
    13: ((0,), 12),                 # timestamp
    14: ((0,), 12),                 # timestamp reply
}
ICMP_OK = np.zeros((256, 256), bool)
ICMP_TYPE_OK = np.zeros(256, bool)
ICMP_PAYLOAD = np.full(256, -1, np.int64)
for _t, (_codes, _pl) in ICMP_TYPES.items():
    ICMP_TYPE_OK[_t] = True
    ICMP_OK[_t, list(_codes)] = True
    ICMP_PAYLOAD[_t] = _pl


class IcmpType(Rule):
    name = "icmp_type"
    description = ("ICMP type/code from the defined set (echo, destination unreachable, router "
                   "solicitation, time exceeded, parameter problem, timestamp); others become echo "
                   "request (initiator) or reply")

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        rows = np.nonzero(b.rows_of("icmp"))[0]
        if len(rows) == 0:
            return p
        typ, code = b.get("icmp_type")[rows], b.get("icmp_code")[rows]
        bad_type = ~ICMP_TYPE_OK[typ]
        want = np.where(b.fwd[rows], 8, 0)
        p.field("icmp_type", rows[bad_type], want[bad_type])
        bad_code = bad_type & (code != 0) | ~bad_type & ~ICMP_OK[typ, np.minimum(code, 255)]
        p.field("icmp_code", rows[bad_code], 0)
        return p


class Ipv4Length(Rule):
    name = "ipv4_length"
    description = ("total length >= IPv4 + transport headers and <= the MTU; no payload on TCP SYN "
                   "packets nor on the responder's packets before the handshake completes; ICMP payload "
                   "as its type requires")

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        hdr = b.ihl_bytes() + b.l4_hdr_bytes()
        tl = b.get("ipv4_tl")
        want = np.clip(tl, hdr, max(b.opts.mtu, 0))
        want = np.maximum(want, hdr)
        tcp = b.rows_of("tcp")
        exact = np.where(tcp & ((b.get("tcp_syn") == 1) | before_established(b)), 0, -1)
        icmp = b.rows_of("icmp")
        exact = np.where(icmp, ICMP_PAYLOAD[b.get("icmp_type")], exact)
        want = np.where(exact >= 0, hdr + np.maximum(exact, 0), want)
        p.field("ipv4_tl", want != tl, want[want != tl])
        return p


class UdpLength(Rule):
    name = "udp_length"
    description = "UDP length equals the IPv4 payload length"

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        rows = b.rows_of("udp")
        want = b.ip_len() - b.ihl_bytes()
        bad = rows & (b.get("udp_len") != want)
        p.field("udp_len", bad, want[bad])
        return p


class TcpFlags(Rule):
    name = "tcp_flags"
    description = ("legal TCP flag combinations: reserved bits 0; SYN never with FIN or RST; FIN never "
                   "with RST; every segment but a SYN or RST carries ACK")

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        tcp = b.rows_of("tcp")
        syn, fin, rst, ack = (b.get(f"tcp_{x}") == 1 for x in ("syn", "fin", "rst", "ackf"))
        p.field("tcp_res", tcp & (b.get("tcp_res") != 0), 0)
        p.field("tcp_fin", tcp & fin & (syn | rst), 0)
        p.field("tcp_rst", tcp & rst & syn, 0)
        p.field("tcp_ackf", tcp & ~ack & ~syn & ~rst, 1)
        return p


class TcpUrgent(Rule):
    name = "tcp_urgent"
    description = "URG set exactly when the urgent pointer is non-zero and within the payload"

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        tcp = b.rows_of("tcp")
        urg = b.get("tcp_urg") == 1
        urp = b.get("tcp_urp")
        ok = np.where(urg, (urp > 0) & (urp <= b.payload()), urp == 0)
        bad = tcp & ~ok
        p.field("tcp_urg", bad & urg, 0)
        p.field("tcp_urp", bad & (urp != 0), 0)
        return p
