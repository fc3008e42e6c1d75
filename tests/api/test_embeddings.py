"""`POST /v1/embeddings` end to end: the real all-MiniLM-L6-v2 beside SmolLM2, the `openai` SDK."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from tests.fixtures.embeddings import (
    CHAT_MODEL,
    MAX_EMBEDDING_INPUTS,
    MINILM,
)
from tests.fixtures.server import ServerProcess

SENTENCES = [
    "A man is playing a guitar.",
    "Someone plays an acoustic guitar on stage.",
    "The stock market fell sharply on Monday.",
]


@pytest.fixture(scope="module")
def sdk(embeddings_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{embeddings_server.base_url}/v1", api_key="unused", max_retries=0, timeout=120
    )


@pytest.fixture(scope="module")
def http(embeddings_server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=embeddings_server.base_url, timeout=120)


@pytest.fixture(scope="module")
def reference(minilm_dir: Path) -> dict[str, np.ndarray]:
    """Independent reference: mlx-embeddings' model on each sentence alone (no padding), its
    last hidden states mean-pooled and normalized in numpy."""
    import mlx.core as mx
    import mlx_embeddings

    model, wrapper = mlx_embeddings.load(str(minilm_dir))
    vectors = {}
    for text in SENTENCES:
        ids = wrapper._tokenizer(text)["input_ids"]
        hidden = np.array(model(mx.array([ids])).last_hidden_state[0], dtype=np.float32)
        pooled = hidden.mean(axis=0)
        vectors[text] = pooled / np.linalg.norm(pooled)
    return vectors


def _vectors(response: openai.types.CreateEmbeddingResponse) -> np.ndarray:
    return np.array([item.embedding for item in response.data], dtype=np.float32)


def test_sdk_base64_default_gives_384d_unit_vectors(sdk: openai.OpenAI) -> None:
    response = sdk.embeddings.create(model=MINILM, input=SENTENCES)  # SDK asks for base64
    vectors = _vectors(response)
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert [item.index for item in response.data] == [0, 1, 2]
    assert response.model == MINILM and response.object == "list"
    assert response.usage.prompt_tokens == response.usage.total_tokens > 3 * 2


def test_float_and_base64_agree(sdk: openai.OpenAI, http: httpx.Client) -> None:
    floats = _vectors(sdk.embeddings.create(model=MINILM, input=SENTENCES, encoding_format="float"))
    raw = http.post(
        "/v1/embeddings", json={"model": MINILM, "input": SENTENCES, "encoding_format": "base64"}
    ).json()
    decoded = np.array(
        [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in raw["data"]]
    )
    assert floats.shape == decoded.shape == (3, 384)
    np.testing.assert_allclose(floats, decoded, atol=1e-7)


def test_similar_sentences_score_higher(sdk: openai.OpenAI) -> None:
    guitar, guitar2, market = _vectors(sdk.embeddings.create(model=MINILM, input=SENTENCES))
    assert guitar @ guitar2 > guitar @ market + 0.3
    assert guitar @ guitar2 > guitar2 @ market + 0.3


def test_vectors_match_independent_reference(
    sdk: openai.OpenAI, reference: dict[str, np.ndarray]
) -> None:
    vectors = _vectors(sdk.embeddings.create(model=MINILM, input=SENTENCES))  # padded batch
    for text, vector in zip(SENTENCES, vectors, strict=True):
        assert float(vector @ reference[text]) > 0.999


def test_batch_of_64_in_one_call_keeps_order(sdk: openai.OpenAI) -> None:
    texts = [
        f"Sentence number {i} is {'short' if i % 2 else 'a little longer than the others'}."
        for i in range(64)
    ]
    batch = _vectors(sdk.embeddings.create(model=MINILM, input=texts))
    assert batch.shape == (64, 384)
    for i in (0, 7, 63):
        alone = _vectors(sdk.embeddings.create(model=MINILM, input=texts[i]))[0]
        assert float(alone @ batch[i]) > 0.9999


def test_token_id_inputs_embed_like_their_text(sdk: openai.OpenAI, http: httpx.Client) -> None:
    text = _vectors(sdk.embeddings.create(model=MINILM, input="hello world"))[0]
    one = http.post("/v1/embeddings", json={"model": MINILM, "input": [7592, 2088]}).json()
    assert one["usage"]["prompt_tokens"] == 4  # [CLS] hello world [SEP]
    many = _vectors(sdk.embeddings.create(model=MINILM, input=[[7592, 2088], [7592]]))
    assert float(np.array(one["data"][0]["embedding"]) @ text) > 0.9999
    assert float(many[0] @ text) > 0.9999 and many.shape == (2, 384)


def _error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    error: dict[str, object] = response.json()["error"]
    return error


def test_dimensions_on_a_model_without_matryoshka_is_400(http: httpx.Client) -> None:
    body = {"model": MINILM, "input": "x", "dimensions": 64}
    error = _error(http.post("/v1/embeddings", json=body), 400)
    assert error["param"] == "dimensions" and "dimensions" in str(error["message"])
    full = http.post("/v1/embeddings", json={**body, "dimensions": 384})
    assert full.status_code == 200  # the model's own size is always fine


def test_chat_model_on_embeddings_and_embeddings_model_on_chat_are_400(
    sdk: openai.OpenAI, http: httpx.Client
) -> None:
    error = _error(http.post("/v1/embeddings", json={"model": CHAT_MODEL, "input": "x"}), 400)
    assert error["param"] == "model" and error["code"] == "model_type_mismatch"
    with pytest.raises(openai.BadRequestError) as chat:
        sdk.chat.completions.create(
            model=MINILM, messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
    assert "embeddings" in str(chat.value)
    with pytest.raises(openai.BadRequestError):
        sdk.completions.create(model=MINILM, prompt="hi", max_tokens=4)


def test_limits_on_inputs_and_tokens(http: httpx.Client) -> None:
    too_many = {"model": MINILM, "input": ["x"] * (MAX_EMBEDDING_INPUTS + 1)}
    error = _error(http.post("/v1/embeddings", json=too_many), 400)
    assert error["param"] == "input" and "--max-embedding-inputs" in str(error["message"])
    long_text = "word " * 300
    too_many_tokens = {"model": MINILM, "input": [long_text] * 15, "truncate": True}
    error = _error(http.post("/v1/embeddings", json=too_many_tokens), 413)
    assert "--max-embedding-tokens" in str(error["message"])


def test_too_long_input_is_400_unless_truncate(http: httpx.Client) -> None:
    body = {"model": MINILM, "input": ["short", "word " * 300]}
    error = _error(http.post("/v1/embeddings", json=body), 400)
    assert error["param"] == "input" and "input[1]" in str(error["message"])
    assert error["code"] == "context_length_exceeded" and "256" in str(error["message"])
    cut = http.post("/v1/embeddings", json={**body, "truncate": True}).json()
    assert len(cut["data"]) == 2 and cut["usage"]["prompt_tokens"] == 3 + 256


@pytest.mark.parametrize(
    "bad",
    [[], [[]], [1, "a"], [[10**9]], {"x": 1}],
    ids=["empty", "empty-ids", "mixed", "id-out-of-vocab", "object"],
)
def test_bad_inputs_are_400(http: httpx.Client, bad: object) -> None:
    error = _error(http.post("/v1/embeddings", json={"model": MINILM, "input": bad}), 400)
    assert error["param"] is None or "input" in str(error["param"])


def test_unknown_model_404_and_unknown_field_400(http: httpx.Client) -> None:
    _error(http.post("/v1/embeddings", json={"model": "nope", "input": "x"}), 404)
    _error(http.post("/v1/embeddings", json={"model": MINILM, "input": "x", "foo": 1}), 400)


def test_embeddings_model_lives_in_the_pool(http: httpx.Client) -> None:
    card = http.get(f"/v1/models/{MINILM}").json()
    assert card["type"] == "embeddings"
    assert http.post(f"/admin/models/unload/{MINILM}").status_code == 200
    assert http.get(f"/v1/models/{MINILM}").json()["loaded"] is False
    again = http.post("/v1/embeddings", json={"model": MINILM, "input": "reloaded on demand"})
    assert again.status_code == 200 and len(again.json()["data"][0]["embedding"]) == 384
    assert http.get(f"/v1/models/{MINILM}").json()["loaded"] is True
