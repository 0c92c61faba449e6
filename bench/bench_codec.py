"""Codec throughput on the largest real capture. Run: python bench/bench_codec.py [CAPTURE]

Prints a markdown table; results are recorded by hand in bench/codec.md.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.codec.matrix import write_pcap  # noqa: E402
from engine.datasets.encoded import flow_files, load_flow  # noqa: E402
from engine.datasets.encode import encode_files  # noqa: E402
from engine.codec.flows import FlowConfig  # noqa: E402
from engine.codec.image import image_to_matrix, matrix_to_rgba, snap_rgb  # noqa: E402


def best(fn, repeat=5):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main():
    data = Path(os.environ.get("NETDIFF_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "real"
    cap = Path(sys.argv[1]) if len(sys.argv) > 1 else max(data.rglob("*.pcap"), key=lambda p: p.stat().st_size)
    tmp = Path(tempfile.mkdtemp())
    try:
        def enc():
            shutil.rmtree(tmp / "ds", ignore_errors=True)
            return encode_files([cap], tmp / "ds", FlowConfig(min_packets=1), label="bench")
        t_enc = best(enc, 3)
        stats = enc()[0]
        n = stats.encoded_packets
        files = flow_files([tmp / "ds"])
        flows = [load_flow(f) for f in files]
        mats, metas = [m for m, _ in flows], [x for _, x in flows]
        t_dec = best(lambda: write_pcap(tmp / "out.pcap", mats, metas), 3)
        t_dec_all = best(lambda: write_pcap(tmp / "out.pcap", *zip(*[load_flow(f) for f in flow_files([tmp / "ds"])])), 3)
        big = max(mats, key=len)
        rng = np.random.default_rng(0)
        full = np.resize(big, (1024, big.shape[1])) if len(big) < 1024 else big[:1024]
        img = matrix_to_rgba(full)
        noisy = np.clip(img.astype(np.int16) + rng.integers(-90, 91, img.shape), 0, 255).astype(np.uint8)
        bio = io.BytesIO()
        Image.fromarray(noisy, "RGBA").save(bio, format="PNG")
        png = bio.getvalue()
        t_snap = best(lambda: snap_rgb(noisy), 10)
        t_img2mat = best(lambda: image_to_matrix(np.asarray(Image.open(io.BytesIO(png)))), 10)
        pngs = tmp / "pngs"
        pngs.mkdir()
        for i in range(16):
            (pngs / f"{i}.png").write_bytes(png)
        from engine.datasets.encoded import load_flows
        paths = sorted(pngs.glob("*.png"))
        t_batch = best(lambda: load_flows(paths), 3) / len(paths)

        def m2i():
            b = io.BytesIO()
            Image.fromarray(matrix_to_rgba(full), "RGBA").save(b, format="PNG", compress_level=1)
        t_mat2img = best(m2i, 10)
        print(f"capture: {cap.name} ({cap.stat().st_size / 1e6:.1f} MB, {stats.packets} packets, "
              f"{n} encoded, {stats.flows} flows)\n")
        print("| stage | figure |\n|---|---|")
        print(f"| encode end to end (read, flows, encode, write npz per flow) | {n / t_enc:,.0f} packets/s |")
        print(f"| decode (matrices in memory -> pcap file) | {n / t_dec:,.0f} packets/s |")
        print(f"| decode end to end (read flow files -> pcap file) | {n / t_dec_all:,.0f} packets/s |")
        print(f"| image -> matrix, PNG decode + snap, 1024-packet flow | {t_img2mat * 1e3:.1f} ms |")
        print(f"| image -> matrix, 16 noisy PNGs on 2 threads, per flow | {t_batch * 1e3:.1f} ms |")
        print(f"| snap only, 1024 x {img.shape[1]} pixels | {t_snap * 1e3:.2f} ms |")
        print(f"| matrix -> PNG, 1024-packet flow | {t_mat2img * 1e3:.1f} ms |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
