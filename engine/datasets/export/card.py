"""README.md of an exported dataset (its data card)."""

from __future__ import annotations


def data_card(info: dict, rows: list[dict], title: str = "") -> str:
    """README.md of an exported dataset."""
    cls = info["classes"]
    split = info["options"]["split"] is not None
    n_real = sum(v.get("real", 0) for v in cls.values())
    n_syn = sum(v.get("synthetic", 0) for v in cls.values())
    lines = [f"# {title or 'NetDiffusion Studio dataset'}", "",
             "Labeled network flows, one capture file per flow, exported by `netdiff export`.", "",
             "## What", "",
             f"- {info['flows']} flows in {len(cls)} classes: {n_real} real, {n_syn} synthetic.",
             "- `<class>/<flow_id>.pcap`: one flow per file (bidirectional 5-tuple; 120 s idle timeout, "
             f"at most {info['options']['flow_config']['max_packets']} packets)." if not split else
             "- `train/<class>/<flow_id>.pcap`, `test/<class>/<flow_id>.pcap`: one flow per file.",
             "- `manifest.csv` / `manifest.json`: per flow: file, class, flow id, split, origin (real or "
             "synthetic), transport, packets, bytes, duration, client and server address and port, source, "
             "recipe and model hashes, seed, compliance.",
             ]
    if info["merged_pcapng"]:
        lines.append("- `*.pcapng`: each class's flows in one file; every packet's comment reads "
                     "`label=<class> flow=<flow id> origin=<real|synthetic>`.")
    lines += ["", "## How it was made", "",
              "- **Real** flows: cut from labeled public captures with the same flow rules as `netdiff encode`; "
              "packets keep their original bytes and timestamps.",
              "- **Synthetic** flows: sampled by the NetDiffusion model for the class (`netdiff generate`), "
              "addresses, ports and times from the recipe, then repaired for protocol compliance; copied byte "
              "for byte.", ""]
    if split:
        lines += [f"- Split by flow, stratified by class, {info['options']['split']:.0%} held out as `test` "
                  f"(seed {info['options']['seed']}). Test flows are real whenever the class has real flows; "
                  "synthetic flows only train.", ""]
    lines += ["Inputs:", ""] + [f"- `{d}`" for d in info["inputs"]] + [""]
    for n in info.get("notes") or []:
        lines.append(f"- {n}")
    if info.get("notes"):
        lines.append("")
    head = "| class | real | synthetic |" + (" train | test |" if split else "") + " packets |"
    lines += ["## Flows per class", "", head, "|" + "---|" * (head.count("|") - 1)]
    for k, v in cls.items():
        lines.append(f"| {k} | {v.get('real', 0)} | {v.get('synthetic', 0)} |"
                     + (f" {v.get('train', 0)} | {v.get('test', 0)} |" if split else "") + f" {v.get('packets', 0)} |")
    tot = lambda key: sum(v.get(key, 0) for v in cls.values())  # noqa: E731
    lines.append(f"| **all** | {tot('real')} | {tot('synthetic')} |"
                 + (f" {tot('train')} | {tot('test')} |" if split else "") + f" {tot('packets')} |")
    lines += ["", "## Compliance", ""]
    if info["compliance"]:
        for k, v in info["compliance"].items():
            lines.append(f"- {k} (synthetic): {', '.join(x or 'unknown' for x in v)} (the generator's repair report)")
    else:
        lines.append("- No compliance report among the inputs.")
    lines.append("- Real flows are as captured (not checked; public captures may be snaplen-truncated).")
    lines += ["", "## Fidelity", ""]
    if info["fidelity"]:
        for d, m in info["fidelity"].items():
            lines.append(f"- {d}: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(m.items())))
    else:
        lines.append("- No fidelity report among the inputs (`netdiff evaluate` writes one).")
    lines += ["", "## Provenance and licences", "",
              "Real captures come from public repositories; each flow's `source` column names its capture file. "
              "Check the source's licence before redistributing real flows.", ""]
    return "\n".join(lines)
