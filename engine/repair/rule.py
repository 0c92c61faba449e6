"""The rule interface: a named unit that counts its violations and fixes them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from engine.codec.layout import ABSENT, LAYOUT
from .batch import Batch, Plan, popcount

C = LAYOUT.cols


@dataclass
class Changes:
    """What one rule's fix changed.

    Attributes:
        packets: ``(N,)`` bool, rows whose bits (or addresses) changed.
        fields: field or block name -> number of packets where it changed.
    """

    packets: np.ndarray
    fields: Counter = field(default_factory=Counter)


class Rule:
    """Base class. Subclasses set ``name``, ``description``, ``scope`` and implement :meth:`plan`.

    ``plan(batch)`` returns the edits that would make the batch satisfy the
    rule; :meth:`count` reports the packets those edits would change, so a
    packet violates a rule exactly when the rule's fix would change it.
    """

    name = ""
    description = ""
    scope = "packet"        # "packet": within one packet; "flow": across a flow's packets
    # Non-empty (the reason) for a convention our generated traffic follows but the
    # protocols do not require: a check reports it, and it does not make a capture unclean.
    advisory = ""

    def plan(self, b: Batch) -> Plan:  # pragma: no cover - interface
        raise NotImplementedError

    def _changes(self, b: Batch, plan: Plan) -> Changes:
        mask = np.zeros(b.n, bool)
        fields: Counter = Counter()
        for e in plan.edits:
            rows = e.changed(b)
            if len(rows):
                mask[rows] = True
                fields[e.name] += len(rows)
        for me in plan.meta:
            diff = np.zeros(len(me.flows), bool)
            for attr, vals in me.values.items():
                diff |= getattr(b, attr)[me.flows] != vals
            flows = me.flows[diff]
            if len(flows):
                fl = np.zeros(b.nf, bool)
                fl[flows] = True
                rows_mask = fl[b.fid]
                mask |= rows_mask
                fields[me.name] += int(rows_mask.sum())
        return Changes(mask, fields)

    def count(self, b: Batch) -> tuple[np.ndarray, np.ndarray]:
        """Violations: ``(packet_mask (N,), flow_mask (F,))``."""
        b.counting = True
        try:
            plan = self.plan(b)
        finally:
            b.counting = False
        ch = self._changes(b, plan)
        mask = ch.packets
        if plan.flagged is not None:
            mask = mask | plan.flagged
        return mask, b.flow_any(mask)

    def fix(self, b: Batch) -> Changes:
        """Apply the rule's edits; returns what changed."""
        plan = self.plan(b)
        ch = self._changes(b, plan)
        b.apply(plan)
        return ch

    def __repr__(self) -> str:
        return f"<rule {self.name}>"


def fill_absent(bits: np.ndarray) -> np.ndarray:
    """Copy of ``bits`` with absent (-1) cells set to 0."""
    out = bits.copy()
    out[out == ABSENT] = 0
    return out


OPT_COL = np.arange(320, dtype=np.int16)


def word_presence_fix(b: Batch, plan: Plan, rows: np.ndarray, opt_name: str, len_name: str) -> None:
    """Header-length rule shared by IPv4 IHL and TCP data offset (the payload keeps its size).

    The option area is the leading 32-bit words of the option columns whose
    bits are mostly present (the matrix's -1 pattern is what a model learns
    best); the length field must count exactly those words, their bits must
    all be present and every later option bit absent.
    """
    cols = C(opt_name)
    # absent bits of the 10 option words, 32 to a uint32 (byte order is irrelevant here)
    w = np.ascontiguousarray(b.absent[rows, cols.start // 8:cols.stop // 8]).view(np.uint32)
    cur = b.get(len_name)[rows]
    word_i = np.arange(w.shape[1])[None, :]
    ok = (cur >= 5) & np.where(word_i < (cur - 5)[:, None], w == 0, w == 0xFFFFFFFF).all(axis=1)
    if ok.all():
        return
    rows, w, cur = rows[~ok], w[~ok], cur[~ok]
    words = popcount(w) < 16                                      # majority present
    nwords = np.where(words.all(axis=1), words.shape[1], np.argmin(words, axis=1))
    bad = np.where(word_i < nwords[:, None], w != 0, w != 0xFFFFFFFF).any(axis=1)
    rb = rows[bad]
    nw = nwords[bad]

    def target():
        opt = np.maximum(b.m[rb, cols], 0)
        return np.where(OPT_COL[None, :] < (nw * 32)[:, None], opt, np.int8(ABSENT))
    plan.bits(opt_name, cols, rb, target)
    set_header_words(b, plan, rows, len_name, 5 + nwords)


def set_header_words(b: Batch, plan: Plan, rows: np.ndarray, len_name: str, want: np.ndarray) -> None:
    """Set a header-length field (``ipv4_hl`` / ``tcp_doff``, in 32-bit words) of ``rows``,
    moving the IPv4 total length by the same number of bytes so the payload keeps its size."""
    cur = b.get(len_name)[rows]
    ch = cur != want
    if not ch.any():
        return
    r = rows[ch]
    plan.field(len_name, r, want[ch])
    delta = 4 * (want[ch] - np.clip(cur[ch], 5, 15))
    tl = b.get("ipv4_tl")[r]
    new_tl = np.clip(tl + delta, 0, 65535)
    plan.field("ipv4_tl", r[new_tl != tl], new_tl[new_tl != tl])
