"""Rules across the packets of a flow: 5-tuple, TTL, IP ID, TCP state, timestamps.

Everything is computed for all flows of a batch at once: per-flow and
per-direction running sums (``Batch.excl_cumsum`` over ``value * forward``),
"last row of the other direction before this one" indices
(``Batch.last_where``) and per-flow reductions (``np.*.reduceat``).
"""

from __future__ import annotations

import hashlib
import itertools

import numpy as np

from engine.codec.layout import bits_to_uint
from engine.constants import MAX_FLOW_PACKETS
from . import options as op
from .batch import Batch, MetaEdit, Plan
from .rule import C, Rule
from .rules_packet import tcp_option_table
from .tcp_state import final_rst_run, handshake, handshake_target

MOD32 = 1 << 32


def det_int(seed: int, flow_id: str, salt: str, lo: int, hi: int) -> int:
    """A deterministic integer in [lo, hi] from the seed, a flow id and a purpose."""
    h = hashlib.blake2b(f"{seed}\x00{flow_id}\x00{salt}".encode(), digest_size=8).digest()
    return lo + int.from_bytes(h, "big") % (hi - lo + 1)


def bad_address(ip: np.ndarray) -> np.ndarray:
    """0.0.0.0/8, loopback, multicast and reserved/broadcast (240/4) addresses."""
    top = np.asarray(ip, np.int64) >> 24
    return (top == 0) | (top == 127) | (top >= 224)


# -- TCP handshake -------------------------------------------------------------------

class TcpHandshake(Rule):
    name = "tcp_handshake"
    scope = "flow"
    description = ("SYN only at the start. A flow that starts with a SYN: the initiator's packets up to "
                   "the responder's first are SYNs (retransmissions allowed), the responder's first is "
                   "the SYN-ACK -- or an RST ending the flow (refused) -- and SYN / SYN-ACK "
                   "retransmissions may follow (the initiator's until its first non-SYN packet, the responder's "
                   "until it sends anything else). A flow that starts with a SYN-ACK keeps that and its "
                   "repeats. No SYN anywhere else; a SYN has no "
                   "FIN or RST, and ACK only on a SYN-ACK")

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        tcp = b.rows_of("tcp")
        want_syn, synack = handshake_target(b)
        syn_in = b.get("tcp_syn") == 1
        bad = tcp & (syn_in != want_syn)
        p.field("tcp_syn", bad, want_syn[bad])
        ack = b.get("tcp_ackf") == 1
        bad = tcp & want_syn & (ack != synack)
        p.field("tcp_ackf", bad, synack[bad])
        p.field("tcp_fin", tcp & want_syn & (b.get("tcp_fin") == 1), 0)
        p.field("tcp_rst", tcp & want_syn & (b.get("tcp_rst") == 1), 0)
        return p


class TcpTeardown(Rule):
    name = "tcp_teardown"
    scope = "flow"
    description = ("teardown only where the flow ends: a FIN only after its direction's last data "
                   "(repeats are retransmissions); RST only in the flow's final run of packets")

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        tcp = b.rows_of("tcp")
        fin = tcp & (b.get("tcp_fin") == 1)
        rst = tcp & (b.get("tcp_rst") == 1)
        p.field("tcp_rst", rst & ~final_rst_run(b), 0)
        data = b.payload() > 0
        fwd = b.fwd
        early = np.zeros(b.n, bool)
        for d in (fwd, ~fwd):
            ld = b.last_in_flow_where(data & d)
            early |= fin & d & (b.idx < ld[b.fid])
        p.field("tcp_fin", early, 0)
        return p


# -- addresses and ports ---------------------------------------------------------------

class FlowAddresses(Rule):
    advisory = 'real captures legitimately hold multicast, broadcast and link-local flows (mDNS, SSDP, DHCP)'
    name = "flow_addresses"
    scope = "flow"
    description = ("initiator and responder addresses unicast, usable and different (not 0/8, 127/8, "
                   "multicast or 240/4); bad ones are replaced from the seed (10/8 initiator, "
                   "198.18/15 responder)")

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        bi = bad_address(b.init_ip)
        br = bad_address(b.resp_ip) | (b.resp_ip == b.init_ip)
        flows = np.nonzero(bi | br)[0]
        if len(flows) == 0:
            return p
        ni, nr = b.init_ip[flows].copy(), b.resp_ip[flows].copy()
        for j, f in enumerate(flows):
            fid = b.flow_ids[f]
            if bi[f]:
                ni[j] = (10 << 24) | det_int(b.opts.seed, fid, "init_ip", 0, (1 << 24) - 1) & ~0xFF | \
                    det_int(b.opts.seed, fid, "init_ip_host", 1, 254)
            if br[f]:
                cand = (198 << 24) | (18 << 16) | det_int(b.opts.seed, fid, "resp_ip", 0, (1 << 17) - 1) & ~0xFF \
                    | det_int(b.opts.seed, fid, "resp_ip_host", 1, 254)
                nr[j] = cand if cand != ni[j] else cand ^ 1
        p.meta.append(MetaEdit("addresses", flows, {"init_ip": ni, "resp_ip": nr}))
        return p


PORT_FIELDS = {0: ("tcp_sprt", "tcp_dprt"), 1: ("udp_sport", "udp_dport")}
SERVER_PORT_RANGE = (1024, 49151)


def _port_bits(b: Batch, name: str) -> np.ndarray:
    return b.m[:, C(name)] == 1


class FlowPorts(Rule):
    name = "flow_ports"
    scope = "flow"
    description = ("one port pair per TCP/UDP flow, swapped by direction; the responder port is the "
                   "service port when one is given (and then the initiator's port lies in the client "
                   "port range), otherwise each side keeps its most common port (per bit); port 0 is "
                   "replaced from the seed")

    def ports(self, b: Batch) -> tuple[np.ndarray, np.ndarray]:
        """Per flow: (initiator port, responder port) the flow should have."""
        init = np.zeros(b.nf, np.int64)
        resp = np.zeros(b.nf, np.int64)
        ft = b.flow_transport()
        fwd = b.fwd[:, None]
        for t, (sn, dn) in PORT_FIELDS.items():
            fl = ft == t
            if not fl.any():
                continue
            s, d = _port_bits(b, sn), _port_bits(b, dn)
            for out, bits in ((init, np.where(fwd, s, d)), (resp, np.where(fwd, d, s))):
                cnt = np.add.reduceat(bits.astype(np.int64), b.starts, axis=0)
                first = bits[b.starts]
                two = 2 * cnt
                maj = (two > b.sizes[:, None]) | ((two == b.sizes[:, None]) & first)
                out[fl] = bits_to_uint(maj.astype(np.int8))[fl].astype(np.int64)
        lo, hi = b.opts.client_port_range
        if b.opts.server_port is not None:
            # a service port comes from a recipe, and so does the client's port range
            resp[ft <= 1] = b.opts.server_port
            init[(init < lo) | (init > hi)] = 0
        for f in np.nonzero((ft <= 1) & (ft >= 0) & (init == 0))[0]:
            init[f] = det_int(b.opts.seed, b.flow_ids[f], "client_port", lo, hi)
        for f in np.nonzero((ft <= 1) & (ft >= 0) & (resp == 0))[0]:
            resp[f] = det_int(b.opts.seed, b.flow_ids[f], "server_port", *SERVER_PORT_RANGE)
        return init, resp

    def _consistent(self, b: Batch) -> bool:
        """Fast path: every TCP/UDP flow already has one non-zero port pair (the service
        port, if one is given)."""
        fwd = b.fwd
        t = b.transport()
        for tp, (sn, dn) in PORT_FIELDS.items():
            rows = t == tp
            if not rows.any():
                continue
            sp, dp = b.get(sn), b.get(dn)
            ip_, rp = np.where(fwd, sp, dp), np.where(fwd, dp, sp)
            f0 = b.starts[b.fid]
            lo, hi = b.opts.client_port_range
            if ((rows & ((ip_ != ip_[f0]) | (rp != rp[f0]) | (ip_ == 0) | (rp == 0))).any()
                    or (b.opts.server_port is not None
                        and (rows & ((rp != b.opts.server_port) | (ip_ < lo) | (ip_ > hi))).any())):
                return False
        return True

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        if self._consistent(b):
            return p
        init, resp = self.ports(b)
        fwd = b.fwd
        t = b.transport()
        for tp, (sn, dn) in PORT_FIELDS.items():
            rows = t == tp
            ws = np.where(fwd, init[b.fid], resp[b.fid])
            wd = np.where(fwd, resp[b.fid], init[b.fid])
            for name, want in ((sn, ws), (dn, wd)):
                bad = rows & (b.get(name) != want)
                p.field(name, bad, want[bad])
        return p


class FlowUnique(Rule):
    advisory = 'port reuse across connections is normal in real captures'
    name = "flow_unique"
    scope = "flow"
    description = ("TCP and UDP flows of one batch have distinct 5-tuples (else Wireshark and flow "
                   "assembly merge them when the capture is read); a repeat gets a new initiator port "
                   "from the seed. A UDP flow may continue an earlier one of its 5-tuple that it does "
                   "not overlap when reading would cut them apart anyway (a gap over max_gap_s, or "
                   "the earlier one is 1024 packets long)")

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        for tp, (sn, dn) in PORT_FIELDS.items():
            self._one(b, p, tp, sn, dn)
        return p

    def _one(self, b: Batch, p: Plan, tp: int, sn: str, dn: str) -> None:
        fl = np.nonzero(b.flow_transport() == tp)[0]
        if len(fl) < 2:
            return
        src, dst = b.src_dst()
        r = b.starts[fl]
        sprt, dprt = b.get(sn), b.get(dn)
        sp, dp = sprt[r], dprt[r]
        a = (src[r] << 16) | sp
        c = (dst[r] << 16) | dp
        key = np.stack([np.minimum(a, c), np.maximum(a, c)], axis=1)
        _, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
        inv = inv.ravel()
        dup = np.nonzero(first[inv] != np.arange(len(fl)))[0]
        if len(dup) == 0:
            return
        if tp == 1:
            dup = self._udp_repeats(b, fl, inv)
            if len(dup) == 0:
                return
        used = {tuple(k) for k in key.tolist()}
        lo, hi = b.opts.client_port_range
        fwd = b.fwd
        for j in dup:
            f = fl[j]
            ip_i, ip_r = int(b.init_ip[f]), int(b.resp_ip[f])
            rport = int(dp[j] if fwd[r[j]] else sp[j])

            def free(port):
                x, y = (ip_i << 16) | port, (ip_r << 16) | rport
                k = (min(x, y), max(x, y))
                if k in used:
                    return False
                used.add(k)
                return True
            cands = (det_int(b.opts.seed, b.flow_ids[f], f"unique{a}", lo, hi) for a in range(64))
            # the range may be too small: then any unused port, range first
            port = next((q for q in cands if free(q)), None) or \
                next((q for q in itertools.chain(range(lo, hi + 1), range(1024, 65536)) if free(q)), None)
            if port is None:        # every port of this address pair is taken
                continue
            rows = np.arange(b.starts[f], b.starts[f] + b.sizes[f])
            fr = fwd[rows]
            s_rows, d_rows = rows[fr], rows[~fr]
            p.field(sn, s_rows[sprt[s_rows] != port], port)
            p.field(dn, d_rows[dprt[d_rows] != port], port)


    @staticmethod
    def _udp_repeats(b: Batch, fl: np.ndarray, inv: np.ndarray) -> np.ndarray:
        """Indices (into ``fl``) of UDP flows that repeat an earlier flow's 5-tuple and would
        merge with it when read back: they overlap it, or follow it closely while it is
        shorter than a full flow."""
        start, end = b.flow_times()
        s, e, n = start[fl], end[fl], b.sizes[fl]
        order = np.lexsort((s, inv))
        same = inv[order][1:] == inv[order][:-1]
        prev, cur = order[:-1], order[1:]
        gap = s[cur] - e[prev]
        apart = (gap > b.opts.max_gap_s * 1e9) | ((gap >= 0) & (n[prev] >= FULL_FLOW))
        return np.sort(cur[same & ~apart])


FULL_FLOW = MAX_FLOW_PACKETS     # encoding's max_packets: a flow this long is cut there when read


# -- IPv4 across packets ---------------------------------------------------------------

class Ipv4TtlConstant(Rule):
    advisory = "routes change and NATs rewrite TTLs; RFC 791 does not fix a flow's TTL"
    name = "ipv4_ttl_constant"
    scope = "flow"
    description = "TTL constant per direction (the direction's majority value, bit by bit)"

    def plan(self, b: Batch) -> Plan:
        # bitwise majority rather than the first packet's TTL: a sampled flow's odd bit flips are
        # outvoted by its other packets (ties keep the first packet's bit); a real flow with one
        # TTL is left as it is
        p = Plan()
        ttl = b.get("ipv4_ttl")
        grp = b.fid * 2 + b.fwd
        ng = 2 * b.nf
        n = np.bincount(grp, minlength=ng)
        ff, fb = b.dir_first()
        first = np.where(b.fwd, ttl[ff[b.fid]], ttl[fb[b.fid]])
        want = np.zeros_like(ttl)
        for k in range(8):
            bit = (ttl >> k) & 1
            ones = np.bincount(grp, weights=bit, minlength=ng)[grp]
            two = 2 * ones
            maj = (two > n[grp]) | ((two == n[grp]) & (((first >> k) & 1) == 1))
            want |= maj.astype(ttl.dtype) << k
        want = np.where(want == 0, np.where(first == 0, 64, first), want)   # TTL 0 is never valid
        p.field("ipv4_ttl", ttl != want, want[ttl != want])
        return p


class Ipv4Id(Rule):
    advisory = 'RFC 6864: the ID of an atomic datagram carries no meaning and need not advance'
    name = "ipv4_id"
    scope = "flow"
    description = ("IP ID advances per direction: each step 1..32767 modulo 2^16 (wrap-around allowed); "
                   "a bad step becomes 1")

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        ipid = b.get("ipv4_id")
        fwd = b.fwd
        prev = np.where(fwd, b.last_where(fwd, inclusive=False), b.last_where(~fwd, inclusive=False))
        has = prev >= 0
        step = np.where(has, (ipid - ipid[np.maximum(prev, 0)]) % 65536, 0)
        bad = has & ((step < 1) | (step > 32767))
        if not bad.any():
            return p
        step = np.where(bad, 1, step)
        ff, fb = b.dir_first()
        base = np.where(fwd, ipid[ff[b.fid]], ipid[fb[b.fid]])
        cum = np.where(fwd, b.excl_cumsum(step * fwd), b.excl_cumsum(step * ~fwd)) + step
        want = (base + cum) % 65536
        p.field("ipv4_id", ipid != want, want[ipid != want])
        return p


# -- TCP sequence space ----------------------------------------------------------------

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
