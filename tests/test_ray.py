"""Jobs on Ray (studio/ray_runner.py) against a local Ray instance bound to loopback: the FaceID
flow over HTTP and a LoRA training give the same images as the in-process runner; a worker
killed mid-training re-queues the job, which resumes from its checkpoint; cancel reaches the
worker; a studio without STUDIO_RAY_ADDRESS never imports ray; an unreachable cluster is a clear
start-up error. Each Ray studio starts two engine actors (one CPU each), so the tests are few."""

import functools
import io
import logging
import re
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from api_helpers import MEN, live_studio, wait_for
from PIL import Image

from conftest import ROOT
from storage.status import CANCELED, FAILED, QUEUING, SUCCESS
from studio.config import Settings
from studio.core import Studio
from studio.jobs import Worker, WorkerLost
from studio.training import read_metadata
from studio.tune_requests import TuneRequest

DEMO_ID = 1


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray instance for the session, on loopback, without its dashboard."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def dog_photos(demo_model_dir):
    """Five 256 px photos made by the demo model (it cannot draw faces; a LoRA needs none)."""
    import torch
    from diffusers import StableDiffusionPipeline
    from photos import encode

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


def _open(tmp_path, demo_model_dir, name, **settings) -> Studio:
    home = tmp_path / name
    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
    return Studio.open(Settings(home=home, **settings))


def _pixels(studio, prompt_id) -> list[np.ndarray]:
    return [
        np.asarray(Image.open(io.BytesIO(studio.files.read(row["path"]))), dtype=np.int16)
        for row in studio.store.prompt_images(prompt_id)
    ]


def _wait(condition, timeout=240.0, what="condition"):
    return wait_for(condition, timeout=timeout, what=what)


# -- without Ray -----------------------------------------------------------------------------


def test_a_studio_without_a_ray_address_never_imports_ray(tmp_path):
    script = (
        "import sys; from pathlib import Path\n"
        "from app import create_app\n"
        "from studio.config import Settings\n"
        "from studio.core import Studio\n"
        f"studio = Studio.open(Settings(home=Path({str(tmp_path / 'home')!r})))\n"
        "studio.start_worker(); create_app(studio)\n"
        "print('runner:', type(studio.worker).__name__, 'ray imported:', 'ray' in sys.modules)\n"
        "studio.close()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    assert "runner: Worker ray imported: False" in out.stdout, out.stdout + out.stderr


def test_an_unreachable_cluster_is_a_start_up_error_naming_the_address(tmp_path, demo_model_dir):
    from studio.ray_runner import ClusterUnreachable

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"ray://127.0.0.1:{port}"
    studio = _open(tmp_path, demo_model_dir, "home", ray_address=address)
    try:
        started = time.monotonic()
        with pytest.raises(ClusterUnreachable) as raised:
            studio.start_worker()
        assert time.monotonic() - started < 20
        assert f"STUDIO_RAY_ADDRESS={address}" in raised.value.message and "cannot be reached" in raised.value.message
        assert "not connected" in studio.status()["jobs_run"]
    finally:
        studio.close()


def test_a_worker_lost_twice_requeues_the_job_once_then_fails_it_with_the_reason(studio):
    """The runner's rule, whatever lost the worker: one re-queue, then FAILED saying why."""
    prompt = studio.create_prompt(DEMO_ID, {"text": "a dog", "steps": 2, "w": 64, "h": 64})
    job_id = studio.store.latest_job("generate", prompt["id"])["id"]
    runs = []

    def lost(job, context):
        runs.append(job["attempts"])
        raise WorkerLost("its Ray worker died (ActorDiedError)")

    worker = Worker(studio.store, {"generate": lost})
    assert worker.run_one() and studio.store.get_job(job_id)["status"] == QUEUING
    assert studio.store.get_prompt(prompt["id"])["status"] == QUEUING
    assert worker.run_one() and not worker.run_one()
    job = studio.store.get_job(job_id)
    assert runs == [1, 2] and job["status"] == FAILED
    assert job["message"] == "its Ray worker died (ActorDiedError) (twice: it was re-queued once already)"
    assert studio.store.get_prompt(prompt["id"])["message"] == job["message"]


def test_a_generation_prefers_the_idle_worker_that_holds_its_files():
    from studio.ray_runner import Blob, RayWorkers

    workers = RayWorkers(Settings(ray_address="auto"))
    workers.actors, workers.held = [object(), object(), object()], [set(), {"model"}, {"model", "lora"}]
    wanted = [Blob("model", "demo", True), Blob("lora", "a.safetensors", False)]
    assert workers._take(wanted) == 2  # holds both
    assert workers._take(wanted) == 1  # 2 is busy: the next best
    workers._give_back(2)
    assert workers._take([Blob("other", "b.safetensors", False)]) == 0  # no file held: the first idle one


# -- on a local Ray instance -----------------------------------------------------------------


def _fast(title="Rex"):
    return TuneRequest(title=title, name="dog", branch="fast", seed=3)


def test_faceid_flow_and_lora_training_on_ray_give_the_in_process_images(
    tmp_path, demo_model_dir, dog_photos, ray_cluster, page
):
    """The seed's FaceID flow over HTTP and a LoRA tune trained and used, on Ray workers, against
    the same on the in-process runner: the same seeds give the same pixels and weights."""
    import torch
    from photos import encode, friend

    faces = [(f"{name}.jpg", encode(friend(name, 256))) for name in MEN]
    prompt = {"num_images": 2, "steps": 4, "seed": 7, "w": 64, "h": 64}

    # One torch thread, as each worker has one CPU: float sums split over other thread counts
    # round differently, and the training's weights would differ in their last bits.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    local = _open(tmp_path, demo_model_dir, "local")
    try:
        face = local.create_tune(TuneRequest(title="John", name="man", model_type="faceid"), photos=faces)
        made = local.create_prompt(DEMO_ID, {"text": f"<faceid:{face['id']}:1> man in a suit", **prompt})
        lora = local.create_tune(_fast(), photos=dog_photos)
        local.run_pending()
        with_lora = local.create_prompt(DEMO_ID, {"text": f"<lora:{lora['id']}:1> ohwx dog", **prompt})
        local.run_pending()
        expected_faceid, expected_lora = _pixels(local, made["id"]), _pixels(local, with_lora["id"])
        expected_weights = read_metadata(local.files.path(local.store.get_tune(lora["id"])["weights_path"]))
    finally:
        local.close()
        torch.set_num_threads(threads)

    with live_studio(tmp_path / "ray", demo_model_dir, ray_address="auto") as (url, studio):
        assert studio.status()["jobs_run"] == "Ray at auto: 2 engine worker(s), 1 CPU each"
        page.goto(url)
        page.get_by_role("tab", name="Settings & status").click()
        page.locator("#status-text", has_text="Jobs run").wait_for()
        assert "Jobs run: Ray at auto: 2 engine worker(s), 1 CPU each" in page.locator("#status-text").inner_text()
        files = [("tune[images][]", (name, data, "image/jpeg")) for name, data in faces]
        form = {"tune[title]": "John", "tune[name]": "man", "tune[model_type]": "faceid"}
        response = httpx.post(f"{url}/tunes", data=form, files=files, timeout=60)
        assert response.status_code == 201, response.text
        face = response.json()
        body = {"prompt": {"text": f"<faceid:{face['id']}:1> man in a suit", **prompt}}
        response = httpx.post(f"{url}/tunes/{DEMO_ID}/prompts", json=body, timeout=60)
        assert response.status_code == 201, response.text
        made = response.json()

        def done(prompt_id):
            row = httpx.get(f"{url}/tunes/{DEMO_ID}/prompts/{prompt_id}").json()
            assert row["status"] not in ("FAILED", "CANCELED"), row["message"]
            return row if row["images"] else None

        shown = _wait(functools.partial(done, made["id"]), what="the FaceID prompt's images")
        got = [np.asarray(Image.open(io.BytesIO(httpx.get(u).content)), dtype=np.int16) for u in shown["images"]]
        assert len(got) == 2 and all(np.array_equal(a, b) for a, b in zip(got, expected_faceid, strict=True))

        lora = studio.create_tune(_fast(), photos=dog_photos)
        _wait(lambda: studio.store.get_tune(lora["id"])["status"] == SUCCESS, what="the LoRA training")
        tune = studio.get_tune(lora["id"])
        assert [c["step"] for c in tune["checkpoints"]] == [2, 4, 6, 8] and tune["progress"] == 1.0
        weights = read_metadata(studio.files.path(studio.store.get_tune(lora["id"])["weights_path"]))
        with_lora = studio.create_prompt(DEMO_ID, {"text": f"<lora:{lora['id']}:1> ohwx dog", **prompt})
        _wait(lambda: studio.store.get_prompt(with_lora["id"])["status"] == SUCCESS, what="the LoRA prompt")
        assert all(np.array_equal(a, b) for a, b in zip(_pixels(studio, with_lora["id"]), expected_lora, strict=True))
    assert weights["modelspec.hash_sha256"] == expected_weights["modelspec.hash_sha256"]


@pytest.mark.slow
def test_a_killed_worker_requeues_its_training_which_resumes_and_cancel_reaches_a_worker(
    tmp_path, demo_model_dir, dog_photos, ray_cluster, caplog
):
    caplog.set_level(logging.INFO, logger="studio")
    studio = _open(tmp_path, demo_model_dir, "home", ray_address="auto")
    try:
        request = TuneRequest(
            title="Long", name="dog", preset="fast", max_train_steps=16, seed=1, checkpointing_steps=4
        )
        tune = studio.create_tune(request, photos=dog_photos)
        job_id = studio.store.latest_job("train", tune["id"])["id"]
        studio.start_worker()
        workers = studio.runtime.remote

        def resumable():
            return [row for row in studio.store.tune_checkpoints(tune["id"]) if row["resume_path"]]

        kept = _wait(resumable, what="a checkpoint streamed back")
        [busy] = workers._busy
        workers.kill(busy)
        _wait(lambda: studio.store.get_tune(tune["id"])["status"] == SUCCESS, what="the re-queued training")
        job = studio.store.get_job(job_id)
        assert job["attempts"] == 2 and job["status"] == SUCCESS
        assert re.search(rf"job {job_id}: its Ray worker died \(\w+\); re-queued", caplog.text)
        latest = max(row["step"] for row in kept)
        assert f"resuming the interrupted training from its checkpoint at step {latest}" in caplog.text
        rows = studio.store.tune_checkpoints(tune["id"])
        assert [row["step"] for row in rows] == [4, 8, 12, 16]
        assert {row["id"] for row in kept} <= {row["id"] for row in rows}  # kept, not written again

        # Cancel: a long generation stops on its worker at its next step.
        long = studio.create_prompt(DEMO_ID, {"text": "a dog", "steps": 150, "w": 256, "h": 256, "seed": 1})
        job_id = studio.store.latest_job("generate", long["id"])["id"]
        _wait(lambda: studio.store.get_job(job_id)["step"] >= 2, what="the generation to start")
        studio.cancel_prompt(long["id"])
        _wait(lambda: studio.store.get_job(job_id)["status"] == CANCELED, timeout=60, what="the cancel")
        assert studio.store.get_job(job_id)["step"] < 150
        assert studio.store.get_prompt(long["id"])["status"] == CANCELED
    finally:
        studio.close()


def test_jobs_wait_while_the_cluster_does_not_answer_and_the_status_says_so(tmp_path, demo_model_dir, ray_cluster):
    """A cluster that stopped answering (here: its first worker is gone for good, so the runner's
    check call fails): the runner claims no job, the job stays queued, the status tab says why."""
    studio = _open(tmp_path, demo_model_dir, "home", ray_address="auto")
    try:
        runner, workers = studio.worker, studio.runtime.remote
        workers.connect()
        ray_cluster.kill(workers.actors[0], no_restart=True)
        workers.lost_since = time.time()  # what a call that lost the connection records
        prompt = studio.create_prompt(DEMO_ID, {"text": "a dog", "steps": 2, "w": 64, "h": 64})
        assert runner.run_one() is False
        assert studio.store.latest_job("generate", prompt["id"])["status"] == QUEUING
        assert "does not answer: jobs wait in the queue" in studio.status()["jobs_run"]
    finally:
        studio.close()
