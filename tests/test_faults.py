"""Faults the studio must survive (issue 9): a full disk while saving images, weights damaged on
disk, a base model that is not there while offline, SIGKILL in the middle of database writes,
and a callback endpoint that accepts and never answers.

Each fault is made real where it can be (files really cut short, a process really killed, a
socket that really never answers); the full disk is the one simulated, by a stand-in for the
`os` module inside storage/files.py whose file handles fill up part-way through a write."""

from __future__ import annotations

import errno
import logging
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
from lora_files import lora_factors, write_kohya_lora

import storage.files
from storage import Store
from studio.config import Settings
from studio.core import Studio
from studio.errors import InvalidInput, ModelNotAvailable, Unavailable
from studio.jobs import CallbackSender
from studio.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
DEMO = 1  # the embedded demo model's gallery id
SMALL = {"w": 64, "h": 64, "steps": 2, "num_images": 1, "scheduler": "euler", "seed": 11}


@pytest.fixture(scope="module")
def engine():
    from studio.engine import Engine

    return Engine("cpu")


def open_studio(home: Path, demo_model_dir: Path, engine=None, **settings) -> Studio:
    """A studio on a fresh home whose demo model is the session's (linked), sharing `engine`."""
    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
    settings = Settings(home=home, **settings)
    # One warm engine for the module (as tests/test_engine_studio.py), through the runtime.
    return Studio.open(settings, runtime=Runtime(settings, engine=engine))


@pytest.fixture
def gen(tmp_path, demo_model_dir, engine):
    studio = open_studio(tmp_path / "home", demo_model_dir, engine)
    yield studio
    studio.close()


def run(studio: Studio, tune_id: int, fields) -> dict:
    """Create a prompt, let the job worker run it in this thread, return it as it ends."""
    created = studio.create_prompt(tune_id, fields)
    studio.run_pending()
    return studio.get_prompt(created["id"])


def integrity(path: Path) -> str:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def stored_files(studio: Studio, area: str) -> list[Path]:
    """The files of one file-store area, temporary ones included."""
    return sorted(p for p in (studio.files.root / area).rglob("*") if p.is_file())


def assert_clean_failure(studio: Studio, prompt: dict, *words: str) -> None:
    """FAILED with a message a person can read: the words, no traceback, no path inside the
    studio's home; the job failed with the same message; no image rows."""
    message = prompt["message"]
    assert prompt["status"] == "FAILED", prompt
    assert all(word in message for word in words), message
    assert "Traceback" not in message and str(studio.home) not in message, message
    assert prompt["images"] == [] and studio.store.prompt_images(prompt["id"]) == []
    job = studio.store.latest_job("generate", prompt["id"])
    assert (job["status"], job["message"]) == ("FAILED", message)


# -- 1. a full disk while saving an image --------------------------------------------------------


class _FillingHandle:
    """A file handle on a disk that fills up: half of the first write lands, then ENOSPC."""

    def __init__(self, handle, path: str):
        self._handle, self._path = handle, path

    def write(self, data: bytes) -> int:
        self._handle.write(data[: len(data) // 2])
        self._handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._path)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()


class FullDisk:
    """Stands in for `os` inside storage/files.py: after `room` more files, every file the
    store writes fails part-way with ENOSPC (its error names the temporary file, as the
    kernel's does)."""

    def __init__(self, room: int):
        self.room = room
        self.failed = 0

    def __getattr__(self, name):
        return getattr(os, name)

    def fdopen(self, fd: int, *args, **kwargs):
        handle = os.fdopen(fd, *args, **kwargs)
        if self.room > 0:
            self.room -= 1
            return handle
        self.failed += 1
        return _FillingHandle(handle, os.readlink(f"/proc/self/fd/{fd}"))


def test_a_full_disk_fails_the_prompt_cleanly_and_the_worker_goes_on(gen, monkeypatch):
    disk = FullDisk(room=1)  # the first image is saved, the second finds the disk full
    monkeypatch.setattr(storage.files, "os", disk)
    failed = run(gen, DEMO, {"text": "a portrait", **SMALL, "num_images": 2})
    assert disk.failed == 1
    assert_clean_failure(gen, failed, "disk is full", "run the prompt again")
    assert "Errno" not in failed["message"] and ".tmp-" not in failed["message"]
    # Neither the saved first image nor the half-written second one is left behind.
    assert stored_files(gen, "outputs") == []
    api = gen.prompt_json(failed["id"], "http://studio.test")
    assert api["status"] == "FAILED" and api["images"] == [] and "disk is full" in api["message"]

    monkeypatch.undo()  # space was freed: the same worker runs the next prompt
    done = run(gen, DEMO, {"text": "a portrait", **SMALL, "num_images": 2})
    assert done["status"] == "SUCCESS" and len(done["images"]) == 2
    assert [p.name for p in stored_files(gen, "outputs")] == sorted(Path(p).name for p in done["images"])
    assert integrity(gen.store.path) == "ok"


def test_a_failed_run_keeps_an_image_file_another_prompt_shares(gen, monkeypatch):
    """Files are content-addressed: a failed run removes only files no other row refers to."""
    first = run(gen, DEMO, {"text": "a portrait", **SMALL, "num_images": 2})
    shared, second = (gen.files.path(p) for p in first["images"])
    second.unlink()  # so that a rerun finds its first image stored and must write the second
    monkeypatch.setattr(storage.files, "os", FullDisk(room=0))
    again = run(gen, DEMO, {"text": "a portrait", **SMALL, "num_images": 2})  # the same images
    assert again["status"] == "FAILED" and "disk is full" in again["message"]
    assert stored_files(gen, "outputs") == [shared]
    assert gen.get_prompt(first["id"])["images"] == first["images"]


# -- 2. damaged weights --------------------------------------------------------------------------


def _lora_file(studio: Studio, engine, seed: int) -> bytes:
    pipe = engine.load_model(str(studio.demo_model_dir))
    path = studio.files.scratch_dir() / "lora.safetensors"
    write_kohya_lora(path, lora_factors(pipe, seed=seed))
    return path.read_bytes()


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    header = int.from_bytes(data[:8], "little")
    if how == "truncated":
        path.write_bytes(data[: len(data) * 2 // 3])
    elif how == "garbled header":
        noise = bytes(random.Random(5).randrange(256) for _ in range(64))
        path.write_bytes(data[:8] + noise + data[72:])
    elif how == "retyped tensor":  # the header edited: a float32 tensor now claims float16
        head = data[8 : 8 + header].replace(b'"F32"', b'"F16"', 1)
        path.write_bytes(data[:8] + head + data[8 + header :])
    else:
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["truncated", "garbled header", "retyped tensor", "emptied"])
def test_a_lora_damaged_on_disk_fails_its_prompt_naming_it(gen, engine, how):
    """A LoRA tune's weights and an uploaded LoRA, both damaged after they were accepted."""
    tune = gen.store.add_tune(
        {
            "title": "ann lora",
            "name": "woman",
            "model_type": "lora",
            "base_tune_id": DEMO,
            "status": "SUCCESS",
            "weights_path": gen.files.put(_lora_file(gen, engine, seed=3), "weights", ".safetensors"),
        }
    )
    uploaded = gen.add_adapter("lora", "toy", _lora_file(gen, engine, seed=4))
    _damage(gen.files.path(gen.store.get_tune(tune)["weights_path"]), how)
    _damage(gen.files.path(uploaded["path"]), how)

    by_tune = run(gen, DEMO, {"text": f"<lora:{tune}:1> a woman", **SMALL})
    assert_clean_failure(gen, by_tune, "LoRA 'ann lora'")
    by_name = run(gen, DEMO, {"text": "<lora:toy:0.8> a woman", **SMALL})
    assert_clean_failure(gen, by_name, "LoRA 'toy'")
    assert stored_files(gen, "outputs") == []
    # The engine is still usable: a prompt without the broken LoRAs runs.
    assert run(gen, DEMO, {"text": "a woman", **SMALL})["status"] == "SUCCESS"


def test_a_damaged_lora_upload_is_refused_before_it_is_stored(gen, engine, tmp_path):
    good = tmp_path / "good.safetensors"
    good.write_bytes(_lora_file(gen, engine, seed=6))
    for how in ("truncated", "garbled header", "retyped tensor", "emptied"):
        bad = tmp_path / f"{how}.safetensors"
        shutil.copy(good, bad)
        _damage(bad, how)
        with pytest.raises(InvalidInput) as error:
            gen.add_adapter("lora", "broken", bad.read_bytes())
        assert error.value.field == "file"
    assert gen.list_adapters() == [] and stored_files(gen, "weights") == []


def test_a_damaged_base_model_fails_with_the_file_named_and_recovers(tmp_path, demo_model_dir):
    """The demo model's UNet weights cut short after it was built: prompts fail with a message
    naming the file; once the file is whole again the same studio generates."""
    home = tmp_path / "home"
    shutil.copytree(demo_model_dir, home / "models" / "demo")
    unet = home / "models" / "demo" / "unet" / "diffusion_pytorch_model.safetensors"
    whole = unet.read_bytes()
    unet.write_bytes(whole[: len(whole) // 2])
    studio = Studio.open(Settings(home=home, device="cpu"))
    try:
        failed = run(studio, DEMO, {"text": "a man", **SMALL})
        assert_clean_failure(studio, failed, "base model 'demo'", "unet/diffusion_pytorch_model.safetensors", "damaged")
        unet.write_bytes(whole)
        assert run(studio, DEMO, {"text": "a man", **SMALL})["status"] == "SUCCESS"
    finally:
        studio.close()
    assert integrity(home / "db" / "studio.db") == "ok"


def test_training_on_a_damaged_base_model_is_a_clear_error(tmp_path, demo_model_dir):
    from studio.training import load_pipeline

    folder = tmp_path / "model"
    shutil.copytree(demo_model_dir, folder)
    (folder / "text_encoder" / "model.safetensors").write_bytes(b"\0" * 64)
    with pytest.raises(Unavailable, match=r"'model' could not be loaded: text_encoder/model.safetensors is damaged"):
        load_pipeline(folder, "sd15")


# -- 3. a base model that is not there, offline ----------------------------------------------------


def _lora_tune_on_default_base(studio: Studio, weights: bytes | None = None) -> int:
    """A trained LoRA tune with no base model of its own: it runs on STUDIO_BASE_MODEL."""
    fields = {"title": "on the default", "name": "man", "model_type": "lora", "status": "SUCCESS"}
    if weights is not None:
        fields["weights_path"] = studio.files.put(weights, "weights", ".safetensors")
    return studio.store.add_tune(fields)


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("nobody/not-a-cached-model", ["nobody/not-a-cached-model", "not downloaded", "HF_HUB_OFFLINE"]),
        ("{tmp}/models/gone", ["{tmp}/models/gone", "does not exist"]),
        ("{tmp}/gone.safetensors", ["{tmp}/gone.safetensors", "does not exist"]),
    ],
)
def test_a_missing_default_base_model_is_named_at_start_up_and_refused_at_once(
    tmp_path, demo_model_dir, caplog, source, words
):
    source = source.format(tmp=tmp_path)
    words = [w.format(tmp=tmp_path) for w in words]
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
    studio = Studio.open(Settings.from_env({"STUDIO_HOME": str(home), "STUDIO_BASE_MODEL": source}))
    try:
        with caplog.at_level(logging.WARNING, logger="studio.core"):
            studio.prepare()  # start-up: logged with the reason, not raised
        logged = " ".join(r.getMessage() for r in caplog.records)
        assert f"STUDIO_BASE_MODEL={source}" in logged and all(w in logged for w in words), logged
        assert studio.default_base_model()["available"] is False
        assert studio.status()["base_model"] == source

        tune = _lora_tune_on_default_base(studio)
        with pytest.raises(ModelNotAvailable) as error:
            studio.create_prompt(tune, {"text": "ohwx man", **SMALL})
        assert all(w in error.value.message for w in words) and "pick the demo model" in error.value.message
        from studio.tune_requests import TuneRequest

        with pytest.raises(ModelNotAvailable) as error:
            studio.create_tune(TuneRequest(title="new", name="man"), photos=[])
        assert error.value.field == "base_tune_id" and all(w in error.value.message for w in words)
        assert studio.list_prompts() == [] and [t["title"] for t in studio.list_tunes()] == ["on the default"]
        # The demo model still works.
        assert studio.create_prompt(DEMO, {"text": "a man", **SMALL})["status"] == "QUEUING"
    finally:
        studio.close()


def test_a_base_model_folder_gone_before_its_prompt_runs_fails_that_prompt(tmp_path, demo_model_dir, engine):
    model = tmp_path / "my-model"
    model.symlink_to(demo_model_dir, target_is_directory=True)
    studio = open_studio(tmp_path / "home", demo_model_dir, engine, base_model=str(model))
    try:
        tune = _lora_tune_on_default_base(studio, _lora_file(studio, engine, seed=7))
        queued = studio.create_prompt(tune, {"text": "ohwx man", **SMALL})
        model.unlink()
        studio.run_pending()
        assert_clean_failure(studio, studio.get_prompt(queued["id"]), f"{model} does not exist")
        assert studio.run_pending() == 0
    finally:
        studio.close()


# -- 4. SIGKILL in the middle of database writes -------------------------------------------------

WRITER = r"""
import random, sys
sys.path.insert(0, sys.argv[1])
from storage import Store

path, seed, pack_prompts = sys.argv[2], int(sys.argv[3]), [int(p) for p in sys.argv[4].split(",")]
rng = random.Random(seed)
store = Store(path)
tune = store.add_tune({"title": f"writer {seed}", "name": "woman", "token": "ohwx", "model_type": "lora"})
print("ready", flush=True)
kept, scratch = [], []


def prompt(n):
    made = store.add_prompt({"tune_id": tune, "text": f"p{n}", "orig_prompt_id": rng.choice(pack_prompts + [None])})
    images = [{"idx": i, "path": f"outputs/{seed}/{n}-{i}.png", "seed": i, "width": 8, "height": 8} for i in range(2)]
    store.finish_prompt(made, images, warnings=[])
    return made


for n in range(10**9):
    kept.append(prompt(n))
    user = f"keep-{seed}-{n}"
    store.add_like(kept[-1], user)
    print("liked", kept[-1], user, flush=True)  # only after the commit: this like must survive
    if n % 3 == 0:
        scratch.append(prompt(n))
    for _ in range(3):
        target = rng.choice(kept + scratch)
        store.add_like(target, f"u{rng.randrange(4)}", rng.choice([-1, 0, 1]))
        store.remove_like(rng.choice(kept + scratch), f"u{rng.randrange(4)}", rng.choice([-1, 0, 1]))
    if len(scratch) > 3:
        store.delete_prompt(scratch.pop(rng.randrange(len(scratch))))
    store.update_tune(tune, progress=(n % 100) / 100, message=f"step {n}")
"""


def _wait_for_line(log: Path, text: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while text not in log.read_text():
        assert process.poll() is None, f"the writer exited: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "the writer never started"
        time.sleep(0.01)


def test_sigkill_during_writes_leaves_a_consistent_database(tmp_path):
    home = tmp_path / "home"
    studio = Studio.open(Settings(home=home))
    from studio.packs import PackPromptRequest, PackRequest

    pack = studio.create_pack(PackRequest(title="Garden", classes=("woman",)))
    templates = [
        studio.add_pack_prompt(pack["id"], PackPromptRequest("woman", f"{{{{token}}}} {{{{name}}}} garden {n}"))
        for n in range(3)
    ]
    studio.close()
    db = home / "db" / "studio.db"
    rng = random.Random(20240609)  # fixed: the same kill moments on every run
    survivors: list[tuple[int, str]] = []
    for round_ in range(5):
        log = tmp_path / f"writer-{round_}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WRITER,
                    str(ROOT),
                    str(db),
                    str(round_),
                    ",".join(str(t["id"]) for t in templates),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_for_line(log, "liked ", process)  # writing in earnest, however busy the machine
            time.sleep(rng.uniform(0.2, 0.6))
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        written = log.read_text()
        assert process.returncode == -signal.SIGKILL, (round_, written[-2000:])
        complete = written[: written.rfind("\n") + 1]  # a line cut by the kill does not count
        liked = [line.split()[1:] for line in complete.splitlines() if line.startswith("liked ")]
        survivors += [(int(prompt), user) for prompt, user in liked]

        assert integrity(db) == "ok", round_
        with closing(sqlite3.connect(db)) as conn:
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == [], round_
        store = Store(db)
        try:
            for row in store.recount_prompt_likes():
                assert row["counter"] == row["likes_count"], (round_, row)
            counters = {p["id"]: p for p in store.list_pack_prompts()}
            for row in store.recount_pack_prompts():
                assert {k: counters[row["id"]][k] for k in row} == row, round_
            packs = {p["id"]: p for p in store.list_packs()}
            for row in store.recount_packs():
                assert {k: packs[row["id"]][k] for k in row} == row, round_
            missing = [(p, u) for p, u in survivors if store.liked_by(p, u) != [-1]]
            assert missing == [], f"round {round_}: committed likes lost: {missing[:5]}"
        finally:
            store.close()


# -- 5. a callback URL that hangs -----------------------------------------------------------------


class HangingEndpoint:
    """A loopback TCP server that accepts connections and never answers a byte."""

    def __init__(self):
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self.accepted = threading.Semaphore(0)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:  # closed
                return
            self.connections.append(connection)
            self.accepted.release()

    def client_gave_up(self, connection: socket.socket, wait: float) -> bool:
        """True when the client closed `connection` (within `wait` seconds) without us answering."""
        connection.settimeout(wait)
        try:
            while data := connection.recv(65536):  # the request itself, then nothing or EOF
                assert data
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self._server.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def hanging():
    endpoint = HangingEndpoint()
    yield endpoint
    endpoint.close()


def test_callbacks_have_a_bounded_timeout():
    assert 0 < CallbackSender().timeout <= 30


def test_a_hung_callback_times_out_and_close_drops_the_ones_still_queued(hanging):
    sender = CallbackSender(allow_private=True, timeout=0.5, max_workers=2)
    futures = [sender.send(f"{hanging.url}/hook?n={n}", {"n": n}) for n in range(20)]
    assert futures[0].result(timeout=30) is False  # gave up after its timeout
    sender.close()  # without a bound this would wait for all 20, half a second per pair
    assert any(f.cancelled() for f in futures)
    for future in futures:
        assert future.cancelled() or future.result(timeout=30) is False


def test_a_hung_callback_neither_holds_the_worker_nor_the_studios_close(tmp_path, demo_model_dir, engine, hanging):
    studio = open_studio(tmp_path / "home", demo_model_dir, engine, allow_private_urls=True)
    studio.queue.callbacks.close()
    studio.queue.callbacks = CallbackSender(allow_private=True, timeout=2.0)
    try:
        hooks = [{"text": f"a man {n}", **SMALL, "callback": f"{hanging.url}/hook?n={n}"} for n in range(2)]
        ids = [studio.create_prompt(DEMO, fields)["id"] for fields in hooks]
        assert studio.run_pending() == 2  # the worker ran both and returned
        assert [studio.get_prompt(i)["status"] for i in ids] == ["SUCCESS", "SUCCESS"]
        assert hanging.accepted.acquire(timeout=30) and hanging.accepted.acquire(timeout=30)
        # The last callback is connected and still waiting for an answer: the worker that sent
        # it did not wait for it.
        assert not hanging.client_gave_up(hanging.connections[1], wait=0.1)
    finally:
        started = time.monotonic()
        studio.close()
        closing_took = time.monotonic() - started
    assert closing_took < 15  # the callbacks' own timeout bounds it (2 s here)
    assert hanging.client_gave_up(hanging.connections[1], wait=30)  # the callback gave up
