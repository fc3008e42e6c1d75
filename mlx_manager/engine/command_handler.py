"""Runs engine commands on the engine thread: model loads and unloads, embeddings batches,
transcriptions, vision inputs, memory counters.

Each command is answered from the models the core holds, so the weights never leave this
thread; a load replies with the model's card and its real cost read from MLX.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from mlx_manager.engine import commands as cmd
from mlx_manager.engine.core import EngineCore
from mlx_manager.errors import (
    ApiError,
    InternalError,
    InvalidRequest,
    ModelLoadFailed,
    ModelNotSupported,
    without_paths,
)
from mlx_manager.models import embedding_model, speech_model
from mlx_manager.models.loaded import LoadedModel, resolve_spec_dir
from mlx_manager.models.loaders import load_model
from mlx_manager.models.vision_model import VisionInputs, build_inputs

log = logging.getLogger(__name__)


class CommandHandler:
    def __init__(self, core: EngineCore) -> None:
        self._core = core
        self._handlers: dict[type[Any], Callable[[Any], Any]] = {
            cmd.ResolveModels: self._resolve,
            cmd.LoadModel: self._load,
            cmd.UnloadModel: self._unload,
            cmd.ReadMemory: self._memory,
            cmd.EmbedBatch: self._embed,
            cmd.Transcribe: self._transcribe,
            cmd.BuildVisionInputs: self._vision_inputs,
        }

    def handle(self, command: cmd.Command[Any]) -> Any:
        return self._handlers[type(command)](command)

    def _resolve(self, command: cmd.ResolveModels) -> list[tuple[str, Any]]:
        return [
            (spec.model_id, resolve_spec_dir(spec, command.cache_dir, command.hub_timeout_s))
            for spec in command.specs
        ]

    def _load(self, command: cmd.LoadModel) -> cmd.LoadResult:
        before = mx.get_active_memory()
        started = time.perf_counter()
        error: ApiError | None = None
        try:
            group = self._core.group
            if group is not None and group.shards(command.model_id):
                model = group.load(command)
            else:
                model = load_model(
                    command.model_id,
                    command.path,
                    command.model_type,
                    command.context_length,
                    command.cpu_float32_max_gb,
                )
            weights = parameter_bytes(model.model)
            self._core.add_model(model)
        except Exception as exc:
            error = load_error(command, exc)
        if error is not None:  # raised outside `except`: no traceback keeps weights alive
            model = None  # type: ignore[assignment]
            gc.collect()
            mx.clear_cache()
            raise error.with_traceback(None)
        kv = self._core.kv_bytes(command.model_id)
        cost = cmd.ModelCost(
            weight_bytes=weights,
            kv_bytes=command.kv_budget_bytes if kv is None else kv,
            measured_bytes=mx.get_active_memory() - before,
            seconds=time.perf_counter() - started,
            rank_bytes=self._rank_bytes(command.model_id),
        )
        return cmd.LoadResult(model.card(), cost)

    def _rank_bytes(self, model_id: str) -> tuple[int, ...]:
        group = self._core.group
        return group.rank_bytes() if group is not None and group.shards(model_id) else ()

    def _unload(self, command: cmd.UnloadModel) -> bool:
        return self._core.remove_model(command.model_id) is None

    def _memory(self, _: cmd.ReadMemory) -> cmd.MlxMemory:
        return cmd.MlxMemory(mx.get_active_memory(), mx.get_peak_memory(), mx.get_cache_memory())

    def _embed(self, command: cmd.EmbedBatch) -> np.ndarray:
        return embedding_model.forward(self._model(command.model_id), command.sequences)

    def _transcribe(self, command: cmd.Transcribe) -> speech_model.Transcript:
        model = self._model(command.model_id)
        language = speech_model.check_language(model, command.options.language)
        options = dataclasses.replace(command.options, language=language)
        return speech_model.transcribe(model, command.audio, options)

    def _vision_inputs(self, command: cmd.BuildVisionInputs) -> VisionInputs:
        model = self._model(command.model_id)
        try:
            inputs = build_inputs(model, command.prompt_text, list(command.images))
        except ValueError as exc:  # mlx-vlm wraps every processor failure in a ValueError
            raise InvalidRequest(
                f"the model's processor could not prepare this request: {exc}", param="messages"
            ) from exc
        media = {key: _to_host(value) for key, value in inputs.media.items()}
        return VisionInputs(inputs.prompt_ids, media)

    def _model(self, model_id: str) -> LoadedModel:
        model = self._core.models.get(model_id)
        if model is None:
            raise InternalError(f"the model '{model_id}' is not loaded")
        return model


def _to_host(value: Any) -> Any:
    """Host (numpy) arrays in a reply: MLX arrays stay on this thread. numpy has no
    bfloat16, so such an array (no processor seen so far returns one) is left as it is."""
    if isinstance(value, mx.array) and value.dtype != mx.bfloat16:
        return np.array(value)
    return value


def parameter_bytes(model: Any) -> int:
    leaves: Any = tree_flatten(model.parameters())
    return sum(int(value.nbytes) for _, value in leaves)


def load_error(command: cmd.LoadModel, exc: Exception) -> ApiError:
    """A failed load as a clear API error naming the model and the cause; the server's paths
    stay in the log."""
    if isinstance(exc, ApiError):
        return exc
    log.warning("loading %s from %s failed: %r", command.model_id, command.path, exc)
    cause = without_paths(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, ValueError) and "not supported" in str(exc):
        return ModelNotSupported(f"The model '{command.model_id}' cannot be loaded here: {cause}")
    return ModelLoadFailed(f"Loading the model '{command.model_id}' failed: {cause}")
