"""Chat completions end to end: the official openai SDK against a live server, real SmolLM2."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from transformers import AutoTokenizer

from tests.conftest import MODEL

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir: Path):  # type: ignore[no-untyped-def]
    return AutoTokenizer.from_pretrained(str(smollm2_dir))


def test_answers_paris(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=FRANCE, max_tokens=20, temperature=0
    )
    assert "Paris" in reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-")


def test_streaming_matches_non_streaming(client: openai.OpenAI) -> None:
    args = dict(model=MODEL, messages=FRANCE, max_tokens=12, temperature=0)
    whole = client.chat.completions.create(**args)  # type: ignore[call-overload]
    chunks = list(
        client.chat.completions.create(**args, stream=True, stream_options={"include_usage": True})
    )  # type: ignore[call-overload]
    content = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(content) >= 3, "streamed token by token"
    assert "".join(content) == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_usage_matches_tokenizer(client: openai.OpenAI, tokenizer) -> None:  # type: ignore[no-untyped-def]
    messages = [{"role": "system", "content": "You are terse."}, *FRANCE]
    reply = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=3, temperature=0
    )
    expected_prompt = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_dict=True
    )["input_ids"]
    assert reply.usage.prompt_tokens == len(expected_prompt)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 3
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 3


def test_max_completion_tokens_and_developer_role_and_parts(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "developer", "content": "Answer in one word."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is the capital of"},
                    {"type": "text", "text": "France?"},
                ],
            },
        ],
        max_completion_tokens=2,
        temperature=0,
        user="test-user",
    )
    assert reply.usage.completion_tokens == 2
    assert reply.choices[0].finish_reason == "length"


@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequence_is_never_included(client: openai.OpenAI, stream: bool) -> None:
    args = dict(model=MODEL, messages=FRANCE, max_tokens=20, temperature=0, stop=["Paris", "zzz"])
    if stream:
        chunks = list(client.chat.completions.create(**args, stream=True))  # type: ignore[call-overload]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [
            c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
        ]
        assert finish == ["stop"]
    else:
        reply = client.chat.completions.create(**args)  # type: ignore[call-overload]
        text = reply.choices[0].message.content
        assert reply.choices[0].finish_reason == "stop"
    assert "Paris" not in text
    assert text.startswith("The capital of France is")


def test_stop_as_plain_string(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=FRANCE, max_tokens=20, temperature=0, stop=" of"
    )
    assert reply.choices[0].message.content == "The capital"


def test_seed_reproducible(client: openai.OpenAI) -> None:
    args = dict(
        model=MODEL,
        messages=[{"role": "user", "content": "Tell me a story."}],
        max_tokens=8,
        temperature=1.0,
        top_p=0.95,
    )
    first = client.chat.completions.create(**args, seed=1234)  # type: ignore[call-overload]
    again = client.chat.completions.create(**args, seed=1234)  # type: ignore[call-overload]
    assert first.choices[0].message.content == again.choices[0].message.content
    others = {
        client.chat.completions.create(**args, seed=s).choices[0].message.content  # type: ignore[call-overload]
        for s in (1, 2, 3)
    }
    assert len(others | {first.choices[0].message.content}) > 1, "different seeds differ"


def test_sampling_parameters_accepted(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=FRANCE,
        max_tokens=3,
        temperature=0.7,
        top_p=0.9,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1},
    )
    assert reply.usage.completion_tokens == 3


def test_logit_bias_forces_a_token(client: openai.OpenAI, tokenizer) -> None:  # type: ignore[no-untyped-def]
    token_id = tokenizer.encode(" banana", add_special_tokens=False)[0]
    reply = client.chat.completions.create(
        model=MODEL, messages=FRANCE, max_tokens=2, temperature=0, logit_bias={str(token_id): 100}
    )
    # the detokenizer drops the leading space of a reply's first token
    assert reply.choices[0].message.content.startswith(tokenizer.decode([token_id]).lstrip())


def test_logprobs(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=FRANCE, max_tokens=4, temperature=0, logprobs=True, top_logprobs=3
    )
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens == 4
    assert "".join(entry.token for entry in content) == reply.choices[0].message.content
    for entry in content:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        # greedy: the chosen token is the most likely one
        assert entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-4)
        assert [t.logprob for t in entry.top_logprobs] == sorted(
            [t.logprob for t in entry.top_logprobs], reverse=True
        )


def test_streamed_logprobs(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=FRANCE, max_tokens=4, temperature=0, logprobs=True, stream=True
        )
    )
    entries = [
        e
        for c in chunks
        if c.choices and c.choices[0].logprobs
        for e in c.choices[0].logprobs.content
    ]
    assert len(entries) == 4


def test_a_growing_conversation_keeps_exact_prompt_tokens(client: openai.OpenAI, tokenizer) -> None:  # type: ignore[no-untyped-def]
    """Each turn resends the conversation: its tokenization reuses the last prompt's ids for
    the shared start (models/prefix_tokenizer.py) and its KV the prefix cache; the prompt is
    still exactly the chat template's full tokenization."""
    system = " ".join(["The assistant answers questions about geography in one word."] * 50)
    messages = [{"role": "system", "content": system}]
    for question in ("Capital of France?", "Capital of Italy?", "Capital of Spain?"):
        messages.append({"role": "user", "content": question})
        reply = client.chat.completions.create(
            model=MODEL,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=6,
            temperature=0,
        )
        rendered = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        expected = tokenizer(rendered, add_special_tokens=False)["input_ids"]
        assert reply.usage is not None and reply.usage.prompt_tokens == len(expected)
        messages.append({"role": "assistant", "content": reply.choices[0].message.content or ""})
    details = reply.usage.prompt_tokens_details
    assert details is not None and (details.cached_tokens or 0) > len(expected) // 2
