"""A corrupt start-up model is marked failed while the others serve; no server path leaks."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.server import ServerProcess, free_port


@pytest.fixture(scope="module")
def broken_dir(tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    broken = tmp_path_factory.mktemp("models") / "broken"
    shutil.copytree(tiny_model_dirs["llama"], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # cut short: unreadable
    return broken


@pytest.fixture(scope="module")
def half_broken(
    tiny_model_dirs: dict[str, Path], broken_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = ServerProcess(
        "--model",
        f"good={tiny_model_dirs['llama']}",
        "--model",
        f"broken={broken_dir}",
        "--model",
        "missing=/nonexistent/model/dir",
        log_dir=tmp_path_factory.mktemp("half-broken"),
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def test_the_other_models_serve_and_health_names_the_failed_ones(
    half_broken: ServerProcess, broken_dir: Path
) -> None:
    health = httpx.get(f"{half_broken.base_url}/health").json()
    assert health["status"] == "ready"
    assert set(health["failed_models"]) == {"broken", "missing"}
    assert str(broken_dir) not in str(health) and "/nonexistent" not in str(health)
    reply = httpx.post(
        f"{half_broken.base_url}/v1/chat/completions",
        json={"model": "good", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text


def test_a_failed_load_names_the_model_not_the_servers_paths(
    half_broken: ServerProcess, broken_dir: Path
) -> None:
    reply = httpx.post(
        f"{half_broken.base_url}/v1/chat/completions",
        json={"model": "broken", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]},
        timeout=60,
    )
    assert reply.status_code == 500
    error = reply.json()["error"]
    assert error["code"] == "model_load_failed" and "'broken'" in error["message"]
    assert str(broken_dir.parent) not in error["message"], error["message"]
    assert str(broken_dir) in half_broken.log()  # the operator still sees where


def test_only_failed_models_stop_the_server(broken_dir: Path, tmp_path: Path) -> None:
    process = ServerProcess("--model", f"broken={broken_dir}", log_dir=tmp_path)
    try:
        with pytest.raises(RuntimeError, match="exited early"):
            process.wait_ready(timeout_s=120)
        assert process.process.returncode == 1
        assert "could not start" in process.log()
    finally:
        process.stop()


def test_an_unreachable_database_stops_the_server_with_the_reason(tmp_path: Path) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    url = f"postgresql://mm:hunter2@127.0.0.1:{free_port()}/mm"
    process = ServerProcess("--model-dir", str(empty), "--database-url", url, log_dir=tmp_path)
    try:
        with pytest.raises(RuntimeError, match="exited early"):
            process.wait_ready(timeout_s=60)
        assert process.process.returncode == 1
        log = process.log()
        assert "could not start: cannot open the store postgresql" in log
        assert "hunter2" not in log and "Traceback" not in log
    finally:
        process.stop()
