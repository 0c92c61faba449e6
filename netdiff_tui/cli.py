"""The ``netdiff`` command line: every engine feature, headless.

Bad input ends with one line on stderr naming the file and the problem, and
exit status 2; never a traceback.
"""

from __future__ import annotations

import functools
import json
import sys

import click

from engine.constants import MAX_FLOW_PACKETS
from engine.errors import Cancelled, InputError
from engine.inputs import resolve_inputs
from netdiff_tui.detach import detachable


def fail(msg: str, code: int = 2) -> None:
    try:
        click.echo(f"netdiff: error: {msg}", err=True)
    except OSError:
        pass        # the terminal went away with the SSH session (SIGHUP): the status still tells
    sys.exit(code)


def friendly(fn):
    """Turn engine errors into one line and an exit status; SIGTERM/SIGHUP stop like Ctrl-C."""
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        from engine.progress import StopRequested, pending_stop, stop_on_signals, stop_status
        stop_on_signals()
        try:
            result = fn(*a, **kw)
            if pending_stop() is not None:     # its raise was lost, and no safe point came after it
                raise StopRequested(pending_stop())
            return result
        except InputError as e:
            fail(str(e), 2)
        except Cancelled as e:
            msg = str(e)
            fail(msg if msg != "cancelled" else
                 "cancelled; finished work is kept, run the same command again to resume", stop_status(e))
        except KeyboardInterrupt as e:
            fail("interrupted" if type(e) is KeyboardInterrupt else f"stopped by {e}", stop_status(e))
        except OSError as e:
            fail(f"{e.filename}: {e.strerror or e}" if e.filename else str(e.strerror or e), 1)
    return wrapper


class Duration(click.ParamType):
    """A wall time: seconds (``5400``) or with units (``90s``, ``45m``, ``1.5h``, ``1h30m``, ``2d``)."""

    name = "duration"
    UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def convert(self, value, param, ctx) -> float:
        import re
        if isinstance(value, (int, float)):
            seconds = float(value)
        else:
            text = str(value).strip().lower()
            parts = re.findall(r"(\d+(?:\.\d+)?)([smhd]?)", text)
            if not text or "".join(n + u for n, u in parts) != text or (len(parts) > 1 and not all(u for _, u in parts)):
                self.fail(f"{value!r} is not a duration (e.g. 5400, 90m, 1h30m)", param, ctx)
            seconds = sum(float(n) * self.UNITS[u or "s"] for n, u in parts)
        if not seconds > 0:
            self.fail(f"{value!r}: must be more than 0 seconds", param, ctx)
        return seconds


class Progress:
    """Engine events -> a progress bar on stderr (quiet when not a terminal)."""

    def __init__(self, enabled: bool | None = None):
        from rich.progress import BarColumn, Progress as RP, TaskProgressColumn, TextColumn, TimeRemainingColumn
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.rp = RP(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
                     transient=True, disable=not self.enabled)
        self.tasks = {}

    def __enter__(self):
        self.rp.__enter__()
        return self

    def __exit__(self, *a):
        self.rp.__exit__(*a)

    def __call__(self, ev) -> None:
        from engine import progress as pg
        from netdiff_tui import detach
        pg.check_stop()
        if detach.current is not None:
            detach.current(ev)          # the job's events.jsonl: what the console and `jobs attach` follow
        if isinstance(ev, pg.TaskStarted):
            self.tasks[ev.task] = self.rp.add_task(ev.task, total=ev.total)
        elif isinstance(ev, pg.TaskProgress) and ev.task in self.tasks:
            self.rp.update(self.tasks[ev.task], completed=ev.done, total=ev.total)
        elif isinstance(ev, pg.TaskFinished) and ev.task in self.tasks:
            t = self.tasks.pop(ev.task)
            self.rp.remove_task(t)
        elif isinstance(ev, pg.TrainStep):
            key = "train"
            if key not in self.tasks:
                self.tasks[key] = self.rp.add_task("train", total=ev.total_steps)
            self.rp.update(self.tasks[key], completed=ev.step, total=ev.total_steps,
                           description=f"train loss {ev.loss:.4f}")


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="netdiffusion", prog_name="netdiff")
@click.pass_context
def main(ctx: click.Context) -> None:
    """NetDiffusion Studio: labeled, protocol-compliant synthetic packet captures."""
    if ctx.invoked_subcommand is None:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            click.echo(ctx.get_help())      # not a terminal: no console to draw
            return
        from netdiff_tui.console import launch    # Textual loads only here
        launch()


# -- codec -------------------------------------------------------------------------------

@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--out", "out", required=True, type=click.Path(), help="Output dataset directory.")
@click.option("--label", default=None, help="Class label of the flows (default: unlabeled).")
@click.option("--label-from-dir", is_flag=True, help="Label each capture by its parent directory's name.")
@click.option("--max-packets", default=MAX_FLOW_PACKETS, show_default=True, help="A flow ends at this many packets.")
@click.option("--min-packets", default=2, show_default=True, help="Drop flows with fewer packets.")
@click.option("--idle-timeout", default=120.0, show_default=True, help="Seconds of silence that end a flow.")
@click.option("--format", "fmt", type=click.Choice(["npz", "png", "nprint"]), default="npz", show_default=True)
@click.option("--force", is_flag=True, help="Replace a non-empty output directory.")
@click.option("-q", "--quiet", is_flag=True)
@detachable("encode")
def encode(inputs, out, label, label_from_dir, max_packets, min_packets, idle_timeout, fmt, force, quiet):
    """Captures -> one bit-matrix file per flow, plus a manifest."""
    from engine.datasets.encode import encode_files
    from engine.codec.flows import FlowConfig
    if max_packets < 1 or min_packets < 1 or idle_timeout <= 0:
        raise InputError(None, "--max-packets and --min-packets must be >= 1, --idle-timeout > 0")
    if fmt == "png" and max_packets > MAX_FLOW_PACKETS:
        raise InputError(None, f"--format png holds at most {MAX_FLOW_PACKETS} packets per flow "
                               f"(--max-packets <= {MAX_FLOW_PACKETS})")
    files = resolve_inputs(inputs)
    cfg = FlowConfig(idle_timeout=idle_timeout, max_packets=max_packets, min_packets=min_packets)
    with Progress(None if not quiet else False) as prog:
        stats = encode_files(files, out, cfg, label=label, label_from_dir=label_from_dir, fmt=fmt,
                             force=force, on_event=prog)
    flows = sum(s.flows for s in stats)
    pk = sum(s.encoded_packets for s in stats)
    skipped = sum(sum(v for k, v in s.skipped.items() if not k.startswith("kept")) for s in stats)
    short = sum(s.dropped_short_flows for s in stats)
    if not quiet:
        click.echo(f"{out}: {flows} flows, {pk} packets encoded from {len(files)} file(s); "
                   f"{skipped} packets skipped (not IPv4 TCP/UDP/ICMP), {short} short flows dropped")
    return {"flows": flows, "packets": pk, "files": len(files), "skipped_packets": skipped, "short_flows": short}


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--out", "out", required=True, type=click.Path(), help="Output pcap file.")
@click.option("--link", type=click.Choice(["ethernet", "raw"]), default="ethernet", show_default=True)
@click.option("--usec", is_flag=True, help="Microsecond timestamps (default nanosecond pcap).")
@click.option("--snap", is_flag=True, help="Round matrix values onto 1, 0, -1 (NaN: absent) instead of "
                                           "refusing a flow file that holds anything else.")
@friendly
def decode(inputs, out, link, usec, snap):
    """Flow files or dataset directories -> one pcap (flows merged in time order).

    Every matrix must hold only 1, 0 and -1, with 1 to 1024 rows of the layout's
    width; anything else is refused naming the file and the first bad cell.
    """
    from engine.codec import capture as cap
    from engine.codec.matrix import write_pcap
    from engine.datasets.encoded import flow_files, load_flows
    files = flow_files(inputs)
    if not files:
        raise InputError(None, "no flow files (.npz, .png, .csv) among the inputs")
    loaded = load_flows(files, snap=snap)
    mats, metas = [m for m, _ in loaded], [x for _, x in loaded]
    n = write_pcap(out, mats, metas, cap.LINK_ETHERNET if link == "ethernet" else cap.LINK_RAW, not usec)
    click.echo(f"{out}: {n} packets from {len(files)} flow(s)")


@main.command()
@click.argument("file", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--max-packets", default=MAX_FLOW_PACKETS, show_default=True)
@click.option("--min-packets", default=1, show_default=True)
@click.option("--idle-timeout", default=120.0, show_default=True)
@friendly
def inspect(file, as_json, max_packets, min_packets, idle_timeout):
    """Packets, flows, protocols, link type and skipped counts of a capture."""
    from engine.codec.flows import FlowConfig
    from engine.codec.pipeline import CaptureStats, encode_capture
    stats = CaptureStats(file)
    for _ in encode_capture(file, FlowConfig(idle_timeout, max_packets, min_packets), stats=stats):
        pass
    d = stats.to_dict()
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    rows = [("file", d["path"]), ("format", d["format"]), ("link types", ", ".join(d["link_types"])),
            ("packets", d["packets"]), ("IPv4 TCP/UDP/ICMP packets", d["encoded_packets"]),
            ("flows", d["flows"])]
    rows += [(f"  {k} flows / packets", f"{v} / {d['packets_by_proto'][k]}") for k, v in sorted(d["flows_by_proto"].items())]
    rows += [(f"skipped: {k}" if not k.startswith("kept") else k, v) for k, v in d["skipped"].items()]
    rows.append(("duration (s)", f"{d['duration_s']:.3f}" if d["duration_s"] is not None else "-"))
    w = max(len(str(k)) for k, _ in rows)
    for k, v in rows:
        click.echo(f"{k:<{w}}  {v}")


@main.command()
@click.option("--json", "as_json", is_flag=True)
def layout(as_json):
    """Print the bit layout table (fields, header bits, matrix columns)."""
    from engine.codec.layout import LAYOUT
    rows = LAYOUT.describe()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'field':<16} {'header bit':>10} {'width':>5}  columns")
    for r in rows:
        c = "-" if r["columns"] is None else f"{r['columns'][0]}-{r['columns'][1]}"
        hb = "-" if r["header_bit"] is None else r["header_bit"]
        click.echo(f"{r['field']:<16} {hb:>10} {r['width']:>5}  {c}")
    click.echo(f"{LAYOUT.width} columns ({LAYOUT.base_width} paper columns + direction + gap)")


# Command groups live in their own modules and register on ``main`` when imported.
def _load_commands() -> None:
    import importlib
    for name in ("cmd_jobs", "cmd_repair", "cmd_model", "cmd_models", "cmd_evaluate", "cmd_recipes", "cmd_tui", "cmd_selftest", "cmd_serve"):
        try:
            importlib.import_module(f"netdiff_tui.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"netdiff_tui.{name}":
                raise


_load_commands()

if __name__ == "__main__":
    main()
