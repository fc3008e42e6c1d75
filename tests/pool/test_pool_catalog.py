"""Type detection, discovery (model dirs, HF cache), the catalog, and size estimates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlx.core as mx
import pytest

from mlx_manager.config import PoolConfig
from mlx_manager.models.detection import ModelType, detect_model_dir, detect_model_type
from mlx_manager.pool.budget import estimate_weight_bytes, limits_for
from mlx_manager.pool.catalog import build_catalog, describe
from mlx_manager.pool.discovery import scan_hf_cache, scan_model_dir

TEXT, VISION, EMBED = ModelType.TEXT, ModelType.VISION, ModelType.EMBEDDINGS


@pytest.mark.parametrize(
    ("config", "name", "pooling", "expected"),
    [
        ({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}, "x", False, TEXT),
        ({"architectures": ["GPT2LMHeadModel"]}, "x", False, TEXT),
        ({"architectures": ["BertModel"], "model_type": "bert"}, "x", False, EMBED),
        ({"architectures": ["XLMRobertaModel"]}, "x", False, EMBED),
        ({"model_type": "nomic_bert"}, "x", False, EMBED),
        ({"architectures": ["Qwen3ForCausalLM"]}, "Qwen3-Embedding-0.6B", True, EMBED),
        ({"architectures": ["LlamaForCausalLM"], "pooling_config": {}}, "x", False, EMBED),
        (
            {"architectures": ["Gemma3ForConditionalGeneration"], "vision_config": {}},
            "x",
            False,
            VISION,
        ),
        ({"architectures": ["Qwen2VLForConditionalGeneration"]}, "x", False, VISION),
        ({"architectures": ["LlavaForConditionalGeneration"]}, "x", False, VISION),
        ({}, "bge-small-en-v1.5", False, EMBED),
        ({}, "all-MiniLM-L6-v2", False, EMBED),
        ({}, "Qwen2.5-VL-3B-Instruct-4bit", False, VISION),
        ({}, "llava-1.5-7b", False, VISION),
        ({}, "Mistral-7B-Instruct", False, TEXT),
        (None, "nomic-embed-text", False, EMBED),
    ],
)
def test_detect_model_type(
    config: dict[str, object] | None, name: str, pooling: bool, expected: ModelType
) -> None:
    assert detect_model_type(config, name, has_pooling=pooling) is expected


def test_detect_from_directory(pool_model_root: Path, tmp_path: Path) -> None:
    assert detect_model_dir(pool_model_root / "m1") is TEXT
    assert detect_model_dir(pool_model_root / "encoders" / "minilm") is EMBED
    assert detect_model_dir(pool_model_root / "vlm") is VISION
    broken = tmp_path / "e5-base"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    assert detect_model_dir(broken) is EMBED  # unreadable config: the name decides


def test_scan_model_dir_ids_are_relative_paths(pool_model_root: Path) -> None:
    found = scan_model_dir(pool_model_root)
    assert [f.model_id for f in found] == [
        "broken",
        "encoders/minilm",
        "m1",
        "m2",
        "m3",
        "org/m4",
        "vlm",
    ]
    assert scan_model_dir(pool_model_root / "m1")[0].model_id == "m1"  # DIR itself a model
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_model_dir(pool_model_root / "absent")


def test_scan_hf_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dirs: dict[str, Path]
) -> None:
    cache = tmp_path / "hub"
    repo = cache / "models--tiny-org--tiny-qwen"
    shutil.copytree(tiny_model_dirs["qwen"], repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    pytorch_only = cache / "models--org--torch-only" / "snapshots" / "def456"
    pytorch_only.mkdir(parents=True)
    (pytorch_only / "config.json").write_text("{}")
    (pytorch_only / "pytorch_model.bin").write_bytes(b"x")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    found = scan_hf_cache()
    assert [f.model_id for f in found] == ["tiny-org/tiny-qwen"]
    assert found[0].path == repo / "snapshots" / "abc123"
    catalog = build_catalog([], hf_cache=True)
    described = catalog.get("tiny-org/tiny-qwen")
    assert described is not None and described.origin == "hf-cache"
    assert described.family == "qwen" and described.size_bytes > 0


def test_catalog_configured_ids_win(pool_model_root: Path) -> None:
    catalog = build_catalog(
        [("m1", pool_model_root / "m2"), ("smol", pool_model_root / "m3")],
        [pool_model_root],
        context_override=512,
    )
    assert catalog.ids()[:2] == ["m1", "smol"]
    m1 = catalog.get("m1")
    assert m1 is not None and m1.path == pool_model_root / "m2" and m1.origin == "model"
    assert {e.context_length for e in catalog.entries()} == {512}
    assert len(catalog) == 8 and "org/m4" in catalog


def test_catalog_add_serves_a_download_but_never_over_a_configured_id(
    pool_model_root: Path,
) -> None:
    catalog = build_catalog([("org/m4", pool_model_root / "m1")])
    downloaded = describe("org/new", pool_model_root / "m2", "download")
    assert catalog.add(downloaded) and catalog.get("org/new") == downloaded
    newer = describe("org/new", pool_model_root / "m3", "download")  # a newer snapshot
    assert catalog.add(newer) and catalog.get("org/new") == newer
    clash = describe("org/m4", pool_model_root / "m2", "download")
    assert not catalog.add(clash)
    kept = catalog.get("org/m4")
    assert kept is not None and kept.path == pool_model_root / "m1" and len(catalog) == 2


def test_weight_estimate_matches_mlx(pool_model_root: Path) -> None:
    weights = mx.load(str(pool_model_root / "m1" / "model.safetensors"))
    real = sum(v.nbytes for v in weights.values())  # type: ignore[union-attr]
    assert estimate_weight_bytes(pool_model_root / "m1", dense_float32=False) == real


def test_weight_estimate_of_quantized_dense(tmp_path: Path) -> None:
    weights = {
        "l.weight": mx.zeros((8, 4), dtype=mx.uint32),  # 8 x 32 4-bit values
        "l.scales": mx.zeros((8, 1), dtype=mx.float16),
        "l.biases": mx.zeros((8, 1), dtype=mx.float16),
        "norm.weight": mx.zeros((32,), dtype=mx.float16),
    }
    mx.save_safetensors(str(tmp_path / "model.safetensors"), weights)
    (tmp_path / "config.json").write_text(json.dumps({"quantization": {"bits": 4}}))
    assert estimate_weight_bytes(tmp_path, dense_float32=False) == 128 + 16 + 16 + 64
    assert estimate_weight_bytes(tmp_path, dense_float32=True) == 4 * (8 * 32) + 4 * 32


def test_limits_take_the_lower_budget() -> None:
    both = PoolConfig(max_models=3, max_memory_gb=8, memory_limit_pct=50)
    assert limits_for(both, device_bytes=32 * 10**9).max_bytes == 8 * 10**9
    assert limits_for(both, device_bytes=10 * 10**9).max_bytes == 5 * 10**9
    assert limits_for(PoolConfig()).bounded is False
    assert limits_for(PoolConfig(memory_limit_pct=10)).max_bytes  # the device's real memory
