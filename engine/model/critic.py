"""The critic: which of a few sampled candidates of a flow looks most like a real flow of its class.

The model's flows are valid, but a random forest on flow statistics (sizes, gaps, flags, TTL, ...)
still tells them from held-out real flows (bench/quality_1024.md: ROC AUC 0.83, 0.5 = can't).
What gives them away is joint (no single statistic above 0.65), so no table of values fixes it.

A checkpoint may carry ``critic.safetensors``: a small MLP on a flow's statistics
(:data:`engine.evaluate.features.FLOW_FEATURES` without the ports, the class one-hot), fitted to
tell the class's *training* flows (1) from the checkpoint's own samples (0). Its logit estimates
``log p_real(x) / p_model(x)``, so drawing one of ``k`` candidates with probability proportional
to ``exp(logit)`` is sampling-importance-resampling towards the real distribution (discriminator
rejection sampling, Azadi et al., ICLR 2019): ``k = 1`` is the model as it is, larger ``k``
moves the flows closer to real ones at ``k`` times the sampling cost. ``netdiff generate
--candidates K`` (request field ``candidates``) asks for it; bench/quality_1024.md measures it.

Weights are safetensors only; the class list, feature names and provenance are in the file's
metadata and are range-checked on load.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import InputError

FILE = "critic.safetensors"
FORMAT = "netdiff-critic-1"
#: a logit is clipped to +-LOGIT before it weighs a candidate: one outlier cannot take every draw
LOGIT = 5.0
HIDDEN = 64
#: a class with fewer real training flows than this is not picked for: a critic fitted on a handful
#: of real flows would pull every candidate towards those few (tor: 4, facebook: 7 in the shipped split)
MIN_REAL = 30


def feature_names() -> list[str]:
    from engine.evaluate.features import FLOW_FEATURES, FLOW_PORT_FEATURES
    return [f for f in FLOW_FEATURES if f not in FLOW_PORT_FEATURES]


def flow_features(mats: list[np.ndarray]) -> np.ndarray:
    """``(n, F)`` float32: each flow's statistics without its ports (ports are held by the
    port prior, not sampled, so a critic must not pick flows by them)."""
    from engine.evaluate.features import flow_matrix
    return flow_matrix(mats, mask_ports=True).astype(np.float32)


@dataclass
class Critic:
    """An MLP ``F + C -> HIDDEN -> HIDDEN -> 1`` (ReLU) over standardised flow statistics and the
    class one-hot. ``layers``: ``[(W (out, in), b (out,)), ...]`` float32."""

    classes: list[str]
    mean: np.ndarray            # (F,)
    std: np.ndarray             # (F,), > 0
    layers: list[tuple[np.ndarray, np.ndarray]]
    info: dict

    def knows(self, label: str) -> bool:
        """Whether it picks for ``label``: fitted on it, with :data:`MIN_REAL` real flows or more."""
        n = (self.info.get("flows") or {}).get(label)
        return label in self.classes and isinstance(n, list) and bool(n) and isinstance(n[0], int) \
            and n[0] >= MIN_REAL

    def logits(self, label: str, mats: list[np.ndarray]) -> np.ndarray:
        """``(n,)``: the critic's logit for each flow of class ``label`` (higher = more real-like)."""
        x = (flow_features(mats) - self.mean) / self.std
        oh = np.zeros((len(x), len(self.classes)), np.float32)
        oh[:, self.classes.index(label)] = 1.0
        h = np.hstack([x, oh]).astype(np.float32)
        for j, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            if j + 1 < len(self.layers):
                h = np.maximum(h, 0.0)
        return h[:, 0].astype(np.float64)

    def choose(self, label: str, mats: list[np.ndarray], rng: np.random.Generator) -> int:
        """Index of the candidate drawn from ``mats`` (:func:`draw` of their logits)."""
        return draw(self.logits(label, mats), rng)


def draw(z: np.ndarray, rng: np.random.Generator) -> int:
    """Index of the candidate drawn, with probability ``exp(logit)`` (clipped to +-:data:`LOGIT`)
    normalised over the candidates' logits ``z``."""
    z = np.clip(np.asarray(z, np.float64), -LOGIT, LOGIT)
    p = np.exp(z - z.max())
    return int(rng.choice(len(z), p=p / p.sum()))


def save_critic(d: str | os.PathLike, critic: Critic) -> Path:
    """``d/critic.safetensors`` through a temp file."""
    import torch
    from safetensors.torch import save_file
    t = {"mean": critic.mean, "std": critic.std}
    for j, (w, b) in enumerate(critic.layers):
        t[f"w{j}"], t[f"b{j}"] = w, b
    meta = {"format": FORMAT, "classes": json.dumps(critic.classes), "features": json.dumps(feature_names()),
            "info": json.dumps(critic.info, sort_keys=True)}
    out = Path(d) / FILE
    tmp = out.with_name(out.name + ".tmp")
    save_file({k: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for k, v in t.items()}, tmp, metadata=meta)
    from engine.outdir import current_umask
    os.chmod(tmp, 0o666 & ~current_umask())        # safetensors writes 0600: others on a shared server could not read it
    os.replace(tmp, out)
    return out


def critic_hash(d: str | os.PathLike) -> str | None:
    """sha256 (first 16 hex digits) of the checkpoint's critic file; None without one."""
    import hashlib
    path = Path(d) / FILE
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def load_critic(d: str | os.PathLike) -> Critic | None:
    """The checkpoint's critic, range-checked; None when it has none."""
    from safetensors import safe_open
    path = Path(d) / FILE
    if not path.is_file():
        return None

    def bad(why: str):
        return InputError(path, why)
    try:
        with safe_open(path, "np") as f:
            meta = f.metadata() or {}
            t = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:      # safetensors header errors
        raise bad(f"not a critic: {e}") from None
    if meta.get("format") != FORMAT:
        raise bad(f"format {meta.get('format')!r} is not {FORMAT!r}")
    try:
        classes = json.loads(meta.get("classes", ""))
        features = json.loads(meta.get("features", ""))
        info = json.loads(meta.get("info", "{}"))
    except ValueError:
        raise bad("metadata is not JSON") from None
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)
            and len(set(classes)) == len(classes)):
        raise bad("classes: want a list of distinct names")
    if features != feature_names():
        raise bad("fitted on other flow statistics than this build computes; refit it "
                  "(scripts/fit_critic.py)")
    F, C = len(features), len(classes)
    n = sum(1 for k in t if k.startswith("w"))
    if n < 1 or set(t) != {"mean", "std"} | {f"{p}{j}" for p in "wb" for j in range(n)}:
        raise bad("want tensors mean, std, w0.., b0..")
    layers, width = [], F + C
    for j in range(n):
        w, b = t[f"w{j}"], t[f"b{j}"]
        out = 1 if j == n - 1 else (w.shape[0] if w.ndim == 2 else -1)
        if w.ndim != 2 or w.shape != (out, width) or b.shape != (out,) or out < 1 or out > 4096:
            raise bad(f"layer {j}: shape {tuple(w.shape)} does not follow ({width} inputs)")
        layers.append((w.astype(np.float32), b.astype(np.float32)))
        width = out
    mean, std = t["mean"].astype(np.float32), t["std"].astype(np.float32)
    if mean.shape != (F,) or std.shape != (F,) or not (std > 0).all():
        raise bad(f"mean/std: want {F} values, std > 0")
    if not all(np.isfinite(a).all() for a in [mean, std] + [x for wb in layers for x in wb]):
        raise bad("non-finite values")
    return Critic(classes, mean, std, layers, info if isinstance(info, dict) else {})


def fit_critic(real: dict[str, list[np.ndarray]], synthetic: dict[str, list[np.ndarray]], seed: int = 0,
               epochs: int = 200, hidden: int = HIDDEN, holdout: float = 0.2, info: dict | None = None) -> Critic:
    """Fit a critic on flows per class: ``real`` (the training split's) vs ``synthetic`` (the
    checkpoint's own samples). Each (class, side) weighs the same in the loss, so a class's
    critic is not swamped by the big classes. ``holdout`` of each side is kept out and scored:
    ``info["holdout_auc"]`` (how well it tells them apart; 0.5 = it cannot)."""
    import torch
    classes = sorted(c for c in real if real[c] and synthetic.get(c))
    if not classes:
        raise ValueError("no class has both real and synthetic flows")
    rng = np.random.default_rng(seed)
    xs, ys, cs, held = [], [], [], []
    for k, c in enumerate(classes):
        for side, flows in ((1.0, real[c]), (0.0, synthetic[c])):
            x = flow_features(flows)
            h = np.zeros(len(x), bool)
            h[rng.permutation(len(x))[:int(len(x) * holdout)]] = True
            xs.append(x), ys.append(np.full(len(x), side)), cs.append(np.full(len(x), k)), held.append(h)
    x, y, cl, held = (np.concatenate(a) for a in (xs, ys, cs, held))
    mean = x[~held].mean(axis=0)
    std = x[~held].std(axis=0)
    std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
    oh = np.eye(len(classes), dtype=np.float32)[cl]
    X = torch.from_numpy(np.hstack([(x - mean) / std, oh]).astype(np.float32))
    Y = torch.from_numpy(y.astype(np.float32))
    w = np.zeros(len(y))
    for k in range(len(classes)):
        for s in (0.0, 1.0):
            m = (cl == k) & (y == s) & ~held
            w[m] = 1.0 / max(int(m.sum()), 1)
    W = torch.from_numpy((w / w[~held].mean()).astype(np.float32))
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
    opt = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-3)
    tr = torch.from_numpy(np.flatnonzero(~held))
    for _ in range(epochs):
        perm = tr[torch.randperm(len(tr), generator=g)]
        for i in range(0, len(perm), 256):
            b = perm[i:i + 256]
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(net(X[b])[:, 0], Y[b], reduction="none")
                    * W[b]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    layers = [(m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy())
              for m in net if isinstance(m, torch.nn.Linear)]
    critic = Critic(classes, mean.astype(np.float32), std, layers, dict(info or {}))
    if held.any() and len(np.unique(y[held])) == 2:
        with torch.no_grad():
            z = net(X[torch.from_numpy(np.flatnonzero(held))])[:, 0].numpy()
        critic.info["holdout_auc"] = round(_auc(y[held], z), 4)
    critic.info.update(seed=seed, epochs=epochs, hidden=hidden,
                       flows={c: [len(real[c]), len(synthetic[c])] for c in classes})
    return critic


def _auc(y: np.ndarray, z: np.ndarray) -> float:
    """ROC AUC by ranks (ties averaged)."""
    order = np.argsort(z, kind="mergesort")
    ranks = np.empty(len(z))
    ranks[order] = np.arange(1, len(z) + 1)
    for v in np.unique(z):
        m = z == v
        if m.sum() > 1:
            ranks[m] = ranks[m].mean()
    pos = y == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
