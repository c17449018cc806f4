"""Packs and their prompt templates, with the counters rankings read (likes, images shown, runs,
likeness), kept by the m040 and m060 triggers. The `recount_*` verbs count the same figures the
slow way, from the rows, to check the counters and to benchmark against."""

from __future__ import annotations

from typing import Any

from storage.database import Records, now, where


class Packs(Records):
    # -- packs ---------------------------------------------------------------------------------

    def add_pack(self, pack: dict) -> int:
        """Insert a pack; `pack` holds column values, `classes` as a list. Returns its id."""
        stamp = now()
        return self._insert("packs", {"created_at": stamp, "updated_at": stamp, **_pack_encode(pack)})

    def get_pack(self, pack_id: int) -> dict | None:
        return _pack_decode(self._get("packs", pack_id))

    def find_pack_by_slug(self, slug: str, owner: str | None = None, *, anyone: bool = False) -> dict | None:
        """The pack with this slug that `owner` reads: its own, else a shared one (no owner);
        `owner` None: a shared one only. With `anyone` (an admin), else the first made by anyone."""
        row = self._one(
            "SELECT * FROM packs WHERE slug = ? AND (owner IS NULL OR owner = ? OR ?) "
            "ORDER BY owner IS ? DESC, owner IS NULL DESC, id LIMIT 1",
            [slug, owner, int(anyone), owner],
        )
        return _pack_decode(row)

    def list_packs(
        self, *, public: bool | None = None, listed: bool | None = None, owner: str | None = None
    ) -> list[dict]:
        """Packs with their counters, oldest first. `public`/`listed` filter on those flags when
        given (Astria's `public=true`, `listed=true`); `owner` keeps the shared packs (no owner)
        and that owner's."""
        rows = self._rows(
            "packs",
            ("public = ?", None if public is None else int(public)),
            ("unlisted = ?", None if listed is None else int(not listed)),
            ("(owner IS NULL OR owner = ?)", owner),
            order_by="id",
        )
        return [_pack_decode(row) for row in rows]

    def update_pack(self, pack_id: int, **fields: Any) -> None:
        self._update("packs", pack_id, _pack_encode(fields))

    def delete_pack(self, pack_id: int) -> None:
        """Delete the pack and its pack prompts; prompts made from them keep running, unlinked."""
        self._delete("packs", pack_id)

    def pack_cover(self, pack_id: int) -> str | None:
        """The example image of the last prompt added to the pack that has one (Astria's rule)."""
        return self._scalar(
            "SELECT image_path FROM pack_prompts WHERE pack_id = ? AND image_path IS NOT NULL ORDER BY id DESC LIMIT 1",
            [pack_id],
        )

    def pack_image_in_use(self, path: str) -> bool:
        """Whether any pack or pack prompt still shows the stored image `path`."""
        return bool(
            self._scalar(
                "SELECT EXISTS (SELECT 1 FROM pack_prompts WHERE image_path = ?) "
                "OR EXISTS (SELECT 1 FROM packs WHERE cover_path = ?)",
                [path, path],
            )
        )

    # -- pack prompts --------------------------------------------------------------------------

    def add_pack_prompt(self, prompt: dict) -> int:
        """Insert a pack prompt at the end of its pack's class (`position` = last + 1)."""
        with self._lock, self.db.atomic():
            position = self._scalar(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM pack_prompts WHERE pack_id = ? AND class_name = ?",
                [prompt["pack_id"], prompt["class_name"]],
            )
            return self._insert("pack_prompts", {"created_at": now(), "position": position, **prompt})

    def get_pack_prompt(self, pack_prompt_id: int) -> dict | None:
        return self._get("pack_prompts", pack_prompt_id)

    def list_pack_prompts(self, pack_id: int | None = None, class_name: str | None = None) -> list[dict]:
        """Pack prompts with their counters, by pack, class and position; all packs when None."""
        return self._rows(
            "pack_prompts",
            ("pack_id = ?", pack_id),
            ("class_name = ?", class_name),
            order_by="pack_id, class_name, position, id",
        )

    def list_pack_prompts_seen_by(
        self, owner: str, pack_id: int | None = None, class_name: str | None = None
    ) -> list[dict]:
        """`list_pack_prompts` as `owner` sees it: the prompts of the shared packs and of its
        own, each counter counted from `owner`'s prompts only (their likes, images, runs and
        likeness), not from the trigger-kept totals of everyone's."""
        clause, params = where(
            ("(packs.owner IS NULL OR packs.owner = ?)", owner),
            ("pack_prompts.pack_id = ?", pack_id),
            ("pack_prompts.class_name = ?", class_name),
        )
        return self._query(
            "WITH mine AS (SELECT id, orig_prompt_id, likes_count FROM prompts "
            "  WHERE owner = ? AND orig_prompt_id IS NOT NULL), "
            "runs AS (SELECT orig_prompt_id AS id, COUNT(*) AS runs, SUM(likes_count) AS likes_count "
            "  FROM mine GROUP BY orig_prompt_id), "
            "shown AS (SELECT mine.orig_prompt_id AS id, COUNT(*) AS images_shown, "
            "  COUNT(images.likeness_match) AS likeness_scored, "
            "  COALESCE(SUM(images.likeness_match), 0) AS likeness_matched, "
            "  COUNT(images.likeness_score) AS likeness_faces, "
            "  COALESCE(SUM(images.likeness_score), 0) AS likeness_sum "
            "  FROM images JOIN mine ON mine.id = images.prompt_id GROUP BY mine.orig_prompt_id) "
            "SELECT pack_prompts.*, COALESCE(runs.likes_count, 0) AS likes_count, COALESCE(runs.runs, 0) AS runs, "
            "COALESCE(shown.images_shown, 0) AS images_shown, COALESCE(shown.likeness_scored, 0) AS likeness_scored, "
            "COALESCE(shown.likeness_matched, 0) AS likeness_matched, "
            "COALESCE(shown.likeness_faces, 0) AS likeness_faces, COALESCE(shown.likeness_sum, 0) AS likeness_sum "
            "FROM pack_prompts JOIN packs ON packs.id = pack_prompts.pack_id "
            "LEFT JOIN runs ON runs.id = pack_prompts.id LEFT JOIN shown ON shown.id = pack_prompts.id "
            f"{clause} ORDER BY pack_prompts.pack_id, pack_prompts.class_name, pack_prompts.position, pack_prompts.id",
            [owner, *params],
        )

    def update_pack_prompt(self, pack_prompt_id: int, **fields: Any) -> None:
        self._update("pack_prompts", pack_prompt_id, fields, touch=False)

    def delete_pack_prompt(self, pack_prompt_id: int) -> None:
        """Delete a pack prompt; its counts leave its pack, prompts made from it stay (unlinked)."""
        self._delete("pack_prompts", pack_prompt_id)

    def reorder_pack_prompts(self, pack_id: int, class_name: str, pack_prompt_ids: list[int]) -> None:
        """Set the positions of one class's prompts to the order of `pack_prompt_ids`."""
        with self._lock, self.db.atomic():
            for position, pack_prompt_id in enumerate(pack_prompt_ids):
                self.db.execute(
                    "UPDATE pack_prompts SET position = ? WHERE id = ? AND pack_id = ? AND class_name = ?",
                    [position, pack_prompt_id, pack_id, class_name],
                )

    # -- recounts: the counters' figures from the rows -----------------------------------------

    def recount_packs(self) -> list[dict]:
        """Each pack's likes, images shown and runs counted from the rows with JOIN + COUNT: the
        slow way the counters replace, kept to check them and to benchmark against."""
        return self._query(
            "WITH made AS (SELECT prompts.id AS prompt_id, pack_prompts.pack_id AS pack_id FROM prompts "
            "  JOIN pack_prompts ON pack_prompts.id = prompts.orig_prompt_id), "
            "l AS (SELECT made.pack_id, COUNT(*) AS n FROM likes JOIN made USING (prompt_id) GROUP BY made.pack_id), "
            "i AS (SELECT made.pack_id, COUNT(*) AS n FROM images JOIN made USING (prompt_id) GROUP BY made.pack_id), "
            "r AS (SELECT pack_id, COUNT(*) AS n FROM made GROUP BY pack_id) "
            "SELECT packs.id, COALESCE(l.n, 0) AS likes_count, COALESCE(i.n, 0) AS images_shown, "
            "COALESCE(r.n, 0) AS runs FROM packs LEFT JOIN l ON l.pack_id = packs.id "
            "LEFT JOIN i ON i.pack_id = packs.id LEFT JOIN r ON r.pack_id = packs.id ORDER BY packs.id"
        )

    def recount_pack_prompts(self) -> list[dict]:
        """Each pack prompt's likes, images shown and runs counted from the rows (see recount_packs)."""
        return self._query(
            "SELECT pack_prompts.id, "
            "(SELECT COUNT(*) FROM likes JOIN prompts ON prompts.id = likes.prompt_id "
            "  WHERE prompts.orig_prompt_id = pack_prompts.id) AS likes_count, "
            "(SELECT COUNT(*) FROM images JOIN prompts ON prompts.id = images.prompt_id "
            "  WHERE prompts.orig_prompt_id = pack_prompts.id) AS images_shown, "
            "(SELECT COUNT(*) FROM prompts WHERE prompts.orig_prompt_id = pack_prompts.id) AS runs "
            "FROM pack_prompts ORDER BY pack_prompts.id"
        )

    def pack_run_images(self, pack_id: int, owner: str | None = None, *, tunes: int = 20) -> list[dict]:
        """The scored images of the pack's runs on the `tunes` tunes (of `owner`; None: anyone's)
        most recently run with it: per image its tune (tune_id, tune_title), prompt (prompt_id,
        text, orig_prompt_id) and likeness_score (NULL: no face) / likeness_match."""
        return self._query(
            "WITH runs AS (SELECT prompts.tune_id, MAX(prompts.id) AS latest FROM prompts "
            "JOIN pack_prompts ON pack_prompts.id = prompts.orig_prompt_id JOIN tunes ON tunes.id = prompts.tune_id "
            "WHERE pack_prompts.pack_id = ? AND (? IS NULL OR tunes.owner = ?) "
            "GROUP BY prompts.tune_id ORDER BY latest DESC LIMIT ?) "
            "SELECT prompts.tune_id, tunes.title AS tune_title, prompts.id AS prompt_id, prompts.text, "
            "prompts.orig_prompt_id, images.likeness_score, images.likeness_match FROM runs "
            "JOIN prompts ON prompts.tune_id = runs.tune_id JOIN tunes ON tunes.id = prompts.tune_id "
            "JOIN pack_prompts ON pack_prompts.id = prompts.orig_prompt_id AND pack_prompts.pack_id = ? "
            "JOIN images ON images.prompt_id = prompts.id WHERE images.likeness_match IS NOT NULL "
            "ORDER BY runs.latest DESC, prompts.id, images.idx",
            [pack_id, owner, owner, tunes, pack_id],
        )

    def tune_likeness_scores(self, tune_ids: list[int]) -> dict[int, list[float]]:
        """Every face score of the images of each tune (all its prompts), by tune id."""
        out: dict[int, list[float]] = {tune_id: [] for tune_id in tune_ids}
        if not tune_ids:
            return out
        rows = self._query(
            "SELECT prompts.tune_id, images.likeness_score FROM images JOIN prompts ON prompts.id = images.prompt_id "
            f"WHERE images.likeness_score IS NOT NULL AND prompts.tune_id IN ({', '.join('?' * len(tune_ids))})",
            tune_ids,
        )
        for row in rows:
            out[row["tune_id"]].append(float(row["likeness_score"]))
        return out

    def recount_likeness(self, table: str) -> list[dict]:
        """Each pack prompt's (`table` 'pack_prompts') or pack's ('packs') likeness counters
        counted from the image rows, beside the trigger-kept ones (prefixed `counter_`): the slow
        way the counters replace, kept to check them."""
        group = {"pack_prompts": "pack_prompts.id", "packs": "pack_prompts.pack_id"}[table]
        return self._query(
            f"WITH counted AS (SELECT {group} AS id, COUNT(images.likeness_match) AS likeness_scored, "
            "COALESCE(SUM(images.likeness_match), 0) AS likeness_matched, "
            "COUNT(images.likeness_score) AS likeness_faces, COALESCE(SUM(images.likeness_score), 0) AS likeness_sum "
            "FROM images JOIN prompts ON prompts.id = images.prompt_id "
            f"JOIN pack_prompts ON pack_prompts.id = prompts.orig_prompt_id GROUP BY {group}) "
            f"SELECT {table}.id, COALESCE(counted.likeness_scored, 0) AS likeness_scored, "
            "COALESCE(counted.likeness_matched, 0) AS likeness_matched, "
            "COALESCE(counted.likeness_faces, 0) AS likeness_faces, COALESCE(counted.likeness_sum, 0) AS likeness_sum, "
            f"{table}.likeness_scored AS counter_scored, {table}.likeness_matched AS counter_matched, "
            f"{table}.likeness_faces AS counter_faces, {table}.likeness_sum AS counter_sum "
            f"FROM {table} LEFT JOIN counted ON counted.id = {table}.id ORDER BY {table}.id"
        )


def _pack_encode(fields: dict) -> dict:
    """Packs keep their declared classes as one comma-separated text column."""
    if isinstance(fields.get("classes"), list | tuple):
        fields = {**fields, "classes": ",".join(fields["classes"])}
    return fields


def _pack_decode(row: dict | None) -> dict | None:
    """`row` with its classes as a list again (None stays None)."""
    if row is not None:
        row["classes"] = [name for name in (row.get("classes") or "").split(",") if name]
    return row
