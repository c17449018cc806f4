"""The persistent job queue: training and generation jobs in SQLite, run by one worker per GPU.

Status machine (DESIGN.md §2): QUEUING -> TRAINING -> SUCCESS | FAILED | CANCELED. The queue is
the `jobs` table; every state change also lands on the job's subject (a tune for 'train', a
prompt for 'generate') in the same transaction (see `Store.claim_job` and friends).

- `JobRunner` is the seam: the in-process `Worker` (one thread) is the default; a runner that
  hands the same handlers to a distributed engine (Ray) can replace it while the studio keeps the
  database (DESIGN.md §8). Handlers never assume which thread or process runs them.
- A handler is `handler(job, context)`; it reports progress with `context.on_step(step, total)`
  and polls `context.should_stop()` between steps (cancel is cooperative). Returning means
  SUCCESS, raising means FAILED (a `StudioError`'s message is kept for the person to read; other
  errors are logged with their traceback), and a stop that was asked for means CANCELED.
- A job left TRAINING by a process that died is re-queued once at the next start, then failed
  with "interrupted by a restart" (`MAX_ATTEMPTS`). A job whose remote worker died under it
  (`WorkerLost`, studio/ray_runner.py) is re-queued once the same way, then failed with why.
- Callbacks are POSTed once, from a small thread pool, so a slow or dead endpoint never holds up
  the worker, to the address checked when sent and within one deadline each; failures are
  logged and not retried (Astria does not retry either).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

from storage import Store
from storage.status import CANCELED, FAILED, QUEUING, SUCCESS
from studio.errors import InvalidInput, StudioError
from studio.fetch import (
    USER_AGENT,
    RefusedAddress,
    Resolver,
    checked_address,
    default_port,
    network_errors,
    pinned_pool,
    request_url,
    resolve,
)

log = logging.getLogger(__name__)

#: A job runs at most this many times: the first run plus one re-queue after a restart.
MAX_ATTEMPTS = 2
RESTART_MESSAGE = "interrupted by a restart"
#: Progress is written at most this often (seconds), and always at the first and last step.
PROGRESS_INTERVAL = 0.5
#: How long an idle worker sleeps before looking at the queue again when nothing woke it (jobs
#: queued by another process do not wake it).
IDLE_POLL = 1.0
#: How often the worker runs its housekeeping (the expired-tune sweep): daily.
HOUSEKEEPING_EVERY = 24 * 3600.0


class JobContext:
    """What a handler gets beside its job: progress reporting and the cooperative stop check."""

    def __init__(self, store: Store, job: dict, *, stopping: threading.Event | None = None):
        self.store = store
        self.job = job
        self.stop_seen = False
        self._stopping = stopping or threading.Event()
        self._started = time.monotonic()
        self._last_write = 0.0
        self._steps_before: int | None = None  # steps done before this run (a resumed training)

    def on_step(self, step: int, total: int, message: str | None = None) -> None:
        """Record that `step` of `total` is done (1-based), with an ETA from the pace so far (a
        run that starts past step 1, resumed from a checkpoint, is paced from its first step).
        Writes are throttled to one per PROGRESS_INTERVAL, except the first and last step."""
        now = time.monotonic()
        if self._steps_before is None:
            self._steps_before = step - 1
        if 1 < step < total and now - self._last_write < PROGRESS_INTERVAL:
            return
        self._last_write = now
        eta = None
        if 0 < step <= total:
            remaining = (now - self._started) / max(1, step - self._steps_before) * (total - step)
            eta = (datetime.now(UTC) + timedelta(seconds=remaining)).isoformat(timespec="seconds")
            eta = eta.replace("+00:00", "Z")
        self.store.job_progress(
            self.job["id"], step=step, total=total, message=message or f"step {step}/{total}", eta=eta
        )

    def should_stop(self) -> bool:
        """True once the job was canceled (from any thread or process) or the worker is stopping;
        the handler then stops at its next step."""
        if not self.stop_seen and (self._stopping.is_set() or self.store.cancel_requested(self.job["id"])):
            self.stop_seen = True
        return self.stop_seen


Handler = Callable[[dict, JobContext], None]


class WorkerLost(StudioError):
    """The worker running a job went away mid-job (a Ray actor crashed, its node was lost): the
    job did not fail on its own, so it is re-queued once (a training resumes from the last
    checkpoint it streamed back) and only then failed with this message."""

    status = 503


class JobRunner(Protocol):
    """What the studio needs from whatever runs its jobs."""

    def start(self) -> None:
        """Recover jobs a dead process left running, then start taking jobs."""
        ...

    def notify(self) -> None:
        """A job was queued: look at the queue now rather than at the next poll."""
        ...

    def run_pending(self) -> int:
        """Run queued jobs in the calling thread until none is left; returns how many ran."""
        ...

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking jobs; a running job is stopped at its next step and queued again."""
        ...


class Worker:
    """The in-process runner: one thread taking jobs from the queue, one at a time.

    `handlers` maps a job kind ('train', 'generate') to its handler; `on_finished(job)` is called
    (in the worker thread) with each job the worker finished, after its status is written.
    `housekeeping()` (e.g. deleting expired tunes) runs in the worker thread between jobs, once
    when it starts and then every `housekeeping_every` seconds; its errors are logged.
    `threads` > 1 takes that many jobs at once (a runner whose heavy work runs elsewhere, one
    thread per remote worker; the queue's order decides which job each thread takes next)."""

    def __init__(
        self,
        store: Store,
        handlers: Mapping[str, Handler],
        *,
        on_finished: Callable[[dict], None] | None = None,
        idle_poll: float = IDLE_POLL,
        housekeeping: Callable[[], None] | None = None,
        housekeeping_every: float = HOUSEKEEPING_EVERY,
        threads: int = 1,
    ):
        self.store = store
        self.handlers = dict(handlers)
        self.on_finished = on_finished
        self.idle_poll = idle_poll
        self.housekeeping = housekeeping
        self.housekeeping_every = housekeeping_every
        self._next_housekeeping = 0.0  # monotonic time; 0: at the first turn of the loop
        self._housekeeping_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.threads = threads
        self._threads: list[threading.Thread] = []

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def start(self) -> None:
        if self.running:
            return
        outcome = self.store.recover_interrupted_jobs(max_attempts=MAX_ATTEMPTS, message=RESTART_MESSAGE)
        for name, jobs in outcome.items():
            for job in jobs:
                log.warning(
                    "job %s (%s %s) left running by a previous process: %s",
                    job["id"],
                    job["kind"],
                    job["subject_id"],
                    name,
                )
                if job["status"] != QUEUING:
                    self._finished(job)
        self._stopping.clear()
        self._threads = [
            threading.Thread(target=self._loop, name=f"studio-worker-{n}", daemon=True) for n in range(self.threads)
        ]
        for thread in self._threads:
            thread.start()

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("the job worker did not stop within %.0f s", timeout)
        self._threads = []

    def run_pending(self) -> int:
        count = 0
        while self.run_one():
            count += 1
        return count

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            self._housekeep()
            try:
                worked = self.run_one()
            except Exception:  # the worker must outlive a bug in one job's bookkeeping
                log.exception("the job worker hit an error; it goes on with the next job")
                worked = False
            if not worked:
                self._wake.wait(self.idle_poll)

    def _housekeep(self) -> None:
        """Run `housekeeping` when it is due (a time check: it runs between jobs, never during one)."""
        if self.housekeeping is None or time.monotonic() < self._next_housekeeping:
            return
        if not self._housekeeping_lock.acquire(blocking=False):  # another thread runs it
            return
        try:
            self._run_housekeeping()
        finally:
            self._housekeeping_lock.release()

    def _run_housekeeping(self) -> None:
        if time.monotonic() < self._next_housekeeping:
            return
        self._next_housekeeping = time.monotonic() + self.housekeeping_every
        try:
            self.housekeeping()
        except Exception:  # a failed sweep runs again when next due; it must not stop the jobs
            log.exception("the worker's housekeeping failed")

    def run_one(self) -> bool:
        """Claim and run the next job; False when the queue is empty."""
        if self._stopping.is_set():
            return False
        job = self.store.claim_job()
        if job is None:
            return False
        log.info("job %s: %s %s (attempt %s)", job["id"], job["kind"], job["subject_id"], job["attempts"])
        context = JobContext(self.store, job, stopping=self._stopping)
        status, message = SUCCESS, None
        try:
            self.handlers[job["kind"]](job, context)
        except WorkerLost as lost:
            if self.store.cancel_requested(job["id"]):
                context.stop_seen = True  # it was being canceled anyway
            elif job["attempts"] < MAX_ATTEMPTS:
                log.warning("job %s: %s; re-queued", job["id"], lost.message)
                self.store.requeue_job(job["id"], f"re-queued: {lost.message}", count_attempt=True)
                self._wake.set()
                return True
            status, message = FAILED, f"{lost.message} (twice: it was re-queued once already)"
        except Exception as error:
            status, message = FAILED, _failure_message(job, error)
        if context.stop_seen and self._stopping.is_set() and not self.store.cancel_requested(job["id"]):
            self.store.requeue_job(job["id"], "re-queued: the studio stopped while it ran")
            return True
        if context.stop_seen:
            status, message = CANCELED, "canceled"
        finished = self.store.finish_job(job["id"], status, message)
        if finished is not None:
            log.info("job %s: %s%s", job["id"], status, f" ({message})" if message else "")
            self._finished(finished)
        return True

    def _finished(self, job: dict) -> None:
        if self.on_finished is None:
            return
        try:
            self.on_finished(job)
        except Exception:  # follow-ups (callbacks, queued prompts) must not take the worker down
            log.exception("job %s: the follow-up after it finished failed", job["id"])


def _failure_message(job: dict, error: Exception) -> str:
    if isinstance(error, StudioError):
        return error.message
    log.error("job %s (%s %s) failed", job["id"], job["kind"], job["subject_id"], exc_info=error)
    # Only the type: the error's text may name server paths, and API clients read this message.
    return f"{type(error).__name__} (a bug: the server log has the details)"


# -- callbacks -------------------------------------------------------------------------------


def check_callback_url(
    url: str | None, field: str = "callback", *, allow_private: bool = False, resolver: Resolver = resolve
) -> str | None:
    """The callback URL if it is a usable http(s) address, None when empty; InvalidInput naming
    `field` otherwise, also when (unless `allow_private`) its host is or resolves to a private
    or loopback address. A host that does not resolve now is accepted: it is resolved and
    checked again when the callback is sent, and connected to only at the address checked."""
    if url is None or not str(url).strip():
        return None
    url = str(url).strip()
    parts = urlsplit(url)
    try:
        port = default_port(url)
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None or len(url) > 2000:
        raise InvalidInput(f"{field} {url!r} must be an http or https URL", field=field)
    if not allow_private:
        try:
            checked_address(parts.hostname, port, resolver=resolver)
        except RefusedAddress as refused:
            if refused.private:
                raise InvalidInput(
                    f"{field} {url!r} is refused: {refused.reason}; the studio only calls public addresses "
                    "back (STUDIO_ALLOW_PRIVATE_URLS=1 allows others)",
                    field=field,
                ) from None
    return url


class CallbackSender:
    """POSTs JSON bodies to callback URLs once each, from a small thread pool, within a deadline.

    The query string is kept as given (clients put their own ids there). The host is resolved
    once when the callback is sent (`resolver`, the system's by default) and, unless
    `allow_private`, not called when any address it resolves to is private or loopback (the
    studio must not become a way into the private network); the POST then goes to the address
    that was checked, with the URL's host as Host header and TLS server name. Failures are
    logged only.

    `timeout` (seconds) is one deadline for each callback as a whole — connecting, sending and
    reading the answer — so an endpoint that accepts and never answers, or drips its answer a
    byte at a time, costs one pool thread that long, never the job worker, and `close` waits at
    most that long for the callbacks still queued."""

    def __init__(
        self, *, allow_private: bool = False, timeout: float = 10.0, max_workers: int = 2, resolver: Resolver = resolve
    ):
        self.allow_private = allow_private
        self.timeout = timeout
        self.resolver = resolver
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="studio-callback")
        self._pending: set[Future] = set()
        self._pending_lock = threading.Lock()

    def send(self, url: str, body: Any) -> Future:
        """Queue one POST; the future's result is True when the endpoint answered 2xx."""
        future = self._pool.submit(self._post, url, body)
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)
        return future

    def close(self, wait: bool = True) -> None:
        """Stop taking callbacks. With `wait`, give the queued ones up to `timeout` seconds in
        all to go out (a pool of hung endpoints must not hold up a shutdown); those not started
        by then are dropped with a warning, and those running end by their own deadline."""
        self._pool.shutdown(wait=False)
        if wait:
            with self._pending_lock:
                pending = set(self._pending)
            _, late = futures_wait(pending, timeout=self.timeout)
            if late:
                log.warning("%d callback(s) did not finish before the studio stopped; dropped", len(late))
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _forget(self, future: Future) -> None:
        with self._pending_lock:
            self._pending.discard(future)

    def _post(self, url: str, body: Any) -> bool:
        deadline = time.monotonic() + self.timeout
        try:
            host, port = urlsplit(url).hostname or "", default_port(url)
            address = checked_address(host, port, allow_private=self.allow_private, resolver=self.resolver)
        except RefusedAddress as refused:
            hint = " (set STUDIO_ALLOW_PRIVATE_URLS=1 to allow it)" if refused.private else ""
            log.warning("callback %s not called: %s%s", url, refused.reason, hint)
            return False
        except ValueError as error:
            log.warning("callback %s not called: %s", url, error)
            return False
        content = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "*/*", "User-Agent": USER_AGENT}
        try:
            with (
                pinned_pool(address, deadline) as pool,
                pool.stream("POST", request_url(url), headers=headers, content=content) as response,
            ):
                status = response.status  # the answer's body is not needed
        except (*network_errors(), ValueError) as error:
            late = " (its deadline passed)" if time.monotonic() >= deadline else ""
            log.warning("callback %s failed%s: %s", url, late, str(error) or type(error).__name__)
            return False
        if not 200 <= status < 300:
            log.warning("callback %s answered HTTP %s", url, status)
            return False
        log.info("callback %s answered HTTP %s", url, status)
        return True
