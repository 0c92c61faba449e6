"""What an export writes (its options are part of the resume fingerprint and of manifest.json)."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.codec.flows import FlowConfig

EXPORT_VERSION = 1


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
