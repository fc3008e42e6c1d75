"""Routing to upstreams end to end, real HTTP on loopback.

The session's MLX Manager (SmolLM2) is the upstream, as `openai_compatible` and as
`anthropic`; a second MLX Manager (no local model) routes to it by an exact, a prefix and a
regex rule, so each SDK's requests get answers through its own dialect and through
translation into the other. A fake upstream with the vendors' error shapes drives failover.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml

from tests.conftest import MODEL
from tests.fixtures.fake_upstream import FakeUpstream
from tests.fixtures.server import ServerProcess

BACKEND = "x-mlx-manager-backend"
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}},
    "required": ["city"],
}
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]


def _provider(name: str, kind: str, base_url: str, **timeouts: float) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "kind": kind, "base_url": base_url}
    if timeouts:
        entry["timeouts"] = timeouts
    return entry


def _route(pattern: str, match: str, *targets: tuple[str, str]) -> dict[str, Any]:
    return {
        "pattern": pattern,
        "match": match,
        "targets": [{"provider": p, "model": m} for p, m in targets],
    }


@pytest.fixture(scope="module")
def front(
    server: ServerProcess, fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("front")
    config = {
        "providers": [
            _provider("mm-openai", "openai_compatible", f"{server.base_url}/v1"),
            _provider("mm-anthropic", "anthropic", server.base_url),
            _provider("rate-limited", "openai_compatible", f"{fake_upstream.base_url}/429"),
            _provider("overloaded", "anthropic", f"{fake_upstream.base_url}/529"),
            _provider("broken", "openai_compatible", f"{fake_upstream.base_url}/500"),
            _provider("picky", "openai_compatible", f"{fake_upstream.base_url}/400"),
            _provider(
                "stalled",
                "openai_compatible",
                f"{fake_upstream.base_url}/stall",
                first_token_s=1.5,
                whole_answer_s=1.5,
            ),
            _provider("fake-ok", "openai_compatible", f"{fake_upstream.base_url}/ok"),
        ],
        "routes": [
            _route("up-", "prefix", ("mm-openai", MODEL)),
            _route("anth-", "prefix", ("mm-anthropic", MODEL)),
            _route("exact-model", "exact", ("mm-openai", MODEL)),
            _route("re-[0-9]+", "regex", ("mm-anthropic", MODEL)),
            _route(
                "chain-vendors",
                "exact",
                ("rate-limited", "m"),
                ("overloaded", "m"),
                ("broken", "m"),
                ("mm-openai", MODEL),
            ),
            _route("chain-stall", "exact", ("stalled", "m"), ("mm-anthropic", MODEL)),
            _route("chain-cool", "exact", ("broken", "cool"), ("mm-openai", MODEL)),
            _route("chain-caller", "exact", ("picky", "m"), ("mm-openai", MODEL)),
            _route(
                "chain-whole", "exact", ("rate-limited", "w"), ("broken", "w"), ("fake-ok", "w")
            ),
        ],
        "failover_cooldown_failures": 2,
        "failover_cooldown_s": 300,
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    empty = root / "models"
    empty.mkdir()
    process = ServerProcess("--config", str(path), "--model-dir", str(empty), log_dir=root)
    try:
        yield process.wait_ready()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def oa(front: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{front.base_url}/v1", api_key="x", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def an(front: ServerProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=front.base_url, api_key="x", max_retries=0, timeout=120)


# --- every rule kind, both SDKs, both upstream dialects ---------------------------------


@pytest.mark.parametrize(
    ("model", "backend"),
    [
        ("up-small", "mm-openai"),  # prefix, OpenAI -> OpenAI
        ("exact-model", "mm-openai"),  # exact
        ("anth-small", "mm-anthropic"),  # prefix, OpenAI -> Anthropic
        ("re-42", "mm-anthropic"),  # regex, OpenAI -> Anthropic
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_openai_sdk_through_each_rule(
    oa: openai.OpenAI, model: str, backend: str, stream: bool
) -> None:
    args: dict[str, Any] = dict(
        model=model,
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Name a colour."},
        ],
        max_tokens=6,
        temperature=0,
    )
    if stream:
        raw = oa.chat.completions.with_raw_response.create(
            **args, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(raw.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        reasons = [
            c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
        ]
        usage = chunks[-1].usage
    else:
        raw = oa.chat.completions.with_raw_response.create(**args)
        reply = raw.parse()
        text, reasons, usage = (
            reply.choices[0].message.content or "",
            [reply.choices[0].finish_reason],
            reply.usage,
        )
    assert raw.headers[BACKEND] == f"{backend}/{MODEL}"
    assert raw.headers["x-mlx-manager-data-left-machine"] == "false"  # loopback upstream
    assert text.strip()
    assert reasons in (["length"], ["stop"])
    assert usage is not None and usage.prompt_tokens > 5 and usage.completion_tokens > 0


@pytest.mark.parametrize(
    ("model", "backend"), [("up-small", "mm-openai"), ("anth-small", "mm-anthropic")]
)
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_through_both_dialects(
    an: anthropic.Anthropic, model: str, backend: str, stream: bool
) -> None:
    args: dict[str, Any] = dict(
        model=model,
        system="Answer briefly.",
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=6,
    )
    if stream:
        with an.messages.stream(**args) as events:
            text = "".join(events.text_stream)
            final = events.get_final_message()
    else:
        raw = an.messages.with_raw_response.create(**args)
        assert raw.headers[BACKEND] == f"{backend}/{MODEL}"
        final = raw.parse()
        text = "".join(b.text for b in final.content if b.type == "text")
    assert text.strip()
    assert final.stop_reason in ("max_tokens", "end_turn")
    assert final.usage.input_tokens > 5 and final.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["up-tools", "anth-tools"])
def test_openai_forced_tool_call_streams_arguments(oa: openai.OpenAI, model: str) -> None:
    tools: list[Any] = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": WEATHER,
            },
        }
    ]
    with oa.chat.completions.stream(
        model=model,
        messages=ASK,
        tools=tools,
        tool_choice="required",
        max_tokens=40,
        temperature=0,  # type: ignore[arg-type]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.delta" in kinds
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)


@pytest.mark.parametrize("model", ["up-tools", "anth-tools"])
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_forced_tool_call(an: anthropic.Anthropic, model: str, stream: bool) -> None:
    args: dict[str, Any] = dict(
        model=model,
        messages=ASK,
        tools=[
            {"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER}
        ],
        tool_choice={"type": "any"},
        max_tokens=40,
        extra_body={"temperature": 0},  # greedy: the same call every run
    )
    if stream:
        with an.messages.stream(**args) as events:
            partial = [e for e in events if e.type == "input_json"]
            final = events.get_final_message()
        assert partial, "arguments arrive piece by piece"
    else:
        final = an.messages.create(**args)
    assert final.stop_reason == "tool_use"
    block = next(b for b in final.content if b.type == "tool_use")
    assert block.name == "get_weather" and isinstance(block.input["city"], str)  # type: ignore[index]


def test_count_tokens_through_the_anthropic_upstream(an: anthropic.Anthropic) -> None:
    counted = an.messages.count_tokens(
        model="anth-x", messages=[{"role": "user", "content": "Hello there"}]
    )
    assert counted.input_tokens > 2


def test_explain(front: ServerProcess) -> None:
    body = httpx.get(f"{front.base_url}/admin/routes/explain", params={"model": "re-42"}).json()
    assert body["rule"] == {
        "pattern": "re-[0-9]+",
        "match": "regex",
        "priority": 0,
        "local_load_budget_s": None,
    }
    assert body["chain"] == [
        {
            "provider": "mm-anthropic",
            "model": MODEL,
            "data_leaves_machine": False,
            "cooldown_s": 0.0,
        }
    ]
    nothing = httpx.get(f"{front.base_url}/admin/routes/explain", params={"model": "zzz"}).json()
    assert nothing["rule"] is None and nothing["chain"][0]["provider"] == "local"


# --- failover --------------------------------------------------------------------------


def test_failover_past_429_529_and_500_gives_one_clean_answer(
    oa: openai.OpenAI, fake_upstream: FakeUpstream, front: ServerProcess
) -> None:
    before = dict(fake_upstream.hits)
    raw = oa.chat.completions.with_raw_response.create(
        model="chain-vendors",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=4,
        stream=True,
    )
    assert raw.headers[BACKEND] == f"mm-openai/{MODEL}"
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert {k: fake_upstream.hits[k] - before.get(k, 0) for k in ("429", "529", "500")} == {
        "429": 1,
        "529": 1,
        "500": 1,
    }
    # Retry-After: 30 put the rate-limited target in cooldown at once.
    explain = httpx.get(
        f"{front.base_url}/admin/routes/explain", params={"model": "chain-vendors"}
    ).json()
    assert 25 < explain["chain"][0]["cooldown_s"] <= 30
    # 529 without Retry-After: Overloaded's own 1 s hint, not the 300 s cooldown.
    assert explain["chain"][1]["cooldown_s"] <= 1


def test_stalled_stream_fails_over_on_first_token_timeout(
    an: anthropic.Anthropic, fake_upstream: FakeUpstream
) -> None:
    raw = an.messages.with_raw_response.create(
        model="chain-stall", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert raw.headers[BACKEND] == f"mm-anthropic/{MODEL}"
    assert raw.parse().content[0].type == "text"
    assert fake_upstream.hits["stall"] >= 1


def test_cooldown_engages_after_repeated_failures(
    oa: openai.OpenAI, fake_upstream: FakeUpstream
) -> None:
    before = fake_upstream.hits["500"]
    for _ in range(3):
        raw = oa.chat.completions.with_raw_response.create(
            model="chain-cool", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )
        assert raw.headers[BACKEND] == f"mm-openai/{MODEL}"
    assert fake_upstream.hits["500"] - before == 2  # the third request skipped the cooling target


def test_caller_errors_do_not_fail_over_and_keep_the_dialect(
    oa: openai.OpenAI, an: anthropic.Anthropic, fake_upstream: FakeUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oa.chat.completions.create(
            model="chain-caller", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )
    assert "Invalid value for 'temperature'" in info.value.message
    assert "127.0.0.1" not in info.value.message
    with pytest.raises(anthropic.BadRequestError) as anth:
        an.messages.create(
            model="chain-caller", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )
    assert anth.value.body["type"] == "error"  # type: ignore[index]
    assert fake_upstream.hits["400"] == 2


# --- a non-streamed caller: the upstream is asked for the whole answer ---------------------


def test_non_streamed_callers_get_whole_answers_after_failover(
    oa: openai.OpenAI, an: anthropic.Anthropic, fake_upstream: FakeUpstream
) -> None:
    """429 and 500 fail over as with a stream; the answering upstream is asked with
    `"stream": false`, and its answer comes back whole in each dialect, usage included."""
    before = fake_upstream.hits["429"], fake_upstream.hits["500"]
    fake_upstream.streamed.clear()
    raw = oa.chat.completions.with_raw_response.create(
        model="chain-whole", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert raw.headers[BACKEND] == "fake-ok/w"
    reply = raw.parse()
    assert reply.choices[0].message.content == "Hi"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and (
        reply.usage.prompt_tokens,
        reply.usage.completion_tokens,
    ) == (3, 1)
    assert (fake_upstream.hits["429"], fake_upstream.hits["500"]) == (before[0] + 1, before[1] + 1)
    message = an.messages.create(
        model="chain-whole", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert message.content[0].type == "text" and message.content[0].text == "Hi"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (3, 1)
    assert message.stop_reason == "end_turn"
    assert fake_upstream.streamed == [False, False]


def test_streamed_callers_still_stream_from_the_upstream(
    oa: openai.OpenAI, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.streamed.clear()
    chunks = oa.chat.completions.create(
        model="chain-whole", messages=[{"role": "user", "content": "Hi"}], max_tokens=2, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hi"
    assert fake_upstream.streamed == [True]
