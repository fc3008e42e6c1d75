"""Load request images safely: `data:` URLs, base64 blocks and http(s) URLs -> RGB PIL images.

Image URLs come from API clients, so fetching them is a server-side request forgery (SSRF)
risk: every URL (and every redirect hop) is checked before any connection is opened.

- Schemes: `data:` and `https:` always, `http:` when the policy allows it; nothing else.
- The host is resolved once (`loop.getaddrinfo`); if any address is private, loopback,
  link-local, multicast, reserved, unspecified, shared (CGNAT) or a cloud metadata address
  (IPv4 embedded in IPv6 included), the URL is refused unless its host name or the address
  is listed in `ImagePolicy.allow_hosts`.
- The connection goes to the vetted address itself (the URL's host is swapped for the IP,
  the `Host` header and TLS SNI/certificate check keep the real name), so a second DNS
  answer cannot redirect it (DNS rebinding).
- Redirects are followed by hand, at most `max_redirects`, each hop checked as above.
- The whole fetch is bounded by `timeout_s`; bodies are streamed and cut at `max_bytes`.
- Decoding runs in a worker thread, accepts only common raster formats, refuses images
  over `max_pixels` before decoding them, and turns any decoder failure into a 400.

Every refusal is an `ImageRejected` (a 400 `InvalidRequest`) naming the request field.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import io
import ipaddress
import logging
import math
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import httpx
from PIL import Image, ImageOps

from mlx_manager.errors import InvalidRequest

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Raster formats a vision model may be sent. Restricting Pillow to these keeps its exotic
# decoders (EPS runs Ghostscript, among others) out of reach of request data.
_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Cloud metadata endpoints, named in errors. Most are also link-local/private/CGNAT, so the
# generic checks refuse them as well.
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")  # not "private" to Python, not global either
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

_ALLOW_HINT = (
    "private, loopback, link-local and metadata addresses are refused unless allowed with "
    "--image-allow-hosts"
)


@dataclass(frozen=True, slots=True)
class ImagePolicy:
    timeout_s: float = 10.0  # whole fetch (DNS, connect, redirects, body), per URL
    max_bytes: int = 20 * 1024 * 1024  # encoded image size cap (data: URLs and http bodies)
    max_pixels: int = 40_000_000  # decoded width*height cap (decompression-bomb guard)
    max_side: int = 2048  # larger images are downscaled (aspect kept) to this long side
    max_redirects: int = 3
    # Hosts or CIDRs ("127.0.0.1", "10.0.0.0/8", "localhost", "::1") allowed even though
    # their addresses are private/loopback. A host name matches exactly (case-insensitive).
    allow_hosts: tuple[str, ...] = ()
    allow_http: bool = True  # plain http allowed (https always is)


class ImageRejected(InvalidRequest):
    """An image the server will not fetch or cannot use (400)."""

    default_code = "invalid_image"


# -- public API ---------------------------------------------------------------------------


async def load_image(source: str, policy: ImagePolicy, *, param: str) -> Image.Image:
    """Load a `data:` URL or an http(s) URL as an RGB image downscaled to `policy.max_side`.

    `param` is the request field to name in errors (e.g. "messages[0].content[1].image_url").
    """
    source = source.strip()
    if source[:5].lower() == "data:":
        data = _parse_data_url(source, policy, param)
    else:
        data = await _fetch(source, policy, param)
    return await asyncio.to_thread(_decode, data, policy, param)


async def load_image_bytes(
    data: bytes, media_type: str | None, policy: ImagePolicy, *, param: str
) -> Image.Image:
    """Load already-decoded image bytes (e.g. an Anthropic base64 block the caller decoded).

    `media_type`, when given, must be image/*; None leaves the format to content sniffing.
    For a base64 string use `load_image_base64`, which checks the size before decoding.
    """
    if media_type is not None:
        _check_media_type(media_type, "image", param)
    if len(data) > policy.max_bytes:
        raise _too_large(policy, param)
    return await asyncio.to_thread(_decode, data, policy, param)


async def load_image_base64(
    data: str, media_type: str | None, policy: ImagePolicy, *, param: str
) -> Image.Image:
    """Load a base64 image (Anthropic `{"type": "base64"}` source); size checked first."""
    if media_type is not None:
        _check_media_type(media_type, "image", param)
    return await load_image_bytes(_b64decode(data, policy, param), None, policy, param=param)


# -- data: URLs and base64 ----------------------------------------------------------------


def _parse_data_url(source: str, policy: ImagePolicy, param: str) -> bytes:
    header, comma, payload = source.partition(",")
    if not comma:
        raise ImageRejected("malformed data: URL (no comma before the data)", param=param)
    fields = [f.strip() for f in header[5:].split(";")]
    media_type = fields[0].lower()
    _check_media_type(media_type, "data: URL", param)
    if any(f.lower() == "base64" for f in fields[1:]):
        return _b64decode(payload, policy, param)
    # Percent-encoded data: never shorter than what it decodes to, so this bound is safe.
    if len(payload) > 3 * policy.max_bytes:
        raise _too_large(policy, param)
    data = unquote_to_bytes(payload)
    if len(data) > policy.max_bytes:
        raise _too_large(policy, param)
    return data


def _b64decode(payload: str, policy: ImagePolicy, param: str) -> bytes:
    # Size check on the encoded text, before any decoding work or allocation. Whitespace
    # (MIME line wrapping) is tolerated, but not twice the budget of it.
    limit = 4 * math.ceil(policy.max_bytes / 3)
    if len(payload) > 2 * limit:
        raise _too_large(policy, param)
    compact = "".join(payload.split())
    if len(compact) > limit:
        raise _too_large(policy, param)
    if "%" in compact:  # base64 inside a URL is sometimes percent-encoded
        compact = unquote_to_bytes(compact).decode("ascii", "replace")
    if "-" in compact or "_" in compact:  # URL-safe alphabet
        compact = compact.translate(str.maketrans("-_", "+/"))
    compact += "=" * (-len(compact) % 4)  # clients often drop the padding
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageRejected(f"image data is not valid base64 ({exc})", param=param) from None
    if len(data) > policy.max_bytes:
        raise _too_large(policy, param)
    return data


# -- http(s) fetching ---------------------------------------------------------------------


async def _fetch(source: str, policy: ImagePolicy, param: str) -> bytes:
    try:
        url = httpx.URL(source)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ImageRejected(f"invalid image URL: {exc}", param=param) from None
    try:
        # One deadline for everything (DNS, connects, redirects, slow-dripped bodies):
        # httpx's own timeouts are per operation only.
        async with asyncio.timeout(policy.timeout_s):
            for hop in range(policy.max_redirects + 1):
                what = "image URL" if hop == 0 else "image URL redirect target"
                _check_url(url, policy, what, param)
                addresses = await _vetted_addresses(url, policy, what, param)
                result = await _get(url, addresses, policy, param)
                if isinstance(result, bytes):
                    return result
                url = result
    except TimeoutError:
        raise ImageRejected(
            f"image URL timed out (no complete response within {policy.timeout_s:g} s)",
            param=param,
        ) from None
    raise ImageRejected(f"image URL redirected more than {policy.max_redirects} times", param=param)


def _check_url(url: httpx.URL, policy: ImagePolicy, what: str, param: str) -> None:
    allowed = ("https", "http") if policy.allow_http else ("https",)
    if url.scheme not in allowed:
        expected = " or ".join(f"{s}:" for s in allowed)
        if what == "image URL":  # a redirect may not lead to a data: URL
            expected = "data:, " + expected
        raise ImageRejected(
            f"{what} scheme {url.scheme or '(none)'}: is not allowed; expected {expected}",
            param=param,
        )
    if not url.raw_host:
        raise ImageRejected(f"{what} has no host", param=param)
    if url.userinfo:
        raise ImageRejected(f"{what} must not contain credentials", param=param)


async def _vetted_addresses(
    url: httpx.URL, policy: ImagePolicy, what: str, param: str
) -> list[IPAddress]:
    """The host's addresses, all of them checked; the fetch connects only to these."""
    host = url.raw_host.decode("ascii")
    try:
        addresses = [ipaddress.ip_address(host)]  # a literal IP: nothing to resolve
        literal = True
    except ValueError:
        addresses = await _resolve(host, url.port or _DEFAULT_PORTS[url.scheme], what, param)
        literal = False
    allowed_names, allowed_nets = _allow_list(policy.allow_hosts)
    if _host_key(url.host) in allowed_names or _host_key(host) in allowed_names:
        return addresses
    for address in addresses:
        reason = _blocked_reason(address)
        if reason is None or _in_networks(address, allowed_nets):
            continue
        found = f"is {reason}" if literal else f"resolves to {address}, {reason}"
        raise ImageRejected(f"{what} host {url.host} {found}; {_ALLOW_HINT}", param=param)
    return addresses


async def _resolve(host: str, port: int, what: str, param: str) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        raise ImageRejected(
            f"{what} host {host} could not be resolved ({exc})", param=param
        ) from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        try:
            address = ipaddress.ip_address(sockaddr[0])
        except ValueError:
            continue
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ImageRejected(f"{what} host {host} has no usable address", param=param)
    return addresses


def _blocked_reason(address: IPAddress) -> str | None:
    """Why `address` must not be fetched from, or None for a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        # IPv4 embedded in IPv6 reaches the IPv4 host: judge that one.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            inner = _blocked_reason(embedded)
            if inner is not None:
                return f"{inner} (as {embedded})"
    if address in _METADATA:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address in _CGNAT:
        return "a shared (CGNAT) address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a public address"
    return None


def _in_networks(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(a.version == n.version and a in n for a in candidates for n in networks)


def _host_key(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


@functools.lru_cache(maxsize=16)
def _allow_list(entries: tuple[str, ...]) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    names: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in entries:
        key = _host_key(entry)
        if not key:
            continue
        try:
            networks.append(ipaddress.ip_network(key, strict=False))
        except ValueError:
            names.add(key)
            with contextlib.suppress(UnicodeError):  # "bücher.de" also matches its IDNA form
                names.add(_host_key(key.encode("idna").decode("ascii")))
    return frozenset(names), tuple(networks)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Built once (loading the CA bundle is slow); certificate and host name checks are on.
    return httpx.create_ssl_context()


async def _get(
    url: httpx.URL, addresses: list[IPAddress], policy: ImagePolicy, param: str
) -> bytes | httpx.URL:
    """One GET to one of the vetted addresses: the body, or the URL a redirect points to."""
    headers = {
        "Host": url.netloc.decode("ascii"),  # the real name (and port), not the IP
        "Accept": "image/*",
        "Accept-Encoding": "identity",  # count the bytes that arrive, no decompression bombs
        "User-Agent": "mlx-manager image fetcher",
    }
    # TLS: SNI and certificate verification against the real host name, not the IP.
    extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
    # A client per hop: no connection, cookie or proxy setting outlives its vetted address.
    async with httpx.AsyncClient(
        verify=_ssl_context(),
        trust_env=False,  # no *_PROXY env: a proxy would connect where it likes
        follow_redirects=False,
        timeout=httpx.Timeout(policy.timeout_s),
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as client:
        response = await _connect(client, url, addresses, headers, extensions, param)
        try:
            return await _read(response, url, policy, param)
        finally:
            await response.aclose()


async def _connect(
    client: httpx.AsyncClient,
    url: httpx.URL,
    addresses: list[IPAddress],
    headers: dict[str, str],
    extensions: dict[str, str],
    param: str,
) -> httpx.Response:
    # Try the vetted addresses in resolver order (an unroutable IPv6 first is common).
    error: Exception | None = None
    for address in addresses:
        try:
            request = client.build_request(
                "GET", url.copy_with(host=str(address)), headers=headers, extensions=extensions
            )
            return await client.send(request, stream=True)
        except httpx.ConnectError as exc:
            error = exc
        except httpx.TimeoutException:
            raise TimeoutError from None  # reported like the overall deadline
        except httpx.InvalidURL as exc:
            # httpx parses a redirect's Location even with follow_redirects=False; one it
            # cannot parse (a data: URL, say) surfaces here.
            raise ImageRejected(
                f"image URL {url.host} gave an invalid URL or redirect: {exc}", param=param
            ) from None
        except httpx.HTTPError as exc:
            raise ImageRejected(
                f"could not fetch image URL from {url.host}: {exc}", param=param
            ) from None
    raise ImageRejected(f"could not connect to image URL host {url.host}: {error}", param=param)


async def _read(
    response: httpx.Response, url: httpx.URL, policy: ImagePolicy, param: str
) -> bytes | httpx.URL:
    status = response.status_code
    if status in _REDIRECTS and "location" in response.headers:
        try:
            # Relative to the URL with the real host name, not the IP we connected to.
            return url.join(response.headers["location"])
        except (httpx.InvalidURL, ValueError) as exc:
            raise ImageRejected(f"image URL redirect is invalid: {exc}", param=param) from None
    if not 200 <= status < 300:
        raise ImageRejected(
            f"image URL returned HTTP {status} {response.reason_phrase}".rstrip(), param=param
        )
    _check_media_type(response.headers.get("content-type"), "image URL response", param)
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ImageRejected(
            f"image URL response is compressed (Content-Encoding: {encoding}); "
            "only uncompressed image bodies are accepted",
            param=param,
        )
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > policy.max_bytes:
        raise _too_large(policy, param)
    body = bytearray()
    try:
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > policy.max_bytes:
                raise _too_large(policy, param)
    except httpx.TimeoutException:
        raise TimeoutError from None
    except httpx.HTTPError as exc:
        raise ImageRejected(f"image URL body could not be read: {exc}", param=param) from None
    return bytes(body)


# -- decoding -----------------------------------------------------------------------------


def _decode(data: bytes, policy: ImagePolicy, param: str) -> Image.Image:
    """Bytes -> RGB image no larger than max_side. CPU work: run it in a thread."""
    try:
        with Image.open(io.BytesIO(data), formats=_FORMATS) as img:
            # open() reads only the header: refuse a pixel bomb before decoding it.
            width, height = img.size
            if width * height > policy.max_pixels:
                raise _too_many_pixels(policy, param, f"{width}x{height} = {width * height} pixels")
            scale = policy.max_side / max(width, height)
            if scale < 1 and img.format == "JPEG":
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still covers the
                # target: much faster and smaller for big photos.
                img.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
            try:
                oriented = ImageOps.exif_transpose(img)
            except Exception:  # broken EXIF should not cost an otherwise good image
                log.debug("ignoring unusable EXIF orientation", exc_info=True)
                oriented = img.copy()
            rgb = _to_rgb(oriented)
            rgb.thumbnail((policy.max_side, policy.max_side))
            return rgb
    except ImageRejected:
        raise
    except Image.DecompressionBombError:  # Pillow's own, far higher, limit fired in open()
        raise _too_many_pixels(policy, param, "too many pixels") from None
    except Exception as exc:  # any decoder failure is the image's fault, not a 500
        log.debug("image decode failed", exc_info=True)
        raise ImageRejected(
            f"image could not be decoded ({type(exc).__name__}: {exc}); "
            f"supported formats: {', '.join(_FORMATS)}",
            param=param,
        ) from None


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB" and not img.has_transparency_data:
        return img
    if img.has_transparency_data:  # RGBA, LA, PA, P/RGB with tRNS: flatten onto white
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if img.mode.startswith("I"):  # 16-bit greyscale: scale, don't clip to 255
        img = img.convert("I").point(lambda v: v / 256).convert("L")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV, F


# -- helpers ------------------------------------------------------------------------------


def _check_media_type(media_type: str | None, what: str, param: str) -> None:
    essence = (media_type or "").split(";", 1)[0].strip().lower()
    if not essence.startswith("image/"):
        raise ImageRejected(
            f"{what} is not an image (content type {essence or 'missing'}; expected image/*)",
            param=param,
        )


def _too_large(policy: ImagePolicy, param: str) -> ImageRejected:
    return ImageRejected(f"image is larger than {policy.max_bytes} bytes", param=param)


def _too_many_pixels(policy: ImagePolicy, param: str, size: str) -> ImageRejected:
    return ImageRejected(
        f"image has {size}; at most {policy.max_pixels} pixels (width x height) are accepted",
        param=param,
    )
