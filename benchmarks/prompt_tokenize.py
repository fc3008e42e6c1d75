"""Tokenizing the next turn of a long conversation: full encode vs prefix reuse.

    python benchmarks/prompt_tokenize.py [--model DIR|embedded] [--system-words 20000]
        [--turns 10] [--out FILE]

Builds a conversation with a long system prompt, renders each turn with the model's chat
template (as the server does) and times, per turn, the tokenizer's full encode and
`PrefixTokenizer.encode` (models/prefix_tokenizer.py), checking that their ids are equal. The
first turns include the prefix tokenizer's own checks against a full encode.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

from mlx_lm.utils import load_tokenizer

from mlx_manager.models.default_model import ensure_embedded_model
from mlx_manager.models.prefix_tokenizer import CHECKED_ENCODES, PrefixTokenizer

WORDS = ("a", "client", "asks", "why", "the", "server", "streams", "tokens", "so", "fast")


def ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--system-words", type=int, default=20_000)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    path = ensure_embedded_model() if args.model == "embedded" else Path(args.model)
    tokenizer: Any = load_tokenizer(path)
    start = time.perf_counter()
    cache = PrefixTokenizer.for_tokenizer(tokenizer)
    build_ms = ms(start)
    assert cache is not None, "this tokenizer gets no prefix cache"
    rng = random.Random(0)
    system = " ".join(rng.choice(WORDS) for _ in range(args.system_words))
    messages = [{"role": "system", "content": system}]
    rows = []
    for turn in range(args.turns):
        messages.append({"role": "user", "content": " ".join(rng.choice(WORDS) for _ in range(50))})
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        start = time.perf_counter()
        full = list(tokenizer.encode(text, add_special_tokens=False))
        full_ms = ms(start)
        start = time.perf_counter()
        reused = cache.encode(text)
        prefix_ms = ms(start)
        assert reused == full, f"turn {turn}: ids differ"
        rows.append({"turn": turn, "tokens": len(full), "full_ms": full_ms, "prefix_ms": prefix_ms})
        print(f"turn {turn}: {len(full)} tokens, full {full_ms:.1f} ms, prefix {prefix_ms:.1f} ms")
        reply = " ".join(rng.choice(WORDS) for _ in range(50))
        messages.append({"role": "assistant", "content": reply})
    trusted = rows[CHECKED_ENCODES + 1 :]
    summary = {
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "model": str(path),
        "build_ms": build_ms,
        "turns": rows,
        "median_full_ms_after_checks": statistics.median(r["full_ms"] for r in trusted),
        "median_prefix_ms_after_checks": statistics.median(r["prefix_ms"] for r in trusted),
    }
    print(
        f"after the checks: full {summary['median_full_ms_after_checks']:.1f} ms, "
        f"prefix {summary['median_prefix_ms_after_checks']:.1f} ms (build {build_ms:.0f} ms)"
    )
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
