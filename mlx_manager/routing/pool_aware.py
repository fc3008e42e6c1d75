"""Pool-aware routing: pass over a local target whose model is not resident when loading it
would be refused or too slow, and try the chain's next target instead, before any load starts.

A gateway in front of a model server cannot see this; the router here can ask the pool
(ModelPool.residency, read only). A local target is passed over when
- its model cannot become resident now: pinned (or busy) models fill the pool, or it is larger
  than the whole memory budget; the pool would refuse it anyway, but after a queue slot and
  with a cooldown, and
- the rule sets `local_load_budget_s` and the load is estimated (the model's size on disk over
  the load speed measured from this process's loads) to take longer.
failover.run_chain asks only while a later target is available, so a lone local target is
always tried. The skip is class `pool_budget`: logged, never cooling the target down.
"""

from __future__ import annotations

from typing import Any, Protocol

from mlx_manager.config import LOCAL_PROVIDER
from mlx_manager.errors import LoadOverBudget
from mlx_manager.pool.residency import Residency
from mlx_manager.routing.failover import Precheck
from mlx_manager.routing.rules import Route, Target


class ResidencySource(Protocol):
    """The pool's read-only answer (ModelPool implements it)."""

    def residency(self, model_id: str) -> Residency: ...


def skip_reason(residency: Residency, budget_s: float | None) -> str | None:
    """Why a local target should be passed over; None: try it."""
    if not residency.can_load:
        return residency.detail or str(residency.state)
    if budget_s is None or residency.resident or residency.load_s is None:
        return None
    if residency.load_s > budget_s:
        return (
            f"loading it would take about {residency.load_s:.2f}s, over the rule's "
            f"local_load_budget_s of {budget_s:g}s"
        )
    return None


class PoolAware:
    """The precheck of a route's chain and the pool's view of its local targets (explain).
    Without a pool (tests, a front with no local models wired) it never skips."""

    def __init__(self, pool: ResidencySource | None = None) -> None:
        self._pool = pool

    def precheck(self, route: Route) -> Precheck | None:
        pool = self._pool
        if pool is None:
            return None
        budget_s = route.rule.local_load_budget_s if route.rule is not None else None

        def check(target: Target) -> None:
            if target.provider != LOCAL_PROVIDER:
                return
            reason = skip_reason(pool.residency(target.model), budget_s)
            if reason is not None:
                raise LoadOverBudget(
                    f"the local model {target.model!r} is not resident and was passed over: "
                    f"{reason}"
                )

        return check

    def describe(self, target: Target) -> dict[str, Any]:
        """A local target's residency for /admin/routes/explain ({} for an upstream)."""
        if self._pool is None or target.provider != LOCAL_PROVIDER:
            return {}
        residency = self._pool.residency(target.model)
        load_s = residency.load_s
        return {
            "resident": residency.resident,
            "residency": residency.state.value,
            "estimated_load_s": None if load_s is None else round(load_s, 3),
            "residency_detail": residency.detail,
        }
