"""What a packet record read from a capture may hold, and the error for one that does not.

One policy for both file formats (docs/layout.md, "Reading captures"): a
record or block with a field out of range ends the read with one line naming
the file, the record and its byte offset, the field and its value, and how
many packets were read before it. Out-of-range bytes mean the file is not
what its writer wrote; a wrong length would shift every later record, so
reading on would turn corruption into silently wrong packets.
"""

from __future__ import annotations

from engine.errors import InputError

# A captured frame longer than this is a corrupt length, not a packet: the
# largest snap length any capture tool uses is 256 KiB.
MAX_RECORD = 1 << 18
# Original (on-the-wire) length: GSO/GRO and BIG TCP aggregates reach 512 KiB;
# 16 MiB leaves room for any link while keeping lengths far inside int32.
MAX_WIRE = 1 << 24
# Timestamps from 1970 up to what a classic pcap can hold (32-bit seconds, the
# year 2106), so every packet read can be written back by export and decode.
TS_LIMIT_NS = (1 << 32) * 1_000_000_000
# pcapng blocks: larger than any packet record plus generous options.
MAX_BLOCK = 1 << 26
CHUNK = 8 << 20


def corrupt(path: str, what: str, at: int, problem: str, packets_read: int) -> InputError:
    """The one-line error for a record or block with a field out of range."""
    return InputError(path, f"corrupt {what} at byte {at}: {problem} ({packets_read} packets read)")


def record_problem(caplen: int, wirelen: int, ts_ns: int) -> str | None:
    """Why a record's lengths or time are impossible, or None when they are fine."""
    if caplen > MAX_RECORD:
        return f"captured length {caplen} is impossible (more than {MAX_RECORD})"
    if wirelen < caplen:
        return f"original length {wirelen} is less than the captured length {caplen}"
    if wirelen > MAX_WIRE:
        return f"original length {wirelen} is impossible (more than {MAX_WIRE})"
    if not 0 <= ts_ns < TS_LIMIT_NS:
        return f"timestamp {ts_ns} ns is out of range (1970 to 2106)"
    return None
