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
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from mlx_lm.utils import load_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: benchmarks.lib
from benchmarks.lib.models import resolve_model
from benchmarks.lib.output import write_json
from benchmarks.lib.stats import elapsed_ms
from mlx_manager.models.prefix_tokenizer import CHECKED_ENCODES, PrefixTokenizer

WORDS = ("a", "client", "asks", "why", "the", "server", "streams", "tokens", "so", "fast")


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def time_turn(
    tokenizer: Any, cache: PrefixTokenizer, messages: list[Any], turn: int
) -> dict[str, Any]:
    """The turn's prompt encoded in full and through the prefix cache (ids checked equal)."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    start = time.perf_counter()
    full = list(tokenizer.encode(text, add_special_tokens=False))
    full_ms = elapsed_ms(start)
    start = time.perf_counter()
    reused = cache.encode(text)
    prefix_ms = elapsed_ms(start)
    assert reused == full, f"turn {turn}: ids differ"
    print(f"turn {turn}: {len(full)} tokens, full {full_ms:.1f} ms, prefix {prefix_ms:.1f} ms")
    return {"turn": turn, "tokens": len(full), "full_ms": full_ms, "prefix_ms": prefix_ms}


def conversation(
    tokenizer: Any, cache: PrefixTokenizer, system_words: int, turns: int
) -> list[dict[str, Any]]:
    """A long system prompt, then `turns` user turns (each timed) and assistant replies."""
    rng = random.Random(0)
    messages = [{"role": "system", "content": words(rng, system_words)}]
    rows = []
    for turn in range(turns):
        messages.append({"role": "user", "content": words(rng, 50)})
        rows.append(time_turn(tokenizer, cache, messages, turn))
        messages.append({"role": "assistant", "content": words(rng, 50)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--system-words", type=int, default=20_000)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    path = resolve_model(args.model)
    tokenizer: Any = load_tokenizer(path)
    start = time.perf_counter()
    cache = PrefixTokenizer.for_tokenizer(tokenizer)
    build_ms = elapsed_ms(start)
    assert cache is not None, "this tokenizer gets no prefix cache"
    rows = conversation(tokenizer, cache, args.system_words, args.turns)
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
        write_json(args.out, summary)


if __name__ == "__main__":
    main()
