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
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from storage.status import CANCELED, FAILED, FINISHED, QUEUING, SUCCESS, TRAINING

# Columns stored as JSON text; decoded on read, encoded on write.
JSON_COLUMNS = frozenset(
    {"args", "characteristics", "inspection", "params", "warnings", "metadata", "likeness", "result"}
)


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


@migrations()
def m040_pack_counters(db: Database) -> None:
    """Like and image counters for prompts, pack prompts and packs, kept by triggers.

    Rankings read likes and images shown for every pack; aggregating 200,000 likes through
    prompts with JOIN + COUNT on each read misses the 100 ms budget (bench/rank.py prints both).
    Each trigger changes a counter in the statement that inserts or deletes the row, so
    concurrent writers cannot lose a count and a counter always equals a recount of its rows.
    Deleting a prompt first deletes its likes and images (BEFORE trigger) so their triggers still
    see the prompt's pack prompt; deleting a pack prompt takes its counts off its pack.
    Also: a pack prompt's example image (the pack cover is the image of the last prompt added),
    and a pack's token, declared classes (comma-separated) and description."""
    db.executescript(
        """
        ALTER TABLE prompts ADD COLUMN likes_count INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE pack_prompts ADD COLUMN likes_count INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE pack_prompts ADD COLUMN images_shown INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE pack_prompts ADD COLUMN runs INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE pack_prompts ADD COLUMN image_path TEXT;
        ALTER TABLE packs ADD COLUMN likes_count INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE packs ADD COLUMN images_shown INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE packs ADD COLUMN runs INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE packs ADD COLUMN token TEXT NOT NULL DEFAULT 'ohwx';
        ALTER TABLE packs ADD COLUMN classes TEXT NOT NULL DEFAULT '';
        ALTER TABLE packs ADD COLUMN description TEXT;
        CREATE INDEX idx_prompts_likes ON prompts(likes_count DESC, id DESC);

        CREATE TRIGGER m040_like_added AFTER INSERT ON likes BEGIN
            UPDATE prompts SET likes_count = likes_count + 1 WHERE id = NEW.prompt_id;
            UPDATE pack_prompts SET likes_count = likes_count + 1
                WHERE id = (SELECT orig_prompt_id FROM prompts WHERE id = NEW.prompt_id);
            UPDATE packs SET likes_count = likes_count + 1 WHERE id = (
                SELECT pack_prompts.pack_id FROM prompts JOIN pack_prompts ON pack_prompts.id = prompts.orig_prompt_id
                WHERE prompts.id = NEW.prompt_id);
        END;
        CREATE TRIGGER m040_like_removed AFTER DELETE ON likes BEGIN
            UPDATE prompts SET likes_count = likes_count - 1 WHERE id = OLD.prompt_id;
            UPDATE pack_prompts SET likes_count = likes_count - 1
                WHERE id = (SELECT orig_prompt_id FROM prompts WHERE id = OLD.prompt_id);
            UPDATE packs SET likes_count = likes_count - 1 WHERE id = (
                SELECT pack_prompts.pack_id FROM prompts JOIN pack_prompts ON pack_prompts.id = prompts.orig_prompt_id
                WHERE prompts.id = OLD.prompt_id);
        END;
        CREATE TRIGGER m040_image_added AFTER INSERT ON images BEGIN
            UPDATE pack_prompts SET images_shown = images_shown + 1
                WHERE id = (SELECT orig_prompt_id FROM prompts WHERE id = NEW.prompt_id);
            UPDATE packs SET images_shown = images_shown + 1 WHERE id = (
                SELECT pack_prompts.pack_id FROM prompts JOIN pack_prompts ON pack_prompts.id = prompts.orig_prompt_id
                WHERE prompts.id = NEW.prompt_id);
        END;
        CREATE TRIGGER m040_image_removed AFTER DELETE ON images BEGIN
            UPDATE pack_prompts SET images_shown = images_shown - 1
                WHERE id = (SELECT orig_prompt_id FROM prompts WHERE id = OLD.prompt_id);
            UPDATE packs SET images_shown = images_shown - 1 WHERE id = (
                SELECT pack_prompts.pack_id FROM prompts JOIN pack_prompts ON pack_prompts.id = prompts.orig_prompt_id
                WHERE prompts.id = OLD.prompt_id);
        END;
        CREATE TRIGGER m040_prompt_added AFTER INSERT ON prompts WHEN NEW.orig_prompt_id IS NOT NULL BEGIN
            UPDATE pack_prompts SET runs = runs + 1 WHERE id = NEW.orig_prompt_id;
            UPDATE packs SET runs = runs + 1
                WHERE id = (SELECT pack_id FROM pack_prompts WHERE id = NEW.orig_prompt_id);
        END;
        CREATE TRIGGER m040_prompt_removed BEFORE DELETE ON prompts BEGIN
            DELETE FROM likes WHERE prompt_id = OLD.id;
            DELETE FROM images WHERE prompt_id = OLD.id;
            UPDATE pack_prompts SET runs = runs - 1 WHERE id = OLD.orig_prompt_id;
            UPDATE packs SET runs = runs - 1
                WHERE id = (SELECT pack_id FROM pack_prompts WHERE id = OLD.orig_prompt_id);
        END;
        CREATE TRIGGER m040_pack_prompt_removed BEFORE DELETE ON pack_prompts BEGIN
            UPDATE packs SET likes_count = likes_count - OLD.likes_count,
                images_shown = images_shown - OLD.images_shown, runs = runs - OLD.runs
                WHERE id = OLD.pack_id;
        END;

        UPDATE prompts SET likes_count = (SELECT COUNT(*) FROM likes WHERE likes.prompt_id = prompts.id);
        UPDATE pack_prompts SET
            likes_count = (SELECT COALESCE(SUM(likes_count), 0) FROM prompts WHERE orig_prompt_id = pack_prompts.id),
            runs = (SELECT COUNT(*) FROM prompts WHERE orig_prompt_id = pack_prompts.id),
            images_shown = (SELECT COUNT(*) FROM images JOIN prompts ON prompts.id = images.prompt_id
                            WHERE prompts.orig_prompt_id = pack_prompts.id);
        UPDATE packs SET
            likes_count = (SELECT COALESCE(SUM(likes_count), 0) FROM pack_prompts WHERE pack_id = packs.id),
            images_shown = (SELECT COALESCE(SUM(images_shown), 0) FROM pack_prompts WHERE pack_id = packs.id),
            runs = (SELECT COALESCE(SUM(runs), 0) FROM pack_prompts WHERE pack_id = packs.id);
        """
    )


@migrations()
def m030_job_cancel_and_eta(db: Database) -> None:
    """Cooperative cancel and an ETA for jobs. A cancel sets `cancel_requested` in the database,
    so it reaches the running job whichever thread or process asked; the worker checks it at
    every step. `eta` is the estimated finish time shown beside the progress."""
    db.executescript(
        """
        ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE jobs ADD COLUMN eta TEXT;
        """
    )


@migrations()
def m031_checkpoints(db: Database) -> None:
    """Intermediate LoRA checkpoints: the weights saved every N training steps with a small
    sample image each, so a person can pick the best step. `likeness` (JSON, nullable) is left
    for likeness scores of the samples."""
    db.executescript(
        """
        CREATE TABLE checkpoints (
            id INTEGER PRIMARY KEY,
            tune_id INTEGER NOT NULL REFERENCES tunes(id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            weights_path TEXT NOT NULL,
            sample_path TEXT,
            loss REAL,
            likeness TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (tune_id, step)
        );
        """
    )


@migrations()
def m032_tune_outputs(db: Database) -> None:
    """What a trained tune has beside its diffusers-format weights: the kohya/A1111 copy, the
    step whose checkpoint is active, and the `prompts_callback` posted once (the time it was
    claimed for sending is the guard) when all prompts created with the tune are done."""
    db.executescript(
        """
        ALTER TABLE tunes ADD COLUMN kohya_path TEXT;
        ALTER TABLE tunes ADD COLUMN active_step INTEGER;
        ALTER TABLE tunes ADD COLUMN prompts_callback TEXT;
        ALTER TABLE tunes ADD COLUMN prompts_callback_sent_at TEXT;
        """
    )


@migrations()
def m050_api_base_url(db: Database) -> None:
    """The base URL (scheme, host, port) of the API request that created a tune or prompt.
    Callbacks are posted from the job worker, long after that request; without
    STUDIO_PUBLIC_URL this is the only way their image URLs can point where the client reached
    the studio."""
    db.executescript(
        """
        ALTER TABLE tunes ADD COLUMN base_url TEXT;
        ALTER TABLE prompts ADD COLUMN base_url TEXT;
        """
    )


@migrations()
def m060_likeness(db: Database) -> None:
    """Likeness (studio/likeness.py) as columns the gallery sorts and filters on, and counters
    for pack rankings. An image's `likeness` JSON gives `likeness_score` (the best face's
    similarity; NULL when not scored or no face was found) and `likeness_match` (1 the subject,
    0 not or no face, NULL not scored). Pack prompts and packs count the images scored for them
    (`likeness_scored`), those showing the subject (`likeness_matched`), those with a face
    (`likeness_faces`) and the sum of their scores (`likeness_sum`), kept by triggers in the
    statement that writes an image's likeness, as the m040 counters are: rankings stay one read
    of a row however many images there are. Deleting a prompt deletes its images first (m040),
    so their likeness leaves its pack prompt and pack; deleting a pack prompt takes its likeness
    off its pack."""
    columns = ("likeness_scored", "likeness_matched", "likeness_faces", "likeness_sum")
    sums = {
        "likeness_scored": "({row}.likeness_match IS NOT NULL)",
        "likeness_matched": "COALESCE({row}.likeness_match, 0)",
        "likeness_faces": "({row}.likeness_score IS NOT NULL)",
        "likeness_sum": "COALESCE({row}.likeness_score, 0)",
    }

    def apply(row: str, sign: str) -> str:
        """UPDATEs adding (sign '+') or taking off ('-') image `row`'s likeness to its pack prompt and pack."""
        assignments = ", ".join(f"{c} = {c} {sign} {sums[c].format(row=row)}" for c in columns)
        return (
            f"UPDATE pack_prompts SET {assignments} WHERE id = (SELECT orig_prompt_id FROM prompts WHERE id = {row}.prompt_id);\n"
            f"UPDATE packs SET {assignments} WHERE id = (SELECT pack_prompts.pack_id FROM prompts JOIN pack_prompts "
            f"ON pack_prompts.id = prompts.orig_prompt_id WHERE prompts.id = {row}.prompt_id);"
        )

    counters = "".join(
        f"ALTER TABLE {table} ADD COLUMN {c} {'REAL' if c == 'likeness_sum' else 'INTEGER'} NOT NULL DEFAULT 0;\n"
        for table in ("pack_prompts", "packs")
        for c in columns
    )
    pack_prompt_removed = ", ".join(f"{c} = {c} - OLD.{c}" for c in columns)
    # The triggers come before the backfill, so the backfill's UPDATE counts what it fills in.
    db.executescript(
        f"""
        ALTER TABLE images ADD COLUMN likeness_score REAL;
        ALTER TABLE images ADD COLUMN likeness_match INTEGER;
        {counters}
        CREATE TRIGGER m060_likeness_added AFTER INSERT ON images WHEN NEW.likeness_match IS NOT NULL BEGIN
            {apply("NEW", "+")}
        END;
        CREATE TRIGGER m060_likeness_changed AFTER UPDATE OF likeness_score, likeness_match ON images BEGIN
            {apply("OLD", "-")}
            {apply("NEW", "+")}
        END;
        CREATE TRIGGER m060_likeness_removed AFTER DELETE ON images WHEN OLD.likeness_match IS NOT NULL BEGIN
            {apply("OLD", "-")}
        END;
        CREATE TRIGGER m060_pack_prompt_likeness_removed BEFORE DELETE ON pack_prompts BEGIN
            UPDATE packs SET {pack_prompt_removed} WHERE id = OLD.pack_id;
        END;

        UPDATE images SET likeness_score = json_extract(likeness, '$.score'),
            likeness_match = json_extract(likeness, '$.same_person') WHERE likeness IS NOT NULL;
        """
    )


@migrations()
def m065_prompt_runs(db: Database) -> None:
    """A pack run on existing tunes (`POST /p/:id/tunes` with `tune_ids`) makes prompts on several
    tunes, and its `prompts_callback` is posted once all of them are done. The tune's own
    prompts_callback columns cannot hold it (one run spans tunes; a tune may be in many runs),
    so a run is a row its prompts point to, with the time the callback was claimed as the
    guard. A run goes when its last prompt is deleted, so deleting a tune leaves nothing of it."""
    db.executescript(
        """
        CREATE TABLE prompt_runs (
            id INTEGER PRIMARY KEY,
            prompts_callback TEXT NOT NULL,
            created_at TEXT NOT NULL,
            prompts_callback_sent_at TEXT
        );
        ALTER TABLE prompts ADD COLUMN run_id INTEGER REFERENCES prompt_runs(id) ON DELETE SET NULL;
        CREATE INDEX idx_prompts_run ON prompts(run_id);
        CREATE TRIGGER m065_run_emptied AFTER DELETE ON prompts WHEN OLD.run_id IS NOT NULL BEGIN
            DELETE FROM prompt_runs WHERE id = OLD.run_id
                AND NOT EXISTS (SELECT 1 FROM prompts WHERE run_id = OLD.run_id);
        END;
        """
    )


@migrations()
def m070_checkpoint_resume_state(db: Database) -> None:
    """A training killed or restarted goes on from its latest checkpoint instead of step 0: each
    intermediate checkpoint keeps the file it resumes from (optimizer, LR schedule, noise
    generator). The file only serves an unfinished training and is dropped when it ends."""
    db.execute("ALTER TABLE checkpoints ADD COLUMN resume_path TEXT")


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

    def expired_tunes(self, at: str) -> list[int]:
        """Ids of the user tunes whose `expires_at` is at or before `at` (a `now()` timestamp;
        the ISO form with a Z sorts as text in time order), oldest first."""
        rows = self._query(
            "SELECT id FROM tunes WHERE model_type != 'checkpoint' AND expires_at IS NOT NULL "
            "AND expires_at <= ? ORDER BY expires_at, id",
            [at],
        )
        return [row["id"] for row in rows]

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

    # -- prompts: recording a generation run (issue 3) ---------------------------------------

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

    # -- packs, pack prompts and rankings (counters kept by the m040 triggers) ---------------

    def add_pack(self, pack: dict) -> int:
        """Insert a pack; `pack` holds column values, `classes` as a list. Returns its id."""
        stamp = now()
        return self._insert("packs", {"created_at": stamp, "updated_at": stamp, **_pack_encode(pack)})

    def get_pack(self, pack_id: int) -> dict | None:
        return _pack_decode(self._one("SELECT * FROM packs WHERE id = ?", [pack_id]))

    def find_pack_by_slug(self, slug: str) -> dict | None:
        return _pack_decode(self._one("SELECT * FROM packs WHERE slug = ?", [slug]))

    def list_packs(self, *, public: bool | None = None, listed: bool | None = None) -> list[dict]:
        """Packs with their counters, oldest first. `public`/`listed` filter on those flags when
        given (Astria's `public=true`, `listed=true`)."""
        clauses, params = [], []
        if public is not None:
            clauses.append("public = ?")
            params.append(int(public))
        if listed is not None:
            clauses.append("unlisted = ?")
            params.append(int(not listed))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return [_pack_decode(row) for row in self._query(f"SELECT * FROM packs {where} ORDER BY id", params)]

    def update_pack(self, pack_id: int, **fields: Any) -> None:
        self._update("packs", pack_id, _pack_encode(fields))

    def delete_pack(self, pack_id: int) -> None:
        """Delete the pack and its pack prompts; prompts made from them keep running, unlinked."""
        self._delete("packs", pack_id)

    def add_pack_prompt(self, prompt: dict) -> int:
        """Insert a pack prompt at the end of its pack's class (`position` = last + 1)."""
        with self._lock, self.db.atomic():
            position = self._scalar(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM pack_prompts WHERE pack_id = ? AND class_name = ?",
                [prompt["pack_id"], prompt["class_name"]],
            )
            return self._insert("pack_prompts", {"created_at": now(), "position": position, **prompt})

    def get_pack_prompt(self, pack_prompt_id: int) -> dict | None:
        return self._one("SELECT * FROM pack_prompts WHERE id = ?", [pack_prompt_id])

    def list_pack_prompts(self, pack_id: int | None = None, class_name: str | None = None) -> list[dict]:
        """Pack prompts with their counters, by pack, class and position; all packs when None."""
        clauses, params = [], []
        if pack_id is not None:
            clauses.append("pack_id = ?")
            params.append(pack_id)
        if class_name is not None:
            clauses.append("class_name = ?")
            params.append(class_name)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._query(f"SELECT * FROM pack_prompts {where} ORDER BY pack_id, class_name, position, id", params)

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

    def top_prompts(self, *, tune_id: int | None = None, limit: int = 50) -> list[dict]:
        """Prompts with the most likes (ties: newest first), optionally of one tune."""
        where, params = ("WHERE tune_id = ?", [tune_id]) if tune_id is not None else ("", [])
        return self._query(
            f"SELECT * FROM prompts {where} ORDER BY likes_count DESC, id DESC LIMIT ?", [*params, limit]
        )

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

    def recount_prompt_likes(self) -> list[dict]:
        """Each prompt's likes counted from the like rows, beside its counter."""
        return self._query(
            "SELECT prompts.id, prompts.likes_count AS counter, "
            "(SELECT COUNT(*) FROM likes WHERE likes.prompt_id = prompts.id) AS likes_count "
            "FROM prompts ORDER BY prompts.id"
        )

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

    # -- api keys (stored as hashes, never as the key) ----------------------------------------

    def add_api_key(self, owner: str, key_hash: str) -> int:
        return self._insert("api_keys", {"owner": owner, "key_hash": key_hash, "created_at": now()})

    def api_key_owner(self, key_hash: str) -> str | None:
        """The owner of the key with this hash, recording its use; None when unknown."""
        with self._lock, self.db.atomic():
            cursor = self.db.execute(
                "UPDATE api_keys SET last_used_at = ? WHERE key_hash = ? RETURNING owner", [now(), key_hash]
            )
            row = cursor.fetchone()
        return row[0] if row else None

    def has_api_keys(self) -> bool:
        return bool(self._scalar("SELECT EXISTS (SELECT 1 FROM api_keys)"))

    def list_api_keys(self) -> list[dict]:
        return self._query("SELECT id, owner, created_at, last_used_at FROM api_keys ORDER BY id")

    def delete_api_key(self, key_id: int) -> None:
        self._delete("api_keys", key_id)

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

    # -- job queue (issue 5): claim, progress, finish, cancel, recovery ------------------------
    # Every verb that changes a job's state changes its subject's (tune or prompt) `status`,
    # `progress` and `message` in the same transaction, so the two never disagree.

    @contextmanager
    def _write_transaction(self) -> Iterator[None]:
        """A transaction that takes the write lock before its first read (BEGIN IMMEDIATE, waiting
        under busy_timeout). A deferred transaction that reads and then writes fails at once with
        SQLITE_BUSY when another process wrote in between (WAL snapshot rule); the worker and
        the web process share the database, so read-then-write verbs use this."""
        with self._lock:
            if self.db.conn.in_transaction:
                yield
                return
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

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
            active = self._scalar("SELECT COUNT(*) FROM jobs WHERE status IN (?, ?)", [QUEUING, TRAINING])
            if active >= limit:
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
        marks = ", ".join("?" for _ in only_from)
        with self._lock, self.db.atomic():
            job = self._one(
                "UPDATE jobs SET status = ?, message = ?, finished_at = ?, updated_at = ?, eta = NULL, "
                f"progress = CASE WHEN ? = ? THEN 1 ELSE progress END WHERE id = ? AND status IN ({marks}) RETURNING *",
                [status, message, stamp, stamp, status, SUCCESS, job_id, *only_from],
            )
            if job is not None:
                self._finish_subject(job["kind"], job["subject_id"], status, message, stamp)
        return job

    def _finish_subject(self, kind: str, subject_id: int, status: str, message: str | None, stamp: str) -> None:
        table, _, finished = _JOB_SUBJECTS[kind]
        done = f", {finished} = ?, progress = 1" if status == SUCCESS else ""
        self.db.execute(
            f"UPDATE {table} SET status = ?, message = ?, updated_at = ?{done} WHERE id = ?",
            [status, message, stamp, *([stamp] if done else []), subject_id],
        )

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

    def cancel_requested(self, job_id: int) -> bool:
        return bool(self._scalar("SELECT cancel_requested FROM jobs WHERE id = ?", [job_id]))

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

    def count_active_jobs(self) -> int:
        return self._scalar("SELECT COUNT(*) FROM jobs WHERE status IN (?, ?)", [QUEUING, TRAINING])

    # -- tunes: idempotent create, waiting prompts, checkpoints, purge (issue 5) ---------------

    def add_tune_unless_titled(self, tune: dict) -> tuple[int, bool]:
        """Insert a tune unless one with its title exists. Returns (id, created): the existing
        tune's id and False when the title is taken, so a repeated request is idempotent even
        when two arrive at once."""
        stamp = now()
        record = _encode({"created_at": stamp, "updated_at": stamp, **tune})
        with self._lock, self.db.atomic():
            row = self.db.execute(
                f"INSERT INTO tunes ({', '.join(record)}) VALUES ({', '.join('?' for _ in record)}) "
                "ON CONFLICT(title) DO NOTHING RETURNING id",
                list(record.values()),
            ).fetchone()
            if row is not None:
                return row[0], True
            return self._scalar("SELECT id FROM tunes WHERE title = ?", [tune["title"]]), False

    def waiting_prompts(self, tune_id: int) -> list[dict]:
        """Queued prompts of the tune that have no job yet (made before the tune was ready)."""
        return self._query(
            "SELECT * FROM prompts WHERE tune_id = ? AND status = ? AND id NOT IN "
            "(SELECT subject_id FROM jobs WHERE kind = 'generate') ORDER BY id",
            [tune_id, QUEUING],
        )

    def claim_prompts_callback(self, tune_id: int) -> str | None:
        """The tune's prompts callback URL, exactly once: the first caller gets it (and marks it
        sent), every later caller gets None."""
        return self._scalar(
            "UPDATE tunes SET prompts_callback_sent_at = ? WHERE id = ? AND prompts_callback IS NOT NULL "
            "AND prompts_callback_sent_at IS NULL RETURNING prompts_callback",
            [now(), tune_id],
        )

    def add_prompt_run(self, prompts_callback: str, prompt_ids: list[int]) -> int:
        """Group prompts into a run whose `prompts_callback` is posted once all are done (m065)."""
        with self._write_transaction():
            run_id = self._insert("prompt_runs", {"prompts_callback": prompts_callback, "created_at": now()})
            marks = ", ".join("?" for _ in prompt_ids)
            self.db.execute(f"UPDATE prompts SET run_id = ? WHERE id IN ({marks})", [run_id, *prompt_ids])
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

    def add_checkpoint(self, checkpoint: dict) -> int:
        """Record a checkpoint (tune_id, step, weights_path, sample_path, loss); a second one for
        the same step (a re-run) replaces the first."""
        record = _encode({"created_at": now(), **checkpoint})
        updates = ", ".join(f"{name} = excluded.{name}" for name in record if name not in ("tune_id", "step"))
        with self._lock, self.db.atomic():
            return self.db.execute(
                f"INSERT INTO checkpoints ({', '.join(record)}) VALUES ({', '.join('?' for _ in record)}) "
                f"ON CONFLICT(tune_id, step) DO UPDATE SET {updates} RETURNING id",
                list(record.values()),
            ).fetchone()[0]

    def tune_checkpoints(self, tune_id: int) -> list[dict]:
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
            return self.unreferenced([p for r in rows for p in _checkpoint_paths(r)])

    def drop_resume_states(self, tune_id: int) -> list[str]:
        """Forget the resume states of a tune's checkpoints (its training ended, so nothing will
        resume from them); returns the file paths no row refers to any more, to delete."""
        with self._write_transaction():
            rows = self.tune_checkpoints(tune_id)
            self.db.execute("UPDATE checkpoints SET resume_path = NULL WHERE tune_id = ?", [tune_id])
            return self.unreferenced([r["resume_path"] for r in rows if r["resume_path"]])

    def purge_tune(self, tune_id: int) -> list[str]:
        """Delete a tune with everything that is only its own: prompts, images, likes,
        checkpoints, jobs, and the photos no other tune uses. Returns the file paths no row
        refers to any more, for the caller to delete from the file store."""
        with self._write_transaction():
            tune = self.get_tune(tune_id) or {}
            photos = self.tune_photos(tune_id)
            paths = self.tune_files(tune_id) + [tune.get("kohya_path")]
            paths += [p for r in self.tune_checkpoints(tune_id) for p in _checkpoint_paths(r)]
            paths += [p for photo in photos for p in [photo["path"], *_stored_paths(photo.get("inspection"))]]
            paths += [
                p for prompt in self.list_prompts(tune_id=tune_id, limit=-1) for p in _stored_paths(prompt["params"])
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

    def unreferenced(self, paths: Iterable[str]) -> list[str]:
        """Those of `paths` that no row of any table refers to (safe to delete from disk; the file
        store is content-addressed, so two rows may share one file)."""
        candidates = list(dict.fromkeys(paths))
        used: set[str] = set()
        for start in range(0, len(candidates), 500):
            chunk = candidates[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            for table, column in _PATH_COLUMNS:
                rows = self._query(f"SELECT DISTINCT {column} AS path FROM {table} WHERE {column} IN ({marks})", chunk)
                used.update(row["path"] for row in rows)
        # Some files are named only inside JSON: face crops (photo inspections), face avatars'
        # embeddings (adapter metadata), prompts' input images (params). One scan per column
        # finds the rows that mention a candidate's area at all.
        areas = sorted({path.split("/", 1)[0] for path in candidates})
        if areas:
            for table, column in _JSON_PATH_COLUMNS:
                where = " OR ".join(f"{column} LIKE ?" for _ in areas)
                for row in self._query(f"SELECT {column} FROM {table} WHERE {where}", [f'%"{a}/%' for a in areas]):
                    used.update(_stored_paths(row[column]))
        return [path for path in candidates if path not in used]

    # -- photo sets (issue 7: the Photos tab) -------------------------------------------------

    def find_photo(self, sha256: str) -> dict | None:
        """The photo stored from the upload whose bytes hash to `sha256`, or None."""
        return self._one("SELECT * FROM photos WHERE sha256 = ?", [sha256])

    # -- gallery (issue 7): prompts by tune or pack, likes per image, deleting one prompt ------

    def gallery_prompts(
        self,
        *,
        tune_id: int | None = None,
        pack_id: int | None = None,
        order: str = "newest",
        limit: int = 24,
        offset: int = 0,
        likeness: str | None = None,
    ) -> list[dict]:
        """Prompts with their tune's `tune_title` and `tune_model_type` and, for prompts made
        from a pack, `pack_id` and `pack_title`; optionally only one tune's and/or one pack's.
        `order` is 'newest' (id descending), 'likes' (most liked first, ties newest first) or
        'likeness' (best image likeness first, prompts without a scored face last). `likeness`
        keeps only prompts with an image of the subject ('match') or with scored images none of
        which shows the subject ('miss')."""
        clauses, params = [], []
        if tune_id is not None:
            clauses.append("prompts.tune_id = ?")
            params.append(tune_id)
        if pack_id is not None:
            clauses.append("packs.id = ?")
            params.append(pack_id)
        if likeness is not None:
            clauses.append(_LIKENESS_FILTERS[likeness])
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sort = {
            "newest": "prompts.id DESC",
            "likes": "prompts.likes_count DESC, prompts.id DESC",
            "likeness": "(SELECT MAX(likeness_score) FROM images WHERE images.prompt_id = prompts.id) DESC NULLS LAST, "
            "prompts.id DESC",
        }[order]
        return self._query(
            "SELECT prompts.*, tunes.title AS tune_title, tunes.model_type AS tune_model_type, "
            "packs.id AS pack_id, packs.title AS pack_title FROM prompts "
            "JOIN tunes ON tunes.id = prompts.tune_id "
            "LEFT JOIN pack_prompts ON pack_prompts.id = prompts.orig_prompt_id "
            f"LEFT JOIN packs ON packs.id = pack_prompts.pack_id {where} ORDER BY {sort} LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )

    def image_likes(self, prompt_id: int) -> dict[int, int]:
        """Likes per image index of a prompt (-1: likes of the whole prompt); indexes nobody
        liked are left out."""
        rows = self._query(
            "SELECT image_idx, COUNT(*) AS n FROM likes WHERE prompt_id = ? GROUP BY image_idx", [prompt_id]
        )
        return {row["image_idx"]: row["n"] for row in rows}

    def jobs_ahead(self, job_id: int) -> int:
        """How many unfinished jobs were queued before this one (the one running included)."""
        return self._scalar("SELECT COUNT(*) FROM jobs WHERE status IN (?, ?) AND id < ?", [QUEUING, TRAINING, job_id])

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
            source = (prompt["params"] or {}).get("input_image_path")
            if source and not self._scalar(
                "SELECT EXISTS (SELECT 1 FROM prompts WHERE params LIKE ?)", [f"%{source}%"]
            ):
                free += self.unreferenced([source])
            return free

    # -- likeness (issue 10): per-image records, pack counters (m060) ---------------------------

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


# Gallery filters on likeness (m060 columns): some image shows the subject, or images were
# scored and none does.
_LIKENESS_FILTERS = {
    "match": "EXISTS (SELECT 1 FROM images WHERE images.prompt_id = prompts.id AND images.likeness_match = 1)",
    "miss": "EXISTS (SELECT 1 FROM images WHERE images.prompt_id = prompts.id AND images.likeness_match = 0) "
    "AND NOT EXISTS (SELECT 1 FROM images WHERE images.prompt_id = prompts.id AND images.likeness_match = 1)",
}
# Columns that hold file-store paths; a file is deleted only when none of them refers to it.
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
# JSON columns that may name file-store paths inside them.
_JSON_PATH_COLUMNS = (("photos", "inspection"), ("adapters", "metadata"), ("prompts", "params"))
# What each job kind works on: the subject's table and its started / succeeded time columns.
_JOB_SUBJECTS = {
    "train": ("tunes", "started_training_at", "trained_at"),
    "generate": ("prompts", "started_at", "completed_at"),
}
_STORED_PATH = re.compile(r"^[a-z]+/[0-9a-f]{2}/[0-9a-f]{64}\.[a-z]+$")


def _checkpoint_paths(row: dict) -> list[str]:
    """The file-store paths a checkpoint row names: weights, sample, resume state."""
    return [p for p in (row["weights_path"], row["sample_path"], row.get("resume_path")) if p]


def _stored_paths(value: Any) -> list[str]:
    """File-store paths inside a JSON value (e.g. face crops recorded in a photo's inspection)."""
    if isinstance(value, str):
        return [value] if _STORED_PATH.match(value) else []
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [p for item in value for p in _stored_paths(item)]
    return []


def _encode(record: dict) -> dict:
    return {k: json.dumps(v) if k in JSON_COLUMNS and v is not None else v for k, v in record.items()}


def _decode(row: dict) -> dict:
    for key in JSON_COLUMNS.intersection(row):
        if isinstance(row[key], str):
            row[key] = json.loads(row[key])
    return row


def _pack_encode(fields: dict) -> dict:
    """Packs keep their declared classes as one comma-separated text column."""
    if isinstance(fields.get("classes"), list | tuple):
        fields = {**fields, "classes": ",".join(fields["classes"])}
    return fields


def _pack_decode(row: dict | None) -> dict | None:
    if row is not None:
        row["classes"] = [name for name in (row.get("classes") or "").split(",") if name]
    return row
