"""The Anthropic Messages API end to end: the official anthropic SDK, a live server, SmolLM2."""

from __future__ import annotations

from pathlib import Path

import anthropic
import httpx
import pytest
from transformers import AutoTokenizer

from tests.conftest import ALIAS, MODEL
from tests.fixtures.server import ServerProcess

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0}  # the SDK no longer names sampling fields; clients still send them


def test_create_answers_with_system_blocks(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(
        model=MODEL,
        max_tokens=12,
        system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        messages=FRANCE,
        metadata={"user_id": "u-1"},
        extra_body=GREEDY,
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31,some-future-beta"},
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.content[0].type == "text" and "Paris" in message.content[0].text
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.model == MODEL


def test_alias_and_string_system(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(
        model=ALIAS, max_tokens=2, system="Be brief.", messages=FRANCE, extra_body=GREEDY
    )
    assert message.model == ALIAS
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 2


@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequences(anthropic_client: anthropic.Anthropic, stream: bool) -> None:
    args = dict(
        model=MODEL,
        max_tokens=20,
        messages=FRANCE,
        stop_sequences=["Paris", "zzz"],
        extra_body=GREEDY,
    )
    if stream:
        with anthropic_client.messages.stream(**args) as events:  # type: ignore[arg-type]
            message = events.get_final_message()
    else:
        message = anthropic_client.messages.create(**args)  # type: ignore[call-overload]
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "Paris"
    assert message.content[0].text.startswith("The capital of France is")
    assert "Paris" not in message.content[0].text


def test_stream_event_sequence_matches_create(anthropic_client: anthropic.Anthropic) -> None:
    args = dict(model=MODEL, max_tokens=10, messages=FRANCE, extra_body=GREEDY)
    whole = anthropic_client.messages.create(**args)  # type: ignore[call-overload]
    with anthropic_client.messages.stream(**args) as stream:  # type: ignore[arg-type]
        kinds = [event.type for event in stream]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds[1] == "content_block_start" and kinds[-3:-1] == [
        "content_block_stop",
        "message_delta",
    ]
    assert kinds.count("text") >= 3, "streamed token by token"
    assert final.content[0].text == whole.content[0].text
    assert text in ("", final.content[0].text)
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.stop_reason == whole.stop_reason


def test_raw_stream_has_ping_and_event_names(server: ServerProcess) -> None:
    body = {"model": MODEL, "max_tokens": 3, "messages": FRANCE, "stream": True, "temperature": 0}
    with httpx.stream("POST", f"{server.base_url}/v1/messages", json=body, timeout=60) as reply:
        lines = [line for line in reply.iter_lines() if line.startswith("event:")]
    names = [line.split(":", 1)[1].strip() for line in lines]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]


def test_count_tokens_uses_the_template(
    anthropic_client: anthropic.Anthropic, smollm2_dir: Path
) -> None:
    counted = anthropic_client.messages.count_tokens(
        model=MODEL, system="You are terse.", messages=FRANCE
    )
    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_dir))
    expected = tokenizer.apply_chat_template(
        [{"role": "system", "content": "You are terse."}, *FRANCE],
        add_generation_prompt=True,
        return_dict=True,
    )["input_ids"]
    assert counted.input_tokens == len(expected)
    tools = [
        {"name": "f", "description": "d", "input_schema": {"type": "object", "properties": {}}}
    ]
    with_tools = anthropic_client.messages.count_tokens(model=MODEL, messages=FRANCE, tools=tools)  # type: ignore[arg-type]
    assert with_tools.input_tokens > counted.input_tokens


def test_models_in_anthropic_shape(anthropic_client: anthropic.Anthropic) -> None:
    page = anthropic_client.models.list()
    assert MODEL in [m.id for m in page.data]
    assert anthropic_client.models.retrieve(MODEL).type == "model"


def test_unknown_model_is_not_found(anthropic_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        anthropic_client.messages.create(model="claude-nope", max_tokens=1, messages=FRANCE)
    assert info.value.body["type"] == "error"  # type: ignore[index]
    assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert info.value.response.headers.get("request-id")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (
            [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"},
                }
            ],
            "image",
        ),
        (
            [
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "x"},
                }
            ],
            "document",
        ),
    ],
)
def test_unsupported_blocks_are_400(
    anthropic_client: anthropic.Anthropic, content: list[dict[str, object]], needle: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        anthropic_client.messages.create(
            model=MODEL, max_tokens=1, messages=[{"role": "user", "content": content}]
        )  # type: ignore[misc]
    error = info.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error" and needle in error["message"]


def test_bad_fields_are_400(anthropic_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError):
        anthropic_client.messages.create(
            model=MODEL, max_tokens=1, messages=FRANCE, extra_body={"frobnicate": 1}
        )
    with pytest.raises(anthropic.BadRequestError):
        anthropic_client.messages.create(
            model=MODEL, max_tokens=1, messages=FRANCE, extra_body={"temperature": 1.5}
        )


def test_prompt_too_long(anthropic_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        anthropic_client.messages.create(
            model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "hello " * 9000}]
        )
    message = info.value.body["error"]["message"]  # type: ignore[index]
    assert message.startswith("prompt is too long: ") and message.endswith(" maximum")


@pytest.mark.parametrize("content", [[], ""])
def test_empty_content_is_400(anthropic_client: anthropic.Anthropic, content: object) -> None:
    for path in ("create", "count_tokens"):
        with pytest.raises(anthropic.BadRequestError) as info:
            call = getattr(anthropic_client.messages, path)
            extra = {"max_tokens": 1} if path == "create" else {}
            call(model=MODEL, messages=[{"role": "user", "content": content}], **extra)
        error = info.value.body["error"]  # type: ignore[index]
        assert error["type"] == "invalid_request_error"
        assert error["message"].startswith("messages.0: all messages must have non-empty content")


def test_empty_final_assistant_message_is_a_prefill(anthropic_client: anthropic.Anthropic) -> None:
    reply = anthropic_client.messages.create(
        model=MODEL, max_tokens=1, messages=[*FRANCE, {"role": "assistant", "content": []}]
    )
    assert reply.stop_reason == "max_tokens"


def test_too_many_stop_sequences_is_400(anthropic_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        anthropic_client.messages.create(
            model=MODEL, max_tokens=1, messages=FRANCE, stop_sequences=["a"] * 30_000
        )
    assert "stop_sequences" in info.value.body["error"]["message"]  # type: ignore[index]
