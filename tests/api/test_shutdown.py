"""SIGTERM drains: requests in flight may finish; those still open after --shutdown-timeout end
with an error event in their dialect, never a silent cut."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures.server import ServerProcess
from tests.fixtures.tiny_models import no_end_tokens

DRAIN_S = 1.5


async def _lines(http: httpx.AsyncClient, path: str, body: dict[str, object]) -> list[str]:
    lines: list[str] = []
    async with http.stream("POST", path, json=body) as reply:
        assert reply.status_code == 200, await reply.aread()
        async for line in reply.aiter_lines():
            if line:
                lines.append(line)
    return lines


async def _during_shutdown(server: ServerProcess, model_dir: Path) -> tuple[list[str], ...]:
    messages = [{"role": "user", "content": "Tell me everything."}]
    long = {"model": "tiny", "max_tokens": 1900, "stream": True, "messages": messages}
    long["logit_bias"] = no_end_tokens(model_dir)
    headers = {"anthropic-version": "2023-06-01"}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60, headers=headers) as http:
        openai_long = asyncio.create_task(_lines(http, "/v1/chat/completions", long))
        # Anthropic has no logit_bias: a forced tool call whose argument must be long keeps
        # the reply from ending early (the grammar allows no end token before it).
        tool = {
            "name": "write",
            "description": "Write it all down.",
            "input_schema": {
                "type": "object",
                "properties": {"text": {"type": "string", "minLength": 5000}},
                "required": ["text"],
            },
        }
        anthropic_body = {
            "model": "tiny",
            "max_tokens": 1500,
            "stream": True,
            "messages": messages,
            "tools": [tool],
            "tool_choice": {"type": "tool", "name": "write"},
        }
        anthropic_long = asyncio.create_task(_lines(http, "/v1/messages", anthropic_body))
        await asyncio.sleep(1.0)  # both streaming
        short = {**long, "max_tokens": 3}
        short_task = asyncio.create_task(_lines(http, "/v1/chat/completions", short))
        await asyncio.sleep(0.05)
        server.process.send_signal(signal.SIGTERM)
        return await asyncio.gather(openai_long, anthropic_long, short_task)


@pytest.mark.timeout(120)
def test_sigterm_drains_then_ends_open_streams_with_an_error(
    tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    model_dir = tiny_model_dirs["llama"]
    server = ServerProcess(
        "--model", f"tiny={model_dir}", "--shutdown-timeout", str(DRAIN_S), log_dir=tmp_path
    )
    try:
        server.wait_ready()
        started = time.monotonic()
        openai_lines, anthropic_lines, short_lines = asyncio.run(
            _during_shutdown(server, model_dir)
        )
        server.process.wait(timeout=30)
        # uvicorn re-raises the signal once shut down cleanly: death by SIGTERM is the norm.
        assert server.process.returncode in (0, -signal.SIGTERM), server.log()
        assert time.monotonic() - started < DRAIN_S + 15
    finally:
        server.stop()

    # A request that could finish within the drain window finished normally.
    assert short_lines[-1] == "data: [DONE]"
    assert json.loads(short_lines[-2][6:])["choices"][0]["finish_reason"] == "length"

    # OpenAI: an error chunk naming the shutdown, then [DONE].
    assert openai_lines[-1] == "data: [DONE]", openai_lines[-3:]
    error = json.loads(openai_lines[-2][6:])["error"]
    assert error["code"] == "server_shutting_down", error

    # Anthropic: an `error` event (overloaded_error), no message_stop.
    assert anthropic_lines[-2] == "event: error", anthropic_lines[-3:]
    assert json.loads(anthropic_lines[-1][6:])["error"]["type"] == "overloaded_error"
    assert "event: message_stop" not in anthropic_lines
