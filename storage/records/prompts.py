"""Prompts and their images: one generation request each, the images a run made, the runs that
group prompts for one callback (m065), and the gallery that lists them."""

from __future__ import annotations

import json
from typing import Any

from storage.database import Records, marks, now, where
from storage.status import QUEUING, SUCCESS, TRAINING

# Gallery filters on likeness (m060 columns): some image shows the subject, or images were
# scored and none does.
_LIKENESS_FILTERS = {
    "match": "EXISTS (SELECT 1 FROM images WHERE images.prompt_id = prompts.id AND images.likeness_match = 1)",
    "miss": "EXISTS (SELECT 1 FROM images WHERE images.prompt_id = prompts.id AND images.likeness_match = 0) "
    "AND NOT EXISTS (SELECT 1 FROM images WHERE images.prompt_id = prompts.id AND images.likeness_match = 1)",
    # an image whose face copies a training photo or reference crop (studio/likeness.py)
    "copy": "EXISTS (SELECT 1 FROM images WHERE images.prompt_id = prompts.id "
    "AND json_extract(images.likeness, '$.copy_paste') = 1)",
}
_GALLERY_ORDERS = {
    "newest": "prompts.id DESC",
    "likes": "prompts.likes_count DESC, prompts.id DESC",
    "likeness": "(SELECT MAX(likeness_score) FROM images WHERE images.prompt_id = prompts.id) DESC NULLS LAST, "
    "prompts.id DESC",
}


class Prompts(Records):
    # -- prompts -------------------------------------------------------------------------------

    def add_prompt(self, prompt: dict) -> int:
        """Insert a prompt; `prompt` holds column values (JSON columns as dicts). Returns its id."""
        stamp = now()
        return self._insert("prompts", {"created_at": stamp, "updated_at": stamp, **prompt})

    def get_prompt(self, prompt_id: int) -> dict | None:
        return self._get("prompts", prompt_id)

    def list_prompts(
        self,
        *,
        tune_id: int | None = None,
        limit: int = 100,
        offset: int = 0,
        before_id: int | None = None,
        owner: str | None = None,
    ) -> list[dict]:
        """Prompts newest first, optionally of one tune and/or only `owner`'s."""
        return self._rows(
            "prompts",
            ("tune_id = ?", tune_id),
            ("id < ?", before_id),
            ("owner = ?", owner),
            order_by="id DESC",
            limit=limit,
            offset=offset,
        )

    def update_prompt(self, prompt_id: int, **fields: Any) -> None:
        self._update("prompts", prompt_id, fields)

    def delete_prompt(self, prompt_id: int) -> None:
        """Delete the prompt row; its likes and images go first (m040 trigger), then its pack
        counters follow."""
        self._delete("prompts", prompt_id)

    def unfinished_prompts_naming(self, tune_id: int) -> list[dict]:
        """Other tunes' prompts, not finished, whose text may name tune `tune_id` in a token
        (`<lora:ID:…>`, `<faceid:ID:…>`): every one that does, and perhaps some that only contain
        the digits (the token grammar is the caller's to apply), oldest first."""
        return self._query(
            "SELECT * FROM prompts WHERE tune_id != ? AND status IN (?, ?) AND instr(text, ?) > 0 ORDER BY id",
            [tune_id, QUEUING, TRAINING, str(tune_id)],
        )

    def waiting_prompts(self, tune_id: int) -> list[dict]:
        """Queued prompts of the tune that have no job yet (made before the tune was ready)."""
        return self._query(
            "SELECT * FROM prompts WHERE tune_id = ? AND status = ? AND id NOT IN "
            "(SELECT subject_id FROM jobs WHERE kind = 'generate') ORDER BY id",
            [tune_id, QUEUING],
        )

    def finish_prompt(self, prompt_id: int, images: list[dict], *, warnings: list[str]) -> None:
        """Record a successful run atomically: its images (each with idx, path, seed, width,
        height) and the prompt SUCCESS with progress 1, completed_at, `warnings`, no message.
        Images a previous, interrupted run left are replaced."""
        stamp = now()
        with self._lock, self.db.atomic():
            self.db.execute("DELETE FROM images WHERE prompt_id = ?", [prompt_id])
            for image in images:
                self._insert("images", {"created_at": stamp, **image, "prompt_id": prompt_id})
            self._update(
                "prompts",
                prompt_id,
                {"status": SUCCESS, "progress": 1.0, "message": None, "warnings": warnings, "completed_at": stamp},
            )

    # -- images --------------------------------------------------------------------------------

    def add_image(self, image: dict) -> int:
        return self._insert("images", {"created_at": now(), **image})

    def prompt_images(self, prompt_id: int) -> list[dict]:
        """The prompt's images by index."""
        return self._query("SELECT * FROM images WHERE prompt_id = ? ORDER BY idx", [prompt_id])

    def update_image(self, image_id: int, **fields: Any) -> None:
        self._update("images", image_id, fields, touch=False)

    def set_image_likeness(self, prompt_id: int, idx: int, likeness: dict | None) -> None:
        """Record the likeness of image `idx` of a prompt (a studio/likeness.py record, None:
        not scored) with the `likeness_score` and `likeness_match` columns it gives; its pack
        prompt's and pack's counters follow in the same statement (m060 triggers)."""
        score = match = None
        if likeness is not None:
            score, match = likeness.get("score"), int(bool(likeness.get("same_person")))
        with self._lock, self.db.atomic():
            self.db.execute(
                "UPDATE images SET likeness = ?, likeness_score = ?, likeness_match = ? WHERE prompt_id = ? AND idx = ?",
                [None if likeness is None else json.dumps(likeness), score, match, prompt_id, idx],
            )

    # -- runs: prompts on several tunes with one prompts_callback (m065) ------------------------

    def add_prompt_run(self, prompts_callback: str, prompt_ids: list[int]) -> int:
        """Group prompts into a run whose `prompts_callback` is posted once all are done."""
        with self._write_transaction():
            run_id = self._insert("prompt_runs", {"prompts_callback": prompts_callback, "created_at": now()})
            self.db.execute(f"UPDATE prompts SET run_id = ? WHERE id IN ({marks(prompt_ids)})", [run_id, *prompt_ids])
            return run_id

    def run_prompts(self, run_id: int) -> list[dict]:
        """The prompts of a run, oldest first."""
        return self._query("SELECT * FROM prompts WHERE run_id = ? ORDER BY id", [run_id])

    def claim_run_callback(self, run_id: int) -> str | None:
        """The run's prompts callback URL, exactly once (as `claim_prompts_callback`)."""
        return self._scalar(
            "UPDATE prompt_runs SET prompts_callback_sent_at = ? WHERE id = ? "
            "AND prompts_callback_sent_at IS NULL RETURNING prompts_callback",
            [now(), run_id],
        )

    # -- gallery -------------------------------------------------------------------------------

    def gallery_prompts(
        self,
        *,
        tune_id: int | None = None,
        pack_id: int | None = None,
        order: str = "newest",
        limit: int = 24,
        offset: int = 0,
        likeness: str | None = None,
        owner: str | None = None,
    ) -> list[dict]:
        """Prompts (only `owner`'s when given) with their tune's `tune_title` and `tune_model_type` and, for prompts made
        from a pack, `pack_id` and `pack_title`; optionally only one tune's and/or one pack's.
        `order` is 'newest' (id descending), 'likes' (most liked first, ties newest first) or
        'likeness' (best image likeness first, prompts without a scored face last). `likeness`
        keeps only prompts with an image of the subject ('match') or with scored images none of
        which shows the subject ('miss')."""
        clause, params = where(
            ("prompts.tune_id = ?", tune_id),
            ("packs.id = ?", pack_id),
            ("prompts.owner = ?", owner),
            None if likeness is None else _LIKENESS_FILTERS[likeness],
        )
        return self._query(
            "SELECT prompts.*, tunes.title AS tune_title, tunes.model_type AS tune_model_type, "
            "packs.id AS pack_id, packs.title AS pack_title FROM prompts "
            "JOIN tunes ON tunes.id = prompts.tune_id "
            "LEFT JOIN pack_prompts ON pack_prompts.id = prompts.orig_prompt_id "
            f"LEFT JOIN packs ON packs.id = pack_prompts.pack_id {clause} ORDER BY {_GALLERY_ORDERS[order]} "
            "LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
