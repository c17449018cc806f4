"""Photos: uploaded images stored once by content hash, and the tunes that use them."""

from __future__ import annotations

from typing import Any

from storage.database import Records, now


class Photos(Records):
    def add_photo(self, photo: dict) -> int:
        """Insert a photo by content hash; an identical photo already stored is reused."""
        with self._lock, self.db.atomic():
            existing = self._scalar("SELECT id FROM photos WHERE sha256 = ?", [photo["sha256"]])
            if existing is not None:
                return existing
            return self._insert("photos", {"created_at": now(), **photo})

    def add_photo_owner(self, photo_id: int, owner: str) -> None:
        """Record that `owner` uploaded the photo (one stored photo may have several uploaders)."""
        with self._lock, self.db.atomic():
            self.db.execute("INSERT OR IGNORE INTO photo_owners (photo_id, owner) VALUES (?, ?)", [photo_id, owner])

    def photo_owned_by(self, photo_id: int, owner: str) -> bool:
        """True when `owner` uploaded the photo or owns a tune made from it."""
        return bool(
            self._scalar(
                "SELECT EXISTS (SELECT 1 FROM photo_owners WHERE photo_id = ? AND owner = ?) OR EXISTS "
                "(SELECT 1 FROM tune_photos JOIN tunes ON tunes.id = tune_photos.tune_id "
                "WHERE tune_photos.photo_id = ? AND tunes.owner = ?)",
                [photo_id, owner, photo_id, owner],
            )
        )

    def get_photo(self, photo_id: int) -> dict | None:
        return self._get("photos", photo_id)

    def find_photo(self, sha256: str) -> dict | None:
        """The photo stored from the upload whose bytes hash to `sha256`, or None."""
        return self._one("SELECT * FROM photos WHERE sha256 = ?", [sha256])

    def update_photo(self, photo_id: int, **fields: Any) -> None:
        self._update("photos", photo_id, fields, touch=False)

    def delete_photo(self, photo_id: int) -> None:
        self._delete("photos", photo_id)

    def link_photos(self, tune_id: int, photo_ids: list[int]) -> None:
        """Use these photos for the tune, in this order; links it already has are kept as they are."""
        with self._lock, self.db.atomic():
            for position, photo_id in enumerate(photo_ids):
                self.db.execute(
                    "INSERT OR IGNORE INTO tune_photos (tune_id, photo_id, position) VALUES (?, ?, ?)",
                    [tune_id, photo_id, position],
                )

    def tune_photos(self, tune_id: int) -> list[dict]:
        """The tune's photos in the order they were linked, each with the tune's `caption` of it
        (None when it has none)."""
        return self._query(
            "SELECT photos.*, tune_photos.caption FROM photos JOIN tune_photos ON tune_photos.photo_id = photos.id "
            "WHERE tune_photos.tune_id = ? ORDER BY tune_photos.position",
            [tune_id],
        )

    def set_captions(self, tune_id: int, captions: dict[int, str | None]) -> None:
        """Set the tune's caption of each photo id in `captions` (None clears it)."""
        with self._lock, self.db.atomic():
            for photo_id, caption in captions.items():
                self.db.execute(
                    "UPDATE tune_photos SET caption = ? WHERE tune_id = ? AND photo_id = ?",
                    [caption, tune_id, photo_id],
                )

    def orphan_photos(self) -> list[dict]:
        """Photos no tune uses any more (candidates for deletion from disk)."""
        return self._query("SELECT * FROM photos WHERE id NOT IN (SELECT photo_id FROM tune_photos)")
