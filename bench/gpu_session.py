"""Everything a lent GPU is for, in one call with a deadline -> files under --out.

    python bench/gpu_session.py --real DIR_OR_TAR --out DIR [--budget 560]

A device is lent for minutes (bench/gpu.md), so this runs, in order and each within what is left
of ``--budget`` seconds, writing its files as soon as they exist (a stage cut off loses only itself):

1. ``bench_model.py --generate``: one ``netdiff generate`` of 128-packet flows on the GPU, fp32 and
   bf16, and ``--long``: 1024-packet flows of the shipped architecture -> bench_model_gpu.json,
   bench_long_gpu.json;
2. the 1024-packet leg of the shipped checkpoint (configs/default_model_1024.json): a 40-step probe
   times a step, then the run resumes to the step count that fills ``--train-seconds`` (bounded by
   ``netdiff train --time-limit``, so it exports whatever it reached), exports and calibrates ->
   model/ (weights and config.json) and train_events.jsonl;
3. ``bench_sd.py`` (Stable Diffusion LoRA / ControlNet figures) -> sd_gpu.json;
4. ``bench_evaluate.py`` on that model (bench/quality.md's protocol) -> quality_gpu1024.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
T0 = time.time()


def say(*a) -> None:
    print(f"[{time.time() - T0:6.1f}s]", *a, flush=True)


def left(budget: float) -> float:
    return budget - (time.time() - T0)


def run(cmd: list[str], timeout: float, **kw) -> bool:
    """``cmd`` with at most ``timeout`` seconds (SIGINT first: a training run saves on it)."""
    if timeout < 5:
        say("skipped (no time left):", " ".join(map(str, cmd[:4])))
        return False
    say("$", " ".join(map(str, cmd)), f"(timeout {timeout:.0f} s)")
    p = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, **kw)
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.send_signal(2)
        try:
            rc = p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
        say("cut off at its deadline")
        return False
    say("rc", rc)
    return rc == 0


def netdiff(*args) -> list[str]:
    return [sys.executable, "-m", "netdiff_tui", *map(str, args)]


def train_rate(events: Path) -> float | None:
    """Steps/s between the last two logged steps of a run (the first steps carry the warm-up)."""
    pts = [(e["step"], e["time"]) for e in map(json.loads, events.read_text().splitlines())
           if e.get("kind") == "TrainStep"]
    if len(pts) < 2 or pts[-1][1] <= pts[-2][1]:
        return None
    (s0, t0), (s1, t1) = pts[-2], pts[-1]
    return (s1 - s0) / (t1 - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", required=True, help="the real captures (a folder of class folders, or a .tar.xz of one)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=560, help="seconds for everything")
    ap.add_argument("--work", default="/tmp/gpu_session")
    ap.add_argument("--train-seconds", type=float, default=170, help="training time after the probe")
    ap.add_argument("--probe-steps", type=int, default=40)
    ap.add_argument("--config", default=str(ROOT / "configs" / "default_model_1024.json"))
    ap.add_argument("--sd-seconds", type=float, default=110)
    ap.add_argument("--eval-jobs", type=int, default=4)
    ap.add_argument("--tiny", action="store_true", help="check the script on a CPU (tiny stages)")
    a = ap.parse_args()
    out, work = Path(a.out), Path(a.work)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        import torch
        say("torch", torch.__version__, "cuda", torch.cuda.is_available(),
            torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
    except Exception as e:      # noqa: BLE001
        say("torch:", e)

    real = Path(a.real)
    if real.is_file():
        with tarfile.open(real) as tf:
            tf.extractall(work / "data", filter="data")
        real = next(p for p in (work / "data").iterdir() if p.is_dir())
    say("real captures:", real)
    ds = work / "ds"
    run(netdiff("encode", real, "-o", ds, "--label-from-dir", "--max-packets", 1024, "--min-packets", 2, "-q"),
        min(120, left(a.budget)))

    bm = [sys.executable, "bench/bench_model.py"]
    run(bm + ["--generate", 64 if a.tiny else 1024, "--label", "youtube", "--json", out / "bench_model_gpu.json"],
        min(120, left(a.budget) - 300))
    run(bm + ["--long", 4 if a.tiny else 256, "--long-batch", 2 if a.tiny else 64, "--json", out / "bench_long_gpu.json"],
        min(60, left(a.budget) - 280))

    run_dir = work / "run1024"
    cfg = json.loads(Path(a.config).read_text())
    if a.tiny:
        cfg.update(batch_size=2, calibrate_flows=2, calibrate_rounds=1, mixed_precision="no")
    probe = {**cfg, "calibrate_flows": 0}
    (work / "probe.json").write_text(json.dumps(probe))
    train = netdiff("train", "--init-from", "default", "--data", ds, "--out", run_dir)
    run(train + ["--config", work / "probe.json", "--steps", a.probe_steps], min(150, left(a.budget) - 200))
    events = run_dir / "events.jsonl"
    rate = train_rate(events) if events.exists() else None
    say("probe rate (steps/s):", rate)
    if rate:
        steps = a.probe_steps + int(rate * a.train_seconds)
        tc = run_dir / "train_config.json"
        c = json.loads(tc.read_text())
        c["calibrate_flows"], c["calibrate_rounds"] = cfg["calibrate_flows"], cfg["calibrate_rounds"]
        tc.write_text(json.dumps(c, indent=2) + "\n")
        # the run stops itself at --time-limit and exports (calibration included: ~100 s on an H200) in the
        # same process; the sixth session's first call lost a leg to a stop whose export restarted the run
        limit = max(10, int(left(a.budget) - 150 - 130))
        ok = run(train + ["--resume", "--steps", steps, "--time-limit", limit], left(a.budget) - 150)
        if not ok:
            # a stop or a failure in the calibration: export the last checkpoint without it
            c["calibrate_flows"] = 0
            tc.write_text(json.dumps(c, indent=2) + "\n")
            run(train + ["--resume", "--steps", steps], min(90, left(a.budget) - 120))
    for f in ("model/model.safetensors", "model/config.json"):
        if (run_dir / f).exists():
            (out / "model").mkdir(exist_ok=True)
            shutil.copy2(run_dir / f, out / f)
    if events.exists():
        shutil.copy2(events, out / "train_events.jsonl")

    sd = [sys.executable, "bench/bench_sd.py", "--json", out / "sd_gpu.json"] + (["--tiny"] if a.tiny else [])
    run(sd, min(a.sd_seconds, left(a.budget) - 120))

    if (run_dir / "model" / "model.safetensors").exists():
        run([sys.executable, "bench/bench_evaluate.py", "--real", real, "--model", run_dir / "model",
             "--work", work / "quality", "--jobs", a.eval_jobs, "--out", out / "quality_gpu1024.md"]
            + (["--min-flows", 400] if a.tiny else []),
            left(a.budget) - 5, env={**os.environ, "NETDIFF_DATA": str(real.parent)})
    say("done")


if __name__ == "__main__":
    main()
