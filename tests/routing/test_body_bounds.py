"""A requested name -> the body bounds of the local text models its route would try: none
where any target is an upstream, unknown, not loaded, or has no bound."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlx_manager.config import RouteSettings
from mlx_manager.models.card import ModelCard
from mlx_manager.models.detection import ModelType
from mlx_manager.models.families import detect_family
from mlx_manager.routing.aliases import AliasTable
from mlx_manager.routing.body_bounds import BodyBounds
from mlx_manager.routing.rules import RuleSet
from mlx_manager.routing.service import GenerationService


class Vocabulary(list[None]):
    """A tokenizer stand-in whose len() (what a bound reads) is counted."""

    reads = 0

    def __len__(self) -> int:
        Vocabulary.reads += 1
        return super().__len__()


def card(model_id: str, context: int, model_type: ModelType = ModelType.TEXT) -> ModelCard:
    return ModelCard(
        model_id=model_id,
        path=Path(model_id),
        tokenizer=Vocabulary([None] * 100),
        family=detect_family({}, model_id),
        context_length=context,
        stop_token_ids=frozenset(),
        model_type=model_type,
        max_token_chars=10,
    )


def route(pattern: str, match: str, *targets: tuple[str, str]) -> RouteSettings:
    return RouteSettings.model_validate(
        {
            "pattern": pattern,
            "match": match,
            "targets": [{"provider": p, "model": m} for p, m in targets],
        }
    )


def bounds_with(cards: dict[str, ModelCard]) -> BodyBounds:
    aliases = AliasTable({"gpt-small": "small"})
    rules = RuleSet.build(
        [
            route("up-", "prefix", ("cloud", "m")),
            route("both", "exact", ("local", "small"), ("local", "large")),
            route("chain", "exact", ("local", "small"), ("cloud", "m")),
        ],
        aliases,
    )
    local: Any = object()  # never called: bounds only route names
    service = GenerationService(local, aliases, upstreams={"cloud": local}, rules=rules)
    return BodyBounds(service, cards.get)


CARDS = {
    "small": card("small", 1000),
    "large": card("large", 4000),
    "vision": card("vision", 1000, ModelType.VISION),
}


def text_chars(found: tuple[Any, ...] | None) -> list[int] | None:
    return None if found is None else [b.text_chars for b in found]


def test_local_names_and_aliases_have_their_models_bounds() -> None:
    bounds = bounds_with(CARDS)
    assert text_chars(bounds.bounds("small")) == [10_000]
    assert text_chars(bounds.bounds("gpt-small")) == [10_000]  # the alias's target
    assert text_chars(bounds.bounds("both")) == [10_000, 40_000]  # each target of the chain


def test_upstreams_unknown_unloaded_and_vision_models_have_none() -> None:
    bounds = bounds_with(CARDS)
    assert bounds.bounds("up-gpt") is None  # routed to an upstream
    assert bounds.bounds("chain") is None  # local first, an upstream after
    assert bounds.bounds("nothing-here") is None  # not served (or not loaded now)
    assert bounds.bounds("vision") is None


def test_a_card_is_measured_once_and_again_after_a_reload() -> None:
    cards = dict(CARDS)
    bounds = bounds_with(cards)
    Vocabulary.reads = 0
    for _ in range(3):
        bounds.bounds("small")
    assert Vocabulary.reads == 1
    cards["small"] = card("small", 500)  # reloaded with a smaller context
    assert text_chars(bounds.bounds("small")) == [5_000]
    assert Vocabulary.reads == 2
