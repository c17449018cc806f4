import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from studio.errors import InvalidInput, TooLarge
from studio.fetch import fetch_url


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/img")
            self.end_headers()
            return
        body = b"x" * (5000 if self.path == "/big" else 10)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def base():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetches_and_follows_redirects_when_private_allowed(base):
    assert fetch_url(base + "/img", max_bytes=100, allow_private=True) == b"x" * 10
    assert fetch_url(base + "/redirect", max_bytes=100, allow_private=True) == b"x" * 10


def test_size_limit(base):
    with pytest.raises(TooLarge):
        fetch_url(base + "/big", max_bytes=1000, allow_private=True)


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.com/a.jpg", "http://127.0.0.1/a.jpg", "http://[::1]/a", "http://10.1.2.3/a"],
)
def test_refuses_non_http_and_private_addresses(url):
    with pytest.raises(InvalidInput) as error:
        fetch_url(url, max_bytes=100)
    assert error.value.field == "image_urls"


def test_loopback_refused_by_default(base):
    with pytest.raises(InvalidInput, match="private or loopback"):
        fetch_url(base + "/img", max_bytes=100)
