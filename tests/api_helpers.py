"""What the REST API tests share: a whole studio app served on a free port with its job worker,
a loopback web site that serves photos for `image_urls` and records callbacks, and polling.

The studio may fetch from and call back to loopback addresses here (allow_private_urls), which
production settings refuse; its demo model draws at 64 px so the flows take seconds."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from photos import encode, friend

from conftest import link_flux_demos, link_sdxl_demo, serve
from studio.config import Settings
from studio.core import Studio

WOMEN = ("rachel", "phoebe", "monica")
MEN = ("chandler", "ross", "joey")


@contextmanager
def live_studio(home: Path, demo_model_dir: Path, *, worker: bool = True, flux_demos=None, sdxl_demo=None, **settings):
    """Serve the whole app (UI + API) for a fresh studio under `home`; yields (url, studio).
    `flux_demos` (the `flux_demo_dirs` fixture) links the session's Flux demos in too, and
    `sdxl_demo` (the `sdxl_demo_dir` fixture) the SDXL demo."""
    from app import create_app

    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
    if flux_demos:
        link_flux_demos(home, flux_demos)
    if sdxl_demo:
        link_sdxl_demo(home, sdxl_demo)
    values = {"allow_private_urls": True, "demo_size": 64, **settings}
    studio = Studio.open(Settings(home=home, **values))
    if worker:
        studio.start_worker()
    url, stop = serve(create_app(studio))
    try:
        yield url, studio
    finally:
        stop()
        studio.close()


class Site:
    """A web site on a loopback port: GET serves `files` (path -> bytes, 404 otherwise), POST
    records (path with query string, JSON body) in `received`, as a client's webhook would."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.received: list[tuple[str, object]] = []
        self._lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                data = site.files.get(self.path)
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with site._lock:
                    site.received.append((self.path, json.loads(raw)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def add_photos(self, names: tuple[str, ...], fmt: str = "JPEG") -> list[str]:
        """Serve the test photos of these people; returns their URLs."""
        for name in names:
            self.files[f"/photos/{name}.jpg"] = encode(friend(name), fmt)
        return [f"{self.url}/photos/{name}.jpg" for name in names]

    def callbacks(self, path: str) -> list[tuple[str, object]]:
        """The callbacks received so far whose path (before '?') is `path`."""
        with self._lock:
            return [(p, body) for p, body in self.received if p.split("?")[0] == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def photo_files(names: tuple[str, ...]) -> list[tuple[str, tuple[str, bytes, str]]]:
    """Multipart `tune[images][]` parts for the test photos of these people."""
    return [("tune[images][]", (f"{name}.jpg", encode(friend(name), "JPEG"), "image/jpeg")) for name in names]


def wait_for(condition, timeout: float = 120.0, what: str = "condition"):
    """Poll `condition` until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
