"""Which flows go into one sampler call: the batch sizes, and the queue of flows waiting per length bucket."""

from __future__ import annotations

from collections import deque

# One process, bf16, youtube flows of 128 packets: 64 flows take 5.2 s in batches of 16 and 6.7 s in
# one batch of 64 (a step's elementwise passes over (16, 128, 1105) stay in cache); 32 flows with
# 8 decodes each take 3.2 s in calls of 8 samples (64 candidates), 4.1 s in calls of 16 (the
# decoder's passes over 128 candidates spill). A GPU wants wide batches.
CPU_BATCH, GPU_BATCH = 16, 64
CALL_CANDIDATES = 64        # candidates decoded per call (and the memory bound: 64 flows of up to 1024 rows)


def batch_candidates(batch: int, decodes: int) -> int:
    """Candidates per sampler call: up to ``batch`` samples with their ``decodes`` each (a sample's
    candidates go in one call, so it is sampled once), at most :data:`CALL_CANDIDATES` unless one
    sample's decodes are more."""
    return decodes * max(1, min(batch, CALL_CANDIDATES // decodes))


class Pending:
    """Flows waiting to be sampled, queued per length bucket in request order: the next batch is
    up to ``size`` flows of the first waiting flow's bucket (a batch is of one bucket), and
    redraws go to the front. (Scanning one list for each batch cost O(flows^2 / batch).)"""

    def __init__(self, flows: list, bucket):
        self._bucket = bucket
        self._queues: dict[int, deque] = {}
        self._front = 0
        for n, f in enumerate(flows):
            self._queues.setdefault(bucket(f), deque()).append((n, f))

    def __bool__(self) -> bool:
        return any(self._queues.values())

    def take(self, size: int) -> tuple[list, int]:
        """The next batch and its bucket."""
        _, first = min((q[0][0], b) for b, q in self._queues.items() if q)
        q = self._queues[first]
        return [q.popleft()[1] for _ in range(min(size, len(q)))], first

    def redraw(self, flows: list) -> None:
        """Queue ``flows`` before every waiting flow, in their order."""
        for f in reversed(flows):
            self._front -= 1
            self._queues.setdefault(self._bucket(f), deque()).appendleft((self._front, f))
