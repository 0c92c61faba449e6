"""Freeing the Hub cache: a plan of the revisions that go and the bytes that frees (huggingface_hub's
``delete_revisions`` strategy, its ``expected_freed_size``), shown before anything is deleted."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from engine.hub.cache import hub_repo, recipes_using
from engine.hub.refs import Ref, RefError, hub_cache_dir, parse_ref


@dataclass
class DeletePlan:
    ref: str
    repo_id: str
    revisions: list[dict]            # commit, refs, size
    freed_bytes: int                 # huggingface_hub's expected_freed_size
    recipes: list[str]               # recipes that still name one of these revisions
    strategy: object = None          # huggingface_hub DeleteCacheStrategy

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("strategy", None)
        return d


def plan_delete(text: str | Ref, revision: str | None = None, cache_dir=None) -> DeletePlan:
    """Which cached revisions go and how many bytes that frees; nothing is deleted here."""
    ref = text if isinstance(text, Ref) else parse_ref(text)
    if ref.kind == "default":
        raise RefError("the shipped default model cannot be deleted (it is part of the installation)")
    if ref.kind == "local":
        raise RefError(f"{ref.path}: `netdiff models delete` frees the Hub cache only; a local checkpoint "
                       "directory is yours to remove")
    if revision:
        ref = parse_ref(f"hf://{ref.repo_id}@{revision}")
    info_, repo = hub_repo(ref, cache_dir)
    if repo is None:
        raise RefError(f"{ref}: not in the Hub cache ({Path(cache_dir or hub_cache_dir())}); nothing to delete")
    revs = list(repo.revisions)
    if ref.revision:
        revs = [r for r in revs if r.commit_hash == ref.revision or ref.revision in r.refs]
        if not revs:
            cached = ", ".join(sorted(r.commit_hash[:12] + (f" ({', '.join(sorted(r.refs))})" if r.refs else "")
                                      for r in repo.revisions)) or "none"
            raise RefError(f"{ref}: revision {ref.revision!r} is not cached (cached revisions: {cached})")
    commits = {r.commit_hash for r in revs}
    strategy = info_.delete_revisions(*sorted(commits))
    rows = [{"commit": r.commit_hash, "refs": sorted(r.refs), "size": r.size_on_disk}
            for r in sorted(revs, key=lambda r: -r.last_modified)]
    users = recipes_using(ref, commits=commits)
    return DeletePlan(ref.uri, ref.repo_id, rows, int(strategy.expected_freed_size), [str(p) for p in users], strategy)


def execute_delete(plan: DeletePlan) -> int:
    """Carry out a plan (huggingface_hub's ``DeleteCacheStrategy.execute``); returns the bytes it expected to free."""
    plan.strategy.execute()
    return plan.freed_bytes
