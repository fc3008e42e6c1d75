"""OpenAI's `POST /v1/audio/transcriptions`: a multipart upload, transcribed by a speech model.

The route parses the form, decodes the audio off the event loop (`services.audio`), and hands
the samples to the transcription service, which runs the model on the engine thread.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from mlx_manager.api.deps import runtime_of
from mlx_manager.audit.record import note_local
from mlx_manager.config import ServerConfig
from mlx_manager.models.speech_model import TranscriptionOptions
from mlx_manager.protocols import openai_transcription as shape
from mlx_manager.services.audio import AudioLimits, check_size, decode_audio

router = APIRouter()

TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"


def audio_limits(server: ServerConfig) -> AudioLimits:
    return AudioLimits(server.max_audio_bytes, server.max_audio_seconds)


def body_limit(server: ServerConfig) -> int:
    """The route's request-body limit: the audio file plus room for the form's other fields."""
    return max(server.max_request_bytes, server.max_audio_bytes + 64 * 1024)


@router.post(TRANSCRIPTIONS_PATH, response_model=None)
async def transcriptions(
    request: Request,
    file: Annotated[UploadFile, File()],
    model: Annotated[str, Form()],
    language: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form()] = None,
    response_format: Annotated[str, Form()] = "json",
    temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
    timestamp_granularities: Annotated[
        list[str] | None, Form(alias="timestamp_granularities[]")
    ] = None,
) -> Response:
    note_local(request.scope, model)  # the audit log
    granularities = list(timestamp_granularities or [])
    shape.check_format(response_format, granularities)
    limits: AudioLimits = request.app.state.audio_limits
    if file.size is not None:
        check_size(file.size, limits)
    data = await file.read()
    audio = await asyncio.to_thread(decode_audio, data, limits, file.filename or "file")
    options = TranscriptionOptions(
        language=language,
        prompt=prompt,
        temperature=temperature,
        word_timestamps="word" in granularities,
    )
    transcript = await runtime_of(request).transcription.transcribe(model, audio, options)
    content, media_type = shape.reply_body(transcript, response_format, granularities)
    if isinstance(content, str):
        return PlainTextResponse(content, media_type=media_type)
    return JSONResponse(content)
