"""The vision model path on the tiny SmolVLM: load, inputs, the interleaving engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from mlx_manager.engine.request import EngineRequest
from mlx_manager.engine.serial_engine import SerialModelEngine
from mlx_manager.engine.vision_runner import VisionRunner
from mlx_manager.frontend.prompt import vision_prompt_text
from mlx_manager.models.detection import ModelType
from mlx_manager.models.loaded import LoadedModel
from mlx_manager.models.vision_model import build_inputs, load_vision_model
from mlx_manager.types import (
    ChatMessage,
    FinishReason,
    GenerateRequest,
    GenerationEvent,
    ImageRef,
    SamplingParams,
)

GREEDY = SamplingParams(temperature=0.0)


@pytest.fixture(scope="module")
def vlm(tiny_smolvlm_dir: Path) -> LoadedModel:
    return load_vision_model("vlm", tiny_smolvlm_dir, None)


def square(color: str) -> Image.Image:
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).rectangle((8, 8, 56, 56), fill=color)
    return image


def circle(color: str) -> Image.Image:
    image = Image.new("RGB", (100, 80), "black")
    ImageDraw.Draw(image).ellipse((10, 10, 90, 70), fill=color)
    return image


def chat(*parts: str | ImageRef) -> GenerateRequest:
    text = "".join(p for p in parts if isinstance(p, str))
    return GenerateRequest("r", "vlm", GREEDY, messages=(ChatMessage("user", text, parts=parts),))


def request_for(
    vlm: LoadedModel, images: list[Image.Image], rid: str = "r", max_tokens: int = 6
) -> EngineRequest:
    refs = [ImageRef(f"img{i}", f"p{i}") for i in range(len(images))]
    text = vision_prompt_text(vlm, chat(*refs, "Describe."))
    assert text is not None
    inputs = build_inputs(vlm, text, images)
    return EngineRequest(
        rid, "vlm", tuple(inputs.prompt_ids), GREEDY, max_tokens, media=inputs.media
    )


def run_alone(vlm: LoadedModel, request: EngineRequest) -> list[int]:
    runner = VisionRunner(vlm, request, 512)
    tokens = []
    while (step := runner.next()) is not None:
        tokens.append(step.token)
    return tokens


def test_loads_as_a_vision_model(vlm: LoadedModel) -> None:
    assert vlm.model_type is ModelType.VISION
    assert vlm.processor is not None
    end = vlm.tokenizer.convert_tokens_to_ids("<end_of_utterance>")
    assert end in vlm.stop_token_ids


def test_prompt_places_images_where_the_client_put_them(vlm: LoadedModel) -> None:
    text = vision_prompt_text(vlm, chat("Left", ImageRef("a", "p"), "right"))
    assert text is not None and "Left<image>right" in text
    only_text = vision_prompt_text(
        vlm, GenerateRequest("r", "vlm", GREEDY, messages=(ChatMessage("user", "Hi"),))
    )
    assert only_text is not None and "User: Hi<end_of_utterance>" in only_text


def test_image_tokens_are_expanded_and_pixels_prepared(vlm: LoadedModel) -> None:
    one = request_for(vlm, [square("red")])
    two = request_for(vlm, [square("red"), circle("blue")])
    image_id = vlm.tokenizer.convert_tokens_to_ids("<image>")
    assert one.prompt_ids.count(image_id) == 20
    assert two.prompt_ids.count(image_id) == 40
    assert one.media is not None and "pixel_values" in one.media


def test_different_images_give_different_outputs(vlm: LoadedModel) -> None:
    red = run_alone(vlm, request_for(vlm, [square("red")]))
    blue = run_alone(vlm, request_for(vlm, [circle("blue")]))
    assert red != blue
    assert red == run_alone(vlm, request_for(vlm, [square("red")]))


def test_interleaved_sequences_match_each_alone(vlm: LoadedModel) -> None:
    images = [[square("red")], [circle("blue")], [square("green"), circle("yellow")]]
    requests = [request_for(vlm, imgs, f"r{i}") for i, imgs in enumerate(images)]
    alone = [run_alone(vlm, r) for r in requests]

    engine = SerialModelEngine(
        vlm, 512, max_active=2, runner_factory=lambda r: VisionRunner(vlm, r, 512)
    )
    for request in requests:
        engine.add(request)
    events: dict[str, list[GenerationEvent]] = {r.request_id: [] for r in requests}
    steps = 0
    while engine.has_work():
        assert engine.running <= 2
        for event in engine.step():
            events[event.request_id].append(event)
        steps += 1
    for request, expected in zip(requests, alone, strict=True):
        got = [t for e in events[request.request_id] for t in e.token_ids]
        final = events[request.request_id][-1]
        assert final.finished and final.usage is not None
        assert final.usage.prompt_tokens == len(request.prompt_ids)
        assert got == expected[: len(got)]
        if final.finish_reason is FinishReason.STOP:  # alone ran on past the stop token
            assert expected[len(got)] in vlm.stop_token_ids
        else:
            assert got == expected
    # Two at a time: the third starts when one of the first two ends.
    assert steps < sum(len(a) for a in alone)


def test_abort_of_an_active_vision_sequence(vlm: LoadedModel) -> None:
    engine = SerialModelEngine(
        vlm, 512, max_active=2, runner_factory=lambda r: VisionRunner(vlm, r, 512)
    )
    engine.add(request_for(vlm, [square("red")], "a", max_tokens=50))
    engine.add(request_for(vlm, [circle("blue")], "b", max_tokens=50))
    engine.step()
    event = engine.abort("a")
    assert event is not None and event.finish_reason is FinishReason.ABORT
    assert engine.running == 1
