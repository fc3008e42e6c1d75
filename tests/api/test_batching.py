"""Continuous batching on the paged KV cache, end to end on the real SmolLM2 model."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.conftest import MODEL
from tests.fixtures.server import ServerProcess

QUESTIONS = [
    "What is the capital of France?",
    "Name a color.",
    "Write one sentence about the sea, the sky, the wind and the mountains far away.",
    "What is 2 + 2?",
    "Who wrote Hamlet?",
    "Give me a short greeting.",
    "List three fruits.",
    "What is the largest planet in our solar system? Answer briefly please.",
    "Say hello in Spanish.",
    "What do bees make?",
    "How many legs does a spider have?",
    "What is the opposite of hot?",
    "Tell me a fun fact about cats, dogs, or any other animal that people keep at home.",
    "What language is spoken in Brazil?",
    "Name a musical instrument.",
    "What is water made of?",
]

SYSTEM = (
    "You are a careful assistant for a geography quiz. Answer in one short sentence. "
    "Never use lists. Always be polite and precise, and do not add any extra commentary "
    "beyond the answer itself. If you do not know, say so."
)


def _ask(client: openai.OpenAI, question: str, system: str | None = None, max_tokens: int = 12):
    messages = [{"role": "user", "content": question}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=max_tokens,
        temperature=0,  # type: ignore[arg-type]
    )


def test_concurrent_greedy_matches_alone(client: openai.OpenAI) -> None:
    alone = [_ask(client, q).choices[0].message.content for q in QUESTIONS]
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        together = list(pool.map(lambda q: _ask(client, q).choices[0].message.content, QUESTIONS))
    assert together == alone


def test_shared_system_prompt_reuses_blocks(client: openai.OpenAI, server: ServerProcess) -> None:
    first = _ask(client, QUESTIONS[0], SYSTEM)
    before = httpx.get(f"{server.base_url}/v1/queue/stats").json()
    questions = QUESTIONS[1:6]
    with ThreadPoolExecutor(len(questions)) as pool:
        replies = list(pool.map(lambda q: _ask(client, q, SYSTEM), questions))
    alone_again = [_ask(client, q, SYSTEM) for q in questions]
    assert first.usage is not None
    for reply, again in zip(replies, alone_again, strict=True):
        assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
        # the system prompt spans at least one full 32-token block
        assert reply.usage.prompt_tokens_details.cached_tokens >= 32
        assert reply.choices[0].message.content == again.choices[0].message.content
    after = httpx.get(f"{server.base_url}/v1/queue/stats").json()
    assert after["prefix_hit_rate"] > 0
    assert before["kv_blocks_total"] == after["kv_blocks_total"] > 0


def test_kv_memory_is_blocks_in_use(server: ServerProcess) -> None:
    stats = httpx.get(f"{server.base_url}/v1/queue/stats").json()
    assert stats["kv_blocks_used"] + stats["kv_blocks_free"] == stats["kv_blocks_total"]
    if stats["kv_blocks_used"]:
        assert stats["kv_bytes_used"] % stats["kv_blocks_used"] == 0


def test_priority_field_accepted(client: openai.OpenAI) -> None:
    for priority in ("high", "low", 3, -2):
        reply = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=1,
            extra_body={"priority": priority},
        )
        assert reply.usage is not None and reply.usage.completion_tokens == 1
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=1,
            extra_body={"priority": "urgent"},
        )
