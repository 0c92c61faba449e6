"""Optimizer state in safetensors + JSON, so a checkpoint never needs unpickling.

``optimizer.safetensors`` holds every tensor of ``optimizer.state_dict()["state"]``
as ``"<param index>.<name>"``; ``optimizer.json`` holds the param groups and the
non-tensor entries. Reading checks every index and name against the optimizer
it is loaded into.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from engine.errors import InputError


def save_optimizer(opt: torch.optim.Optimizer, d: str | os.PathLike) -> None:
    d = Path(d)
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    save_file(tensors, d / "optimizer.safetensors")
    (d / "optimizer.json").write_text(json.dumps({"param_groups": sd["param_groups"], "scalars": scalars}))


def load_optimizer(opt: torch.optim.Optimizer, d: str | os.PathLike) -> None:
    d = Path(d)
    try:
        meta = json.loads((d / "optimizer.json").read_text())
        tensors = load_file(d / "optimizer.safetensors")
        groups = meta["param_groups"]
        scalars = meta["scalars"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(d, f"optimizer state unreadable: {e}") from None
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    if not isinstance(groups, list) or len(groups) != len(opt.param_groups) or \
            sum(len(g.get("params", [])) for g in groups) != n_params:
        raise InputError(d / "optimizer.json", "param groups do not match this run's trainable parameters")
    known = set(opt.state_dict()["param_groups"][0]) if opt.param_groups else set()
    state: dict[int, dict] = {}
    for key, v in [*tensors.items(), *scalars.items()]:
        pid, _, name = key.partition(".")
        if not pid.isdigit() or not 0 <= int(pid) < n_params or not name:
            raise InputError(d, f"optimizer state entry {key!r} is out of range ({n_params} parameters)")
        state.setdefault(int(pid), {})[name] = v
    for g in groups:
        bad = set(g) - known
        if bad:
            raise InputError(d / "optimizer.json", f"unknown optimizer settings {sorted(bad)}")
    opt.load_state_dict({"state": state, "param_groups": groups})
