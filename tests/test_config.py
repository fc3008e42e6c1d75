"""Settings precedence: flags > env MLX_MANAGER_* > config file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mlx_manager.cli import build_parser
from mlx_manager.config import Settings, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("MLX_MANAGER_"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    settings = load_settings({})
    assert (settings.host, settings.port, settings.model) == ("127.0.0.1", 8080, [])


@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    config = tmp_path / f"config{suffix}"
    config.write_text(
        {
            ".yaml": "port: 7000\nhost: 0.0.0.0\ndefault_max_tokens: 11\nlog-level: debug\n",
            ".toml": 'port = 7000\nhost = "0.0.0.0"\ndefault_max_tokens = 11\nlog-level = "debug"\n',
            ".json": '{"port": 7000, "host": "0.0.0.0", "default_max_tokens": 11, "log-level": "debug"}',
        }[suffix]
    )
    monkeypatch.setenv("MLX_MANAGER_PORT", "7100")
    monkeypatch.setenv("MLX_MANAGER_HOST", "10.1.1.1")
    settings = load_settings({"port": 7200}, config)
    assert settings.port == 7200  # flag beats env and file
    assert settings.host == "10.1.1.1"  # env beats file
    assert settings.default_max_tokens == 11  # file beats default
    assert settings.log_level == "debug"
    assert settings.max_request_bytes == Settings.model_fields["max_request_bytes"].default


def test_model_list_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLX_MANAGER_MODEL", "a=org/one, org/two")
    assert load_settings({}).model == ["a=org/one", "org/two"]
    monkeypatch.delenv("MLX_MANAGER_MODEL")
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  - x=/models/x\n  - org/y\n")
    assert load_settings({}, config).model == ["x=/models/x", "org/y"]


def test_unknown_file_key_is_rejected(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("prot: 1\n")
    with pytest.raises(ValueError, match="prot"):
        load_settings({}, config)


def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLX_MANAGER_PORT", "notaport")
    with pytest.raises(ValidationError):
        load_settings({})
    with pytest.raises(ValidationError):
        load_settings({"port": 70000})


def test_help_documents_every_setting() -> None:
    parser = build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    text = serve.format_help()
    for name in Settings.model_fields:
        assert "--" + name.replace("_", "-") in text
        assert "MLX_MANAGER_" + name.upper() in text


def test_flags_parse_into_settings() -> None:
    args = build_parser().parse_args(
        ["serve", "--port", "9001", "--model", "a=/x", "--model", "org/y", "--log-level", "debug"]
    )
    flags = {k: v for k, v in vars(args).items() if k in Settings.model_fields}
    settings = load_settings(flags)
    assert settings.port == 9001
    assert settings.model == ["a=/x", "org/y"]
