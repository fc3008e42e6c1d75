"""/metrics over HTTP on the real server: values move by what known requests did."""

from __future__ import annotations

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MODEL
from tests.fixtures.server import ServerProcess

LABELS = {"model_name": MODEL, "backend": "local"}


def scrape(server: ServerProcess) -> dict[str, float]:
    reply = httpx.get(f"{server.base_url}/metrics", timeout=30)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            labels = dict(sample.labels)
            reason = labels.pop("finished_reason", None)
            if labels in ({}, LABELS):
                out[sample.name + (f"[{reason}]" if reason else "")] = sample.value
    return out


def test_metrics_count_what_requests_did(server: ServerProcess, client: openai.OpenAI) -> None:
    before = scrape(server)
    messages = [{"role": "user", "content": "Hi"}]
    whole = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=3)  # type: ignore[arg-type]
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    after = scrape(server)

    def grew(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    usage = [whole.usage, next(c.usage for c in chunks if c.usage)]
    assert grew("mlx_manager:time_to_first_token_seconds_count") == 2
    assert grew("mlx_manager:e2e_request_latency_seconds_count") == 2
    assert grew("mlx_manager:generation_tokens_total") == sum(u.completion_tokens for u in usage)  # type: ignore[union-attr]
    assert grew("mlx_manager:prompt_tokens_total") == sum(u.prompt_tokens for u in usage)  # type: ignore[union-attr]
    finished = grew("mlx_manager:request_success_total[length]") + grew(
        "mlx_manager:request_success_total[stop]"
    )
    assert finished == 2
    assert after["mlx_manager:pool_resident_models"] >= 1
    assert after["mlx_manager:num_requests_running"] == 0
    assert "mlx_manager:kv_cache_usage_perc" in after
