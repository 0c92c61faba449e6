"""Rules on a TCP stream's byte and time spaces: sequence and acknowledgement numbers, the window
(and its scale), timestamps.

Like engine.repair.rules_flow, everything is computed for all flows of a batch at once, per flow
and per direction (running sums with ``Batch.excl_cumsum``, "last row of the other direction"
with ``Batch.last_where``, reductions with ``np.*.reduceat``).
"""

from __future__ import annotations

import numpy as np

from . import options as op
from .batch import Batch, Plan
from .rule import C, Rule
from .rules_packet import tcp_option_table
from .tcp_state import handshake

MOD32 = 1 << 32      # sequence, acknowledgement and timestamp values wrap here


def _first_of_dir(b: Batch, mask: np.ndarray) -> np.ndarray:
    """Per row: index of the first row of its flow and direction where ``mask`` holds (-1 if none)."""
    ff, fb = b.dir_first(mask)
    return np.where(b.fwd, ff[b.fid], fb[b.fid])


def seg_len(b: Batch) -> np.ndarray:
    """Sequence space each TCP row uses: payload + SYN + FIN, where only the first SYN and
    the first FIN of a direction count (later ones are retransmissions)."""
    def calc():
        tcp = b.rows_of("tcp")
        syn = tcp & (b.get("tcp_syn") == 1)
        fin = tcp & (b.get("tcp_fin") == 1)
        syn1 = syn & (b.idx == _first_of_dir(b, syn))
        fin1 = fin & (b.idx == _first_of_dir(b, fin))
        return np.where(tcp, b.payload() + syn1 + fin1, 0)
    return b.cached("seglen", calc)


def dir_sums(b: Batch, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: sum of ``v`` over earlier rows of its own direction, and of the other direction."""
    fwd = b.fwd
    ef, eb = b.excl_cumsum(v * fwd), b.excl_cumsum(v * ~fwd)
    return np.where(fwd, ef, eb), np.where(fwd, eb, ef)


def window_shift(b: Batch) -> np.ndarray:
    """Per row: the window-scale shift that applies to its window field.

    Known when the flow has the full SYN / SYN-ACK exchange: both sides'
    window-scale options, or 0 if either lacks one (RFC 7323). SYN windows are
    never scaled. Otherwise unknown, taken as the largest shift (14) -- the
    loosest bound, as no scaling can be ruled out.
    """
    def calc():
        syn_first, _, fb = handshake(b)
        have = syn_first & (fb >= 0)
        shift_f = np.full(b.nf, op.MAX_WS, np.int64)
        shift_b = np.full(b.nf, op.MAX_WS, np.int64)
        if have.any():
            rows, raw, t = tcp_option_table(b)
            ws_of = np.full(b.n, -1, np.int64)
            w = t.kind == op.WS
            ws_of[rows[t.row[w]]] = np.minimum(raw[t.row[w], t.pos[w] + 2], op.MAX_WS)
            f = np.nonzero(have)[0]
            wf, wb = ws_of[b.starts[f]], ws_of[fb[f]]
            both = (wf >= 0) & (wb >= 0)
            shift_f[f] = np.where(both, wf, 0)
            shift_b[f] = np.where(both, wb, 0)
        sh = np.where(b.fwd, shift_f[b.fid], shift_b[b.fid])
        return np.where(b.get("tcp_syn") == 1, 0, sh)
    return b.cached("window_shift", calc)


def governing(b: Batch) -> np.ndarray:
    """Per row: the last earlier row of the other direction (whose ack and window bound
    this row's data), or -1."""
    def calc():
        fwd = b.fwd
        return np.where(fwd, b.last_where(~fwd, inclusive=False), b.last_where(fwd, inclusive=False))
    return b.cached("governing", calc)


def in_flight(b: Batch) -> np.ndarray:
    """Per row: payload bytes its sender has sent since the peer's last packet (inclusive)."""
    pay = np.where(b.rows_of("tcp"), b.payload(), 0)
    fwd = b.fwd
    incl_f = b.excl_cumsum(pay * fwd) + pay * fwd
    incl_b = b.excl_cumsum(pay * ~fwd) + pay * ~fwd
    own = np.where(fwd, incl_f, incl_b)
    g = governing(b)
    at_g = np.where(fwd, incl_f[np.maximum(g, 0)], incl_b[np.maximum(g, 0)])
    return np.where(g >= 0, own - at_g, 0)


class TcpWindowSpace(Rule):
    name = "tcp_window_space"
    scope = "flow"
    description = ("data sent between two packets of the peer fits the largest window the peer can "
                   "advertise (65535 << its window-scale shift); payloads beyond are cut")

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        tcp = b.rows_of("tcp")
        g = governing(b)
        limit = np.where(g >= 0, (65535 << window_shift(b)[np.maximum(g, 0)]) - 1, 1 << 62)
        c = in_flight(b)
        bad = tcp & (c > limit)
        if not bad.any():
            return p
        cc = np.minimum(c, limit)
        fwd = b.fwd
        prev = np.where(fwd, b.last_where(fwd, inclusive=False), b.last_where(~fwd, inclusive=False))
        in_run = (prev >= 0) & (prev > g)
        new_pay = cc - np.where(in_run, cc[np.maximum(prev, 0)], 0)
        pay = b.payload()
        cut = tcp & (new_pay < pay)
        tl = b.get("ipv4_tl") - (pay - new_pay)
        p.field("ipv4_tl", cut, tl[cut])
        return p


class TcpSeq(Rule):
    name = "tcp_seq"
    scope = "flow"
    description = ("sequence numbers advance per direction by payload + SYN + FIN from each side's "
                   "first sequence number (mod 2^32); a retransmitted SYN or FIN repeats its sequence number")

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        tcp = b.rows_of("tcp")
        seq = b.get("tcp_seq")
        own, _ = dir_sums(b, seg_len(b))
        ff, fb = b.dir_first()
        base = np.where(b.fwd, seq[ff[b.fid]], seq[np.maximum(fb, 0)[b.fid]])
        want = (base + own) % MOD32
        # a retransmitted SYN or FIN repeats the first one's sequence number (a FIN's
        # own number follows the data it carries)
        pay = b.payload()
        for flag, after_data in (("tcp_syn", False), ("tcp_fin", True)):
            f = tcp & (b.get(flag) == 1)
            first = np.maximum(_first_of_dir(b, f), 0)
            again = f & (b.idx != first)
            own_no = want[first] + (pay[first] if after_data else 0) - (pay if after_data else 0)
            want = np.where(again, own_no % MOD32, want)
        bad = tcp & (seq != want)
        p.field("tcp_seq", bad, want[bad])
        return p


class TcpAck(Rule):
    name = "tcp_ack"
    scope = "flow"
    description = ("with ACK set, the acknowledgment number is the peer's next sequence number (all it "
                   "has sent so far); without ACK it is 0")

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        tcp = b.rows_of("tcp")
        ack = tcp & (b.get("tcp_ackf") == 1)
        seq, ackn = b.get("tcp_seq"), b.get("tcp_ackn")
        _, peer = dir_sums(b, seg_len(b))
        fwd = b.fwd
        ff, fb = b.dir_first()
        # the peer's first sequence number; if the peer never sends, keep the first ack value seen
        af, ab = b.dir_first(ack)
        pbase_f = np.where(fb >= 0, seq[np.maximum(fb, 0)], ackn[np.maximum(af, 0)])   # for forward rows
        pbase_b = np.where(ff >= 0, seq[np.maximum(ff, 0)], ackn[np.maximum(ab, 0)])   # for backward rows
        base = np.where(fwd, pbase_f[b.fid], pbase_b[b.fid])
        want = np.where(ack, (base + peer) % MOD32, 0)
        bad = tcp & (ackn != want)
        p.field("tcp_ackn", bad, want[bad])
        return p


class TcpWindow(Rule):
    name = "tcp_window"
    scope = "flow"
    description = ("advertised window (except on RST) non-zero and larger than the data the peer then "
                   "sends before this side's next packet (scaled by the negotiated shift); never exactly filled")

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        tcp = b.rows_of("tcp")
        rows = np.nonzero(tcp)[0]
        if len(rows) == 0:
            return p
        win = b.get("tcp_wsize")
        shift = window_shift(b)
        g = governing(b)
        c = in_flight(b)
        q = np.nonzero(tcp & (g >= 0))[0]
        need = np.ones(b.n, np.int64)
        np.maximum.at(need, g[q], c[q] + 1)
        want = np.maximum(win, -(-need >> shift))
        # the first ACK's window may be read unscaled: keep it off every data edge too
        pay = b.payload()
        plain = (b.get("tcp_syn") == 0) & (b.get("tcp_fin") == 0) & (b.get("tcp_rst") == 0)
        hit = np.zeros(b.n, bool)
        qq = q[(pay[q] > 0) & plain[q]]
        hit[g[qq][want[g[qq]] == c[qq]]] = True
        want = np.where(hit, want + 1, want)
        want = np.minimum(want, 65535)
        rst = b.get("tcp_rst") == 1       # an RST's window means nothing (Wireshark skips it too)
        want = np.where(rst, win, want)
        bad = tcp & (want != win)
        p.field("tcp_wsize", bad, want[bad])
        flagged = tcp & ~rst & ((want << shift) < need)
        if flagged.any():
            p.flagged = flagged
        return p


class TcpTimestamps(Rule):
    name = "tcp_timestamps"
    scope = "flow"
    description = "TCP timestamp option values (TSval and TSecr) never decrease within a direction"

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        rows, raw, t = tcp_option_table(b)
        sel = t.kind == op.TS
        if not sel.any():
            return p
        r, pos = t.row[sel], t.pos[sel]
        prow = rows[r]
        order = np.argsort(prow, kind="stable")
        r, pos, prow = r[order], pos[order], prow[order]
        cols = pos[:, None] + np.arange(2, 10)[None, :]
        by = raw[r[:, None], cols].astype(np.int64)
        tsval = (by[:, 0] << 24) | (by[:, 1] << 16) | (by[:, 2] << 8) | by[:, 3]
        tsecr = (by[:, 4] << 24) | (by[:, 5] << 16) | (by[:, 6] << 8) | by[:, 7]
        fwd = b.fwd[prow]
        fid = b.fid[prow]
        new = []
        for v in (tsval, tsecr):
            key = (fid * 2 + fwd) << 33
            w = np.empty_like(v)
            for d in (True, False):
                s = fwd == d
                w[s] = np.maximum.accumulate(key[s] + v[s]) - key[s] if s.any() else v[s]
            new.append(w)
        bad = (new[0] != tsval) | (new[1] != tsecr)
        if not bad.any():
            return p
        nb = raw.copy()
        for k, v in enumerate(new):
            for j in range(4):
                nb[r[bad], pos[bad] + 2 + 4 * k + j] = (v[bad] >> (24 - 8 * j)) & 0xFF
        sub = np.unique(r[bad])
        cur = b.m[rows[sub], C("tcp_opt")]
        bits = np.where(cur == -1, -1, np.unpackbits(nb[sub], axis=1)).astype(np.int8)
        p.bits("tcp_opt (timestamps)", C("tcp_opt"), rows[sub], bits)
        return p
