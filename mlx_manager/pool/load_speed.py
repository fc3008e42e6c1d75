"""How fast this process loads models, measured from its own loads: the pool's estimate of
how long a model that is not resident would take to load (routing's per-rule load budget).

Bytes are what a load books: the weights as loaded (float32 where the CPU backend upcasts)
plus the model's preallocated KV pool. Both are written to memory by the load, and the KV
pool alone can dominate a small model's load, so the size on disk would mislead. Seconds are
the engine's own timing of the load (no queueing). The speed is all bytes over all seconds,
so big loads, whose speed is the one worth predicting, weigh most. Before any load: a prior
of 1 GB/s (a local SSD on Apple silicon reads faster; the KV pool and any conversion cost
time too); the first real load replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass

PRIOR_BYTES_PER_S = 1e9


@dataclass(slots=True)
class LoadSpeed:
    prior_bytes_per_s: float = PRIOR_BYTES_PER_S
    loaded_bytes: int = 0
    seconds: float = 0.0
    loads: int = 0

    def record(self, size_bytes: int, seconds: float) -> None:
        if size_bytes > 0 and seconds > 0:
            self.loaded_bytes += size_bytes
            self.seconds += seconds
            self.loads += 1

    @property
    def bytes_per_s(self) -> float:
        """Measured once a load was timed, else the prior."""
        return self.loaded_bytes / self.seconds if self.loads else self.prior_bytes_per_s

    @property
    def measured(self) -> bool:
        return self.loads > 0

    def estimate_s(self, size_bytes: int) -> float:
        return max(size_bytes, 0) / self.bytes_per_s
