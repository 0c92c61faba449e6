"""Recipes: TOML files that describe one class's generation job.

A recipe is parsed and validated into a :class:`~engine.datasets.request.GenerationRequest`
(:func:`recipe_to_request`); the generator needs nothing else. Every problem is
an :class:`~engine.errors.InputError` naming the file, the key and what is
wrong, e.g. ``zoom.toml: key 'traffic.mtu': must be between 576 and 9216, got 100``.

File layout (every key but ``label`` is optional; see ``docs/recipes.md``)::

    name = "zoom"                       # defaults to the file name
    label = "zoom"                      # class the model is conditioned on
    description = "..."
    model = "default"                   # or a local directory, or hf://org/name@<40-hex commit>
    prompt = ""                         # text-conditioned models only
    count = 20                          # flows
    seed = 0

    [traffic]
    transport = "udp"                   # tcp | udp | icmp | any
    service_ports = [8801, "3478-3481"] # responder (server) side; ranges allowed
    client_ports = "49152-65535"        # initiator's ephemeral range
    packets = [2, 256]                  # packets per flow, min and max
    mtu = 1500                          # largest IPv4 total length
    start = 2024-01-01T00:00:00Z        # RFC 3339, with a time zone
    flows_per_s = 2.0                   # mean (Poisson) flow arrival rate

    [addresses]
    client = ["10.0.0.0/16"]
    server = ["198.51.100.0/24"]

    [sampling]
    steps = 50
    guidance = 1.5

    [repair]
    disable = []                        # repair rules switched off, by name
    allow_fragments = false

User recipes live in ``platformdirs.user_config_dir("netdiff")/recipes/``;
presets ship with the package (``presets/*.toml``).
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import ipaddress
import json
import os
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from engine.errors import InputError
from engine.datasets.request import GenerationRequest

# The classes of the real training data (and of the default model).
KNOWN_CLASSES = (
    "amazon", "bittorrent", "dns", "facebook", "google_meet", "http", "icmp", "instagram",
    "microsoft_teams", "netflix", "ntp", "quic", "rtp_voip_sip", "smtp_imap", "ssh", "tls_https",
    "tor", "twitch", "youtube", "zoom",
)
TRANSPORTS = ("tcp", "udp", "icmp", "any")
MTU_RANGE = (576, 9216)          # RFC 791 minimum datagram every host accepts .. jumbo frames
MAX_PACKETS = 1024               # the model's (and the paper's) flow length
MAX_COUNT = 1_000_000
MAX_SEED = 2**63 - 1
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
RULE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
HF_RE = re.compile(r"^hf://([A-Za-z0-9][A-Za-z0-9_.-]*)/([A-Za-z0-9][A-Za-z0-9_.-]*)(?:@(.*))?$")
HEX40 = re.compile(r"^[0-9a-f]{40}$")
RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
                     r"([Zz]|[+-]\d{2}:\d{2})$")

# key -> (section, allowed keys). Top-level scalars have section "".
SCHEMA = {
    "": ("name", "label", "description", "model", "prompt", "count", "seed"),
    "traffic": ("transport", "service_ports", "client_ports", "packets", "mtu", "start", "flows_per_s"),
    "addresses": ("client", "server"),
    "sampling": ("steps", "guidance", "like", "like_split", "strength", "like_values"),
    "repair": ("disable", "allow_fragments"),
}
SECTIONS = tuple(s for s in SCHEMA if s)


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: its request plus what is not part of the request."""

    name: str
    request: GenerationRequest
    description: str = ""
    path: str | None = None
    source: str = ""          # "user", "preset" or "file"

    @property
    def sha256(self) -> str:
        return recipe_hash(self.request)


# -- small validators ------------------------------------------------------------------

class _V:
    """Validation context: raises InputError(path, "key 'k': ...")."""

    def __init__(self, path):
        self.path = path

    def fail(self, key: str, problem: str):
        raise InputError(self.path, f"key '{key}': {problem}")

    @staticmethod
    def tname(v) -> str:
        if isinstance(v, bool):
            return "a boolean"
        if isinstance(v, int):
            return "an integer"
        if isinstance(v, float):
            return "a number"
        if isinstance(v, str):
            return "a string"
        if isinstance(v, list):
            return "a list"
        if isinstance(v, dict):
            return "a table"
        if isinstance(v, (dt.datetime, dt.date, dt.time)):
            return "a date/time"
        return type(v).__name__

    def int_(self, key, v, lo, hi):
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(key, f"expected an integer, got {self.tname(v)} {v!r}")
        if not lo <= v <= hi:
            self.fail(key, f"must be between {lo} and {hi}, got {v}")
        return v

    def num(self, key, v, lo, hi, lo_open=False):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail(key, f"expected a number, got {self.tname(v)} {v!r}")
        v = float(v)
        if v != v or v in (float("inf"), float("-inf")):
            self.fail(key, f"must be a finite number, got {v}")
        if (v <= lo if lo_open else v < lo) or v > hi:
            self.fail(key, f"must be {'>' if lo_open else '>='} {lo:g} and <= {hi:g}, got {v:g}")
        return v

    def str_(self, key, v):
        if not isinstance(v, str):
            self.fail(key, f"expected a string, got {self.tname(v)} {v!r}")
        return v

    def bool_(self, key, v):
        if not isinstance(v, bool):
            self.fail(key, f"expected true or false, got {self.tname(v)} {v!r}")
        return v

    def list_(self, key, v, allow_scalar=False):
        if isinstance(v, list):
            return v
        if allow_scalar and isinstance(v, (str, int)) and not isinstance(v, bool):
            return [v]
        self.fail(key, f"expected a list, got {self.tname(v)} {v!r}")


def _port_range(v: _V, key: str, item, what: str) -> tuple[int, int]:
    """One port or range: 443, "443", "3478-3481", [3478, 3481]."""
    if isinstance(item, bool):
        v.fail(key, f"expected a {what} (1-65535) or a range like \"3478-3481\", got a boolean")
    if isinstance(item, int):
        lo = hi = item
    elif isinstance(item, str):
        m = re.fullmatch(r"\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?", item)
        if not m:
            v.fail(key, f"{item!r} is not a {what} or a range like \"3478-3481\"")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
    elif isinstance(item, list) and len(item) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in item):
        lo, hi = item
    else:
        v.fail(key, f"expected a {what} (1-65535) or a range like \"3478-3481\", got {v.tname(item)} {item!r}")
    for p in (lo, hi):
        if not 1 <= p <= 65535:
            v.fail(key, f"port {p} is out of range (ports are 1-65535)")
    if lo > hi:
        v.fail(key, f"range {lo}-{hi} is backwards (low end first)")
    return lo, hi


def _cidrs(v: _V, key: str, raw) -> tuple[str, ...]:
    items = v.list_(key, raw, allow_scalar=True)
    if not items:
        v.fail(key, "needs at least one IPv4 CIDR, e.g. \"10.0.0.0/16\"")
    out = []
    for it in items:
        if not isinstance(it, str):
            v.fail(key, f"expected CIDR strings like \"10.0.0.0/16\", got {v.tname(it)} {it!r}")
        try:
            net = ipaddress.ip_network(it.strip(), strict=False)
        except ValueError:
            v.fail(key, f"{it!r} is not an IPv4 network in CIDR notation (like \"10.0.0.0/16\")")
        if net.version != 4:
            v.fail(key, f"{it!r} is IPv6; only IPv4 pools are supported (the codec writes IPv4)")
        strict = ipaddress.ip_network(f"{net.network_address}/{net.prefixlen}")
        if "/" in it and ipaddress.ip_interface(it.strip()).ip != net.network_address:
            v.fail(key, f"{it!r} has host bits set (did you mean \"{strict}\"?)")
        for block, why in (("224.0.0.0/4", "multicast (224.0.0.0/4)"), ("240.0.0.0/4", "reserved (240.0.0.0/4)"),
                           ("127.0.0.0/8", "loopback (127.0.0.0/8)"), ("169.254.0.0/16", "link-local (169.254.0.0/16)"),
                           ("0.0.0.0/8", "'this network' (0.0.0.0/8)")):
            if net.overlaps(ipaddress.ip_network(block)):
                v.fail(key, f"{it!r} overlaps {why}; hosts there cannot hold a unicast flow")
        out.append(str(net))
    return tuple(out)


def _parse_time(v: _V, key: str, raw) -> int:
    """RFC 3339 (TOML offset date-time or string) -> ns since the epoch."""
    if isinstance(raw, dt.datetime):
        if raw.tzinfo is None:
            v.fail(key, f"{raw.isoformat()} has no time zone; RFC 3339 needs one (add Z for UTC)")
        d = raw.astimezone(dt.timezone.utc)
        delta = d - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
        return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    if isinstance(raw, (dt.date, dt.time)):
        v.fail(key, f"{raw.isoformat()} is not a full date and time; use RFC 3339 like 2024-01-01T00:00:00Z")
    if isinstance(raw, str):
        m = RFC3339.match(raw.strip())
        if not m:
            v.fail(key, f"{raw!r} is not an RFC 3339 time like \"2024-01-01T00:00:00Z\" (a time zone is required)")
        y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
        frac = (m.group(7) or "").ljust(9, "0")
        tz = m.group(8)
        try:
            base = dt.datetime(y, mo, d, h, mi, min(s, 59), tzinfo=dt.timezone.utc)
        except ValueError as e:
            v.fail(key, f"{raw!r}: {e}")
        off = 0 if tz in ("Z", "z") else (1 if tz[0] == "+" else -1) * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
        secs = int((base - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).total_seconds()) - off
        return secs * 1_000_000_000 + int(frac)
    v.fail(key, f"expected an RFC 3339 date-time like 2024-01-01T00:00:00Z, got {v.tname(raw)} {raw!r}")


def format_time(ns: int) -> str:
    """ns since the epoch -> RFC 3339 UTC string (nanoseconds kept when present)."""
    s, frac = divmod(int(ns), 1_000_000_000)
    t = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=s)
    out = t.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        out += "." + f"{frac:09d}".rstrip("0")
    return out + "Z"


def _model(v: _V, key: str, raw, base: Path | None) -> str | None:
    m = v.str_(key, raw).strip()
    if m in ("", "default"):
        return None
    if m.startswith("hf://"):
        g = HF_RE.match(m)
        if not g:
            v.fail(key, f"{m!r} is not hf://org/name@<40-hex commit>")
        rev = g.group(3)
        if rev is None:
            v.fail(key, f"{m!r} is not pinned: add @<40-hex commit>, e.g. hf://{g.group(1)}/{g.group(2)}@"
                        f"{'0' * 40} (a branch or tag can change under you)")
        if not HEX40.match(rev):
            v.fail(key, f"{m!r}: revision {rev!r} is not a 40-hex commit id (branches and tags are not "
                        f"reproducible; use the full commit hash)")
        return m
    if "://" in m or re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", m):
        v.fail(key, f"{m!r}: unknown scheme; use \"default\", a local directory or hf://org/name@<commit>")
    p = Path(os.path.expanduser(m))
    if not p.is_absolute() and base is not None:
        p = base / p
    if p.exists() and not p.is_dir():
        v.fail(key, f"{m!r} is a file; a local model is a checkpoint directory")
    return str(p)


def _path(v: _V, key: str, raw, base: Path | None) -> str:
    """A file or directory a recipe names; relative paths are relative to the recipe file."""
    p = Path(os.path.expanduser(v.str_(key, raw).strip()))
    if not str(p) or str(p) == ".":
        v.fail(key, "expected a path")
    if not p.is_absolute() and base is not None:
        p = base / p
    return str(p)


def _check_keys(v: _V, data: dict) -> None:
    for k, val in data.items():
        if k in SECTIONS:
            if not isinstance(val, dict):
                v.fail(k, f"expected a [{k}] table, got {v.tname(val)} {val!r}")
            for sk in val:
                if sk not in SCHEMA[k]:
                    hint = difflib.get_close_matches(sk, SCHEMA[k], 1)
                    other = [s for s in SECTIONS if sk in SCHEMA[s]] + (["top level"] if sk in SCHEMA[""] else [])
                    msg = f"unknown key in [{k}]"
                    if hint:
                        msg += f" (did you mean '{k}.{hint[0]}'?)"
                    elif other:
                        msg += f" (it belongs in {'[' + other[0] + ']' if other[0] != 'top level' else 'the top level'})"
                    else:
                        msg += f"; known: {', '.join(SCHEMA[k])}"
                    v.fail(f"{k}.{sk}", msg)
        elif k not in SCHEMA[""]:
            allk = list(SCHEMA[""]) + list(SECTIONS)
            where = [s for s in SECTIONS if k in SCHEMA[s]]
            if where:
                v.fail(k, f"unknown top-level key (it belongs in the [{where[0]}] table)")
            hint = difflib.get_close_matches(k, allk, 1)
            v.fail(k, "unknown key" + (f" (did you mean '{hint[0]}'?)" if hint else f"; known: {', '.join(allk)}"))


def model_classes(model: str | None) -> tuple[str, ...] | None:
    """Class list of a checkpoint from its ``config.json``, without loading weights (else None)."""
    d = Path(__file__).resolve().parents[1] / "default_model" if model is None else Path(model)
    try:
        c = json.loads((d / "config.json").read_text()).get("classes")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(c, list) and c and all(isinstance(x, str) for x in c):
        return tuple(c)
    return None


def known_repair_rules() -> tuple[str, ...] | None:
    """Names of the repair rules, when the repair engine is installed."""
    try:
        from engine.repair import RULE_NAMES
    except ImportError:
        return None
    return tuple(RULE_NAMES)


def parse_recipe(data: dict, path: str | os.PathLike | None = None, source: str = "file",
                 check_label: bool = True) -> Recipe:
    """Validate a recipe's TOML table; raises InputError naming the file and key."""
    v = _V(path)
    if not isinstance(data, dict):
        raise InputError(path, "a recipe is a TOML table")
    _check_keys(v, data)
    base = Path(path).resolve().parent if path else None
    t, a, s, r = (data.get(k, {}) for k in ("traffic", "addresses", "sampling", "repair"))
    d = GenerationRequest(label="x")

    stem = Path(path).stem if path else ""
    name = v.str_("name", data.get("name", stem or "recipe"))
    if not NAME_RE.match(name):
        v.fail("name", f"{name!r} must be 1-64 lowercase letters, digits, '_', '-' or '.', starting with a letter or digit")
    if "label" not in data:
        v.fail("label", "missing; every recipe names the class to generate, e.g. label = \"zoom\"")
    label = v.str_("label", data["label"])
    if not LABEL_RE.match(label):
        v.fail("label", f"{label!r} must be a class name: lowercase letters, digits and '_'")
    description = v.str_("description", data.get("description", ""))
    model = _model(v, "model", data.get("model", "default"), base)
    if check_label:
        classes = model_classes(model) or (KNOWN_CLASSES if model is None else None)
        if classes is not None and label not in classes:
            hint = difflib.get_close_matches(label, classes, 1)
            v.fail("label", f"{label!r} is not a class of the {'default ' if model is None else ''}model"
                            + (f" (did you mean {hint[0]!r}?)" if hint else f"; classes: {', '.join(classes)}"))
    prompt = v.str_("prompt", data.get("prompt", d.prompt))
    count = v.int_("count", data.get("count", d.count), 1, MAX_COUNT)
    seed = v.int_("seed", data.get("seed", d.seed), 0, MAX_SEED)

    transport = v.str_("traffic.transport", t.get("transport", d.transport)).lower()
    if transport not in TRANSPORTS:
        hint = difflib.get_close_matches(transport, TRANSPORTS, 1)
        v.fail("traffic.transport", f"{transport!r} is not one of {', '.join(TRANSPORTS)}"
                                    + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    sp = set()
    for it in v.list_("traffic.service_ports", t.get("service_ports", []), allow_scalar=True):
        lo, hi = _port_range(v, "traffic.service_ports", it, "port")
        sp.update(range(lo, hi + 1))
    server_ports = tuple(sorted(sp))
    if transport == "icmp" and server_ports:
        v.fail("traffic.service_ports", "ICMP has no ports; leave service_ports empty for transport = \"icmp\"")
    cpr = t.get("client_ports", f"{d.client_port_range[0]}-{d.client_port_range[1]}")
    client = _port_range(v, "traffic.client_ports", cpr, "port range")
    clash = [p for p in server_ports if client[0] <= p <= client[1]]
    if clash:
        v.fail("traffic.client_ports", f"range {client[0]}-{client[1]} contains service port {clash[0]}; "
                                       f"a parser would read such a flow backwards")
    pk = t.get("packets", [d.packets_min, d.packets_max])
    if isinstance(pk, bool) or not (isinstance(pk, int) or (isinstance(pk, list) and len(pk) == 2)):
        v.fail("traffic.packets", f"expected [min, max] packets per flow (or one number), got {v.tname(pk)} {pk!r}")
    pmin, pmax = (pk, pk) if isinstance(pk, int) else pk
    pmin = v.int_("traffic.packets", pmin, 1, MAX_PACKETS)
    pmax = v.int_("traffic.packets", pmax, 1, MAX_PACKETS)
    if pmin > pmax:
        v.fail("traffic.packets", f"min {pmin} is larger than max {pmax}")
    if transport == "tcp" and pmax < 3:
        v.fail("traffic.packets", f"max {pmax} is too short for TCP (a handshake alone is 3 packets)")
    mtu = v.int_("traffic.mtu", t.get("mtu", d.mtu), *MTU_RANGE)
    start_ns = _parse_time(v, "traffic.start", t["start"]) if "start" in t else d.start_ns
    if not 0 <= start_ns < 2**32 * 1_000_000_000:
        v.fail("traffic.start", "must be between 1970-01-01 and 2106-02-07 (classic pcap holds 32-bit seconds)")
    rate = v.num("traffic.flows_per_s", t.get("flows_per_s", d.flows_per_s), 0.0, 1e6, lo_open=True)

    client_cidrs = _cidrs(v, "addresses.client", a.get("client", list(d.client_cidrs)))
    server_cidrs = _cidrs(v, "addresses.server", a.get("server", list(d.server_cidrs)))

    steps = s.get("steps")
    steps = None if steps is None else v.int_("sampling.steps", steps, 1, 1000)
    guidance = s.get("guidance")
    guidance = None if guidance is None else v.num("sampling.guidance", guidance, 0.0, 50.0)
    like = _path(v, "sampling.like", s["like"], base) if "like" in s else None
    like_split = _path(v, "sampling.like_split", s["like_split"], base) if "like_split" in s else None
    if like_split and not like:
        v.fail("sampling.like_split", "needs sampling.like (the guide flows it splits)")
    strength = v.num("sampling.strength", s.get("strength", d.strength), 0.0, 1.0, lo_open=True)
    like_values = v.num("sampling.like_values", s.get("like_values", d.like_values), 0.0, 1000.0)

    rules = []
    known = known_repair_rules()
    for it in v.list_("repair.disable", r.get("disable", []), allow_scalar=True):
        if not isinstance(it, str) or not RULE_RE.match(it):
            v.fail("repair.disable", f"expected rule names (strings), got {v.tname(it)} {it!r}")
        if known is not None and it not in known:
            hint = difflib.get_close_matches(it, known, 1)
            v.fail("repair.disable", f"no repair rule named {it!r}"
                                     + (f" (did you mean {hint[0]!r}?)" if hint else f"; rules: {', '.join(known)}"))
        if it not in rules:
            rules.append(it)
    allow_frag = v.bool_("repair.allow_fragments", r.get("allow_fragments", False))

    req = GenerationRequest(
        label=label, count=count, model=model, prompt=prompt, packets_min=pmin, packets_max=pmax,
        transport=transport, server_ports=server_ports, client_port_range=client,
        client_cidrs=client_cidrs, server_cidrs=server_cidrs, mtu=mtu, start_ns=start_ns,
        flows_per_s=rate, seed=seed, steps=steps, guidance=guidance, like=like, like_split=like_split,
        strength=strength, like_values=like_values, disabled_rules=tuple(rules),
        allow_fragments=allow_frag, extra={"recipe": name},
    )
    req.extra["recipe_sha256"] = recipe_hash(req)
    return Recipe(name, req, description, None if path is None else os.fspath(path), source)


def recipe_to_request(recipe: "Recipe | dict | str | os.PathLike") -> GenerationRequest:
    """A recipe (parsed, a TOML table, or a file) -> its GenerationRequest."""
    if isinstance(recipe, Recipe):
        return recipe.request
    if isinstance(recipe, dict):
        return parse_recipe(recipe).request
    return load_recipe(recipe).request


def request_to_recipe(req: GenerationRequest, name: str | None = None, description: str = "") -> dict:
    """The inverse of :func:`recipe_to_request`: a TOML-ready table."""
    d: dict = {"name": name or req.extra.get("recipe") or req.label, "label": req.label}
    if description:
        d["description"] = description
    d.update({"model": req.model or "default", "prompt": req.prompt, "count": req.count, "seed": req.seed})
    d["traffic"] = {
        "transport": req.transport,
        "service_ports": compress_ports(req.server_ports),
        "client_ports": f"{req.client_port_range[0]}-{req.client_port_range[1]}",
        "packets": [req.packets_min, req.packets_max],
        "mtu": req.mtu,
        "start": format_time(req.start_ns),
        "flows_per_s": req.flows_per_s,
    }
    d["addresses"] = {"client": list(req.client_cidrs), "server": list(req.server_cidrs)}
    smp = {k: getattr(req, k) for k in ("steps", "guidance", "like", "like_split") if getattr(req, k) is not None}
    if req.like:
        smp["strength"] = req.strength
        smp["like_values"] = req.like_values
    if smp:
        d["sampling"] = smp
    d["repair"] = {"disable": list(req.disabled_rules), "allow_fragments": req.allow_fragments}
    return d


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


def recipe_hash(req: GenerationRequest) -> str:
    """sha256 of the request's canonical JSON (comments and formatting do not count)."""
    d = {f.name: getattr(req, f.name) for f in fields(req) if f.name != "extra"}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=list).encode()).hexdigest()


_ARRAY = re.compile(r'= \[\n((?:    (?:"[^"\n]*"|[-+0-9.eE]+|true|false),\n)+)\]')


def dumps(table: dict, header: str = "") -> str:
    """TOML text (tomli-w), with short arrays of scalars kept on one line."""
    import tomli_w
    body = tomli_w.dumps(table)
    body = _ARRAY.sub(lambda m: "= [" + ", ".join(x.strip().rstrip(",") for x in m.group(1).splitlines()) + "]", body)
    return (header.rstrip("\n") + "\n\n" if header else "") + body


# -- files and lookup ------------------------------------------------------------------

def read_toml(path: str | os.PathLike) -> dict:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise InputError(p, "no such recipe file") from None
    except IsADirectoryError:
        raise InputError(p, "is a directory, not a recipe file") from None
    except OSError as e:
        raise InputError(p, f"cannot read: {e.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(p, "not UTF-8 text (a recipe is a TOML file)") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(p, f"TOML syntax error: {e}") from None


def load_recipe(path: str | os.PathLike, source: str = "file") -> Recipe:
    return parse_recipe(read_toml(path), path, source)


def user_dir() -> Path:
    """Where user recipes live: ``user_config_dir("netdiff")/recipes``."""
    import platformdirs
    return Path(platformdirs.user_config_dir("netdiff")) / "recipes"


def presets_dir() -> Path:
    """Shipped presets: ``presets/`` next to the engine package (checkout or installed data)."""
    here = Path(__file__).resolve().parents[1]
    for cand in (here.parent / "presets", here / "presets"):
        if cand.is_dir():
            return cand
    try:
        from importlib.resources import files
        p = Path(str(files("presets")))
        if p.is_dir():
            return p
    except (ImportError, TypeError, ModuleNotFoundError):
        pass
    return here.parent / "presets"


def preset_names() -> list[str]:
    d = presets_dir()
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


def user_names() -> list[str]:
    d = user_dir()
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


def find(name_or_file: str | os.PathLike, recipes_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Resolve a recipe: an existing file, else ``recipes_dir``, user recipes, presets (in that order)."""
    s = os.fspath(name_or_file)
    p = Path(os.path.expanduser(s))
    if p.is_file() or s.endswith(".toml") or os.sep in s or "/" in s:
        if not p.exists():
            raise InputError(p, "no such recipe file")
        return p, "file"
    if not NAME_RE.match(s):
        raise InputError(None, f"{s!r} is neither a recipe file nor a recipe name")
    dirs = ([(Path(recipes_dir), "dir")] if recipes_dir else []) + [(user_dir(), "user"), (presets_dir(), "preset")]
    for d, src in dirs:
        f = d / f"{s}.toml"
        if f.is_file():
            return f, src
    known = sorted(set(user_names()) | set(preset_names()))
    hint = difflib.get_close_matches(s, known, 1)
    raise InputError(None, f"no recipe or preset named {s!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                     + f"; see `netdiff recipes list` (user recipes: {user_dir()})")


def resolve(name_or_file: str | os.PathLike, recipes_dir: str | os.PathLike | None = None) -> Recipe:
    path, src = find(name_or_file, recipes_dir)
    return load_recipe(path, src)


def load_preset(name: str) -> Recipe:
    f = presets_dir() / f"{name}.toml"
    if not f.is_file():
        hint = difflib.get_close_matches(name, preset_names(), 1)
        raise InputError(None, f"no preset named {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else
                                                              f"; presets: {', '.join(preset_names())}"))
    return load_recipe(f, "preset")


def recipes_for_label(label: str, recipes_dir: str | os.PathLike | None = None) -> Recipe | None:
    """First recipe whose label matches: ``recipes_dir``, then user recipes, then presets (sorted by name).

    A recipe named like the label wins over others in the same place.
    """
    for d, src in ([(Path(recipes_dir), "dir")] if recipes_dir else []) + [(user_dir(), "user"), (presets_dir(), "preset")]:
        if not d.is_dir():
            continue
        files = sorted(d.glob("*.toml"), key=lambda p: (p.stem != label, p.stem))
        for f in files:
            try:
                data = read_toml(f)
            except InputError:
                continue
            if data.get("label") == label:
                return load_recipe(f, src)
    return None


def template(name: str, label: str = "tls_https") -> str:
    """A commented new recipe built from the request defaults."""
    req = GenerationRequest(label=label)
    t = request_to_recipe(req, name)
    head = (f"# netdiff recipe {name!r}: one class's generation job (see docs/recipes.md).\n"
            "# Every key but 'label' is optional; `netdiff recipes validate " + name + "` checks it.")
    return dumps(t, head)


def with_name(text: str, name: str) -> str:
    """Recipe text with its top-level ``name = ...`` replaced (comments kept)."""
    line = f'name = "{name}"'
    new, n = re.subn(r'(?m)^name\s*=\s*"[^"\n]*"[ \t]*$', line, text, count=1)
    if n:
        return new
    # insert after the leading comment block
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines) and (lines[i].startswith("#") or not lines[i].strip()):
        i += 1
    return "".join(lines[:i]) + line + "\n" + "".join(lines[i:])


def summary(rc: Recipe) -> list[tuple[str, str]]:
    """Key facts of a recipe for `show` / `validate`."""
    q = rc.request
    return [
        ("name", rc.name), ("label", q.label), ("source", f"{rc.source}: {rc.path}"),
        ("model", q.model or "default"), ("count", str(q.count)), ("seed", str(q.seed)),
        ("transport", q.transport), ("service ports", ", ".join(map(str, compress_ports(q.server_ports))) or "model's"),
        ("client ports", f"{q.client_port_range[0]}-{q.client_port_range[1]}"),
        ("packets per flow", f"{q.packets_min}-{q.packets_max}"), ("mtu", str(q.mtu)),
        ("start", format_time(q.start_ns)), ("flows per second", f"{q.flows_per_s:g}"),
        ("client addresses", ", ".join(q.client_cidrs)), ("server addresses", ", ".join(q.server_cidrs)),
        ("sampling", f"steps={q.steps or 'default'} guidance={q.guidance if q.guidance is not None else 'default'}"
                     + (f" like={q.like} strength={q.strength:g} like_values={q.like_values:g}" + (f" split={q.like_split}" if q.like_split else "")
                        if q.like else "")),
        ("repair", f"disabled={', '.join(q.disabled_rules) or 'none'} allow_fragments={str(q.allow_fragments).lower()}"),
        ("recipe sha256", rc.sha256),
    ]
