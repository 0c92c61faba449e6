"""What the system panel shows: GPUs (NVML), CPU, RAM, disk free. No Textual here.

Everything is read from ``/proc`` and ``os`` (psutil is not required); NVML is imported
lazily and only when ``nvidia-ml-py`` is installed, so a machine without it says "no GPU".
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass
class GpuStat:
    index: int
    name: str
    util: int           # percent
    used: int           # bytes
    total: int


def gpus() -> list[GpuStat]:
    """Every NVIDIA GPU NVML sees; [] without nvidia-ml-py, a driver or a GPU."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:           # NVMLError_LibraryNotFound, DriverNotLoaded, ...: no usable GPU here
        return []
    out = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            try:
                util = int(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
            except Exception:   # MIG slices and some vGPUs do not report utilisation
                util = -1
            out.append(GpuStat(i, name.decode() if isinstance(name, bytes) else str(name), util,
                               int(mem.used), int(mem.total)))
    except Exception:           # a device that vanishes mid-listing: show the ones read so far
        pass
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
    return out


def parse_stat(text: str) -> tuple[int, int] | None:
    """(busy, total) jiffies from the first (aggregate ``cpu``) line of /proc/stat text."""
    first = text.splitlines()[0].split() if text.strip() else []
    if not first or first[0] != "cpu":
        return None
    try:
        vals = [int(x) for x in first[1:]]
    except ValueError:
        return None
    if len(vals) < 4:
        return None
    # idle + iowait: time the CPU was not running anything
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    # guest/guest_nice (fields 9, 10) are already counted inside user/nice
    total = sum(vals[:8])
    return total - idle, total


def cpu_times(path: str = "/proc/stat") -> tuple[int, int] | None:
    """(busy, total) jiffies since boot; None where there is no /proc."""
    try:
        with open(path) as f:
            return parse_stat(f.read())
    except OSError:
        return None


def cpu_percent(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """CPU busy percent between two :func:`cpu_times` samples; None before the second sample."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return 100.0 * (after[0] - before[0]) / (after[1] - before[1])


def parse_meminfo(text: str) -> tuple[int, int] | None:
    """(used, total) bytes from /proc/meminfo text; used = total - available."""
    info = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        parts = v.split()
        if parts and parts[0].isdigit():
            info[k.strip()] = int(parts[0]) * 1024
    if "MemTotal" not in info:
        return None
    # MemAvailable (kernel >= 3.14) counts reclaimable cache; MemFree alone overstates use
    avail = info.get("MemAvailable", info.get("MemFree", 0) + info.get("Cached", 0))
    return info["MemTotal"] - avail, info["MemTotal"]


def memory(path: str = "/proc/meminfo") -> tuple[int, int] | None:
    """(used, total) bytes of RAM; None where there is no /proc."""
    try:
        with open(path) as f:
            return parse_meminfo(f.read())
    except OSError:
        return None


def disk_free(path: Path) -> int | None:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def gib(n: int) -> str:
    """Bytes as GiB with one decimal, e.g. ``12.3G``."""
    return f"{n / 2**30:.1f}G"


def system_line(cpu: float | None, gpu_list: list[GpuStat], mem: tuple[int, int] | None,
                free: int | None) -> str:
    """One line: GPUs, CPU, RAM, disk free (what the panel shows). Plain text, no colour."""
    parts = []
    if gpu_list:
        parts += [f"GPU{g.index} {g.name.replace('NVIDIA ', '')} "
                  f"{'-' if g.util < 0 else str(g.util) + '%'} {gib(g.used)}/{gib(g.total)}"
                  for g in gpu_list]
    else:
        parts.append("no GPU")
    parts.append("CPU " + ("-" if cpu is None else f"{cpu:.0f}%"))
    parts.append("RAM " + ("-" if mem is None else f"{gib(mem[0])}/{gib(mem[1])}"))
    parts.append("disk " + ("-" if free is None else f"{gib(free)} free"))
    return " | ".join(parts)


class SystemSampler:
    """Keeps the previous CPU sample so each call reports the load since the last one.

    ``out_dir`` is a path or a callable returning one (read at every call, so a settings
    change shows up); calling the sampler returns :func:`system_line`'s text.
    """

    def __init__(self, out_dir=".") -> None:
        self.out_dir = out_dir
        self._cpu = cpu_times()

    def __call__(self) -> str:
        now = cpu_times()
        cpu = cpu_percent(self._cpu, now)
        self._cpu = now
        out = self.out_dir() if callable(self.out_dir) else self.out_dir
        return system_line(cpu, gpus(), memory(), disk_free(Path(out)))
