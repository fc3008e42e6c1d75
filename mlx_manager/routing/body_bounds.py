"""A requested model name -> the body bounds of the local text models that would serve it
(frontend/body_bound.py), for refusing a giant body before it is parsed (api/giant_body.py).

A name routes to a chain of targets (rules, aliases, else the local pool); a body cannot fit
only if it cannot fit every one of them. So a chain with an upstream target (whose context we
do not know), a model not served here, one not loaded now (no tokenizer to measure) or a model
without a bound (vision, embeddings) gives None: no refusal by size here.
"""

from __future__ import annotations

from collections.abc import Callable

from mlx_manager.config import LOCAL_PROVIDER
from mlx_manager.frontend.body_bound import BodyBound, body_bound
from mlx_manager.models.card import ModelCard
from mlx_manager.routing.service import GenerationService


class BodyBounds:
    def __init__(
        self, service: GenerationService, card_of: Callable[[str], ModelCard | None]
    ) -> None:
        self._service = service
        self._card_of = card_of
        # model id -> (the card it was measured on, its bound): a card's tokenizer is read
        # once per load (its size can cost milliseconds), a reload measures the new card.
        self._measured: dict[str, tuple[ModelCard, BodyBound | None]] = {}

    def bounds(self, name: str) -> tuple[BodyBound, ...] | None:
        """The bound of each target `name` routes to; None where any target has none."""
        found: list[BodyBound] = []
        for target in self._service.route(name).targets:
            if target.provider != LOCAL_PROVIDER:
                return None
            bound = self._bound_of(target.model)
            if bound is None:
                return None
            found.append(bound)
        return tuple(found)

    def _bound_of(self, model_id: str) -> BodyBound | None:
        card = self._card_of(model_id)
        if card is None:
            return None
        measured = self._measured.get(model_id)
        if measured is None or measured[0] is not card:
            measured = self._measured[model_id] = (card, body_bound(card))
        return measured[1]
