"""The upstream clients' transport (httpx requests sent by aiohttp, routing/providers/
upstream.py) on loopback: one kept-alive connection, a request leaves as one write, large
bodies, TLS verified against certifi's CAs or the context given."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from httpx_aiohttp import AiohttpTransport

from mlx_manager.config import ProviderSettings
from mlx_manager.errors import ApiError
from mlx_manager.routing.providers.upstream import HttpUpstream

LARGE_BYTES = 320 * 1024  # several socket writes' worth


class _Server(asyncio.Protocol):
    """HTTP/1.1 enough for one kind of request: reads a request with a Content-Length body,
    records each chunk as it arrived, answers with the body's size."""

    requests: list[list[bytes]]
    connections: list[int]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.connections.append(1)
        self._transport = transport
        self._chunks: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        raw = b"".join(self._chunks)
        head, sep, body = raw.partition(b"\r\n\r\n")
        if not sep:
            return
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        if len(body) < length:
            return
        self.requests.append(self._chunks)
        self._chunks = []
        answer = b'{"size": %d}' % len(body)
        self._transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(answer), answer)
        )


@asynccontextmanager
async def serving(
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[int, list[list[bytes]], list[int]]]:
    requests: list[list[bytes]] = []
    connections: list[int] = []

    def protocol() -> _Server:
        server = _Server()
        server.requests, server.connections = requests, connections
        return server

    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1], requests, connections
    finally:
        server.close()


def upstream(base_url: str) -> HttpUpstream:
    settings = ProviderSettings.model_validate(
        {"name": "p", "kind": "openai_compatible", "base_url": base_url}
    )
    return HttpUpstream(settings, {}, ())


def test_upstream_requests_go_through_aiohttp_on_one_connection_in_one_write() -> None:
    async def main() -> tuple[list[list[bytes]], list[int], object]:
        async with serving() as (port, requests, connections):
            up = upstream(f"http://127.0.0.1:{port}/v1")
            try:
                for _ in range(3):
                    answer = await up.post_json("/chat/completions", {"text": "x" * 1000})
                    assert answer["size"] > 1000
                transport = up.client._transport
            finally:
                await up.aclose()
            return requests, connections, transport

    requests, connections, transport = asyncio.run(main())
    assert isinstance(transport, AiohttpTransport)
    assert len(connections) == 1  # kept alive
    assert [len(chunks) for chunks in requests] == [1, 1, 1]  # head and body together


def test_a_large_body_is_written_whole() -> None:
    async def main() -> int:
        async with serving() as (port, _, _):
            up = upstream(f"http://127.0.0.1:{port}/v1")
            try:
                answer = await up.post_json("/chat/completions", {"text": "y" * LARGE_BYTES})
                return int(answer["size"])
            finally:
                await up.aclose()

    assert asyncio.run(main()) > LARGE_BYTES


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_verified_and_an_unknown_certificate_refused(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def main() -> None:
        async with serving(server_tls) as (port, _, _):
            trusting = AiohttpTransport(verify=ssl.create_default_context(cafile=str(cert)))
            async with httpx.AsyncClient(transport=trusting, trust_env=False) as trusted:
                response = await trusted.post(f"https://localhost:{port}/x", json={"a": 1})
                assert response.status_code == 200 and response.json()["size"] > 0
            # The upstreams' own transport: certifi's CAs, which do not know this one.
            up = upstream(f"https://localhost:{port}/v1")
            try:
                with pytest.raises(ApiError, match="could not be reached"):
                    await up.post_json("/chat/completions", {"a": 1})
            finally:
                await up.aclose()

    asyncio.run(main())
