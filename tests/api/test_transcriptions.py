"""`POST /v1/audio/transcriptions` end to end: a live server, the real Whisper tiny.en, the
official OpenAI SDK, and speech synthesized by espeak-ng."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile

from tests.fixtures.server import ServerProcess
from tests.fixtures.speech import KEY_WORDS, SENTENCE, synthesize

AUDIO_LIMIT = 200_000  # bytes: the synthesized sentence (~110 kB) fits, 300 kB does not
SECONDS_LIMIT = 8.0
SRT_TIME = r"\d{2}:\d{2}:\d{2},\d{3}"
VTT_TIME = r"\d{2}:\d{2}:\d{2}\.\d{3}"


@pytest.fixture(scope="module")
def speech_server(
    whisper_dir: Path, tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = ServerProcess(
        "--model",
        f"whisper={whisper_dir}",
        "--model",
        f"chat={tiny_model_dirs['llama']}",
        "--max-audio-bytes",
        str(AUDIO_LIMIT),
        "--max-audio-seconds",
        str(SECONDS_LIMIT),
        "--kv-cache-gb",
        "0.05",
        log_dir=tmp_path_factory.mktemp("speech-server"),
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def client(speech_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{speech_server.base_url}/v1", api_key="unused", max_retries=2, timeout=120
    )


def words_heard(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def assert_sentence(text: str) -> None:
    heard = words_heard(text)
    found = [w for w in KEY_WORDS if w in heard]
    assert len(found) >= len(KEY_WORDS) - 2, f"heard {text!r}"
    assert {"lazy", "dog"} <= heard, f"heard {text!r}"


def wav_bytes(samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def test_json_transcript_has_the_words(client: openai.OpenAI, fox_wav: Path) -> None:
    with fox_wav.open("rb") as audio:
        result = client.audio.transcriptions.create(model="whisper", file=audio, temperature=0)
    assert_sentence(result.text)


def test_text_format_is_plain_text(client: openai.OpenAI, fox_wav: Path) -> None:
    text = client.audio.transcriptions.create(
        model="whisper", file=fox_wav.read_bytes(), response_format="text"
    )
    assert isinstance(text, str)
    assert not text.lstrip().startswith("{")
    assert_sentence(text)


def test_verbose_json_has_segments(client: openai.OpenAI, fox_wav: Path) -> None:
    result = client.audio.transcriptions.create(
        model="whisper", file=fox_wav.open("rb"), response_format="verbose_json", language="en"
    )
    assert result.language == "english"
    assert 2.0 < result.duration < 6.0
    assert_sentence(result.text)
    segments = result.segments or []
    assert segments
    assert all(0.0 <= s.start < s.end <= result.duration + 0.5 for s in segments)
    assert_sentence(" ".join(s.text for s in segments))


def test_word_timestamps(client: openai.OpenAI, fox_wav: Path) -> None:
    result = client.audio.transcriptions.create(
        model="whisper",
        file=fox_wav.open("rb"),
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    words = result.words or []
    assert len(words) >= 6
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    assert "dog" in words_heard(words[-1].word)


def test_srt_parses(client: openai.OpenAI, fox_wav: Path) -> None:
    srt = client.audio.transcriptions.create(
        model="whisper", file=fox_wav.open("rb"), response_format="srt"
    )
    blocks = [b for b in srt.strip().split("\n\n") if b.strip()]
    assert blocks
    for number, block in enumerate(blocks, start=1):
        lines = block.splitlines()
        assert lines[0] == str(number)
        assert re.fullmatch(f"{SRT_TIME} --> {SRT_TIME}", lines[1]), lines[1]
    assert_sentence(" ".join(b.splitlines()[2] for b in blocks))


def test_vtt_parses(client: openai.OpenAI, fox_wav: Path) -> None:
    vtt = client.audio.transcriptions.create(
        model="whisper", file=fox_wav.open("rb"), response_format="vtt"
    )
    assert vtt.startswith("WEBVTT\n\n")
    cues = [b for b in vtt.split("\n\n")[1:] if b.strip()]
    assert cues
    for cue in cues:
        lines = cue.splitlines()
        assert re.fullmatch(f"{VTT_TIME} --> {VTT_TIME}", lines[0]), lines[0]
    assert_sentence(" ".join(c.splitlines()[1] for c in cues))


def test_resamples_other_rates(
    client: openai.OpenAI, tmp_path_factory: pytest.TempPathFactory
) -> None:
    wav = synthesize(SENTENCE, tmp_path_factory.mktemp("speech") / "fox22k.wav", rate=22_050)
    assert soundfile.info(wav).samplerate == 22_050
    result = client.audio.transcriptions.create(model="whisper", file=wav.open("rb"))
    assert_sentence(result.text)


def test_not_audio_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(
            model="whisper", file=("notes.wav", b"this is not audio at all" * 20)
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "invalid_file_format"
    assert error["param"] == "file"
    assert "wav" in error["message"]


def test_too_large_is_413(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.audio.transcriptions.create(model="whisper", file=("big.wav", b"\0" * 300_000))
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "request_too_large"  # type: ignore[index]
    assert "--max-audio-bytes" in caught.value.body["message"]  # type: ignore[index]


def test_body_over_the_route_limit_is_413(speech_server: ServerProcess) -> None:
    files = {"file": ("huge.wav", b"\0" * 2_000_000)}
    reply = httpx.post(
        f"{speech_server.base_url}/v1/audio/transcriptions",
        data={"model": "whisper"},
        files=files,
        timeout=60,
    )
    assert reply.status_code == 413
    assert reply.json()["error"]["type"] == "invalid_request_error"


def test_too_long_is_400(client: openai.OpenAI) -> None:
    silence = np.zeros(int(8_000 * (SECONDS_LIMIT + 2)), dtype=np.float32)
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(
            model="whisper", file=("long.wav", wav_bytes(silence, 8_000, "PCM_U8"))
        )
    assert caught.value.body["code"] == "audio_too_long"  # type: ignore[index]


@pytest.mark.parametrize(("frames", "code"), [(0, "invalid_file"), (800, "audio_too_short")])
def test_empty_or_too_short_audio_is_400(client: openai.OpenAI, frames: int, code: str) -> None:
    empty = wav_bytes(np.zeros(frames, dtype=np.float32), 16_000)  # a valid header, no speech
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper", file=("empty.wav", empty))
    assert caught.value.body["code"] == code  # type: ignore[index]
    assert caught.value.body["param"] == "file"  # type: ignore[index]


def test_missing_file_is_400(speech_server: ServerProcess) -> None:
    reply = httpx.post(
        f"{speech_server.base_url}/v1/audio/transcriptions",
        data={"model": "whisper"},
        files={"other": ("x.txt", b"x")},
        timeout=30,
    )
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == "file"
    assert error["code"] == "missing_required_parameter"


def test_unknown_response_format_is_400(speech_server: ServerProcess, fox_wav: Path) -> None:
    reply = httpx.post(
        f"{speech_server.base_url}/v1/audio/transcriptions",
        data={"model": "whisper", "response_format": "mp3"},
        files={"file": ("fox.wav", fox_wav.read_bytes())},
        timeout=30,
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "response_format"


def test_text_model_is_400(client: openai.OpenAI, fox_wav: Path) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="chat", file=fox_wav.open("rb"))
    body = caught.value.body
    assert body["code"] == "model_type_mismatch"  # type: ignore[index]
    assert "'chat' is a text model" in body["message"]  # type: ignore[index]


def test_speech_model_on_chat_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="whisper", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    assert "/v1/audio/transcriptions" in caught.value.body["message"]  # type: ignore[index]


def test_english_only_model_refuses_other_languages(client: openai.OpenAI, fox_wav: Path) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper", file=fox_wav.open("rb"), language="fr")
    assert caught.value.body["code"] == "unsupported_language"  # type: ignore[index]


def test_unknown_model_is_404(client: openai.OpenAI, fox_wav: Path) -> None:
    with pytest.raises(openai.NotFoundError):
        client.audio.transcriptions.create(model="nope", file=fox_wav.open("rb"))


def test_models_list_the_speech_type(client: openai.OpenAI) -> None:
    cards = {m.id: m for m in client.models.list().data}
    assert cards["whisper"].model_extra["type"] == "speech"  # type: ignore[index]
