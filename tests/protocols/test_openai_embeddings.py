"""Pure converters of `/v1/embeddings`: input shapes and both encodings."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from pydantic import ValidationError

from mlx_manager.errors import InvalidRequest
from mlx_manager.protocols.openai_embeddings import (
    EmbeddingRequest,
    embedding_response,
    inputs_of,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hi", ["hi"]),
        (["a", "b"], ["a", "b"]),
        ([1, 2, 3], [[1, 2, 3]]),
        ([[1], [2, 3]], [[1], [2, 3]]),
    ],
)
def test_inputs_of_every_shape(value: object, expected: object) -> None:
    assert inputs_of(EmbeddingRequest.model_validate({"model": "m", "input": value})) == expected


def test_bad_inputs() -> None:
    for value in ([], [[]]):
        with pytest.raises(InvalidRequest):
            inputs_of(EmbeddingRequest.model_validate({"model": "m", "input": value}))
    for body in (
        {"model": "m", "input": [1, "a"]},
        {"model": "m", "input": "x", "encoding_format": "int8"},
        {"model": "m", "input": "x", "dimensions": 0},
        {"model": "m", "input": "x", "unknown": 1},
    ):
        with pytest.raises(ValidationError):
            EmbeddingRequest.model_validate(body)


def test_response_in_both_encodings() -> None:
    vectors = np.array([[0.6, 0.8], [1.0, 0.0]], dtype=np.float32)
    floats = embedding_response("m", vectors, 7, "float")
    assert floats["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert floats["data"][1] == {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]}
    encoded = embedding_response("m", vectors, 7, "base64")["data"][0]["embedding"]
    decoded = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
    np.testing.assert_array_equal(decoded, vectors[0])
    assert len(base64.b64decode(encoded)) == 2 * 4
