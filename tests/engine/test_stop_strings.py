from __future__ import annotations

from mlx_manager.engine.stop_strings import StopStringMatcher


def feed_all(matcher: StopStringMatcher, pieces: list[str]) -> tuple[str, bool]:
    out = ""
    for piece in pieces:
        text, hit = matcher.feed(piece)
        out += text
        if hit:
            return out, True
    return out + matcher.flush(), False


def test_no_stops_passes_through() -> None:
    assert feed_all(StopStringMatcher(()), ["a", "b"]) == ("ab", False)


def test_stop_split_across_pieces_is_removed() -> None:
    assert feed_all(StopStringMatcher(("END",)), ["hello E", "N", "D more"]) == ("hello ", True)


def test_partial_prefix_is_released_when_it_stops_matching() -> None:
    matcher = StopStringMatcher(("END",))
    assert matcher.feed("hi E") == ("hi ", False)
    assert matcher.feed("x") == ("Ex", False)


def test_earliest_stop_wins() -> None:
    assert feed_all(StopStringMatcher(("c", "ab")), ["xabc"]) == ("x", True)


def test_held_text_is_flushed_at_end() -> None:
    assert feed_all(StopStringMatcher(("STOP",)), ["go ST"]) == ("go ST", False)


def test_merge_events_joins_in_order() -> None:
    from mlx_manager.types import FinishReason, GenerationEvent, Usage, merge_events

    merged = merge_events(
        [
            GenerationEvent("r", "Hel", (1,)),
            GenerationEvent("r", "lo", (2,), finish_reason=FinishReason.STOP, usage=Usage(3, 2)),
        ]
    )
    assert (merged.text, merged.token_ids) == ("Hello", (1, 2))
    assert merged.finish_reason is FinishReason.STOP and merged.usage == Usage(3, 2)
