"""Jobs: units of GPU work and their state machine (DESIGN.md §2).

QUEUING -> TRAINING -> SUCCESS, and QUEUING|TRAINING -> CANCELED|FAILED; a running job goes
back to QUEUING only when its worker stops or the process restarts. Every verb that changes a
job's state changes its subject's (the tune for 'train', the prompt for 'generate') `status`,
`progress` and `message` in the same transaction, so the two never disagree.
"""

from __future__ import annotations

from typing import Any

from storage.database import Records, marks, now
from storage.status import CANCELED, FAILED, FINISHED, QUEUING, SUCCESS, TRAINING

# What each job kind works on: the subject's table and its started / succeeded time columns.
_JOB_SUBJECTS = {
    "train": ("tunes", "started_training_at", "trained_at"),
    "generate": ("prompts", "started_at", "completed_at"),
}


class Jobs(Records):
    # -- rows ----------------------------------------------------------------------------------

    def add_job(self, kind: str, subject_id: int, *, priority: int = 0) -> int:
        """Insert a queued job with no checks; `enqueue_job` is the verb that keeps the limits."""
        stamp = now()
        return self._insert(
            "jobs",
            {"kind": kind, "subject_id": subject_id, "priority": priority, "created_at": stamp, "updated_at": stamp},
        )

    def get_job(self, job_id: int) -> dict | None:
        return self._get("jobs", job_id)

    def update_job(self, job_id: int, **fields: Any) -> None:
        self._update("jobs", job_id, fields)

    def latest_job(self, kind: str, subject_id: int) -> dict | None:
        """The most recent job for a tune ('train') or prompt ('generate'), or None."""
        return self._one(
            "SELECT * FROM jobs WHERE kind = ? AND subject_id = ? ORDER BY id DESC LIMIT 1", [kind, subject_id]
        )

    def tune_jobs(self, tune_id: int, *, unfinished: bool = True) -> list[dict]:
        """Jobs of a tune: its training and the generation of its prompts (unfinished only by
        default)."""
        where = "AND status IN ('QUEUING', 'TRAINING')" if unfinished else ""
        return self._query(
            "SELECT * FROM jobs WHERE ((kind = 'train' AND subject_id = ?) OR (kind = 'generate' AND subject_id IN "
            f"(SELECT id FROM prompts WHERE tune_id = ?))) {where} ORDER BY id",
            [tune_id, tune_id],
        )

    def jobs_with_status(self, status: str) -> list[dict]:
        """Jobs in `status`, in the order the queue would take them by priority and age."""
        return self._query("SELECT * FROM jobs WHERE status = ? ORDER BY priority, id", [status])

    def count_jobs(self, status: str) -> int:
        return self._scalar("SELECT COUNT(*) FROM jobs WHERE status = ?", [status])

    def count_active_jobs(self) -> int:
        """Jobs waiting or running."""
        return self._scalar("SELECT COUNT(*) FROM jobs WHERE status IN (?, ?)", [QUEUING, TRAINING])

    def jobs_ahead(self, job_id: int) -> int:
        """How many unfinished jobs were queued before this one (the one running included)."""
        return self._scalar("SELECT COUNT(*) FROM jobs WHERE status IN (?, ?) AND id < ?", [QUEUING, TRAINING, job_id])

    def cancel_requested(self, job_id: int) -> bool:
        """Whether someone asked the running job to stop (its worker checks at every step)."""
        return bool(self._scalar("SELECT cancel_requested FROM jobs WHERE id = ?", [job_id]))

    # -- the state machine ---------------------------------------------------------------------

    def enqueue_job(self, kind: str, subject_id: int, *, limit: int, priority: int = 0) -> int | None:
        """Queue a job unless `limit` jobs are already waiting or running; None when full. A
        subject that already has a queued or running job keeps it (its id is returned), so two
        callers racing to queue the same prompt make one job."""
        if kind not in _JOB_SUBJECTS:
            raise ValueError(f"unknown job kind {kind!r}")
        with self._write_transaction():
            existing = self._scalar(
                "SELECT id FROM jobs WHERE kind = ? AND subject_id = ? AND status IN (?, ?)",
                [kind, subject_id, QUEUING, TRAINING],
            )
            if existing is not None:
                return existing
            if self.count_active_jobs() >= limit:
                return None
            return self.add_job(kind, subject_id, priority=priority)

    def claim_job(self) -> dict | None:
        """Take the next queued job and mark it TRAINING with one more attempt; None when the
        queue is empty. Generation comes before training, then lower `priority`, then age. One
        UPDATE picks and marks the job, so two workers (threads or processes) never share one."""
        stamp = now()
        with self._lock, self.db.atomic():
            job = self._one(
                "UPDATE jobs SET status = ?, attempts = attempts + 1, step = 0, total = 0, progress = 0, "
                "message = NULL, eta = NULL, started_at = ?, updated_at = ? WHERE id = ("
                "  SELECT id FROM jobs WHERE status = ? ORDER BY kind != 'generate', priority, id LIMIT 1"
                ") RETURNING *",
                [TRAINING, stamp, stamp, QUEUING],
            )
            if job is not None:
                table, started, _ = _JOB_SUBJECTS[job["kind"]]
                self.db.execute(
                    f"UPDATE {table} SET status = ?, progress = 0, message = NULL, {started} = ?, updated_at = ? "
                    "WHERE id = ?",
                    [TRAINING, stamp, stamp, job["subject_id"]],
                )
        return job

    def job_progress(self, job_id: int, *, step: int, total: int, message: str | None, eta: str | None) -> None:
        """Record a running job's progress (`step` of `total`) on the job and its subject."""
        progress = min(1.0, step / total) if total > 0 else 0.0
        stamp = now()
        with self._lock, self.db.atomic():
            job = self._one(
                "UPDATE jobs SET step = ?, total = ?, progress = ?, message = ?, eta = ?, updated_at = ? "
                "WHERE id = ? AND status = ? RETURNING kind, subject_id",
                [step, total, progress, message, eta, stamp, job_id, TRAINING],
            )
            if job is not None:
                table = _JOB_SUBJECTS[job["kind"]][0]
                self.db.execute(
                    f"UPDATE {table} SET progress = ?, message = ?, updated_at = ? WHERE id = ?",
                    [progress, message, stamp, job["subject_id"]],
                )

    def finish_job(
        self, job_id: int, status: str, message: str | None = None, *, only_from: tuple[str, ...] = (QUEUING, TRAINING)
    ) -> dict | None:
        """End a job that is in one of `only_from` with SUCCESS, FAILED or CANCELED, and its
        subject likewise (progress 1 and the subject's finished time on SUCCESS). Returns the job
        as it now is, or None when it was not in `only_from` (so a job finishes only once)."""
        if status not in FINISHED:
            raise ValueError(f"{status!r} is not a finished status")
        stamp = now()
        with self._lock, self.db.atomic():
            job = self._one(
                "UPDATE jobs SET status = ?, message = ?, finished_at = ?, updated_at = ?, eta = NULL, "
                "progress = CASE WHEN ? = ? THEN 1 ELSE progress END "
                f"WHERE id = ? AND status IN ({marks(only_from)}) RETURNING *",
                [status, message, stamp, stamp, status, SUCCESS, job_id, *only_from],
            )
            if job is not None:
                table, _, finished = _JOB_SUBJECTS[job["kind"]]
                done = f", {finished} = ?, progress = 1" if status == SUCCESS else ""
                self.db.execute(
                    f"UPDATE {table} SET status = ?, message = ?, updated_at = ?{done} WHERE id = ?",
                    [status, message, stamp, *([stamp] if done else []), job["subject_id"]],
                )
        return job

    def fail_unstarted_prompts(self, prompt_ids: list[int], message: str) -> list[int]:
        """End those of these prompts that have not started FAILED with `message`: a queued
        prompt with its job, a prompt waiting for its tune (no job yet) alone. Running and
        finished prompts are left as they are. Returns the ids of the prompts failed."""
        failed = []
        stamp = now()
        with self._write_transaction():
            for prompt_id in prompt_ids:
                job_id = self._scalar(
                    "SELECT id FROM jobs WHERE kind = 'generate' AND subject_id = ? AND status = ?",
                    [prompt_id, QUEUING],
                )
                if job_id is not None:
                    done = self.finish_job(job_id, FAILED, message, only_from=(QUEUING,)) is not None
                else:
                    done = self.db.execute(
                        "UPDATE prompts SET status = ?, message = ?, updated_at = ? WHERE id = ? AND status = ? "
                        "AND id NOT IN (SELECT subject_id FROM jobs WHERE kind = 'generate' AND status IN (?, ?))",
                        [FAILED, message, stamp, prompt_id, QUEUING, QUEUING, TRAINING],
                    ).rowcount
                if done:
                    failed.append(prompt_id)
        return failed

    def cancel_job(self, job_id: int) -> dict | None:
        """Cancel a job. A queued one is CANCELED at once (with its subject); a running one is
        flagged and stopped by its worker at its next step. Returns the job as it now is."""
        with self._write_transaction():
            if self.finish_job(job_id, CANCELED, "canceled", only_from=(QUEUING,)) is None:
                self.db.execute(
                    "UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ? AND status = ?",
                    [now(), job_id, TRAINING],
                )
            return self.get_job(job_id)

    def requeue_job(self, job_id: int, message: str, *, count_attempt: bool = False) -> dict | None:
        """Put a running job back in the queue, its subject too. Unless `count_attempt`, the
        attempt is given back (the worker stopped it for a shutdown; it did not fail)."""
        stamp = now()
        with self._lock, self.db.atomic():
            job = self._one(
                "UPDATE jobs SET status = ?, attempts = MAX(attempts - ?, 0), message = ?, eta = NULL, updated_at = ? "
                "WHERE id = ? AND status = ? RETURNING *",
                [QUEUING, 0 if count_attempt else 1, message, stamp, job_id, TRAINING],
            )
            if job is not None:
                table = _JOB_SUBJECTS[job["kind"]][0]
                self.db.execute(
                    f"UPDATE {table} SET status = ?, progress = 0, message = ?, updated_at = ? WHERE id = ?",
                    [QUEUING, message, stamp, job["subject_id"]],
                )
        return job

    def recover_interrupted_jobs(self, *, max_attempts: int, message: str) -> dict[str, list[dict]]:
        """Deal with jobs left TRAINING by a process that died: those asked to cancel become
        CANCELED, those with fewer than `max_attempts` attempts go back to the queue (their
        subjects too), the rest FAILED with `message`. Call only from the process that owns the
        queue, before its worker starts. Returns the jobs by what happened to them."""
        outcome: dict[str, list[dict]] = {"canceled": [], "requeued": [], "failed": []}
        with self._write_transaction():
            for job in self._query("SELECT * FROM jobs WHERE status = ? ORDER BY id", [TRAINING]):
                if job["cancel_requested"]:
                    outcome["canceled"].append(self.finish_job(job["id"], CANCELED, "canceled"))
                elif job["attempts"] < max_attempts:
                    outcome["requeued"].append(
                        self.requeue_job(job["id"], "re-queued after a restart", count_attempt=True)
                    )
                else:
                    outcome["failed"].append(self.finish_job(job["id"], FAILED, message))
        return outcome
