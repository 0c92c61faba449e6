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
        classes: export only these classes (empty: every class of the inputs).
        max_per_class: at most this many flows of each class, the first ones in input order
            (None: all). Synthetic flows are independent samples, so the first N are a fair draw.
    """

    pcapng: bool = False
    split: float | None = None
    seed: int = 0
    flow_config: FlowConfig = field(default_factory=FlowConfig)
    classes: tuple[str, ...] = ()
    max_per_class: int | None = None

    def selection(self) -> dict:
        """The class selection as manifest.json and the resume fingerprint record it ({} when unused,
        so an export without it writes the same bytes as before it existed)."""
        sel = {}
        if self.classes:
            sel["classes"] = sorted(self.classes)
        if self.max_per_class is not None:
            sel["max_per_class"] = self.max_per_class
        return sel
