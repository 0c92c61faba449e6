"""Rules across the packets of a flow: TCP handshake and teardown, 5-tuple, TTL, IP ID (the TCP
byte and time spaces are engine.repair.rules_stream).

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
from .batch import Batch, MetaEdit, Plan
from .rule import C, Rule
from .tcp_state import final_rst_run, handshake_target


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
    description = ("IP ID advances per direction: each step 1..32767 modulo 2^16 (wrap-around allowed), "
                   "except that a direction may open with atomic datagrams (DF set) of ID 0; "
                   "a bad step becomes 1")

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        ipid = b.get("ipv4_id")
        fwd = b.fwd
        prev = np.where(fwd, b.last_where(fwd, inclusive=False), b.last_where(~fwd, inclusive=False))
        has = prev >= 0
        step = np.where(has, (ipid - ipid[np.maximum(prev, 0)]) % 65536, 0)
        # many stacks send ID 0 on every atomic datagram (RFC 6864 4.1; Google's QUIC and
        # video servers: most of google_meet's and youtube's packets). A direction's run of
        # them from its first packet on stays; once it counts, it counts.
        zero = (ipid == 0) & (b.get("ipv4_dfbit") == 1) & (b.get("ipv4_mfbit") == 0) & (b.get("ipv4_foff") == 0)
        zf, zb = b.dir_first(~zero)
        end = np.where(fwd, zf[b.fid], zb[b.fid])
        opening = zero & ((end < 0) | (b.idx < end))
        step = np.where(opening, 0, step)
        bad = has & ~opening & ((step < 1) | (step > 32767))
        if not bad.any():
            return p
        step = np.where(bad, 1, step)
        ff, fb = b.dir_first()
        base = np.where(fwd, ipid[ff[b.fid]], ipid[fb[b.fid]])
        cum = np.where(fwd, b.excl_cumsum(step * fwd), b.excl_cumsum(step * ~fwd)) + step
        want = (base + cum) % 65536
        p.field("ipv4_id", ipid != want, want[ipid != want])
        return p
