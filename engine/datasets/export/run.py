"""export(): inputs -> a staged, journaled, resumable export, renamed into place when complete."""

from __future__ import annotations

import io
import json
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from engine.datasets.export import card
from engine.datasets.export.flows import flows_of, free_name
from engine.datasets.export.journal import Journal, fingerprint
from engine.datasets.export.manifest import dataset_info, write_manifests
from engine.datasets.export.options import ExportOptions
from engine.datasets.export.scan import select_classes, scan_inputs
from engine.datasets.export.split import assign_split
from engine.datasets.export.writers import PcapngWriter, iter_records
from engine.errors import InputError
from engine.outdir import OutputLock, atomic_write_bytes, check_room, make_dir, user_paths
from engine.progress import CancelToken, Message, OnEvent, TaskFinished, TaskProgress, TaskStarted

OnFlow = Callable[[dict], None]


def work_dir_for(out: Path) -> Path:
    return out.parent / f".{out.name}.export"


def export(inputs: list[str | os.PathLike], out: str | os.PathLike, opts: ExportOptions = ExportOptions(),
           force: bool = False, on_event: OnEvent | None = None, cancel: CancelToken | None = None,
           title: str = "", notes: list[str] | None = None, on_flow: OnFlow | None = None) -> dict:
    """Export generated and real datasets into one labeled dataset; returns a summary.

    ``on_flow`` is called with each flow's manifest row once its file and journal line are on
    disk, i.e. at the points where an interruption loses nothing.

    Raises:
        InputError: bad inputs, an existing non-empty OUT without ``force``.
    """
    emit = on_event or (lambda e: None)
    out = Path(out)
    if opts.split is not None and not 0.0 < opts.split < 1.0:
        raise InputError(None, f"--split must be between 0 and 1 (exclusive), got {opts.split}")
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not force:
        raise InputError(out, "output directory exists and is not empty (use --force to replace it)")
    if opts.max_per_class is not None and opts.max_per_class < 1:
        raise InputError(None, f"--max-per-class must be >= 1, got {opts.max_per_class}")
    sources = select_classes(scan_inputs(inputs), opts.classes)
    if not sources:
        raise InputError(None, "the inputs hold no flows")
    check_room(out)
    # OUT's lock (engine.outdir), not one inside the work directory: that one went with the
    # work directory when a run finished, so a run waiting on it could start a second export
    with OutputLock(out):
        if out.exists() and any(out.iterdir()) and not force:
            raise InputError(out, "output directory exists and is not empty (use --force to replace it)")
        with user_paths(out):
            work = make_dir(work_dir_for(out), exist_ok=True)
            return _run(sources, out, work, opts, force, emit, cancel, title, notes or [], on_flow)


def _run(sources, out: Path, work: Path, opts: ExportOptions, force, emit, cancel, title, notes,
         on_flow: OnFlow | None) -> dict:
    fp = fingerprint(sources, opts)
    fp_path, data, jr = work / "args.json", work / "data", Journal(work / "journal.jsonl")
    if fp_path.exists():
        try:
            same = json.loads(fp_path.read_text()) == fp
        except ValueError:
            same = False
        if not same:
            emit(Message("info", f"{work}: an interrupted export with other arguments or inputs; starting over"))
            for p in (data, jr.path, fp_path):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    if not fp_path.exists():
        shutil.rmtree(data, ignore_errors=True)
        jr.path.unlink(missing_ok=True)
        atomic_write_bytes(fp_path, [json.dumps(fp, indent=1).encode()])
    data.mkdir(exist_ok=True)

    # Replay the journal.
    rows: dict[str, dict] = {}          # staged file -> row
    owner: dict[str, str] = {}          # staged file -> source key
    done_src: set[str] = set()
    for e in jr.read():
        if e.get("t") == "flow":
            rows[e["row"]["file"]] = e["row"]
            owner[e["row"]["file"]] = e["src"]
        elif e.get("t") == "src":
            done_src.add(e["src"])
    resumed = len(rows)
    if resumed:
        emit(Message("info", f"resuming: {resumed} flows from {len(done_src)} inputs already exported"))

    task = "export"
    cap = opts.max_per_class
    per_class = Counter(r.get("class") for r in rows.values())
    emit(TaskStarted(task, total=len(sources), unit="files"))
    for si, s in enumerate(sources):
        if s.key in done_src:
            continue
        if cancel is not None:
            cancel.check()
        mine = {f for f, k in owner.items() if k == s.key}
        # a full class's later files are not even read (a real capture is parsed whole to cut flows)
        full = cap is not None and per_class[s.cls] >= cap and not mine
        for rel, body, row in () if full else flows_of(s, opts.flow_config, cancel):
            staged = free_name(rel, s.key, owner)
            if staged in mine and staged in rows:
                continue                      # finished before the interruption
            if cap is not None and per_class[row.get("class")] >= cap:
                break                         # the class is full: the rest of this file adds nothing
            per_class[row.get("class")] += 1
            atomic_write_bytes(data / staged, [body])
            row["file"] = staged
            jr.append({"t": "flow", "src": s.key, "row": row})
            rows[staged], owner[staged] = json.loads(json.dumps(row)), s.key   # exactly what a resume reads
            if on_flow is not None:
                on_flow(rows[staged])
        jr.append({"t": "src", "src": s.key})
        done_src.add(s.key)
        emit(TaskProgress(task, done=si + 1, total=len(sources), unit="files", detail=s.path.name))

    summary = _finalize(list(rows.values()), data, work, out, opts, force, sources, title, notes)
    summary["resumed_flows"] = resumed
    emit(TaskFinished(task, summary))
    return summary


def _finalize(rows, data: Path, work: Path, out: Path, opts: ExportOptions, force, sources, title, notes) -> dict:
    for r in rows:
        r["flow_file"] = r["file"]                      # staged location (class/name)
    assign_split(rows, opts.split, opts.seed)
    for r in rows:
        r["file"] = f"{r['split']}/{r['flow_file']}" if r["split"] else r["flow_file"]
    rows.sort(key=lambda r: (r["split"] != "train", r["split"], r["class"], r["file"]))
    # move staged flow files into their split folders (idempotent: a rerun finds them moved)
    for r in rows:
        src, dst = data / r["flow_file"], data / r["file"]
        if src != dst and src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    if opts.split is not None:
        for d in sorted(data.iterdir()):
            if d.is_dir() and d.name not in ("train", "test"):
                shutil.rmtree(d)                        # emptied staging folders
    merged = _merged_pcapng(rows, data) if opts.pcapng else []
    for r in rows:
        r.pop("flow_file", None)
    info = dataset_info(rows, opts, sources, merged, notes)
    write_manifests(data, rows, info)
    atomic_write_bytes(data / "README.md", [card.data_card(info, rows, title).encode()])
    # into place
    old = None
    if out.exists():
        if not force and any(out.iterdir()):
            raise InputError(out, "output directory appeared while exporting (use --force to replace it)")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(data, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    for p in ("journal.jsonl", "args.json"):
        (work / p).unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    return {"out": str(out), "flows": len(rows), "classes": info["classes"], "merged_pcapng": merged}


def _merged_pcapng(rows: list[dict], data: Path) -> list[str]:
    """One pcapng per (split, class) whose packet comments carry label, flow and origin."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["split"], r["class"])].append(r)
    merged = []
    for (split, cls), rs in sorted(groups.items()):
        rel = f"{split}/{cls}.pcapng" if split else f"{cls}.pcapng"
        bio = io.BytesIO()
        w = PcapngWriter(bio)
        for r in rs:
            c = f"label={cls} flow={r['flow_id']} origin={r['origin']}" + (f" split={split}" if split else "")
            for rec in iter_records(data / r["file"]):
                w.write(rec, c)
        atomic_write_bytes(data / rel, [bio.getvalue()])
        merged.append(rel)
    return merged
