"""Audio decoding: any libsndfile format -> 16 kHz mono float32, with size/duration limits."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from mlx_manager.errors import InvalidRequest, RequestTooLarge
from mlx_manager.services.audio import AudioLimits, decode_audio, resample

LIMITS = AudioLimits(max_bytes=1_000_000, max_seconds=5.0)


def encode(samples: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def tone(rate: int, seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_16k_wav_passes_through() -> None:
    audio = decode_audio(encode(tone(16_000, 1.0), 16_000), LIMITS)
    assert audio.dtype == np.float32
    assert audio.shape == (16_000,)
    np.testing.assert_allclose(audio, tone(16_000, 1.0), atol=1e-3)


def test_resamples_and_mixes_stereo_to_mono() -> None:
    left = tone(44_100, 2.0)
    stereo = np.stack([left, left], axis=1)
    audio = decode_audio(encode(stereo, 44_100), LIMITS)
    assert audio.shape == (32_000,)
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16_000 / len(audio) - 440) < 2  # pitch kept


def test_flac_decodes() -> None:
    audio = decode_audio(encode(tone(8_000, 0.5), 8_000, "FLAC"), LIMITS)
    assert audio.shape == (8_000,)


def test_not_audio_is_400() -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_audio(b"definitely not audio" * 10, LIMITS, "notes.txt")
    assert caught.value.code == "invalid_file_format"
    assert "notes.txt" in caught.value.message
    assert "Format not recognised" in caught.value.message


def test_empty_file_is_400() -> None:
    with pytest.raises(InvalidRequest):
        decode_audio(b"", LIMITS)


def test_too_large_is_413() -> None:
    with pytest.raises(RequestTooLarge):
        decode_audio(b"\0" * 1_000_001, LIMITS)


def test_too_long_is_400() -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_audio(encode(np.zeros(8_000 * 6, np.float32), 8_000, subtype="PCM_U8"), LIMITS)
    assert caught.value.code == "audio_too_long"
    assert caught.value.status == 400


def test_resample_keeps_duration() -> None:
    assert resample(np.zeros(22_050, np.float32), 22_050).shape == (16_000,)


@pytest.mark.parametrize("frames", [0, 1, 1599])
def test_empty_or_too_short_wav_is_400(frames: int) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_audio(encode(np.zeros(frames, dtype=np.float32), 16_000), LIMITS)
    assert caught.value.param == "file"
    assert caught.value.code == ("invalid_file" if frames == 0 else "audio_too_short")


def test_a_tenth_of_a_second_is_enough() -> None:
    assert decode_audio(encode(tone(44_100, 0.1), 44_100), LIMITS).shape == (1600,)
