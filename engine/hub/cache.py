"""What is on disk: the shipped default, local checkpoints and runs, and huggingface_hub's cache.

The Hub cache is read with ``huggingface_hub.scan_cache_dir`` and freed with its
``delete_revisions(...)`` plan (``expected_freed_size`` before ``execute()``), never by
walking or deleting it by hand. Verification reads the cache as huggingface_hub
writes it: a snapshot file is a relative symlink to ``blobs/<etag>``, and the etag
is the file's sha256 for LFS files and its git blob sha1 for small files, so every
byte is checked with no network. When the download also cached the commit's file
tree (``trees/<commit>.json``), the hashes and sizes listed there are checked too.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.artifacts.models import class_flows
from engine.hub.refs import DEFAULT_MODEL_DIR, Ref, RefError, hub_cache_dir, is_offline, parse_ref, resolve_ref

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
NATIVE_FORMAT = "netdiff-native-1"


# -- describing a checkpoint directory -------------------------------------------------------

def read_config(d: Path) -> dict | None:
    try:
        c = json.loads((d / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return c if isinstance(c, dict) else None


def checkpoint_format(d: Path) -> str:
    """``native`` (ours), ``diffusers`` (a pipeline), ``lora`` (a peft adapter), ``other``."""
    cfg = read_config(d)
    if cfg is not None and cfg.get("format") == NATIVE_FORMAT:
        return "native"
    if (d / "model_index.json").is_file():
        return "diffusers"
    if (d / "adapter_config.json").is_file() or any(d.glob("*lora*.safetensors")):
        return "lora"
    return "other"


def classes_of(d: Path) -> tuple[str, ...]:
    cfg = read_config(d) or {}
    c = cfg.get("classes")
    return tuple(str(x) for x in c) if isinstance(c, list) and all(isinstance(x, str) for x in c) else ()


def dir_size(d: Path) -> int:
    total = 0
    for p in d.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            pass
    return total


@dataclass
class ModelRow:
    """One row of ``netdiff models list``."""

    name: str
    kind: str                        # "default", "local", "run" or "hub"
    ref: str                         # what --model takes
    path: str | None                 # directory (a hub repo: its cache folder)
    format: str = "unknown"          # native, diffusers, lora, other
    classes: list[str] = field(default_factory=list)
    revisions: list[dict] = field(default_factory=list)    # hub: commit, refs, size, snapshot
    size: int = 0
    last_used: float | None = None
    status: str = "ready"

    def to_dict(self) -> dict:
        return asdict(self)


def _local_entry(name: str, kind: str, d: Path) -> ModelRow:
    ref = "default" if kind == "default" else str(d)
    w = d / "model.safetensors"
    try:
        last = max(w.stat().st_atime, w.stat().st_mtime) if w.is_file() else None
    except OSError:
        last = None
    status = "ready" if w.is_file() and (d / "config.json").is_file() else "incomplete (no model.safetensors/config.json)"
    return ModelRow(name, kind, ref, str(d), checkpoint_format(d), list(classes_of(d)), [], dir_size(d), last, status)


def scan_hub(cache_dir: str | os.PathLike | None = None):
    """``scan_cache_dir`` of the Hub cache, or None when the cache does not exist yet."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound
    try:
        return scan_cache_dir(cache_dir or hub_cache_dir())
    except CacheNotFound:
        return None


def _newest(revs):
    return max(revs, key=lambda r: r.last_modified)


def hub_entries(cache_dir: str | os.PathLike | None = None) -> list[ModelRow]:
    info = scan_hub(cache_dir)
    out = []
    for repo in sorted(info.repos if info else (), key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        revs = sorted(repo.revisions, key=lambda r: -r.last_modified)
        rows = [{"commit": r.commit_hash, "refs": sorted(r.refs), "size": r.size_on_disk,
                 "files": r.nb_files, "snapshot": str(r.snapshot_path)} for r in revs]
        newest = revs[0] if revs else None
        snap = newest.snapshot_path if newest else None
        ref = f"hf://{repo.repo_id}@{newest.commit_hash}" if newest else f"hf://{repo.repo_id}"
        out.append(ModelRow(repo.repo_id, "hub", ref, str(repo.repo_path),
                              checkpoint_format(snap) if snap else "unknown",
                              list(classes_of(snap)) if snap else [], rows, repo.size_on_disk,
                              repo.last_accessed, "ready" if revs else "no complete revision"))
    return out


def list_models(local: list[tuple[str, str, Path]] = (), cache_dir: str | os.PathLike | None = None) -> list[ModelRow]:
    """The shipped default, the ``local`` checkpoints given as (name, kind, directory), every Hub repo cached."""
    out = [_local_entry("default", "default", DEFAULT_MODEL_DIR)]
    seen = {DEFAULT_MODEL_DIR.resolve()}
    for name, kind, d in local:
        d = Path(d)
        if d.resolve() in seen or not d.is_dir():
            continue
        seen.add(d.resolve())
        out.append(_local_entry(name, kind, d))
    return out + hub_entries(cache_dir)


# -- one reference ---------------------------------------------------------------------------

def hub_repo(ref: Ref, cache_dir=None):
    info = scan_hub(cache_dir)
    for repo in (info.repos if info else ()):
        if repo.repo_id == ref.repo_id and repo.repo_type == "model":
            return info, repo
    return info, None


def cached_revision(ref: Ref, cache_dir=None):
    """The cached revision (huggingface_hub's ``CachedRevisionInfo``) a Hub reference names: its
    commit, a branch or tag through ``refs/``, or without a revision ``main`` (else the newest)."""
    _, repo = hub_repo(ref, cache_dir)
    if repo is None:
        return None
    revs = list(repo.revisions)
    if ref.revision:
        return next((r for r in revs if r.commit_hash == ref.revision or ref.revision in r.refs), None)
    return next((r for r in revs if "main" in r.refs), None) or (_newest(revs) if revs else None)


def cached_commit(ref: Ref, cache_dir=None) -> str | None:
    r = cached_revision(ref, cache_dir)
    return r.commit_hash if r else None


def _blob_hash(p: Path) -> tuple[str, str] | None:
    """(algorithm, expected hash) from the blob a cache symlink points to."""
    if not p.is_symlink():
        return None
    name = Path(os.path.realpath(p)).name
    if SHA256_RE.match(name):
        return "sha256", name
    if SHA1_RE.match(name):
        return "git-sha1", name
    return None


def file_hash(p: Path, algo: str) -> str:
    """sha256 of the content, or git's blob sha1 (``blob <len>\\0`` + content), read in chunks."""
    import hashlib
    size = p.stat().st_size
    with open(p, "rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.sha256() if algo == "sha256"
                                   else hashlib.sha1(b"blob %d\0" % size)).hexdigest()


def _tree_entries(snapshot: Path) -> dict | None:
    """huggingface_hub's cached file tree for this commit (written by snapshot_download), if any."""
    repo_dir = snapshot.parent.parent
    try:
        data = json.loads((repo_dir / "trees" / f"{snapshot.name}.json").read_text(encoding="utf-8"))
        files = data["files"]
        return files if isinstance(files, dict) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _snapshot_files(snapshot: Path) -> list[Path]:
    return sorted(p for p in snapshot.rglob("*") if p.is_file() or p.is_symlink())


def _ref_and_dir(text: str | Ref, revision: str | None, cache_dir, offline: bool | None = True) -> tuple[Ref, Path]:
    ref = text if isinstance(text, Ref) else parse_ref(text)
    if revision:
        if ref.kind != "hub":
            raise RefError(f"{ref}: --revision applies to Hub repositories only")
        ref = parse_ref(f"hf://{ref.repo_id}@{revision}")
    if ref.kind == "hub":
        rev = cached_revision(ref, cache_dir)
        if rev is None:
            raise RefError(f"{ref}: not in the Hub cache ({Path(cache_dir or hub_cache_dir())}); "
                           f"`netdiff models download {ref.repo_id}"
                           + (f" --revision {ref.revision}" if ref.revision else "") + "` fetches it")
        return ref.at(rev.commit_hash), Path(rev.snapshot_path)
    return ref, resolve_ref(ref)


@dataclass
class FileCheck:
    name: str
    size: int
    algorithm: str           # sha256, git-sha1, or "structure" for local checkpoints
    expected: str
    actual: str
    ok: bool
    problem: str = ""


@dataclass
class VerifyReport:
    ref: str
    path: str
    files: list[FileCheck]
    missing: list[str]

    @property
    def ok(self) -> bool:
        """Every file present is intact. ``missing`` (files the Hub lists that were not fetched,
        e.g. left out by --include) is information, not damage."""
        return all(f.ok for f in self.files)

    @property
    def bad(self) -> list[FileCheck]:
        return [f for f in self.files if not f.ok]


def _safetensors_problem(p: Path) -> str:
    """Why a safetensors file is malformed (header, or data shorter/longer than the header says), else ''."""
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                return "shorter than a safetensors header"
            (n,) = struct.unpack("<Q", raw)
            if n > min(size - 8, 100 << 20):
                return f"header length {n} is out of range"
            header = json.loads(f.read(n))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        return f"unreadable safetensors header ({type(e).__name__})"
    if max(ends, default=0) != size - 8 - n:
        return f"tensor data is {size - 8 - n} bytes, the header describes {max(ends, default=0)}"
    return ""


def verify(text: str | Ref, revision: str | None = None, cache_dir=None, on_file=None) -> VerifyReport:
    """Hash every file of a cached Hub snapshot against the Hub's own hash (no network).

    Local checkpoints (the default, a directory) have no published hashes: their
    ``config.json`` must parse and each safetensors file must be internally consistent.
    """
    ref, d = _ref_and_dir(text, revision, cache_dir)
    checks, missing = [], []
    if ref.kind == "hub":
        tree = _tree_entries(d) or {}
        files = _snapshot_files(d)
        present = {p.relative_to(d).as_posix() for p in files}
        for p in files:
            rel = p.relative_to(d).as_posix()
            if on_file:
                on_file(rel)
            if not p.exists():
                checks.append(FileCheck(rel, 0, "-", "-", "-", False, "dangling link: its blob is gone"))
                continue
            t = tree.get(rel) or {}
            bh = _blob_hash(p)
            if t.get("lfs_sha256"):
                algo, expected = "sha256", str(t["lfs_sha256"])
            elif t.get("blob_id"):
                algo, expected = "git-sha1", str(t["blob_id"])
            elif bh:
                algo, expected = bh
            else:
                checks.append(FileCheck(rel, p.stat().st_size, "-", "-", "-", False,
                                        "not a link into blobs/: no hash to check against"))
                continue
            actual = file_hash(p, algo)
            size = p.stat().st_size
            problem = ""
            if actual != expected:
                problem = "content differs from the Hub's hash"
            elif bh and bh[1] != expected:
                problem = "stored under another blob name than the Hub's hash"
            elif t.get("size") is not None and "lfs_size" not in t and int(t["size"]) != size:
                problem = f"size {size}, the Hub says {t['size']}"
            checks.append(FileCheck(rel, size, algo, expected, actual, not problem, problem))
        missing = sorted(set(tree) - present) if tree else []
    else:
        for p in sorted(q for q in d.rglob("*") if q.is_file()):
            rel = p.relative_to(d).as_posix()
            if on_file:
                on_file(rel)
            if p.suffix == ".safetensors":
                prob = _safetensors_problem(p)
            elif p.suffix == ".json":
                try:
                    json.loads(p.read_text(encoding="utf-8"))
                    prob = ""
                except (OSError, ValueError) as e:
                    prob = f"not valid JSON ({type(e).__name__})"
            else:
                continue
            checks.append(FileCheck(rel, p.stat().st_size, "structure", "-", "-", not prob, prob))
        for need in ("config.json", "model.safetensors"):
            if checkpoint_format(d) == "native" and not (d / need).is_file():
                checks.append(FileCheck(need, 0, "structure", "-", "-", False, "missing"))
    return VerifyReport(ref.uri, str(d), checks, missing)


# -- info --------------------------------------------------------------------------------------

def info(text: str | Ref, revision: str | None = None, cache_dir=None) -> dict:
    """Config, classes, files with sizes and hashes, where it lives, which recipes use it.

    A Hub reference that is not cached is described from the Hub (``model_info`` with file
    metadata) when online."""
    ref = text if isinstance(text, Ref) else parse_ref(text)
    if revision and ref.kind == "hub":
        ref = parse_ref(f"hf://{ref.repo_id}@{revision}")
    if ref.kind == "hub" and cached_commit(ref, cache_dir) is None:
        if is_offline():
            _ref_and_dir(ref, None, cache_dir)      # raises: not cached
        return _remote_info(ref)
    ref, d = _ref_and_dir(ref, None, cache_dir)
    files = []
    for p in _snapshot_files(d) if ref.kind == "hub" else sorted(q for q in d.rglob("*") if q.is_file()):
        rel = p.relative_to(d).as_posix()
        bh = _blob_hash(p) if ref.kind == "hub" else None
        try:
            size = p.stat().st_size
        except OSError:
            size = 0
        if bh:
            algo, h = bh
        else:
            algo, h = "sha256", (file_hash(p, "sha256") if p.exists() else "-")
        files.append({"name": rel, "size": size, "algorithm": algo, "hash": h})
    cfg = read_config(d) or {}
    out = {"ref": ref.uri, "kind": ref.kind, "path": str(d), "format": checkpoint_format(d),
           "classes": list(classes_of(d)), "class_flows": class_flows(cfg), "config": _config_summary(cfg),
           "files": files,
           "size": sum(f["size"] for f in files), "recipes": [str(p) for p in recipes_using(ref)]}
    if ref.kind == "hub":
        _, repo = hub_repo(ref, cache_dir)
        out["commit"] = ref.revision
        out["revisions"] = [{"commit": r.commit_hash, "refs": sorted(r.refs), "size": r.size_on_disk}
                            for r in sorted(repo.revisions, key=lambda r: -r.last_modified)] if repo else []
        out["last_used"] = repo.last_accessed if repo else None
    return out


def _config_summary(cfg: dict) -> dict:
    keep = ("format", "layout", "steps", "seed", "data_manifest_sha256", "train_flows", "test_flows", "sampling",
            "model", "_class_name", "_diffusers_version", "base_model_name_or_path", "r", "lora_alpha")
    return {k: cfg[k] for k in keep if k in cfg}


def _remote_info(ref: Ref) -> dict:
    from huggingface_hub import HfApi
    from engine.hub.refs import hub_error
    try:
        mi = HfApi().model_info(ref.repo_id, revision=ref.revision, files_metadata=True)
    except Exception as e:
        raise hub_error(ref, e, is_offline()) from None
    files = [{"name": s.rfilename, "size": s.size or 0, "algorithm": "sha256" if s.lfs else "git-sha1",
              "hash": s.lfs.sha256 if s.lfs else (s.blob_id or "-")} for s in (mi.siblings or [])]
    return {"ref": ref.at(mi.sha).uri if mi.sha else ref.uri, "kind": "hub", "path": None, "commit": mi.sha,
            "format": "unknown (not downloaded)", "classes": [], "class_flows": {}, "config": {}, "files": files,
            "size": sum(f["size"] for f in files), "recipes": [str(p) for p in recipes_using(ref)],
            "revisions": [], "last_used": None}


# -- recipes that name a model -----------------------------------------------------------------

def recipe_files() -> list[Path]:
    """Shipped presets and the user's recipes."""
    from engine.datasets import recipes as rc
    out = []
    for d in (rc.presets_dir(), rc.user_dir()):
        if d.is_dir():
            out += sorted(d.glob("*.toml"))
    return out


def recipes_using(ref: Ref, commits: set[str] | None = None, files: list[Path] | None = None) -> list[Path]:
    """Recipe files whose ``model`` is this reference: the default, the same directory, or the
    same Hub repository (at one of ``commits`` when given, else at any revision)."""
    import tomllib
    out = []
    for f in recipe_files() if files is None else files:
        try:
            raw = tomllib.loads(f.read_text(encoding="utf-8")).get("model", "default")
            m = parse_ref(raw if isinstance(raw, str) else "default", base=f.parent)
        except (OSError, ValueError, tomllib.TOMLDecodeError):
            continue
        if m.kind != ref.kind:
            continue
        if ref.kind == "default":
            out.append(f)
        elif ref.kind == "local":
            if m.path and ref.path and m.path.resolve() == ref.path.resolve():
                out.append(f)
        elif m.repo_id == ref.repo_id:
            wanted = commits if commits is not None else ({ref.revision} if ref.pinned and ref.revision else None)
            if wanted is None or m.revision in wanted:
                out.append(f)
    return out


def human_size(n: int | None) -> str:
    if not n:
        return "0 B"
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if x < 1024 or unit == "TiB":
            return f"{int(x)} B" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return f"{x:.1f} TiB"


def age(t: float | None) -> str:
    if not t:
        return "-"
    s = max(0.0, time.time() - t)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{int(s // n)}{unit} ago"
    return f"{int(s)}s ago"


