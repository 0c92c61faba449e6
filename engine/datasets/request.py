"""What to generate for one class: the contract between recipes and the generator.

A recipe (TOML, :mod:`engine.datasets.recipes`) is parsed into a
:class:`GenerationRequest`; ``netdiff generate --label`` builds one with
defaults. The generator (:mod:`engine.datasets.generate`) needs nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GenerationRequest:
    """One class's generation job.

    Attributes:
        label: class label the model is conditioned on (must be in the model's class list).
        count: number of flows to generate.
        model: checkpoint reference: ``None``/"default" for the shipped model,
            a local directory, or ``hf://org/name@revision`` for a Hub checkpoint.
        prompt: text prompt for text-conditioned models (unused by the native model).
        packets_min, packets_max: packets per flow; flows are cut or regenerated to fit.
        transport: "tcp", "udp", "icmp" or "any" (whatever the model samples).
        server_ports: service ports of the responder (one picked per flow); empty = keep the model's.
        client_port_range: ephemeral port range of the initiator.
        client_cidrs, server_cidrs: address pools; addresses come from here, never from the model.
        mtu: largest IPv4 total length.
        start_ns: time of the first flow's first packet (ns since the epoch).
        flows_per_s: mean flow arrival rate (Poisson) for flow start times.
        seed: everything random derives from it: same request, same bytes.
        steps: sampling steps (None = model default).
        guidance: classifier-free guidance scale (None = model default).
        disabled_rules: repair rules switched off by name.
        allow_fragments: keep IPv4 fragments instead of repairing them away.
        field_vocab: decode header fields onto the values the class uses in training
            (checkpoints with a ``vocab``; engine.model.vocab); off = the model's raw bits.
        like: real flows of the class to start from (engine.model.guide): a capture file, a
            directory of the class's captures, a labeled capture directory or a netdiff
            encode dataset; None = sample from noise.
        like_split: a split file; its test flows are never used as guides.
        strength: how far each guide is noised before the model denoises it, in (0, 1]:
            1 keeps only its length and transport, lower keeps more of it.
        like_values: weight of the guide's own field values (sizes, TTL, window, flags, gap
            scale) against the class's in the vocabulary prior (engine.model.vocab); 0 = the
            class's alone.
    """

    label: str
    count: int = 10
    model: str | None = None
    prompt: str = ""
    packets_min: int = 2
    packets_max: int = 128
    transport: str = "any"
    server_ports: tuple[int, ...] = ()
    client_port_range: tuple[int, int] = (49152, 65535)
    client_cidrs: tuple[str, ...] = ("10.0.0.0/16",)
    server_cidrs: tuple[str, ...] = ("198.51.100.0/24",)
    mtu: int = 1500
    start_ns: int = 1_700_000_000_000_000_000
    flows_per_s: float = 1.0
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    disabled_rules: tuple[str, ...] = ()
    allow_fragments: bool = False
    field_vocab: bool = True
    like: str | None = None
    like_split: str | None = None
    strength: float = 0.5
    like_values: float = 1.0
    extra: dict = field(default_factory=dict)
