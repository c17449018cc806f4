"""The persistent job queue: claim order, progress, cancel, restart recovery, the worker thread,
and callbacks. Handlers here are small real functions, so these tests need no model."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from storage.status import CANCELED, FAILED, QUEUING, SUCCESS, TRAINING
from studio.errors import Busy, InvalidInput
from studio.jobs import MAX_ATTEMPTS, RESTART_MESSAGE, CallbackSender, JobContext, Worker, check_callback_url


def _tune(store, title="t"):
    return store.add_tune({"title": title, "name": "man", "token": "ohwx", "model_type": "lora"})


def _prompt(store, tune_id):
    return store.add_prompt({"tune_id": tune_id, "text": "ohwx man"})


def _job(store, kind="train", subject_id=None, priority=0):
    subject_id = subject_id if subject_id is not None else _tune(store, f"t{time.monotonic_ns()}")
    return store.enqueue_job(kind, subject_id, limit=100, priority=priority)


def test_generation_is_claimed_before_training_then_priority_then_age(store):
    tune_id = _tune(store)
    first_train = _job(store, "train", tune_id)
    urgent_train = _job(store, "train", _tune(store, "b"), priority=-1)
    generate = _job(store, "generate", _prompt(store, tune_id))
    order = []
    while (job := store.claim_job()) is not None:
        order.append(job["id"])
    assert order == [generate, urgent_train, first_train]


def test_claim_marks_job_and_subject_running_with_one_more_attempt(store):
    tune_id = _tune(store)
    job_id = _job(store, "train", tune_id)
    job = store.claim_job()
    assert (job["id"], job["status"], job["attempts"]) == (job_id, TRAINING, 1)
    tune = store.get_tune(tune_id)
    assert tune["status"] == TRAINING and tune["started_training_at"]
    assert store.claim_job() is None


def test_a_subject_has_at_most_one_unfinished_job(store):
    tune_id = _tune(store)
    first = store.enqueue_job("train", tune_id, limit=10)
    assert store.enqueue_job("train", tune_id, limit=10) == first
    assert store.count_active_jobs() == 1


def test_queue_limit(store):
    assert store.enqueue_job("train", _tune(store, "a"), limit=1) is not None
    assert store.enqueue_job("train", _tune(store, "b"), limit=1) is None


def test_studio_refuses_jobs_beyond_the_limit_with_busy(tmp_path):
    from studio.config import Settings
    from studio.core import Studio

    studio = Studio.open(Settings(home=tmp_path / "home", queue_limit=1))
    try:
        studio.enqueue("train", _tune(studio.store, "a"))
        with pytest.raises(Busy, match="queue is full"):
            studio.enqueue("train", _tune(studio.store, "b"))
    finally:
        studio.close()


def test_progress_is_written_on_the_job_and_its_subject_with_an_eta(store):
    tune_id = _tune(store)
    _job(store, "train", tune_id)
    job = store.claim_job()
    context = JobContext(store, job)
    context.on_step(1, 4)
    job = store.get_job(job["id"])
    assert (job["step"], job["total"], job["progress"]) == (1, 4, 0.25)
    assert job["eta"].endswith("Z") and job["message"] == "step 1/4"
    tune = store.get_tune(tune_id)
    assert (tune["progress"], tune["message"]) == (0.25, "step 1/4")
    context.on_step(2, 4)  # throttled: within PROGRESS_INTERVAL of the last write
    assert store.get_job(job["id"])["step"] == 1
    context.on_step(4, 4)  # the last step is always written
    assert store.get_job(job["id"])["step"] == 4


def test_finish_mirrors_onto_the_subject_and_happens_once(store):
    tune_id = _tune(store)
    job_id = _job(store, "train", tune_id)
    store.claim_job()
    assert store.finish_job(job_id, SUCCESS)["status"] == SUCCESS
    assert store.finish_job(job_id, FAILED, "late") is None
    tune = store.get_tune(tune_id)
    assert (tune["status"], tune["progress"]) == (SUCCESS, 1.0) and tune["trained_at"]
    assert store.get_job(job_id)["finished_at"]


def test_canceling_a_queued_job_ends_it_at_once_and_it_never_starts(store):
    ran = []
    worker = Worker(store, {"train": lambda job, context: ran.append(job["id"])})
    tune_id = _tune(store)
    job_id = _job(store, "train", tune_id)
    assert store.cancel_job(job_id)["status"] == CANCELED
    assert store.get_tune(tune_id)["status"] == CANCELED
    assert worker.run_pending() == 0
    assert ran == []


def _stepping_handler(steps_done, started, total=10_000):
    """A handler that steps until asked to stop, like training does."""

    def handler(job, context):
        started.set()
        for step in range(1, total + 1):
            time.sleep(0.005)
            context.on_step(step, total)
            steps_done.append(step)
            if context.should_stop():
                return

    return handler


def test_canceling_a_running_job_stops_it_within_a_step(store):
    steps, started = [], threading.Event()
    finished = []
    worker = Worker(store, {"train": _stepping_handler(steps, started)}, on_finished=finished.append)
    job_id = _job(store)
    worker.start()
    try:
        assert started.wait(10)
        while len(steps) < 3:
            time.sleep(0.01)
        asked_at = len(steps)
        assert store.cancel_job(job_id)["cancel_requested"] == 1
        deadline = time.monotonic() + 10
        while store.get_job(job_id)["status"] == TRAINING and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        worker.stop()
    job = store.get_job(job_id)
    assert job["status"] == CANCELED
    assert len(steps) - asked_at <= 2
    assert [j["id"] for j in finished] == [job_id]


def test_handler_errors_fail_the_job_and_the_worker_goes_on(store):
    def broken(job, context):
        if job["subject_id"] == first_tune:
            raise InvalidInput("photo 3 is blurry: replace it", field="images")
        if job["subject_id"] == second_tune:
            raise KeyError("bug")

    worker = Worker(store, {"train": broken})
    first_tune, second_tune, third_tune = _tune(store, "a"), _tune(store, "b"), _tune(store, "c")
    ids = [_job(store, "train", t) for t in (first_tune, second_tune, third_tune)]
    assert worker.run_pending() == 3
    jobs = [store.get_job(i) for i in ids]
    assert [j["status"] for j in jobs] == [FAILED, FAILED, SUCCESS]
    assert jobs[0]["message"] == "photo 3 is blurry: replace it"
    assert "KeyError" in jobs[1]["message"] and "server log" in jobs[1]["message"]
    assert store.get_tune(first_tune)["message"] == "photo 3 is blurry: replace it"


def test_restart_requeues_a_running_job_once_then_fails_it(store):
    tune_id = _tune(store)
    job_id = _job(store, "train", tune_id)
    store.claim_job()  # attempt 1, then the process "dies"
    outcome = store.recover_interrupted_jobs(max_attempts=MAX_ATTEMPTS, message=RESTART_MESSAGE)
    assert [j["id"] for j in outcome["requeued"]] == [job_id]
    assert store.get_job(job_id)["status"] == QUEUING
    assert store.get_tune(tune_id)["status"] == QUEUING
    assert store.claim_job()["attempts"] == 2  # dies again
    outcome = store.recover_interrupted_jobs(max_attempts=MAX_ATTEMPTS, message=RESTART_MESSAGE)
    assert [j["id"] for j in outcome["failed"]] == [job_id]
    job, tune = store.get_job(job_id), store.get_tune(tune_id)
    assert (job["status"], job["message"]) == (FAILED, RESTART_MESSAGE)
    assert (tune["status"], tune["message"]) == (FAILED, RESTART_MESSAGE)


def test_restart_cancels_a_running_job_that_was_asked_to_stop(store):
    job_id = _job(store)
    store.claim_job()
    store.cancel_job(job_id)
    outcome = store.recover_interrupted_jobs(max_attempts=MAX_ATTEMPTS, message=RESTART_MESSAGE)
    assert [j["id"] for j in outcome["canceled"]] == [job_id]
    assert store.get_job(job_id)["status"] == CANCELED


def test_worker_thread_runs_jobs_as_they_are_queued(store):
    done = threading.Event()
    worker = Worker(store, {"train": lambda job, context: done.set()}, idle_poll=30)
    worker.start()
    try:
        _job(store)
        worker.notify()  # without it the worker would only look again after idle_poll
        assert done.wait(10)
    finally:
        worker.stop()
    assert store.count_jobs(SUCCESS) == 1


def test_stopping_the_worker_puts_the_running_job_back_without_using_an_attempt(store):
    steps, started = [], threading.Event()
    worker = Worker(store, {"train": _stepping_handler(steps, started)})
    job_id = _job(store)
    worker.start()
    assert started.wait(10)
    worker.stop()
    job = store.get_job(job_id)
    assert (job["status"], job["attempts"]) == (QUEUING, 0)
    assert "stopped" in job["message"]


def test_two_workers_never_run_the_same_job(store):
    ran, lock = [], threading.Lock()

    def handler(job, context):
        time.sleep(0.002)
        with lock:
            ran.append(job["id"])

    ids = [_job(store) for _ in range(30)]
    workers = [Worker(store, {"train": handler}) for _ in range(3)]
    threads = [threading.Thread(target=w.run_pending) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ran) == sorted(ids)


# -- callbacks -------------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, json.loads(body)))
        self.send_response(self.server.answer)
        self.end_headers()
        self.server.event.set()

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.received, server.event, server.answer = [], threading.Event(), 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_callback_posts_the_body_once_keeping_the_query_string(endpoint):
    sender = CallbackSender(allow_private=True)
    url = f"http://127.0.0.1:{endpoint.server_port}/hook?user_id=7&tune_id=3"
    assert sender.send(url, {"tune": {"id": 3}}).result(10) is True
    sender.close()
    assert endpoint.received == [("/hook?user_id=7&tune_id=3", {"tune": {"id": 3}})]


def test_a_failing_callback_is_not_retried(endpoint):
    endpoint.answer = 500
    sender = CallbackSender(allow_private=True)
    assert sender.send(f"http://127.0.0.1:{endpoint.server_port}/x", {"a": 1}).result(10) is False
    sender.close()
    assert len(endpoint.received) == 1


def test_private_callback_hosts_are_not_called_unless_allowed(endpoint):
    sender = CallbackSender(allow_private=False)
    assert sender.send(f"http://127.0.0.1:{endpoint.server_port}/x", {"a": 1}).result(10) is False
    sender.close()
    assert endpoint.received == []


def test_an_unreachable_callback_gives_up_after_its_timeout():
    sender = CallbackSender(allow_private=True, timeout=0.5)
    # a port nothing listens on (bound, never accepted, then closed)
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert sender.send(f"http://127.0.0.1:{port}/x", {}).result(10) is False
    sender.close()


@pytest.mark.parametrize("url", ["ftp://example.com/x", "example.com/hook", "http:///nohost"])
def test_callback_urls_must_be_http(url):
    with pytest.raises(InvalidInput) as error:
        check_callback_url(url, "callback")
    assert error.value.field == "callback"


def test_empty_callback_is_none():
    assert check_callback_url("  ") is None
    assert check_callback_url("https://example.com/h?x=1") == "https://example.com/h?x=1"
