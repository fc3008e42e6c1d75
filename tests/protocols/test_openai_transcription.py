"""Transcription reply shapes: json, verbose_json, SRT and WebVTT timestamps."""

from __future__ import annotations

import pytest

from mlx_manager.errors import InvalidRequest
from mlx_manager.models.speech_model import Transcript
from mlx_manager.protocols import openai_transcription as shape

TRANSCRIPT = Transcript(
    text="Hello there. General Kenobi.",
    language="en",
    duration=3723.4567,
    segments=[
        {"id": 0, "start": 0.0, "end": 1.5, "text": " Hello there."},
        {"id": 1, "start": 3661.25, "end": 3723.4567, "text": " General Kenobi."},
    ],
)


def test_srt() -> None:
    assert shape.srt(TRANSCRIPT) == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n"
        "2\n01:01:01,250 --> 01:02:03,457\nGeneral Kenobi.\n"
    )


def test_vtt() -> None:
    assert shape.vtt(TRANSCRIPT) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n\n"
        "01:01:01.250 --> 01:02:03.457\nGeneral Kenobi.\n"
    )


def test_cues_fall_back_to_the_whole_text() -> None:
    bare = Transcript(text="Hi.", language="en", duration=1.0)
    assert shape.srt(bare) == "1\n00:00:00,000 --> 00:00:01,000\nHi.\n"


def test_json_and_verbose_json() -> None:
    assert shape.json_body(TRANSCRIPT) == {
        "text": TRANSCRIPT.text,
        "usage": {"type": "duration", "seconds": 3724},
    }
    body = shape.verbose_json_body(TRANSCRIPT, "english", [])
    assert body["task"] == "transcribe"
    assert body["language"] == "english"
    assert body["duration"] == 3723.46
    assert body["segments"] == TRANSCRIPT.segments
    assert "words" not in body
    words = shape.verbose_json_body(TRANSCRIPT, "english", ["word"])
    assert "segments" not in words
    assert words["words"] == []


@pytest.mark.parametrize(
    ("fmt", "granularities", "param"),
    [
        ("mp3", [], "response_format"),
        ("verbose_json", ["char"], "timestamp_granularities"),
        ("json", ["word"], "timestamp_granularities"),
    ],
)
def test_bad_formats(fmt: str, granularities: list[str], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        shape.check_format(fmt, granularities)
    assert caught.value.param == param
