"""`/v1/embeddings` behind the route: the model held through the gate, batches on the engine.

Tokenizing and batch planning run here (a worker thread for the tokenizer); each padded batch
is one `EmbedBatch` command, so generation steps run between the batches of a long request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np

from mlx_manager.config import EngineConfig
from mlx_manager.engine import commands as cmd
from mlx_manager.errors import ApiError, InvalidRequest
from mlx_manager.models.detection import ModelType
from mlx_manager.pool.catalog import CatalogEntry
from mlx_manager.services import embeddings
from mlx_manager.services.embeddings import EmbeddingInputs, EmbeddingLimits, EmbeddingResult
from mlx_manager.services.model_gate import ModelGate

Execute = Callable[[cmd.EmbedBatch], Awaitable[np.ndarray]]


def _not_embeddings(entry: CatalogEntry) -> ApiError:
    return InvalidRequest(
        f"The model '{entry.model_id}' is a {entry.model_type} model: it does not "
        "produce embeddings; use an embeddings model with /v1/embeddings.",
        param="model",
        code="model_type_mismatch",
    )


class EmbeddingService:
    def __init__(self, execute: Execute, gate: ModelGate, config: EngineConfig) -> None:
        self._execute = execute
        self._gate = gate
        self._limits = EmbeddingLimits(config.max_embedding_inputs, config.max_embedding_tokens)

    async def embed(
        self,
        model: str,
        inputs: EmbeddingInputs,
        *,
        dimensions: int | None = None,
        truncate: bool = False,
    ) -> EmbeddingResult:
        """Unit vectors for `inputs` from an embeddings model (`model`: a name or an alias)."""
        limits = self._limits
        async with self._gate.hold(model, ModelType.EMBEDDINGS, _not_embeddings) as card:
            embeddings.check_request(card, inputs, dimensions, limits)
            seqs = await asyncio.to_thread(embeddings.tokenize, card, inputs, truncate, limits)
            vectors = np.zeros((len(seqs), embeddings.spec_of(card).dimensions), np.float32)
            for batch in embeddings.plan_batches([len(s) for s in seqs]):
                rows = tuple(tuple(seqs[i]) for i in batch)
                vectors[batch] = await self._execute(cmd.EmbedBatch(card.model_id, rows))
            return embeddings.finish(card, vectors, seqs, dimensions)
