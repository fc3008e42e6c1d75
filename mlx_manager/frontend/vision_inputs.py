"""A chat request for a vision model: fetch its images, render, tokenize, preprocess.

Runs in the engine client before anything is queued, so a refused image URL, an image the
model's processor cannot take or a prompt too long is a 400 before a stream starts. Fetching
and decoding are asyncio and worker threads (images of one request in parallel).
Tokenization and pixel preprocessing run on the engine thread (a `BuildVisionInputs`
command): mlx-vlm's processors return MLX arrays whatever `return_tensors` asks for, and MLX
work stays on the thread that owns it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from PIL.Image import Image

from mlx_manager.config import VisionConfig
from mlx_manager.errors import InvalidRequest
from mlx_manager.frontend.preparation import PreparedRequest, prepare, tool_format_of
from mlx_manager.frontend.prompt import prompt_ids_for, vision_prompt_text
from mlx_manager.media.images import ImagePolicy, load_image
from mlx_manager.models.card import ModelCard
from mlx_manager.models.vision_model import VisionInputs
from mlx_manager.types import GenerateRequest


@dataclass(frozen=True, slots=True)
class VisionRequest:
    prepared: PreparedRequest
    media: dict[str, Any]


# (prompt text, images) -> the processor's token ids and arrays, built on the engine thread.
VisionInputsBuilder = Callable[[str, list[Image]], Awaitable[VisionInputs]]


async def prepare_vision(
    model: ModelCard,
    request: GenerateRequest,
    policy: ImagePolicy,
    max_images: int,
    build_inputs: VisionInputsBuilder,
) -> VisionRequest:
    refs = request.images
    if len(refs) > max_images:
        raise InvalidRequest(
            f"this request has {len(refs)} images; at most {max_images} are accepted per request",
            param="messages",
        )
    images = list(await asyncio.gather(*(load_image(r.url, policy, param=r.param) for r in refs)))
    fmt = tool_format_of(model, request)
    text = vision_prompt_text(model, request, fmt)
    if text is None:  # token ids: a text-only prompt
        inputs = VisionInputs(prompt_ids_for(model, request, fmt), {})
    else:
        inputs = await build_inputs(text, images)
    return VisionRequest(prepare(model, request, inputs.prompt_ids), inputs.media)


def image_policy(config: VisionConfig) -> ImagePolicy:
    return ImagePolicy(
        timeout_s=config.image_fetch_timeout_s,
        max_bytes=config.max_image_bytes,
        max_pixels=config.max_image_pixels,
        max_side=config.max_image_side,
        allow_hosts=config.image_allow_hosts,
    )
