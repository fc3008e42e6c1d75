"""Model downloads end to end: a real server downloads from a loopback Hugging Face hub
(tests/fixtures/fake_hub.py, `HF_ENDPOINT`) into a temporary HF cache (`HF_HUB_CACHE`).

Progress reaches 100% over SSE with growing byte counts and the model then answers a chat
completion by its HF id; a cancel stops mid-file; a server killed mid-download (SIGKILL)
shows the download interrupted after a restart and resumes it without fetching its finished
files again (the hub counts what it serves); a hub that dies mid-download fails the download
with the cause in words, and an unreachable hub is a 502 at start; a finished download is
still served by its id after a restart with no hub.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.fake_hub import FakeHub
from tests.fixtures.server import ServerProcess
from tests.fixtures.tiny_models import build_test_tokenizer, build_tiny_model

DOWNLOADS = "/admin/models/downloads"
WEIGHTS = "model.safetensors"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    root = tmp_path_factory.mktemp("hub-repos")
    model = build_tiny_model("llama", root / "tiny", build_test_tokenizer(root / "tokenizer"))
    no_weights = root / "no-weights"
    no_weights.mkdir()
    shutil.copy(model / "config.json", no_weights / "config.json")
    (no_weights / "pytorch_model.bin").write_bytes(b"\0" * 64)
    names = ("tiny-llama", "tiny-cancel", "tiny-resume", "tiny-dies")
    repos = {f"tiny-org/{name}": model for name in names}
    fake = FakeHub({**repos, "tiny-org/no-weights": no_weights}).start()
    try:
        yield fake
    finally:
        fake.stop()


def start_server(
    hub: FakeHub, root: Path, data_dir: Path, cache: Path, log_dir: Path
) -> ServerProcess:
    (root / "models").mkdir(exist_ok=True)
    env = {
        "HF_ENDPOINT": hub.url,
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_OFFLINE": "0",
        "MLX_MANAGER_DATA_DIR": str(data_dir),
        "MLX_MANAGER_HUB_TIMEOUT_S": "5",
    }
    process = ServerProcess(
        *("--model-dir", str(root / "models"), "--kv-cache-gb", "0.05"), env=env, log_dir=log_dir
    )
    return process.wait_ready()


@pytest.fixture(scope="module")
def server(hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("downloads-server")
    process = start_server(hub, root, root / "data", root / "hf-cache", root)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        yield client


def start(http: httpx.Client, repo_id: str, **extra: str) -> dict[str, Any]:
    reply = http.post(DOWNLOADS, json={"repo_id": repo_id, **extra})
    assert reply.status_code == 202, reply.text
    body: dict[str, Any] = reply.json()
    return body


def state(http: httpx.Client, download_id: str) -> dict[str, Any]:
    reply = http.get(f"{DOWNLOADS}/{download_id}")
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def wait_for(http: httpx.Client, download_id: str, done: Any, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = state(http, download_id)
        if done(body):
            return body
        time.sleep(0.1)
    raise AssertionError(f"download never reached the state wanted: {body}")


def weights_started(body: dict[str, Any]) -> bool:
    return any(f["name"] == WEIGHTS and f["bytes_done"] > 0 for f in body["files"])


def sse_events(http: httpx.Client, download_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    with http.stream("GET", f"{DOWNLOADS}/{download_id}/events") as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line.removeprefix("data:").strip()))
    return events


def test_download_streams_progress_then_serves_by_id(hub: FakeHub, http: httpx.Client) -> None:
    hub.throttle_bytes_per_s = 150_000  # the weights take about 3 s
    body = start(http, "tiny-org/tiny-llama")
    assert body["state"] in ("queued", "downloading") and body["files_total"] == 4
    events = sse_events(http, body["id"])
    last = events[-1]
    assert last["state"] == "done" and last["percent"] == 100.0
    assert last["files_done"] == last["files_total"] == 4
    assert last["bytes_done"] == last["bytes_total"] > 400_000
    done_bytes = [e["bytes_done"] for e in events]
    assert done_bytes == sorted(done_bytes)  # never goes back
    midway = {b for b in done_bytes if 0 < b < last["bytes_total"]}
    assert len(midway) >= 2, done_bytes  # it grew in steps the stream showed
    assert any(e["rate_bytes_per_s"] and e["eta_s"] is not None for e in events)
    assert {e["state"] for e in events} >= {"downloading", "done"}
    assert all(hub.gets["tiny-org/tiny-llama", f["name"]] == 1 for f in last["files"])
    cards = {c["id"]: c for c in http.get("/v1/models").json()["data"]}
    assert cards["tiny-org/tiny-llama"]["type"] == "text"
    chat = http.post(
        "/v1/chat/completions",
        json={
            "model": "tiny-org/tiny-llama",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 2,
        },
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["model"] == "tiny-org/tiny-llama"
    listed = http.get(DOWNLOADS).json()["data"]
    assert [d["id"] for d in listed if d["repo_id"] == "tiny-org/tiny-llama"] == [body["id"]]
    again = start(http, "tiny-org/tiny-llama")  # everything is cached: done, nothing fetched
    assert again["id"] == body["id"]
    assert wait_for(http, body["id"], lambda b: b["state"] == "done")["files_done"] == 4
    assert all(hub.gets["tiny-org/tiny-llama", f["name"]] == 1 for f in last["files"])


def test_cancel_midway(hub: FakeHub, http: httpx.Client) -> None:
    hub.throttle_bytes_per_s = 40_000  # about 10 s for the weights
    body = start(http, "tiny-org/tiny-cancel")
    wait_for(http, body["id"], weights_started)
    reply = http.post(f"{DOWNLOADS}/{body['id']}/cancel")
    assert reply.status_code == 200, reply.text
    cancelled = reply.json()
    assert cancelled["state"] == "cancelled" and cancelled["resumable"] is True
    assert cancelled["files_done"] == 3 and cancelled["percent"] < 100
    time.sleep(1.0)  # a chunk or two may still be in the socket's buffer
    served = hub.bytes_served["tiny-org/tiny-cancel", WEIGHTS]
    assert 0 < served < 430_000
    time.sleep(1.0)
    assert hub.bytes_served["tiny-org/tiny-cancel", WEIGHTS] == served  # the transfer stopped
    again = http.post(f"{DOWNLOADS}/{body['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "download_not_active"
    ids = {c["id"] for c in http.get("/v1/models").json()["data"]}
    assert "tiny-org/tiny-cancel" not in ids


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"repo_id": "../../etc"}, "repo_id", "invalid_repo_id"),
        ({"repo_id": "a/b/c"}, "repo_id", "invalid_repo_id"),
        ({"repo_id": "/tmp/model"}, "repo_id", "invalid_repo_id"),
        ({"repo_id": "gpt2"}, "repo_id", "invalid_repo_id"),
        ({"repo_id": "tiny-org/tiny-llama", "revision": "../../x"}, "revision", "invalid_revision"),
        ({"repo_id": "tiny-org/no-weights"}, "repo_id", "not_an_mlx_model"),
        ({"repo_id": "tiny-org/x", "endpoint": "http://evil"}, "endpoint", "unsupported_parameter"),
        ({}, "repo_id", "missing_required_parameter"),
    ],
)
def test_bad_requests_are_400s(
    http: httpx.Client, body: dict[str, str], param: str, code: str
) -> None:
    reply = http.post(DOWNLOADS, json=body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and error["code"] == code and error["message"]


def test_unknown_repo_revision_and_download(http: httpx.Client) -> None:
    missing = http.post(DOWNLOADS, json={"repo_id": "tiny-org/nothing-here"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "repo_not_found"
    revision = http.post(DOWNLOADS, json={"repo_id": "tiny-org/tiny-llama", "revision": "v9"})
    assert revision.status_code == 404
    assert revision.json()["error"]["code"] == "revision_not_found"
    for path in ("/nope", "/nope/events"):
        reply = http.get(DOWNLOADS + path)
        assert reply.status_code == 404 and reply.json()["error"]["code"] == "download_not_found"


def test_restart_resumes_without_refetching_then_hub_failures(
    hub: FakeHub, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("restart")
    data, cache = root / "data", root / "hf-cache"
    hub.throttle_bytes_per_s = 40_000
    first = start_server(hub, root, data, cache, root)
    try:
        with httpx.Client(base_url=first.base_url, timeout=60) as http:
            body = start(http, "tiny-org/tiny-resume")
            before = wait_for(http, body["id"], weights_started)
            assert before["files_done"] == 3
        first.process.kill()  # no shutdown: as a crash or a power cut
        first.process.wait()
    finally:
        first.stop()
    fetched = {n: count for (r, n), count in hub.gets.items() if r == "tiny-org/tiny-resume"}
    assert len(fetched) == 4 and set(fetched.values()) == {1}
    hub.throttle_bytes_per_s = None
    second = start_server(hub, root, data, cache, root)
    try:
        with httpx.Client(base_url=second.base_url, timeout=60) as http:
            after = state(http, body["id"])
            assert after["state"] == "interrupted" and after["resumable"] is True
            assert after["files_done"] == 3 and after["files_total"] == 4
            reply = http.post(f"{DOWNLOADS}/{body['id']}/resume")
            assert reply.status_code == 202, reply.text
            done = wait_for(http, body["id"], lambda b: b["state"] == "done")
            assert done["percent"] == 100.0
            for file in done["files"]:  # finished files were not fetched again
                wanted = 2 if file["name"] == WEIGHTS else 1
                assert hub.gets["tiny-org/tiny-resume", file["name"]] == wanted, file
            ids = {c["id"] for c in http.get("/v1/models").json()["data"]}
            assert "tiny-org/tiny-resume" in ids
            blobs = cache / "models--tiny-org--tiny-resume" / "blobs"
            assert not list(blobs.glob("*.incomplete"))  # the killed run's partial is gone
            hub_failures(hub, http)
    finally:
        second.stop()
    third = start_server(hub, root, data, cache, root)  # the hub is gone now
    try:
        with httpx.Client(base_url=third.base_url, timeout=60) as http:
            ids = {c["id"] for c in http.get("/v1/models").json()["data"]}
            assert "tiny-org/tiny-resume" in ids  # a finished download stays served
            assert "tiny-org/tiny-dies" not in ids
            chat = {"model": "tiny-org/tiny-resume", "max_tokens": 2}
            chat["messages"] = [{"role": "user", "content": "Hi"}]
            assert http.post("/v1/chat/completions", json=chat).status_code == 200
    finally:
        third.stop()


def hub_failures(hub: FakeHub, http: httpx.Client) -> None:
    """The hub dies mid-download: the download fails naming the cause. Then the hub is gone
    (connection refused): a start is a 502 in words."""
    hub.throttle_bytes_per_s = 40_000
    body = start(http, "tiny-org/tiny-dies")
    wait_for(http, body["id"], weights_started)
    hub.die()
    failed = wait_for(http, body["id"], lambda b: b["state"] == "failed")
    assert failed["resumable"] is True
    assert failed["error"]["code"] == "hub_unreachable"
    assert "unreachable" in failed["error"]["message"] and hub.url in failed["error"]["message"]
    hub.stop()
    reply = http.post(DOWNLOADS, json={"repo_id": "tiny-org/tiny-llama"})
    assert reply.status_code == 502, reply.text
    error = reply.json()["error"]
    assert error["code"] == "hub_unreachable" and error["type"] == "server_error"
    assert "unreachable" in error["message"] and "HF_ENDPOINT" in error["message"]
