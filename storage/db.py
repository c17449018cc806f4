"""Store: the studio's database. The only module that speaks SQL.

One SQLite file in WAL mode with a busy timeout and foreign keys on. Gradio runs handlers in
worker threads and the job worker has its own, so the one connection is opened with
`check_same_thread=False` and every statement runs under a re-entrant lock; `transaction()`
groups several statements atomically. Rows come back as plain dicts with JSON columns decoded.

Migrations use sqlite-utils' built-in `Migrations`: one function per change, applied in order at
start-up, each named by intent with a docstring saying why. Never edit an applied migration; add
a new one at the end.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

# Columns stored as JSON text; decoded on read, encoded on write.
JSON_COLUMNS = frozenset(
    {"args", "characteristics", "inspection", "params", "warnings", "metadata", "likeness", "result"}
)

# Statuses shared by tunes, prompts and jobs (Novita's names, DESIGN.md §2).
QUEUING, TRAINING, SUCCESS, FAILED, CANCELED = "QUEUING", "TRAINING", "SUCCESS", "FAILED", "CANCELED"
FINISHED = frozenset({SUCCESS, FAILED, CANCELED})

migrations = Migrations("avatar-studio")


@migrations()
def m001_initial_schema(db: Database) -> None:
    """Every entity of DESIGN.md §2. Base models are tunes with model_type 'checkpoint' so that
    gallery ids (690204 …) and user tune ids share one id space, as in Astria's API."""
    db.executescript(
        """
        CREATE TABLE tunes (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL UNIQUE,
            name TEXT,
            token TEXT,
            model_type TEXT NOT NULL,
            base_tune_id INTEGER REFERENCES tunes(id) ON DELETE SET NULL,
            family TEXT,
            source TEXT,
            scheduler TEXT,
            embedded INTEGER NOT NULL DEFAULT 0,
            branch TEXT,
            status TEXT NOT NULL DEFAULT 'QUEUING',
            progress REAL NOT NULL DEFAULT 0,
            message TEXT,
            args TEXT,
            characteristics TEXT,
            weights_path TEXT,
            embedding_path TEXT,
            face_backend TEXT,
            callback TEXT,
            pack_id INTEGER REFERENCES packs(id) ON DELETE SET NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            started_training_at TEXT,
            trained_at TEXT,
            expires_at TEXT
        );
        CREATE INDEX idx_tunes_model_type ON tunes(model_type);

        CREATE TABLE photos (
            id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL UNIQUE,
            path TEXT NOT NULL,
            width INTEGER,
            height INTEGER,
            format TEXT,
            filename TEXT,
            inspection TEXT,
            created_at TEXT NOT NULL
        );
        CREATE TABLE tune_photos (
            tune_id INTEGER NOT NULL REFERENCES tunes(id) ON DELETE CASCADE,
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            position INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (tune_id, photo_id)
        );
        CREATE INDEX idx_tune_photos_photo ON tune_photos(photo_id);

        CREATE TABLE packs (
            id INTEGER PRIMARY KEY,
            slug TEXT NOT NULL UNIQUE,
            title TEXT NOT NULL,
            model_type TEXT NOT NULL DEFAULT 'lora',
            base_tune_id INTEGER REFERENCES tunes(id) ON DELETE SET NULL,
            preset TEXT,
            args TEXT,
            public INTEGER NOT NULL DEFAULT 1,
            unlisted INTEGER NOT NULL DEFAULT 0,
            cover_path TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE pack_prompts (
            id INTEGER PRIMARY KEY,
            pack_id INTEGER NOT NULL REFERENCES packs(id) ON DELETE CASCADE,
            class_name TEXT NOT NULL,
            text TEXT NOT NULL,
            negative_prompt TEXT,
            params TEXT,
            num_images INTEGER NOT NULL DEFAULT 4,
            position INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        );
        CREATE INDEX idx_pack_prompts_pack ON pack_prompts(pack_id, class_name, position);

        CREATE TABLE prompts (
            id INTEGER PRIMARY KEY,
            tune_id INTEGER NOT NULL REFERENCES tunes(id) ON DELETE CASCADE,
            text TEXT NOT NULL,
            negative_prompt TEXT,
            params TEXT,
            status TEXT NOT NULL DEFAULT 'QUEUING',
            progress REAL NOT NULL DEFAULT 0,
            message TEXT,
            warnings TEXT,
            orig_prompt_id INTEGER REFERENCES pack_prompts(id) ON DELETE SET NULL,
            callback TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            started_at TEXT,
            completed_at TEXT
        );
        CREATE INDEX idx_prompts_tune ON prompts(tune_id, id);
        CREATE INDEX idx_prompts_orig ON prompts(orig_prompt_id);

        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            prompt_id INTEGER NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            path TEXT NOT NULL,
            seed INTEGER,
            width INTEGER,
            height INTEGER,
            likeness TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (prompt_id, idx)
        );

        -- image_idx -1 is a like of the whole prompt: NULLs would not be unique in SQLite.
        CREATE TABLE likes (
            id INTEGER PRIMARY KEY,
            prompt_id INTEGER NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
            image_idx INTEGER NOT NULL DEFAULT -1,
            user TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (prompt_id, image_idx, user)
        );
        CREATE INDEX idx_likes_user ON likes(user);

        CREATE TABLE adapters (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            path TEXT NOT NULL,
            family TEXT,
            weight REAL NOT NULL DEFAULT 1.0,
            metadata TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (kind, name)
        );

        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            subject_id INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'QUEUING',
            priority INTEGER NOT NULL DEFAULT 0,
            progress REAL NOT NULL DEFAULT 0,
            step INTEGER NOT NULL DEFAULT 0,
            total INTEGER NOT NULL DEFAULT 0,
            message TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            result TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT
        );
        CREATE INDEX idx_jobs_queue ON jobs(status, priority, id);
        CREATE INDEX idx_jobs_subject ON jobs(kind, subject_id);

        CREATE TABLE api_keys (
            id INTEGER PRIMARY KEY,
            owner TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            last_used_at TEXT
        );
        """
    )


def now() -> str:
    """UTC timestamp as ISO 8601 with a Z, the form Astria's API returns."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Store:
    """Domain verbs over the studio's tables. Safe to share between threads."""

    def __init__(self, path: Path | str | None = None):
        """Open (creating if needed) the database at `path`, or an in-memory one when None,
        and apply pending migrations."""
        if path is None:
            conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30, isolation_level=None)
        self.path = None if path is None else Path(path)
        self._lock = threading.RLock()
        self.db = Database(conn)
        self.db.execute("PRAGMA busy_timeout = 30000")
        self.db.execute("PRAGMA foreign_keys = ON")
        if path is not None:
            self.db.enable_wal()
            self.db.execute("PRAGMA synchronous = NORMAL")
        with self._lock:
            migrations.apply(self.db)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run several verbs atomically (nested calls join the outer transaction)."""
        with self._lock, self.db.atomic():
            yield

    # -- generic helpers (private: callers use the domain verbs below) ------------------------

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[dict]:
        with self._lock:
            cursor = self.db.execute(sql, list(params))
            names = [d[0] for d in cursor.description]
            return [_decode(dict(zip(names, row))) for row in cursor.fetchall()]

    def _one(self, sql: str, params: Iterable[Any] = ()) -> dict | None:
        rows = self._query(sql, params)
        return rows[0] if rows else None

    def _scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        with self._lock:
            row = self.db.execute(sql, list(params)).fetchone()
        return row[0] if row else None

    def _insert(self, table: str, record: dict) -> int:
        record = _encode(record)
        columns = ", ".join(record)
        marks = ", ".join("?" for _ in record)
        with self._lock, self.db.atomic():
            cursor = self.db.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(record.values()))
            return cursor.lastrowid

    def _update(self, table: str, row_id: int, fields: dict, *, touch: bool = True) -> None:
        if touch:
            fields = {**fields, "updated_at": now()}
        fields = _encode(fields)
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._lock, self.db.atomic():
            self.db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", [*fields.values(), row_id])

    def _delete(self, table: str, row_id: int) -> None:
        with self._lock, self.db.atomic():
            self.db.execute(f"DELETE FROM {table} WHERE id = ?", [row_id])

    # -- base models (tunes with model_type 'checkpoint') ------------------------------------

    def upsert_base_model(self, model: dict) -> None:
        """Insert or refresh one gallery entry: id, title, family, source, scheduler, embedded."""
        stamp = now()
        row = {
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
        }
        with self._lock, self.db.atomic():
            self.db.execute(
                f"INSERT INTO tunes ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)}) "
                "ON CONFLICT(id) DO UPDATE SET title = excluded.title, name = excluded.name, "
                "family = excluded.family, source = excluded.source, scheduler = excluded.scheduler, "
                "embedded = excluded.embedded, updated_at = excluded.updated_at",
                list(row.values()),
            )

    def list_base_models(self) -> list[dict]:
        return self._query("SELECT * FROM tunes WHERE model_type = 'checkpoint' ORDER BY embedded DESC, id")

    # -- tunes -------------------------------------------------------------------------------

    def add_tune(self, tune: dict) -> int:
        """Insert a tune; `tune` holds column values (JSON columns as dicts). Returns its id."""
        stamp = now()
        return self._insert("tunes", {"created_at": stamp, "updated_at": stamp, **tune})

    def get_tune(self, tune_id: int) -> dict | None:
        return self._one("SELECT * FROM tunes WHERE id = ?", [tune_id])

    def find_tune_by_title(self, title: str) -> dict | None:
        return self._one("SELECT * FROM tunes WHERE title = ?", [title])

    def list_tunes(self, *, limit: int = 100, offset: int = 0, before_id: int | None = None) -> list[dict]:
        """User tunes (not base models), newest first."""
        where, params = "model_type != 'checkpoint'", []
        if before_id is not None:
            where += " AND id < ?"
            params.append(before_id)
        return self._query(
            f"SELECT * FROM tunes WHERE {where} ORDER BY id DESC LIMIT ? OFFSET ?", [*params, limit, offset]
        )

    def update_tune(self, tune_id: int, **fields: Any) -> None:
        self._update("tunes", tune_id, fields)

    def delete_tune(self, tune_id: int) -> None:
        """Delete the tune row; prompts, images, likes and photo links cascade."""
        self._delete("tunes", tune_id)

    # -- photos ------------------------------------------------------------------------------

    def add_photo(self, photo: dict) -> int:
        """Insert a photo by content hash; an identical photo already stored is reused."""
        with self._lock, self.db.atomic():
            existing = self._scalar("SELECT id FROM photos WHERE sha256 = ?", [photo["sha256"]])
            if existing is not None:
                return existing
            return self._insert("photos", {"created_at": now(), **photo})

    def get_photo(self, photo_id: int) -> dict | None:
        return self._one("SELECT * FROM photos WHERE id = ?", [photo_id])

    def update_photo(self, photo_id: int, **fields: Any) -> None:
        self._update("photos", photo_id, fields, touch=False)

    def link_photos(self, tune_id: int, photo_ids: list[int]) -> None:
        with self._lock, self.db.atomic():
            for position, photo_id in enumerate(photo_ids):
                self.db.execute(
                    "INSERT OR IGNORE INTO tune_photos (tune_id, photo_id, position) VALUES (?, ?, ?)",
                    [tune_id, photo_id, position],
                )

    def tune_photos(self, tune_id: int) -> list[dict]:
        return self._query(
            "SELECT photos.* FROM photos JOIN tune_photos ON tune_photos.photo_id = photos.id "
            "WHERE tune_photos.tune_id = ? ORDER BY tune_photos.position",
            [tune_id],
        )

    def orphan_photos(self) -> list[dict]:
        """Photos no tune uses any more (candidates for deletion from disk)."""
        return self._query("SELECT * FROM photos WHERE id NOT IN (SELECT photo_id FROM tune_photos)")

    def delete_photo(self, photo_id: int) -> None:
        self._delete("photos", photo_id)

    # -- prompts and images ------------------------------------------------------------------

    def add_prompt(self, prompt: dict) -> int:
        stamp = now()
        return self._insert("prompts", {"created_at": stamp, "updated_at": stamp, **prompt})

    def get_prompt(self, prompt_id: int) -> dict | None:
        return self._one("SELECT * FROM prompts WHERE id = ?", [prompt_id])

    def list_prompts(
        self, *, tune_id: int | None = None, limit: int = 100, offset: int = 0, before_id: int | None = None
    ) -> list[dict]:
        """Prompts newest first, optionally of one tune."""
        clauses, params = [], []
        if tune_id is not None:
            clauses.append("tune_id = ?")
            params.append(tune_id)
        if before_id is not None:
            clauses.append("id < ?")
            params.append(before_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._query(f"SELECT * FROM prompts {where} ORDER BY id DESC LIMIT ? OFFSET ?", [*params, limit, offset])

    def update_prompt(self, prompt_id: int, **fields: Any) -> None:
        self._update("prompts", prompt_id, fields)

    def delete_prompt(self, prompt_id: int) -> None:
        self._delete("prompts", prompt_id)

    def add_image(self, image: dict) -> int:
        return self._insert("images", {"created_at": now(), **image})

    def prompt_images(self, prompt_id: int) -> list[dict]:
        return self._query("SELECT * FROM images WHERE prompt_id = ? ORDER BY idx", [prompt_id])

    def update_image(self, image_id: int, **fields: Any) -> None:
        self._update("images", image_id, fields, touch=False)

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

    # -- likes -------------------------------------------------------------------------------

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
        return self._scalar("SELECT COUNT(*) FROM likes WHERE prompt_id = ?", [prompt_id])

    def liked_by(self, prompt_id: int, user: str) -> list[int]:
        """The image indexes (-1 for the whole prompt) this user liked on this prompt."""
        rows = self._query("SELECT image_idx FROM likes WHERE prompt_id = ? AND user = ?", [prompt_id, user])
        return [r["image_idx"] for r in rows]

    # -- adapters (uploaded LoRAs, face/style/pose avatars) ----------------------------------

    def add_adapter(self, adapter: dict) -> int:
        return self._insert("adapters", {"created_at": now(), **adapter})

    def get_adapter(self, kind: str, name: str) -> dict | None:
        return self._one("SELECT * FROM adapters WHERE kind = ? AND name = ?", [kind, name])

    def list_adapters(self, kind: str | None = None) -> list[dict]:
        if kind is None:
            return self._query("SELECT * FROM adapters ORDER BY kind, name")
        return self._query("SELECT * FROM adapters WHERE kind = ? ORDER BY name", [kind])

    def delete_adapter(self, adapter_id: int) -> None:
        self._delete("adapters", adapter_id)

    # -- jobs --------------------------------------------------------------------------------

    def add_job(self, kind: str, subject_id: int, *, priority: int = 0) -> int:
        stamp = now()
        return self._insert(
            "jobs",
            {"kind": kind, "subject_id": subject_id, "priority": priority, "created_at": stamp, "updated_at": stamp},
        )

    def get_job(self, job_id: int) -> dict | None:
        return self._one("SELECT * FROM jobs WHERE id = ?", [job_id])

    def update_job(self, job_id: int, **fields: Any) -> None:
        self._update("jobs", job_id, fields)

    def jobs_with_status(self, status: str) -> list[dict]:
        return self._query("SELECT * FROM jobs WHERE status = ? ORDER BY priority, id", [status])

    def count_jobs(self, status: str) -> int:
        return self._scalar("SELECT COUNT(*) FROM jobs WHERE status = ?", [status])


def _encode(record: dict) -> dict:
    return {k: json.dumps(v) if k in JSON_COLUMNS and v is not None else v for k, v in record.items()}


def _decode(row: dict) -> dict:
    for key in JSON_COLUMNS.intersection(row):
        if isinstance(row[key], str):
            row[key] = json.loads(row[key])
    return row
