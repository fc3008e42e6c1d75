"""The command line, run as a user would."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from mlx_manager.models.default_model import embedded_gguf_path
from tests.fixtures.server import free_port

CLI = [sys.executable, "-m", "mlx_manager.cli"]


def test_missing_model_fails_fast_and_clearly(tmp_path: Path) -> None:
    env_cache = {
        "HF_HUB_CACHE": str(tmp_path / "hf"),
        "PATH": "/usr/bin:/bin",
        "MLX_MANAGER_DATA_DIR": str(tmp_path / "data"),
    }
    started = time.monotonic()
    result = subprocess.run(
        [
            *CLI,
            "serve",
            "--port",
            str(free_port()),
            "--model",
            "some-org/absent-model",
            "--hub-timeout-s",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env_cache,
    )
    assert result.returncode == 1
    assert "not in the local Hugging Face cache" in result.stderr
    assert "some-org/absent-model" in result.stderr
    assert time.monotonic() - started < 60


def test_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("port: -1\n")
    result = subprocess.run(
        [*CLI, "serve", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "invalid configuration" in result.stderr


def test_convert_gguf_command(tmp_path: Path) -> None:
    out = tmp_path / "smollm2"
    result = subprocess.run(
        [*CLI, "convert-gguf", str(embedded_gguf_path()), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "tensors" in result.stderr
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()


def test_convert_gguf_rejects_non_gguf(tmp_path: Path) -> None:
    bogus = tmp_path / "x.gguf"
    bogus.write_bytes(b"not a gguf")
    result = subprocess.run(
        [*CLI, "convert-gguf", str(bogus), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "x.gguf" in result.stderr


def test_ctrl_c_stops_without_a_traceback(tmp_path: Path, tiny_model_dirs: dict[str, Path]) -> None:
    import signal

    from tests.fixtures.server import ServerProcess

    server = ServerProcess("--model", f"tiny={tiny_model_dirs['llama']}", log_dir=tmp_path)
    server.wait_ready()
    server.process.send_signal(signal.SIGINT)
    code = server.process.wait(timeout=30)
    log = server.log()
    server.stop()
    assert code in (0, 130)
    assert "Traceback" not in log
