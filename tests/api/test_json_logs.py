"""--log-format json: every line a JSON object, the request id on the lines of a request."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.fixtures.server import ServerProcess


def test_json_lines_carry_the_request_id(tiny_model_dirs: dict[str, Path], tmp_path: Path) -> None:
    server = ServerProcess(
        "--model", f"tiny={tiny_model_dirs['llama']}", "--log-format", "json", log_dir=tmp_path
    )
    try:
        server.wait_ready()
        reply = httpx.post(
            f"{server.base_url}/v1/chat/completions",
            json={
                "model": "tiny",
                "max_tokens": 2,
                "messages": [{"role": "user", "content": "Hi"}],
            },
            headers={"x-request-id": "trace-me-42"},
            timeout=60,
        )
        assert reply.status_code == 200
        missing = httpx.post(
            f"{server.base_url}/v1/chat/completions",
            json={"model": "nope", "messages": [{"role": "user", "content": "Hi"}]},
            headers={"x-request-id": "trace-me-43"},
        )
        assert missing.status_code == 404
    finally:
        server.stop()
    lines = [line for line in server.log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message", "request_id"} <= r.keys() for r in records)
    mine = [r for r in records if r["request_id"] == "trace-me-42"]
    assert any("POST /v1/chat/completions" in r["message"] and "200" in r["message"] for r in mine)
    assert any(r["request_id"] == "trace-me-43" and "404" in r["message"] for r in records)
    assert any(r["logger"] == "mlx_manager.pool.pool" for r in records)  # our own lines too
