"""Sampling flows from the native model: seeds, batches, resampling, process slices.

Flow ``i`` of a request draws its initial noise from ``flow_seed(seed, i,
attempt)``; a flow that comes out too short (or, with a forced transport,
of the wrong protocol) is drawn again with the next attempt number. The
result for a given request therefore does not depend on timing, and each
process of an ``accelerate launch`` run can take a disjoint slice of the
flow indices (``i % world == rank``).
"""

from __future__ import annotations


from dataclasses import dataclass

import numpy as np
import torch

from engine.codec.layout import COL_DIR
from engine.codec.matrix import TRANSPORT_COLS, row_proto
from engine.constants import PROTO_NUM, TCP, UDP
from engine.errors import InputError
from engine.progress import CancelToken, OnEvent, TaskProgress, TaskStarted, check_stop

from engine.model.batches import CPU_BATCH, GPU_BATCH, Pending, batch_candidates
from engine.model.candidates import flow_of, noise_index
from engine.model.guide import assign_guides
from engine.model.diffusion import cut_at_padding, sample, snap
from engine.model.directions import check_directions, check_heads, draw_head, draw_initiators, gumbel_keys, head_keys
from engine.model.lengths import draw_shape, length_bucket, presence_mask
from engine.model.ports import check_table, draw_ports, guide_ports, write_ports
from engine.model.vocab import SPANS
from engine.model.vocab import decode as decode_vocab
from engine.model.calibrate import check_calibration
from engine.model import streams
from engine.model.profiles import FLOW_UNIFORMS, Profiles
from engine.model.streams import flow_seed
from engine.model.tcp_isn import write_initial_numbers
from engine.model.tcp_options import OptionLists, decode_tcp_options
from engine.model.vocab import palette

#: a TCP row's option list decides its data offset, so the offset's uniform draws the list
TCP_OPTIONS_U = list(SPANS).index("tcp_doff")


def flow_proto(m: np.ndarray) -> int:
    """A flow's transport as the repair step and the decoder see it: its first packet's
    (:func:`engine.codec.matrix.row_proto`): 6, 17, 1, or 0."""
    return int(row_proto(m[:1])[0]) if len(m) else 0


@dataclass
class SampleStats:
    drawn: int = 0          # flows sampled in total (with redraws)
    redrawn_short: int = 0
    redrawn_transport: int = 0
    gave_up: int = 0        # flows kept after max attempts without meeting the constraints

    def add(self, counts: dict) -> None:
        """Add another process's counts (``asdict`` of its stats: what crosses a process boundary)."""
        for name, v in counts.items():
            setattr(self, name, getattr(self, name) + v)


@dataclass(frozen=True)
class SampleOptions:
    """How a request's flows are sampled (everything but the model, the class and which flows).

    Attributes:
        seed: the request's seed; flow ``i``'s draws come from ``flow_seed(seed, i, attempt)``.
        steps, guidance, solver: the diffusion sampler's (solver ``None`` = the checkpoint's).
        packets_min, packets_max: a flow has at most ``packets_max`` packets and is drawn again
            (up to ``max_attempts`` times) when shorter than ``packets_min``.
        transport: "tcp", "udp", "icmp" or "any"; a flow of another transport is drawn again.
        batch_size: samples denoised together, each with its ``decodes`` candidates (``None``:
            :data:`~engine.model.batches.CPU_BATCH` on a CPU, ``GPU_BATCH`` on a GPU;
            :func:`engine.model.batches.batch_candidates`).
        length_prior: draw each flow's length and transport from the class's training flows
            (:mod:`engine.model.lengths`; ``presence_input`` checkpoints with a ``lengths`` table).
        field_vocab: decode header fields onto the class's values (:mod:`engine.model.vocab`;
            unguided flows from their flow profile, :mod:`engine.model.profiles`, with the
            checkpoint's calibration, :mod:`engine.model.calibrate`) and hold each flow's ports
            to a pair the class uses (:mod:`engine.model.ports`); off = the model's raw bits.
        vocab_draw: draw vocabulary values from the posterior (else the nearest value).
        strength, palette_weight: guided sampling (``guides``): how far each guide is noised, and
            the weight of its own field values in the vocabulary prior.
        client_port_range: where an ephemeral (client) port of a held port pair is drawn from.
        precision: the model's matrix products, "fp32" or "bf16" (``None``: the machine's choice,
            :func:`engine.model.diffusion.sampling_precision`).
        candidates: draws per flow of the request (:func:`engine.model.candidates.candidate_index`): a candidate takes
            its flow's length and transport, so the critic that picks among them picks the
            packets, not the shape (which the class's shape prior already matches).
        decodes: candidates decoded from one sample (:func:`engine.model.candidates.noise_index`): candidate ``c`` shares
            the noise, directions and ports of candidate ``c - c % decodes`` and differs in the
            field decoder's draws only (flow profile, values, option lists), which cost ~2 % of
            a sample; ``candidates`` is a multiple of it.
    """

    seed: int = 0
    steps: int = 20
    guidance: float = 1.0
    packets_min: int = 1
    packets_max: int = 128
    transport: str = "any"
    batch_size: int | None = None
    max_attempts: int = 8
    solver: str | None = None
    length_prior: bool = True
    field_vocab: bool = True
    vocab_draw: bool = True
    strength: float = 0.5
    palette_weight: float = 0.0
    client_port_range: tuple[int, int] = (49152, 65535)
    precision: str | None = None
    candidates: int = 1
    decodes: int = 1


@dataclass
class ClassPriors:
    """What a class's flows are held to, read once from the checkpoint's config."""

    index: int                          # class index
    max_packets: int                    # L, the model's rows
    shape_input: bool                   # a presence_input model: told each flow's length
    lengths: list | None                # the class's shape prior (engine.model.lengths)
    directions: np.ndarray | None       # the class's initiator counts (engine.model.directions)
    heads: np.ndarray | None            # the directions its flows open with (engine.model.directions)
    vocab: dict | None                  # the class's field vocabularies (engine.model.vocab)
    joint: dict | None                  # the class's paired spans (engine.model.vocab.JOINT)
    ports: list | None                  # the class's port prior (engine.model.ports), when held
    profiles: Profiles | None           # the class's flow profiles (engine.model.profiles)
    calibration: dict | None            # the class's decoder weights (engine.model.calibrate)
    tcp_options: OptionLists | None     # the class's TCP option lists (engine.model.tcp_options)
    want: int | None                    # the requested transport (6, 17, 1) or None


def held_ports(model, model_cfg: dict, label: str, opts: SampleOptions) -> list | None:
    """The class's port table when the sampler holds flows to it (a shape-input model decoding
    fields onto the class's values, and a checkpoint that has the table), else None; one line
    for a label the model does not have."""
    if label not in model_cfg["classes"]:
        raise InputError(None, f"label {label!r} is not one of the model's classes: {', '.join(model_cfg['classes'])}")
    ports = (model_cfg.get("ports") or {}).get(label)
    held = bool(getattr(model.config, "presence_input", False)) and opts.field_vocab and ports is not None
    return check_table(ports, label) if held else None


def class_priors(model, model_cfg: dict, label: str, opts: SampleOptions) -> ClassPriors:
    """Resolve the class and the tables that apply to a request."""
    ports = held_ports(model, model_cfg, label, opts)          # checks the label
    # a presence_input model is told each flow's length. Imposing lengths on a model trained
    # without them measured worse than leaving them to it (mean JSD 0.185 vs 0.117), so
    # older checkpoints keep deciding presence themselves.
    shape_input = bool(getattr(model.config, "presence_input", False))
    vocab = (model_cfg.get("vocab") or {}).get(label) if opts.field_vocab else None
    prof = (model_cfg.get("profiles") or {}).get(label) if vocab else None
    cal = (model_cfg.get("calibration") or {}).get(label) if vocab else None
    dirs = (model_cfg.get("directions") or {}).get(label) if (shape_input and opts.length_prior) else None
    heads = (model_cfg.get("heads") or {}).get(label) if dirs is not None else None
    tcpo = (model_cfg.get("tcp_options") or {}).get(label) if vocab else None
    return ClassPriors(
        index=model_cfg["classes"].index(label), max_packets=int(model.config.max_packets), shape_input=shape_input,
        lengths=(model_cfg.get("lengths") or {}).get(label) if opts.length_prior else None,
        directions=None if dirs is None else check_directions(dirs, label),
        heads=None if heads is None else check_heads(heads, label),
        vocab=vocab,
        joint=(model_cfg.get("joint") or {}).get(label) if opts.field_vocab else None,
        ports=ports,
        profiles=None if prof is None else Profiles(prof, vocab, label),
        calibration=None if cal is None else check_calibration(cal, vocab, label),
        tcp_options=None if tcpo is None else OptionLists(tcpo, label),
        want=PROTO_NUM.get(opts.transport))


@dataclass
class _Batch:
    """One batch's flows and what each is held to."""

    chunk: list[tuple[int, int]]        # (flow index, attempt)
    seeds: list[int]                    # the field decoder's draws
    noise: list[int]                    # the sample's noise, shape, directions, ports (:func:`engine.model.candidates.noise_index`)
    rows: torch.Tensor | None = None    # (B, L) packet rows
    protos: torch.Tensor | None = None  # (B,) transport
    ports: list | None = None           # per flow (protocol, initiator port, responder port) or None
    init: torch.Tensor | None = None    # (B, L, width) guide flows
    guides: list | None = None          # the guide flows themselves
    length: int | None = None           # rows sampled (the batch's length bucket); None: the model's
    shapes: list | None = None          # per flow (length, transport) drawn by its seed (no guides)
    initiators: torch.Tensor | None = None  # (B,) the initiator's packets per flow (-1: the model's)
    heads: list | None = None           # per flow the directions of its first packets, or None


def _conditions(pri: ClassPriors, opts: SampleOptions, b: _Batch, guides, assigned, width: int) -> _Batch:
    """Each flow's shape (and ports): its guide's, else drawn from the class's priors by its seed."""
    L = pri.max_packets
    if guides:
        b.guides = [guides[assigned[i]][:min(opts.packets_max, L)] for i, _ in b.chunk]
        buf = np.full((len(b.chunk), L, width), -1, np.int8)
        for j, m in enumerate(b.guides):
            buf[j, :len(m)] = m
        b.init = torch.from_numpy(buf).float()
        if pri.shape_input:
            b.rows = presence_mask([len(m) for m in b.guides], L)
            b.protos = torch.tensor([pri.want or majority_proto(m) for m in b.guides])
            if pri.ports is not None:
                b.ports = [guide_ports(m, pri.ports, s, opts.client_port_range) for m, s in zip(b.guides, b.noise)]
    elif pri.shape_input:
        shapes = b.shapes
        b.rows = presence_mask([n for n, _ in shapes], L)
        b.protos = torch.tensor([p for _, p in shapes])
        if pri.directions is not None:
            k = [draw_initiators(pri.directions, s, n, p) for s, (n, p) in zip(b.noise, shapes)]
            b.initiators = torch.tensor([-1 if v is None else v for v in k])
            if pri.heads is not None:
                b.heads = [None if v is None else draw_head(pri.heads, s, n, p, v)
                           for v, s, (n, p) in zip(k, b.noise, shapes)]
        if pri.ports is not None:
            pairs = [draw_ports(pri.ports, s, n, p, opts.client_port_range) for s, (n, p) in zip(b.noise, shapes)]
            b.ports = [None if pp is None else (p, *pp) for pp, (_, p) in zip(pairs, shapes)]
    return b


def _denoise(model, model_cfg: dict, pri: ClassPriors, opts: SampleOptions, b: _Batch, solver: str) -> np.ndarray:
    """Sample a batch, decode its fields onto the class's vocabularies, snap: ``(B, L, width)`` int8."""
    labels = torch.full((len(b.chunk),), pri.index, dtype=torch.long)
    held = None
    if b.ports is not None:
        held = torch.tensor([[-1, -1] if q is None else [q[1], q[2]] for q in b.ports], dtype=torch.long)
    n = b.rows.shape[1] if b.rows is not None else pri.max_packets
    rows, init = b.rows, b.init
    if b.length is not None and b.length < n:
        rows, init = rows[:, : b.length], None if init is None else init[:, : b.length]
    dirs = None
    if b.initiators is not None:
        keys = gumbel_keys(b.noise, pri.max_packets)[:, : rows.shape[1]]
        dirs = (b.initiators, keys if b.heads is None else head_keys(keys, b.heads))
    # candidates decoded from one sample share everything the sampler is given: sample it once
    _, first, back = np.unique(np.asarray(b.noise, np.uint64), return_index=True, return_inverse=True)
    one = None if len(first) == len(b.noise) else torch.from_numpy(first)

    def sub(t):
        return t if (t is None or one is None) else t[one]
    x = sample(model, model_cfg["scheduler"], sub(labels), [b.noise[j] for j in first] if one is not None else b.noise,
               opts.steps, opts.guidance, solver, rows=sub(rows), protos=sub(b.protos), init=sub(init),
               strength=opts.strength, ports=sub(held), precision=opts.precision,
               directions=None if dirs is None else (sub(dirs[0]), sub(dirs[1])))
    same = None
    if one is not None:
        x = x[torch.from_numpy(back.reshape(-1))]
        same = first[back.reshape(-1)]
    sampled = x.shape[1]
    if pri.vocab:
        # each flow's draws come from its own seed, like its noise; a row's uniforms are the same
        # whatever bucket the flow is sampled in (a generator fills row by row: the first rows of
        # a draw for all L rows are a draw for the rows sampled)
        u = np.stack([streams.of(s, streams.FIELD_UNIFORMS).random((sampled, len(SPANS)))
                      for s in b.seeds]) if opts.vocab_draw else None
        pals = [palette(m) for m in b.guides] if (b.guides and opts.palette_weight > 0) else None
        fu = np.stack([streams.of(s, streams.FLOW_DRAWS).random(FLOW_UNIFORMS) for s in b.seeds])
        x = decode_vocab(x.float().cpu().numpy(), pri.vocab, u, pals, opts.palette_weight, pri.joint,
                         pri.profiles, fu, pri.calibration, same)
        if pri.tcp_options is not None and not b.guides:      # a guided flow keeps its guide's lists
            decode_tcp_options(x, pri.tcp_options, None if u is None else u[..., TCP_OPTIONS_U])
        if not b.guides:                                      # and its guide's sequence numbers
            write_initial_numbers(x, b.seeds)
    out = snap(x)
    if sampled < n:         # the rows not sampled are padding (added after decoding: not decoded)
        out = np.concatenate([out, np.full((len(out), n - sampled, out.shape[2]), -1, np.int8)], 1)
    return out


def _hold_ports(m: np.ndarray, pri: ClassPriors, opts: SampleOptions, seed: int, drawn) -> np.ndarray:
    """The final flow with its held ports written exactly (the sampler held them on its estimates;
    the last step's rounding, a rewritten transport, could still move a bit). A flow that ended
    up on another transport than its draw gets a pair of that transport, from the same seed."""
    p = flow_proto(m)
    if pri.ports is None or p not in (6, 17):
        return m
    pair = drawn[1:] if (drawn is not None and drawn[0] == p) else draw_ports(pri.ports, seed, len(m), p,
                                                                              opts.client_port_range)
    if pair is not None:
        m = m.copy()
        write_ports(m, p, *pair)
    return m


def _shape_of(flow: tuple[int, int], pri: ClassPriors, opts: SampleOptions, guides, assigned) -> tuple[int, int] | None:
    """``(length, transport)`` that ``(index, attempt)`` is held to: its guide's length (transport 0:
    :func:`_conditions` reads it from the guide), else the shape its seed draws; None for a model
    not told the length."""
    L = pri.max_packets
    if not pri.shape_input:
        return None
    i, a = flow
    if guides:
        return len(guides[assigned[i]][:min(opts.packets_max, L)]), 0
    i = flow_of(i, opts.candidates)
    return draw_shape(pri.lengths, flow_seed(opts.seed, i, a), opts.packets_min, min(opts.packets_max, L), pri.want)


def sample_flows(model, model_cfg: dict, label: str, indices: list[int], opts: SampleOptions,
                 guides: list[np.ndarray] | None = None, on_event: OnEvent | None = None,
                 cancel: CancelToken | None = None, stats: SampleStats | None = None) -> dict[int, np.ndarray]:
    """Sample the flows ``indices`` of a request; returns ``{index: (packets, width) int8}``.

    Flows are snapped to {-1, 0, 1}, stripped of padding rows (wherever they are), cut at
    ``packets_max`` rows; flows shorter than ``packets_min`` (or not of ``transport``) are
    drawn again, up to ``max_attempts`` times. A flow's result depends on its index and the
    options only, so callers may pass the indices in any batches or process slices.

    For a ``presence_input`` model each flow's length and transport are drawn
    first (:mod:`engine.model.lengths`): from the class's training flows cut to
    ``[packets_min, packets_max]`` and ``transport`` (with ``length_prior`` and a
    checkpoint that has them), else the length uniformly over that range; the
    sampler holds the flow to that shape. With ``field_vocab``, header fields are
    decoded onto the values the class uses (:mod:`engine.model.vocab`) and the
    port pair is drawn with the shape and held (:mod:`engine.model.ports`), for
    checkpoints that have those tables.
    With ``guides`` (real flows of the class, :func:`usable_guides`), flow ``i`` starts from
    guide ``assign_guides(len(guides), seed, ...)[i]`` noised to ``strength``
    (:mod:`engine.model.guide`) and keeps that flow's length, transport and server port.
    """
    pri = class_priors(model, model_cfg, label, opts)
    solver = opts.solver or model_cfg.get("sampling", {}).get("solver", "dpm")
    stats = stats if stats is not None else SampleStats()
    emit = on_event or (lambda ev: None)
    want, pmin = pri.want, opts.packets_min
    total = len(indices)
    emit(TaskStarted("sample", total, "flows"))
    done: dict[int, np.ndarray] = {}
    best: dict[int, tuple[np.ndarray, int, tuple | None]] = {}
    assigned = assign_guides(len(guides), opts.seed, max(indices) + 1) if (guides and indices) else None
    shapes: dict[tuple[int, int], tuple[int, int] | None] = {}     # each flow's, drawn once

    def shape(f: tuple[int, int]) -> tuple[int, int] | None:
        if f not in shapes:
            shapes[f] = _shape_of(f, pri, opts, guides, assigned)
        return shapes[f]

    def bucket(f: tuple[int, int]) -> int:
        sh = shape(f)
        return pri.max_packets if sh is None else length_bucket(sh[0], pri.max_packets)
    pending = Pending([(i, 0) for i in indices], bucket)
    bs = opts.batch_size or (CPU_BATCH if next(model.parameters()).device.type == "cpu" else GPU_BATCH)
    while pending:
        check_stop()
        if cancel is not None:
            cancel.check()
        chunk, length = pending.take(batch_candidates(bs, opts.decodes))
        b = _Batch(chunk, [flow_seed(opts.seed, i, a) for i, a in chunk],
                   [flow_seed(opts.seed, noise_index(i, opts.candidates, opts.decodes), a) for i, a in chunk],
                   length=length, shapes=[shape(f) for f in chunk])
        b = _conditions(pri, opts, b, guides, assigned, int(model.config.width))
        x = _denoise(model, model_cfg, pri, opts, b, solver)
        stats.drawn += len(chunk)
        retry = []
        for j, ((i, a), m) in enumerate(zip(chunk, x)):
            m = cut_at_padding(m)[:opts.packets_max]
            drawn = b.ports[j] if b.ports is not None else None
            short = len(m) < pmin
            wrong = want is not None and flow_proto(m) != want
            if not (short or wrong):
                # a flow is one 5-tuple, so one transport: odd rows of another (or of none) are rewritten
                m = force_transport(m, want if want is not None else majority_proto(m))
                done[i] = _hold_ports(m, pri, opts, b.noise[j], drawn)
                continue
            if i not in best or _better(m, best[i][0], pmin, want):
                best[i] = (m, b.noise[j], drawn)
            if a + 1 < opts.max_attempts:
                retry.append((i, a + 1))
                stats.redrawn_short += int(short)
                stats.redrawn_transport += int(wrong and not short)
            else:
                m, s, drawn = best[i]
                m = force_transport(m, want if want is not None else majority_proto(m))
                done[i] = _hold_ports(m, pri, opts, s, drawn)
                stats.gave_up += 1
        pending.redraw(retry)
        emit(TaskProgress("sample", len(done), total, "flows"))
    return done


def usable_guides(guides: list[np.ndarray], packets_min: int, transport: str = "any") -> list[int]:
    """Indices of the guide flows a request can start from: at least ``packets_min``
    packets and, unless ``transport`` is "any", of that transport."""
    want = PROTO_NUM.get(transport)
    return [k for k, m in enumerate(guides)
            if len(m) >= packets_min and (want is None or majority_proto(m) == want)]


def majority_proto(m: np.ndarray) -> int:
    """The transport most rows of a flow have (6, 17 or 1; ties by the first such row),
    0 when no row has one."""
    rp = row_proto(m)
    rp = rp[rp != 0]
    if len(rp) == 0:
        return 0
    vals, first, n = np.unique(rp, return_index=True, return_counts=True)
    return int(vals[np.lexsort((first, -n))[0]])


def force_transport(m: np.ndarray, want: int) -> np.ndarray:
    """Rewrite the transport headers of every row that is not protocol ``want`` (6, 17 or 1).

    Used when rejection sampling never drew the wanted transport, and for the
    odd rows of another transport inside an accepted flow: ports carry over
    (from the row, else from the flow's first row of the wanted transport),
    everything else starts neutral and the repair rules make it valid
    (lengths, handshake, sequence numbers, checksums).
    """
    if want not in (1, 6, 17):
        return m
    from engine.codec.layout import ABSENT, LAYOUT, get, put
    rp = row_proto(m)
    bad = rp != want
    cols = TRANSPORT_COLS
    # rows of the wanted transport that also carry another transport's block, or another protocol number
    other = np.zeros(len(m), bool)
    for p, col in cols.items():
        if p != want:
            other |= (m[:, col] != ABSENT).any(axis=1)
    mixed = ~bad & (other | (get(m, "ipv4_proto") != want))
    if len(m) == 0 or not (bad.any() or mixed.any()):
        return m
    m = m.copy()
    if mixed.any():
        for p, col in cols.items():
            if p != want:
                m[np.ix_(np.nonzero(mixed)[0], np.arange(col.start, col.stop))] = ABSENT
        put(m, "ipv4_proto", want, np.nonzero(mixed)[0])
    if not bad.any():
        return m
    tcp, udp = rp == TCP, rp == UDP
    sport = np.where(tcp, get(m, "tcp_sprt"), np.where(udp, get(m, "udp_sport"), 0))
    dport = np.where(tcp, get(m, "tcp_dprt"), np.where(udp, get(m, "udp_dport"), 0))
    good = np.nonzero(~bad & ((rp == TCP) | (rp == UDP)))[0]
    if len(good):
        g = good[0]
        fwd = m[g, COL_DIR] != 0
        i_port, r_port = (sport[g], dport[g]) if fwd else (dport[g], sport[g])
        dirs = m[:, COL_DIR] != 0
        nop = (sport == 0) & (dport == 0)
        sport = np.where(nop, np.where(dirs, i_port, r_port), sport)
        dport = np.where(nop, np.where(dirs, r_port, i_port), dport)
    rows = np.nonzero(bad)[0]
    for blk in ("tcp", "udp", "icmp"):
        m[np.ix_(rows, np.arange(LAYOUT.block(blk).start, LAYOUT.block(blk).stop))] = ABSENT
    put(m, "ipv4_proto", want, rows)
    if want == UDP:
        m[np.ix_(rows, np.arange(LAYOUT.block("udp").start, LAYOUT.block("udp").stop))] = 0
        put(m, "udp_sport", sport[rows], rows)
        put(m, "udp_dport", dport[rows], rows)
    elif want == TCP:
        blk, opt = LAYOUT.block("tcp"), LAYOUT.cols("tcp_opt")
        m[np.ix_(rows, np.arange(blk.start, opt.start))] = 0
        put(m, "tcp_sprt", sport[rows], rows)
        put(m, "tcp_dprt", dport[rows], rows)
        put(m, "tcp_doff", 5, rows)
        put(m, "tcp_ackf", 1, rows)
        put(m, "tcp_wsize", 65535, rows)
    else:
        m[np.ix_(rows, np.arange(LAYOUT.block("icmp").start, LAYOUT.block("icmp").stop))] = 0
        put(m, "icmp_type", 8, rows)
    return m


def _better(m: np.ndarray, old: np.ndarray, pmin: int, want: int | None) -> bool:
    def score(x):
        return (want is None or flow_proto(x) == want, min(len(x), pmin), len(x))
    return score(m) > score(old)
