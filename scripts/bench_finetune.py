"""bench/finetune.md: fine-tuning the default model on a class it never saw vs training from scratch,
for the same small budget, judged by `netdiff evaluate` on held-out real flows of that class.

The class: `labiot`, traffic of a scripted telemetry application recorded here on the loopback
interface (tcpdump; needs root): MQTT-like TCP sessions to 127.0.0.1:1883 (connect, a few
length-prefixed publishes, some acknowledged, disconnect) and CoAP-like UDP exchanges with
127.0.0.1:5683. None of the default checkpoint's 20 classes (public captures) is loopback traffic
or uses these ports; every real class of ../shared/data is one of the default's classes, so
leaving one out would have meant training a new base.

    sudo python3 scripts/bench_finetune.py WORK [--steps 400] [--flows 100] [--sessions 240]

Stages (each skipped when its output exists, so a stopped run continues):
  record    WORK/capture/labiot/labiot.pcap          (a minute of traffic)
  encode    WORK/ds                                  netdiff encode --label-from-dir
  train     WORK/runs/finetune   netdiff train --init-from default --steps N  (with replay of the old classes)
            WORK/runs/finetune-noreplay                the same with "replay_flows": 0
            WORK/runs/scratch    netdiff train --config (the default's architecture, no init) --steps N
            both runs use the same split (test_fraction 0.3, split_seed 1234): test flows are never trained on
  generate  WORK/gen/<run>       netdiff generate --label labiot -n FLOWS --seed 1
            WORK/gen/default-zoom, WORK/gen/finetune[-noreplay]-zoom   an old class before and after
  evaluate  WORK/eval/<run>      netdiff evaluate --real WORK/ds --split WORK/runs/scratch/split.json
            WORK/eval/zoom-<m>   the old class against the default's held-out zoom flows
Prints a JSON summary (also WORK/summary.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NETDIFF = [sys.executable, "-m", "netdiff_tui"]
LABEL = "labiot"
TCP_PORT, UDP_PORT = 1883, 5683


def run(*args, log: Path | None = None) -> float:
    """Run a netdiff command at nice 10; returns its wall seconds."""
    t0 = time.time()
    cmd = ["nice", "-n", "10", *NETDIFF, *map(str, args)]
    print("+", " ".join(cmd[3:]), flush=True)
    with open(log, "w") if log else open(os.devnull, "w") as f:
        r = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    if r.returncode:
        sys.exit(f"failed ({r.returncode}): {' '.join(map(str, args))}" + (f"; see {log}" if log else ""))
    return time.time() - t0


# -- the application --------------------------------------------------------------------------------

def _tcp_server(stop: threading.Event) -> None:
    srv = socket.create_server(("127.0.0.1", TCP_PORT), reuse_port=True)
    srv.settimeout(0.2)

    def serve(c: socket.socket) -> None:
        with c:
            while True:
                hdr = c.recv(3)
                if len(hdr) < 3:
                    return
                kind, n = hdr[0], int.from_bytes(hdr[1:], "big")
                body = b""
                while len(body) < n:
                    chunk = c.recv(n - len(body))
                    if not chunk:
                        return
                    body += chunk
                if kind in (1, 2):        # connect, acknowledged publish: a 4-byte ack
                    c.sendall(bytes([kind + 0x10, 0, 2]) + body[:2].ljust(2, b"\0"))
                elif kind == 3:           # disconnect
                    return
    while not stop.is_set():
        try:
            c, _ = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(c,), daemon=True).start()
    srv.close()


def _udp_server(stop: threading.Event) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", UDP_PORT))
    s.settimeout(0.2)
    while not stop.is_set():
        try:
            data, addr = s.recvfrom(2048)
        except socket.timeout:
            continue
        s.sendto(data[:4] + bytes(random.Random(len(data)).randrange(8, 90)), addr)
    s.close()


def _session(rng: random.Random) -> None:
    """One device session: MQTT-like over TCP (70 %) or CoAP-like over UDP."""
    if rng.random() < 0.7:
        with socket.create_connection(("127.0.0.1", TCP_PORT)) as c:
            c.sendall(bytes([1, 0, 24]) + os.urandom(24))
            c.recv(16)
            for _ in range(rng.choice([1, 1, 2, 3, 4, 6, 10, 16])):
                time.sleep(rng.expovariate(1 / 0.03))
                n = max(8, int(rng.gauss(70, 30)))
                acked = rng.random() < 0.5
                c.sendall(bytes([2 if acked else 4]) + n.to_bytes(2, "big") + os.urandom(n))
                if acked:
                    c.recv(16)
            c.sendall(bytes([3, 0, 0]))
            time.sleep(0.01)
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1.0)
            for _ in range(rng.choice([1, 2, 2, 3, 5])):
                s.sendto(os.urandom(max(8, int(rng.gauss(40, 12)))), ("127.0.0.1", UDP_PORT))
                s.recvfrom(2048)
                time.sleep(rng.expovariate(1 / 0.05))


def record(out: Path, sessions: int, seed: int = 7) -> None:
    """A minute of the application's traffic on lo, captured by tcpdump."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.pcap")
    dump = subprocess.Popen(["tcpdump", "-i", "lo", "-w", str(tmp), "-U", "-s", "256",
                             f"tcp port {TCP_PORT} or udp port {UDP_PORT}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop = threading.Event()
    servers = [threading.Thread(target=f, args=(stop,), daemon=True) for f in (_tcp_server, _udp_server)]
    for t in servers:
        t.start()
    time.sleep(1.0)         # tcpdump and the servers listening
    rng = random.Random(seed)
    workers = []
    for i in range(sessions):
        t = threading.Thread(target=_session, args=(random.Random(rng.random()),), daemon=True)
        t.start()
        workers.append(t)
        time.sleep(rng.expovariate(1 / 0.2))
    for t in workers:
        t.join(10)
    time.sleep(1.0)
    stop.set()
    dump.send_signal(signal.SIGINT)
    dump.wait(10)
    os.replace(tmp, out)


# -- the comparison ---------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--flows", type=int, default=100)
    ap.add_argument("--sessions", type=int, default=240)
    a = ap.parse_args()
    w = a.work.resolve()
    times: dict[str, float] = {}
    pcap = w / "capture" / LABEL / f"{LABEL}.pcap"
    if not pcap.exists():
        t0 = time.time()
        record(pcap, a.sessions)
        times["record"] = time.time() - t0
    if not (w / "ds" / "manifest.csv").exists():
        times["encode"] = run("encode", w / "capture", "-o", w / "ds", "--label-from-dir", "-q")
    split = {"test_fraction": 0.3, "split_seed": 1234, "checkpoint_every": 100, "num_threads": 1}
    (w / "finetune.json").write_text(json.dumps(split))
    default_cfg = json.loads((ROOT / "engine" / "default_model" / "config.json").read_text())
    arch = {k: v for k, v in default_cfg["model"].items() if k not in ("num_classes", "width")}
    # from scratch: the default's architecture and its training settings (lr 5e-4), the same budget
    (w / "scratch.json").write_text(json.dumps({**split, "model": arch, "lr": 5e-4, "warmup_steps": 50,
                                                "batch_size": 16, "sample_steps": 20}))
    # fine-tuning as shipped (generative replay of the old classes) and without replay
    (w / "finetune-noreplay.json").write_text(json.dumps({**split, "replay_flows": 0}))
    runs = {"finetune": ["--init-from", "default", "--config", w / "finetune.json"],
            "finetune-noreplay": ["--init-from", "default", "--config", w / "finetune-noreplay.json"],
            "scratch": ["--config", w / "scratch.json"]}
    for name, extra in runs.items():
        rd = w / "runs" / name
        if not (rd / "model" / "config.json").exists():
            resume = ["--resume"] if rd.exists() else []
            times[f"train_{name}"] = run("train", "--data", w / "ds", "--out", rd, "--steps", a.steps, *extra,
                                         *resume, "-q", log=w / f"train_{name}.log")
    gens = {**{n: (w / "runs" / n, LABEL) for n in runs},
            "finetune-zoom": (w / "runs" / "finetune", "zoom"),
            "finetune-noreplay-zoom": (w / "runs" / "finetune-noreplay", "zoom"), "default-zoom": ("default", "zoom")}
    for name, (model, label) in gens.items():
        g = w / "gen" / name
        if not (g / "manifest.csv").exists():
            shutil.rmtree(g, ignore_errors=True)
            times[f"generate_{name}"] = run("generate", "--model", model, "--label", label, "-n", a.flows,
                                            "--seed", 1, "-o", g, "-q")
    for name in runs:         # every run made the same split; its test flows are the held-out real flows
        e = w / "eval" / name
        if not (e / "report.json").exists():
            times[f"evaluate_{name}"] = run("evaluate", "--real", w / "ds", "--split", w / "runs" / "scratch" / "split.json",
                                            "--synthetic", w / "gen" / name, "-o", e, "--max-packets", 128,
                                            "--no-plots", "-q", log=w / f"eval_{name}.log")
    real_zoom = Path(os.environ.get("NETDIFF_DATA", ROOT.parent / "shared" / "data")) / "real"
    for name in ("finetune-zoom", "finetune-noreplay-zoom", "default-zoom"):
        e = w / "eval" / name
        if not (e / "report.json").exists() and real_zoom.is_dir():
            times[f"evaluate_{name}"] = run("evaluate", "--real", real_zoom, "--classes", "zoom",
                                            "--synthetic", w / "gen" / name, "-o", e, "--max-packets", 128,
                                            "--no-plots", "-q", log=w / f"eval_{name}.log")
    old = json.loads((w / "times.json").read_text()) if (w / "times.json").exists() else {}
    (w / "times.json").write_text(json.dumps({**old, **times}, indent=1))
    summary = {"machine": f"{platform.machine()} / {os.cpu_count()} CPU(s), Python {platform.python_version()}",
               "steps": a.steps, "flows": a.flows, "times_s": {**old, **times},
               "runs": {n: json.loads((w / "runs" / n / "model" / "config.json").read_text())["train_flows"]
                        for n in runs},
               "reports": {p.name: json.loads((p / "report.json").read_text()).get("summary")
                           for p in sorted((w / "eval").glob("*")) if (p / "report.json").exists()}}
    (w / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
