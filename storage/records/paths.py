"""Which file-store paths the rows still name. The file store is content-addressed, so two rows
may share one file; a file is deleted from disk only when no row of any table names it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from storage.database import Records, marks

# Columns that hold file-store paths.
_PATH_COLUMNS = (
    ("images", "path"),
    ("tunes", "weights_path"),
    ("tunes", "kohya_path"),
    ("tunes", "embedding_path"),
    ("checkpoints", "weights_path"),
    ("checkpoints", "sample_path"),
    ("checkpoints", "resume_path"),
    ("photos", "path"),
    ("packs", "cover_path"),
    ("pack_prompts", "image_path"),
    ("adapters", "path"),
)
# JSON columns that may name file-store paths inside them: face crops (photo inspections), face
# avatars' embeddings (adapter metadata), prompts' input images (params).
_JSON_PATH_COLUMNS = (("photos", "inspection"), ("adapters", "metadata"), ("prompts", "params"))
# The form of a file-store path (storage/files.py): area/xx/sha256.ext.
_STORED_PATH = re.compile(r"^[a-z]+/[0-9a-f]{2}/[0-9a-f]{64}\.[a-z]+$")
# Candidates per query, well under SQLite's limit on bound parameters.
_CHUNK = 500


class Paths(Records):
    def unreferenced(self, paths: Iterable[str]) -> list[str]:
        """Those of `paths` that no row of any table refers to (safe to delete from disk; the file
        store is content-addressed, so two rows may share one file)."""
        candidates = list(dict.fromkeys(paths))
        used: set[str] = set()
        for start in range(0, len(candidates), _CHUNK):
            chunk = candidates[start : start + _CHUNK]
            for table, column in _PATH_COLUMNS:
                rows = self._query(
                    f"SELECT DISTINCT {column} AS path FROM {table} WHERE {column} IN ({marks(chunk)})", chunk
                )
                used.update(row["path"] for row in rows)
        # Paths inside JSON have no column to match: one scan per JSON column finds the rows
        # that mention a candidate's area at all, and their values are searched in Python.
        areas = sorted({path.split("/", 1)[0] for path in candidates})
        if areas:
            for table, column in _JSON_PATH_COLUMNS:
                where = " OR ".join(f"{column} LIKE ?" for _ in areas)
                for row in self._query(f"SELECT {column} FROM {table} WHERE {where}", [f'%"{a}/%' for a in areas]):
                    used.update(stored_paths(row[column]))
        return [path for path in candidates if path not in used]


def stored_paths(value: Any) -> list[str]:
    """File-store paths inside a JSON value (e.g. face crops recorded in a photo's inspection)."""
    if isinstance(value, str):
        return [value] if _STORED_PATH.match(value) else []
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [p for item in value for p in stored_paths(item)]
    return []
