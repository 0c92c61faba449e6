"""Pinned downloads from the Hub (or a mirror) into huggingface_hub's cache.

The branch or tag is resolved to a commit first (and recorded in the cache's
``refs/``); the files to fetch and their sizes come from a huggingface_hub dry
run before a byte is downloaded; the download itself is ``snapshot_download``
pinned to that commit. Only safetensors, json, md and txt files come by default;
pickled weights (``.bin``, ``.ckpt``, ``.pt``, ``.pkl``) are refused unless the
caller allows them. A connection dropped inside a file is resumed by
huggingface_hub with an HTTP Range request; a command interrupted outright keeps
every file it completed, so running it again fetches only the rest.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from engine.hub.refs import DEFAULT_PATTERNS, PICKLE_SUFFIXES, Ref, RefError, hub_error, is_offline, parse_ref
from engine.progress import Message, OnEvent, TaskFinished, TaskProgress, TaskStarted

PICKLE_PATTERNS = tuple(f"*{s}" for s in PICKLE_SUFFIXES)


@dataclass
class PlannedFile:
    name: str
    size: int | None
    cached: bool


@dataclass
class DownloadPlan:
    """What a download would fetch: the pinned reference, every matching file, the sizes."""

    ref: Ref                     # pinned: hf://org/name@<commit>
    requested: str | None        # the revision the user asked for (branch, tag, commit or None)
    files: list[PlannedFile]
    patterns: list[str]
    skipped: list[str] = field(default_factory=list)   # repo files left out by the patterns
    pickles_allowed: bool = False

    @property
    def commit(self) -> str:
        return self.ref.revision

    @property
    def total_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)

    @property
    def fetch_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files if not f.cached)


@dataclass
class DownloadResult:
    plan: DownloadPlan
    snapshot: Path
    fetched_bytes: int


def _is_pickle(name: str) -> bool:
    return name.lower().endswith(PICKLE_SUFFIXES)


def _patterns(include, allow_pickles: bool) -> tuple[list[str], list[str] | None]:
    pats = [p for p in (include or ()) if p] or list(DEFAULT_PATTERNS)
    named = [p for p in pats if p.lower().endswith(PICKLE_SUFFIXES)]
    if named and not allow_pickles:
        raise RefError(f"--include {named[0]!r} selects pickled weights, which run code when loaded; "
                       "pass --allow-pickle to fetch them anyway (prefer a safetensors revision)")
    return pats, (None if allow_pickles else list(PICKLE_PATTERNS))


def plan_download(repo: str | Ref, revision: str | None = None, include=None, allow_pickles: bool = False,
                  cache_dir: str | os.PathLike | None = None) -> DownloadPlan:
    """Resolve the revision to a commit and list what would be fetched (sizes, cached or not).
    Nothing is downloaded; the branch -> commit mapping is written to the cache's ``refs/``."""
    from huggingface_hub import HfApi, snapshot_download
    ref = repo if isinstance(repo, Ref) else parse_ref(repo if str(repo).startswith("hf://") else f"hf://{repo}")
    if ref.kind != "hub":
        raise RefError(f"{repo}: download takes a Hub repository (org/name or hf://org/name)")
    if revision and ref.revision and revision != ref.revision:
        raise RefError(f"{ref}: the reference names revision {ref.revision!r} and --revision {revision!r}; give one")
    ref = parse_ref(f"hf://{ref.repo_id}@{revision}") if revision else ref
    pats, ignore = _patterns(include, allow_pickles)
    offline = is_offline()
    api = HfApi()
    try:
        resolved = api.resolve_revision(ref.repo_id, revision=ref.revision, cache_dir=cache_dir,
                                        local_files_only=offline)
        if offline:
            # huggingface_hub refuses dry runs offline; what the cache holds is the whole answer
            files = _cached_plan(ref.at(resolved.resolved), pats, ignore, cache_dir)
        else:
            dry = snapshot_download(ref.repo_id, revision=resolved, cache_dir=cache_dir, allow_patterns=pats,
                                    ignore_patterns=ignore, dry_run=True, tqdm_class=_progress_class(None, "", 0))
            files = [PlannedFile(f.filename, f.file_size, bool(f.is_cached and not f.will_download)) for f in dry]
    except RefError:
        raise
    except Exception as e:
        raise hub_error(ref, e, offline) from None
    files.sort(key=lambda f: f.name)
    chosen = {f.name for f in files}
    skipped = []
    if not offline:
        try:    # which files the patterns left out: said in the plan, so nobody wonders where a .bin went
            mi = api.model_info(ref.repo_id, revision=resolved.resolved, timeout=10)
            skipped = sorted({s.rfilename for s in mi.siblings or ()} - chosen)
        except Exception:       # one request without retries: a Hub that just failed is not waited for
            skipped = []
    if not files:
        held = ", ".join(skipped[:6]) + (", ..." if len(skipped) > 6 else "") if skipped else "no files"
        raise RefError(f"{ref.at(resolved.resolved)}: no file matches {', '.join(pats)} (the repository holds "
                       f"{held})" + ("; pickled weights need --allow-pickle" if any(map(_is_pickle, skipped)) else ""))
    return DownloadPlan(ref.at(resolved.resolved), ref.revision, files, pats, skipped, allow_pickles)


def _cached_plan(ref: Ref, pats, ignore, cache_dir) -> list[PlannedFile]:
    """Offline: the files of the cached snapshot that the patterns select (all cached), or an
    error saying the commit is not in the cache."""
    from huggingface_hub.utils import filter_repo_objects
    from engine.hub.cache import cached_revision
    rev = cached_revision(ref, cache_dir)
    if rev is None:
        raise RefError(f"{ref}: not in the Hub cache and offline mode (HF_HUB_OFFLINE=1): nothing to fetch from")
    by_name = {f.file_path.relative_to(rev.snapshot_path).as_posix(): f for f in rev.files}
    keep = filter_repo_objects(sorted(by_name), allow_patterns=pats, ignore_patterns=ignore)
    return [PlannedFile(n, by_name[n].size_on_disk, True) for n in keep]


def _progress_class(on_event: OnEvent | None, task: str, total: int):
    """A tqdm class for huggingface_hub that draws nothing and reports bytes as engine events
    (tqdm output would be swallowed by the console, and would break the CLI's own bar)."""
    from tqdm.auto import tqdm
    lock = threading.Lock()
    done = [0]

    class EventBar(tqdm):
        def __init__(self, *a, **kw):
            kw["disable"] = True
            desc = str(kw.get("desc") or "")
            # snapshot_download makes a files bar, a network-bytes bar and a written-bytes bar: count the last
            self._counts = kw.get("unit") == "B" and not desc.startswith("Downloading bytes")
            super().__init__(*a, **kw)
            self.n = kw.get("initial", 0) or 0

        def update(self, n=1):
            n = n or 0
            self.n += n
            if self._counts and on_event is not None and n:
                with lock:
                    done[0] += n
                    d = done[0]
                on_event(TaskProgress(task, d, total, "B"))

    return EventBar


def download(plan: DownloadPlan, on_event: OnEvent | None = None, cache_dir: str | os.PathLike | None = None,
             max_workers: int = 4) -> DownloadResult:
    """Fetch what :func:`plan_download` listed, pinned to its commit; returns the snapshot directory."""
    from huggingface_hub import snapshot_download
    task = f"download {plan.ref.repo_id}"
    if plan.pickles_allowed and any(_is_pickle(f.name) for f in plan.files) and on_event:
        on_event(Message("warning", f"{plan.ref}: fetching pickled weights "
                                    f"({', '.join(f.name for f in plan.files if _is_pickle(f.name))}); "
                                    "loading them can run arbitrary code"))
    if on_event:
        on_event(TaskStarted(task, plan.fetch_bytes, "B"))
    ignore = None if plan.pickles_allowed else list(PICKLE_PATTERNS)
    try:
        snap = snapshot_download(plan.ref.repo_id, revision=plan.commit, cache_dir=cache_dir,
                                 allow_patterns=plan.patterns, ignore_patterns=ignore, max_workers=max_workers,
                                 tqdm_class=_progress_class(on_event, task, plan.fetch_bytes))
    except Exception as e:
        raise hub_error(plan.ref, e, is_offline()) from None
    if on_event:
        on_event(TaskFinished(task, {"commit": plan.commit, "bytes": plan.fetch_bytes}))
    return DownloadResult(plan, Path(snap), plan.fetch_bytes)


def record(result: DownloadResult, log: str | os.PathLike) -> None:
    """Append one JSON line (time, repo, requested revision, commit, files, bytes) to ``log``."""
    import json
    import time
    p = Path(log)
    p.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "repo": result.plan.ref.repo_id,
                       "requested": result.plan.requested, "commit": result.plan.commit,
                       "files": [f.name for f in result.plan.files], "bytes": result.plan.total_bytes,
                       "snapshot": str(result.snapshot)})
    with open(p, "a", encoding="utf-8") as f:      # one write of one line: appends from two processes don't interleave
        f.write(line + "\n")
