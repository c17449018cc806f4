"""Deleting a tune or a prompt with everything that is only its own, across the table groups,
and handing back the stored files nothing names any more for the caller to delete from disk."""

from __future__ import annotations

from storage.records.checkpoints import Checkpoints, checkpoint_paths
from storage.records.paths import stored_paths
from storage.records.photos import Photos
from storage.records.prompts import Prompts
from storage.records.tunes import Tunes


class Purges(Tunes, Photos, Prompts, Checkpoints):
    def tune_files(self, tune_id: int) -> list[str]:
        """Every file path the tune owns in the file store (images, weights, embeddings)."""
        rows = self._query(
            "SELECT images.path AS path FROM images JOIN prompts ON prompts.id = images.prompt_id "
            "WHERE prompts.tune_id = ?",
            [tune_id],
        )
        tune = self.get_tune(tune_id) or {}
        extra = [tune.get("weights_path"), tune.get("embedding_path")]
        return [r["path"] for r in rows] + [p for p in extra if p]

    def purge_tune(self, tune_id: int) -> list[str]:
        """Delete a tune with everything that is only its own: prompts, images, likes,
        checkpoints, jobs, and the photos no other tune uses. Returns the file paths no row
        refers to any more, for the caller to delete from the file store."""
        with self._write_transaction():
            tune = self.get_tune(tune_id) or {}
            photos = self.tune_photos(tune_id)
            paths = self.tune_files(tune_id) + [tune.get("kohya_path")]
            paths += [p for r in self.tune_checkpoints(tune_id) for p in checkpoint_paths(r)]
            paths += [p for photo in photos for p in [photo["path"], *stored_paths(photo.get("inspection"))]]
            paths += [
                p for prompt in self.list_prompts(tune_id=tune_id, limit=-1) for p in stored_paths(prompt["params"])
            ]
            self.db.execute(
                "DELETE FROM jobs WHERE (kind = 'train' AND subject_id = ?) OR "
                "(kind = 'generate' AND subject_id IN (SELECT id FROM prompts WHERE tune_id = ?))",
                [tune_id, tune_id],
            )
            self.db.execute("DELETE FROM prompts WHERE tune_id = ?", [tune_id])
            self.delete_tune(tune_id)
            for photo in photos:
                self.db.execute(
                    "DELETE FROM photos WHERE id = ? AND id NOT IN (SELECT photo_id FROM tune_photos)", [photo["id"]]
                )
            return self.unreferenced([p for p in paths if p])

    def purge_prompt(self, prompt_id: int) -> list[str]:
        """Delete a prompt with its images, likes and jobs (the pack counters follow, m040).
        Returns the file paths (images, input image) no row refers to any more, for the caller
        to delete from the file store."""
        with self._write_transaction():
            prompt = self.get_prompt(prompt_id)
            if prompt is None:
                return []
            paths = [image["path"] for image in self.prompt_images(prompt_id)]
            self.db.execute("DELETE FROM jobs WHERE kind = 'generate' AND subject_id = ?", [prompt_id])
            self.db.execute("DELETE FROM prompts WHERE id = ?", [prompt_id])
            free = self.unreferenced(paths)
            # Input images are named only inside other prompts' params (JSON), not in a column.
            for name in ("input_image_path", "mask_image_path"):
                source = (prompt["params"] or {}).get(name)
                if source and not self._scalar(
                    "SELECT EXISTS (SELECT 1 FROM prompts WHERE params LIKE ?)", [f"%{source}%"]
                ):
                    free += self.unreferenced([source])
            return free

    def discard_photos(self, photo_ids: list[int]) -> list[str]:
        """Delete these photos unless a tune uses them (a request that failed takes back what it
        stored). Returns the file paths no row refers to any more, for the caller to delete."""
        with self._write_transaction():
            photos = [photo for photo in map(self.get_photo, photo_ids) if photo is not None]
            paths = [p for photo in photos for p in [photo["path"], *stored_paths(photo.get("inspection"))]]
            for photo in photos:
                self.db.execute(
                    "DELETE FROM photos WHERE id = ? AND id NOT IN (SELECT photo_id FROM tune_photos)", [photo["id"]]
                )
            return self.unreferenced([p for p in paths if p])
