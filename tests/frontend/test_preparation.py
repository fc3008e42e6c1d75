"""Request preparation checks what needs the model: logit_bias ids within its vocabulary."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from mlx_manager.errors import InvalidRequest
from mlx_manager.frontend.preparation import check_logit_bias
from mlx_manager.models.card import ModelCard
from mlx_manager.types import SamplingParams

VOCAB = 100
MODEL = cast(ModelCard, SimpleNamespace(tokenizer=[None] * VOCAB))  # len() is all it reads


def test_ids_in_the_vocabulary_pass() -> None:
    check_logit_bias(MODEL, SamplingParams(logit_bias=((0, 1.0), (VOCAB - 1, -100.0))))
    check_logit_bias(MODEL, SamplingParams())


@pytest.mark.parametrize("token", [VOCAB, 10**9])
def test_ids_outside_the_vocabulary_are_400(token: int) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_logit_bias(MODEL, SamplingParams(logit_bias=((1, 1.0), (token, 5.0))))
    assert info.value.param == "logit_bias" and f"id {token} " in info.value.message
