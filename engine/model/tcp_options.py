"""TCP option lists as values: a class's SYN, SYN-ACK and other segments carry the lists its
hosts' stacks send, not lists assembled bit by bit.

An option list is a host's fingerprint: Linux sends MSS, SACK-permitted, timestamps, NOP,
window scale on a SYN (20 bytes), Windows MSS, NOP, window scale, NOP, NOP, SACK-permitted
(12 bytes), and later segments carry NOP, NOP, timestamps or nothing. The denoiser predicts
the 320 option bits one by one; where it is unsure of a NOP or a length byte the list broke,
and the repair kept its good records only: 46 % of the shipped model's http SYNs came out as
MSS alone or MSS, window scale (4-8 bytes; real SYNs 12-24), so a SYN's size alone told a
synthetic flow from a real one (bench/quality_1024.md, "Ninth session").

Each checkpoint therefore carries, per class and role (SYN, SYN-ACK, other), the option lists
its training segments used (``config.json`` key ``tcp_options``): every byte fixed (kinds,
lengths, MSS value, window shift, padding) except the timestamp values (``xx``), which stay the
model's (a table with ``clock`` writes them as a clock: :mod:`engine.model.tcp_timestamps`). A
sampled TCP row draws its list from ``count(list) * evidence(list)``, the evidence being the
model's soft bits over the option area (three states per bit: absent, 0, 1); its data offset
follows the list. A SYN or SYN-ACK draws
per packet; the other segments of a flow's direction draw one list for all of them from the
evidence of all of them, as a host keeps its list for a connection, and with timestamps exactly
when the flow's SYN and SYN-ACK both have them (RFC 7323). Before, 22 of 65 synthetic tls_https
flows had a SYN without timestamps and timestamps on every later segment.

Which lists a flow's hosts use is one decision per flow, and the model's soft bits over the
option area are ~100 bits that move together: summed as if independent they outvoted the counts
(synthetic Teams flows had stamps in 96 % of handshakes, real 61 %), and a mid-connection flow's
two directions drew apart. A table with ``stamps`` (fifteenth session) therefore weighs the
model's evidence by :data:`EVIDENCE` (the mean over a flow direction's segments, not the sum), lets
a SYN-ACK stamp only when its SYN did (at the rate that keeps the class's SYN-ACK share), ties
the two directions of a flow, and draws whether a flow seen without its handshake stamps from
the class's share of such flows (``stamps``: ``[flows with stamps, flows]``), not from the
segment counts, which long flows dominate. Tables without it draw as before.
"""

from __future__ import annotations

import re

import numpy as np

from engine.codec.layout import COL_DIR, LAYOUT, bits_to_uint, uint_to_bits
from engine.errors import InputError
from engine.model.vocab import draw_index
from engine.repair import options as op

ROLES = ("syn", "synack", "other")
DOFF = LAYOUT.cols("tcp_doff")
OPT = LAYOUT.cols("tcp_opt")
OPT_BYTES = (OPT.stop - OPT.start) // 8
SYN, ACK = LAYOUT.cols("tcp_syn").start, LAYOUT.cols("tcp_ackf").start
#: lists kept per class and role (most frequent first); a list seen once is kept among the first KEEP
TOP, KEEP = 64, 8
FREE = -1           # a byte left to the model (timestamp values)
#: a bit the model calls certain still leaves this much doubt (as engine.model.vocab.BIT_FLOOR)
FLOOR = 0.05
#: weight of the model's per-segment evidence in a table with ``stamps`` (measured: bench/quality_1024.md)
EVIDENCE = 0.003
#: weight of the data offset the field decoder gave a row (its flow profile's) in a table with ``stamps``
DOFF_EVIDENCE = 4.0
_KEY = re.compile(r"^(?:[0-9a-f]{2}|xx)*$")


def tcp_rows(x: np.ndarray) -> np.ndarray:
    """Which rows of ``x`` (``(..., width)``, snapped or the denoiser's floats) are TCP: their data
    offset is present."""
    return np.rint(np.clip(x[..., DOFF.start], -1, 1)) != -1


def roles(flags_syn: np.ndarray, flags_ack: np.ndarray) -> np.ndarray:
    """Per row: 0 SYN, 1 SYN-ACK, 2 other (index into :data:`ROLES`)."""
    syn = flags_syn.astype(bool)
    return np.where(syn, np.where(flags_ack.astype(bool), 1, 0), 2)


def walk_options(rows: np.ndarray):
    """The option areas of TCP rows ``(R, width)`` in {-1, 0, 1}, parsed: ``(raw, olen, table)``,
    ``raw`` ``(R, 40)`` uint8 bytes, ``olen`` ``(R,)`` the area's length by the data offset,
    ``table`` the records (:func:`engine.repair.options.walk`)."""
    doff = bits_to_uint(np.where(rows[:, DOFF] == 1, 1, 0).astype(np.int8)).astype(np.int64)
    olen = np.clip(doff, 5, 15) * 4 - 20
    raw = np.packbits(rows[:, OPT] == 1, axis=1)
    return raw, olen, op.walk(raw, olen, op.TCP_LEN_TABLE, sack=False)


def layouts(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The option lists of TCP rows ``(R, width)`` in {-1, 0, 1}: ``(bytes, ok)``, ``bytes``
    ``(R, 40)`` int16 with :data:`FREE` at timestamp values and -2 past the option area, ``ok``
    ``(R,)`` where the list is one the repair keeps unchanged (known kinds with their lengths, each
    once, SYN-only kinds on SYNs only, no SACK blocks)."""
    raw, olen, t = walk_options(rows)
    syn = (rows[:, SYN] == 1)[t.row]
    good = op.TCP_KNOWN[t.kind] & (~op.TCP_SYN_ONLY_T[t.kind] | syn) & op.first_of_kind(t)
    ok = t.ok & (np.bincount(t.row[~good], minlength=len(rows)) == 0) & tcp_rows(rows)
    out = raw.astype(np.int16)
    ts = t.row[t.kind == op.TS], t.pos[t.kind == op.TS]
    for k in range(2, 10):
        out[ts[0], np.minimum(ts[1] + k, OPT_BYTES - 1)] = FREE
    out[np.arange(OPT_BYTES)[None, :] >= olen[:, None]] = -2
    return out, ok


def _key(b: np.ndarray) -> str:
    return "".join("xx" if v == FREE else f"{v:02x}" for v in b if v != -2)


def _midflow(rows: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per flow: whether it has TCP segments but no SYN among its rows, and whether most of its
    TCP segments carry timestamps."""
    F = len(offsets) - 1
    flow = np.repeat(np.arange(F), np.diff(offsets))
    tcp = tcp_rows(rows)
    b, _ = layouts(rows[tcp])
    n_tcp = np.bincount(flow[tcp], minlength=F)
    n_syn = np.bincount(flow[tcp], weights=rows[tcp, SYN] == 1, minlength=F)
    n_ts = np.bincount(flow[tcp], weights=(b == FREE).any(1), minlength=F)
    return (n_tcp > 0) & (n_syn == 0), 2 * n_ts > n_tcp


def fit_tcp_options(rows: np.ndarray, offsets: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """Per class and role, ``[[list, count], ...]``: the :data:`TOP` most frequent option lists of
    the class's TCP rows (lists seen once only among the first :data:`KEEP`), each a hex string of
    its bytes with ``xx`` for a timestamp value byte (``""``: no options); ``stamps``: of the
    class's flows with TCP segments but no SYN, ``[with timestamps, all]``; ``evidence``:
    :data:`EVIDENCE`.

    ``rows``: ``(R, width)`` int8 in {-1, 0, 1}; ``offsets``: ``(F + 1,)`` each flow's first row;
    ``labels``: ``(F,)`` class index.
    """
    out: dict[str, dict[str, list]] = {}
    from .tcp_timestamps import fit_clocks
    row_labels = np.repeat(labels, np.diff(offsets))
    mid, ts = _midflow(rows, offsets)
    clocks = fit_clocks(rows, offsets, labels, classes)
    tcp = tcp_rows(rows)
    for ci, c in enumerate(classes):
        sel = np.nonzero(tcp & (row_labels == ci))[0]
        if not len(sel):
            continue
        r = rows[sel]
        b, ok = layouts(r)
        role = roles(r[:, SYN] == 1, r[:, ACK] == 1)
        table = {}
        for k, name in enumerate(ROLES):
            m = b[ok & (role == k)]
            if not len(m):
                continue
            u, n = np.unique(m, axis=0, return_counts=True)
            order = np.argsort(-n, kind="stable")
            table[name] = [[_key(u[i]), int(n[i])] for j, i in enumerate(order[:TOP]) if j < KEEP or n[i] >= 2]
        if table:
            own = mid & (labels == ci)
            table["stamps"] = [int((own & ts).sum()), int(own.sum())]
            table["evidence"] = EVIDENCE
            if clocks.get(c):
                table["clock"] = clocks[c]
        out[c] = table
    return out


class OptionLists:
    """One class's option lists, checked and laid out for drawing.

    Per role: ``targets`` ``(V, 320)`` float32 per option bit, 1 / 0 / -1 (absent) or NaN (left to
    the model); ``doff`` ``(V,)`` the list's data offset; ``logn`` ``(V,)`` log counts.
    ``stamps``: ``(with, all)`` flows seen without a SYN, ``evidence`` the model's weight; both
    ``None`` in a table fitted before them (drawn as then).
    """

    def __init__(self, table, label: str):
        from .tcp_timestamps import check_clock
        if not isinstance(table, dict) or not set(table) <= set(ROLES) | {"stamps", "evidence", "clock"}:
            raise InputError(None, f"config.json: tcp_options of class {label!r}: want a table of roles "
                                   f"{', '.join(ROLES)} (and stamps, evidence, clock)")
        self.roles: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.stamps, self.evidence = table.get("stamps"), table.get("evidence")
        st, ev = self.stamps, self.evidence
        if (st is None) != (ev is None) or st is not None and not (
                isinstance(st, list) and len(st) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                 for v in st) and 0 <= st[0] <= st[1] < 2 ** 53
                and isinstance(ev, (int, float)) and not isinstance(ev, bool) and 0 <= ev <= 1):
            raise InputError(None, f"config.json: tcp_options of class {label!r}: want stamps [with, all] "
                                   f"(0 <= with <= all) and evidence in [0, 1], both or neither")
        self.clock = check_clock(table.get("clock"), label)
        for name, entries in table.items():
            if name in ("stamps", "evidence", "clock"):
                continue
            bad = InputError(None, f"config.json: tcp_options of class {label!r}, role {name!r}: want up to "
                                   f"{TOP} [hex list of up to {OPT_BYTES} bytes in 4-byte words, count >= 1]")
            if not isinstance(entries, list) or not 0 < len(entries) <= TOP:
                raise bad
            tg, doff, n = [], [], []
            for e in entries:
                if not (isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) and isinstance(e[1], int)
                        and not isinstance(e[1], bool) and 1 <= e[1] < 2 ** 53 and _KEY.match(e[0])
                        and len(e[0]) % 8 == 0 and len(e[0]) // 2 <= OPT_BYTES):
                    raise bad
                t = np.full((OPT_BYTES, 8), -1.0, np.float32)
                for i in range(len(e[0]) // 2):
                    h = e[0][2 * i:2 * i + 2]
                    t[i] = np.nan if h == "xx" else np.unpackbits(np.uint8(int(h, 16))[None])
                tg.append(t.ravel())
                doff.append(5 + len(e[0]) // 8)
                n.append(e[1])
            self.roles[ROLES.index(name)] = (np.stack(tg), np.asarray(doff, np.int64),
                                             np.log(np.asarray(n, np.float64)))


def _evidence(soft: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``(R, V)`` log-likelihood of each list under the rows' soft option bits ``(R, 320)`` in
    [-1, 1], read as three states (-1 absent, 0, 1, linearly between), floored at :data:`FLOOR`."""
    s = np.clip(soft.astype(np.float64), -1.0, 1.0)
    p = np.stack([np.clip(-s, 0, 1), 1.0 - np.abs(s), np.clip(s, 0, 1)])        # absent, 0, 1
    p = np.maximum(p, FLOOR)
    lp = np.log(p / p.sum(0))
    ll = np.zeros((len(s), len(targets)))
    for k, v in enumerate((-1.0, 0.0, 1.0)):
        ll += lp[k] @ (targets == v).T.astype(np.float64)
    return ll


def _doff_evidence(decoded: np.ndarray, doff: np.ndarray, members: np.ndarray, per: np.ndarray) -> np.ndarray:
    """``(G, V)`` log share of a group's rows whose decoded data offset is each list's, floored at
    :data:`FLOOR`: a flow profile whose segments carry no options keeps its flows off the lists that
    have them (a class's SYN-ACKs with timestamps came out at the class's share in its long flows too:
    amazon's long flows 58 % against 28 % real, its 2-packet ones 67 % against 90 %)."""
    match = np.zeros((len(per), len(doff)))
    np.add.at(match, members, decoded[:, None] == doff[None, :])
    return np.log(np.maximum(match / per, FLOOR))


def _stamped_share(logn: np.ndarray, has_ts: np.ndarray) -> float:
    """The share of a role's count mass on lists with timestamps."""
    mass = np.exp(logn - logn.max())
    return float(mass[has_ts].sum() / mass.sum())


def _with_share(logn: np.ndarray, has_ts: np.ndarray, want: float) -> np.ndarray:
    """``logn`` re-weighed so that the lists with timestamps hold ``want`` of the mass (unchanged
    where the role has lists of one kind only)."""
    t = _stamped_share(logn, has_ts)
    if not 0 < t < 1:
        return logn
    return logn + np.where(has_ts, np.log(want / t), np.log((1 - want) / (1 - t)))


def _midflow_prior(logn: np.ndarray, has_ts: np.ndarray, stamps) -> np.ndarray:
    """The other segments' log counts re-weighed so that the lists with timestamps hold the share
    of the class's flows seen without a SYN that carry them (add-one smoothed)."""
    return _with_share(logn, has_ts, (stamps[0] + 1) / (stamps[1] + 2))


def _synack_prior(lists: OptionLists, logn: np.ndarray, has_ts: np.ndarray) -> np.ndarray:
    """The SYN-ACK's log counts given a SYN with timestamps: a server stamps only when its client
    did, so given that it did, the lists with timestamps weigh P(SYN-ACK stamps) / P(SYN stamps)."""
    syn = lists.roles.get(ROLES.index("syn"))
    if syn is None:
        return logn
    ps = _stamped_share(syn[2], np.isnan(syn[0]).any(1))
    if ps <= 0:
        return logn
    return _with_share(logn, has_ts, min(_stamped_share(logn, has_ts) / ps, 1.0 - 1e-6))


def decode_tcp_options(x: np.ndarray, lists: OptionLists, u: np.ndarray | None, chunk: int = 4096) -> np.ndarray:
    """Put every TCP row of sampled flows ``x`` ``(B, L, width)`` (floats, fields already decoded
    by :func:`engine.model.vocab.decode`, before snapping) on one of the class's option lists, in
    place; returns ``x``.

    ``u`` ``(B, L)`` uniforms in [0, 1) draw the lists (a row's, or for the other segments the
    first row's of its flow and direction); without them each takes its most likely list.
    """
    B, L, W = x.shape
    flat = x.reshape(-1, W)
    tcp = tcp_rows(flat)
    role = roles(flat[:, SYN] > 0.5, flat[:, ACK] > 0.5)
    uf = None if u is None else np.asarray(u, np.float64).reshape(-1)
    new = lists.evidence is not None
    weight = 1.0 if not new else float(lists.evidence)
    # per flow: -1 not decided yet, else whether its segments carry timestamps (RFC 7323:
    # negotiated on the SYN and SYN-ACK, every later segment carries them; not, none does)
    stamps = np.full(B, -1, np.int64)
    syn_stamps = np.full(B, -1, np.int64)
    ts_start = np.full(B * L, -1, np.int64)     # where a row's timestamp values begin
    # the data offset the field decoder drew from the flow's profile says how long a list it carries
    decoded = bits_to_uint((flat[:, DOFF] > 0.5).astype(np.int8)).astype(np.int64) if new else None
    groups = []
    for k in sorted(lists.roles):
        rows = np.nonzero(tcp & (role == k))[0]
        if new and ROLES[k] == "other":     # one direction decides, the other follows
            d = flat[rows, COL_DIR] > 0.5
            groups += [(k, rows[~d]), (k, rows[d])]
        else:
            groups.append((k, rows))
    for k, rows in groups:
        targets, doff, logn = lists.roles[k]
        if not len(rows):
            continue
        other = ROLES[k] == "other"
        if other:                           # one list per flow and direction
            key = (rows // L) * 2 + (flat[rows, COL_DIR] > 0.5)
            _, first, members = np.unique(key, return_index=True, return_inverse=True)
            members = members.ravel()
        else:
            first, members = np.arange(len(rows)), np.arange(len(rows))
        ll = np.zeros((len(first), len(targets)))
        for a in range(0, len(rows), chunk):
            np.add.at(ll, members[a:a + chunk], _evidence(flat[rows[a:a + chunk], OPT], targets))
        ll *= weight
        if new:
            per = np.bincount(members, minlength=len(first))[:, None]
            if other:
                ll /= per
            ll += DOFF_EVIDENCE * _doff_evidence(decoded[rows], doff, members, per)
        has_ts = np.isnan(targets).any(1)
        logp = np.broadcast_to(logn[None, :], ll.shape) + ll
        flows = rows[first] // L
        if other:
            neg = stamps[flows]
            if new:
                logp = np.where((neg < 0)[:, None], _midflow_prior(logn, has_ts, lists.stamps)[None, :] + ll,
                                logp)
            allowed = (neg[:, None] < 0) | (has_ts[None, :] == (neg[:, None] == 1))
            allowed[~allowed.any(1)] = True
            logp = np.where(allowed, logp, -np.inf)
        elif new and ROLES[k] == "synack":
            s = syn_stamps[flows]
            logp = np.where((s == 1)[:, None], _synack_prior(lists, logn, has_ts)[None, :] + ll, logp)
            allowed = ~((s == 0)[:, None] & has_ts[None, :])
            allowed[~allowed.any(1)] = True
            logp = np.where(allowed, logp, -np.inf)
        if uf is None:
            pick = logp.argmax(1)
        else:
            pick = draw_index(np.exp(logp - logp.max(1, keepdims=True)), uf[rows[first]])
        pick = pick[members]
        f = rows // L
        if not other:
            seen = np.ones(B, np.int64)
            np.minimum.at(seen, f, has_ts[pick].astype(np.int64))
            got = np.unique(f)
            stamps[got] = np.where(stamps[got] < 0, seen[got], np.minimum(stamps[got], seen[got]))
            if ROLES[k] == "syn":
                syn_stamps[got] = seen[got]
        elif new:
            got, i0 = np.unique(f, return_index=True)
            fresh = stamps[got] < 0
            stamps[got[fresh]] = has_ts[pick[i0[fresh]]]
        t = targets[pick]
        free = np.isnan(t)
        ts_start[rows] = np.where(free.any(1), OPT.start + free.argmax(1), -1)
        cur = flat[rows, OPT]
        # the clock reads which value bits the model wrote (absent: -1), so a new table keeps them
        flat[rows, OPT] = np.where(free, cur if new else np.clip(cur, 0.0, 1.0), t)
        flat[rows, DOFF] = uint_to_bits(doff[pick].astype(np.uint64), DOFF.stop - DOFF.start)
    if new:
        from .tcp_timestamps import clock_timestamps
        clock_timestamps(x, ts_start.reshape(B, L), None if u is None else np.asarray(u, np.float64).reshape(B, L),
                         lists.clock)
    return x
