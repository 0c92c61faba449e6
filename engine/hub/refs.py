"""One checkpoint reference for every place a model is named (recipes, ``--model``, the console).

Forms::

    default                         the shipped model
    ./runs/zoom, /abs/dir, ~/dir    a local checkpoint directory (or a training run)
    org/name[@rev]                  a Hub repository (when no such local directory exists)
    hf://org/name[@rev]             a Hub repository, always

``rev`` is a branch, a tag or a 40-hex commit. Recipes must pin a commit: a branch
can move under a recipe and change what it generates.

Hub references resolve through huggingface_hub's own cache (``HF_HOME`` /
``HF_HUB_CACHE``), so a pinned commit that was downloaded once resolves with no
network, also with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "default_model"

# Hub repo ids: two names of letters, digits, '-', '_', '.', at most 96 characters each;
# huggingface_hub itself refuses '--' and '..' inside them (they would break the cache folder name).
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}"
REPO_RE = re.compile(rf"^({_NAME})/({_NAME})$")
# Git refs may hold '/', e.g. refs/pr/1; '..' and a leading '-' are not valid ref names.
REV_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,254}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")

# What a download fetches unless told otherwise: weights only as safetensors, configs, model cards,
# tokenizer text files. Never pickled weights (.bin/.ckpt/.pt/.pkl): loading them runs code.
DEFAULT_PATTERNS = ("*.safetensors", "*.json", "*.md", "*.txt")
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")


class RefError(InputError, ValueError):
    """A checkpoint reference that cannot be parsed or resolved (one line; a ValueError too,
    so that validators written against ValueError catch it)."""

    def __init__(self, problem: str):
        super().__init__(None, problem)


@dataclass(frozen=True)
class Ref:
    """A parsed checkpoint reference."""

    kind: str                       # "default", "local" or "hub"
    text: str                       # as the user wrote it
    path: Path | None = None        # local directory
    repo_id: str | None = None      # "org/name"
    revision: str | None = None     # branch, tag or commit; None = the default branch

    @property
    def pinned(self) -> bool:
        return self.kind != "hub" or bool(self.revision and COMMIT_RE.match(self.revision))

    @property
    def uri(self) -> str:
        """Canonical spelling: ``default``, the directory, or ``hf://org/name[@rev]``."""
        if self.kind == "default":
            return "default"
        if self.kind == "local":
            return str(self.path)
        return f"hf://{self.repo_id}" + (f"@{self.revision}" if self.revision else "")

    def at(self, commit: str) -> "Ref":
        """The same repository pinned to ``commit``."""
        return Ref("hub", f"hf://{self.repo_id}@{commit}", repo_id=self.repo_id, revision=commit)

    def __str__(self) -> str:
        return self.uri


def _hub(text: str, body: str, require_pinned: bool) -> Ref:
    repo, sep, rev = body.partition("@")
    m = REPO_RE.match(repo)
    if not m or "--" in repo or ".." in repo or repo.endswith((".", "-")):
        raise RefError(f"{text!r} is not a Hub repository id: expected org/name (letters, digits, '-', '_', '.')")
    if sep and (not rev or not REV_RE.match(rev) or ".." in rev):
        raise RefError(f"{text!r}: {rev!r} is not a branch, tag or commit name")
    ref = Ref("hub", text, repo_id=repo, revision=rev or None)
    if require_pinned and not ref.pinned:
        how = f"hf://{repo}@<40-hex commit>; `netdiff models download {repo}` prints the commit"
        if rev:
            raise RefError(f"{text!r}: revision {rev!r} is not a 40-hex commit (a branch or tag can move "
                           f"under you): pin it as {how}")
        raise RefError(f"{text!r} is not pinned: add the commit, {how}")
    return ref


def parse_ref(text: str | os.PathLike | None, require_pinned: bool = False, base: Path | None = None) -> Ref:
    """Text -> :class:`Ref`, or :class:`RefError` with a one-line message.

    ``require_pinned`` (recipes): a Hub reference must name a 40-hex commit.
    ``base``: directory that relative local paths are relative to (a recipe's folder);
    default the current directory.
    """
    if text is None:
        return Ref("default", "default")
    if isinstance(text, os.PathLike):
        return Ref("local", os.fspath(text), path=Path(text))
    s = str(text).strip()
    if s in ("", "default"):
        return Ref("default", s or "default")
    if s.startswith("hf://"):
        return _hub(s, s[len("hf://"):], require_pinned)
    if "://" in s or re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", s):
        raise RefError(f"{s!r}: unknown scheme; a model is \"default\", a local directory, "
                       f"org/name or hf://org/name@<commit>")
    p = Path(os.path.expanduser(s))
    if not p.is_absolute() and base is not None:
        p = Path(base) / p
    explicit_path = s.startswith(("/", "./", "../", "~", ".\\")) or os.sep != "/" and os.sep in s
    if explicit_path or p.exists() or not REPO_RE.match(s.partition("@")[0]):
        return Ref("local", s, path=p)
    return _hub(s, s, require_pinned)


# -- resolution ---------------------------------------------------------------------------------

def hub_cache_dir() -> Path:
    """The Hub cache this process uses (``HF_HUB_CACHE``, else ``HF_HOME/hub``, as huggingface_hub reads them)."""
    from huggingface_hub import constants
    return Path(constants.HF_HUB_CACHE).expanduser()


def hub_endpoint() -> str:
    from huggingface_hub import constants
    return constants.ENDPOINT


def is_offline() -> bool:
    from huggingface_hub import constants
    return bool(constants.is_offline_mode())


def _cache_hint(ref: Ref) -> str:
    rev = f" --revision {ref.revision}" if ref.revision else ""
    return (f"run `netdiff models download {ref.repo_id}{rev}` where the Hub (or a mirror, HF_ENDPOINT) "
            f"is reachable, or copy that machine's Hub cache to {hub_cache_dir()}")


def hub_error(ref: Ref, e: Exception, offline: bool) -> RefError:
    """A huggingface_hub / network exception -> one line naming the reference and what to do."""
    from huggingface_hub import errors as he
    where = hub_endpoint()
    never = type("Never", (Exception,), {})      # for error classes an older huggingface_hub lacks
    incomplete = getattr(he, "IncompleteSnapshotError", never)
    unresolved = getattr(he, "RevisionResolutionError", never)
    if isinstance(e, he.RevisionNotFoundError):
        return RefError(f"{ref}: revision {ref.revision!r} does not exist in {ref.repo_id} on {where}")
    if isinstance(e, he.GatedRepoError):
        return RefError(f"{ref}: the repository is gated on {where}; accept its terms on the Hub and "
                        "log in (`hf auth login`) or set HF_TOKEN")
    if isinstance(e, he.RepositoryNotFoundError):
        return RefError(f"{ref}: no such repository on {where} (or it is private: log in with "
                        "`hf auth login` or set HF_TOKEN)")
    if isinstance(e, he.RemoteEntryNotFoundError):
        return RefError(f"{ref}: a file the repository lists is missing on {where}")
    if isinstance(e, he.DryRunError):
        return RefError(f"{ref}: cannot reach {where} to size the download"
                        + (" (HF_HUB_OFFLINE is set)" if offline else ""))
    if isinstance(e, incomplete):
        return RefError(f"{ref}: the cached snapshot is incomplete and the Hub cannot be used; " + _cache_hint(ref))
    if isinstance(e, (he.LocalEntryNotFoundError, unresolved)):
        why = "offline mode (HF_HUB_OFFLINE=1)" if offline else f"{where} cannot be reached"
        return RefError(f"{ref}: not in the Hub cache and {why}; " + _cache_hint(ref))
    if isinstance(e, he.HfHubHTTPError):
        code = getattr(getattr(e, "response", None), "status_code", "?")
        hint = " (check the token: HF_TOKEN or `hf auth login`)" if code in (401, 403) else ""
        return RefError(f"{ref}: {where} answered HTTP {code}{hint}")
    if isinstance(e, he.HFValidationError):
        return RefError(f"{ref}: {str(e).splitlines()[0]}")
    name = type(e).__name__
    if name in ("ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException", "RemoteProtocolError",
                "ProxyError", "NetworkError") or isinstance(e, ConnectionError):
        return RefError(f"{ref}: cannot reach {where} ({name}); " + _cache_hint(ref))
    first = (str(e).strip().splitlines() or [name])[0]
    return RefError(f"{ref}: {first}")


def pin_ref(ref: Ref, cache_dir: str | os.PathLike | None = None) -> Ref:
    """A Hub reference at a branch or tag -> the same at the commit it names now (asked of the Hub;
    offline, or when it cannot be reached, read from the cache's ``refs/``). The mapping is
    recorded in the cache, so the pinned reference also resolves offline afterwards."""
    if ref.kind != "hub" or ref.pinned:
        return ref
    from huggingface_hub import HfApi
    off = is_offline()
    try:
        got = HfApi().resolve_revision(ref.repo_id, revision=ref.revision, cache_dir=cache_dir,
                                       local_files_only=off)
    except Exception as e:
        raise hub_error(ref, e, off) from None
    return ref.at(got.resolved)


def resolve_hub(ref: Ref, offline: bool | None = None, cache_dir: str | os.PathLike | None = None,
                allow_patterns=DEFAULT_PATTERNS) -> Path:
    """A Hub reference -> the local snapshot directory (``.../snapshots/<commit>``).

    A pinned commit that is in the cache is used with no network at all. Otherwise, online,
    the repository is fetched (``allow_patterns``: safetensors, json, md, txt); offline (``offline``
    True, or ``HF_HUB_OFFLINE``) only the cache is read, a branch through its ``refs/`` entry.
    """
    from huggingface_hub import snapshot_download
    if ref.kind != "hub":
        raise ValueError(f"{ref} is not a Hub reference")
    off = is_offline() if offline is None else offline
    kw = dict(repo_id=ref.repo_id, revision=ref.revision, cache_dir=cache_dir,
              allow_patterns=list(allow_patterns) if allow_patterns else None)
    try:
        if off or ref.pinned:
            try:
                return Path(snapshot_download(**kw, local_files_only=True))
            except Exception:
                if off:
                    raise
        return Path(snapshot_download(**kw))
    except RefError:
        raise
    except Exception as e:      # every huggingface_hub/network failure becomes one line
        raise hub_error(ref, e, off) from None


def resolve_ref(ref: "Ref | str | os.PathLike | None", offline: bool | None = None,
                cache_dir: str | os.PathLike | None = None, allow_patterns=DEFAULT_PATTERNS) -> Path:
    """Any checkpoint reference -> the local directory that holds it.

    ``default`` -> the shipped model's directory; a local path -> that directory (it must
    exist); a Hub reference -> its snapshot in the Hub cache (see :func:`resolve_hub`).
    Errors are :class:`RefError` (an :class:`~engine.errors.InputError`: one line, exit 2).
    """
    r = ref if isinstance(ref, Ref) else parse_ref(ref)
    if r.kind == "default":
        return DEFAULT_MODEL_DIR
    if r.kind == "local":
        if not r.path.exists():
            hint = ""
            if REPO_RE.match(r.text.partition("@")[0]):
                hint = f" (for the Hub repository write hf://{r.text})"
            raise InputError(r.path, "no such checkpoint directory" + hint)
        return r.path
    try:
        return resolve_hub(r, offline=offline, cache_dir=cache_dir, allow_patterns=allow_patterns)
    except RefError as e:
        if r.text.startswith("hf://"):
            raise
        raise RefError(f"{e.problem} (read as a Hub repository: there is no local directory {r.text!r})") from None


def commit_of(snapshot: Path) -> str | None:
    """The commit a snapshot directory belongs to (its name), when it is one."""
    return snapshot.name if COMMIT_RE.match(snapshot.name) and snapshot.parent.name == "snapshots" else None
