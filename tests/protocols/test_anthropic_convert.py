"""Anthropic request conversion: image blocks become image references in order."""

from __future__ import annotations

import pytest

from mlx_manager.errors import InvalidRequest
from mlx_manager.protocols import anthropic_convert as convert
from mlx_manager.protocols.anthropic_schemas import MessagesRequest
from mlx_manager.types import ImageRef


def request(content: object, role: str = "user") -> MessagesRequest:
    return MessagesRequest.model_validate(
        {"model": "m", "max_tokens": 4, "messages": [{"role": role, "content": content}]}
    )


def test_base64_and_url_images_keep_their_place() -> None:
    body = request(
        [
            {"type": "text", "text": "A"},
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": "QQ=="},
            },
            {"type": "image", "source": {"type": "url", "url": "https://x.test/b.png"}},
            {"type": "text", "text": "B"},
        ]
    )
    (message,) = convert.prompt_to_internal(body, "r").messages or ()
    assert message.content == "A\nB"
    assert message.parts == (
        "A",
        ImageRef("data:image/png;base64,QQ==", "messages[0].content[1].source"),
        ImageRef("https://x.test/b.png", "messages[0].content[2].source"),
        "B",
    )


@pytest.mark.parametrize(
    ("content", "role", "param"),
    [
        (
            [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
            "user",
            "messages[0].content[0].source.type",
        ),
        (
            [{"type": "image", "source": {"type": "base64", "data": "QQ=="}}],
            "user",
            "messages[0].content[0].source",
        ),
        ([{"type": "image", "source": {"type": "url"}}], "user", "messages[0].content[0].source"),
        (
            [{"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}],
            "assistant",
            "messages[0].content[0]",
        ),
    ],
)
def test_bad_image_blocks_are_named(content: object, role: str, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        convert.prompt_to_internal(request(content, role), "r")
    assert info.value.param == param


def test_empty_content_is_400_but_a_final_assistant_prefill() -> None:
    for content in ([], ""):
        with pytest.raises(InvalidRequest) as info:
            convert.prompt_to_internal(request(content), "r")
        assert info.value.param == "messages.0.content" and info.value.code == "invalid_value"
    body = MessagesRequest.model_validate(
        {
            "model": "m",
            "max_tokens": 4,
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": []},
            ],
        }
    )
    assert [m.role for m in convert.prompt_to_internal(body, "r").messages or ()] == ["user"]
