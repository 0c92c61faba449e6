"""TCP connection state shared by several rules: where the handshake is and where it ends."""

from __future__ import annotations

import numpy as np

from .batch import Batch


def handshake(b: Batch):
    """Per flow: (starts with a SYN, starts with a SYN-ACK, first backward row or -1)."""
    def calc():
        tcpf = b.flow_transport() == 0
        syn0 = b.get("tcp_syn")[b.starts] == 1
        ack0 = b.get("tcp_ackf")[b.starts] == 1
        _, fb = b.dir_first()
        return tcpf & syn0 & ~ack0, tcpf & syn0 & ack0, fb
    return b.cached("handshake", calc)


def final_rst_run(b: Batch) -> np.ndarray:
    """Per row: an RST in its flow's final run of RST packets (where an RST may be)."""
    def calc():
        rst = b.rows_of("tcp") & (b.get("tcp_rst") == 1)
        last_plain = b.last_in_flow_where(~rst)
        return rst & (b.idx > last_plain[b.fid])
    return b.cached("final_rst", calc)


def _parts(b: Batch):
    def calc():
        tcp = b.rows_of("tcp")
        syn_first, synack_first, fb = handshake(b)
        fwd = b.fwd
        syn_in = b.get("tcp_syn") == 1
        final_rst = final_rst_run(b)
        fbr = np.where(fb >= 0, fb, b.n)
        refused = syn_first & (fb >= 0) & final_rst[np.maximum(fb, 0)]
        open_ = syn_first & (fb >= 0) & ~refused
        # the handshake ends at the initiator's first non-SYN packet after the SYN-ACK
        # (or at a FIN or RST: a SYN after one would start a new connection)
        fin_rst = tcp & ((b.get("tcp_fin") == 1) | (b.get("tcp_rst") == 1))
        est = b.first_where(((fwd & ~syn_in) | fin_rst) & (b.idx > fbr[b.fid]))
        est = np.where(est >= 0, est, b.n)
        return syn_first, synack_first, fb, fbr, refused, open_, est, final_rst
    return b.cached("handshake_parts", calc)


def handshake_target(b: Batch) -> tuple[np.ndarray, np.ndarray]:
    """Per row: whether it should be a SYN, and whether it should be a SYN-ACK.

    A flow that starts with a SYN: the initiator's packets before the
    responder's first are SYNs (an RST in the final run excepted); the
    responder's first is the SYN-ACK unless it is an RST ending the flow
    (refused); until the handshake ends the initiator may repeat its SYN and
    the responder its SYN-ACK (the latter only before it sends anything else).
    A flow that starts with a SYN-ACK keeps that and its repeats.
    """
    def calc():
        syn_first, synack_first, fb, fbr, refused, open_, est, final_rst = _parts(b)
        fwd = b.fwd
        syn_in = b.get("tcp_syn") == 1
        want_syn = syn_first[b.fid] & fwd & (b.idx < fbr[b.fid]) & ~final_rst
        between = open_[b.fid] & (b.idx > fbr[b.fid]) & (b.idx < est[b.fid])
        synack = np.zeros(b.n, bool)
        synack[fb[open_]] = True
        plain_b = b.first_where(~fwd & ~syn_in & (b.idx > fbr[b.fid]))
        plain_b = np.where(plain_b >= 0, plain_b, b.n)
        synack |= open_[b.fid] & ~fwd & syn_in & (b.idx > fbr[b.fid]) & (b.idx < plain_b[b.fid])
        plain_f = b.first_where(fwd & ~syn_in)
        plain_f = np.where(plain_f >= 0, plain_f, b.n)
        synack |= synack_first[b.fid] & fwd & syn_in & (b.idx < plain_f[b.fid])
        want_syn |= synack | (between & fwd)
        return want_syn, synack
    return b.cached("handshake_target", calc)


def before_established(b: Batch) -> np.ndarray:
    """Per row: a responder packet after the SYN-ACK but before the initiator's packet
    that completes the handshake (it may not carry data: the connection is not open yet)."""
    def calc():
        _, _, _, fbr, _, open_, _, _ = _parts(b)
        fwd = b.fwd
        # the initiator's first non-SYN packet after the SYN-ACK completes it (FIN and RST
        # bits are not final yet when lengths are fixed, so they do not count here)
        done = b.first_where(fwd & (b.get("tcp_syn") == 0) & (b.idx > fbr[b.fid]))
        done = np.where(done >= 0, done, b.n)
        return ~fwd & open_[b.fid] & (b.idx > fbr[b.fid]) & (b.idx < done[b.fid])
    return b.cached("before_established", calc)
