"""Real clients' fields end to end: hints accepted and named in x-mlx-manager-ignored-fields
(streamed answers too), missing capabilities a 400 naming them, Claude Code's first request,
the root probe, aliases in /v1/models, langchain with reasoning_effort."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai
import pytest

from mlx_manager.protocols.field_policy import IGNORED_FIELDS_HEADER
from tests.conftest import ALIAS, MODEL
from tests.fixtures.server import ServerProcess
from tests.protocols.test_field_policy import ANTHROPIC_HINTS, OPENAI_HINTS

HI = [{"role": "user", "content": "Hi"}]
CLAUDE_CODE_HEADERS = {
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,"
    "context-management-2025-06-27,fine-grained-tool-streaming-2025-05-14",
    "x-app": "cli",
    "user-agent": "claude-cli/2.1.0 (external, cli)",
    "authorization": "Bearer unused",
    "anthropic-dangerous-direct-browser-access": "true",
}
EPHEMERAL = {"type": "ephemeral"}


def _chat(server: ServerProcess, **extra: Any) -> httpx.Response:
    body = {"model": MODEL, "messages": HI, "max_tokens": 1, **extra}
    return httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=120)


def _ignored(reply: httpx.Response) -> list[str]:
    assert reply.status_code == 200, reply.text
    return reply.headers.get(IGNORED_FIELDS_HEADER, "").split(",")


@pytest.mark.parametrize(("name", "value"), OPENAI_HINTS)
def test_openai_hint_is_accepted_and_named(server: ServerProcess, name: str, value: Any) -> None:
    assert _ignored(_chat(server, **{name: value})) == [name]


def test_streamed_answer_names_the_ignored_fields(server: ServerProcess) -> None:
    body = {"verbosity": "low", "prompt_cache_key": "k", "stream": True}
    with httpx.stream(
        "POST",
        f"{server.base_url}/v1/chat/completions",
        json={"model": MODEL, "messages": HI, "max_tokens": 1, **body},
        timeout=120,
    ) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        assert reply.headers[IGNORED_FIELDS_HEADER] == "verbosity,prompt_cache_key"
        assert "[DONE]" in reply.read().decode()


def test_no_header_when_nothing_is_ignored(server: ServerProcess) -> None:
    reply = _chat(server, reasoning_effort="none")  # mapped to the template, not ignored
    assert reply.status_code == 200 and IGNORED_FIELDS_HEADER not in reply.headers


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"modalities": ["text", "audio"], "audio": {"voice": "alloy"}}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"prediction": {"type": "content", "content": "Hello"}}, "prediction"),
    ],
)
def test_openai_capability_is_refused_by_name(
    client: openai.OpenAI, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL,
            messages=HI,
            max_tokens=1,
            extra_body=extra,  # type: ignore[arg-type]
        )
    body = info.value.body
    assert body["param"] == param and body["code"] == "unsupported_parameter"  # type: ignore[index]
    assert "does not provide" in body["message"]  # type: ignore[index]


@pytest.mark.parametrize(("name", "value"), ANTHROPIC_HINTS)
def test_anthropic_hint_is_accepted_and_named(
    anthropic_client: anthropic.Anthropic, name: str, value: Any
) -> None:
    reply = anthropic_client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=1,
        messages=HI,
        extra_body={name: value},  # type: ignore[arg-type]
    )
    assert reply.headers[IGNORED_FIELDS_HEADER] == name
    assert reply.parse().type == "message"


def test_count_tokens_accepts_cache_control_and_speed(server: ServerProcess) -> None:
    body = {"model": MODEL, "messages": HI, "cache_control": EPHEMERAL, "speed": "fast"}
    reply = httpx.post(f"{server.base_url}/v1/messages/count_tokens", json=body, timeout=60)
    assert _ignored(reply) == ["speed"]
    assert reply.json()["input_tokens"] > 0


def test_server_tool_is_refused_naming_its_type(anthropic_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        anthropic_client.messages.create(
            model=MODEL,
            max_tokens=1,
            messages=HI,  # type: ignore[arg-type]
            tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
        )
    message = info.value.body["error"]["message"]  # type: ignore[index]
    assert "server tool 'web_search_20250305'" in message
    assert "input_schema" not in message.split(";")[0]


def test_mcp_servers_are_refused_by_name(anthropic_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        anthropic_client.messages.create(
            model=MODEL,
            max_tokens=1,
            messages=HI,  # type: ignore[arg-type]
            extra_body={"mcp_servers": [{"type": "url", "url": "https://x.test", "name": "x"}]},
        )
    assert "'mcp_servers' asks for MCP servers" in info.value.body["error"]["message"]  # type: ignore[index]


def _claude_code_request() -> dict[str, Any]:
    """The shape of Claude Code 2.1's first /v1/messages request with a non-Claude model."""
    bash = {
        "name": "Bash",
        "description": "Executes a bash command.",
        "input_schema": {
            "type": "object",
            "properties": {"command": {"type": "string", "description": "The command"}},
            "required": ["command"],
            "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#",
        },
    }
    read = {**bash, "name": "Read", "description": "Reads a file.", "cache_control": EPHEMERAL}
    return {
        "model": ALIAS,
        "max_tokens": 2,
        "temperature": 1,
        "stream": True,
        "system": [
            {"type": "text", "text": "You are Claude Code.", "cache_control": EPHEMERAL},
            {"type": "text", "text": "Be concise.", "cache_control": EPHEMERAL},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>Be brief.</system-reminder>"},
                    {"type": "text", "text": "hi", "cache_control": EPHEMERAL},
                ],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
            {"role": "system", "content": "The user switched directories."},
            {"role": "user", "content": [{"type": "text", "text": "thanks"}]},
        ],
        "tools": [{**bash, "eager_input_streaming": True}, read],
        "metadata": {"user_id": "user_0123_account__session_4567"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    }


def test_claude_code_first_request_is_answered(server: ServerProcess) -> None:
    url = f"{server.base_url}/v1/messages?beta=true"
    body = _claude_code_request()
    with httpx.stream("POST", url, json=body, headers=CLAUDE_CODE_HEADERS, timeout=180) as reply:
        assert reply.status_code == 200, reply.read()
        assert reply.headers[IGNORED_FIELDS_HEADER] == "metadata,tools[].eager_input_streaming"
        events = [
            json.loads(line[len("data: ") :])["type"]
            for line in reply.iter_lines()
            if line.startswith("data: ")
        ]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    counted = {k: v for k, v in body.items() if k in ("model", "messages", "system", "tools")}
    counted["context_management"] = {
        "edits": [{"type": "clear_tool_uses_20250919", "keep": {"type": "tool_uses", "value": 3}}]
    }
    reply = httpx.post(
        f"{server.base_url}/v1/messages/count_tokens?beta=true",
        json=counted,
        headers=CLAUDE_CODE_HEADERS,
        timeout=60,
    )
    assert _ignored(reply) == [
        "tools[].eager_input_streaming",
        "context_management.edits[].clear_tool_uses_20250919",
    ]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_root_answers(server: ServerProcess, method: str) -> None:
    reply = httpx.request(method, f"{server.base_url}/")
    assert reply.status_code == 200
    if method == "GET":
        body = reply.json()
        assert body["name"] == "MLX Manager" and body["version"]
        assert body["links"] == {"models": "/v1/models", "health": "/health"}
    else:
        assert reply.content == b""


def test_aliases_are_listed_as_models(
    client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    listed = {m.id: m.model_extra for m in client.models.list().data}
    assert set(listed) == {MODEL, ALIAS}
    assert (listed[ALIAS] or {})["alias_of"] == MODEL
    assert client.models.retrieve(ALIAS).model_extra["alias_of"] == MODEL  # type: ignore[index]
    cards = {m.id: m.display_name for m in anthropic_client.models.list().data}
    assert cards == {MODEL: MODEL, ALIAS: MODEL}


def test_langchain_with_reasoning_effort(server: ServerProcess) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    chat = langchain_openai.ChatOpenAI(
        model=MODEL,
        base_url=f"{server.base_url}/v1",
        api_key="unused",
        reasoning_effort="low",
        max_tokens=4,
        max_retries=0,
    )
    answer = chat.invoke("hi")
    assert isinstance(answer.content, str) and answer.content
