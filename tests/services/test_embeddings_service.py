"""The embeddings service without a server: batching plan, padding, limits, dimensions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from mlx_manager.errors import InvalidRequest, RequestTooLarge
from mlx_manager.models.detection import ModelType, detect_model_dir
from mlx_manager.models.embedding_model import load_embedding_model, pad
from mlx_manager.models.embedding_spec import EmbeddingSpec
from mlx_manager.models.families import detect_family
from mlx_manager.models.loaded import LoadedModel
from mlx_manager.services import embeddings
from mlx_manager.services.embeddings import EmbeddingLimits, plan_batches

LIMITS = EmbeddingLimits(max_inputs=8, max_tokens=64)


class _Output:
    def __init__(self, text_embeds: mx.array) -> None:
        self.text_embeds = text_embeds


class FakeEncoder:
    """Embeds a sequence as (length, sum of ids, 1, 0...) normalized; records each forward."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, ...]] = []

    def __call__(self, ids: mx.array, attention_mask: mx.array) -> _Output:
        self.batches.append(tuple(ids.shape))
        mask = attention_mask.astype(mx.float32)
        length = mask.sum(axis=1)
        total = (ids.astype(mx.float32) * mask).sum(axis=1)
        rest = mx.zeros((ids.shape[0], 5))
        vectors = mx.concatenate(
            [length[:, None], total[:, None], mx.ones_like(length)[:, None], rest], axis=1
        )
        return _Output(vectors / mx.linalg.norm(vectors, axis=1, keepdims=True))


class FakeTokenizer:
    def __call__(self, texts: list[str], add_special_tokens: bool) -> dict[str, Any]:
        assert not add_special_tokens
        return {"input_ids": [[len(w) for w in t.split()] for t in texts]}

    def __len__(self) -> int:
        return 100


def fake_model(matryoshka: bool = False, max_tokens: int = 10) -> LoadedModel:
    spec = EmbeddingSpec(8, max_tokens, matryoshka, (1,), (2,), pad_id=0)
    return LoadedModel(
        "fake",
        Path("."),
        FakeEncoder(),
        FakeTokenizer(),
        detect_family({}, "fake"),
        max_tokens,
        frozenset(),
        model_type=ModelType.EMBEDDINGS,
        embedding=spec,
    )


def test_plan_batches_groups_by_length_within_budget() -> None:
    assert plan_batches([3, 1, 2], max_tokens=100) == [[1, 2, 0]]
    assert plan_batches([5, 5, 5, 5], max_tokens=10) == [[0, 1], [2, 3]]
    assert plan_batches([1] * 5, max_tokens=100, max_items=2) == [[0, 1], [2, 3], [4]]
    assert plan_batches([50], max_tokens=10) == [[0]]  # one long input still runs alone


def test_pad_right_pads_with_mask() -> None:
    ids, mask = pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_embed_texts_and_ids_alike_in_input_order() -> None:
    model = fake_model()
    texts = embeddings.embed(model, ["aaa bb", "c"], dimensions=None, truncate=False, limits=LIMITS)
    ids = embeddings.embed(model, [[3, 2], [1]], dimensions=None, truncate=False, limits=LIMITS)
    np.testing.assert_allclose(texts.vectors, ids.vectors)
    assert texts.prompt_tokens == 4 + 3  # [1] + content + [2] each
    np.testing.assert_allclose(np.linalg.norm(texts.vectors, axis=1), 1.0, atol=1e-6)
    assert model.model.batches == [(2, 4), (2, 4)]  # one padded forward per call


def test_dimensions_need_matryoshka_then_truncate_and_renormalize() -> None:
    with pytest.raises(InvalidRequest) as error:
        embeddings.check_request(fake_model().card(), ["x"], 4, LIMITS)
    assert error.value.param == "dimensions"
    embeddings.check_request(fake_model().card(), ["x"], 8, LIMITS)  # the full size is fine
    model = fake_model(matryoshka=True)
    embeddings.check_request(model.card(), ["x"], 2, LIMITS)
    with pytest.raises(InvalidRequest):
        embeddings.check_request(model.card(), ["x"], 9, LIMITS)
    result = embeddings.embed(model, ["aaa bb"], dimensions=2, truncate=False, limits=LIMITS)
    assert result.vectors.shape == (1, 2)
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-6)


def test_limits_and_truncation() -> None:
    model = fake_model(max_tokens=4)
    with pytest.raises(InvalidRequest) as many:
        embeddings.check_request(model.card(), ["x"] * 9, None, LIMITS)
    assert "--max-embedding-inputs" in many.value.message
    with pytest.raises(InvalidRequest) as long:
        embeddings.tokenize(model.card(), ["a b c"], False, LIMITS)
    assert long.value.code == "context_length_exceeded" and "input[0]" in long.value.message
    assert embeddings.tokenize(model.card(), ["a b c"], True, LIMITS) == [[1, 1, 1, 2]]
    with pytest.raises(RequestTooLarge):
        embeddings.tokenize(model.card(), ["a b"] * 8, False, EmbeddingLimits(8, 20))
    with pytest.raises(InvalidRequest) as vocab:
        embeddings.tokenize(model.card(), [[100]], False, LIMITS)
    assert "vocabulary" in vocab.value.message


def test_text_model_is_refused() -> None:
    model = fake_model()
    model.embedding = None
    with pytest.raises(InvalidRequest) as error:
        embeddings.check_request(model.card(), ["x"], None, LIMITS)
    assert error.value.param == "model"


def test_real_minilm_loads_with_its_limits(minilm_dir: Path) -> None:
    assert detect_model_dir(minilm_dir) is ModelType.EMBEDDINGS
    model = load_embedding_model("minilm", minilm_dir)
    spec = model.embedding
    assert spec is not None and model.model_type is ModelType.EMBEDDINGS
    assert (spec.dimensions, spec.max_tokens, spec.matryoshka) == (384, 256, False)
    assert (spec.prefix_ids, spec.suffix_ids, spec.pad_id) == ((101,), (102,), 0)
