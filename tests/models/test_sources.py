"""Model specs and resolution: local dirs, the standard HF cache, clear errors offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlx_manager.models.sources import ModelSourceError, parse_model_spec, resolve_model_dir


def test_parse_alias_and_plain(tmp_path: Path) -> None:
    assert parse_model_spec("fast=org/name").model_id == "fast"
    assert parse_model_spec("fast=org/name").source == "org/name"
    assert parse_model_spec("org/name").model_id == "org/name"
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    spec = parse_model_spec(str(model_dir))
    assert (spec.model_id, spec.source) == ("my-model", str(model_dir.resolve()))


def test_local_dir_needs_config(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match=r"config\.json"):
        resolve_model_dir(str(tmp_path), 1)


def _fake_hf_cache(cache: Path, repo_id: str, source: Path) -> Path:
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / "0123456789abcdef"
    shutil.copytree(source, snapshot)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text("0123456789abcdef")
    return snapshot


def test_hf_id_resolves_from_standard_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dirs: dict[str, Path]
) -> None:
    cache = tmp_path / "hub"
    snapshot = _fake_hf_cache(cache, "tiny-org/tiny-llama", tiny_model_dirs["llama"])
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    assert resolve_model_dir("tiny-org/tiny-llama", 1) == snapshot


def test_absent_hf_id_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelSourceError, match="not in the local Hugging Face cache"):
        resolve_model_dir("org/absent", 1)


def test_absent_hf_id_unreachable_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ModelSourceError, match="unreachable"):
        resolve_model_dir("org/absent", 2)


@pytest.mark.parametrize("bad", ["/no/such/dir", "./relative/missing", "a/b/c", "justname"])
def test_not_a_dir_nor_id(bad: str) -> None:
    with pytest.raises(ModelSourceError):
        resolve_model_dir(bad, 1)
