"""Draw docs/layout.png (the bit layout, from engine.codec.layout) and an example flow image.

Run: python scripts/layout_figure.py [CAPTURE]
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from engine.codec.layout import LAYOUT  # noqa: E402

COLORS = {"ipv4": "#4C72B0", "ipv6": "#AAAAAA", "tcp": "#DD8452", "udp": "#55A868", "icmp": "#C44E52", "meta": "#8172B2"}


def main():
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(14, 6), gridspec_kw={"height_ratios": [1, 3]})
    for f in LAYOUT.image_fields():
        c = LAYOUT.cols(f.qualname)
        ax.barh(0, c.stop - c.start, left=c.start, color=COLORS[f.proto], edgecolor="white", linewidth=0.3)
        if c.stop - c.start >= 16:
            ax.text((c.start + c.stop) / 2, 0, f.name, ha="center", va="center", fontsize=6, rotation=90, color="white")
    for i, (proto, col) in enumerate(COLORS.items()):
        b = LAYOUT.block(proto)
        ax.text((b.start + b.stop) / 2, 0.5 if i % 2 == 0 else -0.62, f"{proto} {b.start}-{b.stop - 1}",
                ha="center", fontsize=8, color=col)
    ax.set_ylim(-0.8, 0.75)
    ax.set_xlim(0, LAYOUT.width)
    ax.set_yticks([])
    ax.set_title(f"Packet row: {LAYOUT.width} columns ({LAYOUT.base_width} paper columns + direction + 16-bit gap)")
    cap = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    if cap and cap.exists():
        from engine.codec.flows import FlowConfig
        from engine.codec.image import matrix_to_rgba
        from engine.codec.pipeline import encode_capture
        flows = [b.flow(i) for b in encode_capture(cap, FlowConfig(max_packets=128)) for i in range(len(b))]
        m = max(flows, key=len)
        ax2.imshow(matrix_to_rgba(m, height=128)[..., :3], aspect="auto", interpolation="nearest")
        ax2.set_title(f"A flow of {cap.name} as the paper's image (red 1, green 0, blue absent), first 128 rows")
        ax2.set_xlabel("column")
        ax2.set_ylabel("packet")
    else:
        ax2.axis("off")
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "layout.png", dpi=110)


if __name__ == "__main__":
    main()
