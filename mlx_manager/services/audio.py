"""Uploaded audio -> 16 kHz mono float32 samples, within the size and duration limits.

Decoding is libsndfile's, through `soundfile` (its wheels bundle libsndfile 1.2: WAV, FLAC,
OGG/Vorbis, Opus-in-OGG, MP3, AIFF, no system ffmpeg needed); resampling is scipy's polyphase
filter (`resample_poly`). Containers libsndfile cannot read (m4a, mp4, webm) are a 400 naming
the formats that work.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from math import gcd

import numpy as np

from mlx_manager.errors import InvalidRequest, RequestTooLarge

SAMPLE_RATE = 16_000
# OpenAI's floor ("Minimum audio length is 0.1 seconds"): shorter audio holds no word, and
# Whisper would answer 200 with empty text, which hides a broken upload.
MIN_SECONDS = 0.1
SUPPORTED_FORMATS = "wav, flac, ogg, opus, mp3, aiff"


@dataclass(frozen=True, slots=True)
class AudioLimits:
    max_bytes: int
    max_seconds: float


def check_size(size: int, limits: AudioLimits) -> None:
    if size > limits.max_bytes:
        raise RequestTooLarge(
            f"The audio file is {size} bytes; at most {limits.max_bytes} are accepted "
            "(--max-audio-bytes).",
        )


def decode_audio(data: bytes, limits: AudioLimits, filename: str = "file") -> np.ndarray:
    """Mono float32 samples at 16 kHz, or a 400 / 413 naming the problem."""
    import soundfile

    check_size(len(data), limits)
    if not data:
        raise InvalidRequest("The uploaded audio file is empty.", param="file", code="invalid_file")
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            rate = int(sound.samplerate)
            seconds = sound.frames / rate if rate else 0.0
            _check_duration(seconds, limits)
            samples = sound.read(dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        detail = getattr(exc, "error_string", None) or str(exc)
        raise InvalidRequest(
            f"Could not decode '{filename}' as audio ({detail}). Supported formats: "
            f"{SUPPORTED_FORMATS}.",
            param="file",
            code="invalid_file_format",
        ) from None
    if samples.size == 0:
        raise InvalidRequest(
            "The uploaded audio has no samples.", param="file", code="invalid_file"
        )
    if len(samples) < MIN_SECONDS * rate:
        raise InvalidRequest(
            f"The audio is too short ({len(samples) / rate:.3f} s); at least {MIN_SECONDS:g} s "
            "is needed.",
            param="file",
            code="audio_too_short",
        )
    return resample(samples.mean(axis=1), rate)


def _check_duration(seconds: float, limits: AudioLimits) -> None:
    if seconds > limits.max_seconds:
        raise InvalidRequest(
            f"The audio is {seconds:.1f} s long; at most {limits.max_seconds:g} s are accepted "
            "(--max-audio-seconds).",
            param="file",
            code="audio_too_long",
        )


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """`samples` at `target` Hz (polyphase, anti-aliased), as contiguous float32."""
    if rate != target:
        from scipy.signal import resample_poly

        common = gcd(rate, target)
        samples = resample_poly(samples, target // common, rate // common)
    return np.ascontiguousarray(samples, dtype=np.float32)
