"""The server's edge, through the real server: Host and Origin in open loopback mode, bodies
capped while they are read (RSS measured on a server in its own process), pack files capped,
likes and failed logins throttled, slow clients cut."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from api_helpers import live_studio

from conftest import ROOT, free_port, serve_config
from studio import packs
from studio.api import edge
from studio.config import Settings
from studio.errors import Busy, InvalidInput, TooLarge
from studio.throttle import Throttle

MB = 2**20


@pytest.fixture
def server(tmp_path, demo_model_dir):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False) as (url, studio):
        yield url, studio


def _prompt(studio) -> int:
    tune_id = studio.store.add_tune({"title": "Ann", "name": "woman", "token": "ohwx", "model_type": "lora"})
    return studio.store.add_prompt({"tune_id": tune_id, "text": "ohwx woman"})


# -- open loopback mode: Host and Origin ---------------------------------------------------------


def test_open_loopback_answers_only_loopback_host_names(server):
    url, _ = server
    port = url.rsplit(":", 1)[1]
    for path in ("/tunes", "/", "/config", "/gradio_api/info"):
        rebound = httpx.get(url + path, headers={"Host": f"evil.example:{port}"})
        assert rebound.status_code == 403, (path, rebound.text)
        assert "localhost" in rebound.json()["error"]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost"):
        assert httpx.get(url + "/tunes", headers={"Host": host}).status_code == 200, host


def test_open_loopback_refuses_cross_site_writes_and_passes_its_own_pages(server):
    url, studio = server
    prompt_id = _prompt(studio)
    like = f"{url}/prompts/{prompt_id}/likes"
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost:1"},  # another port is another site
        {"Referer": "http://evil.example/page.html"},
    ):
        refused = httpx.post(like, headers=headers)
        assert refused.status_code == 403, (headers, refused.text)
        assert "own pages" in refused.json()["error"]
    post_prompt = httpx.post(f"{url}/tunes/1/prompts", json={"text": "x"}, headers={"Origin": "http://evil.example"})
    assert post_prompt.status_code == 403
    gradio_event = httpx.post(f"{url}/gradio_api/queue/join", json={}, headers={"Origin": "http://evil.example"})
    assert gradio_event.status_code == 403
    assert httpx.get(f"{url}/prompts/{prompt_id}").json()["likes_count"] == 0
    # The UI's own origin, and clients that send no Origin at all, pass.
    assert httpx.post(like, headers={"Origin": url}).status_code == 201
    assert httpx.post(like, headers={"Referer": f"{url}/?view=gallery"}).status_code == 201
    assert httpx.delete(like).status_code == 200
    # A read from another site is not a write: CORS keeps its answer from that site's page.
    assert httpx.get(f"{url}/tunes", headers={"Origin": "http://evil.example"}).status_code == 200


def test_hosts_are_not_checked_once_a_login_guards_the_studio():
    guarded = edge.Edge(None, SimpleNamespace(settings=Settings(auth=(("ann", "pw"),))))
    assert not guarded.open_loopback
    open_studio = edge.Edge(None, SimpleNamespace(settings=Settings()))
    scope = {"type": "http", "method": "POST", "scheme": "http"}
    assert open_studio.refusal(scope, httpx.Headers({"host": "evil.example"})) is not None
    named = edge.Edge(None, SimpleNamespace(settings=Settings(public_url="https://studio.example")))
    headers = {"host": "studio.example", "origin": "https://studio.example"}
    assert named.refusal(scope, httpx.Headers(headers)) is None


# -- bounded bodies ------------------------------------------------------------------------------


def _chunked(sock: socket.socket, total: int, prefix: bytes) -> None:
    """Send a chunked body of `total` bytes starting with `prefix`; stops when the server hangs up."""
    chunk = b"a" * (256 * 1024)
    try:
        sock.sendall(b"%x\r\n%s\r\n" % (len(prefix), prefix))
        sent = len(prefix)
        while sent < total:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        sock.sendall(b"0\r\n\r\n")
    except OSError:  # the server answered and closed: the rest is not wanted
        pass


def _post_chunked(port: int, path: str, content_type: str, total: int, prefix: bytes) -> tuple[int, bytes]:
    """POST a chunked body of `total` bytes; returns the answer's status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode())
        sender = threading.Thread(target=_chunked, args=(sock, total, prefix), daemon=True)
        sender.start()
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer) < answer.index(b"\r\n\r\n") + 4 + _length(answer):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        sender.join(30)
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def _memory(pid: int, field: str) -> int:
    """A /proc/<pid>/status figure (VmRSS, VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


SERVER = """
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import uvicorn
from app import create_app, server_config
from studio.config import Settings
from studio.core import Studio
studio = Studio.open(Settings(home=Path(sys.argv[2]), port=int(sys.argv[3])))
uvicorn.Server(server_config(create_app(studio), studio.settings)).run()
"""


@pytest.fixture
def server_process(tmp_path, demo_model_dir):
    """The whole app served by `app.server_config` in its own process (so its memory is its own)."""
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
    port = free_port()
    env = {"HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(ROOT), str(home), str(port)], env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/tunes", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail("the studio did not start in its own process")
        yield process.pid, port
    finally:
        process.terminate()
        process.wait(30)


def test_a_40_mb_chunked_json_body_is_cut_at_1_mb_without_the_server_growing(server_process):
    pid, port = server_process
    body = json.dumps({"tune": {"title": "warm-up"}}).encode()
    assert _post_chunked(port, "/tunes", "application/json", len(body), body)[0] == 422  # lazy imports done
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
    before = _memory(pid, "VmRSS")
    status, answer = _post_chunked(port, "/tunes", "application/json", 40 * MB, b'{"tune": {"title": "')
    peak = _memory(pid, "VmHWM")
    assert status == 413, answer
    assert json.loads(answer)["field"] == "body" and "1 MB" in json.loads(answer)["error"]
    assert peak - before < 6 * MB, f"the server grew by {(peak - before) / MB:.1f} MB"
    # A Gradio event body is capped the same way, before Gradio reads it.
    status, answer = _post_chunked(port, "/gradio_api/queue/join", "application/json", 8 * MB, b'{"data": ["')
    assert status == 413 and "2 MB" in json.loads(answer)["error"]


def test_declared_and_streamed_multipart_bodies_over_the_upload_limit_are_refused(tmp_path, demo_model_dir):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, max_upload_mb=1, max_photos=2) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(
                b"POST /tunes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                b"Content-Length: %d\r\n\r\n--x\r\n" % (50 * MB)
            )
            answer = _closed_within(sock, 10)
        assert answer.startswith(b"HTTP/1.1 413") and b"3 MB" in answer, answer
        head = b'--x\r\nContent-Disposition: form-data; name="tune[images][]"; filename="a.png"\r\n\r\n'
        status, answer = _post_chunked(port, "/tunes", "multipart/form-data; boundary=x", 10 * MB, head)
        assert status == 413 and "3 MB" in json.loads(answer)["error"]
        # A prompt: its input image and one reference image per role (five), one upload's worth
        # each (7 MB), within the edge's cap for any body (3 MB here, with max_photos=2).
        status, answer = _post_chunked(port, "/tunes/1/prompts", "multipart/form-data; boundary=x", 10 * MB, head)
        assert status == 413 and "3 MB" in json.loads(answer)["error"]
        # Gradio's own upload route: at most STUDIO_MAX_UPLOAD_MB a file.
        upload = httpx.post(f"{url}/gradio_api/upload", files=[("files", ("big.png", b"0" * (MB + 10), "image/png"))])
        assert upload.status_code == 413


def test_json_is_read_only_under_its_exact_media_type(server):
    url, studio = server
    body = json.dumps({"tune": {"title": "Jsonx", "name": "woman", "image_urls": ["https://example.com/a.jpg"]}})
    for kind in ("application/jsonx", "application/json-patch+json", "text/json"):
        response = httpx.post(f"{url}/tunes", content=body, headers={"Content-Type": kind})
        assert response.status_code == 422 and response.json()["field"] == "title", (kind, response.text)
    assert studio.store.list_tunes() == []


def test_gradio_uploads_are_capped_and_its_cache_is_swept(studio):
    from fastapi import FastAPI

    from app import CACHE_AGE_S, CACHE_SWEEP_S, mount_ui
    from studio.ui import build_ui

    demo = build_ui(studio)
    mount_ui(FastAPI(), demo, studio)
    assert demo.max_file_size == studio.settings.max_upload_mb * MB
    assert demo.delete_cache == (CACHE_SWEEP_S, CACHE_AGE_S)


# -- pack files ------------------------------------------------------------------------------------


def _pack_document(prompts: int = 1, text: str = "portrait of {{token}} {{name}}", **fields) -> dict:
    return {
        "format": packs.FORMAT,
        "version": packs.FORMAT_VERSION,
        "title": "Big",
        "classes": ["woman"],
        "prompts_per_class": {"woman": [{"text": text} for _ in range(prompts)]},
        **fields,
    }


def test_pack_files_are_capped_in_size_prompts_and_text(studio, tmp_path):
    huge = tmp_path / "huge.json"
    with huge.open("wb") as file:  # 80 MB on disk, refused by its size before it is read
        file.truncate(80 * MB)
    with pytest.raises(TooLarge) as error:
        studio.import_pack(huge)
    assert error.value.field == "file" and "MB" in error.value.message
    padded = json.dumps(_pack_document(description="x" * 1000)).encode() + b" " * 80 * MB
    with pytest.raises(TooLarge):
        studio.import_pack(padded)
    with pytest.raises(InvalidInput) as error:
        studio.import_pack(json.dumps(_pack_document(prompts=501)))
    assert error.value.field == "prompts_per_class" and "500" in error.value.message
    with pytest.raises(InvalidInput) as error:
        studio.import_pack(json.dumps(_pack_document(text="{{token}} {{name}} " + "x" * 3000)))
    assert error.value.field == "text" and "2000" in error.value.message
    with pytest.raises(InvalidInput) as error:
        studio.import_pack(json.dumps(_pack_document(description="x" * 3000)))
    assert error.value.field == "description"
    assert all(p["title"] != "Big" for p in studio.list_packs())
    assert studio.import_pack(json.dumps(_pack_document(prompts=500)))["title"] == "Big"


@pytest.mark.parametrize(
    "change",
    [
        {"title": 123},
        {"classes": "woman"},
        {"args": ["steps"]},
        {"cover": 5},
        {"public": {"no": 1}, "slug": ["a"]},
        {"prompts_per_class": {"woman": [{"text": "{{token}} {{name}}", "num_images": "many"}]}},
        {"prompts_per_class": {"woman": [{"text": "{{token}} {{name}}", "image": 7}]}},
        {"prompts_per_class": {"woman": [{"text": "{{token}} {{name}}", "steps": [1]}]}},
        {"prompts_per_class": {"woman": [{"text": "{{token}} {{name}}", "negative_prompt": 3}]}},
    ],
)
def test_pack_files_of_the_wrong_shape_say_so_without_python_errors(studio, change):
    with pytest.raises(InvalidInput) as error:
        studio.import_pack(json.dumps(_pack_document(**change)))
    python_words = ("object has no attribute", "unexpected keyword", "invalid literal", "NoneType", "Error")
    assert error.value.field and not any(words in error.value.message for words in python_words), error.value


# -- throttles -----------------------------------------------------------------------------------


def test_a_throttle_allows_a_burst_then_one_per_interval():
    now = [0.0]
    throttle = Throttle(3, clock=lambda: now[0])
    assert [throttle.take("a") for _ in range(3)] == [0, 0, 0]
    assert throttle.take("a") == pytest.approx(20) and throttle.blocked("a") == pytest.approx(20)
    assert throttle.take("b") == 0  # another address has its own bucket
    now[0] += 20
    assert throttle.take("a") == 0 and throttle.take("a") > 0
    crowded = Throttle(1, clock=lambda: now[0], max_keys=100)
    for n in range(1000):
        crowded.take(str(n))
    assert len(crowded._buckets) <= 100


def test_anonymous_likes_are_throttled_per_client_address():
    from studio.ui.common import Context

    ctx = Context(browser_id=None, likes=Throttle(2))

    def request(address: str, username: str | None = None):
        return SimpleNamespace(client=SimpleNamespace(host=address), username=username)

    # A fresh browser id for every like: the address still counts them.
    for _ in range(2):
        assert ctx.like_user({"id": f"fresh-{time.time_ns()}"}, request("10.0.0.1")).startswith("browser:")
    with pytest.raises(Busy) as error:
        ctx.like_user({"id": "yet-another"}, request("10.0.0.1"))
    assert error.value.status == 429 and "wait 30 s" in error.value.message
    assert ctx.like_user({"id": "x"}, request("10.0.0.2")) == "browser:x"
    # A login is one person however often it likes; the throttle is for made-up ids.
    for _ in range(5):
        assert ctx.like_user(None, request("10.0.0.1", "ann")) == "user:ann"


@pytest.mark.browser
@pytest.mark.slow
def test_a_browser_without_login_is_held_back_after_its_likes_per_minute(tmp_path, demo_model_dir, page):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, likes_per_minute=2) as (url, studio):
        prompt = studio.create_prompt(1, {"text": "a lantern", "num_images": 2, "steps": 3, "w": 64, "h": 64})
        studio.run_pending()
        page.goto(url)
        page.get_by_role("tab", name="Gallery").click()
        card = page.locator(f"#gallery-board .prompt-card[data-prompt='{prompt['id']}']")
        for idx in (0, 1):
            card.locator(f"button.heart[data-idx='{idx}']").click()
            card.locator(f"button.heart.on[data-idx='{idx}']").wait_for()
        card.locator("button.heart[data-idx='0']").click()  # a third like or unlike within the minute
        page.locator(".toast-body", has_text="Too many likes from your address").wait_for()
        assert [image["likes"] for image in studio.prompt_images(prompt["id"])] == [1, 1]


def test_failed_logins_are_throttled_per_address(tmp_path, demo_model_dir):
    settings = {"auth": (("ann", "s3cret"),), "login_failures_per_minute": 2}
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, **settings) as (url, _):
        wrong = {"username": "ann", "password": "guess"}
        assert [httpx.post(f"{url}/login", data=wrong).status_code for _ in range(2)] == [400, 400]
        refused = httpx.post(f"{url}/login", data={"username": "ann", "password": "s3cret"})
        assert refused.status_code == 429 and "Too many failed logins" in refused.json()["detail"]
        assert int(refused.headers["retry-after"]) > 0
        # Another address (as a trusted proxy reports it) is not held up.
        other = {"X-Forwarded-For": "10.0.0.7"}
        assert httpx.post(f"{url}/login", data={"username": "ann", "password": "s3cret"}, headers=other).is_success


# -- slow clients ----------------------------------------------------------------------------------


@pytest.fixture
def configured_server(studio, monkeypatch):
    """The whole app served with `app.server_config`, its time limits shortened."""
    import app

    monkeypatch.setattr(app, "HEAD_TIMEOUT_S", 1.0)
    monkeypatch.setattr(edge, "BODY_GRACE_S", 1.0)
    port = free_port()
    config = app.server_config(app.create_app(studio), studio.settings, port=port, timeout_graceful_shutdown=1)
    stop = serve_config(config)
    yield port
    stop()


def _closed_within(sock: socket.socket, seconds: float) -> bytes:
    """What the server sends before it closes the connection (fails if it stays open)."""
    sock.settimeout(seconds)
    received = b""
    try:
        while data := sock.recv(4096):
            received += data
    except TimeoutError:
        pytest.fail(f"the connection was still open after {seconds} s")
    return received


def test_a_client_that_drips_its_request_head_is_cut(configured_server):
    with socket.create_connection(("127.0.0.1", configured_server)) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /tunes HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(3):
            time.sleep(0.4)
            try:
                sock.sendall(b"X-Drip: 1\r\n")
            except OSError:
                break
        _closed_within(sock, 5)
        assert time.monotonic() - started < 4
    # A prompt client is served as before.
    assert httpx.get(f"http://127.0.0.1:{configured_server}/tunes").status_code == 200


def test_a_client_that_drips_its_body_is_cut_with_408(configured_server):
    with socket.create_connection(("127.0.0.1", configured_server)) as sock:
        sock.sendall(
            b"POST /tunes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        started = time.monotonic()
        answer = b""
        sock.settimeout(0.5)
        while time.monotonic() - started < 6 and not answer:
            try:
                sock.sendall(b" ")
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
        assert answer.startswith(b"HTTP/1.1 408"), answer
        sock.settimeout(5)
        while b"too slowly" not in answer:  # the body may follow the head in another packet
            try:
                chunk = sock.recv(4096)
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
        assert b"too slowly" in answer
