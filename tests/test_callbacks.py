"""Callbacks: a private or loopback callback URL is refused when a tune or prompt is created
(422 naming the field); when one is sent, its host is resolved once and the POST goes to the
address that was checked (TLS still verified against the host name); and each callback has one
deadline as a whole, so an endpoint that drips its answer is cut off. Name resolution is
simulated with a stub resolver the sender takes; all traffic stays on loopback."""

import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from api_helpers import live_studio, photo_files

from studio.errors import InvalidInput
from studio.jobs import CallbackSender, check_callback_url


class _Recorder(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.server.received.append((self.path, self.headers.get("Host"), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def _serve(tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def endpoint():
    server = _serve()
    yield server
    server.shutdown()
    server.server_close()


class _Resolver:
    """A stub name resolver: `answers` maps a host to its addresses; every call is recorded."""

    def __init__(self, answers: dict[str, list[str]]):
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.answers[host])


def test_private_and_loopback_callbacks_are_refused_at_create_naming_the_field(tmp_path, demo_model_dir):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, allow_private_urls=False) as (url, _):
        cases = [
            ({"tune[callback]": "http://127.0.0.1/hook"}, "callback"),
            ({"tune[prompts_callback]": "http://localhost:8080/all"}, "prompts_callback"),
            (
                {
                    "tune[prompts_attributes][][text]": "ohwx man",
                    "tune[prompts_attributes][][callback]": "http://[::1]/",
                },
                "prompts_attributes.callback",
            ),
            ({"tune[callback]": "https://10.1.2.3/hook"}, "callback"),
        ]
        for fields, field in cases:
            form = {"tune[title]": f"T {field}", "tune[name]": "man", "tune[branch]": "fast", **fields}
            response = httpx.post(f"{url}/tunes", data=form, files=photo_files(("ross",)), timeout=60)
            assert response.status_code == 422, response.text
            assert response.json()["field"] == field and "private or loopback" in response.json()["error"]
        assert httpx.get(f"{url}/tunes").json() == []  # nothing was stored

        prompt = {"prompt[text]": "a man", "prompt[callback]": "http://127.0.0.1:9/hook"}
        response = httpx.post(f"{url}/tunes/1/prompts", data=prompt, timeout=30)
        assert response.status_code == 422 and response.json()["field"] == "callback"
        assert httpx.get(f"{url}/tunes/1/prompts").json() == []


def test_a_name_that_resolves_to_a_private_address_is_refused_at_create_unless_allowed():
    resolver = _Resolver({"hooks.example": ["93.184.215.14", "192.168.1.20"]})
    with pytest.raises(InvalidInput) as error:
        check_callback_url("https://hooks.example/h", "prompts_callback", resolver=resolver)
    assert error.value.field == "prompts_callback" and "192.168.1.20" in error.value.message
    url = "https://hooks.example/h?x=1"
    assert check_callback_url(url, resolver=resolver, allow_private=True) == url
    # A name that does not resolve yet is checked again when the callback is sent.
    assert check_callback_url("https://later.example/h", resolver=resolver) == "https://later.example/h"


def test_a_name_resolving_to_a_private_address_when_sent_is_not_connected_to(endpoint):
    # Public when the callback was accepted, loopback now (DNS rebinding): the sender resolves
    # when it sends, sees the loopback address and does not connect.
    resolver = _Resolver({"hooks.example": ["127.0.0.1"]})
    sender = CallbackSender(allow_private=False, timeout=5, resolver=resolver)
    url = f"http://hooks.example:{endpoint.server_port}/hook"
    assert sender.send(url, {"a": 1}).result(10) is False
    sender.close()
    assert resolver.calls == ["hooks.example"]
    assert endpoint.received == []


def test_the_post_goes_to_the_address_that_was_checked_with_the_name_as_host(endpoint):
    # The system resolver knows no hooks.example: the only way to reach the endpoint is the
    # address the sender's own (single) resolution gave.
    resolver = _Resolver({"hooks.example": ["127.0.0.1"]})
    sender = CallbackSender(allow_private=True, timeout=5, resolver=resolver)
    url = f"http://hooks.example:{endpoint.server_port}/hook?user_id=7"
    assert sender.send(url, {"tune": {"id": 3}}).result(10) is True
    sender.close()
    assert resolver.calls == ["hooks.example"]
    assert endpoint.received == [("/hook?user_id=7", f"hooks.example:{endpoint.server_port}", {"tune": {"id": 3}})]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_callbacks_verify_the_certificate_against_the_host_name(tmp_path, monkeypatch):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=hooks.example",
         "-addext", "subjectAltName=DNS:hooks.example", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = _serve(tls)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust this certificate, and only it
    try:
        resolver = _Resolver({"hooks.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
        sender = CallbackSender(allow_private=True, timeout=5, resolver=resolver)
        port = server.server_address[1]
        assert sender.send(f"https://hooks.example:{port}/ok", {"n": 1}).result(10) is True
        # Same address, another name: the certificate does not match it, so nothing is posted.
        assert sender.send(f"https://other.example:{port}/wrong", {"n": 2}).result(10) is False
        sender.close()
        assert [path for path, _, _ in server.received] == ["/ok"]
    finally:
        server.shutdown()
        server.server_close()


class _Dripper:
    """An endpoint that reads the request, then answers one byte every `every` seconds."""

    def __init__(self, every: float = 0.2, limit: float = 30.0):
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self.every, self.limit = every, limit
        self.gave_up = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        connection, _ = self._server.accept()
        with connection:
            connection.recv(65536)
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + b"X-Slow: " + b"x" * 10_000
            started = time.monotonic()
            for byte in answer:
                if time.monotonic() - started > self.limit:
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    self.gave_up.set()  # the client closed the connection
                    return
                time.sleep(self.every)

    def close(self) -> None:
        self._server.close()


def test_an_endpoint_that_drips_its_answer_is_cut_off_at_the_deadline():
    dripper = _Dripper(every=0.2)
    sender = CallbackSender(allow_private=True, timeout=1.5)
    try:
        started = time.monotonic()
        # Each byte comes well within any per-read timeout; only a deadline for the whole
        # callback ends it.
        assert sender.send(f"{dripper.url}/hook", {"a": 1}).result(timeout=20) is False
        took = time.monotonic() - started
        assert 1.0 < took < 3.5
        assert dripper.gave_up.wait(5)
    finally:
        sender.close()
        dripper.close()
