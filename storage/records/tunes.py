"""Tunes: user fine-tunes and the gallery's base models, which are tune rows with model_type
'checkpoint' so both share one id space (migration m001)."""

from __future__ import annotations

from typing import Any

from storage.database import Records, insert_sql, now
from storage.status import SUCCESS


class Tunes(Records):
    # -- base models ---------------------------------------------------------------------------

    def upsert_base_model(self, model: dict) -> None:
        """Insert or refresh one gallery entry: id, title, family, source, scheduler, embedded."""
        stamp = now()
        sql, values = insert_sql(
            "tunes",
            {
                "id": model["id"],
                "title": model["title"],
                "name": model.get("name"),
                "model_type": "checkpoint",
                "family": model["family"],
                "source": model["source"],
                "scheduler": model.get("scheduler"),
                "embedded": int(bool(model.get("embedded"))),
                "status": SUCCESS,
                "progress": 1.0,
                "created_at": stamp,
                "updated_at": stamp,
                "trained_at": stamp,
            },
        )
        with self._lock, self.db.atomic():
            self.db.execute(
                f"{sql} ON CONFLICT(id) DO UPDATE SET title = excluded.title, name = excluded.name, "
                "family = excluded.family, source = excluded.source, scheduler = excluded.scheduler, "
                "embedded = excluded.embedded, updated_at = excluded.updated_at",
                values,
            )

    def list_base_models(self) -> list[dict]:
        """The gallery: embedded models first, then by id."""
        return self._rows("tunes", "model_type = 'checkpoint'", order_by="embedded DESC, id")

    # -- user tunes ----------------------------------------------------------------------------

    def add_tune(self, tune: dict) -> int:
        """Insert a tune; `tune` holds column values (JSON columns as dicts). Returns its id."""
        stamp = now()
        return self._insert("tunes", {"created_at": stamp, "updated_at": stamp, **tune})

    def add_tune_unless_titled(self, tune: dict) -> tuple[int, bool]:
        """Insert a tune unless its owner has one with its title. Returns (id, created): the
        existing tune's id and False when the title is taken, so a repeated request is
        idempotent even when two arrive at once."""
        stamp = now()
        sql, values = insert_sql("tunes", {"created_at": stamp, "updated_at": stamp, **tune})
        with self._lock, self.db.atomic():
            row = self.db.execute(f"{sql} ON CONFLICT(owner, title) DO NOTHING RETURNING id", values).fetchone()
            if row is not None:
                return row[0], True
            owner = tune.get("owner", "local")
            return self._scalar("SELECT id FROM tunes WHERE owner = ? AND title = ?", [owner, tune["title"]]), False

    def get_tune(self, tune_id: int) -> dict | None:
        return self._get("tunes", tune_id)

    def find_tune_by_title(self, title: str, owner: str) -> dict | None:
        """`owner`'s tune (or base model, for 'local') with this title: titles are unique per owner."""
        return self._one("SELECT * FROM tunes WHERE owner = ? AND title = ?", [owner, title])

    def list_tunes(
        self, *, limit: int = 100, offset: int = 0, before_id: int | None = None, owner: str | None = None
    ) -> list[dict]:
        """User tunes (not base models), newest first; only `owner`'s when given."""
        return self._rows(
            "tunes",
            "model_type != 'checkpoint'",
            ("id < ?", before_id),
            ("owner = ?", owner),
            order_by="id DESC",
            limit=limit,
            offset=offset,
        )

    def update_tune(self, tune_id: int, **fields: Any) -> None:
        self._update("tunes", tune_id, fields)

    def delete_tune(self, tune_id: int) -> None:
        """Delete the tune row; prompts, images, likes and photo links cascade."""
        self._delete("tunes", tune_id)

    def expired_tunes(self, at: str) -> list[int]:
        """Ids of the user tunes whose `expires_at` is at or before `at` (a `now()` timestamp;
        the ISO form with a Z sorts as text in time order), oldest first."""
        rows = self._query(
            "SELECT id FROM tunes WHERE model_type != 'checkpoint' AND expires_at IS NOT NULL "
            "AND expires_at <= ? ORDER BY expires_at, id",
            [at],
        )
        return [row["id"] for row in rows]

    def claim_prompts_callback(self, tune_id: int) -> str | None:
        """The tune's prompts callback URL, exactly once: the first caller gets it (and marks it
        sent), every later caller gets None."""
        return self._scalar(
            "UPDATE tunes SET prompts_callback_sent_at = ? WHERE id = ? AND prompts_callback IS NOT NULL "
            "AND prompts_callback_sent_at IS NULL RETURNING prompts_callback",
            [now(), tune_id],
        )
