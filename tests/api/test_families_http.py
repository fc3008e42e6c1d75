"""Every chat family served at once from tiny random-weight models, over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import mlx_lm
import openai
import pytest

from mlx_manager.models.families import detect_family
from tests.fixtures.server import ServerProcess

FAMILIES = ("llama", "qwen", "mistral", "gemma", "phi3", "smollm2")


@pytest.fixture(scope="module")
def family_server(
    tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    args: list[str] = []
    for family in FAMILIES:
        args += ["--model", f"tiny-{family}={tiny_model_dirs[family]}"]
    process = ServerProcess(*args, log_dir=tmp_path_factory.mktemp("family-server"))
    try:
        yield process.wait_ready()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def family_client(family_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{family_server.base_url}/v1", api_key="x", max_retries=0)


def test_all_families_listed(family_client: openai.OpenAI) -> None:
    ids = {m.id for m in family_client.models.list().data}
    assert ids == {f"tiny-{f}" for f in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_family_chat(
    family_client: openai.OpenAI, tiny_model_dirs: dict[str, Path], family: str
) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
    ]
    reply = family_client.chat.completions.create(
        model=f"tiny-{family}",
        messages=messages,
        max_tokens=4,
        temperature=0,  # type: ignore[arg-type]
    )
    _, tokenizer = mlx_lm.load(str(tiny_model_dirs[family]))[:2]
    config = json.loads((tiny_model_dirs[family] / "config.json").read_text())
    expected = detect_family(config, family).render_prompt(tokenizer, messages)
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == len(expected)
    assert 1 <= reply.usage.completion_tokens <= 4


@pytest.mark.parametrize("family", FAMILIES)
def test_family_streams(family_client: openai.OpenAI, family: str) -> None:
    chunks = list(
        family_client.chat.completions.create(
            model=f"tiny-{family}",
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=3,
            temperature=0,
            stream=True,
        )
    )
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_chat_template_kwargs_and_thinking_reach_the_template(
    family_client: openai.OpenAI, family_server: ServerProcess
) -> None:
    """vLLM's chat_template_kwargs (OpenAI) and Anthropic's thinking set enable_thinking. The
    tiny Qwen template writes an empty thinking block unless it is true (mlx-lm passes false
    for a vocabulary without <think>, as this test tokenizer's)."""
    import httpx

    hi = [{"role": "user", "content": "Hi"}]
    args = dict(model="tiny-qwen", messages=hi, max_tokens=1, temperature=0)
    plain = family_client.chat.completions.create(**args)  # type: ignore[call-overload]
    on = family_client.chat.completions.create(  # type: ignore[call-overload]
        **args, extra_body={"chat_template_kwargs": {"enable_thinking": True}}
    )
    assert plain.usage and on.usage and on.usage.prompt_tokens < plain.usage.prompt_tokens
    with pytest.raises(openai.BadRequestError) as info:
        family_client.chat.completions.create(  # type: ignore[call-overload]
            **args, extra_body={"chat_template_kwargs": {"add_generation_prompt": False}}
        )
    assert info.value.body["param"] == "chat_template_kwargs"  # type: ignore[index]

    def count(**extra: object) -> int:
        body = {"model": "tiny-qwen", "messages": hi, **extra}
        url = f"{family_server.base_url}/v1/messages/count_tokens"
        response = httpx.post(url, json=body, timeout=30)
        assert response.status_code == 200, response.text
        return int(response.json()["input_tokens"])

    assert count() == count(thinking={"type": "disabled"}) == plain.usage.prompt_tokens
    assert count(thinking={"type": "enabled", "budget_tokens": 1024}) == on.usage.prompt_tokens
