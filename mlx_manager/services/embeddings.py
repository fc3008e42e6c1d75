"""Embeddings: tokenize, batch, one forward per batch, mean-pool and normalize.

`check_request`, `tokenize`, `plan_batches` and `finish` need no MLX and work from the model's
card; the forward (`models.embedding_model.forward`) runs on the engine thread, the only
thread that touches MLX, one `EmbedBatch` command per batch (`EmbeddingService`).

Inputs are sorted by length and cut into batches of at most `BATCH_TOKENS` padded tokens (and
`BATCH_ITEMS` inputs), so a short batch of 64 texts is one forward while 2,048 long ones never
build a huge attention tensor. Each batch is right-padded with the tokenizer's pad id under an
attention mask; mlx-embeddings' `text_embeds` is the masked mean of the last hidden states,
L2-normalized, exactly what sentence-transformers returns for these models.

Token-id inputs are the text's tokens: they get the same special tokens ([CLS] ... [SEP]) that
the tokenizer adds to a text, so `[ids of "hello"]` embeds like `"hello"`. An input longer than
the model's limit is a 400 naming `input`, unless the request says `truncate: true` (then its
tokens are cut to fit, special tokens kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlx_manager.errors import InvalidRequest, RequestTooLarge
from mlx_manager.models.card import ModelCard
from mlx_manager.models.embedding_model import forward
from mlx_manager.models.embedding_spec import EmbeddingSpec
from mlx_manager.models.loaded import LoadedModel

BATCH_TOKENS = 16_384  # padded tokens of one forward
BATCH_ITEMS = 256  # inputs of one forward

EmbeddingInputs = Sequence[str] | Sequence[Sequence[int]]


@dataclass(frozen=True, slots=True)
class EmbeddingLimits:
    max_inputs: int
    max_tokens: int


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    vectors: np.ndarray  # (inputs, dimensions) float32, unit rows, in input order
    prompt_tokens: int


def spec_of(model: ModelCard) -> EmbeddingSpec:
    if model.embedding is None:
        raise InvalidRequest(
            f"The model '{model.model_id}' is not an embeddings model.",
            param="model",
            code="model_type_mismatch",
        )
    return model.embedding


def check_request(
    model: ModelCard, inputs: EmbeddingInputs, dimensions: int | None, limits: EmbeddingLimits
) -> None:
    """Checks that need no tokenizing: input count and `dimensions`."""
    spec = spec_of(model)
    if not inputs:
        raise InvalidRequest("'input' must not be empty.", param="input")
    if len(inputs) > limits.max_inputs:
        raise InvalidRequest(
            f"'input' has {len(inputs)} items; at most {limits.max_inputs} per request "
            "(--max-embedding-inputs).",
            param="input",
        )
    if dimensions is None or dimensions == spec.dimensions:
        return
    if not spec.matryoshka:
        raise InvalidRequest(
            f"The model '{model.model_id}' has {spec.dimensions} dimensions and does not "
            f"support 'dimensions' (it is not a Matryoshka model).",
            param="dimensions",
        )
    if not 1 <= dimensions <= spec.dimensions:
        raise InvalidRequest(
            f"'dimensions' must be between 1 and {spec.dimensions} for '{model.model_id}'.",
            param="dimensions",
        )


def tokenize(
    model: ModelCard, inputs: EmbeddingInputs, truncate: bool, limits: EmbeddingLimits
) -> list[list[int]]:
    """Each input's token ids, special tokens included, checked against the limits."""
    spec = spec_of(model)
    if inputs and isinstance(inputs[0], str):
        encoded = model.tokenizer([str(t) for t in inputs], add_special_tokens=False)
        contents = [list(ids) for ids in encoded["input_ids"]]
    else:
        contents = [[int(t) for t in ids] for ids in inputs]
        _check_ids(contents, len(model.tokenizer))
    sequences = []
    specials = len(spec.prefix_ids) + len(spec.suffix_ids)
    for index, content in enumerate(contents):
        if len(content) > spec.max_content_tokens:
            if not truncate:
                raise InvalidRequest(
                    f"input[{index}] has {len(content) + specials} tokens; the model "
                    f"'{model.model_id}' takes at most {spec.max_tokens} per input "
                    "(send 'truncate': true to cut it).",
                    param="input",
                    code="context_length_exceeded",
                )
            content = content[: spec.max_content_tokens]
        sequences.append([*spec.prefix_ids, *content, *spec.suffix_ids])
    total = sum(len(s) for s in sequences)
    if total > limits.max_tokens:
        raise RequestTooLarge(
            f"'input' has {total} tokens; at most {limits.max_tokens} per request "
            "(--max-embedding-tokens).",
            param="input",
        )
    return sequences


def embed(
    model: LoadedModel,
    inputs: EmbeddingInputs,
    *,
    dimensions: int | None,
    truncate: bool,
    limits: EmbeddingLimits,
) -> EmbeddingResult:
    """All at once, on the calling thread (which must own MLX): unit vectors in input order.

    The server runs the same steps with one engine-thread call per batch instead
    (`EngineClient.embed`), so generation steps interleave with a long embeddings request.
    """
    card = model.card()
    sequences = tokenize(card, inputs, truncate, limits)
    vectors = np.zeros((len(sequences), spec_of(card).dimensions), dtype=np.float32)
    for batch in plan_batches([len(s) for s in sequences]):
        vectors[batch] = forward(model, [sequences[i] for i in batch])
    return finish(card, vectors, sequences, dimensions)


def finish(
    model: ModelCard,
    vectors: np.ndarray,
    sequences: Sequence[Sequence[int]],
    dimensions: int | None,
) -> EmbeddingResult:
    """Matryoshka truncation (then renormalized) where asked, and the token count."""
    if dimensions is not None and dimensions < spec_of(model).dimensions:
        vectors = normalize(vectors[:, :dimensions])
    return EmbeddingResult(vectors, sum(len(s) for s in sequences))


def plan_batches(
    lengths: Sequence[int], max_tokens: int = BATCH_TOKENS, max_items: int = BATCH_ITEMS
) -> list[list[int]]:
    """Indices grouped by similar length; each group's padded size stays within the budget."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[index]  # sorted: the newcomer is the longest of its group
        if current and ((len(current) + 1) * longest > max_tokens or len(current) >= max_items):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _check_ids(contents: list[list[int]], vocab_size: int) -> None:
    for index, ids in enumerate(contents):
        bad = [t for t in ids if not 0 <= t < vocab_size]
        if bad:
            raise InvalidRequest(
                f"input[{index}] has token id {bad[0]}, outside the vocabulary "
                f"(0..{vocab_size - 1}).",
                param="input",
            )
