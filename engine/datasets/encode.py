"""``netdiff encode``: captures -> dataset directory of per-flow files."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from engine.datasets.encoded import DatasetWriter
from engine.codec.flows import FlowConfig
from engine.codec.pipeline import CaptureStats, encode_capture
from engine.constants import MAX_FLOW_PACKETS
from engine.errors import InputError
from engine.progress import CancelToken, OnEvent


def encode_files(files: list[str | os.PathLike], out: str | os.PathLike, cfg: FlowConfig = FlowConfig(),
                 label: str | None = None, label_from_dir: bool = False, fmt: str = "npz",
                 force: bool = False, on_event: OnEvent | None = None,
                 cancel: CancelToken | None = None) -> list[CaptureStats]:
    """Encode captures into a dataset directory; returns per-file statistics.

    Every file is read completely before anything is renamed into place, so a
    bad file anywhere leaves no output behind.
    """
    if not 1 <= cfg.max_packets <= MAX_FLOW_PACKETS:
        # a longer flow file would be written, then refused by every reader (matrix_check)
        raise InputError(None, f"--max-packets {cfg.max_packets}: a flow holds 1 to {MAX_FLOW_PACKETS} packets "
                               "(longer flows are cut there and continue as a new flow)")
    all_stats = []
    used: set[tuple[str, str]] = set()
    with DatasetWriter(out, fmt, force=force) as w:
        for f in files:
            lab = Path(f).parent.name if label_from_dir else (label or "")
            # x.pcap and x.pcapng side by side must not share flow ids (their files would collide)
            prefix = Path(f).stem
            if (lab, prefix) in used:
                prefix = Path(f).name.replace(".", "_")
            used.add((lab, prefix))
            st = CaptureStats(os.fspath(f))
            for batch in encode_capture(f, cfg, label=lab, stats=st, on_event=on_event, cancel=cancel,
                                        flow_prefix=prefix):
                for i, meta in enumerate(batch.metas):
                    w.add(batch.flow(i), meta)
            all_stats.append(st)
        w.info["flow_config"] = asdict(cfg)
        w.info["inputs"] = [s.to_dict() for s in all_stats]
        w.commit()
    return all_stats
