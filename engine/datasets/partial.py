"""The partial output of a streaming generation: ``.OUT.partial`` and its ``.state.json``.

:class:`PartialRun` owns the directory a run writes its windows into (pcaps, manifest rows
appended, compliance counts added up) and the state that lets ``--resume`` continue it with the
same bytes; :func:`fingerprint` is what a resumed run must match. Both samplers (native and
Stable Diffusion, via engine.datasets.generate) write through it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from engine.codec.matrix import write_pcap
from engine.codec.packets import ip_str
from engine.errors import InputError
from engine.model.sample import SampleStats
from engine.outdir import atomic_write_bytes, check_room, clean_leftovers, make_dir, replace_dir, user_paths
from engine.progress import Message, TaskProgress

MANIFEST_COLUMNS = ["file", "label", "packets", "seed", "model_hash", "synthetic", "flow_id", "proto",
                    "init_ip", "init_port", "resp_ip", "resp_port", "start_ns", "guide"]
# Flows sampled, repaired and written together. Fixed (not tied to the batch size or the
# number of processes) because the repair's duplicate-5-tuple rule looks across the flows
# of one call: a fixed window keeps a request's bytes the same however it is run or
# resumed. 256 flows of 128 packets are ~40 MB of matrices (~290 MB at 1024 packets).
WINDOW = 256
STATE_VERSION = 1


class ResumeMismatch(InputError):
    """``resume`` found an interrupted run of another request in the partial directory."""


def stopped_line(out: Path, plan, count: int) -> str:
    """What a stopped run kept, and how to go on (the partial directory of a run that kept
    nothing is removed: there is nothing to resume)."""
    if plan is not None and plan.done > 0:
        return (f"{out}: stopped; {plan.done} of {count} flows are kept in {plan.dir}; run the same command "
                f"with --resume to continue")
    if plan is not None and plan.old_state is None:
        shutil.rmtree(plan.dir, ignore_errors=True)
    return f"{out}: stopped before any flow was written; nothing was kept"


def window_progress(emit, first: int, count: int, world: int, candidates: int = 1):
    """The sampler's per-call progress as progress of the whole run (one bar, not one per window);
    with ``candidates`` draws per flow, a flow counts when its draws are done."""
    def on(ev):
        if isinstance(ev, TaskProgress):
            done = ev.done if candidates == 1 else ev.done / candidates     # fractions: SD's in-image progress
            emit(TaskProgress("generate", min(count, first + done * world), count, "flows", "sampling"))
    return on


def fingerprint(req, mhash, steps, guidance, guides, window, precision: str = "fp32",
                tables: str | None = None, critic: str | None = None) -> str:
    """What decides the bytes of the flows: a resumed run must match it. ``tables``: the hash of
    the checkpoint's sampling tables (:func:`engine.model.checkpoint.tables_hash`), which a
    refit changes without touching the weights; ``critic``: the hash of the critic that picks
    among candidates (:func:`engine.model.critic.critic_hash`), when it does."""
    d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(req).items()}
    if d.get("decodes", 1) == 1:         # runs that decode once keep the fingerprints they had before
        d.pop("decodes", None)
    if d.get("candidates", 1) == 1 and "decodes" not in d:      # so do runs of one candidate
        d.pop("candidates", None)
    elif critic is not None:
        d["critic"] = critic
    d.update(model_hash=mhash, steps=steps, guidance=guidance, guides=len(guides) if guides else 0,
             window=window, version=STATE_VERSION)
    if precision != "fp32":     # fp32 runs keep the fingerprints they had before precision was a choice
        d["precision"] = precision
    if tables is not None:
        d["tables"] = tables
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


class PartialRun:
    """The partial output ``.OUT.partial`` of one run: its windows written so far and the state
    that lets another run continue it (``.state.json``, replaced after every window)."""

    def __init__(self, req, out: Path, lock):
        self.req, self.out, self.lock = req, out, lock
        self.dir = out.parent / f".{out.name}.partial"
        self.state_path = self.dir / ".state.json"
        self.width = max(5, len(str(req.count - 1)))
        self.done, self.next_start, self.manifest_bytes, self.packets = 0, None, 0, 0
        self.stats, self.report, self.ports = SampleStats(), None, set()
        self.resume = False
        self.old_state: dict | None = None

    @classmethod
    def open(cls, req, out: Path, force: bool, resume: bool, emit, lock, window: int = WINDOW) -> "PartialRun":
        """Checks before the model is loaded: OUT's state, a dead run's leftovers, room to write."""
        plan = cls(req, out, lock)
        prev = lock.previous
        if prev is not None:
            emit(Message("info", f"{out}: the run that held it ({prev.describe()}) is gone; taking over its lock"))
        if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not force)):
            raise InputError(out, "output directory exists and is not empty (use --force to replace it)")
        for p in clean_leftovers(out):
            emit(Message("warning", f"removed {p}, left by an interrupted run of an older version"))
        st = plan._read_state()
        if st is not None and not resume:
            if not force:
                raise InputError(out, f"an interrupted run left {st['next']} of {st['count']} flows in {plan.dir}; "
                                      f"add --resume to continue it, or --force to discard it and start over")
            emit(Message("warning", f"discarded {st['next']} flows of an interrupted run ({plan.dir}); starting over"))
            st = None
        elif plan.dir.exists() and st is None:
            emit(Message("warning", f"removed {plan.dir}: an interrupted run stopped before its first flows were kept"))
        if st is None:
            shutil.rmtree(plan.dir, ignore_errors=True)
            if plan.dir.exists():
                raise InputError(out, f"cannot remove the leftover {plan.dir}")
            if resume:
                emit(Message("info", f"{out}: no interrupted run to resume; starting"))
        per_flow = 24 + min(req.packets_max, 1024) * (16 + 150) + 200
        check_room(out, window * per_flow + (1 << 20))
        plan.old_state = st
        return plan

    def _read_state(self) -> dict | None:
        try:
            st = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None
        ok = (isinstance(st, dict) and st.get("version") == STATE_VERSION
              and isinstance(st.get("next"), int) and isinstance(st.get("count"), int)
              and 0 < st["next"] <= st["count"] and isinstance(st.get("manifest_bytes"), int)
              and st["manifest_bytes"] >= 0 and isinstance(st.get("fingerprint"), str))
        return st if ok else None

    def begin(self, fingerprint: str, emit) -> int:
        """Create or reopen the partial directory; returns the first flow to generate."""
        self.fingerprint = fingerprint
        st = self.old_state
        with user_paths(self.out):
            if st is not None:
                if st["fingerprint"] != fingerprint or st["count"] != self.req.count:
                    raise ResumeMismatch(self.out, f"--resume: the interrupted run in {self.dir} generated another request "
                                               f"(count, seed, label, model, sampling or NETDIFF_PRECISION differ); run it with the same "
                                               f"arguments, or use --force to discard it")
                man = self.dir / "manifest.csv"
                if not man.is_file() or man.stat().st_size < st["manifest_bytes"]:
                    raise InputError(self.out, f"--resume: {man} is shorter than its state says; use --force to "
                                               f"discard the interrupted run")
                os.truncate(man, st["manifest_bytes"])
                self.done, self.next_start = st["next"], int(st["next_start"])
                self.manifest_bytes, self.packets = st["manifest_bytes"], int(st["packets"])
                self.stats = SampleStats(**{k: int(v) for k, v in st["stats"].items()})
                self.report = None if st["report"] is None else report_from_dict(st["report"])
                self.ports = set(st["ports"])
                self.resume = True
                emit(Message("warning", f"resuming: {self.done} of {self.req.count} flows were kept by an "
                                        f"interrupted run"))
                return self.done
            make_dir(self.dir)
            make_dir(self.dir / self.req.label)
            buf = io.StringIO()
            csv.DictWriter(buf, MANIFEST_COLUMNS, lineterminator="\n").writeheader()
            atomic_write_bytes(self.dir / "manifest.csv", [buf.getvalue().encode()])
            self.manifest_bytes = len(buf.getvalue().encode())
            return 0

    def write_window(self, first: int, mats, metas, report, mhash, stats: SampleStats, next_start: int,
                     provenance) -> None:
        req = self.req
        rows = []
        for j, (m, meta) in enumerate(zip(mats, metas)):
            rel = f"{req.label}/{meta.flow_id}.pcap"
            n = write_pcap(self.dir / rel, [m], [meta])
            self.packets += n
            rows.append({"file": rel, "label": req.label, "packets": n, "seed": req.seed, "model_hash": mhash,
                         "synthetic": 1, "flow_id": meta.flow_id, "proto": meta.proto,
                         "init_ip": ip_str(meta.init_ip), "init_port": meta.init_port,
                         "resp_ip": ip_str(meta.resp_ip), "resp_port": meta.resp_port, "start_ns": meta.start_ns,
                         "guide": provenance[j] if provenance else ""})
        buf = io.StringIO()
        csv.DictWriter(buf, MANIFEST_COLUMNS, lineterminator="\n").writerows(rows)
        data = buf.getvalue().encode()
        with open(self.dir / "manifest.csv", "r+b") as f:
            f.seek(self.manifest_bytes)
            f.write(data)
            f.truncate()
        self.manifest_bytes += len(data)
        for k, v in asdict(stats).items():
            setattr(self.stats, k, getattr(self.stats, k) + v)
        if report is not None:
            self._add_report(report)
        self.done, self.next_start = first + len(mats), next_start
        st = {"version": STATE_VERSION, "fingerprint": self.fingerprint, "count": req.count, "next": self.done,
              "next_start": next_start, "manifest_bytes": self.manifest_bytes, "packets": self.packets,
              "stats": asdict(self.stats), "report": None if self.report is None else self.report.to_dict(),
              "ports": sorted(self.ports), "pid": os.getpid()}
        atomic_write_bytes(self.state_path, [json.dumps(st).encode()])

    def _add_report(self, rep) -> None:
        from engine.repair import merge_reports
        sp = rep.options.get("server_port")
        self.ports.update(sp if isinstance(sp, list) else ([] if sp is None else [sp]))
        rep.options = {**rep.options, "server_port": None}
        self.report = rep if self.report is None else merge_reports([self.report, rep], source=rep.source)

    def finish(self, req, info: dict) -> dict:
        if self.report is not None:
            ports = sorted(self.ports)
            self.report.options["server_port"] = None if not ports else ports[0] if len(ports) == 1 else ports
            self.report.write(self.dir)            # compliance.json + compliance.txt
        else:
            atomic_write_bytes(self.dir / "compliance.json",
                               [json.dumps({"repaired": False, "reason": "engine.repair not installed"}).encode()])
        req_d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(req).items()}
        summary = {"out": str(self.out), "label": req.label, "flows": self.done, "packets": self.packets, **info,
                   "sampling": asdict(self.stats), "resumed": self.resume,
                   "compliance_clean": None if self.report is None else bool(self.report.clean)}
        atomic_write_bytes(self.dir / "generate.json",
                           [json.dumps({"request": req_d, "summary": summary}, indent=2, default=str).encode()])
        # the state goes last: a stop before the rename still finds a resumable run
        replace_dir(self.dir, self.out)
        (self.out / self.state_path.name).unlink()
        return summary


def report_from_dict(d: dict):
    """A ComplianceReport back from its ``to_dict()`` (a resumed run's counts so far)."""
    from engine.repair.report import ComplianceReport, RuleReport
    rules = []
    for r in d["rules"]:
        ch, af = r.get("changed"), r.get("after")
        rules.append(RuleReport(r["name"], r["description"], r["scope"], bool(r["enabled"]),
                                int(r["before"]["packets"]), int(r["before"]["flows"]),
                                None if ch is None else int(ch["packets"]), None if ch is None else int(ch["flows"]),
                                {} if ch is None else {k: int(v) for k, v in ch["fields"].items()},
                                None if af is None else int(af["packets"]), None if af is None else int(af["flows"]),
                                r.get("advisory", "")))
    t = d["totals"]
    return ComplianceReport(mode=d["mode"], packets=int(d["packets"]), flows=int(d["flows"]), rules=rules,
                            total_before=int(t["before"]["packets"]), flows_before=int(t["before"]["flows"]),
                            total_after=int(t["after"]["packets"]), flows_after=int(t["after"]["flows"]),
                            packets_changed=int(t.get("changed", {}).get("packets", 0)),
                            flows_changed=int(t.get("changed", {}).get("flows", 0)),
                            padding_rows_dropped=int(d["padding_rows_dropped"]), empty_flows=int(d["empty_flows"]),
                            options=dict(d["options"]), seconds=float(d["seconds"]), source=d["source"])
