"""The database's schema, as sqlite-utils migrations: one function per change, in number order.

sqlite-utils records each applied migration by its function name in `_sqlite_migrations`, under
the set name "avatar-studio", and applies the pending ones in the order they are defined here.
So names and the set name never change, and an applied migration is never edited: a change is a
new function at the end, with the next number and a docstring saying why it exists.

Databases made before this file was put in number order applied m040 before m030, m031 and
m032. Those four touch different tables and columns, so either order builds the same schema and
a database part-way through either order upgrades to it (tests/test_migrations.py checks).
"""

from __future__ import annotations

import re

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("avatar-studio")


@migrations()
def m001_initial_schema(db: Database) -> None:
    """The first version's schema: a table for every entity of DESIGN.md §2. Base models are
    tunes with model_type 'checkpoint' so that gallery ids (690204 …) and user tune ids share one
    id space, as in Astria's API."""
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


#: The tables whose ids a client, a stored token (`<lora:ID:…>`, `<faceid:ID:…>`), a callback or
#: an API key can hold.
_NEVER_REUSED = (
    "tunes",
    "photos",
    "packs",
    "pack_prompts",
    "prompts",
    "prompt_runs",
    "adapters",
    "jobs",
    "api_keys",
    "checkpoints",
)


@migrations(transactional=False)
def m080_ids_never_reused(db: Database) -> None:
    """Ids are never handed out twice. Without AUTOINCREMENT SQLite gives a new row the largest
    id + 1, so deleting the newest tune let the next tune take its id: an old prompt's
    `<faceid:ID:1>` then rendered someone else's face, and stored tokens, callbacks and clients'
    ids pointed at the wrong person. AUTOINCREMENT keeps the highest id ever used in
    sqlite_sequence, across restarts.

    SQLite cannot add AUTOINCREMENT to a table, so each table is rebuilt from its own CREATE
    statement (whatever columns earlier migrations added) in one transaction, with every row,
    index and trigger kept; foreign keys are off while the tables are swapped (a DROP would
    otherwise cascade), then checked. sqlite_sequence starts above the largest id still present
    or still named by a job. Not transactional in sqlite-utils' sense because foreign keys can
    only be switched off outside a transaction; the rebuild skips a table that already has
    AUTOINCREMENT, so it is safe to run again if it was cut off before being recorded."""
    conn = db.conn
    foreign_keys = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        with db.atomic():
            _rebuild_with_autoincrement(db)
            broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"m080: foreign keys broken by the rebuild: {broken[:5]}")
    finally:
        conn.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")


def _rebuild_with_autoincrement(db: Database) -> None:
    conn = db.conn
    schema = {
        name: sql for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
    }
    pending = [t for t in _NEVER_REUSED if t in schema and "AUTOINCREMENT" not in schema[t].upper()]
    if pending:
        # Triggers and views name the tables in their bodies; a rename with one of them pointing
        # at a table dropped meanwhile fails, so they go first and come back at the end.
        dependents = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE type IN ('trigger', 'view') AND sql IS NOT NULL"
        ).fetchall()
        for kind, name, _ in dependents:
            conn.execute(f'DROP {kind.upper()} "{name}"')
        for table in pending:
            sql = schema[table]
            rebuilt, count = re.subn(
                r"^(\s*CREATE\s+TABLE\s+)(\"?)" + table + r"\2(\s*\()",
                rf'\1"_m080_{table}"\3',
                sql,
                count=1,
                flags=re.IGNORECASE,
            )
            rebuilt, found = re.subn(
                r"(\bid\s+INTEGER\s+PRIMARY\s+KEY)\b(?!\s+AUTOINCREMENT)",
                r"\1 AUTOINCREMENT",
                rebuilt,
                count=1,
                flags=re.IGNORECASE,
            )
            if not (count and found):
                raise RuntimeError(f"m080: cannot read the id column of table {table}: {sql}")
            indexes = [
                row[0]
                for row in conn.execute(
                    "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", [table]
                )
            ]
            columns = ", ".join(f'"{row[1]}"' for row in conn.execute(f'PRAGMA table_info("{table}")'))
            conn.execute(rebuilt)
            conn.execute(f'INSERT INTO "_m080_{table}" ({columns}) SELECT {columns} FROM "{table}"')
            conn.execute(f'DROP TABLE "{table}"')
            conn.execute(f'ALTER TABLE "_m080_{table}" RENAME TO "{table}"')
            for index in indexes:
                conn.execute(index)
        for _, _, sql in dependents:
            conn.execute(sql)
    # The largest id a row or a job still names; rows deleted before this migration left no
    # other trace, so the sequence can only start above what is known.
    floors = {
        "tunes": "SELECT MAX(subject_id) FROM jobs WHERE kind = 'train'",
        "prompts": "SELECT MAX(subject_id) FROM jobs WHERE kind = 'generate'",
    }
    for table in _NEVER_REUSED:
        if table not in schema:
            continue
        highest = conn.execute(f'SELECT COALESCE(MAX(id), 0) FROM "{table}"').fetchone()[0]
        if table in floors:
            highest = max(highest, conn.execute(floors[table]).fetchone()[0] or 0)
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", [table]).fetchone()
        if seq is None:
            conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", [table, highest])
        elif seq[0] < highest:
            conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = ?", [highest, table])


@migrations()
def m090_owners(db: Database) -> None:
    """Each key and each login sees only its own: tunes, prompts, photos and adapters (uploaded
    LoRAs, avatars) get the owner that
    made them (studio/principals.py names owners). A photo is stored once by content hash, so
    who uploaded it is a link table (two people may upload the same picture). Rows made before
    owners existed belong to 'local', the keyless loopback user, which is an admin: after the
    upgrade admins see them, as the one user of the studio did before; nobody else does. A pack
    without an owner is shared (the starter packs, and every pack made before): all read it,
    admins change it."""
    db.executescript(
        """
        ALTER TABLE tunes ADD COLUMN owner TEXT NOT NULL DEFAULT 'local';
        ALTER TABLE prompts ADD COLUMN owner TEXT NOT NULL DEFAULT 'local';
        ALTER TABLE adapters ADD COLUMN owner TEXT NOT NULL DEFAULT 'local';
        ALTER TABLE packs ADD COLUMN owner TEXT;
        CREATE INDEX idx_tunes_owner ON tunes(owner, id);
        CREATE INDEX idx_prompts_owner ON prompts(owner, id);
        CREATE TABLE photo_owners (
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            owner TEXT NOT NULL,
            PRIMARY KEY (photo_id, owner)
        );
        INSERT INTO photo_owners (photo_id, owner) SELECT id, 'local' FROM photos;
        """
    )


#: What m100 takes out of each table's CREATE statement: the studio-wide UNIQUE of a name.
_STUDIO_WIDE_NAMES = {
    "tunes": r"(\btitle\s+TEXT\s+NOT\s+NULL)\s+UNIQUE\b",
    "packs": r"(\bslug\s+TEXT\s+NOT\s+NULL)\s+UNIQUE\b",
    "adapters": r",\s*UNIQUE\s*\(\s*kind\s*,\s*name\s*\)",
}


@migrations(transactional=False)
def m100_names_unique_per_owner(db: Database) -> None:
    """Tune titles, adapter names and pack slugs are unique per owner, not in the whole studio:
    a 409 on create told a key that another owner had that title, name or slug. A title stays
    the idempotency key of creating a tune, per owner as in Astria, where each account is
    separate; adapter names resolve within the prompt owner's own adapters; a pack slug is
    unique among its owner's packs, and the shared packs (no owner) among themselves.

    SQLite cannot drop a UNIQUE constraint, so each table is rebuilt without it as m080 rebuilt
    them (every row, index and trigger kept, foreign keys off while the tables are swapped,
    then checked), and each sqlite_sequence keeps its highest id: a rebuilt table's sequence
    would otherwise restart above the largest id present, reusing the ids of deleted rows.
    Safe to run again if cut off: a table already rebuilt no longer matches, and the indexes
    are made only if missing."""
    conn = db.conn
    foreign_keys = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        with db.atomic():
            sequences = dict(conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
            _rebuild_without(db, _STUDIO_WIDE_NAMES)
            for name, seq in sequences.items():
                if name in _STUDIO_WIDE_NAMES:
                    conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", [name])
                    conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", [name, seq])
            conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS idx_tunes_owner_title ON tunes(owner, title)")
            conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS idx_adapters_owner_name ON adapters(owner, kind, name)")
            conn.execute("CREATE INDEX IF NOT EXISTS idx_adapters_name ON adapters(kind, name)")
            conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS idx_packs_owner_slug ON packs(COALESCE(owner, ''), slug)")
            conn.execute("CREATE INDEX IF NOT EXISTS idx_packs_slug ON packs(slug)")
            broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"m100: foreign keys broken by the rebuild: {broken[:5]}")
    finally:
        conn.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")


def _rebuild_without(db: Database, patterns: dict[str, str]) -> None:
    """Rebuild each table whose CREATE statement matches its pattern with the match taken out
    (its first group kept), rows, indexes and triggers kept."""
    conn = db.conn
    schema = {
        name: sql for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
    }
    pending = {t: p for t, p in patterns.items() if t in schema and re.search(p, schema[t], flags=re.IGNORECASE)}
    if not pending:
        return
    # As in m080: triggers and views name the tables, so they go first and come back last.
    dependents = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE type IN ('trigger', 'view') AND sql IS NOT NULL"
    ).fetchall()
    for kind, name, _ in dependents:
        conn.execute(f'DROP {kind.upper()} "{name}"')
    for table, pattern in pending.items():
        sql = schema[table]
        rebuilt, count = re.subn(
            r"^(\s*CREATE\s+TABLE\s+)(\"?)" + table + r"\2(\s*\()",
            rf'\1"_m100_{table}"\3',
            sql,
            count=1,
            flags=re.IGNORECASE,
        )
        rebuilt = re.sub(pattern, lambda m: m.group(1) if m.re.groups else "", rebuilt, count=1, flags=re.IGNORECASE)
        if not count:
            raise RuntimeError(f"m100: cannot read the CREATE statement of table {table}: {sql}")
        indexes = [
            row[0]
            for row in conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", [table]
            )
        ]
        columns = ", ".join(f'"{row[1]}"' for row in conn.execute(f'PRAGMA table_info("{table}")'))
        conn.execute(rebuilt)
        conn.execute(f'INSERT INTO "_m100_{table}" ({columns}) SELECT {columns} FROM "{table}"')
        conn.execute(f'DROP TABLE "{table}"')
        conn.execute(f'ALTER TABLE "_m100_{table}" RENAME TO "{table}"')
        for index in indexes:
            conn.execute(index)
    for _, _, sql in dependents:
        conn.execute(sql)


@migrations()
def m130_tune_photo_captions(db: Database) -> None:
    """Captions of training photos (studio/captions.py): each tune's own caption of each of its
    photos, on the link between the two, since one stored photo may serve several tunes (of
    other tokens). NULL: not captioned yet (the training uses the instance prompt)."""
    db.execute("ALTER TABLE tune_photos ADD COLUMN caption TEXT")


@migrations()
def m140_tune_follows_best_step(db: Database) -> None:
    """Whether a tune's prompts use its best checkpoint by likeness (the default, once the
    samples are scored) or the step its owner chose (`set_active_checkpoint` turns it off,
    `use_best_step` back on)."""
    db.executescript("ALTER TABLE tunes ADD COLUMN use_best_step INTEGER NOT NULL DEFAULT 1;")
