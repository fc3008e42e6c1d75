"""The pool's settings as flags, env vars and config-file keys; `serve --help`; `models`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from mlx_manager.cli import build_parser
from mlx_manager.config import load_settings

CLI = [sys.executable, "-m", "mlx_manager.cli"]


def test_flags_make_the_pool_config() -> None:
    settings = load_settings(
        {
            "max_models": 2,
            "max_memory_gb": 8.5,
            "pin": ["a", "org/b"],
            "model_dir": ["~/models"],
            "keep_alive": 30,
            "model_keep_alive": ["a=0", "org/b=10"],
        }
    )
    pool = settings.pool()
    assert (pool.max_models, pool.max_memory_gb, pool.pin) == (2, 8.5, ("a", "org/b"))
    assert pool.model_dirs == (Path("~/models").expanduser(),)
    assert pool.keep_alive_for("a") is None  # 0: never
    assert pool.keep_alive_for("org/b") == 10
    assert pool.keep_alive_for("c") == 30


def test_env_and_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("max_models: 5\nmodel_dir: [/srv/models]\nkeep_alive: 60\npin: [x]\n")
    monkeypatch.setenv("MLX_MANAGER_PIN", "a,b")
    monkeypatch.setenv("MLX_MANAGER_MEMORY_LIMIT_PCT", "50")
    monkeypatch.setenv("MLX_MANAGER_SCAN_HF_CACHE", "true")
    pool = load_settings({"max_models": 3}, config).pool()
    assert pool.max_models == 3  # flag > file
    assert pool.pin == ("a", "b")  # env > file
    assert (pool.memory_limit_pct, pool.scan_hf_cache) == (50, True)
    assert (pool.model_dirs, pool.keep_alive_s) == ((Path("/srv/models"),), 60)


@pytest.mark.parametrize(
    "flags",
    [
        {"model_keep_alive": ["nosep"]},
        {"model_keep_alive": ["a=-1"]},
        {"memory_limit_pct": 150},
        {"max_models": 0},
    ],
)
def test_invalid_pool_settings(flags: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        load_settings(flags)


def test_serve_help_documents_the_pool(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--model-dir", "--max-models", "--max-memory-gb", "--memory-limit-pct"):
        assert flag in text
    for flag in ("--pin", "--keep-alive", "--model-keep-alive", "--scan-hf-cache"):
        assert flag in text
    assert "MLX_MANAGER_MAX_MODELS" in text and "/admin/models/status" in text


def test_models_command_lists_the_catalog(pool_model_root: Path) -> None:
    result = subprocess.run(
        [*CLI, "models", "--model-dir", str(pool_model_root), "--pin", "m1", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"broken", "encoders/minilm", "m1", "m2", "m3", "org/m4", "vlm"}
    assert rows["m1"]["pinned"] and rows["m1"]["context_length"] == 2048
    assert rows["encoders/minilm"]["type"] == "embeddings" and rows["vlm"]["type"] == "vision"
    assert rows["org/m4"]["size_bytes"] > 0 and rows["org/m4"]["loaded"] is None
