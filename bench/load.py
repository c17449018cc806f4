"""Does the studio survive load? Starts the studio (app.py: Settings from the environment ->
Studio -> create_app, served by uvicorn) in a child process on a fresh temporary STUDIO_HOME
with the embedded demo model, then drives its Astria-compatible REST API from this process on
loopback: N clients, each with its own API key (so its own likes), for D seconds, each looping
with no pause over a mix of

    like / unlike a prompt       POST|DELETE /prompts/:id/likes          (writes)
    list                         GET /tunes, /tunes/:id/prompts, /packs, /prompts/:id   (reads)
    post a prompt                POST /tunes/:id/prompts                 (writes; 429 when the
                                                                          job queue is full)
    peek at another's prompt     GET /prompts/:id, POST its like         (--owners isolated:
                                                                          must be 404)

    .venv/bin/python bench/load.py                         # 100 clients, 60 s
    .venv/bin/python bench/load.py --clients 10 --duration 5 --train-steps 0

`--owners isolated` (the default) gives each client a key that is no admin: each posts its own
prompts on the base model (--own of them, before the load) and likes only those, and every
answer about another client's prompt must be a 404. `--owners shared` makes the clients admins
liking the same --pool prompts of one trained tune (shared counters under contention).

Then it checks that nothing was lost: every client remembers its last like state of each prompt,
and the API (`liked`, `likes_count`) and a direct count of the database's like rows must agree.
It prints p50/p95/p99 latency of reads and writes, requests/s and each status code; 429 (queue
full, STUDIO_QUEUE_LIMIT) is counted apart, it is not an error. Last, "the UI stays responsive
while training runs": the latency of GET /, GET /gradio_api/info and one Gradio event through
gradio_client (`/clear_photos`, the queue's full round trip) while idle and while a LoRA tune
trains on the job worker. Exits 1 when a 5xx, a transport error or a lost like was seen.

Bounded: the load stops after D seconds, each request times out, and a watchdog kills the
server and exits after --timeout seconds whatever happens. The client process runs the clients
as asyncio tasks, each with its own keep-alive connection (one pool shared by a hundred tasks
cost the client more CPU than the server), so the client's own scheduling is in the latencies;
on a small machine the client, the server and its job worker share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# What each client does, by weight: like/unlike 45 %, reads 40 %, posting prompts 15 %.
MIX = {
    "like": 45,
    "list_tunes": 10,
    "list_prompts": 10,
    "list_packs": 10,
    "get_prompt": 10,
    "post_prompt": 15,
}
# With owners isolated, how often a client asks about another client's prompt (404 expected).
PEEK = 5
# The gallery's first base model (the demo model): every key may post prompts to it.
BASE_MODEL = 1
# Prompts the clients post: one small image, so the worker keeps up with part of them.
PROMPT = {"text": "ohwx woman as a lighthouse keeper", "num_images": 1, "steps": 2, "w": 64, "h": 64}


# -- the studio in a child process -------------------------------------------------------------


class Server:
    """`app.py` (the studio as `make run` serves it) in a child process on a free loopback
    port, with its own STUDIO_HOME, API keys and queue limit."""

    def __init__(self, home: Path, keys: Sequence[str], *, queue_limit: int, admins: Sequence[str] | None = None):
        self.home = home
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "STUDIO_HOME": str(home),
            "STUDIO_PORT": str(self.port),
            "STUDIO_API_KEYS": ",".join(keys),
            # `admins`: the keys that see everything (all of them when not given).
            "STUDIO_ADMINS": ",".join(_key_owner(key) for key in (keys if admins is None else admins)),
            "STUDIO_QUEUE_LIMIT": str(queue_limit),
            "STUDIO_DEMO_SIZE": "64",
            "HF_HUB_OFFLINE": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
        }
        self.log_path = home / "server.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> None:
        """Start app.py and wait until it answers; RuntimeError with its log when it does not."""
        import httpx

        self.home.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py")], env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the studio exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/openapi.json", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"the studio did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down, the studio closes its worker and database), then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def _key_owner(key: str) -> str:
    """The owner name a STUDIO_API_KEYS key acts as (studio/services/api_keys.py)."""
    from studio.services.api_keys import env_key_user

    return env_key_user(key)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- setup: a trained tune and the prompts everybody likes ------------------------------------


def photo_files(count: int = 5) -> list[tuple[str, tuple[str, bytes, str]]]:
    """`count` smooth random 256 px PNGs as multipart `tune[images][]` parts (textures: LoRA
    training on the demo model needs no faces)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(9)
    parts = []
    for n in range(count):
        image = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((256, 256), Image.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        parts.append(("tune[images][]", (f"photo{n}.png", buffer.getvalue(), "image/png")))
    return parts


def wait_until(check, timeout: float, what: str):
    """Poll `check` until it returns something truthy (returned); TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def create_tune(url: str, key: str, title: str, **fields) -> dict:
    """A LoRA tune of class woman from `photo_files()`; `fields` are more `tune[...]` fields."""
    import httpx

    form = {"tune[title]": title, "tune[name]": "woman", **{f"tune[{k}]": str(v) for k, v in fields.items()}}
    response = httpx.post(
        f"{url}/tunes", data=form, files=photo_files(), headers=_auth(key), timeout=120, follow_redirects=False
    )
    response.raise_for_status()
    return response.json()


def tune_status(url: str, key: str, tune_id: int) -> dict:
    import httpx

    return httpx.get(f"{url}/tunes/{tune_id}", headers=_auth(key), timeout=30).raise_for_status().json()


def prepare(url: str, key: str, *, pool: int, timeout: float = 180) -> tuple[int, list[int]]:
    """A tune trained in mock mode (branch fast: a few steps at 64 px) and `pool` prompts on it,
    the ones the clients like; returns (tune id, prompt ids)."""
    import httpx

    tune = create_tune(url, key, "load: liked tune", branch="fast")

    def finished() -> dict | None:
        now = tune_status(url, key, tune["id"])
        return now if now["status"] in ("SUCCESS", "FAILED", "CANCELED") else None

    done = wait_until(finished, timeout, "the setup tune to train")
    if done["status"] != "SUCCESS":
        raise RuntimeError(f"the setup tune ended {done['status']}: {done['message']}")
    ids = []
    for _ in range(pool):
        response = httpx.post(
            f"{url}/tunes/{tune['id']}/prompts", json={"prompt": PROMPT}, headers=_auth(key), timeout=60
        )
        response.raise_for_status()
        ids.append(response.json()["id"])
    return tune["id"], ids


def prepare_own(url: str, clients: Sequence[Client], *, own: int, timeout: float = 600) -> int:
    """Each client's own `own` prompts on the base model (it sees no one else's tune), posted
    again while the job queue is full (429); fills each client's `prompts` and `foreign` (the
    others' prompt ids). Returns the base model's id."""
    import httpx

    base_id = BASE_MODEL
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=60) as http:
        for client in clients:
            while len(client.prompts) < own:
                response = http.post(f"/tunes/{base_id}/prompts", json={"prompt": PROMPT}, headers=_auth(client.key))
                if response.status_code == 429 and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                response.raise_for_status()
                client.prompts.append(response.json()["id"])
    for client in clients:
        client.foreign = [p for other in clients if other is not client for p in other.prompts]
    return base_id


# -- the load ----------------------------------------------------------------------------------


@dataclass
class Client:
    """One simulated user: its key, and its last known like state per prompt (None: unknown,
    after a request that got no answer)."""

    key: str
    liked: dict[int, bool | None] = field(default_factory=dict)
    prompts: list[int] = field(default_factory=list)  # its own prompts; empty: the shared pool
    foreign: list[int] = field(default_factory=list)  # other clients' prompts, which it must not see


@dataclass
class Results:
    seconds: float = 0.0
    reads: list[float] = field(default_factory=list)  # seconds per request
    writes: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)  # HTTP status -> count
    by_route: dict[str, list[float]] = field(default_factory=dict)  # "METHOD route status" -> seconds
    errors: Counter = field(default_factory=Counter)  # transport errors by exception name
    problems: list[str] = field(default_factory=list)  # wrong answers (lost likes, bad bodies)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


async def run_load(
    url: str,
    clients: Sequence[Client],
    tune_id: int,
    prompt_ids: Sequence[int],
    *,
    duration: float,
    seed: int = 0,
    request_timeout: float = 60,
) -> Results:
    """Run every client for `duration` seconds (requests in flight then may finish, each within
    `request_timeout`); returns what was measured."""
    import httpx

    results = Results()
    mix = {**MIX, "peek": PEEK} if any(client.foreign for client in clients) else MIX
    ops, weights = list(mix), list(mix.values())
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    async def call(http, client: Client, method: str, path: str, route: str, **kwargs):
        started = time.perf_counter()
        try:
            response = await http.request(method, path, headers=_auth(client.key), **kwargs)
        except httpx.HTTPError as error:
            results.errors[type(error).__name__] += 1
            return None
        seconds = time.perf_counter() - started
        (results.reads if method == "GET" else results.writes).append(seconds)
        results.by_route.setdefault(f"{method} {route} {response.status_code}", []).append(seconds)
        results.statuses[response.status_code] += 1
        return response

    async def like(http, client: Client, rng: random.Random) -> None:
        prompt_id = rng.choice(client.prompts or prompt_ids)
        want = rng.random() < 0.5
        method, expected = ("POST", 201) if want else ("DELETE", 200)
        client.liked[prompt_id] = None  # until the answer says otherwise
        response = await call(http, client, method, f"/prompts/{prompt_id}/likes", "/prompts/:id/likes")
        if response is None or response.status_code != expected:
            return
        body = response.json()
        if body.get("liked") is not want:
            results.problems.append(f"{method} like of prompt {prompt_id} answered liked={body.get('liked')}")
            return
        client.liked[prompt_id] = want

    async def peek(http, client: Client, rng: random.Random) -> None:
        """Another client's prompt, read or liked: it must not exist for this one."""
        prompt_id = rng.choice(client.foreign)
        method, path = rng.choice([("GET", f"/prompts/{prompt_id}"), ("POST", f"/prompts/{prompt_id}/likes")])
        route = "/prompts/:other" if method == "GET" else "/prompts/:other/likes"
        response = await call(http, client, method, path, route)
        if response is not None and response.status_code != 404:
            results.problems.append(f"{method} {path} of another client answered {response.status_code}, not 404")

    async def loop(http, client: Client, rng: random.Random, deadline: float) -> None:
        while time.monotonic() < deadline:
            op = rng.choices(ops, weights)[0]
            if op == "like":
                await like(http, client, rng)
            elif op == "list_tunes":
                await call(http, client, "GET", "/tunes", "/tunes")
            elif op == "list_prompts":
                await call(http, client, "GET", f"/tunes/{tune_id}/prompts", "/tunes/:id/prompts")
            elif op == "list_packs":
                await call(http, client, "GET", "/packs", "/packs")
            elif op == "get_prompt":
                await call(http, client, "GET", f"/prompts/{rng.choice(client.prompts or prompt_ids)}", "/prompts/:id")
            elif op == "peek":
                await peek(http, client, rng)
            else:
                path = f"/tunes/{tune_id}/prompts"
                await call(http, client, "POST", path, "/tunes/:id/prompts", json={"prompt": PROMPT})

    async def run(client: Client, rng: random.Random, deadline: float) -> None:
        # One connection per client, as separate users would have: a pool shared by a hundred
        # tasks costs the client more CPU per request than the server spends answering it.
        async with httpx.AsyncClient(base_url=url, timeout=request_timeout, limits=limits) as http:
            await loop(http, client, rng, deadline)

    started = time.monotonic()
    deadline = started + duration
    await asyncio.gather(*(run(client, random.Random(seed * 1000 + n), deadline) for n, client in enumerate(clients)))
    results.seconds = time.monotonic() - started
    return results


async def check_likes(url: str, clients: Sequence[Client], prompt_ids: Sequence[int], store) -> list[str]:
    """Lost likes: each client's last like state of each prompt against `liked` in the API and
    its like row in the database (`store`, a storage.Store on the studio's file), and each
    prompt's `likes_count` and counter against the clients' likes and the rows. Returns what
    disagrees; states a client does not know (a request got no answer) are not checked."""
    import httpx

    from studio.services.api_keys import env_key_user

    problems = []
    gate = asyncio.Semaphore(16)

    async def liked_in_api(http, client: Client, prompt_id: int) -> tuple[bool, int]:
        async with gate:
            response = await http.get(f"/prompts/{prompt_id}", headers=_auth(client.key))
        body = response.raise_for_status().json()
        return body["liked"], body["likes_count"]

    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        pairs = [(client, prompt_id) for client in clients for prompt_id in client.prompts or prompt_ids]
        answers = await asyncio.gather(*(liked_in_api(http, c, p) for c, p in pairs))
    counts = {}
    for (client, prompt_id), (liked, count) in zip(pairs, answers):
        counts[prompt_id] = count
        state = client.liked.get(prompt_id, False)
        rows = store.liked_by(prompt_id, env_key_user(client.key))
        if state is not None and liked is not state:
            problems.append(f"API: prompt {prompt_id} liked={liked} for a client whose last answer was {state}")
        if state is not None and (rows == [-1]) is not state:
            problems.append(f"DB: prompt {prompt_id} like rows {rows} for a client whose last answer was {state}")
    recount = {row["id"]: row for row in store.recount_prompt_likes()}
    for prompt_id in counts:
        states = [
            client.liked.get(prompt_id, False) for client in clients if prompt_id in (client.prompts or prompt_ids)
        ]
        row = recount[prompt_id]
        if row["counter"] != row["likes_count"] or counts[prompt_id] != row["likes_count"]:
            problems.append(
                f"prompt {prompt_id}: likes_count {counts[prompt_id]} in the API, counter {row['counter']}, "
                f"{row['likes_count']} like rows"
            )
        if None not in states and sum(states) != row["likes_count"]:
            problems.append(f"prompt {prompt_id}: {sum(states)} clients like it, {row['likes_count']} like rows")
    return problems


# -- the UI while training --------------------------------------------------------------------


def measure_ui(url: str, samples: int) -> dict[str, list[float]]:
    """Seconds per call, `samples` times each, one after another: the page, the Gradio API
    description, and a Gradio event through the queue (gradio_client, as a browser's click)."""
    import httpx
    from gradio_client import Client as GradioClient

    gradio = GradioClient(url + "/", verbose=False)
    timings: dict[str, list[float]] = {"GET /": [], "GET /gradio_api/info": [], "gradio /clear_photos": []}
    with httpx.Client(base_url=url, timeout=60) as http:
        calls = {
            "GET /": lambda: http.get("/").raise_for_status(),
            "GET /gradio_api/info": lambda: http.get("/gradio_api/info").raise_for_status(),
            "gradio /clear_photos": lambda: gradio.predict(api_name="/clear_photos"),
        }
        for run in calls.values():  # warm-up, not counted: the first page render builds caches
            run()
        for _ in range(samples):
            for name, run in calls.items():
                started = time.perf_counter()
                run()
                timings[name].append(time.perf_counter() - started)
    return timings


def ui_while_training(url: str, key: str, *, steps: int, samples: int, timeout: float) -> dict:
    """UI latency (`measure_ui`) while a LoRA tune of `steps` steps on the demo model trains:
    the tune is made, measured once its steps run, then deleted (the API cancels its training).
    Returns {training: timings, steps: (done before, done after, total)}."""
    import httpx

    tune = create_tune(url, key, "load: training tune", base_tune_id=1, steps=steps)

    def stepping() -> dict | None:
        now = tune_status(url, key, tune["id"])
        return now if now["status"] == "TRAINING" and now["progress"] > 0 else None

    started = wait_until(stepping, timeout, "the training to start (the generation queue goes first)")
    training = measure_ui(url, samples)
    after = tune_status(url, key, tune["id"])
    httpx.delete(f"{url}/tunes/{tune['id']}", headers=_auth(key), timeout=60).raise_for_status()
    if after["status"] != "TRAINING":
        raise RuntimeError(f"the training ended ({after['status']}) before the measurement did: raise --train-steps")
    return {
        "training": training,
        "steps": (round(started["progress"] * steps), round(after["progress"] * steps), steps),
    }


# -- report ------------------------------------------------------------------------------------


def percentiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(p50, p95, p99) in milliseconds; zeros when there is nothing to rank."""
    if len(values) < 2:
        return (values[0] * 1000,) * 3 if values else (0.0, 0.0, 0.0)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[94] * 1000, cuts[98] * 1000


def report(results: Results, problems: list[str], clients: int) -> None:
    print(f"requests        {results.requests} in {results.seconds:.1f} s = {results.requests / results.seconds:.1f}/s")
    for name, values in (("reads", results.reads), ("writes", results.writes)):
        p50, p95, p99 = percentiles(values)
        print(f"{name:<15} n={len(values):<7} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   p99 {p99:7.1f} ms")
    codes = "  ".join(f"{code}: {n}" for code, n in sorted(results.statuses.items()))
    print(f"status codes    {codes}   (429 = job queue full, not an error)")
    for key, values in sorted(results.by_route.items()):
        p50, p95, p99 = percentiles(values)
        print(f"    {key:<32} {len(values):>7}   p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   p99 {p99:7.1f} ms")
    print(f"5xx             {results.server_errors}")
    print(f"transport errs  {sum(results.errors.values())} {dict(results.errors) or ''}")
    print(f"lost likes      {len(problems)} (checked {clients} clients' states in the API and the database)")
    for problem in (results.problems + problems)[:20]:
        print(f"    {problem}")


def report_ui(ui: dict) -> None:
    print("UI latency, one call at a time      idle p50 / p95            while training p50 / p95")
    for name in ui["idle"]:
        idle, busy = percentiles(ui["idle"][name]), percentiles(ui["training"][name])
        print(f"    {name:<28} {idle[0]:7.1f} / {idle[1]:7.1f} ms      {busy[0]:7.1f} / {busy[1]:7.1f} ms")
    before, after, total = ui["steps"]
    print(f"    (the LoRA training was at step ~{before} of {total} when measuring began, ~{after} when it ended)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100, help="concurrent clients (default 100)")
    parser.add_argument("--duration", type=float, default=60, help="seconds of load (default 60)")
    parser.add_argument(
        "--owners",
        choices=("isolated", "shared"),
        default="isolated",
        help="isolated (default): each client is no admin and likes its own prompts, and must get 404 for "
        "another's; shared: the clients are admins liking the same prompts",
    )
    parser.add_argument("--own", type=int, default=2, help="prompts of each client's own (--owners isolated)")
    parser.add_argument("--pool", type=int, default=20, help="prompts the clients like (--owners shared; default 20)")
    parser.add_argument("--queue-limit", type=int, default=50, help="STUDIO_QUEUE_LIMIT (default 50)")
    parser.add_argument("--train-steps", type=int, default=5000, help="LoRA steps for the UI check; 0 skips it")
    parser.add_argument("--ui-samples", type=int, default=20, help="calls of each UI request, idle and training")
    parser.add_argument("--timeout", type=float, default=None, help="hard limit in seconds (default D + 600)")
    args = parser.parse_args(argv)
    limit = args.timeout or args.duration + 600

    keys = [f"load-{n}-{secrets.token_hex(8)}" for n in range(args.clients + 1)]
    with tempfile.TemporaryDirectory(prefix="studio-load-") as home:
        admins = keys if args.owners == "shared" else keys[:1]
        server = Server(Path(home), keys, queue_limit=args.queue_limit, admins=admins)
        watchdog = threading.Timer(limit, _abort, [server, limit])
        watchdog.daemon = True
        watchdog.start()
        try:
            return _run(server, keys, args)
        finally:
            watchdog.cancel()
            server.stop()


def _run(server: Server, keys: list[str], args) -> int:
    from storage import Store

    admin, clients = keys[0], [Client(key) for key in keys[1:]]
    started = time.monotonic()
    server.start()
    print(f"studio up in {time.monotonic() - started:.1f} s at {server.url} (home {server.home})")
    # Idle: before anything is queued, so no job runs.
    ui_idle = measure_ui(server.url, args.ui_samples) if args.train_steps else None
    if args.owners == "shared":
        tune_id, prompt_ids = prepare(server.url, admin, pool=args.pool)
        liked = f"{len(prompt_ids)} liked prompts shared by admins"
    else:
        tune_id, prompt_ids = prepare_own(server.url, clients, own=args.own), []
        liked = f"{args.own} own prompts per client, no admins, others' prompts must be 404"
    print(
        f"load: {len(clients)} clients x {args.duration:g} s, tune {tune_id}, {liked}, queue limit {args.queue_limit}"
    )
    results = asyncio.run(run_load(server.url, clients, tune_id, prompt_ids, duration=args.duration))
    store = Store(server.home / "db" / "studio.db")
    try:
        problems = asyncio.run(check_likes(server.url, clients, prompt_ids, store))
    finally:
        store.close()
    report(results, problems, len(clients))
    failed = bool(results.server_errors or results.errors or results.problems or problems)
    if args.train_steps:
        ui = ui_while_training(server.url, admin, steps=args.train_steps, samples=args.ui_samples, timeout=300)
        report_ui({"idle": ui_idle, **ui})
    if failed:
        print(f"FAILED; the server log is {server.log_path}:\n{server.log_tail(20)}")
    return 1 if failed else 0


def _abort(server: Server, limit: float) -> None:
    print(f"bench/load.py: hard timeout of {limit:.0f} s reached; stopping", file=sys.stderr, flush=True)
    if server.process is not None:
        server.process.kill()
    os._exit(2)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


if __name__ == "__main__":
    sys.exit(main())
