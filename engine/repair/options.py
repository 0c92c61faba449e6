"""IPv4 and TCP option lists: parse, validate and rebuild, vectorized over packets.

Options are a sequence of (kind, length, value) records, so parsing is
sequential *within* a packet; :func:`walk` steps all packets forward together,
one option per step (at most 40 steps, usually 3-6), so the Python loop runs
over option positions, never over packets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.codec.capture import _ranges

EOL, NOP = 0, 1
# TCP option kinds we emit and accept, with their exact lengths.
MSS, WS, SACK_PERM, SACK, TS = 2, 3, 4, 5, 8
TCP_LEN = {MSS: 4, WS: 3, SACK_PERM: 2, TS: 10}
SACK_LENS = (10, 18, 26, 34)
TCP_SYN_ONLY = (MSS, WS, SACK_PERM)
MAX_WS = 14
# IPv4: Router Alert (RFC 2113), value 0.
IP_RA = 148
IP_LEN = {IP_RA: 4}


def _len_table(fixed: dict[int, int]) -> np.ndarray:
    t = np.zeros(256, np.int64)
    for k, v in fixed.items():
        t[k] = v
    return t


TCP_LEN_TABLE = _len_table(TCP_LEN)
SACK_LEN_OK = np.zeros(256, bool)
SACK_LEN_OK[list(SACK_LENS)] = True
TCP_KNOWN = np.zeros(256, bool)
TCP_KNOWN[[MSS, WS, SACK_PERM, TS]] = True
TCP_SYN_ONLY_T = np.zeros(256, bool)
TCP_SYN_ONLY_T[list(TCP_SYN_ONLY)] = True
IP_LEN_TABLE = _len_table(IP_LEN)


@dataclass
class OptionTable:
    """Every option record of every packet (EOL and NOP excluded).

    Attributes:
        row, pos, kind, length: ``(r,)`` one entry per record, in packet then position order.
        ok: ``(k,)`` per packet: the list parses (each record known with the
            right length, inside the option area) and ends at the area's end
            or at an EOL followed only by zero bytes.
        end: ``(k,)`` per packet: where parsing stopped (EOL position, area end, or the bad record).
        fixed: ``(k,)`` per packet: a length byte was corrected (``walk(fix_lengths=True)``).
        opt: the option bytes parsed, with corrected length bytes.
    """

    row: np.ndarray
    pos: np.ndarray
    kind: np.ndarray
    length: np.ndarray
    ok: np.ndarray
    end: np.ndarray
    fixed: np.ndarray | None = None
    opt: np.ndarray | None = None


def walk(opt: np.ndarray, olen: np.ndarray, lens: np.ndarray, sack: bool, fix_lengths: bool = False) -> OptionTable:
    """Parse option areas.

    Args:
        opt: ``(k, L)`` uint8 option bytes.
        olen: ``(k,)`` length of each packet's option area in bytes (<= L).
        lens: ``(256,)`` exact length of each accepted kind, 0 for unknown kinds.
        sack: accept TCP SACK (kind 5) with 2 + 8n bytes, n = 1..4.
        fix_lengths: a known kind with a wrong length byte gets its fixed length (when it
            fits in the area) and parsing goes on, instead of stopping there. A generated
            list often has one flipped bit in a length byte (SACK-permitted 4,6 instead of
            4,2) and would otherwise lose every option after it.
    """
    k, L = opt.shape
    fixed = np.zeros(k, bool)
    if fix_lengths:
        opt = opt.copy()
    olen = np.minimum(np.asarray(olen, np.int64), L)
    pos = np.zeros(k, np.int64)
    alive = olen > 0
    ok = np.ones(k, bool)
    end = olen.copy()
    recs = []
    for _ in range(L):
        idx = np.nonzero(alive)[0]
        if len(idx) == 0:
            break
        p = pos[idx]
        kd = opt[idx, p].astype(np.int64)
        is_eol = kd == EOL
        e = idx[is_eol]
        end[e] = pos[e]
        alive[e] = False
        is_nop = kd == NOP
        pos[idx[is_nop]] += 1
        o = ~is_eol & ~is_nop
        io, po, ko = idx[o], p[o], kd[o]
        has_len = po + 1 < olen[io]
        ln = np.where(has_len, opt[io, np.minimum(po + 1, L - 1)], 0).astype(np.int64)
        need = lens[ko]
        if fix_lengths:
            fx = has_len & (need > 0) & (ln != need) & (po + need <= olen[io])
            if sack:
                fx &= ~((ko == SACK) & SACK_LEN_OK[np.minimum(ln, 255)])
            if fx.any():
                opt[io[fx], po[fx] + 1] = need[fx]
                ln = np.where(fx, need, ln)
                fixed[io[fx]] = True
        good_len = (ln == need) & (need > 0)
        if sack:
            good_len |= (ko == SACK) & SACK_LEN_OK[np.minimum(ln, 255)]
        good = has_len & good_len & (po + ln <= olen[io])
        bad = io[~good]
        ok[bad] = False
        end[bad] = po[~good]
        alive[bad] = False
        g = io[good]
        recs.append((g, po[good], ko[good], ln[good]))
        pos[g] += ln[good]
        alive &= pos < olen
    # after an EOL only zero bytes may follow
    after = np.arange(L)[None, :] >= end[:, None]
    inside = np.arange(L)[None, :] < olen[:, None]
    ok &= ~((opt != 0) & after & inside).any(axis=1)
    if recs:
        row, pos_, kind, length = (np.concatenate(x) for x in zip(*recs))
        order = np.lexsort((pos_, row))
        row, pos_, kind, length = row[order], pos_[order], kind[order], length[order]
    else:
        row = pos_ = kind = length = np.zeros(0, np.int64)
    return OptionTable(row, pos_, kind, length, ok, end, fixed, opt)


def first_of_kind(t: OptionTable) -> np.ndarray:
    """Per record: it is the first record of its kind in its packet."""
    if len(t.row) == 0:
        return np.zeros(0, bool)
    key = t.row * 256 + t.kind
    _, first = np.unique(key, return_index=True)
    out = np.zeros(len(key), bool)
    out[first] = True
    return out


def rebuild(opt: np.ndarray, t: OptionTable, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild option areas from the records in ``keep``.

    Kept records are laid out back to back in their original order, without
    NOPs, and the area is padded with EOL (zero) bytes to a multiple of 4.
    (Filling dropped records with NOPs instead would leave runs of NOPs,
    which Wireshark flags as "4 NOP in a row".)

    Returns:
        ``(bytes, olen)``: ``(k, L)`` new option bytes (zero past ``olen``), new lengths.
    """
    k, L = opt.shape
    new = np.zeros_like(opt)
    end = np.zeros(k, np.int64)
    if keep.any():
        row, pos, ln = t.row[keep], t.pos[keep], t.length[keep]
        cs = np.cumsum(ln)
        ex = cs - ln
        first = np.ones(len(row), bool)
        first[1:] = row[1:] != row[:-1]
        start_ex = np.maximum.accumulate(np.where(first, ex, 0))
        newpos = ex - start_ex
        r = np.repeat(row, ln)
        j = _ranges(ln)
        new[r, np.repeat(newpos, ln) + j] = opt[r, np.repeat(pos, ln) + j]
        np.maximum.at(end, row, newpos + ln)
    olen = (end + 3) // 4 * 4
    return new, olen
