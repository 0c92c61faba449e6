"""Export a labeled dataset of per-flow captures from generated and real data.

Inputs (any mix, in the order given):

- generated dataset directories (``netdiff generate``): ``manifest.csv`` +
  ``<label>/*.pcap``, one flow per file -> **synthetic** flows, copied byte for byte;
- real labeled capture directories: ``<class>/*.pcap|pcapng`` (or a folder of
  captures named after its class) -> **real** flows, cut into flows with the
  same flow rules as ``netdiff encode`` (:class:`engine.codec.flows.FlowAssembler`)
  and written with their original bytes (link layer, payload, timestamps);
- directories written by a previous export (their manifest says ``origin``).

Output directory (appears complete or not at all)::

    OUT/<class>/<flow_id>.pcap          one capture per flow
    OUT/<class>.pcapng                  --pcapng: the class's flows in one file, each
                                        packet's comment "label=<class> flow=<id> origin=..."
    OUT/train/<class>/..., OUT/test/... with --split (by flow, stratified by class)
    OUT/manifest.csv, OUT/manifest.json one row per flow
    OUT/README.md                       data card

It is built in ``.OUT.export/data`` next to OUT, with a progress journal in
``.OUT.export/journal.jsonl``; the last step renames ``data`` to OUT. An
interrupted export leaves only that hidden work directory; running the same
command again continues it without redoing finished flows, and the result is
byte for byte what an uninterrupted run writes.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
import shutil
import struct
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from engine.codec import capture as cap
from engine.codec import packets as pk
from engine.errors import InputError
from engine.codec.flows import FlowAssembler, FlowConfig
from engine.progress import CancelToken, Message, OnEvent, TaskFinished, TaskProgress, TaskStarted

EXPORT_VERSION = 1
CAPTURE_EXTS = (".pcap", ".pcapng", ".cap")
MANIFEST_COLUMNS = ["file", "class", "flow_id", "split", "origin", "proto", "packets", "bytes", "duration_s",
                    "client_ip", "client_port", "server_ip", "server_port", "start_ns", "source",
                    "recipe", "recipe_sha256", "model", "model_hash", "seed", "compliance"]
PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp"}


@dataclass(frozen=True)
class ExportOptions:
    """What the export writes.

    Attributes:
        pcapng: also write one merged pcapng per class (per split) with per-packet comments.
        split: fraction of each class's flows held out as ``test`` (None: no split).
        seed: seed of the split.
        flow_config: how real captures are cut into flows.
    """

    pcapng: bool = False
    split: float | None = None
    seed: int = 0
    flow_config: FlowConfig = field(default_factory=FlowConfig)


@dataclass
class Source:
    """One input file: a real capture, or one generated flow file."""

    key: str                 # stable id: "<input index>:<relative path>"
    path: Path
    cls: str
    origin: str              # "real" | "synthetic"
    rows: list = field(default_factory=list)     # generator manifest rows for this file
    info: dict = field(default_factory=dict)     # dataset-level metadata (recipe, model, compliance)


# -- raw records ------------------------------------------------------------------------

Record = cap.Record


def iter_records(path: str | os.PathLike) -> Iterator[Record]:
    """Every packet record of a pcap/pcapng, in file order (the order engine.codec.capture counts them)."""
    return cap.CaptureReader(path).records()


def pcap_file(records: list[Record]) -> bytes:
    """Records -> a nanosecond classic pcap (all records share one link type)."""
    lt = records[0].linktype if records else cap.LINK_ETHERNET
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, lt)]
    for r in records:
        s, ns = divmod(r.ts_ns, 1_000_000_000)
        out.append(struct.pack("<IIII", s, ns, r.caplen, r.wirelen))
        out.append(r.data)
    return b"".join(out)


def _opt(code: int, val: bytes) -> bytes:
    return struct.pack("<HH", code, len(val)) + val + b"\0" * ((4 - len(val) % 4) % 4)


def _block(btype: int, body: bytes) -> bytes:
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


class PcapngWriter:
    """Minimal pcapng writer: one SHB, one IDB per link type (ns resolution), EPBs with comments."""

    def __init__(self, f, app: str = "netdiff export"):
        self.f = f
        self.ifaces: dict[int, int] = {}
        shb = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _opt(4, app.encode()) + _opt(0, b"")
        f.write(_block(0x0A0D0D0A, shb))

    def write(self, r: Record, comment: str) -> None:
        iid = self.ifaces.get(r.linktype)
        if iid is None:
            iid = self.ifaces[r.linktype] = len(self.ifaces)
            body = struct.pack("<HHI", r.linktype, 0, 262144) + _opt(9, b"\x09") + _opt(0, b"")
            self.f.write(_block(1, body))
        body = (struct.pack("<IIIII", iid, r.ts_ns >> 32, r.ts_ns & 0xFFFFFFFF, r.caplen, r.wirelen)
                + r.data + b"\0" * ((4 - r.caplen % 4) % 4) + _opt(1, comment.encode()) + _opt(0, b""))
        self.f.write(_block(6, body))


def pcapng_file(records: list[Record]) -> bytes:
    bio = io.BytesIO()
    w = PcapngWriter(bio)
    for r in records:
        w.write(r, "")
    return bio.getvalue()


# -- inputs -------------------------------------------------------------------------------

def _captures_in(d: Path) -> list[Path]:
    """Capture files of a folder; a .pcapng with a classic .pcap copy of the same name is read once."""
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in CAPTURE_EXTS
                   and not p.name.startswith("."))
    pcap_stems = {p.stem for p in files if p.suffix.lower() == ".pcap"}
    return [p for p in files if p.suffix.lower() == ".pcap" or p.stem not in pcap_stems]


def _hash_request(d: dict) -> str:
    core = {k: v for k, v in d.items() if k != "extra"}
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=list).encode()).hexdigest()


def compliance_summary(rep) -> str:
    """One short string out of a repair/compliance report (whatever its exact shape)."""
    if not isinstance(rep, dict):
        return ""
    if "groups" in rep and isinstance(rep["groups"], list):
        parts = [compliance_summary(g) for g in rep["groups"]]
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


def scan_inputs(inputs: list[str | os.PathLike]) -> list[Source]:
    """Input folders -> sources, in a fixed order."""
    sources: list[Source] = []
    if not inputs:
        raise InputError(None, "no input directories")
    for i, d in enumerate(map(Path, inputs)):
        if not d.exists():
            raise InputError(d, "no such directory")
        if not d.is_dir():
            raise InputError(d, "is not a directory (export takes dataset or capture directories)")
        man = d / "manifest.csv"
        if man.is_file():
            sources += _scan_dataset(i, d, man)
            continue
        found = False
        direct = _captures_in(d)
        if direct:
            found = True
            for f in direct:
                sources.append(Source(f"{i}:{f.name}", f, d.name, "real"))
        for sub in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            for f in _captures_in(sub):
                found = True
                sources.append(Source(f"{i}:{sub.name}/{f.name}", f, sub.name, "real"))
        if not found:
            raise InputError(d, "holds no manifest.csv and no <class>/*.pcap captures")
    return sources


def _scan_dataset(i: int, d: Path, man: Path) -> list[Source]:
    with open(man, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return []
    cols = rows[0].keys()
    if "file" not in cols or not ({"label", "class"} & set(cols)):
        raise InputError(man, "manifest has no 'file' and 'label' columns; not a generated or exported dataset")
    info: dict = {}
    gj = d / "generate.json"
    if gj.is_file():
        try:
            g = json.loads(gj.read_text())
            req = g.get("request", {})
            extra = req.get("extra") or {}
            info["recipe"] = extra.get("recipe", "")
            info["recipe_sha256"] = extra.get("recipe_sha256") or (_hash_request(req) if req else "")
            info["model"] = req.get("model") or "default"
            info["model_hash"] = g.get("summary", {}).get("model_hash", "")
        except (OSError, ValueError) as e:
            raise InputError(gj, f"unreadable: {e}") from None
    cj = d / "compliance.json"
    if cj.is_file():
        try:
            info["compliance"] = compliance_summary(json.loads(cj.read_text()))
            info["compliance_report"] = str(cj)
        except (OSError, ValueError) as e:
            raise InputError(cj, f"unreadable: {e}") from None
    by_file: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_file[r["file"]].append(r)
    out = []
    for rel in sorted(by_file):
        f = d / rel
        if not f.is_file():
            raise InputError(man, f"lists {rel!r}, which does not exist")
        r0 = by_file[rel][0]
        cls = r0.get("class") or r0.get("label") or f.parent.name
        origin = r0.get("origin") or ("synthetic" if str(r0.get("synthetic", "1")) not in ("0", "false", "False")
                                      else "real")
        out.append(Source(f"{i}:{rel}", f, cls, origin, by_file[rel], info))
    return out


# -- flows of a capture ---------------------------------------------------------------------

@dataclass
class CutFlow:
    flow_id: str
    proto: int
    client_ip: int
    client_port: int
    server_ip: int
    server_port: int
    records: list


def cut_flows(path: Path, cfg: FlowConfig, cancel: CancelToken | None = None) -> list[CutFlow]:
    """A capture -> its flows (ids and order as engine.codec.pipeline gives them), with original records."""
    stem = path.stem
    rdr = cap.CaptureReader(path)
    fa = FlowAssembler(cfg)
    skipped: Counter = Counter()
    seq = 0
    flows: list[tuple] = []

    def take(fb):
        for k in range(len(fb)):
            a, b = fb.offsets[k], fb.offsets[k + 1]
            flows.append((int(fb.proto[k]), int(fb.init_ip[k]), int(fb.init_port[k]), int(fb.resp_ip[k]),
                          int(fb.resp_port[k]), fb.packets.seq[a:b].copy()))

    for b in rdr:
        if cancel is not None:
            cancel.check()
        p = pk.parse(b, seq, skipped)
        seq += len(b.ts_ns)
        for fb in fa.feed(p):
            take(fb)
    for fb in fa.finish():
        take(fb)
    recs = list(iter_records(path))
    if len(recs) != seq:
        raise InputError(path, f"record count mismatch ({len(recs)} vs {seq}); cannot keep original bytes")
    out = []
    for n, (proto, ci, cp, si, sp, idx) in enumerate(flows):
        out.append(CutFlow(f"{stem}-{n:06d}", proto, ci, cp, si, sp, [recs[int(j)] for j in idx]))
    return out


def flow_file_bytes(records: list[Record]) -> tuple[bytes, str]:
    """(file bytes, extension): classic pcap, or pcapng when link types are mixed."""
    if len({r.linktype for r in records}) > 1:
        return pcapng_file(records), ".pcapng"
    return pcap_file(records), ".pcap"


def _stats(records: list[Record]) -> tuple[int, int, float]:
    if not records:
        return 0, 0, 0.0
    ts = [r.ts_ns for r in records]
    return len(records), sum(r.wirelen for r in records), round((max(ts) - min(ts)) / 1e9, 6)


# -- split ----------------------------------------------------------------------------------

def n_test(n: int, frac: float) -> int:
    """Flows of a class held out for test: round(frac * n), at least 1 and at most n - 1 when n >= 2."""
    if not frac or n < 2:
        return 0
    return min(max(int(round(frac * n)), 1), n - 1)


def assign_split(rows: list[dict], frac: float | None, seed: int) -> None:
    """Set row["split"] per flow, stratified by class.

    Test flows are drawn from a class's real flows; its synthetic flows all go
    to train (so the test split measures performance on real traffic). A
    class with no real flows splits its synthetic flows the same way.
    """
    if frac is None:
        for r in rows:
            r["split"] = ""
        return
    by_cls: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_cls[r["class"]].append(r)
    for cls, rs in sorted(by_cls.items()):
        real = sorted((r for r in rs if r["origin"] == "real"), key=lambda r: r["file"])
        pool = real or sorted(rs, key=lambda r: r["file"])
        for r in rs:
            r["split"] = "train"
        h = int.from_bytes(hashlib.sha256(f"netdiff-split/{seed}/{cls}".encode()).digest()[:8], "little")
        perm = np.random.default_rng(h).permutation(len(pool))
        for j in perm[:n_test(len(pool), frac)]:
            pool[int(j)]["split"] = "test"


def real_test_flows(inputs, frac: float, seed: int, cfg: FlowConfig = FlowConfig(),
                    cancel: CancelToken | None = None) -> dict[str, list[str]]:
    """``{class: [flow ids]}`` of the real flows an export of ``inputs`` with this split puts in
    ``test``, known before exporting (balancing must not guide generation by them).

    Real flows are named and split exactly as :func:`export` does: their staged names come
    from the real inputs alone (they are read first), and synthetic flows never go to test.
    """
    rows, owner = [], {}
    for s in scan_inputs(inputs):
        if s.origin != "real":
            continue
        for rel, _body, row in _flows_of(s, cfg, cancel):
            staged = _free_name(rel, s.key, owner)
            owner[staged] = s.key
            row["file"] = staged
            rows.append(row)
    assign_split(rows, frac, seed)
    out: dict[str, list[str]] = {}
    for r in rows:
        if r["split"] == "test":
            out.setdefault(r["class"], []).append(r["flow_id"])
    return {c: sorted(v) for c, v in sorted(out.items())}


# -- the export -----------------------------------------------------------------------------

class Journal:
    """Append-only JSON lines; a torn last line (a kill mid-write) is ignored."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for ln in self.path.read_text(encoding="utf-8").split("\n"):
            if not ln.strip():
                continue
            try:
                out.append(json.loads(ln))
            except ValueError:
                break
        return out

    def append(self, rec: dict) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(rec, sort_keys=True) + "\n").encode())
        finally:
            os.close(fd)


def _fingerprint(sources: list[Source], opts: ExportOptions) -> dict:
    srcs = []
    for s in sources:
        st = s.path.stat()
        srcs.append([s.key, str(s.path.resolve()), st.st_size, st.st_mtime_ns])
    return {"version": EXPORT_VERSION, "pcapng": opts.pcapng, "split": opts.split, "seed": opts.seed,
            "flow_config": asdict(opts.flow_config), "sources": srcs}


def work_dir_for(out: Path) -> Path:
    return out.parent / f".{out.name}.export"


def export(inputs: list[str | os.PathLike], out: str | os.PathLike, opts: ExportOptions = ExportOptions(),
           force: bool = False, on_event: OnEvent | None = None, cancel: CancelToken | None = None,
           title: str = "", notes: list[str] | None = None) -> dict:
    """Export generated and real datasets into one labeled dataset; returns a summary.

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
    sources = scan_inputs(inputs)
    if not sources:
        raise InputError(None, "the inputs hold no flows")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = work_dir_for(out)
    work.mkdir(exist_ok=True)
    lock = open(work / "lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise InputError(out, "another export into this directory is running") from None
    try:
        return _run(sources, out, work, opts, force, emit, cancel, title, notes or [])
    finally:
        lock.close()


def _run(sources, out: Path, work: Path, opts: ExportOptions, force, emit, cancel, title, notes) -> dict:
    fp = _fingerprint(sources, opts)
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
        cap.atomic_write_bytes(fp_path, [json.dumps(fp, indent=1).encode()])
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
    delay = float(os.environ.get("NETDIFF_EXPORT_THROTTLE_S", "0") or 0)   # testing aid: slow down per flow

    task = "export"
    emit(TaskStarted(task, total=len(sources), unit="files"))
    for si, s in enumerate(sources):
        if s.key in done_src:
            continue
        if cancel is not None:
            cancel.check()
        mine = {f for f, k in owner.items() if k == s.key}
        for rel, body, row in _flows_of(s, opts.flow_config, cancel):
            staged = _free_name(rel, s.key, owner)
            if staged in mine and staged in rows:
                continue                      # finished before the interruption
            cap.atomic_write_bytes(data / staged, [body])
            row["file"] = staged
            jr.append({"t": "flow", "src": s.key, "row": row})
            rows[staged], owner[staged] = json.loads(json.dumps(row)), s.key   # exactly what a resume reads
            if delay:
                time.sleep(delay)
        jr.append({"t": "src", "src": s.key})
        done_src.add(s.key)
        emit(TaskProgress(task, done=si + 1, total=len(sources), unit="files", detail=s.path.name))

    summary = _finalize(list(rows.values()), data, work, out, opts, force, sources, title, notes, emit)
    summary["resumed_flows"] = resumed
    emit(TaskFinished(task, summary))
    return summary


def _free_name(rel: str, key: str, owner: dict[str, str]) -> str:
    """``rel`` unless another source already owns it; then ``stem~2.ext``, ``~3``... (deterministic)."""
    if owner.get(rel, key) == key:
        return rel
    stem, ext = rel.rsplit(".", 1)
    k = 2
    while owner.get(f"{stem}~{k}.{ext}", key) != key:
        k += 1
    return f"{stem}~{k}.{ext}"


def _flows_of(s: Source, cfg: FlowConfig, cancel) -> Iterator[tuple[str, bytes, dict]]:
    """(staged relative path, file bytes, manifest row) for every flow of a source."""
    base = {"origin": s.origin, "source": s.key.split(":", 1)[1], "recipe": s.info.get("recipe", ""),
            "recipe_sha256": s.info.get("recipe_sha256", ""), "model": s.info.get("model", ""),
            "model_hash": "", "seed": "", "compliance": s.info.get("compliance", "")}
    if len(s.rows) == 1:                 # one flow per file (generated or exported): copy it byte for byte
        r = s.rows[0]
        body = s.path.read_bytes()
        recs = list(iter_records(s.path))
        n, nbytes, dur = _stats(recs)
        fid = r.get("flow_id") or s.path.stem
        ext = ".pcapng" if s.path.suffix.lower() == ".pcapng" else ".pcap"
        row = dict(base, **{
            "class": s.cls, "flow_id": fid, "proto": PROTO_NAMES.get(_int(r.get("proto")), r.get("proto", "")),
            "packets": n, "bytes": nbytes, "duration_s": dur,
            "client_ip": r.get("init_ip", r.get("client_ip", "")),
            "client_port": r.get("init_port", r.get("client_port", "")),
            "server_ip": r.get("resp_ip", r.get("server_ip", "")),
            "server_port": r.get("resp_port", r.get("server_port", "")),
            "start_ns": recs[0].ts_ns if recs else r.get("start_ns", ""),
            "model_hash": r.get("model_hash", ""), "seed": r.get("seed", ""),
        })
        if r.get("origin"):              # re-export of an export: keep its provenance columns
            for k in ("recipe", "recipe_sha256", "model", "compliance", "source"):
                row[k] = r.get(k, row[k])
        yield f"{s.cls}/{_safe(fid)}{ext}", body, row
        return
    for fl in cut_flows(s.path, cfg, cancel):
        n, nbytes, dur = _stats(fl.records)
        body, ext = flow_file_bytes(fl.records)
        row = dict(base, **{
            "class": s.cls, "flow_id": fl.flow_id, "proto": PROTO_NAMES.get(fl.proto, str(fl.proto)),
            "packets": n, "bytes": nbytes, "duration_s": dur,
            "client_ip": pk.ip_str(fl.client_ip), "client_port": fl.client_port,
            "server_ip": pk.ip_str(fl.server_ip), "server_port": fl.server_port,
            "start_ns": fl.records[0].ts_ns,
        })
        if s.rows:     # a generated file holding several flows: keep its dataset-level provenance
            row["model_hash"] = s.rows[0].get("model_hash", "")
            row["seed"] = s.rows[0].get("seed", "")
        yield f"{s.cls}/{_safe(fl.flow_id)}{ext}", body, row


def _int(v) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.~" else "_" for c in name)


def _finalize(rows, data: Path, work: Path, out: Path, opts: ExportOptions, force, sources, title, notes, emit) -> dict:
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
    merged = []
    if opts.pcapng:
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for r in rows:
            groups[(r["split"], r["class"])].append(r)
        for (split, cls), rs in sorted(groups.items()):
            rel = f"{split}/{cls}.pcapng" if split else f"{cls}.pcapng"
            bio = io.BytesIO()
            w = PcapngWriter(bio)
            for r in rs:
                c = f"label={cls} flow={r['flow_id']} origin={r['origin']}" + (f" split={split}" if split else "")
                for rec in iter_records(data / r["file"]):
                    w.write(rec, c)
            cap.atomic_write_bytes(data / rel, [bio.getvalue()])
            merged.append(rel)
    for r in rows:
        r.pop("flow_file", None)
    buf = io.StringIO()
    wr = csv.DictWriter(buf, MANIFEST_COLUMNS, lineterminator="\n", extrasaction="ignore")
    wr.writeheader()
    wr.writerows(rows)
    cap.atomic_write_bytes(data / "manifest.csv", [buf.getvalue().encode()])
    stats = _counts(rows)
    info = {"format": "netdiff-export", "version": EXPORT_VERSION, "flows": len(rows),
            "options": {"pcapng": opts.pcapng, "split": opts.split, "seed": opts.seed,
                        "flow_config": asdict(opts.flow_config)},
            "inputs": _input_dirs(sources), "classes": stats, "merged_pcapng": merged, "compliance": _compliance(sources),
            "fidelity": _fidelity(sources), "notes": notes}
    cap.atomic_write_bytes(data / "manifest.json",
                           [json.dumps({"dataset": info, "flows": [{k: r.get(k, "") for k in MANIFEST_COLUMNS}
                                                                   for r in rows]},
                                       indent=1, default=str).encode()])
    cap.atomic_write_bytes(data / "README.md", [data_card(info, rows, title).encode()])
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
    return {"out": str(out), "flows": len(rows), "classes": stats, "merged_pcapng": merged}


def _input_dirs(sources) -> list[str]:
    seen = {}
    for s in sources:
        i, rel = s.key.split(":", 1)
        root = s.path
        for _ in range(rel.count("/") + 1):
            root = root.parent
        seen.setdefault(int(i), str(root))
    return [seen[i] for i in sorted(seen)]


def _counts(rows) -> dict:
    c: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        c[r["class"]][r["origin"]] += 1
        if r["split"]:
            c[r["class"]][r["split"]] += 1
        c[r["class"]]["packets"] += int(r["packets"])
    return {k: dict(v) for k, v in sorted(c.items())}


def _compliance(sources) -> dict:
    out = {}
    for s in sources:
        if s.info.get("compliance_report"):
            out.setdefault(s.cls, set()).add(s.info.get("compliance", ""))
    return {k: sorted(v) for k, v in sorted(out.items())}


def _fidelity(sources) -> dict:
    """Top-level numbers of a fidelity report shipped next to a generated dataset, if any."""
    out = {}
    for d in sorted({s.path.parent.parent for s in sources if s.origin == "synthetic"}):
        for name in ("fidelity.json", "evaluation.json", "report.json"):
            f = d / name
            if f.is_file():
                try:
                    j = json.loads(f.read_text())
                except (OSError, ValueError):
                    continue
                if isinstance(j, dict):
                    flat = {k: v for k, v in j.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                    if flat:
                        out[d.name] = flat
                break
    return out


def data_card(info: dict, rows: list[dict], title: str = "") -> str:
    """README.md of an exported dataset."""
    cls = info["classes"]
    split = info["options"]["split"] is not None
    n_real = sum(v.get("real", 0) for v in cls.values())
    n_syn = sum(v.get("synthetic", 0) for v in cls.values())
    lines = [f"# {title or 'NetDiffusion Studio dataset'}", "",
             "Labeled network flows, one capture file per flow, exported by `netdiff export`.", "",
             "## What", "",
             f"- {info['flows']} flows in {len(cls)} classes: {n_real} real, {n_syn} synthetic.",
             "- `<class>/<flow_id>.pcap`: one flow per file (bidirectional 5-tuple; 120 s idle timeout, "
             f"at most {info['options']['flow_config']['max_packets']} packets)." if not split else
             "- `train/<class>/<flow_id>.pcap`, `test/<class>/<flow_id>.pcap`: one flow per file.",
             "- `manifest.csv` / `manifest.json`: per flow: file, class, flow id, split, origin (real or "
             "synthetic), transport, packets, bytes, duration, client and server address and port, source, "
             "recipe and model hashes, seed, compliance.",
             ]
    if info["merged_pcapng"]:
        lines.append("- `*.pcapng`: each class's flows in one file; every packet's comment reads "
                     "`label=<class> flow=<flow id> origin=<real|synthetic>`.")
    lines += ["", "## How it was made", "",
              "- **Real** flows: cut from labeled public captures with the same flow rules as `netdiff encode`; "
              "packets keep their original bytes and timestamps.",
              "- **Synthetic** flows: sampled by the NetDiffusion model for the class (`netdiff generate`), "
              "addresses, ports and times from the recipe, then repaired for protocol compliance; copied byte "
              "for byte.", ""]
    if split:
        lines += [f"- Split by flow, stratified by class, {info['options']['split']:.0%} held out as `test` "
                  f"(seed {info['options']['seed']}). Test flows are real whenever the class has real flows; "
                  "synthetic flows only train.", ""]
    lines += ["Inputs:", ""] + [f"- `{d}`" for d in info["inputs"]] + [""]
    for n in info.get("notes") or []:
        lines.append(f"- {n}")
    if info.get("notes"):
        lines.append("")
    head = "| class | real | synthetic |" + (" train | test |" if split else "") + " packets |"
    lines += ["## Flows per class", "", head, "|" + "---|" * (head.count("|") - 1)]
    for k, v in cls.items():
        lines.append(f"| {k} | {v.get('real', 0)} | {v.get('synthetic', 0)} |"
                     + (f" {v.get('train', 0)} | {v.get('test', 0)} |" if split else "") + f" {v.get('packets', 0)} |")
    tot = lambda key: sum(v.get(key, 0) for v in cls.values())  # noqa: E731
    lines.append(f"| **all** | {tot('real')} | {tot('synthetic')} |"
                 + (f" {tot('train')} | {tot('test')} |" if split else "") + f" {tot('packets')} |")
    lines += ["", "## Compliance", ""]
    if info["compliance"]:
        for k, v in info["compliance"].items():
            lines.append(f"- {k} (synthetic): {', '.join(x or 'unknown' for x in v)} (the generator's repair report)")
    else:
        lines.append("- No compliance report among the inputs.")
    lines.append("- Real flows are as captured (not checked; public captures may be snaplen-truncated).")
    lines += ["", "## Fidelity", ""]
    if info["fidelity"]:
        for d, m in info["fidelity"].items():
            lines.append(f"- {d}: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(m.items())))
    else:
        lines.append("- No fidelity report among the inputs (`netdiff evaluate` writes one).")
    lines += ["", "## Provenance and licences", "",
              "Real captures come from public repositories; each flow's `source` column names its capture file. "
              "Check the source's licence before redistributing real flows.", ""]
    return "\n".join(lines)
