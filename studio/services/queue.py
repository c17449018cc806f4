"""The job queue as the studio uses it: jobs enqueued (with the queue limit) and waited for,
the worker started, and what follows a finished job — a trained tune's waiting prompts queued
(or failed with it), and the tune, prompt and pack-run callbacks posted."""

from __future__ import annotations

import shutil
import time

from storage import FileStore, Store
from studio.config import Settings
from studio.domain import CANCELED, FAILED, FINISHED, SUCCESS
from studio.errors import Busy
from studio.jobs import CallbackSender, JobRunner
from studio.services.views import Views


class JobQueue:
    def __init__(self, settings: Settings, store: Store, files: FileStore, views: Views):
        self.settings = settings
        self.store = store
        self.files = files
        self.views = views
        self.callbacks = CallbackSender(allow_private=settings.allow_private_urls)
        # The runner (studio/jobs.py's Worker by default) needs the job handlers of services
        # built after this one, so the studio attaches it once everything is wired.
        self.worker: JobRunner | None = None

    def close(self) -> None:
        """Stop the worker (a running job goes back to the queue), then send the callbacks
        already queued."""
        if self.worker is not None:
            self.worker.stop()
        self.callbacks.close()

    def start_worker(self) -> None:
        """Recover the jobs a previous process left running, then run queued jobs in a
        background thread until `close()`. app.py calls this once at start-up."""
        # Scratch folders are training runs of the process that owns the queue; at its start
        # none runs, so any left are from a process that was killed.
        for folder in self.files.scratch_dir().parent.iterdir():
            shutil.rmtree(folder, ignore_errors=True)
        self.worker.start()

    def run_pending(self) -> int:
        """Run every queued job in the calling thread; returns how many ran (tests, scripts)."""
        return self.worker.run_pending()

    def enqueue(self, kind: str, subject_id: int) -> int:
        """Queue a 'train' (tune) or 'generate' (prompt) job and wake the worker. Raises Busy
        when STUDIO_QUEUE_LIMIT jobs are already waiting or running."""
        job_id = self.store.enqueue_job(kind, subject_id, limit=self.settings.queue_limit)
        if job_id is None:
            raise Busy(f"The job queue is full ({self.settings.queue_limit} jobs waiting or running); try again later.")
        self.worker.notify()
        return job_id

    def queue_prompt(self, prompt_id: int) -> None:
        """Queue a stored prompt for generation: now when its tune is ready, else it waits
        (QUEUING, no job) and is queued when the tune reaches SUCCESS, or fails with the tune."""
        prompt = self.store.get_prompt(prompt_id)
        tune = self.store.get_tune(prompt["tune_id"])
        if tune["status"] == SUCCESS:
            self.enqueue("generate", prompt_id)
        elif tune["status"] in (FAILED, CANCELED):
            self._fail_waiting_prompt(prompt_id, tune)

    def job_finished(self, job: dict) -> None:
        if job["kind"] == "train":
            self.tune_finished(job["subject_id"])
        else:
            self.prompt_finished(job["subject_id"])

    def tune_finished(self, tune_id: int) -> None:
        """A tune reached SUCCESS, FAILED or CANCELED: its checkpoints' resume states are dropped,
        its waiting prompts are queued (or end with it) and its callback is posted."""
        tune = self.store.get_tune(tune_id)
        if tune is None:
            return
        # Resume states only serve an unfinished training; they are a few times the LoRA's size.
        for path in self.store.drop_resume_states(tune_id):
            self.files.delete(path)
        for prompt in self.store.waiting_prompts(tune_id):
            if tune["status"] != SUCCESS:
                self._fail_waiting_prompt(prompt["id"], tune)
                continue
            try:
                self.enqueue("generate", prompt["id"])
            except Busy as error:
                self.store.update_prompt(prompt["id"], status=FAILED, message=error.message)
                self.prompt_finished(prompt["id"])
        if tune["callback"]:
            self.callbacks.send(tune["callback"], {"tune": self.views.tune_json(tune_id)})

    def _fail_waiting_prompt(self, prompt_id: int, tune: dict) -> None:
        status = CANCELED if tune["status"] == CANCELED else FAILED
        reason = f": {tune['message']}" if tune["message"] else ""
        self.store.update_prompt(prompt_id, status=status, message=f"tune {tune['id']} {tune['status']}{reason}")
        self.prompt_finished(prompt_id)

    def prompt_finished(self, prompt_id: int) -> None:
        """Post the prompt's callback, and the tune's prompts callback once all the prompts
        created with the tune are done."""
        prompt = self.store.get_prompt(prompt_id)
        if prompt is None:
            return
        if prompt["callback"]:
            self.callbacks.send(prompt["callback"], {"prompt": self.views.prompt_json(prompt_id)})
        self.send_prompts_callback(prompt["tune_id"])
        if prompt.get("run_id"):
            self.send_run_callback(prompt["run_id"])

    def send_run_callback(self, run_id: int) -> None:
        """Post a pack run's prompts callback (`run_pack`) once all its prompts are done."""
        prompts = self.store.run_prompts(run_id)
        if prompts and all(p["status"] in FINISHED for p in prompts):
            url = self.store.claim_run_callback(run_id)
            if url:
                self.callbacks.send(url, [self.views.prompt_json(p["id"]) for p in prompts])

    def send_prompts_callback(self, tune_id: int) -> None:
        tune = self.store.get_tune(tune_id)
        if tune is None or not tune["prompts_callback"] or tune["prompts_callback_sent_at"]:
            return
        ids = (tune["args"] or {}).get("prompt_ids")
        if not ids:  # no prompts, or they are still being created
            return
        prompts = [p for p in (self.store.get_prompt(i) for i in ids) if p is not None]
        if all(p["status"] in FINISHED for p in prompts):
            url = self.store.claim_prompts_callback(tune_id)
            if url:
                self.callbacks.send(url, [self.views.prompt_json(p["id"]) for p in prompts])

    def wait_for_job(self, job_id: int, timeout: float) -> bool:
        """Wait (polling the database, as the job may run in another process) until the job
        finished; False when `timeout` seconds passed first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.store.get_job(job_id)
            if job is None or job["status"] in FINISHED:
                return True
            time.sleep(0.05)
        return False
