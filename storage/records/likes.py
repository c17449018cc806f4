"""Likes: one row per person and prompt (image_idx -1) or image. Each like or unlike is one SQL
statement, and the m040 triggers move the prompt's, pack prompt's and pack's counters inside
it, so concurrent likes never lose a count."""

from __future__ import annotations

from storage.database import Records, now


class Likes(Records):
    def add_like(self, prompt_id: int, user: str, image_idx: int = -1) -> bool:
        """Record one like; True when it is new, False when this user already liked it."""
        with self._lock, self.db.atomic():
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO likes (prompt_id, image_idx, user, created_at) VALUES (?, ?, ?, ?)",
                [prompt_id, image_idx, user, now()],
            )
            return cursor.rowcount == 1

    def remove_like(self, prompt_id: int, user: str, image_idx: int = -1) -> bool:
        """Remove one like; True when there was one to remove."""
        with self._lock, self.db.atomic():
            cursor = self.db.execute(
                "DELETE FROM likes WHERE prompt_id = ? AND image_idx = ? AND user = ?", [prompt_id, image_idx, user]
            )
            return cursor.rowcount == 1

    def count_likes(self, prompt_id: int) -> int:
        """The prompt's likes counted from the rows, whole-prompt and per-image alike."""
        return self._scalar("SELECT COUNT(*) FROM likes WHERE prompt_id = ?", [prompt_id])

    def liked_by(self, prompt_id: int, user: str) -> list[int]:
        """The image indexes (-1 for the whole prompt) this user liked on this prompt."""
        rows = self._query("SELECT image_idx FROM likes WHERE prompt_id = ? AND user = ?", [prompt_id, user])
        return [r["image_idx"] for r in rows]

    def image_likes(self, prompt_id: int) -> dict[int, int]:
        """Likes per image index of a prompt (-1: likes of the whole prompt); indexes nobody
        liked are left out."""
        rows = self._query(
            "SELECT image_idx, COUNT(*) AS n FROM likes WHERE prompt_id = ? GROUP BY image_idx", [prompt_id]
        )
        return {row["image_idx"]: row["n"] for row in rows}

    def top_prompts(self, *, tune_id: int | None = None, limit: int = 50, owner: str | None = None) -> list[dict]:
        """Prompts with the most likes (ties: newest first), optionally of one tune and/or one owner."""
        return self._rows(
            "prompts", ("tune_id = ?", tune_id), ("owner = ?", owner), order_by="likes_count DESC, id DESC", limit=limit
        )

    def recount_prompt_likes(self) -> list[dict]:
        """Each prompt's likes counted from the like rows, beside its counter."""
        return self._query(
            "SELECT prompts.id, prompts.likes_count AS counter, "
            "(SELECT COUNT(*) FROM likes WHERE likes.prompt_id = prompts.id) AS likes_count "
            "FROM prompts ORDER BY prompts.id"
        )
