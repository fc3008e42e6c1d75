"""Routing metrics over real HTTP: a front MLX Manager (no local model) routes a chain
[a fake upstream answering 500, the session's server]; /metrics then counts the fallback by
provider and failure class, shows the failed backend down while it cools, and counts the
request by the backend that answered."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MODEL
from tests.fixtures.fake_upstream import FakeUpstream
from tests.fixtures.server import ServerProcess


@pytest.fixture(scope="module")
def front(
    server: ServerProcess, fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("metrics-front")
    config = {
        "providers": [
            {
                "name": "broken",
                "kind": "openai_compatible",
                "base_url": f"{fake_upstream.base_url}/500",
            },
            {"name": "session", "kind": "openai_compatible", "base_url": f"{server.base_url}/v1"},
        ],
        "routes": [
            {
                "pattern": "chain",
                "match": "exact",
                "targets": [
                    {"provider": "broken", "model": "m"},
                    {"provider": "session", "model": MODEL},
                ],
            }
        ],
        "failover_cooldown_failures": 1,  # one failure: skipped at once
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


def scrape(front: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = httpx.get(f"{front.base_url}/metrics", timeout=30)
    assert reply.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def test_a_forced_failover_is_counted_and_the_failed_backend_shown_down(
    front: ServerProcess, fake_upstream: FakeUpstream
) -> None:
    before = scrape(front)
    up = "mlx_manager:backend_up"
    assert before[(up, (("provider", "broken"),))] == 1
    assert before[(up, (("provider", "session"),))] == 1
    assert before[(up, (("provider", "local"),))] == 1
    client = openai.OpenAI(base_url=f"{front.base_url}/v1", api_key="x", max_retries=0)
    for _ in range(2):  # the first fails over; the second skips the cooling target untried
        raw = client.chat.completions.with_raw_response.create(
            model="chain", messages=[{"role": "user", "content": "Hi"}], max_tokens=3
        )
        assert raw.headers["x-mlx-manager-backend"] == f"session/{MODEL}"
    assert fake_upstream.hits["500"] == 1

    after = scrape(front)
    fallbacks = {
        labels: value
        for (name, labels), value in after.items()
        if name == "mlx_manager:route_fallbacks_total"
    }
    assert fallbacks == {(("provider", "broken"), ("reason", "server")): 1.0}
    assert after[(up, (("provider", "broken"),))] == 0  # cooling down
    assert after[(up, (("provider", "session"),))] == 1
    assert after[(up, (("provider", "local"),))] == 1
    answered = sum(
        value
        for (name, labels), value in after.items()
        if name == "mlx_manager:request_success_total" and ("backend", "session") in labels
    )
    assert answered == 2  # requests per backend
