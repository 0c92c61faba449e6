"""Our runs in a Hub-compatible layout, and pushing them to a Hub or a mirror.

A shareable checkpoint is one folder::

    config.json          the native config (format, classes, layout, training provenance)
    model.safetensors    the weights
    README.md            a model card: classes, data hash, training steps, quality figures

``push`` uploads that folder with ``HfApi.upload_folder``. The token is whatever
huggingface_hub finds itself (``HF_TOKEN``, or its token store written by
``hf auth login``); it is never printed, logged or written by us.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from engine.errors import InputError
from engine.hub.refs import RefError, hub_endpoint, hub_error, parse_ref
from engine.outdir import current_umask

FILES = ("config.json", "model.safetensors")
#: carried along when the checkpoint has them (engine.model.critic)
OPTIONAL_FILES = ("critic.safetensors",)


def checkpoint_dir(run: str | os.PathLike) -> Path:
    """A run directory (``RUN/model``), an exported checkpoint or an imported folder -> the folder
    holding ``config.json`` + ``model.safetensors`` of the native format."""
    d = Path(run)
    if not d.is_dir():
        raise InputError(d, "no such directory")
    if not (d / FILES[1]).is_file() and (d / "model" / FILES[1]).is_file():
        d = d / "model"
    for f in FILES:
        if not (d / f).is_file():
            raise InputError(d, f"not a checkpoint: {f} is missing (a training run exports model/ when it finishes)")
    try:
        cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(d / "config.json", f"unreadable: {e}") from None
    if not isinstance(cfg, dict) or cfg.get("format") != "netdiff-native-1":
        raise InputError(d / "config.json", "not a netdiff native checkpoint (format is not 'netdiff-native-1')")
    return d


def _report(run: Path, report: str | os.PathLike | None) -> dict | None:
    """The evaluation report (``report.json``) whose figures go on the card: the one given, else one
    inside the run directory."""
    cands = []
    if report is not None:
        p = Path(report)
        cands = [p / "report.json" if p.is_dir() else p]
    else:
        for base in (run, run.parent):
            cands += [base / "report.json", base / "evaluation" / "report.json", base / "eval" / "report.json"]
    for p in cands:
        if p.is_file():
            try:
                r = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise InputError(p, f"unreadable evaluation report: {e}") from None
            if not isinstance(r, dict) or not isinstance(r.get("summary"), dict):
                raise InputError(p, "not a netdiff evaluate report (no 'summary')")
            return r
        if report is not None:
            raise InputError(p, "no such evaluation report")
    return None


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def model_card(cfg: dict, weights_sha256: str, name: str, report: dict | None, repo_id: str | None = None) -> str:
    classes = [str(c) for c in cfg.get("classes") or []]
    where = repo_id or "ORG/NAME"
    lines = ["---", "library_name: netdiffusion", "tags:", "- netdiffusion", "- network-traffic", "- pcap",
             "- diffusion", "---", "", f"# {name}", "",
             "A [NetDiffusion Studio](https://github.com/) native checkpoint: a class-conditional diffusion model of "
             "packet header bit matrices (nprint-style), sampled and repaired into protocol-compliant pcaps.", "",
             "| | |", "|---|---|",
             f"| format | `{cfg.get('format')}` |", f"| bit layout | `{cfg.get('layout')}` |",
             f"| training steps | {cfg.get('steps', 'unknown')} |",
             f"| training / held-out flows | {cfg.get('train_flows', '?')} / {cfg.get('test_flows', '?')} |",
             f"| seed | {cfg.get('seed', '?')} |",
             f"| data manifest sha256 | `{cfg.get('data_manifest_sha256', 'unknown')}` |",
             f"| weights sha256 | `{weights_sha256}` |", "",
             f"## Classes ({len(classes)})", "", ", ".join(f"`{c}`" for c in classes) or "none recorded", "",
             "## Quality", ""]
    if report:
        s = report["summary"]
        jsd = s.get("mean_jsd") or {}
        lines += ["From `netdiff evaluate` on the held-out real flows (lower JSD is closer to real):", "",
                  "| candidate | mean JSD | mean TVD |", "|---|---|---|"]
        lines += [f"| {k} | {_fmt(v)} | {_fmt((s.get('mean_tvd') or {}).get(k, '-'))} |" for k, v in jsd.items()]
        ratios = [(k, v) for k, v in s.items() if k.startswith("tstr_ratio_") and isinstance(v, (int, float))]
        if ratios:
            lines += ["", "Train-on-synthetic / train-on-real macro-F1 ratio (ports masked):", ""]
            lines += [f"- {k[len('tstr_ratio_'):]}: {_fmt(float(v))}" for k, v in ratios]
    else:
        lines += ["Not evaluated yet: `netdiff evaluate --real DIR --synthetic DIR -o REPORT`, then "
                  "`netdiff models import RUN --report REPORT` puts the figures here."]
    lines += ["", "## Use", "", "```sh", f"netdiff models download {where}",
              f"netdiff generate --model hf://{where}@<commit> --label {classes[0] if classes else 'LABEL'} "
              "-n 20 -o out/", "```", ""]
    return "\n".join(lines)


def _sha256(p: Path) -> str:
    with open(p, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def build_layout(run: str | os.PathLike, out: str | os.PathLike, report: str | os.PathLike | None = None,
                 name: str | None = None, repo_id: str | None = None, force: bool = False) -> Path:
    """Write ``out`` = config.json + model.safetensors + README.md (built in a temp folder, then renamed)."""
    src = checkpoint_dir(run)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise InputError(out, "exists and is not empty (pass --force to replace it)")
    cfg = json.loads((src / "config.json").read_text(encoding="utf-8"))
    rep = _report(src, report)
    nm = name or (repo_id.split("/")[-1] if repo_id else (Path(run).resolve().name if src.name == "model"
                                                             else src.resolve().name))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(tmp, 0o777 & ~current_umask())     # it becomes OUT: mkdtemp's 0700 would ignore the umask
    try:
        for f in FILES + tuple(f for f in OPTIONAL_FILES if (src / f).is_file()):
            shutil.copyfile(src / f, tmp / f)
        card = model_card(cfg, _sha256(tmp / FILES[1]), nm, rep, repo_id)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def push(run: str | os.PathLike, repo: str, report: str | os.PathLike | None = None, private: bool = False,
         message: str | None = None) -> tuple[str, str]:
    """Upload a run (in the Hub layout) to ``repo`` on the configured endpoint; returns (repo_id, commit).

    Needs a token the user already has (``HF_TOKEN`` or ``hf auth login``)."""
    from huggingface_hub import HfApi, get_token
    ref = parse_ref(repo if str(repo).startswith("hf://") else f"hf://{repo}")
    if ref.kind != "hub" or ref.revision:
        raise RefError(f"{repo}: push takes a repository id, org/name (no @revision)")
    checkpoint_dir(run)                      # bad input is reported before any network use
    if not get_token():
        raise RefError(f"no Hugging Face token: run `hf auth login` or set HF_TOKEN to push to {hub_endpoint()} "
                       "(netdiff never stores tokens itself)")
    api = HfApi()
    with tempfile.TemporaryDirectory(prefix="netdiff-push-") as td:
        folder = build_layout(run, Path(td) / "repo", report, repo_id=ref.repo_id)
        try:
            api.create_repo(ref.repo_id, private=private, exist_ok=True)
            ci = api.upload_folder(repo_id=ref.repo_id, folder_path=folder,
                                   commit_message=message or "netdiff models push")
        except Exception as e:
            raise hub_error(ref, e, False) from None
    return ref.repo_id, ci.oid
