"""The image loader: data: URLs, base64, http(s) fetching with SSRF guards, decoding limits.

No test touches the network: a loopback HTTP(S) server stands in for image hosts, and
`socket.getaddrinfo` is wrapped so that only numeric hosts, localhost and a few fake names
resolve (no DNS query can leave the machine).
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import io
import shutil
import socket
import ssl
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from mlx_manager.errors import InvalidRequest
from mlx_manager.media import images
from mlx_manager.media.images import (
    ImagePolicy,
    ImageRejected,
    load_image,
    load_image_base64,
    load_image_bytes,
)

PARAM = "messages[0].content[1].image_url"
LOCAL = ImagePolicy(allow_hosts=("127.0.0.1",), timeout_s=5.0)


# -- image bytes ---------------------------------------------------------------------------


def encode(img: Image.Image, fmt: str = "PNG", **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png(width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    return encode(Image.new("RGB", (width, height), color))


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def png_declaring(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header claims width x height (a pixel bomb, cheaply)."""
    data = bytearray(png(1, 1))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


OK_PNG = png(40, 20)


# -- a loopback image server ---------------------------------------------------------------


@dataclass
class Served:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the status line
    drip_s: float = 0.0  # between body bytes (no Content-Length)
    stream_bytes: int = 0  # this many bytes, no Content-Length


ROUTES: dict[str, Served] = {
    "/ok.png": Served(body=OK_PNG, headers={"Content-Type": "image/png"}),
    "/ok-params.png": Served(body=OK_PNG, headers={"Content-Type": "IMAGE/PNG; charset=binary"}),
    "/page.html": Served(body=b"<html>hi</html>", headers={"Content-Type": "text/html"}),
    "/no-type": Served(body=OK_PNG),
    "/corrupt.png": Served(
        body=b"\x89PNG\r\n\x1a\nnot really", headers={"Content-Type": "image/png"}
    ),
    "/bomb.png": Served(body=png_declaring(8000, 8000), headers={"Content-Type": "image/png"}),
    "/big.png": Served(body=png(300, 100), headers={"Content-Type": "image/png"}),
    "/stream": Served(stream_bytes=2_000_000, headers={"Content-Type": "image/png"}),
    "/gzip.png": Served(
        body=OK_PNG, headers={"Content-Type": "image/png", "Content-Encoding": "gzip"}
    ),
    "/missing.png": Served(status=404, body=b"nope", headers={"Content-Type": "text/plain"}),
    "/slow.png": Served(delay_s=3.0, body=OK_PNG, headers={"Content-Type": "image/png"}),
    "/drip.png": Served(drip_s=0.1, body=OK_PNG, headers={"Content-Type": "image/png"}),
    "/redirect": Served(status=302, headers={"Location": "/ok.png"}),
    "/redirect-2": Served(status=301, headers={"Location": "redirect"}),
    "/loop": Served(status=302, headers={"Location": "/loop"}),
    "/to-metadata": Served(
        status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}
    ),
    "/to-file": Served(status=302, headers={"Location": "file:///etc/passwd"}),
    "/to-data": Served(status=302, headers={"Location": data_url(OK_PNG)}),
    # "/to-ipv6" is added per server: it needs the port.
}


@dataclass
class ImageServer:
    base: str
    port: int
    log: list[tuple[str, str]]  # (path, Host header) of every request received

    def count(self) -> int:
        return len(self.log)


def _serve(routes: dict[str, Served], stop: threading.Event, tls: ssl.SSLContext | None):
    log: list[tuple[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            log.append((self.path, self.headers.get("Host", "")))
            served = routes.get(self.path.split("?")[0], Served(status=404))
            if served.delay_s and stop.wait(served.delay_s):
                return
            self.send_response(served.status)
            for name, value in served.headers.items():
                self.send_header(name, value)
            streaming = bool(served.stream_bytes or served.drip_s)
            if not streaming:
                self.send_header("Content-Length", str(len(served.body)))
            self.end_headers()
            if served.stream_bytes:
                chunk = b"\0" * 65536
                for _ in range(served.stream_bytes // len(chunk)):
                    self.wfile.write(chunk)
            elif served.drip_s:
                for i in range(len(served.body)):
                    if stop.wait(served.drip_s):
                        return
                    self.wfile.write(served.body[i : i + 1])
                    self.wfile.flush()
            else:
                self.wfile.write(served.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # clients hang up on purpose (size caps, timeouts)

    server = Server(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    return server, thread, log


@pytest.fixture(scope="module")
def server() -> Iterator[ImageServer]:
    routes = dict(ROUTES)
    stop = threading.Event()
    srv, thread, log = _serve(routes, stop, None)
    port = srv.server_address[1]
    routes["/to-ipv6"] = Served(status=302, headers={"Location": f"http://[::1]:{port}/ok.png"})
    routes["/to-cdn"] = Served(
        status=302, headers={"Location": f"http://cdn.example:{port}/ok.png"}
    )
    routes["/to-internal"] = Served(
        status=302, headers={"Location": f"http://internal.example:{port}/ok.png"}
    )
    yield ImageServer(f"http://127.0.0.1:{port}", port, log)
    stop.set()
    srv.shutdown()
    srv.server_close()
    thread.join(5)


# -- no DNS, and fake names ----------------------------------------------------------------

# name -> successive answers (the last one repeats), each a list of addresses
FAKE_DNS: dict[str, list[list[str]]] = {}
RESOLVED: list[str] = []
_real_getaddrinfo = socket.getaddrinfo


def _guarded_getaddrinfo(
    host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
) -> list[Any]:
    name = host.decode() if isinstance(host, bytes) else host
    RESOLVED.append(name)
    if name in FAKE_DNS:
        answers = FAKE_DNS[name]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        infos: list[Any] = []
        for address in answer:
            if ":" in address:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return infos
    if name != "localhost":  # /etc/hosts; anything else must be numeric: no DNS queries
        flags |= socket.AI_NUMERICHOST
    return _real_getaddrinfo(host, port, family, type, proto, flags)


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    FAKE_DNS.clear()
    RESOLVED.clear()
    monkeypatch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)
    yield


# -- helpers -------------------------------------------------------------------------------


def load(source: str, policy: ImagePolicy = LOCAL) -> Image.Image:
    return asyncio.run(load_image(source, policy, param=PARAM))


def refused(make: Callable[[], Coroutine[Any, Any, Image.Image]], *fragments: str) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        asyncio.run(make())
    exc = info.value
    assert isinstance(exc, InvalidRequest)
    assert exc.status == 400 and exc.param == PARAM, exc
    for fragment in fragments:
        assert fragment in exc.message, exc.message
    return exc


def refused_url(source: str, policy: ImagePolicy = LOCAL, *fragments: str) -> ImageRejected:
    return refused(lambda: load_image(source, policy, param=PARAM), *fragments)


@pytest.fixture
def no_fetch(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail if any HTTP request is sent; the list records attempts."""
    sent: list[str] = []

    async def send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> Any:
        sent.append(str(request.url))
        raise AssertionError(f"a request was sent to {request.url}")

    monkeypatch.setattr(httpx.AsyncClient, "send", send)
    return sent


# -- data: URLs, base64, bytes -------------------------------------------------------------


def test_data_url_png_loads_as_rgb() -> None:
    img = load(data_url(png(40, 20)))
    assert img.mode == "RGB" and img.size == (40, 20)
    assert img.getpixel((0, 0)) == (200, 30, 30)


def test_data_url_large_image_is_downscaled_to_max_side() -> None:
    img = load(data_url(png(2500, 100)), ImagePolicy())
    assert img.size == (2048, 82)
    img = load(data_url(png(100, 300)), ImagePolicy(max_side=64))
    assert img.size == (21, 64)


def test_data_url_tolerates_wrapping_missing_padding_and_urlsafe_alphabet() -> None:
    raw = png(7, 5)
    b64 = base64.b64encode(raw).decode()
    wrapped = "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))
    assert load(f"data:image/png;base64,{wrapped}").size == (7, 5)
    assert load(f"DATA:image/PNG;BASE64,{b64.rstrip('=')}").size == (7, 5)
    urlsafe = base64.urlsafe_b64encode(raw).decode()
    assert load(f"data:image/png;base64,{urlsafe}").size == (7, 5)


def test_data_url_percent_encoded_payload() -> None:
    from urllib.parse import quote_from_bytes

    assert load(f"data:image/png,{quote_from_bytes(png(3, 2))}").size == (3, 2)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("data:text/plain;base64,aGVsbG8=", "not an image"),
        ("data:;base64,aGVsbG8=", "not an image"),
        ("data:image/png;base64", "no comma"),
        ("data:image/png;base64,iVBOR", "not valid base64"),  # truncated (Anthropic test)
        ("data:image/png;base64,!!!!", "not valid base64"),
        ("data:image/png;base64,aGVsbG8gd29ybGQ=", "could not be decoded"),
    ],
)
def test_bad_data_urls_are_400(source: str, fragment: str) -> None:
    refused_url(source, LOCAL, fragment)


def test_data_url_size_is_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decode(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("decoded an oversized payload")

    monkeypatch.setattr(base64, "b64decode", no_decode)
    policy = ImagePolicy(max_bytes=1000)
    refused_url("data:image/png;base64," + "A" * 1400, policy, "larger than 1000 bytes")


def test_data_url_exactly_at_cap_is_decoded_then_checked() -> None:
    raw = png(30, 30)
    assert load(data_url(raw), ImagePolicy(max_bytes=len(raw))).size == (30, 30)
    refused_url(data_url(raw), ImagePolicy(max_bytes=len(raw) - 1), "larger than")


def test_load_image_bytes_and_base64() -> None:
    raw = png(9, 4)
    img = asyncio.run(load_image_bytes(raw, "image/png", LOCAL, param=PARAM))
    assert img.size == (9, 4) and img.mode == "RGB"
    img = asyncio.run(load_image_bytes(raw, None, LOCAL, param=PARAM))  # sniffed
    assert img.size == (9, 4)
    b64 = base64.b64encode(raw).decode()
    assert asyncio.run(load_image_base64(b64, "image/png", LOCAL, param=PARAM)).size == (9, 4)
    refused(lambda: load_image_bytes(raw, "text/plain", LOCAL, param=PARAM), "not an image")
    refused(
        lambda: load_image_bytes(raw, None, ImagePolicy(max_bytes=10), param=PARAM),
        "larger than 10 bytes",
    )
    refused(lambda: load_image_base64("%%%", "image/png", LOCAL, param=PARAM), "base64")


def test_error_shape_is_invalid_request_with_param() -> None:
    exc = refused_url("file:///etc/passwd")
    body = exc.openai_body()["error"]
    assert body["type"] == "invalid_request_error"
    assert body["code"] == "invalid_image" and body["param"] == PARAM
    assert exc.anthropic_body()["error"]["type"] == "invalid_request_error"


# -- decoding ------------------------------------------------------------------------------


def test_alpha_is_flattened_onto_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((1, 1), (0, 0, 255, 255))
    img = load(data_url(encode(rgba)))
    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == (255, 255, 255) and img.getpixel((1, 1)) == (0, 0, 255)
    la = Image.new("LA", (3, 3), (10, 255))
    assert load(data_url(encode(la))).getpixel((0, 0)) == (10, 10, 10)


def test_palette_cmyk_and_16_bit_images_become_rgb() -> None:
    gif = Image.new("P", (5, 5), 3)
    gif.putpalette([0, 0, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90] + [0] * 756)
    img = load(data_url(encode(gif, "GIF"), "image/gif"))
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (70, 80, 90)

    cmyk = Image.new("CMYK", (8, 8), (0, 0, 0, 0))  # no ink: white
    img = load(data_url(encode(cmyk, "JPEG"), "image/jpeg"))
    assert img.mode == "RGB" and min(img.getpixel((4, 4))) > 240

    sixteen = Image.fromarray(np.full((2, 2), 32768, dtype=np.uint16))
    img = load(data_url(encode(sixteen)))
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (128, 128, 128)  # scaled, not clipped


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    raw = encode(Image.new("RGB", (40, 20), (0, 128, 0)), "JPEG", exif=exif.tobytes())
    assert load(data_url(raw, "image/jpeg")).size == (20, 40)


def test_big_jpeg_is_downscaled() -> None:
    raw = encode(Image.new("RGB", (1600, 800), (1, 2, 3)), "JPEG")
    img = load(data_url(raw, "image/jpeg"), ImagePolicy(max_side=100))
    assert img.size == (100, 50) and img.mode == "RGB"


def test_pixel_bomb_is_refused_before_decoding() -> None:
    # A real 2000x2000 image under a small pixel cap.
    refused_url(
        data_url(encode(Image.new("L", (2000, 2000)))),
        ImagePolicy(max_pixels=1_000_000),
        "2000x2000",
        "at most 1000000 pixels",
    )
    # Headers claiming 8000x8000 (over our default cap) and 100000x100000 (over Pillow's own).
    refused_url(data_url(png_declaring(8000, 8000)), ImagePolicy(), "8000x8000")
    refused_url(data_url(png_declaring(100_000, 100_000)), ImagePolicy(), "too many pixels")


def test_formats_outside_the_allow_list_are_refused() -> None:
    # Pillow could decode PPM, but request data only reaches the common web formats.
    ppm = encode(Image.new("RGB", (4, 4)), "PPM")
    refused_url(data_url(ppm, "image/x-portable-pixmap"), LOCAL, "could not be decoded")
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'
    refused_url(data_url(svg, "image/svg+xml"), LOCAL, "could not be decoded")


# -- fetching from an allowed host ---------------------------------------------------------


def test_http_png_loads_from_an_allowed_host(server: ImageServer) -> None:
    img = load(f"{server.base}/ok.png")
    assert img.mode == "RGB" and img.size == (40, 20)
    assert load(f"{server.base}/ok-params.png").size == (40, 20)
    assert load(
        f"{server.base}/big.png", ImagePolicy(allow_hosts=("127.0.0.0/8",), max_side=60)
    ).size == (60, 20)
    assert server.log[-1] == ("/big.png", f"127.0.0.1:{server.port}")


def test_redirects_to_allowed_paths_are_followed(server: ImageServer) -> None:
    before = server.count()
    assert load(f"{server.base}/redirect-2").size == (40, 20)
    assert [p for p, _ in server.log[before:]] == ["/redirect-2", "/redirect", "/ok.png"]
    refused_url(
        f"{server.base}/redirect-2",
        ImagePolicy(allow_hosts=("127.0.0.1",), max_redirects=1),
        "redirected more than 1 times",
    )


def test_redirect_to_a_name_resolving_to_an_allowed_ip_is_followed(server: ImageServer) -> None:
    FAKE_DNS["cdn.example"] = [["127.0.0.1"]]
    before = server.count()
    assert load(f"{server.base}/to-cdn").size == (40, 20)  # allowed by IP, not by name
    assert server.log[before:] == [
        ("/to-cdn", f"127.0.0.1:{server.port}"),
        ("/ok.png", f"cdn.example:{server.port}"),
    ]


def test_redirect_loop_is_cut(server: ImageServer) -> None:
    before = server.count()
    refused_url(f"{server.base}/loop", LOCAL, "redirected more than 3 times")
    assert server.count() - before == 4  # the first request and 3 redirects


@pytest.mark.parametrize(
    ("path", "fragments"),
    [
        ("/to-ipv6", ("redirect target host ::1 is a loopback address", "--image-allow-hosts")),
        (
            "/to-internal",
            ("redirect target host internal.example resolves to 10.0.0.5, a private",),
        ),
        ("/to-metadata", ("169.254.169.254 is a cloud metadata address",)),
        ("/to-file", ("redirect target scheme file: is not allowed",)),
        ("/to-data", ("gave an invalid URL or redirect",)),  # httpx cannot parse data: URLs
    ],
)
def test_redirect_hops_are_checked(
    server: ImageServer, path: str, fragments: tuple[str, ...]
) -> None:
    FAKE_DNS["internal.example"] = [["10.0.0.5"]]
    before = server.count()
    refused_url(f"{server.base}{path}", LOCAL, *fragments)
    assert [p for p, _ in server.log[before:]] == [path]  # nothing after the refused hop


@pytest.mark.parametrize(
    ("path", "policy", "fragments"),
    [
        ("/page.html", LOCAL, ("not an image", "text/html")),
        ("/no-type", LOCAL, ("not an image", "missing")),
        ("/corrupt.png", LOCAL, ("could not be decoded",)),
        ("/bomb.png", ImagePolicy(allow_hosts=("127.0.0.1",)), ("8000x8000",)),
        (
            "/big.png",
            ImagePolicy(allow_hosts=("127.0.0.1",), max_bytes=100),
            ("larger than 100 bytes",),
        ),
        (
            "/stream",
            ImagePolicy(allow_hosts=("127.0.0.1",), max_bytes=100_000),
            ("larger than 100000 bytes",),
        ),
        ("/gzip.png", LOCAL, ("Content-Encoding: gzip",)),
        ("/missing.png", LOCAL, ("HTTP 404",)),
    ],
)
def test_bad_responses_are_400(
    server: ImageServer, path: str, policy: ImagePolicy, fragments: tuple[str, ...]
) -> None:
    refused_url(f"{server.base}{path}", policy, *fragments)


def test_slow_responses_time_out(server: ImageServer) -> None:
    policy = ImagePolicy(allow_hosts=("127.0.0.1",), timeout_s=0.5)
    for path in ("/slow.png", "/drip.png"):  # no response at all; a body trickling in
        start = time.monotonic()
        refused_url(f"{server.base}{path}", policy, "timed out")
        assert time.monotonic() - start < 1.5


def test_allowed_host_name_connects_to_the_vetted_ip_with_the_real_host_header(
    server: ImageServer,
) -> None:
    FAKE_DNS["images.internal"] = [["127.0.0.1"]]
    policy = ImagePolicy(allow_hosts=("Images.Internal",))
    img = load(f"http://images.internal:{server.port}/ok.png", policy)
    assert img.size == (40, 20)
    assert server.log[-1] == ("/ok.png", f"images.internal:{server.port}")


def test_dns_is_asked_once_per_hop_so_rebinding_cannot_redirect_the_connection(
    server: ImageServer,
) -> None:
    # First answer loopback (allowed here by IP), every later answer the metadata address:
    # a second lookup by anyone would send the request there.
    FAKE_DNS["rebind.example"] = [["127.0.0.1"], ["169.254.169.254"]]
    img = load(f"http://rebind.example:{server.port}/ok.png")
    assert img.size == (40, 20)
    assert RESOLVED.count("rebind.example") == 1
    assert server.log[-1] == ("/ok.png", f"rebind.example:{server.port}")


# -- the SSRF battery (default policy: nothing private is allowed) -------------------------


def test_ssrf_battery_is_refused_without_any_connection(
    server: ImageServer, no_fetch: list[str]
) -> None:
    FAKE_DNS["rebind.example"] = [["127.0.0.1"]]
    FAKE_DNS["dual.example"] = [["2606:4700::1111", "::ffff:10.1.2.3"]]  # one bad address is enough
    port = server.port
    cases = {
        f"http://127.0.0.1:{port}/ok.png": "127.0.0.1 is a loopback address",
        "http://169.254.169.254/latest/meta-data/": "is a cloud metadata address",
        "http://10.0.0.1/x.png": "10.0.0.1 is a private address",
        f"http://[::1]:{port}/ok.png": "::1 is a loopback address",
        f"http://localhost:{port}/ok.png": "localhost resolves to",  # 127.0.0.1 and/or ::1
        f"http://rebind.example:{port}/ok.png": "rebind.example resolves to 127.0.0.1",
        "http://dual.example/x.png": "a private address (as 10.1.2.3)",
        f"http://2130706433:{port}/ok.png": "resolves to 127.0.0.1, a loopback address",
        f"http://0x7f.1:{port}/ok.png": "resolves to 127.0.0.1",
        f"http://[::ffff:127.0.0.1]:{port}/ok.png": "a loopback address (as 127.0.0.1)",
        "http://[::ffff:169.254.169.254]/": "a cloud metadata address",
        "http://[2002:7f00:1::]/": "a loopback address (as 127.0.0.1)",  # 6to4
        "http://[fd00:ec2::254]/latest/meta-data/": "a cloud metadata address",
        "http://100.100.100.200/latest/meta-data/": "a cloud metadata address",
        "http://100.64.0.1/": "a shared (CGNAT) address",
        "http://0.0.0.0/": "an unspecified address",
        "http://[::]/": "an unspecified address",
        "http://224.0.0.1/": "a multicast address",
        "http://[fe80::1]/": "a link-local address",
        "http://192.168.1.1/": "a private address",
        "http://172.16.0.1/": "a private address",
        "http://240.0.0.1/": "address",
        "file:///etc/passwd": "scheme file: is not allowed",
        "ftp://example.com/x.png": "scheme ftp: is not allowed",
        "gopher://example.com/": "scheme gopher: is not allowed",
        "ws://example.com/": "scheme ws: is not allowed",
        "/relative/path.png": "scheme (none): is not allowed",
        "http:///x.png": "has no host",
        "http://user:pw@example.com/x.png": "credentials",
        "http://0177.0.0.1/": "invalid image URL",
    }
    before = server.count()
    for source, fragment in cases.items():
        exc = refused_url(source, ImagePolicy(), fragment)
        if "address" in fragment and "scheme" not in fragment:
            assert "--image-allow-hosts" in exc.message
    assert server.count() == before
    assert no_fetch == []
    assert "example.com" not in RESOLVED  # refused schemes are never resolved


def test_https_only_policy_refuses_plain_http(server: ImageServer, no_fetch: list[str]) -> None:
    policy = ImagePolicy(allow_hosts=("127.0.0.1",), allow_http=False)
    refused_url(
        f"{server.base}/ok.png", policy, "scheme http: is not allowed", "expected data:, https:"
    )


def test_allow_list_is_exact_per_address(server: ImageServer, no_fetch: list[str]) -> None:
    port = server.port
    # A listed CIDR covers only its addresses; a listed name only that name.
    refused_url(f"http://[::1]:{port}/ok.png", ImagePolicy(allow_hosts=("127.0.0.0/8",)), "::1")
    FAKE_DNS["img.example"] = [["127.0.0.1"]]
    refused_url(
        f"http://img.example:{port}/",
        ImagePolicy(allow_hosts=("other.example", "10.0.0.0/8")),
        "loopback",
    )
    refused_url(
        f"http://sub.img.example:{port}/",
        ImagePolicy(allow_hosts=("img.example",)),
        "could not be resolved",
    )
    assert no_fetch == []


def test_unresolvable_host_is_400(no_fetch: list[str]) -> None:
    refused_url("http://does-not-exist.invalid/x.png", ImagePolicy(), "could not be resolved")


# -- https: TLS checks the real host name while connecting to the vetted IP ----------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ImageServer, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=img.test",
            "-addext",
            "subjectAltName=DNS:img.test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    stop = threading.Event()
    srv, thread, log = _serve(dict(ROUTES), stop, context)
    port = srv.server_address[1]
    yield ImageServer(f"https://img.test:{port}", port, log), cert
    stop.set()
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def test_https_verifies_the_certificate_against_the_url_host_name(
    tls_server: tuple[ImageServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert = tls_server
    monkeypatch.setattr(images, "_ssl_context", lambda: ssl.create_default_context(cafile=cert))
    FAKE_DNS["img.test"] = [["127.0.0.1"]]
    FAKE_DNS["wrong.test"] = [["127.0.0.1"]]
    # The certificate names img.test only: connecting to 127.0.0.1 works because SNI and
    # the host name check use img.test ...
    img = load(f"https://img.test:{server.port}/ok.png", ImagePolicy(allow_hosts=("img.test",)))
    assert img.size == (40, 20)
    assert server.log[-1] == ("/ok.png", f"img.test:{server.port}")
    # ... and a name the certificate does not cover is refused, as is the bare IP.
    refused_url(
        f"https://wrong.test:{server.port}/ok.png",
        ImagePolicy(allow_hosts=("wrong.test",)),
        "could not connect",
        "CERTIFICATE_VERIFY_FAILED",
    )
    refused_url(f"https://127.0.0.1:{server.port}/ok.png", LOCAL, "CERTIFICATE_VERIFY_FAILED")


def test_https_with_the_default_ca_bundle_refuses_a_self_signed_server(
    tls_server: tuple[ImageServer, Path],
) -> None:
    server, _ = tls_server
    FAKE_DNS["img.test"] = [["127.0.0.1"]]
    refused_url(
        f"https://img.test:{server.port}/ok.png",
        ImagePolicy(allow_hosts=("img.test",)),
        "CERTIFICATE_VERIFY_FAILED",
    )
