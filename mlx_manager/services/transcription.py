"""`/v1/audio/transcriptions` behind the route: the model held through the gate, one
`Transcribe` command run on the engine thread (Whisper through mlx-audio)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import numpy as np

from mlx_manager.engine import commands as cmd
from mlx_manager.errors import ApiError, InvalidRequest
from mlx_manager.frontend.client import a_model
from mlx_manager.models.detection import ModelType
from mlx_manager.models.speech_model import Transcript, TranscriptionOptions
from mlx_manager.pool.catalog import CatalogEntry
from mlx_manager.services.model_gate import ModelGate

Execute = Callable[[cmd.Transcribe], Awaitable[Transcript]]


def _not_speech(entry: CatalogEntry) -> ApiError:
    return InvalidRequest(
        f"The model '{entry.model_id}' is {a_model(entry.model_type)}: it cannot "
        "transcribe audio; use a speech-to-text (Whisper) model with "
        "/v1/audio/transcriptions.",
        param="model",
        code="model_type_mismatch",
    )


class TranscriptionService:
    def __init__(self, execute: Execute, gate: ModelGate) -> None:
        self._execute = execute
        self._gate = gate

    async def transcribe(
        self, model: str, audio: np.ndarray, options: TranscriptionOptions
    ) -> Transcript:
        """Speech to text with a speech model (`model`: a name or an alias)."""
        async with self._gate.hold(model, ModelType.SPEECH, _not_speech) as card:
            return await self._execute(cmd.Transcribe(card.model_id, audio, options))
