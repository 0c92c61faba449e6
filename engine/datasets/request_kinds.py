"""The kinds of value a generation request holds: one class per value type, with its range or
choices and its three forms (request value, recipe TOML value, typed text), and the one-line
errors they raise. :mod:`engine.datasets.request` declares the request's fields with them.
"""

from __future__ import annotations
import datetime as dt
import difflib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from engine.constants import MAX_FLOW_PACKETS

MAX_COUNT = 1_000_000            # flows of one request (one directory holds a file per flow)
MAX_SEED = 2**63 - 1             # numpy and torch seeds are 64-bit
MAX_PACKETS = MAX_FLOW_PACKETS   # the model's (and the paper's) flow length
MTU_RANGE = (576, 9216)          # RFC 791 minimum datagram every host accepts .. jumbo frames
TRANSPORTS = ("tcp", "udp", "icmp", "any")
LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
RULE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
                     r"([Zz]|[+-]\d{2}:\d{2})$")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
PCAP_END_NS = 2**32 * 1_000_000_000   # classic pcap holds 32-bit seconds


class Bad(ValueError):
    """A kind's one-line complaint about a value (without the field's name)."""


@dataclass(frozen=True)
class Ctx:
    """Where a value comes from: ``base`` resolves relative paths (a recipe's folder);
    ``check_exists`` asks paths to exist (text typed here and now, not a recipe that may
    travel to another machine)."""

    base: Path | None = None
    check_exists: bool = False


def tname(v) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return "a date/time"
    return type(v).__name__


def string(raw) -> str:
    """``raw`` when it is a string; a recipe's TOML value can be of any type."""
    if not isinstance(raw, str):
        raise Bad(f"expected a string, got {tname(raw)} {raw!r}")
    return raw


def _split_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


# -- kinds: one value type each, with its checks and its three forms ------------------------------

class Kind:
    """A value type. ``parse`` takes a TOML value, ``from_text`` typed text (to a TOML value),
    ``to_raw`` gives the TOML value back (None: leave the key out); ``describe`` is the range or
    choices in words. ``bounded`` is False only for kinds that are free text or paths."""

    metavar = "TEXT"
    bounded = True
    none_raw = None           # the TOML value of None (None: no key)

    def parse(self, raw, ctx: Ctx):
        raise NotImplementedError

    def from_text(self, text: str):
        return text

    def to_raw(self, value):
        return value

    def to_text(self, value) -> str:
        raw = self.to_raw(value)
        if isinstance(raw, list):
            return ", ".join(map(str, raw))
        return "" if raw is None else str(raw)

    def describe(self) -> str:
        raise NotImplementedError

    @property
    def choices(self) -> tuple[str, ...] | None:
        return None


@dataclass(frozen=True)
class Int(Kind):
    lo: int
    hi: int
    why: str = ""             # the reason for the limits, told with a value beyond them
    metavar = "INTEGER"

    def parse(self, raw, ctx):
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise Bad(f"expected an integer, got {tname(raw)} {raw!r}")
        if not self.lo <= raw <= self.hi:
            raise Bad(f"must be between {self.lo} and {self.hi}, got {raw}" + (f" ({self.why})" if self.why else ""))
        return raw

    def from_text(self, text):
        try:
            return int(text.strip().replace("_", ""))
        except ValueError:
            raise Bad(f"{text!r} is not a whole number") from None

    def describe(self):
        return f"integer {self.lo}-{self.hi}"


@dataclass(frozen=True)
class Num(Kind):
    lo: float
    hi: float
    lo_open: bool = False
    metavar = "NUMBER"

    def parse(self, raw, ctx):
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise Bad(f"expected a number, got {tname(raw)} {raw!r}")
        v = float(raw)
        if v != v or v in (float("inf"), float("-inf")):
            raise Bad(f"must be a finite number, got {v}")
        if (v <= self.lo if self.lo_open else v < self.lo) or v > self.hi:
            raise Bad(f"must be {self._bounds()}, got {v:g}")
        return v

    def _bounds(self):
        return f"{'>' if self.lo_open else '>='} {self.lo:g} and <= {self.hi:g}"

    def from_text(self, text):
        try:
            return float(text.strip())
        except ValueError:
            raise Bad(f"{text!r} is not a number") from None

    def describe(self):
        return f"number {self._bounds()}"


@dataclass(frozen=True)
class Choice(Kind):
    options: tuple[str, ...]
    metavar = "CHOICE"

    def parse(self, raw, ctx):
        v = string(raw).strip().lower()
        if v not in self.options:
            hint = difflib.get_close_matches(v, self.options, 1)
            raise Bad(f"{v!r} is not one of {', '.join(self.options)}"
                      + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        return v

    def describe(self):
        return f"one of {', '.join(self.options)}"

    @property
    def choices(self):
        return self.options


@dataclass(frozen=True)
class Text(Kind):
    """A string; with ``pattern``, one that must match it (``rule`` says how in words)."""

    pattern: re.Pattern | None = None
    rule: str = ""

    @property
    def bounded(self):
        return self.pattern is not None

    def parse(self, raw, ctx):
        v = string(raw)
        v = v.strip() if self.pattern is not None else v
        if self.pattern is not None and not self.pattern.match(v):
            raise Bad(f"{v!r} must be {self.rule}")
        return v

    def describe(self):
        return self.rule or "free text"


@dataclass(frozen=True)
class Bool(Kind):
    metavar = "BOOLEAN"

    def parse(self, raw, ctx):
        if not isinstance(raw, bool):
            raise Bad(f"expected true or false, got {tname(raw)} {raw!r}")
        return raw

    def from_text(self, text):
        t = text.strip().lower()
        if t in ("true", "yes", "on", "1"):
            return True
        if t in ("false", "no", "off", "0"):
            return False
        raise Bad(f"{text!r} is not true or false")

    def to_text(self, value):
        return "true" if value else "false"

    def describe(self):
        return "true or false"

    @property
    def choices(self):
        return ("true", "false")


def _port_range(item, what: str) -> tuple[int, int]:
    """One port or range: 443, "443", "3478-3481", [3478, 3481]."""
    if isinstance(item, bool):
        raise Bad(f"expected a {what} (1-65535) or a range like \"3478-3481\", got a boolean")
    if isinstance(item, int):
        lo = hi = item
    elif isinstance(item, str):
        m = re.fullmatch(r"\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?", item)
        if not m:
            raise Bad(f"{item!r} is not a {what} or a range like \"3478-3481\"")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
    elif (isinstance(item, (list, tuple)) and len(item) == 2
          and all(isinstance(x, int) and not isinstance(x, bool) for x in item)):
        lo, hi = item
    else:
        raise Bad(f"expected a {what} (1-65535) or a range like \"3478-3481\", got {tname(item)} {item!r}")
    for p in (lo, hi):
        if not 1 <= p <= 65535:
            raise Bad(f"port {p} is out of range (ports are 1-65535)")
    if lo > hi:
        raise Bad(f"range {lo}-{hi} is backwards (low end first)")
    return lo, hi


def compress_ports(ports) -> list:
    """[3478, 3479, 3480, 443] -> [443, "3478-3480"]."""
    out, ps = [], sorted(set(ports))
    i = 0
    while i < len(ps):
        j = i
        while j + 1 < len(ps) and ps[j + 1] == ps[j] + 1:
            j += 1
        out.append(ps[i] if i == j else f"{ps[i]}-{ps[j]}")
        i = j + 1
    return out


class _List(Kind):
    """A TOML list (a scalar is a wrong type, not a list of one); text is comma-separated."""

    example = ""

    def items(self, raw) -> list:
        if not isinstance(raw, (list, tuple)):
            raise Bad(f"expected a list like {self.example}, got {tname(raw)} {raw!r}")
        return list(raw)

    def from_text(self, text):
        return _split_list(text)


@dataclass(frozen=True)
class Ports(_List):
    example = '[443, "3478-3481"]'
    metavar = "PORTS"

    def parse(self, raw, ctx):
        ps = set()
        for it in self.items(raw):
            lo, hi = _port_range(it, "port")
            ps.update(range(lo, hi + 1))
        return tuple(sorted(ps))

    def to_raw(self, value):
        return compress_ports(value)

    def describe(self):
        return "ports or ranges within 1-65535, e.g. 443, 3478-3481"


@dataclass(frozen=True)
class PortRange(Kind):
    metavar = "LO-HI"

    def parse(self, raw, ctx):
        return _port_range(raw, "port range")

    def to_raw(self, value):
        return f"{value[0]}-{value[1]}"

    def describe(self):
        return "a port range within 1-65535, e.g. 49152-65535"


_NOT_UNICAST = (("224.0.0.0/4", "multicast (224.0.0.0/4)"), ("240.0.0.0/4", "reserved (240.0.0.0/4)"),
                ("127.0.0.0/8", "loopback (127.0.0.0/8)"), ("169.254.0.0/16", "link-local (169.254.0.0/16)"),
                ("0.0.0.0/8", "'this network' (0.0.0.0/8)"))


@dataclass(frozen=True)
class Cidrs(_List):
    example = '["10.0.0.0/16"]'
    metavar = "CIDRS"

    def parse(self, raw, ctx):
        items = self.items(raw)
        if not items:
            raise Bad("needs at least one IPv4 CIDR, e.g. \"10.0.0.0/16\"")
        out = []
        for it in items:
            if not isinstance(it, str):
                raise Bad(f"expected CIDR strings like \"10.0.0.0/16\", got {tname(it)} {it!r}")
            try:
                net = ipaddress.ip_network(it.strip(), strict=False)
            except ValueError:
                raise Bad(f"{it!r} is not an IPv4 network in CIDR notation (like \"10.0.0.0/16\")") from None
            if net.version != 4:
                raise Bad(f"{it!r} is IPv6; only IPv4 pools are supported (the codec writes IPv4)")
            if "/" in it and ipaddress.ip_interface(it.strip()).ip != net.network_address:
                raise Bad(f"{it!r} has host bits set (did you mean \"{net}\"?)")
            for block, why in _NOT_UNICAST:
                if net.overlaps(ipaddress.ip_network(block)):
                    raise Bad(f"{it!r} overlaps {why}; hosts there cannot hold a unicast flow")
            out.append(str(net))
        return tuple(out)

    def to_raw(self, value):
        return list(value)

    def describe(self):
        return "IPv4 unicast networks in CIDR notation, e.g. 10.0.0.0/16"


def format_time(ns: int) -> str:
    """ns since the epoch -> RFC 3339 UTC string (nanoseconds kept when present)."""
    s, frac = divmod(int(ns), 1_000_000_000)
    out = (EPOCH + dt.timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        out += "." + f"{frac:09d}".rstrip("0")
    return out + "Z"


@dataclass(frozen=True)
class Time(Kind):
    """RFC 3339 date-time (a TOML offset date-time or a string) <-> ns since the epoch."""

    metavar = "RFC3339"

    def parse(self, raw, ctx):
        ns = self._ns(raw)
        if not 0 <= ns < PCAP_END_NS:
            raise Bad("must be between 1970-01-01 and 2106-02-07 (classic pcap holds 32-bit seconds)")
        return ns

    @staticmethod
    def _ns(raw) -> int:
        if isinstance(raw, dt.datetime):
            if raw.tzinfo is None:
                raise Bad(f"{raw.isoformat()} has no time zone; RFC 3339 needs one (add Z for UTC)")
            delta = raw.astimezone(dt.timezone.utc) - EPOCH
            return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
        if isinstance(raw, (dt.date, dt.time)):
            raise Bad(f"{raw.isoformat()} is not a full date and time; use RFC 3339 like 2024-01-01T00:00:00Z")
        if not isinstance(raw, str):
            raise Bad(f"expected an RFC 3339 date-time like 2024-01-01T00:00:00Z, got {tname(raw)} {raw!r}")
        m = RFC3339.match(raw.strip())
        if not m:
            raise Bad(f"{raw!r} is not an RFC 3339 time like \"2024-01-01T00:00:00Z\" (a time zone is required)")
        y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
        frac = (m.group(7) or "").ljust(9, "0")
        tz = m.group(8)
        try:
            base = dt.datetime(y, mo, d, h, mi, min(s, 59), tzinfo=dt.timezone.utc)
        except ValueError as e:
            raise Bad(f"{raw!r}: {e}") from None
        off = 0 if tz in ("Z", "z") else (1 if tz[0] == "+" else -1) * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
        secs = int((base - EPOCH).total_seconds()) - off
        return secs * 1_000_000_000 + int(frac)

    def to_raw(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            return value          # parse names the wrong type
        return format_time(value)

    def describe(self):
        return "RFC 3339 date-time with a zone, 1970-01-01 to 2106-02-07"


def known_repair_rules() -> tuple[str, ...] | None:
    """Names of the repair rules, when the repair engine is installed."""
    try:
        from engine.repair import RULE_NAMES
    except ImportError:
        return None
    return tuple(RULE_NAMES)


@dataclass(frozen=True)
class RuleNames(_List):
    example = '["ipv4_ttl"]'
    metavar = "RULES"

    def parse(self, raw, ctx):
        known = known_repair_rules()
        out = []
        for it in self.items(raw):
            if not isinstance(it, str) or not RULE_RE.match(it):
                raise Bad(f"expected rule names (strings), got {tname(it)} {it!r}")
            if known is not None and it not in known:
                hint = difflib.get_close_matches(it, known, 1)
                raise Bad(f"no repair rule named {it!r}"
                          + (f" (did you mean {hint[0]!r}?)" if hint else f"; rules: {', '.join(known)}"))
            if it not in out:
                out.append(it)
        return tuple(out)

    def to_raw(self, value):
        return list(value)

    def describe(self):
        return "repair rule names (netdiff check lists them)"

    @property
    def choices(self):
        return known_repair_rules()
