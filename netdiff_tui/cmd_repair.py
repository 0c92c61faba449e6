"""``netdiff check`` and ``netdiff repair``."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import click
import numpy as np

from engine.constants import CAPTURE_EXTS, FLOW_EXTS
from engine.errors import InputError
from engine.inputs import files_in, resolve_inputs
from netdiff_tui.cli import Progress, friendly, main
from netdiff_tui.detach import detachable


def _repair_options(mtu, server_port, disable, allow_fragments, seed):
    from engine.repair import RepairOptions
    try:
        return RepairOptions(mtu=mtu, server_port=server_port, disabled=frozenset(disable),
                             allow_fragments=allow_fragments, seed=seed)
    except ValueError as e:
        raise InputError(None, str(e)) from None


def load_inputs(inputs, on_event=None, label: str = "", payload_sums: bool = False,
                snap: bool = False, skipped: Counter | None = None):
    """Captures, flow files (.npz/.png/.csv) or directories of either -> (matrices, metas, payload sums).

    ``payload_sums`` asks the reader for each packet's payload checksum sum
    (only a check needs them); flow files hold no payload and get zeros.
    ``snap`` rounds flow-file matrices onto 1, 0, -1 instead of refusing them;
    ``skipped`` (when given) adds up the captures' skipped packets by reason.
    """
    from engine.datasets.encoded import flow_files, load_flows
    from engine.codec.flows import FlowConfig
    from engine.codec.pipeline import CaptureStats, encode_capture
    mats, metas, psums = [], [], []
    caps, flows = [], []
    for raw in inputs:
        p = Path(raw).expanduser()
        if p.is_dir() and (p / "manifest.csv").exists() and files_in(p, FLOW_EXTS):
            flows += flow_files([p])        # an encoded dataset: its manifest's order
            continue
        for f in resolve_inputs([p], CAPTURE_EXTS + FLOW_EXTS, what="captures or flow files"):
            (flows if f.suffix.lower() in FLOW_EXTS else caps).append(f)
    for c in caps:
        st = CaptureStats(str(c))
        for b in encode_capture(c, FlowConfig(min_packets=1), label=label, on_event=on_event,
                                payload_sums=payload_sums, stats=st):
            mats += [b.flow(i) for i in range(len(b))]
            metas += b.metas
            psums += [b.psum[b.offsets[i]:b.offsets[i + 1]] for i in range(len(b))]
        if skipped is not None:
            skipped.update(st.skipped)
    for m, meta in load_flows(flows, snap=snap):
        mats.append(m)
        metas.append(meta)
        # flow files hold no payload: their checksums are judged as decoded (zero payload)
        psums.append(np.zeros(len(m), np.int64))
    return mats, metas, psums


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-r", "--report", "report_dir", type=click.Path(), default=None,
              help="Also write compliance.json and compliance.txt into this directory.")
@click.option("--mtu", default=1500, show_default=True)
@click.option("--allow-fragments", is_flag=True)
@click.option("--disable", multiple=True, help="Rule to leave out (repeatable); see `netdiff check --rules`.")
@click.option("--rules", "list_rules", is_flag=True, is_eager=True, help="List the rules and exit.")
@friendly
def check(inputs, as_json, report_dir, mtu, allow_fragments, disable, list_rules):
    """Compliance report of captures (or flow files): exit 0 clean, 1 violations, 2 bad input.

    Checksums of captures are verified over their real payloads; packets whose
    payload was cut by the snap length cannot be judged and are not counted.
    Packets that claim IPv4 but cannot be parsed violate ``unparsed_packets``;
    packets of protocols the layout does not cover (ARP, IPv6, ...) are listed,
    not judged.
    """
    from engine.repair import check_flows
    from engine.repair.report import UNPARSED, UNPARSED_HELP
    if list_rules:
        from engine.repair import rule_table
        click.echo(f"{UNPARSED:<22} {'packet':<7} {UNPARSED_HELP}")
        for r in rule_table():
            click.echo(f"{r['name']:<22} {r['scope']:<7} {r['description']}")
        return
    opts = _repair_options(mtu, None, disable, allow_fragments, 0)
    skipped = Counter()
    with Progress() as prog:
        mats, metas, psums = load_inputs(inputs, prog, payload_sums=True, skipped=skipped)
    rep = check_flows(mats, metas, opts, source=", ".join(map(str, inputs)), payload_sums=psums)
    rep.add_skipped(skipped)
    if report_dir:
        Path(report_dir).mkdir(parents=True, exist_ok=True)
        rep.write(report_dir)
    click.echo(json.dumps(rep.to_dict(), indent=2) if as_json else rep.to_table())
    sys.exit(0 if rep.clean else 1)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--out", "out", required=True, type=click.Path(), help="Repaired capture (.pcap).")
@click.option("-r", "--report", "report_prefix", type=click.Path(), default=None,
              help="Report prefix or directory (default: next to OUT, OUT.compliance.json/.txt).")
@click.option("--mtu", default=1500, show_default=True)
@click.option("--server-port", type=int, default=None, help="Service port of every flow's responder.")
@click.option("--allow-fragments", is_flag=True)
@click.option("--disable", multiple=True, help="Rule to leave out (repeatable).")
@click.option("--seed", default=0, show_default=True, help="Seed for replaced addresses and ports.")
@click.option("--link", type=click.Choice(["ethernet", "raw"]), default="ethernet", show_default=True)
@click.option("--snap", is_flag=True, help="Round flow-file values onto 1, 0, -1 (NaN: absent) instead of "
                                           "refusing a file that holds anything else.")
@click.option("-q", "--quiet", is_flag=True)
@detachable("repair")
def repair(inputs, out, report_prefix, mtu, server_port, disable, allow_fragments, seed, link, snap, quiet):
    """Repair matrices, images or captures; write the repaired capture and its report."""
    from engine.codec import capture as cap
    from engine.codec.matrix import write_pcap
    from engine.repair import repair_flows
    opts = _repair_options(mtu, server_port, disable, allow_fragments, seed)
    skipped = Counter()
    with Progress(None if not quiet else False) as prog:
        mats, metas, _ = load_inputs(inputs, prog, snap=snap, skipped=skipped)
    if not mats:
        raise InputError(None, "no flows in the inputs")
    mats, metas, rep = repair_flows(mats, metas, opts, source=", ".join(map(str, inputs)))
    rep.add_skipped(skipped)
    n = write_pcap(out, mats, metas, cap.LINK_ETHERNET if link == "ethernet" else cap.LINK_RAW)
    jp, tp = rep.write(report_prefix or out)
    if not quiet:
        click.echo(rep.to_table())
        click.echo(f"{out}: {n} packets in {sum(1 for m in mats if len(m))} flows; report {jp}, {tp}")
