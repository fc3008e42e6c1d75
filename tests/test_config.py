"""Settings precedence: flags > env MLX_MANAGER_* > config file > defaults."""

from __future__ import annotations

from pathlib import Path
from typing import get_args, get_origin

import pytest
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from mlx_manager.cli import build_parser
from mlx_manager.config import (
    EngineConfig,
    ModelsConfig,
    PoolConfig,
    ServerConfig,
    Settings,
    SubConfig,
    VisionConfig,
    load_settings,
    setting,
)

# Taken at import, before any test defines (or fails to define) a throwaway subclass.
SUB_CONFIGS = tuple(SubConfig.__subclasses__())


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


def _source(name: str, field: FieldInfo) -> str:
    return field.validation_alias if isinstance(field.validation_alias, str) else name


def _parsed(kind: type[SubConfig], name: str) -> bool:
    """A field whose validator turns Settings' form into another type."""
    validators = kind.__pydantic_decorators__.field_validators.values()
    return any(name in validator.info.fields for validator in validators)


def _same_type(field: FieldInfo, origin: FieldInfo) -> bool:
    # Settings keeps repeatable values as lists; sub-configs keep them as (hashable) tuples.
    if get_origin(origin.annotation) is list:
        item = get_args(origin.annotation)[0]
        return get_origin(field.annotation) is tuple and get_args(field.annotation) == (item, ...)
    return field.annotation == origin.annotation


@pytest.mark.parametrize("kind", SUB_CONFIGS, ids=lambda kind: kind.__name__)
def test_sub_config_fields_are_written_once_in_settings(kind: type[SubConfig]) -> None:
    for name, field in kind.model_fields.items():
        source = _source(name, field)
        assert source in Settings.model_fields, f"{kind.__name__}.{name}: no Settings.{source}"
        origin = Settings.model_fields[source]
        where = f"{kind.__name__}.{name} vs Settings.{source}"
        assert field.default == origin.default, where
        assert field.default_factory is origin.default_factory, where
        assert (field.metadata, field.description) == (origin.metadata, origin.description), where
        assert _parsed(kind, name) or _same_type(field, origin), f"{where}: types differ"


def test_every_component_config_is_a_sub_config() -> None:
    expected = {ServerConfig, ModelsConfig, EngineConfig, VisionConfig, PoolConfig}
    assert expected <= set(SUB_CONFIGS)


@pytest.mark.parametrize("kind", SUB_CONFIGS, ids=lambda kind: kind.__name__)
def test_direct_construction_takes_settings_defaults(kind: type[SubConfig]) -> None:
    assert kind() == load_settings({}).sub(kind)


def test_sub_configs_rename_and_parse_settings() -> None:
    settings = load_settings(
        {"model": ["a=/x"], "model_alias": ["n=a"], "keep_alive": 9, "model_keep_alive": ["a=2"]}
    )
    assert settings.models().models == ("a=/x",)
    assert settings.server().model_aliases == ("n=a",)
    pool = settings.pool()
    assert (pool.keep_alive_s, pool.model_keep_alive) == (9, (("a", 2.0),))
    assert settings.engine() == EngineConfig()  # everything else: the defaults


def test_direct_construction_keeps_settings_bounds() -> None:
    assert EngineConfig(kv_cache_gb=0.5, block_size=16).kv_cache_gb == 0.5
    assert PoolConfig(keep_alive_s=3, model_keep_alive=(("a", 0.0),)).keep_alive_for("a") is None
    with pytest.raises(ValidationError):
        EngineConfig(kv_cache_gb=0)  # Settings: gt=0
    with pytest.raises(ValidationError):
        PoolConfig.model_validate({"model_keep_alive": ["a=-1"]})


def test_sub_config_refuses_hand_written_fields() -> None:
    with pytest.raises(TypeError, match="defaults live in Settings"):

        class Retyped(SubConfig):
            kv_cache_gb: float = 3.0

    with pytest.raises(TypeError, match="no field 'not_a_setting'"):

        class Unknown(SubConfig):
            not_a_setting: int = setting()


def test_distributed_serves_exactly_one_model() -> None:
    for models in ([], ["a=/m/a", "b=/m/b"]):
        with pytest.raises(ValidationError, match="exactly one --model"):
            load_settings({"distributed": True, "model": models})
    group = load_settings({"distributed": True, "model": ["/m/a"]}).distributed_group()
    assert group.enabled and group.backend == "any" and group.port == 0 and group.host is None
