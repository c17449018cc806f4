"""Checkpoints: the LoRA weights a training saves every N steps, each with a sample image and
the state a killed training resumes from (m031, m070)."""

from __future__ import annotations

from typing import Any

from storage.database import insert_sql, now
from storage.records.paths import Paths


class Checkpoints(Paths):
    def add_checkpoint(self, checkpoint: dict) -> int:
        """Record a checkpoint (tune_id, step, weights_path, sample_path, loss); a second one for
        the same step (a re-run) replaces the first."""
        record = {"created_at": now(), **checkpoint}
        sql, values = insert_sql("checkpoints", record)
        updates = ", ".join(f"{name} = excluded.{name}" for name in record if name not in ("tune_id", "step"))
        with self._lock, self.db.atomic():
            return self.db.execute(
                f"{sql} ON CONFLICT(tune_id, step) DO UPDATE SET {updates} RETURNING id", values
            ).fetchone()[0]

    def tune_checkpoints(self, tune_id: int) -> list[dict]:
        """The tune's checkpoints by step."""
        return self._query("SELECT * FROM checkpoints WHERE tune_id = ? ORDER BY step", [tune_id])

    def get_checkpoint(self, tune_id: int, step: int) -> dict | None:
        return self._one("SELECT * FROM checkpoints WHERE tune_id = ? AND step = ?", [tune_id, step])

    def update_checkpoint(self, checkpoint_id: int, **fields: Any) -> None:
        self._update("checkpoints", checkpoint_id, fields, touch=False)

    def clear_checkpoints(self, tune_id: int, *, after_step: int = 0) -> list[str]:
        """Forget a tune's checkpoints after `after_step` (all by default: before it trains
        again; those a resumed training will write again otherwise); returns the file paths that
        no row refers to any more, for the caller to delete."""
        with self._write_transaction():
            rows = [r for r in self.tune_checkpoints(tune_id) if r["step"] > after_step]
            self.db.execute("DELETE FROM checkpoints WHERE tune_id = ? AND step > ?", [tune_id, after_step])
            return self.unreferenced([p for r in rows for p in checkpoint_paths(r)])

    def drop_resume_states(self, tune_id: int) -> list[str]:
        """Forget the resume states of a tune's checkpoints (its training ended, so nothing will
        resume from them); returns the file paths no row refers to any more, to delete."""
        with self._write_transaction():
            rows = self.tune_checkpoints(tune_id)
            self.db.execute("UPDATE checkpoints SET resume_path = NULL WHERE tune_id = ?", [tune_id])
            return self.unreferenced([r["resume_path"] for r in rows if r["resume_path"]])


def checkpoint_paths(row: dict) -> list[str]:
    """The file-store paths a checkpoint row names: weights, sample, resume state."""
    return [p for p in (row["weights_path"], row["sample_path"], row.get("resume_path")) if p]
