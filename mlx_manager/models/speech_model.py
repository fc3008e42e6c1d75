"""Speech-to-text models: Whisper through mlx-audio, loaded and run on the engine thread.

The model is mlx-audio's own Whisper (`mlx_audio.stt.models.whisper`): its decoder, its
temperature fallback, its timestamp and word-alignment logic. This module builds it in the
right dtype (float32 on MLX's CPU backend, where half precision is ~8x slower; float16 on a
GPU), and turns a request's options into one `generate` call.

A transcription runs as one call on the engine thread, between engine steps: text generation
on other models pauses while it runs (about 0.3x the audio's length for tiny.en on two CPU
cores). Splitting it into per-window steps is the next step if that pause matters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlx_manager.errors import InvalidRequest
from mlx_manager.models.detection import ModelType
from mlx_manager.models.families import detect_family
from mlx_manager.models.loaded import LoadedModel

SAMPLE_RATE = 16_000
# OpenAI's default: temperature 0 means "start greedy, raise it on a failed window".
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True, slots=True)
class TranscriptionOptions:
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False


@dataclass(slots=True)
class Transcript:
    text: str
    language: str
    duration: float
    segments: list[dict[str, Any]] = field(default_factory=list)
    words: list[dict[str, Any]] = field(default_factory=list)


def load_speech_model(model_id: str, path: Path, cpu_float32_max_gb: float) -> LoadedModel:
    """Build mlx-audio's Whisper from `path`. Must run on the thread that owns MLX."""
    import mlx.core as mx
    from mlx_audio.stt.models.whisper import whisper

    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    if str(config.get("model_type", "")).lower() != "whisper":
        raise ValueError(f"speech model_type {config.get('model_type')!r} is not supported")
    on_cpu = mx.default_device().type == mx.DeviceType.cpu
    dtype = mx.float32 if on_cpu and cpu_float32_max_gb > 0 else mx.float16
    model = whisper.Model(whisper.ModelDimensions.from_dict(config), dtype=dtype)
    weights: dict[str, Any] = {}
    for file in sorted(path.glob("*.safetensors")):
        tensors: Any = mx.load(str(file))
        weights.update(tensors)
    weights = model.sanitize(weights)
    model.load_weights(list(weights.items()), strict=True)
    model = whisper.Model.post_load_hook(model, path)
    if getattr(model, "_processor", None) is None:
        raise ValueError(f"{path} has no usable Whisper tokenizer / preprocessor files")
    mx.eval(model.parameters())
    return LoadedModel(
        model_id=model_id,
        path=path,
        model=model,
        tokenizer=model._processor.tokenizer,
        family=detect_family(config, model_id),
        context_length=int(config.get("n_text_ctx", 448)),
        stop_token_ids=frozenset(),
        model_type=ModelType.SPEECH,
    )


def check_language(model: LoadedModel, language: str | None) -> str | None:
    """The ISO-639-1 code for `language` (a code or an English name), or a 400."""
    from mlx_audio.stt.models.whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE

    if language is None or not language.strip():
        return None
    text = language.strip().lower()
    code = text if text in LANGUAGES else TO_LANGUAGE_CODE.get(text)
    if code is None:
        raise InvalidRequest(
            f"Unknown language {language!r}: give an ISO-639-1 code such as 'en'.",
            param="language",
            code="invalid_language",
        )
    if not model.model.is_multilingual and code != "en":
        raise InvalidRequest(
            f"The model '{model.model_id}' transcribes English only; language {language!r} "
            "is not supported.",
            param="language",
            code="unsupported_language",
        )
    return code


def transcribe(model: LoadedModel, audio: Any, options: TranscriptionOptions) -> Transcript:
    """Transcribe 16 kHz mono float32 samples. Must run on the thread that owns MLX."""
    import mlx.core as mx

    whisper = model.model
    temperature: float | tuple[float, ...] = (
        FALLBACK_TEMPERATURES if options.temperature == 0 else options.temperature
    )
    result = whisper.generate(
        mx.array(audio),
        language=options.language or ("en" if not whisper.is_multilingual else None),
        temperature=temperature,
        initial_prompt=options.prompt or None,
        word_timestamps=options.word_timestamps,
        fp16=whisper.dtype == mx.float16,
        verbose=None,
    )
    segments = [_segment(s) for s in result.segments or []]
    words = [w for s in result.segments or [] for w in _words(s)]
    return Transcript(
        text=str(result.text).strip(),
        language=str(result.language or options.language or "en"),
        duration=len(audio) / SAMPLE_RATE,
        segments=segments,
        words=words,
    )


def _segment(raw: dict[str, Any]) -> dict[str, Any]:
    """One segment in OpenAI's verbose_json shape."""
    return {
        "id": int(raw.get("id", 0)),
        "seek": int(raw.get("seek", 0)),
        "start": round(float(raw.get("start", 0.0)), 2),
        "end": round(float(raw.get("end", 0.0)), 2),
        "text": str(raw.get("text", "")),
        "tokens": [int(t) for t in raw.get("tokens", [])],
        "temperature": float(raw.get("temperature", 0.0)),
        "avg_logprob": float(raw.get("avg_logprob", 0.0)),
        "compression_ratio": float(raw.get("compression_ratio", 0.0)),
        "no_speech_prob": float(raw.get("no_speech_prob", 0.0)),
    }


def _words(raw: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "word": str(w.get("word", "")).strip(),
            "start": round(float(w.get("start", 0.0)), 2),
            "end": round(float(w.get("end", 0.0)), 2),
        }
        for w in raw.get("words") or []
    ]


def language_name(code: str) -> str:
    """`en` -> `english`, as OpenAI's verbose_json names the language."""
    from mlx_audio.stt.models.whisper.tokenizer import LANGUAGES

    return str(LANGUAGES.get(code, code))
