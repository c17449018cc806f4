"""Fetching images from `image_urls` without becoming a proxy into the private network.

Only http(s); the host is resolved once and every address it resolves to must be public unless
private addresses are explicitly allowed; the connection is then made to that checked address
(so a DNS answer cannot change between the check and the request); redirects are followed by
hand and each hop is checked the same way; the body is read with a size cap and a time limit.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urljoin, urlsplit

from studio.errors import InvalidInput, TooLarge

MAX_REDIRECTS = 3


def fetch_url(url: str, *, max_bytes: int, timeout: float = 20.0, allow_private: bool = False) -> bytes:
    """Return the body of `url`. Raises InvalidInput naming the URL when it is not an allowed
    http(s) address or cannot be fetched, TooLarge when the body exceeds `max_bytes`."""
    import httpx

    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        address, host = _checked_address(url, allow_private)
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = parts._replace(netloc=f"{_bracket(address)}:{port}").geturl()
        remaining = max(0.1, deadline - time.monotonic())
        try:
            with (
                httpx.Client(timeout=remaining, verify=True) as client,
                client.stream(
                    "GET",
                    target,
                    headers={"Host": host},
                    extensions={"sni_hostname": host},
                ) as response,
            ):
                if response.is_redirect:
                    url = urljoin(url, response.headers.get("location", ""))
                    continue
                if response.status_code != 200:
                    raise InvalidInput(f"image URL {url} answered HTTP {response.status_code}", field="image_urls")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise TooLarge(f"image URL {url} is larger than {max_bytes // 2**20} MB", field="image_urls")
                    if time.monotonic() > deadline:
                        raise InvalidInput(f"image URL {url} took longer than {timeout:.0f} s", field="image_urls")
                return bytes(body)
        except httpx.HTTPError as error:
            raise InvalidInput(f"image URL {url} could not be fetched: {error}", field="image_urls") from None
    raise InvalidInput(f"image URL {url} redirects more than {MAX_REDIRECTS} times", field="image_urls")


def _checked_address(url: str, allow_private: bool) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"image URL {url!r} must be an http or https address", field="image_urls")
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise InvalidInput(f"image URL {url}: host {host} does not resolve", field="image_urls") from None
    addresses = [info[4][0] for info in infos]
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not allow_private and not ip.is_global:
            raise InvalidInput(
                f"image URL {url} points at a private or loopback address ({ip}); "
                "set STUDIO_ALLOW_PRIVATE_URLS=1 to allow that",
                field="image_urls",
            )
    return addresses[0], host


def _bracket(address: str) -> str:
    return f"[{address}]" if ":" in address else address
