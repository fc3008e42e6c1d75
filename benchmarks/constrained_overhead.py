"""Per-token cost of constrained decoding (llguidance) at batch 1 on the real SmolLM2.

Decodes the same prompt for a fixed number of tokens with and without a JSON-schema grammar
(mlx-lm's generate_step, greedy, OpenBLAS float32 weights as the server runs them on CPU)
and reports ms/token for each, the overhead, and the mask computation's own share. The
schema's string has a minLength so the grammar never ends before the token budget.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libopenblas.so.0 .venv/bin/python \
        benchmarks/constrained_overhead.py --tokens 64 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlx.core as mx
import mlx_lm
from mlx_lm.generate import generate_step
from mlx_lm.sample_utils import make_sampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: benchmarks.lib
from benchmarks.lib.engine_build import CPU_FLOAT32_MAX_GB
from benchmarks.lib.models import resolve_model
from mlx_manager.frontend.constraints import build_constraint, llg_tokenizer
from mlx_manager.models.cpu_precision import densify_for_cpu
from mlx_manager.models.families import CHATML
from mlx_manager.runner.grammar import GrammarProcessor
from mlx_manager.types import ChatMessage, GenerateRequest, ResponseFormat, SamplingParams

SCHEMA = {
    "type": "object",
    "properties": {"story": {"type": "string", "minLength": 4000}},
    "required": ["story"],
}
PROMPT = "Write a long story about a dragon, as JSON with a 'story' field."


class TimedProcessor:
    def __init__(self, inner: GrammarProcessor) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        mx.eval(tokens, logits)  # the wait for the forward pass is not the grammar's cost
        start = time.perf_counter()
        out = self.inner(tokens, logits)
        mx.eval(out)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def decode_ms_per_token(model: Any, prompt: list[int], tokens: int, processors: list[Any]) -> float:
    steps = generate_step(
        mx.array(prompt, dtype=mx.uint32),
        model,
        max_tokens=tokens + 1,
        sampler=make_sampler(temp=0.0),
        logits_processors=processors,
    )
    next(steps)  # prefill and the first token
    start = time.perf_counter()
    count = sum(1 for _ in steps)
    return (time.perf_counter() - start) * 1000 / count


def schema_constraint(tokenizer: Any) -> tuple[Any, Any]:
    """The JSON-schema constraint a request with SCHEMA gets, and its model stand-in."""
    loaded = SimpleNamespace(tokenizer=tokenizer, stop_token_ids=CHATML.stop_token_ids(tokenizer))
    request = GenerateRequest(
        "bench",
        "smol",
        SamplingParams(),
        messages=(ChatMessage("user", PROMPT),),
        response_format=ResponseFormat(SCHEMA),
    )
    constraint = build_constraint(loaded, request, None)  # type: ignore[arg-type]
    assert constraint is not None
    return constraint, loaded


def report(plain: list[float], constrained: list[float], mask: list[float], tokens: int) -> None:
    # The fastest run of each is the least disturbed by other load on a shared CPU.
    p, c, m = (min(x) for x in (plain, constrained, mask))
    print(f"tokens per run: {tokens}, repeats: {len(plain)} (best run of each)")
    print(
        f"medians: {statistics.median(plain):.2f} / {statistics.median(constrained):.2f} ms/token"
    )
    print(f"unconstrained decode: {p:7.2f} ms/token")
    print(f"constrained decode:   {c:7.2f} ms/token")
    print(f"overhead:             {c - p:7.2f} ms/token ({(c - p) / p * 100:+.1f}%)")
    print(f"grammar work alone:   {m:7.2f} ms/token (mask + apply, forward pass excluded)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--model", default="embedded", help="model dir (default: the embedded SmolLM2)"
    )
    args = parser.parse_args()
    model, tokenizer = mlx_lm.load(str(resolve_model(args.model)))[:2]
    densify_for_cpu(model, CPU_FLOAT32_MAX_GB)
    prompt = CHATML.render_prompt(tokenizer, [{"role": "user", "content": PROMPT}])
    constraint, loaded = schema_constraint(tokenizer)
    decode_ms_per_token(model, prompt, 8, [])  # warm up
    plain, constrained, mask = [], [], []
    for _ in range(args.repeats):
        plain.append(decode_ms_per_token(model, prompt, args.tokens, []))
        timed = TimedProcessor(GrammarProcessor(constraint, llg_tokenizer(loaded)))
        constrained.append(decode_ms_per_token(model, prompt, args.tokens, [timed]))
        mask.append(timed.seconds * 1000 / timed.calls)
    report(plain, constrained, mask, args.tokens)


if __name__ == "__main__":
    main()
