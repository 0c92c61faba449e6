"""``generate(req, out_dir)``: a GenerationRequest -> a labeled dataset of pcaps.

Output directory (renamed into place when complete)::

    OUT/<label>/<label>-00000.pcap   one capture per flow (more digits past 100,000 flows)
    OUT/manifest.csv                 file,label,packets,seed,model_hash,synthetic,flow_id,proto,...
    OUT/compliance.json              the repair step's report
    OUT/generate.json                the request, the model and the sampling statistics

Generation streams (the partial directory is engine.datasets.partial): flows are sampled, repaired and written ``WINDOW`` at a time
into ``.OUT.partial`` next to OUT (pcaps, manifest rows appended, the compliance
counts added up), so memory does not grow with the count. After each window
``.OUT.partial/.state.json`` records how far the run got; a run stopped by Ctrl-C,
SIGTERM, SIGHUP or SIGKILL is continued by the same command with ``--resume``
(as ``netdiff train --resume``), which writes the same bytes an uninterrupted run
writes: flow ``i`` depends only on the request and ``i`` (its noise seed, its
addresses and ports) and on the fixed window it was repaired in. Without
``--resume`` the run refuses to start over a dead run's flows; ``--force``
discards them.

Under ``accelerate launch`` every process samples its own slice of each window
(flow ``i`` goes to rank ``i % world``); rank 0 gathers them, assigns
addresses and times, repairs and writes, and alone holds OUT's lock.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from engine.codec.matrix import FlowMeta
from engine.errors import Cancelled, InputError
from engine.codec.layout import COL_DIR, get
from engine.constants import TCP, UDP
from engine.outdir import OutputLock, check_room, user_paths
from engine.progress import CancelToken, Message, OnEvent, TaskFinished, TaskProgress, TaskStarted, stop_deferred

from engine.model.checkpoint import load_model, tables_hash, weights_hash
from engine.model.critic import critic_hash
from engine.model.diffusion import sampling_precision
from engine.model.guide import guide_order, load_guides
from engine.model.pool import SamplePool, auto_processes
from engine.model.ports import write_ports
from engine.model.candidates import candidate_index
from engine.model.sample import (SampleOptions, SampleStats, flow_proto, held_ports, sample_flows,
                                 usable_guides)
from engine.model.streams import flow_seed
from engine.datasets.partial import WINDOW, PartialRun, fingerprint, stopped_line, window_progress



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
    if len(m) == 0 or proto not in (TCP, UDP):
        return 0, 0
    a, b = ("tcp_sprt", "tcp_dprt") if proto == TCP else ("udp_sport", "udp_dport")
    s, d = int(get(m[:1], a)[0]), int(get(m[:1], b)[0])
    return (s, d) if m[0, COL_DIR] != 0 else (d, s)


def make_metas(req, mats: list[np.ndarray], first: int = 0, start_ns: int | None = None,
               width: int = 5, held_ports: bool = False) -> tuple[list[FlowMeta], list[int], int]:
    """Addresses, ports and start times of flows ``first, first + 1, ...``; returns (metas, service
    ports, start time of the last one: the ``start_ns`` of the next call).

    Each flow draws from its own generator (seed and index), so a batch's metas do not depend
    on the batches before it, only the start time carries over: flow ``i`` starts an
    exponential gap (mean ``1 / flows_per_s``) after flow ``i - 1``, the first at ``req.start_ns``.
    """
    # pools, port range and rate were checked by the request's declaration (check_request)
    cli, srv = ([ipaddress.ip_network(c) for c in cidrs] for cidrs in (req.client_cidrs, req.server_cidrs))
    lo, hi = req.client_port_range
    t = req.start_ns if start_ns is None else int(start_ns)
    metas, sports = [], []
    for j, m in enumerate(mats):
        i = first + j
        rng = _rng(req.seed, f"meta/{i}")
        gap = rng.exponential(1e9 / req.flows_per_s)
        if i > 0:
            t += int(gap)
        proto = flow_proto(m)
        mi, mr = _model_ports(m, proto)
        sport = int(req.server_ports[int(rng.integers(len(req.server_ports)))]) if req.server_ports else mr
        cport = int(rng.integers(lo, hi + 1))
        if held_ports and not req.server_ports:
            # the sampler drew this pair from the class's flows (engine.model.ports), an ephemeral
            # client port from client_port_range included
            cport, sport = mi, mr
        metas.append(FlowMeta(f"{req.label}-{i:0{width}d}", req.label, proto, _pick_ip(rng, cli), _pick_ip(rng, srv),
                              cport if proto in (6, 17) else 0, sport if proto in (6, 17) else 0,
                              t, len(m), "netdiff-generate"))
        sports.append(sport)
        write_ports(m, proto, metas[-1].init_port, metas[-1].resp_port)
    return metas, sports, t


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
        from engine.distributed import end_group_at_exit
        st = PartialState(cpu=not torch.cuda.is_available())
        end_group_at_exit(st)
        return st.process_index, st.num_processes, st
    return 0, 1, None


def check_request(req) -> None:
    """The request against its declaration (engine.datasets.request), before anything is loaded or written."""
    from engine.datasets.request import Problem, validate
    try:
        validate(req)
    except Problem as p:
        raise InputError(None, f"{p.field}: {p.text_for(str)}") from None


def _share(state, obj):
    """rank 0's ``obj`` on every process (itself when there is one process)."""
    if state is None:
        return obj
    from accelerate.utils import broadcast_object_list
    return broadcast_object_list([obj], from_process=0)[0]


def generate(req, out_dir: str | os.PathLike, on_event: OnEvent | None = None,
             cancel: CancelToken | None = None, force: bool = False, batch_size: int | None = None,
             resume: bool = False, window: int = WINDOW, processes: int | None = None) -> dict:
    """Generate ``req.count`` flows of ``req.label`` into ``out_dir``; returns a summary dict.

    Flows are sampled, repaired and written ``window`` at a time into ``.OUT.partial``
    (memory is bounded by a window, not by the count); the directory is renamed to
    ``OUT`` when the last flow is written. An interrupted run keeps its finished windows
    there: with ``resume`` the same request continues from them and writes the same
    bytes an uninterrupted run writes; without it the run refuses to start (``force``
    discards them). ``OUT`` is locked for the whole run (:class:`engine.outdir.OutputLock`).
    On a CPU, ``processes`` sampling processes share the work (:mod:`engine.model.pool`; ``None``:
    one per core when the count is worth it, 1: this process only); the bytes do not depend on it.
    """
    t0 = time.time()
    emit = on_event or (lambda ev: None)
    out = Path(out_dir)
    check_request(req)
    if window < 1:
        raise InputError(None, f"window {window}: flows are written at least 1 at a time")
    # a window's flows are held with all their candidates: memory stays a window's worth of draws
    window = max(1, window // req.draws)
    rank, world, state = _dist()
    lock, plan, err = None, None, None
    if rank == 0:
        try:
            check_room(out)      # a read-only or impossible location fails before anything is loaded
            lock = OutputLock(out).acquire()
        except InputError as e:
            err = e
    try:
        if rank == 0 and err is None:
            try:
                plan = PartialRun.open(req, out, force, resume, emit, lock, window)
            except InputError as e:
                err = e
        if _share(state, err is not None):
            if err is not None:
                raise err
            return {"rank": rank, "flows": 0, "error": True}
        return _generate(req, out, plan, emit, cancel, batch_size, rank, world, state, t0, window, processes)
    except (KeyboardInterrupt, Cancelled) as e:
        if rank != 0 or lock is None:
            raise
        raise Cancelled(stopped_line(out, plan, req.count)) from e
    finally:
        if lock is not None:
            lock.release()


def _generate(req, out: Path, plan, emit, cancel, batch_size, rank, world, state, t0, window, processes) -> dict:
    from engine.model.sd.sample import sd_run_dir
    if sd_run_dir(req.model) is not None:      # a Stable Diffusion LoRA run (engine.model.sd)
        from engine.model.sd.sample import generate_sd
        return generate_sd(req, out, plan, emit, cancel, batch_size, t0, window)
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
    precision = sampling_precision(dev)
    guidance = req.guidance if req.guidance is not None else mcfg.get("sampling", {}).get("guidance", 1.0)
    guides, guide_ids = class_guides(req, pmin, emit if rank == 0 else None)
    if guides:
        if rank == 0:
            emit(Message("info", f"{len(guides)} real {req.label} flows to start from ({req.like}), "
                                 f"strength {req.strength:g}"))
    critic = getattr(model, "critic", None)
    picks = req.draws > 1 and not guides and critic is not None and critic.knows(req.label)
    if req.draws > 1 and not picks and rank == 0:
        why = ("guided flows keep their real flow's shape" if guides else
               "the model has no critic (scripts/fit_critic.py fits one)" if critic is None else
               f"the model's critic was not fitted on {req.label!r}, or on too few of its real flows")
        emit(Message("warning", f"candidates {req.candidates}, decodes {req.decodes}: each flow is drawn "
                                f"once ({why})"))
    info = {"model_dir": str(mdir), "model_hash": mhash, "steps": steps, "guidance": guidance,
            "candidates": req.candidates if picks else 1, "decodes": req.decodes if picks else 1,
            "guides": None if not guides else {"from": str(req.like), "flows": len(guides),
                                                "strength": req.strength, "values": req.like_values,
                                                "split": req.like_split},
            "processes": world, "precision": precision}
    start = 0
    if rank == 0:
        try:
            start = plan.begin(fingerprint(req, mhash, steps, guidance, guides, window, precision,
                                           tables_hash(mcfg), critic_hash(mdir) if picks else None), emit)
        except InputError as e:
            start = e
    start = _share(state, start)
    if isinstance(start, InputError):
        if rank == 0:
            raise start
        return {"rank": rank, "flows": 0, "error": True}
    order = guide_order(len(guides), req.seed) if guides else None
    count, mine_total = req.count, 0
    emit(TaskStarted("generate", count, "flows"))
    t_s = time.time()
    sopts = SampleOptions(seed=req.seed, steps=steps, guidance=guidance, packets_min=pmin, packets_max=pmax,
                          transport=req.transport, batch_size=batch_size, field_vocab=req.field_vocab,
                          strength=req.strength, palette_weight=req.like_values,
                          client_port_range=tuple(req.client_port_range), precision=precision,
                          candidates=req.draws if picks else 1,
                          decodes=req.decodes if picks else 1)
    k = sopts.candidates
    held = held_ports(model, mcfg, req.label, sopts) is not None     # the tables load in the samplers
    nproc = 1
    if world == 1 and str(dev) == "cpu":
        nproc = processes if processes else auto_processes((count - start) * (k // sopts.decodes))
        info["processes"] = nproc
    try:
        with (SamplePool(mdir, req.label, sopts, nproc, guides) if nproc > 1 else nullcontext()) as pool:
            def window_of(a):
                return [candidate_index(i, c, k) for i in range(a, min(a + window, count)) for c in range(k)]
            handle = pool.submit(window_of(start)) if pool is not None and start < count else None
            for a in range(start, count, window):
                if cancel is not None:
                    cancel.check()
                b = min(a + window, count)
                stats = SampleStats()
                if pool is not None:
                    flows = pool.collect(handle, stats, window_progress(emit, a, count, 1, k), cancel)
                    if b < count:       # the workers sample the next window while this one is repaired and written
                        handle = pool.submit(window_of(b))
                    mine_total += len(flows)
                else:
                    mine = [candidate_index(i, c, k) for i in range(a, b) if i % world == rank for c in range(k)]
                    flows = sample_flows(model, mcfg, req.label, mine, sopts, guides=guides,
                                         on_event=window_progress(emit, a, count, world, k) if rank == 0 else None,
                                         cancel=cancel, stats=stats)
                    mine_total += len(flows)
                    if state is not None:
                        from accelerate.utils import gather_object
                        parts = gather_object([(flows, asdict(stats))])
                        if rank != 0:
                            continue
                        flows, stats = {}, SampleStats()
                        for f, st in parts:
                            flows.update(f)
                            stats.add(st)
                mats = ([flows[i] for i in range(a, b)] if k == 1
                        else pick_candidates(req, critic, flows, a, b, k, plan, held))
                write_window(req, plan, mats, a, emit, mhash, stats, held, order, guide_ids)
                del flows
    except OSError as e:
        if rank != 0:
            raise
        with user_paths(out):
            raise OSError(e.errno, f"{e.strerror} ({plan.done} of {count} flows are kept; once that is "
                                   f"fixed, the same command with --resume continues)"
                          if e.strerror else str(e), e.filename) from None
    if state is not None and rank != 0:
        state.wait_for_everyone()
        return {"rank": rank, "flows": mine_total}
    info["sample_seconds"] = round(time.time() - t_s, 3)
    with user_paths(out):
        summary = plan.finish(req, info)
    summary["seconds"] = round(time.time() - t0, 3)
    if state is not None:
        state.wait_for_everyone()
    emit(TaskFinished("generate", summary))
    return summary


def class_guides(req, pmin: int, on_event: OnEvent | None) -> tuple[list | None, list | None]:
    """The real flows of ``req.label`` in ``req.like`` a sampler can start from (at least ``pmin`` packets,
    of the requested transport) and their ids; (None, None) without ``like``."""
    if not req.like:
        return None, None
    g_all, id_all = load_guides(req.like, req.label, req.like_split, on_event=on_event)
    keep = usable_guides(g_all, pmin, req.transport)
    if not keep:
        raise InputError(req.like, f"guide flows: none of the {len(g_all)} flows of {req.label!r} has "
                                   f">= {pmin} packets" + ("" if req.transport == "any" else f" of {req.transport}"))
    return [g_all[k] for k in keep], [id_all[k] for k in keep]


def pick_candidates(req, critic, flows: dict[int, np.ndarray], first: int, last: int, k: int, plan,
                    held_ports: bool) -> list[np.ndarray]:
    """Flows ``first .. last - 1``, each one of its ``k`` candidates (``flows``, by
    :func:`engine.model.sample.candidate_index`) drawn by the critic (:mod:`engine.model.critic`).

    The critic judges a candidate as it will be written: with the flow's addresses, ports and
    start, repaired (the repair settles sizes, flags and options that the sampler leaves
    rough, and the critic was fitted on repaired flows). The kept candidate goes back
    unrepaired: :func:`write_window` repairs it again, to the same bytes. Flow ``i``'s draw
    comes from its own generator, so its pick does not depend on the window or the processes.
    """
    from dataclasses import replace
    from engine.model.critic import draw
    idx = range(first, last)
    mats, metas, sports = [], [], []
    for c in range(k):
        mc = [flows[candidate_index(i, c, k)].copy() for i in idx]       # make_metas writes the ports in
        me, sp, _ = make_metas(req, mc, first, plan.next_start, plan.width, held_ports)
        mats += mc
        metas += me
        sports += sp
    # every candidate in one repair: a flow's candidates share its 5-tuple, which flow_unique would
    # move apart, and that rule only moves ports, which the critic does not read (it is per flow
    # otherwise: the same bytes as repairing each candidate group on its own, k calls)
    mats, _, _ = _repair(replace(req, disabled_rules=tuple(req.disabled_rules) + ("flow_unique",)),
                         mats, metas, lambda ev: None, sports)
    z = critic.logits(req.label, mats).reshape(k, len(idx)).T               # (flows, k)
    return [flows[candidate_index(i, draw(z[j], np.random.default_rng(flow_seed(req.seed, i, -1))), k)]
            for j, i in enumerate(idx)]


def write_window(req, plan, mats: list, first: int, emit: OnEvent, mhash: str, stats, held_ports: bool,
                 order, guide_ids) -> None:
    """Flows ``first ..`` of the run as sampled: addresses and ports, repair, provenance, then onto disk."""
    last = first + len(mats)
    metas, sports, next_start = make_metas(req, mats, first, plan.next_start, plan.width, held_ports)
    mats, metas, report = _repair(req, mats, metas, emit, sports)
    prov = [guide_ids[order[i % len(order)]] for i in range(first, last)] if guide_ids else None
    with stop_deferred():
        plan.write_window(first, mats, metas, report, mhash, stats, next_start, prov)
    emit(TaskProgress("generate", last, req.count, "flows"))
