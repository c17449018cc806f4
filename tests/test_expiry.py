"""Optional tune expiry (STUDIO_TUNE_EXPIRY_DAYS, Astria's 30 days): new tunes get `expires_at`,
and the sweep deletes expired tunes with everything they made, on disk and in the database, on
the job worker's thread."""

import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from cascade import owned_ids, stored_files, tune_rows
from photos import encode
from PIL import Image

from storage.status import QUEUING
from studio.config import Settings
from studio.core import Studio
from studio.jobs import Worker
from studio.tune_requests import PromptSpec, TuneRequest


def _open(tmp_path, demo_model_dir, **settings) -> Studio:
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
    return Studio.open(Settings(home=home, **settings))


@pytest.fixture
def expiring(tmp_path, demo_model_dir):
    studio = _open(tmp_path, demo_model_dir, tune_expiry_days=30)
    yield studio
    studio.close()


def _photos(seed: int, count: int = 3) -> list[tuple[str, bytes]]:
    """Smooth random textures of 256 px (no faces; enough for a mock-mode LoRA)."""
    rng = np.random.default_rng(seed)
    return [
        (f"t{seed}-{n}.png", encode(Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((256, 256)), "PNG"))
        for n in range(count)
    ]  # fmt: skip


def _tune(title: str, *prompts: str) -> TuneRequest:
    specs = tuple(
        PromptSpec(text=t, params={"num_images": 1, "steps": 2, "w": 64, "h": 64, "seed": 1}) for t in prompts
    )
    return TuneRequest(title=title, name="dog", branch="fast", seed=1, prompts=specs)


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_new_tunes_expire_after_the_configured_days_and_never_by_default(tmp_path, demo_model_dir, expiring):
    tune = expiring.create_tune(_tune("Rex"), photos=_photos(1))
    lifetime = _time(tune["expires_at"]) - _time(tune["created_at"])
    assert abs(lifetime - timedelta(days=30)) < timedelta(hours=1)
    assert expiring.status()["tune_expiry"].startswith("tunes are deleted 30 days")
    keeper = _open(tmp_path / "other", demo_model_dir)
    try:
        assert keeper.create_tune(_tune("Rex"), photos=_photos(1))["expires_at"] is None
        assert keeper.sweep_expired(datetime.now(UTC) + timedelta(days=10_000)) == []
    finally:
        keeper.close()


def test_the_sweep_deletes_expired_tunes_with_everything_and_leaves_the_rest(expiring):
    studio = expiring
    before = stored_files(studio)
    # An expired tune: trained, with a prompt, its image and a like.
    old = studio.create_tune(_tune("Old", "ohwx dog"), photos=_photos(1))
    assert studio.run_pending() == 2
    [prompt] = studio.store.list_prompts(tune_id=old["id"])
    studio.like_prompt(prompt["id"], "ann")
    prompts, photos = owned_ids(studio.store, old["id"])
    db = studio.store.path
    assert tune_rows(db, old["id"], prompts, photos).keys() == {
        "tunes", "tune_photos", "photos", "checkpoints", "prompts", "images", "likes", "jobs"
    }  # fmt: skip
    with_old = stored_files(studio)
    # A tune made later (its photos are its own), still queued for training.
    new = studio.create_tune(_tune("New"), photos=_photos(2))
    new_files = stored_files(studio) - with_old
    assert len(new_files) == 3

    assert studio.sweep_expired(_time(old["expires_at"])) == [old["id"]]
    assert studio.store.get_tune(old["id"]) is None
    assert tune_rows(db, old["id"], prompts, photos) == {}
    assert stored_files(studio) == before | new_files
    kept = studio.store.get_tune(new["id"])
    assert kept["status"] == QUEUING and studio.store.latest_job("train", new["id"])["status"] == QUEUING
    assert studio.sweep_expired(_time(old["expires_at"])) == []

    # Once its date has passed, a queued tune goes too: its job is canceled first.
    assert studio.sweep_expired(_time(new["expires_at"]) + timedelta(seconds=1)) == [new["id"]]
    assert stored_files(studio) == before and studio.store.list_tunes() == []


def test_the_job_worker_sweeps_at_start(expiring):
    studio = expiring
    tune = studio.create_tune(_tune("Gone"), photos=_photos(3))
    studio.cancel_tune(tune["id"])
    studio.store.update_tune(tune["id"], expires_at="2000-01-01T00:00:00.000Z")
    assert studio.worker.housekeeping == studio.tunes.sweep_expired
    studio.start_worker()
    deadline = time.monotonic() + 30
    while studio.store.get_tune(tune["id"]) is not None:
        assert time.monotonic() < deadline, "the worker did not sweep the expired tune"
        time.sleep(0.05)


def test_worker_housekeeping_runs_between_jobs_and_survives_errors(store):
    ran = threading.Event()
    calls = []

    def sweep():
        calls.append(1)
        ran.set()
        raise RuntimeError("a broken sweep")

    worker = Worker(store, {}, housekeeping=sweep, housekeeping_every=3600, idle_poll=0.05)
    worker.start()
    try:
        assert ran.wait(30), "housekeeping never ran"
        assert worker.running  # the error was logged, not fatal
    finally:
        worker.stop()
    assert calls == [1]  # due again only after housekeeping_every


def test_expired_tunes_are_found_by_date_only(store):
    ids = {
        name: store.add_tune({"title": name, "name": "dog", "token": "ohwx", "model_type": "lora", "expires_at": at})
        for name, at in [("past", "2026-01-01T00:00:00.000Z"), ("later", "2026-03-01T00:00:00.000Z"), ("never", None)]
    }
    assert store.expired_tunes("2026-02-01T00:00:00.000Z") == [ids["past"]]
    assert store.expired_tunes("2026-03-01T00:00:00.000Z") == [ids["past"], ids["later"]]
