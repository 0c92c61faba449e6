"""The bit layout of one packet row, declared once.

Every other module (encoder, decoder, image, nprint CSV, repair rules,
reports) reads column positions from :data:`LAYOUT`; nothing else hard-codes
an offset.

A row holds, in order, the paper's 1088 base columns -- nprint's IPv4, IPv6,
TCP, UDP and ICMP headers with the address fields removed -- followed by the
columns the paper lacks: ``direction`` and ``iat`` (inter-arrival time). Each
cell is 1, 0, or -1 for "absent".

``header_offset`` is the field's bit offset inside its protocol header as it
sits on the wire, so bit ``k`` of a field is wire bit
``header_offset + k`` of the header, most significant bit first.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

LAYOUT_VERSION = "nd-1"

ABSENT = -1


@dataclass(frozen=True)
class Field:
    """One field of the layout table.

    Attributes:
        name: field name as nprint spells it (``ttl``, ``sprt``...).
        proto: block it belongs to: ``ipv4``, ``ipv6``, ``tcp``, ``udp``,
            ``icmp`` or ``meta`` (columns that are not header bits).
        header_offset: bit offset of the field inside its header on the wire
            (``None`` for meta columns).
        width: number of bits (= columns).
        in_image: whether the field is a column of the matrix. IP addresses
            are declared (so the nprint CSV and the decoder can place them)
            but are not columns: they come from a mapping or a recipe.
    """

    name: str
    proto: str
    header_offset: int | None
    width: int
    in_image: bool = True

    @property
    def qualname(self) -> str:
        return f"{self.proto}_{self.name}"


def _block(proto: str, spec: list[tuple[str, int]], skip: tuple[str, ...] = ()) -> list[Field]:
    fields, off = [], 0
    for name, width in spec:
        fields.append(Field(name, proto, off, width, in_image=name not in skip))
        off += width
    return fields


# nprint's field order and widths (see REFERENCE.md, "nprint column layout").
IPV4_FIELDS = _block(
    "ipv4",
    [("ver", 4), ("hl", 4), ("tos", 8), ("tl", 16), ("id", 16), ("rbit", 1), ("dfbit", 1),
     ("mfbit", 1), ("foff", 13), ("ttl", 8), ("proto", 8), ("cksum", 16), ("src", 32),
     ("dst", 32), ("opt", 320)],
    skip=("src", "dst"),
)
IPV6_FIELDS = _block(
    "ipv6",
    [("ver", 4), ("tc", 8), ("fl", 20), ("len", 16), ("nh", 8), ("hl", 8), ("src", 128), ("dst", 128)],
    skip=("src", "dst"),
)
TCP_FIELDS = _block(
    "tcp",
    [("sprt", 16), ("dprt", 16), ("seq", 32), ("ackn", 32), ("doff", 4), ("res", 3), ("ns", 1),
     ("cwr", 1), ("ece", 1), ("urg", 1), ("ackf", 1), ("psh", 1), ("rst", 1), ("syn", 1),
     ("fin", 1), ("wsize", 16), ("cksum", 16), ("urp", 16), ("opt", 320)],
)
UDP_FIELDS = _block("udp", [("sport", 16), ("dport", 16), ("len", 16), ("cksum", 16)])
ICMP_FIELDS = _block("icmp", [("type", 8), ("code", 8), ("cksum", 16), ("roh", 32)])

# Inter-arrival time: code q = round(log2(1 + gap_us) * IAT_SCALE) in IAT_BITS
# bits; decoding gives gap_us' = 2**(q / IAT_SCALE) - 1, a relative error of at
# most IAT_REL_ERROR = 2**(1 / (2 * IAT_SCALE)) - 1 = 0.0169 % of (1 + gap_us).
# The encoder measures each gap from the previous packet's *decoded* time, so
# errors do not add up along a flow: every decoded timestamp is within
# IAT_REL_ERROR * (1 + largest gap so far in the flow, in us) of the original
# (at most 20.3 ms with the default 120 s idle timeout; 1.7 us for gaps < 10 ms).
# The largest gap a code holds is 2**32 us (71.6 min).
IAT_BITS = 16
IAT_SCALE = 2048
IAT_REL_ERROR = 2 ** (1 / (2 * IAT_SCALE)) - 1

META_FIELDS = [
    # 1 = initiator -> responder, 0 = responder -> initiator, -1 = no packet.
    Field("direction", "meta", None, 1),
    Field("iat", "meta", None, IAT_BITS),
]

PROTO_BLOCKS = ("ipv4", "ipv6", "tcp", "udp", "icmp")
HEADER_BITS = {"ipv4": 480, "ipv6": 320, "tcp": 480, "udp": 64, "icmp": 64}


class Layout:
    """Column positions for every field of the table."""

    def __init__(self, fields: list[Field]):
        self.fields = fields
        self._by_name: dict[str, Field] = {f.qualname: f for f in fields}
        col = 0
        self._cols: dict[str, slice] = {}
        for f in fields:
            if f.in_image:
                self._cols[f.qualname] = slice(col, col + f.width)
                col += f.width
        self.width = col

    def field(self, qualname: str) -> Field:
        return self._by_name[qualname]

    def cols(self, qualname: str) -> slice:
        """Column slice of a field, e.g. ``cols("tcp_syn")``."""
        return self._cols[qualname]

    def block(self, proto: str) -> slice:
        """Contiguous column slice of one protocol block."""
        cs = [self._cols[f.qualname] for f in self.fields if f.proto == proto and f.in_image]
        return slice(cs[0].start, cs[-1].stop)

    def image_fields(self, proto: str | None = None) -> list[Field]:
        return [f for f in self.fields if f.in_image and (proto is None or f.proto == proto)]

    @cached_property
    def base_width(self) -> int:
        """The paper's columns (everything before the meta block): 1088."""
        return self.block("meta").start

    @cached_property
    def column_names(self) -> list[str]:
        names = []
        for f in self.fields:
            if f.in_image:
                names += [f"{f.qualname}_{i}" for i in range(f.width)] if f.width > 1 else [f.qualname]
        return names

    @cached_property
    def wire_map(self) -> dict[str, np.ndarray]:
        """Per protocol block: for each block column, its wire bit offset in the header."""
        out = {}
        for proto in PROTO_BLOCKS:
            offs = [np.arange(f.header_offset, f.header_offset + f.width) for f in self.image_fields(proto)]
            out[proto] = np.concatenate(offs)
        return out

    def describe(self) -> list[dict]:
        """The table as plain rows (for docs and reports)."""
        rows = []
        for f in self.fields:
            c = self._cols.get(f.qualname)
            rows.append({
                "field": f.qualname, "proto": f.proto, "header_bit": f.header_offset,
                "width": f.width, "columns": None if c is None else [c.start, c.stop - 1],
            })
        return rows


LAYOUT = Layout(IPV4_FIELDS + IPV6_FIELDS + TCP_FIELDS + UDP_FIELDS + ICMP_FIELDS + META_FIELDS)
# The direction column (1 = initiator to responder), used on its own by codec, model and repair.
COL_DIR = LAYOUT.cols("meta_direction").start

assert LAYOUT.base_width == 1088, LAYOUT.base_width


def bits_to_uint(bits: np.ndarray) -> np.ndarray:
    """Read fields from bit columns, MSB first; absent (-1) bits count as 0.

    Args:
        bits: ``(..., width)`` int8 array of {1, 0, -1}, width <= 64.
    Returns:
        ``(...)`` uint64 array.
    """
    w = bits.shape[-1]
    weights = (np.uint64(1) << np.arange(w - 1, -1, -1, dtype=np.uint64))
    return ((bits == 1).astype(np.uint64) * weights).sum(axis=-1, dtype=np.uint64)


def uint_to_bits(values: np.ndarray, width: int) -> np.ndarray:
    """Inverse of :func:`bits_to_uint`: ``(...)`` ints -> ``(..., width)`` int8 bits."""
    v = np.asarray(values, dtype=np.uint64)[..., None]
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    return ((v >> shifts) & np.uint64(1)).astype(np.int8)


def get(matrix: np.ndarray, qualname: str) -> np.ndarray:
    """Field values of every row of ``(n, LAYOUT.width)`` as uint64."""
    return bits_to_uint(matrix[..., LAYOUT.cols(qualname)])


def put(matrix: np.ndarray, qualname: str, values, rows: np.ndarray | None = None) -> None:
    """Write field values in place, into every row or the rows picked by ``rows``.

    ``values`` is a scalar or one value per selected row.
    """
    f = LAYOUT.field(qualname)
    bits = uint_to_bits(np.asarray(values), f.width)
    if rows is None:
        matrix[..., LAYOUT.cols(qualname)] = bits
    else:
        matrix[rows, LAYOUT.cols(qualname)] = bits
