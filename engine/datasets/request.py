"""What to generate for one class, declared once.

Every field of :class:`GenerationRequest` carries its kind (type with range or
choices), help text, unit and place in a recipe as ``dataclasses.field``
metadata (a :class:`Spec`, after scapy's ``fields_desc``); its default is the
dataclass default. Everything that builds or checks a request reads this
declaration and nothing else: recipes (TOML, :mod:`engine.datasets.recipes`),
the options of ``netdiff generate`` (``netdiff_tui/request_options.py``), the
console's Generate form (``netdiff_tui/screens/generate.py``) and
:func:`engine.datasets.generate.generate` (through :func:`validate`). Adding a
field is one edit here.

A value comes in three forms: the request's own (``start_ns=1700000000000000000``),
a recipe's TOML value (``start = "2023-11-14T22:13:20Z"``) and text typed on the
command line or in the form (``--start 2023-11-14T22:13:20Z``). A field's kind
converts text -> TOML value -> request value and back, and says in one line
what is wrong; each front end prefixes the field's name in its own vocabulary
(``key 'traffic.mtu'``, ``--mtu``, ``mtu``).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, Callable

from engine.datasets.request_kinds import (
    LABEL_RE, MAX_COUNT, MAX_PACKETS, MAX_SEED, MTU_RANGE, TRANSPORTS, Bad, Bool, Choice, Cidrs, Ctx, Int, Kind,
    Num, PortRange, Ports, RuleNames, Text, Time)
from engine.datasets.request_refs import ModelRef, PathRef


class Problem(ValueError):
    """What is wrong with one field. ``text`` may name other fields as ``{field}``
    (cross-field rules); :meth:`render` spells them in the caller's vocabulary."""

    def __init__(self, field_name: str, text: str, templated: bool = False):
        super().__init__(text)
        self.field, self.text, self.templated = field_name, text, templated

    def text_for(self, name_of: Callable[[str], str]) -> str:
        """The problem, with the fields it names spelled by ``name_of`` (field name -> key or option)."""
        if not self.templated:
            return self.text
        return self.text.format_map({f.name: name_of(f.name) for f in FIELDS})


# -- the declaration ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    """How a request field is typed, explained and spelled in each front end.

    Attributes:
        kind: the value type, with its range or choices.
        help: one sentence for --help, the form and docs.
        recipe: its recipe key (``"traffic.mtu"``; a top-level key has no dot).
        unit: what a number counts (``"flows"``, ``"bytes"``); "" when it is no quantity.
        part: two fields in one recipe key, ``[part 0, part 1]`` (or one value for both).
        cli: the option's declaration (``"--count/-n"`` or a boolean ``"--on/--off"``);
            default ``--field-name``.
        form: ``"main"`` (always shown), ``"more"`` (folded) in the console's Generate form.
        label: the form's label (default: the field name with spaces).
        placeholder: the form's hint when empty (default: the default value).
    """

    kind: Kind
    help: str
    recipe: str
    unit: str = ""
    part: int | None = None
    cli: str = ""
    form: str = "more"
    label: str = ""
    placeholder: str = ""


def _f(kind: Kind, help: str, recipe: str, default: Any = None, **kw):
    meta = {"spec": Spec(kind, help, recipe, **kw)}
    if default is _REQUIRED:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


_REQUIRED = object()


@dataclass(frozen=True)
class GenerationRequest:
    """One class's generation job: everything the generator reads (same request, same bytes).

    The ``spec`` metadata of each field declares its kind, help and recipe key; ``extra`` is
    no request value but provenance carried along (the recipe's name and hash).
    """

    label: str = _f(Text(LABEL_RE, "a class name: lowercase letters, digits and '_'"),
                    "Class to generate (one of the model's classes).", "label", _REQUIRED,
                    form="main", placeholder="class label, e.g. zoom (overrides the preset's)")
    model: str | None = _f(ModelRef("default"), "Checkpoint: \"default\" (the shipped model), a checkpoint or run "
                           "directory, or hf://org/name@<40-hex commit>.", "model", None,
                           form="main", placeholder="default (or a checkpoint directory)")
    prompt: str = _f(Text(), "Text prompt (text-conditioned models only; the native model ignores it).",
                     "prompt", "")
    count: int = _f(Int(1, MAX_COUNT, "one file per flow in one directory; make larger datasets as several runs "
                        "with different seeds and `netdiff export` them together"), "Number of flows.", "count", 10, unit="flows", cli="--count/-n",
                    form="main")
    seed: int = _f(Int(0, MAX_SEED), "Everything random derives from it: same request, same bytes.",
                   "seed", 0, form="main")
    transport: str = _f(Choice(TRANSPORTS), "Transport of every flow (any: whatever the model samples).",
                        "traffic.transport", "any")
    server_ports: tuple[int, ...] = _f(Ports(), "Responder (service) ports, one picked per flow; "
                                       "empty keeps the model's.", "traffic.service_ports", (),
                                       cli="--service-ports", label="service ports", placeholder="model's")
    client_port_range: tuple[int, int] = _f(PortRange(), "Initiator's ephemeral port range (may not hold a "
                                            "service port).", "traffic.client_ports", (49152, 65535),
                                            cli="--client-ports", label="client ports")
    packets_min: int = _f(Int(1, MAX_PACKETS), "Fewest packets per flow (flows are cut or redrawn to fit).",
                          "traffic.packets", 2, unit="packets per flow", part=0)
    packets_max: int = _f(Int(1, MAX_PACKETS), "Most packets per flow (the default: the model's flow length, "
                          "1024 for the shipped model).", "traffic.packets", MAX_PACKETS, unit="packets per flow",
                          part=1)
    mtu: int = _f(Int(*MTU_RANGE), "Largest IPv4 total length.", "traffic.mtu", 1500, unit="bytes")
    start_ns: int = _f(Time(), "Start of the first flow (RFC 3339 with a zone).", "traffic.start",
                       1_700_000_000_000_000_000, cli="--start", label="start")
    flows_per_s: float = _f(Num(0.0, 1e6, lo_open=True), "Mean (Poisson) flow arrival rate.",
                            "traffic.flows_per_s", 1.0, unit="flows per second")
    client_cidrs: tuple[str, ...] = _f(Cidrs(), "Initiator address pools (addresses never come from "
                                       "the model).", "addresses.client", ("10.0.0.0/16",),
                                       cli="--client-addresses", label="client addresses")
    server_cidrs: tuple[str, ...] = _f(Cidrs(), "Responder address pools.", "addresses.server",
                                       ("198.51.100.0/24",), cli="--server-addresses", label="server addresses")
    steps: int | None = _f(Int(1, 1000), "Sampling steps (default: the model's).", "sampling.steps", None,
                           placeholder="model's")
    guidance: float | None = _f(Num(0.0, 50.0), "Classifier-free guidance scale (1 = off; default: the "
                                "model's).", "sampling.guidance", None, placeholder="model's")
    candidates: int = _f(Int(1, 16), "Draw each flow this many times and keep the one the checkpoint's "
                         "critic finds most real-like (closer to real flows, that many times the sampling "
                         "time; unguided flows of classes the critic knows).", "sampling.candidates", 1)
    decodes: int = _f(Int(1, 32), "Decode each drawn flow this many times (flow profile, field values, option "
                      "lists) and let the checkpoint's critic keep one: cheap, the sample is taken once "
                      "(with candidates: candidates x decodes in all).", "sampling.decodes", 1)
    like: str | None = _f(PathRef(), "Start each flow from a real flow of the class: a capture, a directory "
                          "of the class's captures, a labeled capture directory or a netdiff encode dataset.",
                          "sampling.like", None, form="main", placeholder="(optional) real captures to start from")
    like_split: str | None = _f(PathRef(), "Split file whose test flows are never used as guides (with like).",
                                "sampling.like_split", None, placeholder="(optional) split.json")
    strength: float = _f(Num(0.0, 1.0, lo_open=True), "With like: how far each real flow is noised before "
                         "it is denoised; 1 keeps only its length and transport.", "sampling.strength", 0.5,
                         form="main")
    like_values: float = _f(Num(0.0, 1000.0), "With like: weight of the real flow's own field values against "
                            "the class's when fields are decoded (0 = the class's only).",
                            "sampling.like_values", 1.0)
    controlnet: str | None = _f(ModelRef(), "With like, for Stable Diffusion runs: a ControlNet (directory or "
                                "hf://org/name@<commit>) steered by canny edges of the real flows' images; "
                                "without it like is img2img.", "sampling.controlnet", None,
                                placeholder="(optional) ControlNet, SD runs")
    controlnet_scale: float = _f(Num(0.0, 10.0), "ControlNet conditioning scale (with controlnet).",
                                 "sampling.controlnet_scale", 0.5)
    field_vocab: bool = _f(Bool(), "Decode header fields onto the values the class uses in training and "
                           "hold each flow's ports to a pair of the class's (off: the model's raw bits).",
                           "sampling.field_vocab", True,
                           cli="--field-vocab/--raw-fields", label="field vocabulary")
    disabled_rules: tuple[str, ...] = _f(RuleNames(), "Repair rules switched off, by name.", "repair.disable", (),
                                         cli="--disable-rules", label="disabled rules", placeholder="none")
    allow_fragments: bool = _f(Bool(), "Keep IPv4 fragments instead of repairing them away.",
                               "repair.allow_fragments", False, cli="--allow-fragments/--no-allow-fragments")
    extra: dict = field(default_factory=dict, compare=True)

    @property
    def draws(self) -> int:
        """Candidates drawn per flow: ``candidates`` samples, each decoded ``decodes`` times."""
        return self.candidates * self.decodes


FIELDS: tuple = tuple(f for f in fields(GenerationRequest) if "spec" in f.metadata)
#: the sampling fields `netdiff balance` may set for every class's request (its recipe's otherwise)
SAMPLING_OVERRIDES = ("candidates", "decodes")
BY_NAME: dict = {f.name: f for f in FIELDS}


def spec(name: str) -> Spec:
    return BY_NAME[name].metadata["spec"]


def default(name: str):
    """A field's default (``label`` has none: None)."""
    f = BY_NAME[name]
    return None if f.default is MISSING else f.default


# -- rules across fields ------------------------------------------------------------------------
# Each returns (field to blame, problem) or None; ``{name}`` in a problem names another field.

def _packets_order(q):
    if q.packets_min > q.packets_max:
        return "packets_max", f"min {q.packets_min} is larger than max {q.packets_max}"


def _tcp_handshake(q):
    if q.transport == "tcp" and q.packets_max < 3:
        return "packets_max", f"max {q.packets_max} is too short for TCP (a handshake alone is 3 packets)"


def _icmp_ports(q):
    if q.transport == "icmp" and q.server_ports:
        return "server_ports", "ICMP has no ports; leave {server_ports} empty"


def _ports_apart(q):
    lo, hi = q.client_port_range
    clash = [p for p in q.server_ports if lo <= p <= hi]
    if clash:
        return "client_port_range", (f"range {lo}-{hi} contains service port {clash[0]}; "
                                     f"a parser would read such a flow backwards")


def _split_needs_like(q):
    if q.like_split and not q.like:
        return "like_split", "needs {like} (the guide flows it splits)"


def _controlnet_needs_like(q):
    if q.controlnet and not q.like:
        return "controlnet", "needs {like} (the real flows whose edges steer the images)"


RULES = (_packets_order, _tcp_handshake, _icmp_ports, _ports_apart, _split_needs_like, _controlnet_needs_like)


# -- building and checking ----------------------------------------------------------------------

def parse_value(name: str, raw, ctx: Ctx = Ctx()):
    """A field's TOML value -> its request value; raises Problem."""
    try:
        return spec(name).kind.parse(raw, ctx)
    except Bad as e:
        raise Problem(name, str(e)) from None


def parse_text(name: str, text: str, ctx: Ctx = Ctx(check_exists=True)):
    """Typed text -> the field's request value; raises Problem."""
    try:
        k = spec(name).kind
        return k.parse(k.from_text(text), ctx)
    except Bad as e:
        raise Problem(name, str(e)) from None


def to_raw(name: str, value):
    """A request value -> its TOML value (None: no key)."""
    k = spec(name).kind
    return k.none_raw if value is None else k.to_raw(value)


def to_text(name: str, value) -> str:
    k = spec(name).kind
    return k.none_raw or "" if value is None else k.to_text(value)


def check_rules(req: GenerationRequest) -> None:
    for rule in RULES:
        hit = rule(req)
        if hit:
            raise Problem(hit[0], hit[1], templated=True)


def validate(req: GenerationRequest) -> GenerationRequest:
    """Every field against its kind, then the rules across fields; raises Problem.

    A request built in Python (not parsed) passes through the same checks as a recipe:
    each value is turned into its TOML form and parsed back.
    """
    for f in FIELDS:
        v = getattr(req, f.name)
        if v is None and default(f.name) is None:
            continue
        back = parse_value(f.name, to_raw(f.name, v))
        # the TOML form forgives what the engine would not (a port as "22", "TCP"); paths stay as given
        if back != v and not isinstance(spec(f.name).kind, (PathRef, ModelRef)):
            raise Problem(f.name, f"expected {back!r}, got {v!r}")
    check_rules(req)
    return req


def build(values: dict, base: GenerationRequest | None = None) -> GenerationRequest:
    """``base`` (or the defaults) with ``values`` (request values by field) on top, rules checked."""
    if base is None:
        if "label" not in values:
            raise Problem("label", "missing; name the class to generate")
        req = GenerationRequest(**values)
    else:
        req = replace(base, extra=dict(base.extra), **values)
    check_rules(req)
    return req


def help_text(name: str) -> str:
    """Help with the range or choices and the unit, for --help and the form."""
    s = spec(name)
    if not s.kind.bounded or isinstance(s.kind, Bool):      # a flag pair says true or false itself
        return s.help
    return f"{s.help} [{s.kind.describe()}{' ' + s.unit if s.unit else ''}]"


def form_label(name: str) -> str:
    return spec(name).label or name.replace("_", " ")


def cli_flags(name: str) -> list[str]:
    """The option's declarations for click: ``["--count", "-n"]`` or ``["--field-vocab/--raw-fields"]``."""
    c = spec(name).cli or "--" + name.replace("_", "-")
    return [c] if "/" in c and c.count("--") == 2 else c.split("/")


def cli_name(name: str) -> str:
    """How errors name the field on the command line (the option's long name)."""
    return cli_flags(name)[0].split("/")[0]
