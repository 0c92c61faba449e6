"""The compliance report: per rule, packets and flows violating it before and after repair."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.outdir import atomic_write_bytes

UNPARSED = "unparsed_packets"
UNPARSED_HELP = "packets that claim IPv4 but whose IPv4 or transport header is malformed (in no flow)"


@dataclass
class RuleReport:
    """One rule's line of the report.

    Attributes:
        name, description, scope: the rule's.
        enabled: False when switched off (its counts are shown, not acted on, and
            left out of the totals).
        before_packets, before_flows: violations in the input.
        changed_packets, changed_flows: packets/flows the rule's fix modified
            (``None`` for a check).
        changed_fields: field (or block) -> packets where the fix changed it.
        after_packets, after_flows: violations in the output (``None`` for a check).
    """

    name: str
    description: str
    scope: str
    enabled: bool
    before_packets: int
    before_flows: int
    changed_packets: int | None = None
    changed_flows: int | None = None
    changed_fields: dict = field(default_factory=dict)
    after_packets: int | None = None
    after_flows: int | None = None
    advisory: str = ""

    def to_dict(self) -> dict:
        d = {"name": self.name, "description": self.description, "scope": self.scope,
             "enabled": self.enabled, "advisory": self.advisory,
             "before": {"packets": self.before_packets, "flows": self.before_flows}}
        if self.after_packets is not None:
            d["changed"] = {"packets": self.changed_packets, "flows": self.changed_flows,
                            "fields": dict(sorted(self.changed_fields.items()))}
            d["after"] = {"packets": self.after_packets, "flows": self.after_flows}
        return d


@dataclass
class ComplianceReport:
    """Result of :func:`~engine.repair.check_flows` (``mode="check"``) or
    :func:`~engine.repair.repair_flows` (``mode="repair"``).

    Totals count packets (and flows) violating at least one enabled rule.
    For a check, the "after" totals equal the "before" ones: the capture as it is.
    """

    mode: str
    packets: int
    flows: int
    rules: list[RuleReport]
    total_before: int
    flows_before: int
    total_after: int
    flows_after: int
    packets_changed: int = 0
    flows_changed: int = 0
    padding_rows_dropped: int = 0
    empty_flows: int = 0
    options: dict = field(default_factory=dict)
    seconds: float = 0.0
    source: str = ""
    unparsed: dict = field(default_factory=dict)
    not_covered: dict = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """No enabled rule is violated by the result."""
        return self.total_after == 0

    def add_skipped(self, skipped: dict) -> None:
        """Account for the packets a capture reader skipped (reason -> count, see engine.codec.packets).

        Packets that claim IPv4 and break it are violations of rule
        ``unparsed_packets`` (they belong to no flow; a repair drops them).
        Packets of protocols the layout does not cover (ARP, IPv6, other IPv4
        protocols, fragments, headers cut by the snap length) are listed under
        ``not_covered``: reported, never judged.
        """
        from engine.codec.packets import CUT_NOTE, MALFORMED
        for k, v in skipped.items():
            if v and k != CUT_NOTE:
                into = self.unparsed if k in MALFORMED else self.not_covered
                into[k] = into.get(k, 0) + int(v)
        n = sum(v for k, v in skipped.items() if k in MALFORMED)
        try:
            rr = self.rule(UNPARSED)
        except KeyError:
            rr = RuleReport(UNPARSED, UNPARSED_HELP, "packet", True, 0, 0)
            if self.mode == "repair":
                rr.changed_packets = rr.changed_flows = rr.after_packets = rr.after_flows = 0
            self.rules.insert(0, rr)
        rr.before_packets += n
        self.total_before += n
        if self.mode == "repair":
            rr.changed_packets += n
            if n:
                rr.changed_fields["dropped"] = rr.changed_fields.get("dropped", 0) + n
            self.packets_changed += n
        else:
            self.total_after += n

    def rule(self, name: str) -> RuleReport:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "mode": self.mode, "source": self.source, "clean": self.clean,
            "packets": self.packets, "flows": self.flows,
            "padding_rows_dropped": self.padding_rows_dropped, "empty_flows": self.empty_flows,
            "unparsed": dict(sorted(self.unparsed.items())),
            "not_covered": dict(sorted(self.not_covered.items())),
            "totals": {
                "before": {"packets": self.total_before, "flows": self.flows_before},
                **({"changed": {"packets": self.packets_changed, "flows": self.flows_changed}}
                   if self.mode == "repair" else {}),
                "after": {"packets": self.total_after, "flows": self.flows_after},
            },
            "options": self.options,
            "seconds": round(self.seconds, 4),
            "rules": [r.to_dict() for r in self.rules],
        }

    def to_table(self) -> str:
        """A readable fixed-width table, one rule per line, in pipeline order."""
        rep = self.mode == "repair"
        head = f"Compliance {'repair' if rep else 'check'}"
        if self.source:
            head += f" of {self.source}"
        lines = [head, f"{self.packets} packets in {self.flows} flows"
                 + (f"; {self.padding_rows_dropped} padding rows dropped" if self.padding_rows_dropped else "")
                 + (f"; {self.empty_flows} flows without packets" if self.empty_flows else ""), ""]
        w = max([len(r.name) for r in self.rules] + [5]) + 2
        cols = ["before pkts", "before flows"] + (["changed pkts", "after pkts", "after flows"] if rep else [])
        lines.append("rule".ljust(w) + "".join(c.rjust(13) for c in cols) + "  fields changed" * rep)
        lines.append("-" * (w + 13 * len(cols) + (16 if rep else 0)))
        for r in self.rules:
            vals = [r.before_packets, r.before_flows]
            if rep:
                vals += [r.changed_packets, r.after_packets, r.after_flows]
            name = r.name + ("" if r.enabled else " (off)") + (" *" if r.advisory else "")
            line = name.ljust(w) + "".join(str(v).rjust(13) for v in vals)
            if rep and r.changed_fields:
                line += "  " + ", ".join(f"{k} {v}" for k, v in sorted(r.changed_fields.items()))
            lines.append(line)
        lines.append("-" * (w + 13 * len(cols) + (16 if rep else 0)))
        tot = [self.total_before, self.flows_before]
        if rep:
            tot += [self.packets_changed, self.total_after, self.flows_after]
        lines.append("any rule".ljust(w) + "".join(str(v).rjust(13) for v in tot))
        lines.append("")
        if self.unparsed:
            lines.append(f"{UNPARSED}: " + ", ".join(f"{k} {v}" for k, v in sorted(self.unparsed.items())))
        if self.not_covered:
            lines.append("not covered by the layout (reported, not judged): "
                         + ", ".join(f"{k} {v}" for k, v in sorted(self.not_covered.items())))
        if any(r.advisory for r in self.rules) and not rep:
            lines.append("* advisory: a convention generated traffic follows, not a protocol requirement;"
                         " not counted in 'any rule'")
        uncovered = sum(self.not_covered.values())
        lines.append("result: " + ("clean: every enabled rule holds" if self.clean else
                                   f"NOT clean: {self.total_after} packets in {self.flows_after} flows violate a rule")
                     + (f" ({uncovered} packets not covered, not judged)" if uncovered else ""))
        return "\n".join(lines) + "\n"

    def write(self, dir_or_prefix: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``compliance.json`` and ``compliance.txt`` atomically.

        ``dir_or_prefix`` is a directory (existing, or ending in a path
        separator): files go inside it; otherwise it is a file-name prefix:
        ``out/run1`` gives ``out/run1.compliance.json`` (a prefix ending in
        ``.``, ``_`` or ``-`` is used as is: ``out/run1_compliance.json``).
        """
        s = os.fspath(dir_or_prefix)
        if os.path.isdir(s) or s.endswith((os.sep, "/")):
            jp, tp = Path(s) / "compliance.json", Path(s) / "compliance.txt"
        else:
            sep = "" if s.endswith((".", "_", "-")) else "."
            jp, tp = Path(f"{s}{sep}compliance.json"), Path(f"{s}{sep}compliance.txt")
        atomic_write_bytes(jp, [json.dumps(self.to_dict(), indent=2).encode() + b"\n"])
        atomic_write_bytes(tp, [self.to_table().encode()])
        return jp, tp


def merge_reports(reports: list[ComplianceReport], source: str = "") -> ComplianceReport:
    """One report for several repair/check calls over disjoint flows (counts add up)."""
    if len(reports) == 1:
        return reports[0]
    first = reports[0]
    # by name: a report that accounted for skipped packets has one rule line more
    names = list(dict.fromkeys(r.name for rep in reports for r in rep.rules))
    by_name = [{r.name: r for r in rep.rules} for rep in reports]
    rules = []
    for name in names:
        r0 = next(m[name] for m in by_name if name in m)
        rr = RuleReport(r0.name, r0.description, r0.scope, r0.enabled, 0, 0, advisory=r0.advisory)
        if r0.after_packets is not None:
            rr.changed_packets = rr.changed_flows = rr.after_packets = rr.after_flows = 0
        for m in by_name:
            r = m.get(name)
            if r is None:
                continue
            rr.before_packets += r.before_packets
            rr.before_flows += r.before_flows
            if r.after_packets is not None:
                rr.changed_packets += r.changed_packets or 0
                rr.changed_flows += r.changed_flows or 0
                rr.after_packets += r.after_packets
                rr.after_flows += r.after_flows
                for k, v in r.changed_fields.items():
                    rr.changed_fields[k] = rr.changed_fields.get(k, 0) + v
        rules.append(rr)
    skipped = {"unparsed": {}, "not_covered": {}}
    for rep in reports:
        for key, into in skipped.items():
            for k, v in getattr(rep, key).items():
                into[k] = into.get(k, 0) + v
    tot = {k: sum(getattr(r, k) for r in reports) for k in (
        "packets", "flows", "total_before", "flows_before", "total_after", "flows_after", "packets_changed",
        "flows_changed", "padding_rows_dropped", "empty_flows")}
    opts = dict(first.options)
    ports = sorted({r.options.get("server_port") for r in reports if r.options.get("server_port") is not None})
    if ports:
        opts["server_port"] = ports
    return ComplianceReport(mode=first.mode, rules=rules, options=opts, source=source or first.source,
                            seconds=sum(r.seconds for r in reports), **tot, **skipped)
