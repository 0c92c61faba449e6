"""Candidate indices: which seeds the draws of one flow take (``generate --candidates / --decodes``)."""

from __future__ import annotations


def candidate_index(i: int, c: int, k: int) -> int:
    """The index whose seeds candidate ``c`` of ``k`` of flow ``i`` draws from (``generate
    --candidates``, :mod:`engine.model.critic`): candidate 0 is flow ``i`` itself, so one
    candidate is the plain request; the others take negative indices, which no request's flow has."""
    return i if c == 0 else -(i * (k - 1) + c)


def noise_index(j: int, k: int, d: int) -> int:
    """The candidate index whose sample candidate index ``j`` (of ``k`` per flow, ``d`` decoded
    from each sample) is decoded from: the first of its group of ``d``."""
    if j >= 0 or d <= 1:
        return j
    i, n = flow_of(j, k), -j
    c = (n - 1) % (k - 1) + 1
    return candidate_index(i, c - c % d, k)


def flow_of(j: int, k: int) -> int:
    """The flow whose candidate index (of ``k``) ``j`` is: the inverse of :func:`candidate_index`."""
    if j >= 0 or k <= 1:
        return j
    n = -j
    return (n - ((n - 1) % (k - 1) + 1)) // (k - 1)
