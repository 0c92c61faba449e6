"""Native model figures: training step time / peak memory, sampling flows/s.

    python bench/bench_model.py --data /tmp/real_ds [--run RUN_DIR] [--model DIR] [--threads 2] [--json OUT]

* training: ``--train-steps`` steps of configs/default_model.json on ``--data``
  (seconds per step, peak RSS); with ``--run``, the whole run's wall time and
  step rate from its events.jsonl.
* sampling: flows of 128 packets per second from the model alone (the checkpoint's default steps,
  guidance 1 and 2), and end to end through ``generate`` (sample + repair + pcaps).
* ``--long N``: only sampling N flows of 1024 packets (shipped architecture, random weights).
* ``--generate N``: only whole ``netdiff generate -n N`` commands of 128-packet flows, in one
  process and on the default pool (one process per core), fp32 and bf16 (bench/model.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_train(data: str, steps: int) -> dict:
    from engine.model.train import TrainConfig, train
    cfg = TrainConfig.load(ROOT / "configs" / "default_model.json")
    cfg.checkpoint_every = 10**9
    cfg.num_threads = None
    with tempfile.TemporaryDirectory() as d:
        times = []
        def on(ev):
            times.append(time.perf_counter())
        cfg.log_every = 1
        train(data, Path(d) / "run", cfg, steps=steps, on_event=lambda ev: on(ev) if type(ev).__name__ == "TrainStep" else None)
    dt = [b - a for a, b in zip(times, times[1:])]
    dt = sorted(dt[1:]) or dt
    return {"train_steps_measured": len(dt), "train_s_per_step_median": round(dt[len(dt) // 2], 4),
            "train_batch": cfg.batch_size, "train_peak_rss_mb": round(rss_mb(), 1)}


def run_stats(run: str) -> dict:
    ev = [json.loads(x) for x in (Path(run) / "events.jsonl").read_text().splitlines() if x.strip()]
    st = [e for e in ev if e["kind"] == "TrainStep"]
    if not st:
        return {}
    return {"run_steps": st[-1]["step"], "run_wall_s": round(st[-1]["time"] - st[0]["time"], 1),
            "run_mean_it_per_s": round(st[-1]["it_per_s"], 3), "run_peak_rss_mb": round(max(e["device_mem_mb"] for e in st), 1),
            "run_final_loss": round(st[-1]["loss"], 4)}


def bench_sample(model_ref, n: int, label: str) -> dict:
    from engine.datasets.generate import generate
    from engine.model.checkpoint import load_model
    from engine.model.diffusion import sample
    from engine.model.lengths import presence_mask
    from engine.datasets.request import GenerationRequest
    model, cfg, _ = load_model(model_ref)
    cls = cfg["classes"].index(label) if label in cfg["classes"] else 0
    out = {"model_params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
           "packets_per_flow": model.config.max_packets, "sample_batch": n}
    labels = torch.full((n,), cls)
    L = model.config.max_packets
    # a shape-conditioned model is told the length: every flow 128 packets here
    rows = presence_mask([L] * n, L) if getattr(model.config, "presence_input", False) else None
    sample(model, cfg["scheduler"], labels[:2], [0, 1], steps=2, rows=None if rows is None else rows[:2])   # warm up
    steps = int(cfg.get("sampling", {}).get("steps", 20))
    out["sample_steps"] = steps
    for g in (1.0, 2.0):
        t0 = time.perf_counter()
        sample(model, cfg["scheduler"], labels, list(range(n)), steps=steps, guidance=g, rows=rows)
        out[f"sample_flows_per_s_g{g:g}"] = round(n / (time.perf_counter() - t0), 2)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        import os
        os.environ.setdefault("NETDIFF_THREADS", str(torch.get_num_threads()))
        s = generate(GenerationRequest(label=cfg["classes"][cls], count=n, model=model_ref, seed=0), Path(d) / "o")
        el = time.perf_counter() - t0
    out.update({"generate_flows_per_s": round(n / el, 2), "generate_seconds": round(el, 2),
                "generate_redraws": s["sampling"]["drawn"] - n, "generate_clean": s["compliance_clean"],
                "generate_packets": s["packets"], "sample_peak_rss_mb": round(rss_mb(), 1)})
    return out


def bench_processes(n_proc: int, flows: int, label: str) -> dict:
    """End-to-end ``netdiff generate`` under ``accelerate launch`` with several CPU processes."""
    import subprocess
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n_proc),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "netdiff_tui", "generate", "--label", label, "-n", str(flows), "-o", f"{d}/o", "-q"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        el = time.perf_counter() - t0
        g = json.loads(Path(f"{d}/o/generate.json").read_text())["summary"]
    return {f"generate_{n_proc}proc_wall_s": round(el, 2), f"generate_{n_proc}proc_sample_s": g["sample_seconds"],
            f"generate_{n_proc}proc_flows_per_s_sampling": round(flows / g["sample_seconds"], 2)}


def bench_generate(flows: int, label: str, processes: int, precision: str) -> dict:
    """One ``netdiff generate`` of ``flows`` flows of 128 packets (``--packets-min/max 128``) with
    ``--processes`` (0 = the default: one per core) and ``NETDIFF_PRECISION``."""
    import os
    import subprocess
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "netdiff_tui", "generate", "--label", label, "-n", str(flows),
               "--packets-min", "128", "--packets-max", "128", "--processes", str(processes), "-o", f"{d}/o", "-q"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "NETDIFF_PRECISION": precision})
        el = time.perf_counter() - t0
        g = json.loads(Path(f"{d}/o/generate.json").read_text())["summary"]
    key = f"generate_p{processes or 'auto'}_{precision}"
    return {f"{key}_processes": g["processes"], f"{key}_precision": g.get("precision"),
            f"{key}_wall_s": round(el, 2), f"{key}_sample_s": g["sample_seconds"],
            f"{key}_flows_per_s_sampling": round(flows / g["sample_seconds"], 2),
            f"{key}_flows_per_s_wall": round(flows / el, 2)}


def bench_long(n: int, precision: str, packets: int = 1024, batch: int = 8) -> dict:
    """Sampling speed of ``n`` flows of ``packets`` packets in this process: the shipped architecture
    with ``max_packets`` = ``packets`` and random weights (the cost does not depend on the weights),
    batches of ``batch``, the checkpoint's steps; on the GPU when there is one."""
    from engine.model import PacketDenoiser
    from engine.model.checkpoint import load_model
    from engine.model.diffusion import sample
    from engine.model.lengths import presence_mask
    base, cfg, _ = load_model(None)
    conf = {k: v for k, v in dict(base.config).items() if not k.startswith("_")}
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = PacketDenoiser(**{**conf, "max_packets": packets}).eval().to(dev)
    steps = int(cfg.get("sampling", {}).get("steps", 20))
    sample(model, cfg["scheduler"], torch.zeros(2, dtype=torch.long), [0, 1], steps=2,
           rows=presence_mask([packets] * 2, packets), protos=torch.full((2,), 6), precision=precision)  # warm up
    if dev == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for b in range(0, n, batch):
        k = min(batch, n - b)
        sample(model, cfg["scheduler"], torch.zeros(k, dtype=torch.long), list(range(b, b + k)), steps=steps,
               rows=presence_mask([packets] * k, packets), protos=torch.full((k,), 6), precision=precision)
    if dev == "cuda":
        torch.cuda.synchronize()
    el = time.perf_counter() - t0
    out = {f"long{packets}_{precision}_flows_per_s": round(n / el, 3), f"long{packets}_{precision}_seconds": round(el, 1),
           f"long{packets}_batch": batch, f"long{packets}_device": dev}
    if dev == "cuda":
        out[f"long{packets}_{precision}_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", help="encoded dataset for the training figures")
    ap.add_argument("--run", help="a finished training run directory (its events.jsonl)")
    ap.add_argument("--model", default=None, help="checkpoint (default: shipped)")
    ap.add_argument("--train-steps", type=int, default=12)
    ap.add_argument("--flows", type=int, default=64)
    ap.add_argument("--label", default="zoom")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--processes", type=int, default=0, help="also time generate under accelerate launch")
    ap.add_argument("--long", type=int, default=0, metavar="N",
                    help="only time sampling N flows of 1024 packets in this process (bf16 and fp32)")
    ap.add_argument("--long-batch", type=int, default=8, help="flows per sampling batch with --long")
    ap.add_argument("--generate", type=int, default=0, metavar="N",
                    help="only time `netdiff generate -n N` of 128-packet flows: one process and the default "
                         "pool, fp32 and bf16")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    res = {"torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    if a.long:
        for prec in ("bf16", "fp32"):
            res.update(bench_long(a.long, prec, batch=a.long_batch))
        print(json.dumps(res, indent=2))
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
        return
    if a.generate:
        if torch.cuda.is_available():
            res["gpu"] = torch.cuda.get_device_name(0)
        # one GPU is one process; on a CPU also the default pool (one process per core)
        for procs in ((1,) if torch.cuda.is_available() else (1, 0)):
            for prec in ("fp32", "bf16"):
                res.update(bench_generate(a.generate, a.label, procs, prec))
        print(json.dumps(res, indent=2))
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
        return
    if a.run:
        res.update(run_stats(a.run))
    res.update(bench_sample(a.model, a.flows, a.label))
    if a.processes > 1:
        res.update(bench_processes(a.processes, a.flows, a.label))
    if a.data:
        res.update(bench_train(a.data, a.train_steps))
    print(json.dumps(res, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
