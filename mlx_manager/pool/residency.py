"""Could a model become resident now, and how long would it take: the pool's read-only answer
for pool-aware routing (a rule may send a request elsewhere rather than load a model).

The same eviction plan a load would make (planner.plan_eviction), made without booking
anything: resident, loading, fits, evicts idle models, blocked (pinned or busy models fill the
pool: a load would be refused with 503), too large for the budget, or unknown.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from mlx_manager.errors import ModelLoadFailed, PoolFull
from mlx_manager.pool.budget import Limits
from mlx_manager.pool.planner import plan_eviction
from mlx_manager.pool.resident import Resident


class ResidencyState(enum.StrEnum):
    RESIDENT = "resident"  # loaded and ready: no load
    LOADING = "loading"  # a load is under way; a request waits for it
    FITS = "fits"  # loads beside the resident models, evicting nothing
    EVICTS_IDLE = "evicts_idle"  # loads after evicting least recently used idle models
    BLOCKED = "blocked"  # pinned or busy models fill the pool: a load is refused now
    TOO_LARGE = "too_large"  # larger than the whole memory budget
    UNKNOWN = "unknown"  # not served here, or its size cannot be read


@dataclass(frozen=True, slots=True)
class Residency:
    model_id: str
    state: ResidencyState
    load_s: float | None  # estimated seconds until resident: 0 when resident, None unknown
    detail: str = ""  # what blocks it, or which idle models a load would evict

    @property
    def resident(self) -> bool:
        return self.state is ResidencyState.RESIDENT

    @property
    def can_load(self) -> bool:
        """False when a load would be refused now (pinned or busy models) or ever (size)."""
        return self.state not in (ResidencyState.BLOCKED, ResidencyState.TOO_LARGE)


def planned_residency(
    model_id: str, residents: Iterable[Resident], estimate: int, limits: Limits, load_s: float
) -> Residency:
    """A model that is not resident: what loading it now would take."""
    try:
        victims = plan_eviction(residents, model_id, estimate, limits)
    except PoolFull as exc:
        return Residency(model_id, ResidencyState.BLOCKED, load_s, exc.message)
    except ModelLoadFailed as exc:
        return Residency(model_id, ResidencyState.TOO_LARGE, None, exc.message)
    if not victims:
        return Residency(model_id, ResidencyState.FITS, load_s)
    evicted = ", ".join(v.model_id for v in victims)
    return Residency(model_id, ResidencyState.EVICTS_IDLE, load_s, f"would evict {evicted}")
