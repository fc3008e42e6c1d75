"""OpenAI `/v1/embeddings`: the request schema and pure converters to and from the wire.

`input` is a string, a list of strings, a list of token ids, or a list of token-id lists;
`encoding_format` is `float` (JSON numbers) or `base64` (little-endian float32 bytes, what
the official SDKs ask for by default and decode themselves). `truncate` is our extension:
cut inputs longer than the model's limit instead of answering 400.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlx_manager.errors import InvalidRequest
from mlx_manager.protocols.fields import ModelName


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelName
    input: str | list[int] | list[list[int]] | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None
    truncate: bool = False


def inputs_of(request: EmbeddingRequest) -> list[str] | list[list[int]]:
    """The inputs as a list of texts or a list of token-id lists (never mixed)."""
    value = request.input
    if isinstance(value, str):
        return [value]
    if not value:
        raise InvalidRequest("'input' must not be empty.", param="input")
    if all(isinstance(item, int) for item in value):
        return [[int(item) for item in value]]  # type: ignore[arg-type]
    if all(isinstance(item, list) for item in value):
        lists = [[int(t) for t in item] for item in value if isinstance(item, list)]
        if any(not ids for ids in lists):
            raise InvalidRequest("'input' has an empty token list.", param="input")
        return lists
    return [str(item) for item in value]


def encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


def embedding_response(
    model: str, vectors: np.ndarray, prompt_tokens: int, encoding_format: str
) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": encode_vector(v, encoding_format)}
            for index, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
