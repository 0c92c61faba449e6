"""A source -> its flow files and manifest rows: generated flow files copied byte for byte, real
captures cut into flows by the same rules as ``netdiff encode`` with their original records."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.codec import capture as cap
from engine.codec import packets as pk
from engine.codec.flows import FlowAssembler, FlowConfig
from engine.constants import PROTO_NAME
from engine.datasets.export.scan import Source
from engine.datasets.export.writers import Record, flow_file_bytes, iter_records
from engine.errors import InputError
from engine.progress import CancelToken

PROTO_NAMES = PROTO_NAME


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


def _stats(records: list[Record]) -> tuple[int, int, float]:
    if not records:
        return 0, 0, 0.0
    ts = [r.ts_ns for r in records]
    return len(records), sum(r.wirelen for r in records), round((max(ts) - min(ts)) / 1e9, 6)


def free_name(rel: str, key: str, owner: dict[str, str]) -> str:
    """``rel`` unless another source already owns it; then ``stem~2.ext``, ``~3``... (deterministic)."""
    if owner.get(rel, key) == key:
        return rel
    stem, ext = rel.rsplit(".", 1)
    k = 2
    while owner.get(f"{stem}~{k}.{ext}", key) != key:
        k += 1
    return f"{stem}~{k}.{ext}"


def flows_of(s: Source, cfg: FlowConfig, cancel) -> Iterator[tuple[str, bytes, dict]]:
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
