"""Port fidelity: are flows on the services their class uses?

The classifiers and divergences of an evaluation mask ports (a port alone
names many classes, so it would hide everything else). Ports still matter to
anyone using the data, so they are judged here on their own, per class, by the
flow's (transport, server port) pair, the server's side decided as the model's
port prior decides it (:func:`engine.model.ports.server_port`, with the real
training flows of the class as the reference):

* ``seen``: share of a candidate's TCP/UDP flows whose pair occurs among the
  class's real training flows;
* ``jsd_test`` / ``jsd_train``: Jensen-Shannon divergence (base 2) of the pair
  distribution from the real test / training flows' (the test split is small
  for most classes, so ``real_train`` vs ``real_test`` is reported as the floor).

The other enumerated header fields are judged the same way per packet
(:func:`enum_fidelity`): the TTL, the ICMP type and code, and the TCP option
list as its kinds in order (values masked: an MSS of 1460 and one of 1448 are
the same layout).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from engine.codec.layout import LAYOUT, bits_to_uint, get
from engine.model.ports import port_counts, server_port
from engine.repair import options as op
from .data import FlowSet
from .metrics import jsd


def _pairs(fs: FlowSet, counts: Counter) -> Counter:
    return Counter((m.proto, server_port(m.proto, m.init_port, m.resp_port, counts))
                   for m in fs.metas if m.proto in (6, 17))


def _jsd(a: Counter, b: Counter) -> float | None:
    if not a or not b:
        return None
    keys = sorted(set(a) | set(b))
    return jsd([a[k] for k in keys], [b[k] for k in keys])


def port_fidelity(train: FlowSet, test: FlowSet, candidates: dict[str, FlowSet], classes: list[str]) -> dict:
    """``{"classes": {class: {candidate: {flows, seen, jsd_test, jsd_train, top}}}, "overall":
    {candidate: {seen, mean_jsd_test, mean_jsd_train}}}``; ``real_train`` and ``real_test``
    are candidates too (their ``seen`` is 1 and the floor of a held-out split)."""
    per: dict = {}
    for c in classes:
        tr = train.of(c)
        counts = port_counts((m.proto, m.init_port, m.resp_port) for m in tr.metas)
        ref_train = _pairs(tr, counts)
        ref_test = _pairs(test.of(c), counts)
        row = {}
        sets = {"real_train": tr, "real_test": test.of(c), **{k: v.of(c) for k, v in candidates.items()}}
        for name, fs in sets.items():
            got = _pairs(fs, counts)
            n = sum(got.values())
            row[name] = {"flows": n,
                         "seen": None if n == 0 else sum(v for k, v in got.items() if k in ref_train) / n,
                         "jsd_test": _jsd(got, ref_test), "jsd_train": _jsd(got, ref_train),
                         "top": [[p, port, k] for (p, port), k in got.most_common(5)]}
        per[c] = row
    overall = {}
    for name in (next(iter(per.values())) if per else {}):
        rows = [per[c][name] for c in classes]
        n = sum(r["flows"] for r in rows)
        overall[name] = {
            "flows": n,
            "seen": None if n == 0 else sum(r["seen"] * r["flows"] for r in rows if r["seen"] is not None) / n,
            **{f"mean_{k}": _mean([r[k] for r in rows]) for k in ("jsd_test", "jsd_train")}}
    return {"classes": per, "overall": overall}


def _mean(v) -> float | None:
    v = [x for x in v if x is not None]
    return sum(v) / len(v) if v else None


def _option_layouts(m: np.ndarray) -> list[tuple]:
    """Per TCP packet with options: its option kinds in order (NOP/EOL left out; an option list
    that does not parse ends in -1)."""
    tcp = m[:, LAYOUT.cols("tcp_doff").start] != -1
    olen = np.clip(get(m, "tcp_doff").astype(np.int64), 5, 15) * 4 - 20
    rows = np.nonzero(tcp & (olen > 0))[0]
    if len(rows) == 0:
        return []
    c = LAYOUT.cols("tcp_opt")
    raw = bits_to_uint(m[rows, c.start:c.stop].reshape(len(rows), -1, 8)).astype(np.uint8)
    t = op.walk(raw, olen[rows], op.TCP_LEN_TABLE, sack=True)
    kinds = np.split(t.kind, np.searchsorted(t.row, np.arange(1, len(rows))))
    return [tuple(int(k) for k in ks) + (() if ok else (-1,)) for ks, ok in zip(kinds, t.ok)]


def _values(fs: FlowSet, field: str) -> Counter:
    out: Counter = Counter()
    for m in fs.mats:
        if field == "tcp_option_kinds":
            out.update(_option_layouts(m))
            continue
        if field == "icmp_type_code":
            rows = m[:, LAYOUT.cols("icmp_type").start] != -1
            out.update(zip(get(m[rows], "icmp_type").tolist(), get(m[rows], "icmp_code").tolist()))
            continue
        rows = m[:, LAYOUT.cols(field).start] != -1
        out.update(get(m[rows], field).tolist())
    return out


#: the enumerated fields judged per packet besides the ports
ENUM_FIELDS = ("ipv4_ttl", "icmp_type_code", "tcp_option_kinds")


def enum_fidelity(train: FlowSet, candidates: dict[str, FlowSet], classes: list[str]) -> dict:
    """Per field of :data:`ENUM_FIELDS`, class and candidate: ``{packets, seen, jsd_train}``
    (share of the packets carrying the field whose value the class's real training packets
    have, and the JSD from their distribution); ``overall``: packet-weighted ``seen`` and the
    mean JSD over classes."""
    out: dict = {}
    for f in ENUM_FIELDS:
        per = {}
        for c in classes:
            ref = _values(train.of(c), f)
            row = {}
            for name, fs in candidates.items():
                got = _values(fs.of(c), f)
                n = sum(got.values())
                row[name] = {"packets": n, "seen": None if n == 0 else sum(v for k, v in got.items() if k in ref) / n,
                             "jsd_train": _jsd(got, ref)}
            per[c] = row
        overall = {}
        for name in candidates:
            rows = [per[c][name] for c in classes]
            n = sum(r["packets"] for r in rows)
            overall[name] = {"packets": n,
                             "seen": None if n == 0 else
                             sum(r["seen"] * r["packets"] for r in rows if r["seen"] is not None) / n,
                             "mean_jsd_train": _mean([r["jsd_train"] for r in rows])}
        out[f] = {"classes": per, "overall": overall}
    return out
