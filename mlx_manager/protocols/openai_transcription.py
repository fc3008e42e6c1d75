"""OpenAI's `/v1/audio/transcriptions` reply shapes: json, text, verbose_json, srt, vtt.

Pure functions of a `Transcript`; the route picks the media type.
"""

from __future__ import annotations

import math
from typing import Any

from mlx_manager.errors import InvalidRequest
from mlx_manager.models.speech_model import Transcript, language_name

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
TIMESTAMP_GRANULARITIES = ("segment", "word")


def check_format(response_format: str, granularities: list[str]) -> None:
    if response_format not in RESPONSE_FORMATS:
        raise InvalidRequest(
            f"Invalid response_format {response_format!r}: use one of "
            f"{', '.join(RESPONSE_FORMATS)}.",
            param="response_format",
            code="invalid_value",
        )
    unknown = [g for g in granularities if g not in TIMESTAMP_GRANULARITIES]
    if unknown:
        raise InvalidRequest(
            f"Invalid timestamp_granularities {unknown}: use 'segment' and/or 'word'.",
            param="timestamp_granularities",
            code="invalid_value",
        )
    if granularities and response_format != "verbose_json":
        raise InvalidRequest(
            "timestamp_granularities needs response_format 'verbose_json'.",
            param="timestamp_granularities",
            code="invalid_value",
        )


def usage(transcript: Transcript) -> dict[str, Any]:
    return {"type": "duration", "seconds": math.ceil(transcript.duration)}


def json_body(transcript: Transcript) -> dict[str, Any]:
    return {"text": transcript.text, "usage": usage(transcript)}


def verbose_json_body(
    transcript: Transcript, language_name: str, granularities: list[str]
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": language_name,
        "duration": round(transcript.duration, 2),
        "text": transcript.text,
    }
    if not granularities or "segment" in granularities:
        body["segments"] = transcript.segments
    if "word" in granularities:
        body["words"] = transcript.words
    body["usage"] = usage(transcript)
    return body


def srt(transcript: Transcript) -> str:
    blocks = [
        f"{i}\n{_clock(s['start'], ',')} --> {_clock(s['end'], ',')}\n{s['text'].strip()}\n"
        for i, s in enumerate(_cues(transcript), start=1)
    ]
    return "\n".join(blocks)


def vtt(transcript: Transcript) -> str:
    blocks = [
        f"{_clock(s['start'], '.')} --> {_clock(s['end'], '.')}\n{s['text'].strip()}\n"
        for s in _cues(transcript)
    ]
    return "\n".join(["WEBVTT\n", *blocks])


def _cues(transcript: Transcript) -> list[dict[str, Any]]:
    cues = [s for s in transcript.segments if str(s.get("text", "")).strip()]
    if cues or not transcript.text:
        return cues
    return [{"start": 0.0, "end": transcript.duration, "text": transcript.text}]


def _clock(seconds: float, separator: str) -> str:
    """HH:MM:SS,mmm (SRT) or HH:MM:SS.mmm (WebVTT)."""
    millis = max(0, round(float(seconds) * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def reply_body(
    transcript: Transcript, response_format: str, granularities: list[str]
) -> tuple[str | dict[str, Any], str]:
    """The reply in `response_format` and its media type (text formats are strings)."""
    if response_format == "text":
        return transcript.text + "\n", "text/plain"
    if response_format == "srt":
        return srt(transcript), "text/plain"
    if response_format == "vtt":
        return vtt(transcript), "text/vtt"
    if response_format == "verbose_json":
        name = language_name(transcript.language)
        return verbose_json_body(transcript, name, granularities), "application/json"
    return json_body(transcript), "application/json"
