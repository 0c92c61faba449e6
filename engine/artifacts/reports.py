"""Reports the engine writes: ``compliance.json`` (check/repair, engine.repair.report) and the
evaluation ``report.json`` (engine.evaluate.run), read into typed summaries."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.artifacts.fields import Fields, read_json_object
from engine.errors import InputError

# The pairs an evaluation compares flow length over whole flows for (engine.evaluate.lengths writes
# them under ``flow_lengths`` and ``summary.flow_length_jsd``; read here)
FLOW_LENGTH_JSD = ("synthetic_vs_test", "synthetic_vs_train", "real_train_vs_test")

COMPLIANCE = "compliance.json"
EVALUATION = "report.json"
BIG = 2**63 - 1
MAX_RULES = 1000
MAX_CLASSES = 100_000


@dataclass
class Counts:
    packets: int | None = None
    flows: int | None = None


def _counts(f: Fields, key: str) -> Counts | None:
    if not f.has(key):
        return None
    o = f.obj(key)
    return Counts(o.int_("packets", 0, BIG), o.int_("flows", 0, BIG))


@dataclass
class RuleResult:
    name: str
    scope: str
    enabled: bool
    before: Counts
    changed: Counts | None
    after: Counts | None
    fields_changed: dict[str, int] = field(default_factory=dict)


@dataclass
class ComplianceReport:
    """A check (``mode`` "check") or repair ("repair") of a capture or generated flows."""

    path: Path
    mode: str
    source: str
    packets: int | None
    flows: int | None
    clean: bool | None
    before: Counts
    changed: Counts | None
    after: Counts
    rules: list[RuleResult]


@dataclass
class EvaluationSummary:
    """The headline of an evaluation report: fidelity per candidate and class, utility, closeness."""

    path: Path
    real: str
    synthetic: str
    candidates: tuple[str, ...]              # "synthetic" and the baselines
    classes: tuple[str, ...]
    mean_jsd: dict[str, float | None]        # candidate -> macro mean JSD
    per_class: dict[str, dict[str, dict[str, float | None]]]   # candidate -> class -> {"jsd", "tvd"}
    overall: dict[str, dict[str, float | None]]                # candidate -> {"jsd", "tvd"}
    beats_baselines: bool | None = None
    tstr_ratios: dict[str, float] = field(default_factory=dict)  # feature set -> synthetic/real macro-F1
    dcr_ratio: float | None = None          # median distance to nearest train flow, synthetic / real test
    exact_copies: float | None = None
    flow_length_jsd: dict[str, float | None] = field(default_factory=dict)   # FLOW_LENGTH_JSD -> whole-flow JSD


def read_compliance(path: str | Path) -> ComplianceReport:
    """Raises InputError naming the file and the first bad field."""
    p = Path(path)
    f = Fields(read_json_object(p), p)
    if f.bool_("repaired") is False:
        raise InputError(p, f"flows were not repaired ({f.str_('reason') or 'no reason given'})")
    if not (f.has("rules") and f.has("totals")):
        raise InputError(p, "not a compliance report (no rules and totals)")
    t = f.obj("totals", required=True)
    rules = []
    for r in f.objs("rules", MAX_RULES):
        ch = _counts(r, "changed")
        fields = {k: v for k, v in r.obj("changed").obj("fields").d.items()
                  if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)}
        rules.append(RuleResult(r.str_("name"), r.str_("scope"), r.bool_("enabled", True),
                                _counts(r, "before") or Counts(), ch, _counts(r, "after"), fields))
    return ComplianceReport(p, f.str_("mode", "?"), f.str_("source"), f.int_("packets", 0, BIG), f.int_("flows", 0, BIG),
                            f.bool_("clean"), _counts(t, "before") or Counts(), _counts(t, "changed"),
                            _counts(t, "after") or Counts(), rules)


def _num(f: Fields, key: str) -> float | None:
    return f.float_(key)


def read_evaluation(path: str | Path) -> EvaluationSummary:
    """Raises InputError naming the file and the first bad field."""
    p = Path(path)
    f = Fields(read_json_object(p), p)
    if not (f.has("fidelity") and f.has("classes")):
        raise InputError(p, "not an evaluation report (no fidelity and classes)")
    fid = f.obj("fidelity", required=True)
    cands = tuple(k for k in fid.d if isinstance(k, str))
    classes = f.str_list("classes", MAX_CLASSES)
    s = f.obj("summary")
    mj = s.obj("mean_jsd")
    per_class: dict = {}
    overall: dict = {}
    for k in cands:
        ck = fid.obj(k, required=True)
        cl = ck.obj("classes")
        per_class[k] = {}
        for c in classes:
            m = cl.obj(c).obj("mean")
            per_class[k][c] = {"jsd": _num(m, "jsd"), "tvd": _num(m, "tvd")}
        o = ck.obj("overall")
        overall[k] = {"jsd": _num(o, "jsd"), "tvd": _num(o, "tvd")}
    ratios = {}
    for feat in ("packet_bits_noports", "flow_stats_noports"):
        v = s.float_(f"tstr_ratio_{feat}")
        if v is not None:
            ratios[feat] = v
    close = s.obj("closeness").obj("synthetic")
    fl = s.obj("flow_length_jsd")
    inp = f.obj("inputs")
    return EvaluationSummary(p, inp.str_("real", "?"), inp.str_("synthetic", "?"), cands, classes,
                             {k: _num(mj, k) for k in cands}, per_class, overall,
                             s.bool_("synthetic_beats_baselines_on_mean_jsd"), ratios,
                             close.float_("median_dcr_ratio"), close.float_("exact_copies"),
                             {k: fl.float_(k, 0.0, 1.0) for k in FLOW_LENGTH_JSD if fl.has(k)})


def find_report(p: str | Path) -> Path:
    """A report file, or a directory holding compliance.json / report.json.

    Raises:
        InputError: nothing there.
    """
    p = Path(p).expanduser()
    if p.is_dir():
        for name in (COMPLIANCE, EVALUATION):
            if (p / name).is_file():
                return p / name
        raise InputError(p, f"no {COMPLIANCE} or {EVALUATION} in this directory")
    if not p.exists():
        raise InputError(p, "no such file or directory")
    return p


def read_report(p: str | Path) -> ComplianceReport | EvaluationSummary:
    """Whichever report ``p`` is (or holds).

    Raises:
        InputError: one line for anything that is neither.
    """
    path = find_report(p)
    f = Fields(read_json_object(path, "report"), path)
    if f.has("rules") and f.has("totals"):
        return read_compliance(path)
    if f.has("fidelity") and f.has("classes"):
        return read_evaluation(path)
    if f.bool_("repaired") is False:
        raise InputError(path, f"flows were not repaired ({f.str_('reason') or 'no reason given'})")
    raise InputError(path, "not a report: neither a compliance report (rules, totals) nor an evaluation "
                           "report (fidelity)")


def compliance_line(rep) -> str:
    """One short string out of a repair/compliance report's JSON (whatever its exact shape)."""
    if not isinstance(rep, dict):
        return ""
    if "groups" in rep and isinstance(rep["groups"], list):
        parts = [compliance_line(g) for g in rep["groups"]]
        return "clean" if parts and all(p == "clean" for p in parts) else "; ".join(p for p in parts if p)
    if rep.get("repaired") is False:
        return "not repaired"
    for k in ("clean", "compliant", "ok"):
        if k in rep and isinstance(rep[k], bool):
            if rep[k]:
                return "clean"
            after = (rep.get("totals") or {}).get("after") or {}
            if isinstance(after.get("packets"), int):
                return f"{after['packets']} packets in {after.get('flows', '?')} flows still violate"
            break
    for k in ("remaining", "violations_after", "errors", "remaining_violations"):
        v = rep.get(k)
        if isinstance(v, int):
            return "clean" if v == 0 else f"{v} remaining violations"
        if isinstance(v, dict):
            n = sum(x for x in v.values() if isinstance(x, int))
            return "clean" if n == 0 else f"{n} remaining violations"
    return "not clean" if any(rep.get(k) is False for k in ("clean", "compliant", "ok")) else "repaired"
