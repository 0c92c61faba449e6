"""Which profiles a flow's service port belongs to: a profile's responder ports.

A flow's ports are drawn before its packets (engine.model.ports) and held, and its profile was
chosen from its length, transport and the model's evidence only. The ports say what kind of flow
it is: in youtube's captures the 2-packet UDP flows to port 53 are the host's DNS lookups,
answered by a resolver on the host or the LAN (TTLs 64 or 255 / 64), its other 2-packet flows
QUIC and TCP stubs to remote servers (TTL 52-56). Chosen without the port, synthetic DNS flows
drew the servers' TTLs, and a forest told synthetic 2-packet youtube flows from real ones by
their mean TTL alone with ROC AUC 0.80 (bench/quality_1024.md, eighteenth session).

So each profile keeps how many of its flows went to each of the class's responder ports (the
``(transport, port)`` pairs of at least :data:`MIN_PORT_FLOWS` of its training flows; the rest
count as one "other" port), and the choice of profile multiplies in ``P(port | profile)``,
smoothed towards the class's share by :data:`PORT_PRIOR` flows (``config.json`` profiles key
``ports``; a table without it chooses as before).
"""

from __future__ import annotations

import numpy as np

from engine.codec.layout import COL_DIR, get
from engine.codec.matrix import row_proto
from engine.model.ports import PORT_FIELDS

#: a responder port gets its own column when at least this many of the class's training flows use it
MIN_PORT_FLOWS = 2
#: a profile's port shares lean on the class's by this many flows (a profile of 8 flows that never
#: used a port the class uses still may, less likely)
PORT_PRIOR = 2.0
#: at most this many ports per class (the most used; the rest are "other")
MAX_PORTS = 256


def responder_keys(first: np.ndarray) -> np.ndarray:
    """``(B,)`` ``transport * 65536 + responder port`` of flows from their first rows
    ``(B, width)`` in {-1, 0, 1} (the responder's is the first packet's destination when the
    initiator sent it); ``-1`` for flows that are not TCP or UDP. The responder's port of
    :func:`engine.model.ports.flow_ports`, for many flows at once."""
    p = row_proto(first)
    out = np.full(len(first), -1, np.int64)
    for proto, (src, dst) in PORT_FIELDS.items():
        on = p == proto
        if on.any():
            r = first[on]
            port = np.where(r[:, COL_DIR] != 0, get(r, dst), get(r, src)).astype(np.int64)
            out[on] = proto * 65536 + port
    return out


def fit_profile_ports(keys: np.ndarray, assign: np.ndarray, K: int) -> dict:
    """A class's ``{"keys": [[transport, port], ...], "counts": [i, n, ...]}``: its responder
    ports (of :func:`responder_keys` ``keys`` ``(F,)``, one per training flow) used by at least
    :data:`MIN_PORT_FLOWS` flows, most used first, and per profile (``assign`` ``(F,)`` in
    ``[0, K)``) its flows per port, a ``(K, P + 1)`` array stored sparse (column ``P``: other)."""
    vals, n = np.unique(keys[keys >= 0], return_counts=True)
    order = np.argsort(-n, kind="stable")
    vals = vals[order][n[order] >= MIN_PORT_FLOWS][:MAX_PORTS]
    col = port_columns(vals, keys)
    counts = np.zeros((K, len(vals) + 1), np.int64)
    np.add.at(counts, (assign, col), 1)
    i = np.flatnonzero(counts)
    return {"keys": [[int(v // 65536), int(v % 65536)] for v in vals],
            "counts": np.stack([i, counts.ravel()[i]], 1).ravel().tolist()}


def read_profile_ports(table, K: int, bad) -> tuple[np.ndarray, np.ndarray] | None:
    """``(keys (P,), log P(port | profile) (K, P + 1))`` of a ``ports`` table, range-checked
    (``bad(what)`` makes the error); ``None`` for no table."""
    if table is None:
        return None
    try:
        keys = np.asarray(table["keys"], np.int64).reshape(-1, 2)
        c = np.asarray(table["counts"], np.int64)
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise bad(f"ports: malformed ({e})") from None
    P = len(keys)
    if P > MAX_PORTS or not np.isin(keys[:, 0], tuple(PORT_FIELDS)).all() or ((keys[:, 1] < 0) | (keys[:, 1] > 65535)).any():
        raise bad(f"ports: want at most {MAX_PORTS} [transport (6 or 17), port (0-65535)] keys")
    if c.ndim != 1 or len(c) % 2 or (len(c) and (c[0::2].min() < 0 or c[0::2].max() >= K * (P + 1)
                                                or c[1::2].min() < 0)):
        raise bad(f"ports: want (index, count) pairs, counts >= 0, indices below {K * (P + 1)}")
    counts = np.zeros(K * (P + 1))
    np.add.at(counts, c[0::2], c[1::2].astype(np.float64))
    counts = counts.reshape(K, P + 1)
    cls = (counts.sum(0) + 1e-3) / (counts.sum() + 1e-3 * (P + 1))
    share = (counts + PORT_PRIOR * cls) / (counts.sum(1, keepdims=True) + PORT_PRIOR)
    return keys[:, 0] * 65536 + keys[:, 1], np.log(share)


def port_columns(keys: np.ndarray, flows: np.ndarray) -> np.ndarray:
    """Each flow's column ``(B,)`` among a table's ``keys`` ``(P,)`` (``P``: other) from its
    :func:`responder_keys` ``flows`` ``(B,)``."""
    if not len(keys):
        return np.zeros(len(flows), np.int64)
    order = np.argsort(keys)
    k = np.minimum(np.searchsorted(keys[order], flows), len(keys) - 1)
    return np.where(keys[order][k] == flows, order[k], len(keys))
