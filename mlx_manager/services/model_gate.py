"""What every request for a non-generating model goes through before the engine: start-up
done, the name resolved, the model's type checked, admission, and the model's pool lease."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from mlx_manager.errors import ApiError
from mlx_manager.frontend.admission import Admission
from mlx_manager.frontend.lifecycle import Lifecycle
from mlx_manager.models.card import ModelCard
from mlx_manager.models.detection import ModelType
from mlx_manager.pool.catalog import CatalogEntry
from mlx_manager.pool.pool import ModelPool

# The 400 for a model of the wrong type, from its catalog entry.
Mismatch = Callable[[CatalogEntry], ApiError]


class ModelGate:
    def __init__(
        self,
        pool: ModelPool,
        lifecycle: Lifecycle,
        admission: Admission,
        served_model: Callable[[str], str],
    ) -> None:
        self._pool = pool
        self._lifecycle = lifecycle
        self._admission = admission
        self._served_model = served_model  # aliases applied

    @contextlib.asynccontextmanager
    async def hold(
        self, name: str, model_type: ModelType, mismatch: Mismatch
    ) -> AsyncIterator[ModelCard]:
        """The card of the model `name` means, held (never evicted) and counted against
        --max-waiting-requests while the block runs."""
        self._lifecycle.check_started()
        entry = self._pool.entry(self._served_model(name))
        if entry.model_type is not model_type:
            raise mismatch(entry)
        with self._admission.side_request():
            lease = await self._pool.acquire(entry.model_id)
            try:
                yield lease.card
            finally:
                lease.release()
