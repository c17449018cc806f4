"""Tunes end to end on the demo model: LoRA training through the queue, FaceID, prompts made with
a tune, callbacks, cancel, delete, checkpoints, and a kill -9 in the middle of training."""

import functools
import io
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from cascade import owned_ids, tune_rows
from photos import coffee, encode, friend, mirrored

from conftest import ROOT
from storage.status import CANCELED, FAILED, QUEUING, SUCCESS, TRAINING
from studio.config import Settings
from studio.core import Studio
from studio.errors import Busy, Conflict, InvalidInput, ModelNotAvailable, NotFound
from studio.jobs import RESTART_MESSAGE
from studio.training import read_metadata
from studio.tune_requests import TuneRequest

DEMO_ID = 1  # the embedded demo model in the gallery
FLUX_ID = 1504944


@pytest.fixture(scope="session")
def generated_photos(demo_model_dir):
    """Five 256 px photos made by the demo model (textures: the demo model cannot draw faces)."""
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(demo_model_dir, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        ["a photo of a dog"] * 5,
        num_inference_steps=4,
        height=256,
        width=256,
        generator=[torch.Generator().manual_seed(s) for s in range(5)],
    ).images
    return [(f"dog{n}.png", encode(image, "PNG")) for n, image in enumerate(images)]


def _open(tmp_path, demo_model_dir, name="home", **settings) -> Studio:
    home = tmp_path / name
    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
    return Studio.open(Settings(home=home, **settings))


@pytest.fixture
def hooked(tmp_path, demo_model_dir):
    """A studio that may call back to loopback addresses (the test's endpoint)."""
    studio = _open(tmp_path, demo_model_dir, allow_private_urls=True)
    yield studio
    studio.close()


def _fast(title="Rex", **changes) -> TuneRequest:
    return TuneRequest(**{"title": title, "name": "dog", "branch": "fast", "seed": 3, **changes})


def _pixels(studio, prompt_id) -> np.ndarray:
    from PIL import Image

    [image] = studio.store.prompt_images(prompt_id)
    return np.asarray(Image.open(io.BytesIO(studio.files.read(image["path"]))), dtype=np.float32) / 255


def _render(studio, text, tune_id=DEMO_ID) -> np.ndarray:
    prompt = studio.create_prompt(tune_id, {"text": text, "num_images": 1, "seed": 9, "steps": 4, "w": 64, "h": 64})
    studio.run_pending()
    assert studio.store.get_prompt(prompt["id"])["status"] == SUCCESS, studio.store.get_prompt(prompt["id"])
    return _pixels(studio, prompt["id"])


def _stored_files(studio) -> set[str]:
    root = studio.files.root
    files = (p.relative_to(root) for p in root.rglob("*") if p.is_file())
    return {str(p) for p in files if p.parts[0] != "tmp"}  # tmp: scratch folders of running jobs


def _wait(condition, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")


# -- LoRA tunes ------------------------------------------------------------------------------


def test_lora_tune_trains_through_the_queue_and_its_lora_changes_images(studio, generated_photos):
    tune = studio.create_tune(_fast(), photos=generated_photos)
    assert (tune["status"], tune["model_type"], tune["steps"]) == (QUEUING, "lora", 8)
    assert studio.store.latest_job("train", tune["id"])["status"] == QUEUING
    assert studio.run_pending() == 1

    tune = studio.get_tune(tune["id"])
    assert tune["status"] == SUCCESS and tune["trained_at"] and tune["progress"] == 1.0
    row = studio.store.get_tune(tune["id"])
    assert studio.files.path(row["weights_path"]).is_file() and studio.files.path(row["kohya_path"]).is_file()
    assert [c["step"] for c in tune["checkpoints"]] == [2, 4, 6, 8]
    assert tune["active_step"] == 8 and tune["checkpoints"][-1]["active"]
    assert all(c["sample"].startswith("http://") and "/images/" in c["sample"] for c in tune["checkpoints"])

    base = _render(studio, "ohwx dog in a field")
    lora = _render(studio, f"<lora:{tune['id']}:1> ohwx dog in a field")
    off = _render(studio, f"<lora:{tune['id']}:0> ohwx dog in a field")
    assert np.abs(lora - base).max() > 1 / 255
    assert np.abs(off - base).max() <= 1 / 255  # PNG rounding only


def test_a_repeated_title_returns_the_existing_tune(studio, generated_photos):
    first = studio.create_tune(_fast(), photos=generated_photos)
    again = studio.create_tune(_fast(seed=99), photos=generated_photos[:2])
    assert again["id"] == first["id"] and again["args"] == first["args"]
    assert studio.store.count_active_jobs() == 1


def test_prompts_made_with_a_tune_wait_for_it_then_callbacks_fire_once(hooked, generated_photos):
    endpoint = _Endpoint()
    url = endpoint.url
    tune = hooked.create_tune(
        _fast(
            callback=f"{url}/tune?user_id=7",
            prompts_callback=f"{url}/all?user_id=7",
            prompts=tuple(_spec(f"ohwx dog number {n}", callback=f"{url}/prompt?n={n}") for n in range(2)),  # fmt: skip
        ),
        photos=generated_photos,
    )
    made = hooked.store.list_prompts(tune_id=tune["id"])
    assert [p["status"] for p in made] == [QUEUING, QUEUING]
    assert hooked.store.count_active_jobs() == 1  # only the training: the prompts wait for it
    assert hooked.run_pending() == 3
    assert all(hooked.store.get_prompt(p["id"])["status"] == SUCCESS for p in made)

    bodies = endpoint.wait(4)
    by_path = {}
    for path, body in bodies:
        by_path.setdefault(path.split("?")[0], []).append((path, body))
    [(path, body)] = by_path["/tune"]
    assert path == "/tune?user_id=7" and body["tune"]["id"] == tune["id"] and body["tune"]["status"] == SUCCESS
    assert sorted(p for p, _ in by_path["/prompt"]) == ["/prompt?n=0", "/prompt?n=1"]
    prompt_body = by_path["/prompt"][0][1]["prompt"]
    assert prompt_body["status"] == SUCCESS and prompt_body["images"][0].startswith("http://")
    [(path, body)] = by_path["/all"]
    assert sorted(p["id"] for p in body) == sorted(p["id"] for p in made)
    time.sleep(0.3)
    assert len(endpoint.received) == 4  # nothing twice


def test_a_failed_tune_fails_its_waiting_prompts(studio, generated_photos):
    tune = studio.create_tune(_fast(prompts=(_spec("ohwx dog"),)), photos=generated_photos)
    studio.store.update_tune(tune["id"], base_tune_id=FLUX_ID, branch=None)  # its base model vanished
    studio.run_pending()
    assert studio.get_tune(tune["id"])["status"] == FAILED
    [prompt] = studio.store.list_prompts(tune_id=tune["id"])
    assert prompt["status"] == FAILED and f"tune {tune['id']} FAILED" in prompt["message"]


@pytest.mark.parametrize(
    ("request_changes", "field"),
    [
        ({"base_tune_id": FLUX_ID, "branch": None}, "base_tune_id"),  # FLUX.1 [dev]: not downloaded, hub off
        ({"base_tune_id": 4, "branch": "sd15"}, "branch"),
        ({"learning_rate": 0.5}, "learning_rate"),
        ({"callback": "ftp://example.com"}, "callback"),
        ({"model_type": "checkpoint"}, "model_type"),
    ],
)
def test_bad_requests_are_refused_before_anything_is_stored(studio, generated_photos, request_changes, field):
    with pytest.raises((InvalidInput, ModelNotAvailable)) as error:
        studio.create_tune(_fast(**request_changes), photos=generated_photos)
    assert error.value.field == field
    assert studio.store.list_tunes() == [] and studio.store.count_active_jobs() == 0


def test_unknown_base_models_and_photos_are_not_found(studio, generated_photos):
    with pytest.raises(NotFound) as error:
        studio.create_tune(_fast(base_tune_id=424242, branch=None), photos=generated_photos)
    assert error.value.field == "base_tune_id"
    with pytest.raises(NotFound) as error:
        studio.create_tune(_fast(), photo_ids=[999])
    assert error.value.field == "photo_ids"


def test_unusable_photos_are_reported(studio, generated_photos):
    with pytest.raises(InvalidInput) as error:
        studio.create_tune(_fast(), photos=[("notes.txt", b"not an image at all")])
    assert error.value.field == "images" and "notes.txt" in error.value.message
    tune = studio.create_tune(_fast(), photos=[*generated_photos, ("notes.txt", b"not an image at all")])
    assert [r["filename"] for r in tune["rejections"]] == ["notes.txt"]
    assert len(studio.store.tune_photos(tune["id"])) == 5


def test_a_full_queue_refuses_a_tune_and_stores_nothing(tmp_path, demo_model_dir, generated_photos):
    studio = _open(tmp_path, demo_model_dir, queue_limit=1)
    try:
        studio.create_tune(_fast("first"), photos=generated_photos)
        with pytest.raises(Busy):
            studio.create_tune(_fast("second"), photos=generated_photos)
        assert [t["title"] for t in studio.store.list_tunes()] == ["first"]
    finally:
        studio.close()


def test_canceling_a_queued_tune_ends_it_and_its_prompts_and_it_never_trains(studio, generated_photos):
    tune = studio.create_tune(_fast(prompts=(_spec("ohwx dog"),)), photos=generated_photos)
    assert studio.cancel_tune(tune["id"])["status"] == CANCELED
    assert studio.run_pending() == 0
    assert studio.store.get_tune(tune["id"])["started_training_at"] is None
    [prompt] = studio.store.list_prompts(tune_id=tune["id"])
    assert prompt["status"] == CANCELED
    with pytest.raises(Conflict):
        studio.cancel_tune(tune["id"])


def _long(title="Long", steps=5000, checkpointing_steps=0):
    """A LoRA tune that trains for a while (minutes at 5000 steps), to be stopped on purpose."""
    return TuneRequest(
        title=title, name="dog", preset="fast", max_train_steps=steps, seed=1, checkpointing_steps=checkpointing_steps
    )


def test_canceling_a_running_training_stops_it_within_a_few_steps(studio, generated_photos):
    tune = studio.create_tune(_long(), photos=generated_photos)
    job_id = studio.store.latest_job("train", tune["id"])["id"]
    studio.start_worker()
    _wait(lambda: studio.store.get_job(job_id)["step"] >= 3, what="training to start")
    studio.cancel_tune(tune["id"])
    asked_at = studio.store.get_job(job_id)["step"]
    _wait(lambda: studio.store.get_job(job_id)["status"] == CANCELED, what="the cancel")
    job, row = studio.store.get_job(job_id), studio.store.get_tune(tune["id"])
    assert row["status"] == CANCELED and row["weights_path"] is None
    assert job["step"] - asked_at <= 25  # progress is written twice a second, so this is loose


def test_delete_is_refused_while_training_and_afterwards_leaves_nothing(studio, generated_photos):
    before = _stored_files(studio)
    tune = studio.create_tune(_long(), photos=generated_photos)
    job_id = studio.store.latest_job("train", tune["id"])["id"]
    studio.start_worker()
    _wait(lambda: studio.store.get_job(job_id)["status"] == TRAINING, what="training to start")
    with pytest.raises(Conflict, match="Cancel it first"):
        studio.delete_tune(tune["id"])
    studio.cancel_tune(tune["id"])
    studio.delete_tune(tune["id"])
    assert studio.store.get_tune(tune["id"]) is None and studio.store.get_job(job_id) is None
    assert _stored_files(studio) == before


def test_deleting_a_trained_tune_removes_its_prompts_images_likes_and_files(studio, generated_photos):
    """Delete everything: photos (those no other tune uses), weights, checkpoints and samples, the
    likeness reference embedding, prompts, images and likes, on disk and in the database."""
    before = _stored_files(studio)
    keeper = studio.create_tune(_fast("keeper"), photos=generated_photos[:2])
    studio.cancel_tune(keeper["id"])  # it only shares two photos
    with_keeper = _stored_files(studio)
    # A person's tune (one photo shows a face), so its images get a likeness reference embedding.
    photos = [*generated_photos, ("joey.jpg", encode(friend("joey")))]
    tune = studio.create_tune(_fast(name="man", prompts=(_spec("ohwx man"),)), photos=photos)
    studio.run_pending()
    [prompt] = studio.store.list_prompts(tune_id=tune["id"])
    studio.like_prompt(prompt["id"], "ann")
    row = studio.store.get_tune(tune["id"])
    owned = {row["weights_path"], row["kohya_path"], row["embedding_path"], *studio.get_prompt(prompt["id"])["images"]}
    assert None not in owned and owned <= _stored_files(studio) - with_keeper
    prompt_ids, photo_ids = owned_ids(studio.store, tune["id"])
    own_photos = sorted(set(photo_ids) - {p["id"] for p in studio.store.tune_photos(keeper["id"])})
    assert len(own_photos) == 4
    assert tune_rows(studio.store.path, tune["id"], prompt_ids, own_photos).keys() == {
        "tunes", "tune_photos", "photos", "checkpoints", "prompts", "images", "likes", "jobs"
    }  # fmt: skip
    studio.delete_tune(tune["id"])
    assert tune_rows(studio.store.path, tune["id"], prompt_ids, own_photos) == {}
    assert studio.store.get_prompt(prompt["id"]) is None
    assert studio.store.tune_checkpoints(tune["id"]) == []
    assert _stored_files(studio) - with_keeper == set()
    assert len(studio.store.tune_photos(keeper["id"])) == 2  # shared photos stay with the other tune
    assert all(studio.files.path(p["path"]).is_file() for p in studio.store.tune_photos(keeper["id"]))
    studio.delete_tune(keeper["id"])
    assert _stored_files(studio) == before
    with pytest.raises(NotFound):
        studio.delete_tune(keeper["id"])


def test_an_earlier_checkpoint_can_be_made_active(studio, generated_photos):
    tune = studio.create_tune(_fast(face_restore=True), photos=generated_photos)
    studio.run_pending()
    final = studio.store.get_tune(tune["id"])
    assert final["status"] == SUCCESS
    [warning] = studio.get_tune(tune["id"])["warnings"]  # no GFPGAN weights here: trained as uploaded
    assert warning.startswith("face_restore was skipped")
    chosen = studio.set_active_checkpoint(tune["id"], 4)
    row = studio.store.get_tune(tune["id"])
    assert chosen["active_step"] == 4 and [c["step"] for c in chosen["checkpoints"] if c["active"]] == [4]
    assert row["weights_path"] == studio.store.get_checkpoint(tune["id"], 4)["weights_path"]
    assert row["kohya_path"] != final["kohya_path"] and studio.files.path(row["kohya_path"]).is_file()
    assert not studio.files.path(final["kohya_path"]).exists()
    with pytest.raises(NotFound) as error:
        studio.set_active_checkpoint(tune["id"], 3)
    assert error.value.field == "step"


# -- FaceID tunes ----------------------------------------------------------------------------


def _faces():
    return [("rachel.jpg", encode(friend("rachel"))), ("rachel2.jpg", encode(mirrored(friend("rachel"))))]


def test_faceid_tune_is_ready_at_creation_and_changes_the_output(hooked, generated_photos):
    endpoint = _Endpoint()
    tune = hooked.create_tune(
        TuneRequest(title="Rachel", name="woman", model_type="faceid", branch="fast", callback=f"{endpoint.url}/t"),
        photos=_faces(),
    )
    assert tune["status"] == SUCCESS and tune["trained_at"] and tune["model_type"] == "faceid"
    row = hooked.store.get_tune(tune["id"])
    embedding = np.load(io.BytesIO(hooked.files.read(row["embedding_path"])))
    assert embedding.shape == (hooked.face_analyzer.embedding_dim,)
    assert abs(float(np.linalg.norm(embedding)) - 1) < 1e-5 and row["face_backend"] == hooked.face_analyzer.name
    assert hooked.store.latest_job("train", tune["id"]) is None  # nothing to train
    [(path, body)] = endpoint.wait(1)
    assert body["tune"]["status"] == SUCCESS
    base = _render(hooked, "a photo of a woman")
    with_face = _render(hooked, f"<faceid:{tune['id']}:1> a photo of a woman")
    assert np.abs(with_face - base).max() > 1 / 255


def test_faceid_needs_a_face(studio):
    with pytest.raises(InvalidInput) as error:
        studio.create_tune(
            TuneRequest(title="cup", name="woman", model_type="faceid"), photos=[("cup.jpg", encode(coffee()))]
        )
    assert error.value.field == "images" and "face" in error.value.message
    assert studio.store.list_tunes() == []


# -- a process killed in the middle of training ----------------------------------------------

_WORKER = """
import sys, time, logging
from pathlib import Path
sys.path.insert(0, {root!r})
from studio.config import Settings
from studio.core import Studio
logging.basicConfig(level=logging.INFO)
studio = Studio.open(Settings(home=Path({home!r})))
studio.start_worker()
while True:
    time.sleep(1)
"""


def _start_worker(home):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    code = _WORKER.format(root=str(ROOT), home=str(home))
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_when(process, condition, what, state=lambda: ""):
    try:
        _wait(lambda: condition() or process.poll() is not None, timeout=240, what=lambda: f"{what} ({state()})")
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.slow
def test_a_training_killed_mid_way_is_requeued_once_then_failed(tmp_path, demo_model_dir, generated_photos):
    studio = _open(tmp_path, demo_model_dir)
    home = studio.home
    first = studio.create_tune(_long("first", steps=60, checkpointing_steps=10), photos=generated_photos)
    second = studio.create_tune(_long("second"), photos=generated_photos)
    jobs = {t["id"]: studio.store.latest_job("train", t["id"])["id"] for t in (first, second)}
    store = studio.store

    def job(tune):
        return store.get_job(jobs[tune["id"]])

    def training(tune, attempt):
        current = job(tune)
        return current["status"] == TRAINING and current["attempts"] == attempt and current["step"] >= 1

    # 1. Killed while training the first tune, once it stored a checkpoint to resume from.
    _kill_when(
        _start_worker(home), lambda: training(first, 1) and _resumable(store, first["id"]), "the first checkpoint"
    )
    assert job(first)["status"] == TRAINING  # nobody was left to say otherwise
    kept = _resumable(store, first["id"])
    # 2. Restarted: the first tune is re-queued, goes on from its latest checkpoint (which stays
    #    in the strip with the earlier ones) and finishes; then the second starts and is killed.
    worker = _start_worker(home)
    _kill_when(
        worker,
        lambda: job(first)["status"] == SUCCESS and training(second, 1),
        "the re-queued training to finish and the next to start",
        lambda: f"first: {job(first)}, second: {job(second)}",
    )
    assert job(first)["attempts"] == 2
    assert studio.files.path(store.get_tune(first["id"])["weights_path"]).is_file()
    log_text = worker.stderr.read().decode()
    assert f"resuming the interrupted training from its checkpoint at step {kept[-1]['step']}" in log_text
    rows = store.tune_checkpoints(first["id"])
    assert [row["step"] for row in rows] == [10, 20, 30, 40, 50, 60]
    assert _identities(kept) <= _identities(rows)  # the same rows, kept
    assert not any(studio.files.path(k["resume_path"]).exists() for k in kept)  # dropped once it finished
    # 3. Restarted: the second tune is re-queued and killed again.
    _kill_when(_start_worker(home), lambda: training(second, 2), "the second tune's second attempt")
    # 4. Restarted once more: two attempts are used up, so it fails with the restart message.
    studio.start_worker()
    studio.close()
    with sqlite3.connect(home / "db" / "studio.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    studio = Studio.open(Settings(home=home))
    try:
        failed = studio.store.get_job(jobs[second["id"]])
        assert (failed["status"], failed["message"]) == (FAILED, RESTART_MESSAGE)
        tune = studio.get_tune(second["id"])
        assert (tune["status"], tune["message"]) == (FAILED, RESTART_MESSAGE)
        assert studio.get_tune(first["id"])["status"] == SUCCESS
    finally:
        studio.close()


def _resumable(store, tune_id) -> list[dict]:
    """The tune's checkpoints stored with a resume state (a training can go on from them)."""
    return [row for row in store.tune_checkpoints(tune_id) if row["resume_path"]]


def _identities(rows) -> set[tuple]:
    """What tells one stored checkpoint row from another written again for the same step."""
    return {(row["id"], row["step"], row["created_at"]) for row in rows}


@pytest.mark.slow
def test_a_stopped_training_resumes_and_a_damaged_checkpoint_means_starting_over(
    tmp_path, demo_model_dir, generated_photos, caplog
):
    """The studio is closed mid-training (the job goes back to the queue) and opened again: the
    training goes on from its latest checkpoint; with that checkpoint's resume state damaged it
    starts over from step 0 instead. Both end with the same weights (same seed and settings)."""
    caplog.set_level(logging.INFO, logger="studio")
    weights = {}
    for damaged in (False, True):
        studio = _open(tmp_path, demo_model_dir, name=f"home-{damaged}")
        tune = studio.create_tune(_long("stopped", steps=24, checkpointing_steps=4), photos=generated_photos)
        studio.start_worker()
        _wait(functools.partial(_resumable, studio.store, tune["id"]), what="a checkpoint to resume from")
        studio.close()  # the training stops at its next step and goes back to the queue
        studio = Studio.open(Settings(home=studio.home))
        try:
            assert studio.store.latest_job("train", tune["id"])["status"] == QUEUING
            kept = _resumable(studio.store, tune["id"])
            latest = kept[-1]
            if damaged:
                damaged_file = studio.files.path(latest["resume_path"])
                data = bytearray(damaged_file.read_bytes())
                data[-1] ^= 0xFF  # one flipped bit-pattern in the optimizer's tensors
                damaged_file.write_bytes(bytes(data))
            caplog.clear()
            studio.run_pending()
            assert studio.store.get_tune(tune["id"])["status"] == SUCCESS
            rows = studio.store.tune_checkpoints(tune["id"])
            assert [row["step"] for row in rows] == [4, 8, 12, 16, 20, 24]
            assert all(row["resume_path"] is None for row in rows)
            assert not studio.files.path(latest["resume_path"]).exists()
            if damaged:
                assert "the training starts again from step 0" in caplog.text
                assert "resume state" in caplog.text and "damaged" in caplog.text
                assert not _identities(kept) & _identities(rows)  # all written again
            else:
                assert f"resuming the interrupted training from its checkpoint at step {latest['step']}" in caplog.text
                assert _identities(kept) <= _identities(rows)
            weights[damaged] = read_metadata(studio.files.path(studio.store.get_tune(tune["id"])["weights_path"]))
        finally:
            studio.close()
    # The same tensors (the files differ: safetensors writes its metadata in no fixed order).
    assert weights[False]["modelspec.hash_sha256"] == weights[True]["modelspec.hash_sha256"]


# -- helpers ---------------------------------------------------------------------------------


def _spec(text, **changes):
    from studio.tune_requests import PromptSpec

    return PromptSpec(text=text, params={"num_images": 1, "steps": 4, "w": 64, "h": 64, "seed": 1}, **changes)


class _Endpoint:
    """A local HTTP endpoint recording (path, JSON body) of every POST."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count, timeout=30.0):
        _wait(lambda: len(self.received) >= count, timeout, f"{count} callbacks")
        return list(self.received)


def test_purge_keeps_files_that_other_rows_still_name(store):
    """A content-addressed file shared with another row (a face avatar's embedding, another
    prompt's input image, another photo's crop) survives deleting the tune that also used it."""
    shared = {area: f"{area}/ab/{'ab' * 32}{suffix}" for area, suffix in
              [("embeddings", ".npy"), ("photos", ".png"), ("crops", ".png")]}  # fmt: skip
    own = f"weights/cd/{'cd' * 32}.safetensors"
    tune_id = store.add_tune({"title": "a", "name": "woman", "token": "ohwx", "model_type": "faceid",
                              "embedding_path": shared["embeddings"], "weights_path": own})  # fmt: skip
    store.add_prompt({"tune_id": tune_id, "text": "x", "params": {"input_image_path": shared["photos"]}})
    other = store.add_tune({"title": "b", "name": "woman", "token": "ohwx", "model_type": "lora"})
    store.add_prompt({"tune_id": other, "text": "y", "params": {"input_image_path": shared["photos"]}})
    store.add_adapter({"name": "me", "kind": "face", "path": "covers/x.png",
                       "metadata": {"embedding_path": shared["embeddings"]}})  # fmt: skip
    photo = store.add_photo({"sha256": "ef" * 32, "path": f"photos/ef/{'ef' * 32}.png",
                             "inspection": {"crop": {"path": shared["crops"]}}})  # fmt: skip
    store.link_photos(tune_id, [photo])
    keeper = store.add_photo({"sha256": "12" * 32, "path": f"photos/12/{'12' * 32}.png",
                              "inspection": {"crop": {"path": shared["crops"]}}})  # fmt: skip
    store.link_photos(other, [keeper])
    assert sorted(store.purge_tune(tune_id)) == sorted([own, f"photos/ef/{'ef' * 32}.png"])
    assert store.get_photo(photo) is None and store.get_photo(keeper) is not None
