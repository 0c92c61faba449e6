"""``generate(req, out_dir)``: a GenerationRequest -> a labeled dataset of pcaps.

Output directory (appears complete or not at all)::

    OUT/<label>/<label>-00000.pcap   one capture per flow
    OUT/manifest.csv                 file,label,packets,seed,model_hash,synthetic,flow_id,proto,...
    OUT/compliance.json              the repair step's report
    OUT/generate.json                the request, the model and the sampling statistics

Under ``accelerate launch`` every process samples its own slice of the
flows (flow ``i`` goes to rank ``i % world``); rank 0 gathers them, assigns
addresses and times, repairs and writes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import ipaddress
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from engine.outdir import atomic_write_bytes
from engine.codec.matrix import FlowMeta, write_pcap
from engine.errors import InputError
from engine.codec.layout import LAYOUT, get, put
from engine.codec.packets import ip_str
from engine.progress import CancelToken, Message, OnEvent, TaskFinished, TaskProgress, TaskStarted

from engine.model.checkpoint import load_model, weights_hash
from engine.model.guide import assign_guides, load_guides
from engine.model.sample import (PROTO_NUM, SampleOptions, SampleStats, class_priors, flow_proto, sample_flows,
                                 usable_guides)

MANIFEST_COLUMNS = ["file", "label", "packets", "seed", "model_hash", "synthetic", "flow_id", "proto",
                    "init_ip", "init_port", "resp_ip", "resp_port", "start_ns", "guide"]
COL_DIR = LAYOUT.cols("meta_direction").start


def _rng(seed: int, what: str) -> np.random.Generator:
    h = hashlib.sha256(f"netdiff/{seed}/{what}".encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def _pick_ip(rng: np.random.Generator, nets) -> int:
    n = nets[int(rng.integers(len(nets)))]
    size = n.num_addresses
    if size <= 2:
        off = int(rng.integers(size))
    else:   # skip the network and broadcast addresses
        off = 1 + int(rng.integers(size - 2))
    return int(n.network_address) + off


def _model_ports(m: np.ndarray, proto: int) -> tuple[int, int]:
    """(initiator port, responder port) as the model wrote them in the first row."""
    if len(m) == 0 or proto not in (6, 17):
        return 0, 0
    a, b = ("tcp_sprt", "tcp_dprt") if proto == 6 else ("udp_sport", "udp_dport")
    s, d = int(get(m[:1], a)[0]), int(get(m[:1], b)[0])
    return (s, d) if m[0, COL_DIR] != 0 else (d, s)


def set_ports(m: np.ndarray, proto: int, init_port: int, resp_port: int) -> None:
    """Write the initiator's and responder's ports into a flow's TCP/UDP rows (by direction)."""
    if proto not in (6, 17) or len(m) == 0:
        return
    a, b = ("tcp_sprt", "tcp_dprt") if proto == 6 else ("udp_sport", "udp_dport")
    col = LAYOUT.cols(a).start
    have = m[:, col] != -1
    fwd = have & (m[:, COL_DIR] != 0)
    back = have & (m[:, COL_DIR] == 0)
    for rows, s, d in ((fwd, init_port, resp_port), (back, resp_port, init_port)):
        if rows.any():
            put(m, a, s, rows)
            put(m, b, d, rows)


def make_metas(req, mats: list[np.ndarray], held_ports: bool = False) -> tuple[list[FlowMeta], list[int]]:
    """Addresses, ports and start times for every flow (all from req.seed)."""
    # pools, port range and rate were checked by the request's declaration (check_request)
    cli, srv = ([ipaddress.ip_network(c) for c in cidrs] for cidrs in (req.client_cidrs, req.server_cidrs))
    rng = _rng(req.seed, "meta")
    lo, hi = req.client_port_range
    gaps = rng.exponential(1e9 / req.flows_per_s, size=len(mats))
    gaps[0] = 0
    starts = req.start_ns + np.cumsum(gaps).astype(np.int64)
    metas, sports = [], []
    for i, m in enumerate(mats):
        proto = flow_proto(m)
        mi, mr = _model_ports(m, proto)
        sport = int(req.server_ports[int(rng.integers(len(req.server_ports)))]) if req.server_ports else mr
        cport = int(rng.integers(lo, hi + 1))
        if held_ports and not req.server_ports:
            # the sampler drew this pair from the class's flows (engine.model.ports), an ephemeral
            # client port from client_port_range included
            cport, sport = mi, mr
        metas.append(FlowMeta(f"{req.label}-{i:05d}", req.label, proto, _pick_ip(rng, cli), _pick_ip(rng, srv),
                              cport if proto in (6, 17) else 0, sport if proto in (6, 17) else 0,
                              int(starts[i]), len(m), "netdiff-generate"))
        sports.append(sport)
        set_ports(m, proto, metas[-1].init_port, metas[-1].resp_port)
    return metas, sports


def _repair(req, mats, metas, emit, sports=None):
    """Repair every flow; flows are grouped by their chosen service port.

    The repair API takes one service port per call, and it is the repair
    (which settles which side initiates) that must put it on the responder,
    so each group of flows sharing a port is repaired in one call. Groups
    never share a 5-tuple, so the duplicate-5-tuple rule loses nothing.
    """
    try:
        from engine.repair import RepairOptions, merge_reports, repair_flows
    except ImportError:
        emit(Message("warning", "engine.repair is not available: flows are written unrepaired"))
        return mats, metas, None
    groups: dict = {}
    for i in range(len(mats)):
        port = int(sports[i]) if req.server_ports and sports is not None else None
        groups.setdefault(port, []).append(i)
    out_m, out_t, reports = list(mats), list(metas), []
    for port, idx in sorted(groups.items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
        try:
            opts = RepairOptions(mtu=req.mtu, allow_fragments=req.allow_fragments,
                                 disabled=frozenset(req.disabled_rules), server_port=port,
                                 client_port_range=tuple(req.client_port_range), seed=req.seed)
        except ValueError as e:
            raise InputError(None, str(e)) from None
        rm, rt, rep = repair_flows([mats[i] for i in idx], [metas[i] for i in idx], opts,
                                   source=f"generate:{req.label}")
        for j, i in enumerate(idx):
            out_m[i], out_t[i] = rm[j], rt[j]
        reports.append(rep)
    return out_m, out_t, merge_reports(reports, source=f"generate:{req.label}")


def _dist():
    """(rank, world, state) under accelerate launch / torchrun; (0, 1, None) otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState
        st = PartialState(cpu=not torch.cuda.is_available())
        return st.process_index, st.num_processes, st
    return 0, 1, None


def check_request(req) -> None:
    """The request against its declaration (engine.datasets.request), before anything is loaded or written."""
    from engine.datasets.request import Problem, validate
    try:
        validate(req)
    except Problem as p:
        raise InputError(None, f"{p.field}: {p.text_for(str)}") from None


def generate(req, out_dir: str | os.PathLike, on_event: OnEvent | None = None,
             cancel: CancelToken | None = None, force: bool = False, batch_size: int = 64) -> dict:
    """Generate ``req.count`` flows of ``req.label`` into ``out_dir``; returns a summary dict."""
    t0 = time.time()
    emit = on_event or (lambda ev: None)
    out = Path(out_dir)
    check_request(req)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not force)):
        raise InputError(out, "output directory exists and is not empty (use --force to replace it)")
    rank, world, state = _dist()
    dev = state.device if state is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if str(dev) == "cpu":
        from engine.model.diffusion import cpu_threads
        torch.set_num_threads(1 if world > 1 else cpu_threads())
    model, mcfg, mdir = load_model(req.model, dev)
    mhash = weights_hash(mdir)
    L = model.config.max_packets
    pmax = req.packets_max
    if pmax > L:
        if pmax != type(req).__dataclass_fields__["packets_max"].default:
            emit(Message("warning", f"packets_max {pmax} > the model's {L} packets per flow; "
                                         f"flows have at most {L}"))
        pmax = L
    pmin = min(req.packets_min, pmax)
    steps = req.steps or mcfg.get("sampling", {}).get("steps", 20)
    guidance = req.guidance if req.guidance is not None else mcfg.get("sampling", {}).get("guidance", 1.0)
    guides = guide_ids = None
    if req.like:
        g_all, id_all = load_guides(req.like, req.label, req.like_split, on_event=emit if rank == 0 else None)
        keep = usable_guides(g_all, pmin, req.transport)
        if not keep:
            raise InputError(req.like, f"guide flows: none of the {len(g_all)} flows of {req.label!r} has "
                                       f">= {pmin} packets" + ("" if req.transport == "any" else f" of {req.transport}"))
        guides, guide_ids = [g_all[k] for k in keep], [id_all[k] for k in keep]
        if rank == 0:
            emit(Message("info", f"{len(guides)} real {req.label} flows to start from ({req.like}), "
                                 f"strength {req.strength:g}"))
    stats = SampleStats()
    mine = [i for i in range(req.count) if i % world == rank]
    t_s = time.time()
    sopts = SampleOptions(seed=req.seed, steps=steps, guidance=guidance, packets_min=pmin, packets_max=pmax,
                          transport=req.transport, batch_size=batch_size, field_vocab=req.field_vocab,
                          strength=req.strength, palette_weight=req.like_values,
                          client_port_range=tuple(req.client_port_range))
    held = class_priors(model, mcfg, req.label, sopts, guided=bool(guides)).ports is not None
    flows = sample_flows(model, mcfg, req.label, mine, sopts, guides=guides, on_event=emit if rank == 0 else None,
                         cancel=cancel, stats=stats)
    sample_s = time.time() - t_s
    if state is not None:
        from accelerate.utils import gather_object
        parts = gather_object([(flows, asdict(stats))])
        if rank != 0:
            state.wait_for_everyone()
            return {"rank": rank, "flows": len(flows)}
        flows, agg = {}, SampleStats()
        for f, s in parts:
            flows.update(f)
            for k, v in s.items():
                setattr(agg, k, getattr(agg, k) + v)
        stats = agg
    mats = [flows[i] for i in range(req.count)]
    provenance = None
    if guides:
        provenance = [guide_ids[k] for k in assign_guides(len(guides), req.seed, req.count)]
    metas, sports = make_metas(req, mats, held)
    mats, metas, report = _repair(req, mats, metas, emit, sports)
    summary = _write(req, out, mats, metas, report, mhash, force, emit, cancel,
                     {"model_dir": str(mdir), "model_hash": mhash, "steps": steps, "guidance": guidance,
                      "guides": None if not guides else {"from": str(req.like), "flows": len(guides),
                                                          "strength": req.strength, "values": req.like_values,
                                                          "split": req.like_split},
                      "sampling": asdict(stats), "sample_seconds": round(sample_s, 3), "processes": world},
                     provenance)
    summary["seconds"] = round(time.time() - t0, 3)
    if state is not None:
        state.wait_for_everyone()
    emit(TaskFinished("generate", summary))
    return summary


def _write(req, out: Path, mats, metas, report, mhash, force, emit, cancel, info, provenance=None) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        (tmp / req.label).mkdir()
        rows = []
        emit(TaskStarted("write", len(mats), "flows"))
        for i, (m, meta) in enumerate(zip(mats, metas)):
            if cancel is not None:
                cancel.check()
            rel = f"{req.label}/{req.label}-{i:05d}.pcap"
            n = write_pcap(tmp / rel, [m], [meta])
            rows.append({"file": rel, "label": req.label, "packets": n, "seed": req.seed, "model_hash": mhash,
                         "synthetic": 1, "flow_id": meta.flow_id, "proto": meta.proto,
                         "init_ip": ip_str(meta.init_ip), "init_port": meta.init_port,
                         "resp_ip": ip_str(meta.resp_ip), "resp_port": meta.resp_port, "start_ns": meta.start_ns,
                         "guide": provenance[i] if provenance else ""})
            if (i + 1) % 50 == 0 or i + 1 == len(mats):
                emit(TaskProgress("write", i + 1, len(mats), "flows"))
        buf = io.StringIO()
        w = csv.DictWriter(buf, MANIFEST_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        atomic_write_bytes(tmp / "manifest.csv", [buf.getvalue().encode()])
        if report is not None:
            report.write(tmp)            # compliance.json + compliance.txt
        else:
            atomic_write_bytes(tmp / "compliance.json",
                               [json.dumps({"repaired": False, "reason": "engine.repair not installed"}).encode()])
        req_d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(req).items()}
        summary = {"out": str(out), "label": req.label, "flows": len(rows),
                   "packets": int(sum(r["packets"] for r in rows)), **info,
                   "compliance_clean": None if report is None else bool(report.clean)}
        atomic_write_bytes(tmp / "generate.json",
                           [json.dumps({"request": req_d, "summary": summary}, indent=2, default=str).encode()])
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return summary
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
