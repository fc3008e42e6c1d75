"""Legacy /v1/completions end to end with the openai SDK."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from transformers import AutoTokenizer

from tests.conftest import MODEL

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir: Path):  # type: ignore[no-untyped-def]
    return AutoTokenizer.from_pretrained(str(smollm2_dir))


def test_completion(client: openai.OpenAI, tokenizer) -> None:  # type: ignore[no-untyped-def]
    reply = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=5, temperature=0)
    assert reply.object == "text_completion"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 5
    assert reply.usage.prompt_tokens == len(tokenizer.encode(PROMPT))
    assert reply.choices[0].text.strip()


def test_default_max_tokens_is_16(client: openai.OpenAI) -> None:
    reply = client.completions.create(
        model=MODEL, prompt="Once upon a time", temperature=0, stop=None
    )
    assert reply.usage.completion_tokens <= 16


def test_streaming_completion(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0)
    chunks = list(
        client.completions.create(
            model=MODEL,
            prompt=PROMPT,
            max_tokens=6,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


def test_token_prompt_and_echo(client: openai.OpenAI, tokenizer) -> None:  # type: ignore[no-untyped-def]
    ids = tokenizer.encode(PROMPT)
    by_ids = client.completions.create(model=MODEL, prompt=ids, max_tokens=3, temperature=0)
    by_text = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=3, temperature=0, echo=True
    )
    assert by_text.choices[0].text == PROMPT + by_ids.choices[0].text


def test_completion_logprobs(client: openai.OpenAI) -> None:
    reply = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=3, temperature=0, logprobs=2
    )
    logprobs = reply.choices[0].logprobs
    assert len(logprobs.tokens) == 3
    assert all(lp <= 0 for lp in logprobs.token_logprobs)
    assert all(len(top) <= 2 for top in logprobs.top_logprobs)
    assert logprobs.text_offset[0] == 0


def test_completion_stop(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0)
    word = whole.choices[0].text.split()[0]
    reply = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0, stop=[word]
    )
    assert word not in reply.choices[0].text
    assert reply.choices[0].finish_reason == "stop"
