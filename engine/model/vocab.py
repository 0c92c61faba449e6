"""Field vocabularies: decoding a sampled field onto the values its class uses.

The denoiser predicts every bit of a header field separately. Where it is
unsure (a 16-bit packet size, an 8-bit TTL), the bits are decided one by one
and the value comes out as a blend: 40 becomes 41 or 42, TTL 64 becomes 63
or 66, a window of 62780 becomes 1. Such values are valid protocol-wise but
unlike the class, and they mislead a classifier trained on synthetic data.

Each checkpoint therefore carries, per class and per field span, the values
its training flows used most (``config.json`` key ``vocab``), and a sampled
field is decoded to the vocabulary value nearest to the model's soft bits
(least squares over the span's bits, i.e. the most likely value under
independent per-bit Gaussian errors). This is constrained decoding, not
copying: spans are decoded one at a time, so a packet is a new combination.
"""

from __future__ import annotations

import numpy as np

from engine.layout import LAYOUT, bits_to_uint, uint_to_bits

#: the spans decoded onto vocabularies: single fields, plus the TCP flag bits as one span
#: (flags come in combinations: SYN, SYN-ACK, ACK, PSH-ACK, FIN-ACK, RST)
SPANS: dict[str, slice] = {
    "ipv4_tos": LAYOUT.cols("ipv4_tos"),
    "ipv4_tl": LAYOUT.cols("ipv4_tl"),
    "ipv4_ttl": LAYOUT.cols("ipv4_ttl"),
    "tcp_doff": LAYOUT.cols("tcp_doff"),
    "tcp_flags": slice(LAYOUT.cols("tcp_res").start, LAYOUT.cols("tcp_fin").stop),
    "tcp_wsize": LAYOUT.cols("tcp_wsize"),
    "icmp_type": LAYOUT.cols("icmp_type"),
    "icmp_code": LAYOUT.cols("icmp_code"),
    # the gap's top 8 code bits: its size to an eighth of an octave (engine.layout, IAT_SCALE);
    # the low bits stay the model's
    "meta_iat_coarse": slice(LAYOUT.cols("meta_iat").start, LAYOUT.cols("meta_iat").start + 8),
}


def fit_vocab(rows: np.ndarray, row_labels: np.ndarray, classes: list[str], top: int = 64,
              min_count: int = 2, keep: int = 8) -> dict:
    """Per class and span, the ``top`` most frequent values of the training rows where the
    span is present (values seen once are dropped beyond the ``keep`` most frequent).

    ``rows``: ``(R, width)`` int8 in {-1, 0, 1}; ``row_labels``: ``(R,)`` class index.
    """
    out: dict[str, dict[str, list[int]]] = {}
    for ci, c in enumerate(classes):
        r = rows[row_labels == ci]
        spans = {}
        for name, sl in SPANS.items():
            sub = r[:, sl]
            sub = sub[(sub != -1).all(axis=1)]
            if not len(sub):
                continue
            v, n = np.unique(bits_to_uint(sub), return_counts=True)
            order = np.argsort(-n, kind="stable")
            take = [int(v[i]) for j, i in enumerate(order[:top]) if j < keep or n[i] >= min_count]
            spans[name] = take
        out[c] = spans
    return out


def decode(x: np.ndarray, vocab: dict[str, list[int]]) -> np.ndarray:
    """Decode sampled flows ``x`` ``(B, L, width)`` (floats, before snapping) onto a class's
    vocabulary: every span that snaps to present in a row gets the nearest vocabulary value's bits.
    Returns a new array."""
    x = np.array(x, np.float32, copy=True)
    flat = x.reshape(-1, x.shape[-1])
    for name, sl in SPANS.items():
        vals = vocab.get(name)
        if not vals:
            continue
        sub = flat[:, sl]
        present = (np.rint(np.clip(sub, -1, 1)) != -1).all(axis=1)
        if not present.any():
            continue
        p = np.clip(sub[present], 0.0, 1.0)
        V = uint_to_bits(np.asarray(vals, np.uint64), sl.stop - sl.start).astype(np.float32)
        d = (V * V).sum(1)[None, :] - 2.0 * p @ V.T          # |p - v|^2 up to a per-row constant
        flat[np.nonzero(present)[0][:, None], np.arange(sl.start, sl.stop)[None, :]] = V[d.argmin(1)]
    return x
