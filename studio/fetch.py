"""Reaching URLs that clients give (`image_urls` to fetch, callbacks to post to) without
becoming a proxy into the private network.

Only http(s); the host is resolved once and every address it resolves to must be public unless
private addresses are explicitly allowed (`checked_address`); the connection is then made to
that checked address (`pinned_pool`), so a DNS answer cannot change between the check and the
request, while the URL's host name stays the Host header and the TLS server name (certificates
are verified against it). Every connect, read and write ends by one deadline for the whole
exchange, so an endpoint that drips a byte every few seconds is cut off as surely as one that
never answers. Redirects are followed by hand and each hop is checked the same way; a fetched
body is read with a size cap.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

from studio.errors import InvalidInput, TooLarge

MAX_REDIRECTS = 3
#: How the studio introduces itself to the sites it fetches from and calls back.
USER_AGENT = "avatar-studio"

#: `resolver(host, port)`: the addresses a host name resolves to (OSError when it does not).
Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, from the system resolver."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)]


class RefusedAddress(Exception):
    """A host that must not be connected to; `reason` says why. `private` is True when it
    resolves to a private or loopback address, False when it does not resolve at all."""

    def __init__(self, reason: str, *, private: bool):
        super().__init__(reason)
        self.reason = reason
        self.private = private


def default_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def checked_address(host: str, port: int, *, allow_private: bool = False, resolver: Resolver = resolve) -> str:
    """The one address to connect to for `host`: it is resolved once, and unless
    `allow_private` every address it resolves to must be public (a name with one private
    address among public ones is refused: which one a client would use is not ours to pick).
    Raises RefusedAddress."""
    try:
        addresses = list(resolver(host, port))
    except (OSError, UnicodeError):
        addresses = []
    if not addresses:
        raise RefusedAddress(f"host {host} does not resolve", private=False)
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not allow_private and not ip.is_global:
            raise RefusedAddress(f"host {host} is a private or loopback address ({ip})", private=True)
    return addresses[0]


def network_errors() -> tuple[type[BaseException], ...]:
    """What a request through `pinned_pool` raises when the network or the peer fails it."""
    import httpcore

    return (
        httpcore.TimeoutException,
        httpcore.NetworkError,
        httpcore.ProtocolError,
        httpcore.UnsupportedProtocol,
        OSError,
    )


def pinned_pool(address: str, deadline: float, *, verify: bool = True) -> Any:
    """An httpcore connection pool whose every connection goes to `address` (checked by
    `checked_address`) whatever host the request URL names, and whose every connect, read and
    write fails with a timeout once `deadline` (time.monotonic()) has passed. Use it as a
    context manager; request with the URL as the client gave it, so its host name is the Host
    header and the TLS server name."""
    import httpcore
    import httpx

    return httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify),
        network_backend=_pinned_backend(address, deadline),
        max_connections=1,
        retries=0,
    )


def request_url(url: str) -> Any:
    """`url` as httpcore takes it, parsed and encoded (IDNA host, quoted path) as httpx does."""
    import httpcore
    import httpx

    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return httpcore.URL(scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path)


def _left(deadline: float, timeout: float | None, error: type[Exception]) -> float:
    """The time one socket wait may take: what is left before `deadline`, or less."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the deadline for the whole request has passed")
    return left if timeout is None else min(timeout, left)


def _pinned_backend(address: str, deadline: float) -> Any:
    import httpcore

    class DeadlineStream(httpcore.NetworkStream):
        def __init__(self, stream: Any):
            self._stream = stream

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._stream.read(max_bytes, _left(deadline, timeout, httpcore.ReadTimeout))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            # In pieces, so a peer that reads slowly cannot stretch one write past the deadline.
            for start in range(0, len(buffer), 16384):
                self._stream.write(buffer[start : start + 16384], _left(deadline, timeout, httpcore.WriteTimeout))

        def close(self) -> None:
            self._stream.close()

        def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None):
            left = _left(deadline, timeout, httpcore.ConnectTimeout)
            return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, left))

        def get_extra_info(self, info: str) -> Any:
            return self._stream.get_extra_info(info)

    class PinnedBackend(httpcore.NetworkBackend):
        def __init__(self):
            self._backend = httpcore.SyncBackend()

        def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
            left = _left(deadline, timeout, httpcore.ConnectTimeout)
            stream = self._backend.connect_tcp(
                address, port, timeout=left, local_address=local_address, socket_options=socket_options
            )
            return DeadlineStream(stream)

        def connect_unix_socket(self, path, timeout=None, socket_options=None):
            raise httpcore.UnsupportedProtocol("unix sockets are not reachable from client URLs")

        def sleep(self, seconds: float) -> None:
            time.sleep(seconds)

    return PinnedBackend()


def fetch_url(url: str, *, max_bytes: int, timeout: float = 20.0, allow_private: bool = False) -> bytes:
    """Return the body of `url`, within `timeout` seconds in all. Raises InvalidInput naming the
    URL when it is not an allowed http(s) address or cannot be fetched in time, TooLarge when
    the body exceeds `max_bytes`."""
    import httpcore

    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        address = _checked_address(url, allow_private)
        try:
            with (
                pinned_pool(address, deadline) as pool,
                pool.stream("GET", request_url(url), headers={"Accept": "*/*", "User-Agent": USER_AGENT}) as response,
            ):
                location = _header(response.headers, b"location")
                if response.status in (301, 302, 303, 307, 308) and location:
                    url = urljoin(url, location)
                    continue
                if response.status != 200:
                    raise InvalidInput(f"image URL {url} answered HTTP {response.status}", field="image_urls")
                body = bytearray()
                for chunk in response.iter_stream():
                    body += chunk
                    if len(body) > max_bytes:
                        raise TooLarge(f"image URL {url} is larger than {max_bytes // 2**20} MB", field="image_urls")
                return bytes(body)
        except httpcore.TimeoutException:
            raise InvalidInput(f"image URL {url} took longer than {timeout:.0f} s", field="image_urls") from None
        except (*network_errors(), ValueError) as error:
            raise InvalidInput(f"image URL {url} could not be fetched: {error}", field="image_urls") from None
    raise InvalidInput(f"image URL {url} redirects more than {MAX_REDIRECTS} times", field="image_urls")


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _checked_address(url: str, allow_private: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"image URL {url!r} must be an http or https address", field="image_urls")
    try:
        return checked_address(parts.hostname, default_port(url), allow_private=allow_private)
    except RefusedAddress as refused:
        hint = "; set STUDIO_ALLOW_PRIVATE_URLS=1 to allow that" if refused.private else ""
        raise InvalidInput(f"image URL {url}: {refused.reason}{hint}", field="image_urls") from None
