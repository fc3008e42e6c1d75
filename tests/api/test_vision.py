"""Vision chat end to end: the tiny SmolVLM behind a live server, the openai and anthropic SDKs.

Two servers: one that allows image URLs on 127.0.0.1 (where this module's image server runs)
and one with the default configuration, which must refuse every private address.
"""

from __future__ import annotations

import base64
import concurrent.futures
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import anthropic
import httpx
import openai
import pytest
from PIL import Image, ImageDraw

from tests.fixtures.server import ServerProcess

VLM = "tiny-vlm"
TEXT = "tiny-llama"
MAX_IMAGE_BYTES = 200_000
GREEDY: dict[str, Any] = {"temperature": 0, "max_tokens": 8}


def png(draw: str, color: str, size: tuple[int, int] = (64, 64)) -> bytes:
    image = Image.new("RGB", size, "white")
    shape = ImageDraw.Draw(image)
    box = (4, 4, size[0] - 4, size[1] - 4)
    shape.rectangle(box, fill=color) if draw == "square" else shape.ellipse(box, fill=color)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


RED = png("square", "red")
BLUE = png("circle", "blue", (100, 80))


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


class _Images(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, str, bytes, dict[str, str]]]] = {}
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Images.hits.append(self.path)
        status, media_type, body, headers = self.routes.get(
            self.path, (404, "text/plain", b"nope", {})
        )
        self.send_response(status)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def image_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    _Images.routes = {
        "/red.png": (200, "image/png", RED, {}),
        "/blue.png": (200, "image/png", BLUE, {}),
        "/page.html": (200, "text/html", b"<html>not an image</html>", {}),
        "/huge.png": (200, "image/png", b"\x89PNG" + b"\0" * (MAX_IMAGE_BYTES + 10), {}),
        "/to-blue": (302, "text/plain", b"", {"Location": "/blue.png"}),
        "/to-metadata": (302, "text/plain", b"", {"Location": "http://169.254.169.254/x.png"}),
        "/to-v6-loopback": (302, "text/plain", b"", {"Location": "http://[::1]/x.png"}),
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()


def _serve(tmp: Path, vlm: Path, text: Path, *extra: str) -> ServerProcess:
    return ServerProcess(
        "--model", f"{VLM}={vlm}", "--model", f"{TEXT}={text}", *extra, log_dir=tmp
    ).wait_ready()


@pytest.fixture(scope="module")
def allowing_server(
    tiny_smolvlm_dir: Path,
    tiny_model_dirs: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    process = _serve(
        tmp_path_factory.mktemp("vision-allowing"),
        tiny_smolvlm_dir,
        tiny_model_dirs["llama"],
        "--image-allow-hosts",
        "127.0.0.1",
        "--max-image-bytes",
        str(MAX_IMAGE_BYTES),
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def default_server(
    tiny_smolvlm_dir: Path,
    tiny_model_dirs: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    process = _serve(
        tmp_path_factory.mktemp("vision-default"), tiny_smolvlm_dir, tiny_model_dirs["llama"]
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def sdk(allowing_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{allowing_server.base_url}/v1", api_key="x", max_retries=0, timeout=120
    )


def image_message(*urls: str, text: str = "Describe.") -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


def ask(sdk: openai.OpenAI, *urls: str) -> tuple[str, int]:
    reply = sdk.chat.completions.create(model=VLM, messages=image_message(*urls), **GREEDY)  # type: ignore[arg-type]
    assert reply.usage is not None
    return reply.choices[0].message.content or "", reply.usage.prompt_tokens


def test_data_url_and_url_images_reach_the_model(sdk: openai.OpenAI, image_server: str) -> None:
    red, red_tokens = ask(sdk, data_url(RED))
    blue, _ = ask(sdk, data_url(BLUE))
    assert red and blue and red != blue  # the image decides the output
    assert ask(sdk, f"{image_server}/red.png") == (red, red_tokens)  # same pixels by URL
    assert ask(sdk, f"{image_server}/blue.png")[0] == blue
    assert ask(sdk, f"{image_server}/to-blue")[0] == blue  # a redirect, re-checked, allowed


def test_several_images_in_one_request(sdk: openai.OpenAI, image_server: str) -> None:
    _, one = ask(sdk, data_url(RED))
    text, two = ask(sdk, data_url(RED), f"{image_server}/blue.png")
    assert text and two > one + 20  # each image adds its tiles' tokens


def test_streaming_yields_tokens_as_they_come(sdk: openai.OpenAI) -> None:
    messages = image_message(data_url(RED))
    whole = sdk.chat.completions.create(model=VLM, messages=messages, **GREEDY)  # type: ignore[arg-type]
    chunks = [
        c.choices[0].delta.content
        for c in sdk.chat.completions.create(
            model=VLM,
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            **GREEDY,
        )
        if c.choices and c.choices[0].delta.content
    ]
    assert len(chunks) >= 3
    assert "".join(chunks) == whole.choices[0].message.content


def test_concurrent_vision_and_text_requests(sdk: openai.OpenAI) -> None:
    """Vision requests interleave with each other and with text traffic; greedy outputs are
    the same as alone."""
    alone = [ask(sdk, data_url(img))[0] for img in (RED, BLUE)]

    def text_reply() -> str:
        reply = sdk.chat.completions.create(
            model=TEXT, messages=[{"role": "user", "content": "hi"}], **GREEDY
        )
        return reply.choices[0].message.content or ""

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        vision = [pool.submit(ask, sdk, data_url(img)) for img in (RED, BLUE) * 3]
        texts = [pool.submit(text_reply) for _ in range(2)]
        assert [f.result()[0] for f in vision] == alone * 3
        assert all(f.result() is not None for f in texts)


def test_anthropic_image_blocks(allowing_server: ServerProcess, image_server: str) -> None:
    client = anthropic.Anthropic(
        base_url=allowing_server.base_url, api_key="x", max_retries=0, timeout=120
    )
    red, _ = ask(
        openai.OpenAI(base_url=f"{allowing_server.base_url}/v1", api_key="x", max_retries=0),
        data_url(RED),
    )

    def message(source: dict[str, Any]) -> str:
        reply = client.messages.create(
            model=VLM,
            max_tokens=8,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": source},  # type: ignore[misc,list-item]
                        {"type": "text", "text": "Describe."},
                    ],
                }
            ],
            extra_body={"temperature": 0},
        )
        block = reply.content[0]
        return block.text if block.type == "text" else ""

    base64_source = {
        "type": "base64",
        "media_type": "image/png",
        "data": base64.b64encode(RED).decode(),
    }
    assert message(base64_source) == red
    assert message({"type": "url", "url": f"{image_server}/red.png"}) == red
    with pytest.raises(anthropic.BadRequestError) as refused:
        message({"type": "url", "url": "http://10.0.0.1/x.png"})
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


def test_images_to_a_text_model_are_a_400(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model=TEXT, messages=image_message(data_url(RED)), **GREEDY)  # type: ignore[arg-type]
    assert info.value.code == "model_type_mismatch"
    assert "text only" in info.value.message


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("/page.html", "not an image"),
        ("/huge.png", "larger than"),
        ("/to-metadata", "169.254.169.254"),
        ("/to-v6-loopback", "::1"),
        ("/missing.png", "404"),
    ],
)
def test_refused_urls_on_an_allowing_server(
    allowing_server: ServerProcess, image_server: str, path: str, needle: str
) -> None:
    body = {"model": VLM, "messages": image_message(f"{image_server}{path}"), "max_tokens": 2}
    response = httpx.post(f"{allowing_server.base_url}/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert needle in error["message"] and error["param"] == "messages[0].content[0].image_url"


def _pixel_bomb() -> str:
    image = Image.new("L", (6400, 6400), 255)  # 41 M pixels > the 40 M default, ~150 kB PNG
    out = io.BytesIO()
    image.save(out, format="PNG")
    return data_url(out.getvalue())


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/red.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x.png",
        "http://[::1]:{port}/red.png",
        "http://localhost:{port}/red.png",
        "http://127.0.0.1:{port}/to-blue",
        "file:///etc/passwd",
        "data:text/plain;base64,aGVsbG8=",
        "data:image/png;base64,bm90IGEgcG5n",
        "pixel-bomb",
    ],
)
def test_ssrf_battery_under_default_config(
    default_server: ServerProcess, image_server: str, url: str
) -> None:
    port = image_server.rsplit(":", 1)[1]
    url = _pixel_bomb() if url == "pixel-bomb" else url.format(port=port)
    hits = len(_Images.hits)
    body = {"model": VLM, "messages": image_message(url), "max_tokens": 2}
    response = httpx.post(f"{default_server.base_url}/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"].endswith("image_url")
    assert len(_Images.hits) == hits  # refused before any connection
