"""Ids are never handed out twice (m080: AUTOINCREMENT), through the REST server and after a
restart, an existing database keeps every row, key, index and trigger when it is upgraded, and
deleting a tune ends the unfinished prompts that name it in a token."""

import sqlite3

import httpx
import pytest
from api_helpers import MEN, live_studio, photo_files
from sqlite_utils import Database

from storage import Store
from storage.migrations import _NEVER_REUSED, migrations
from studio.errors import Conflict, StudioError

SMALL = {"prompt[w]": "64", "prompt[h]": "64", "prompt[steps]": "3", "prompt[num_images]": "1"}
STAMP = "2026-01-01T00:00:00.000Z"


def _tune(url: str, title: str, **fields) -> dict:
    form = {"tune[title]": title, "tune[name]": "man", "tune[branch]": "fast", **fields}
    response = httpx.post(f"{url}/tunes", data=form, files=photo_files(MEN[:1]), timeout=60)
    assert response.status_code == 201, response.text
    return response.json()


def _prompt(url: str, tune_id: int, text: str, **fields) -> dict:
    response = httpx.post(f"{url}/tunes/{tune_id}/prompts", data={"prompt[text]": text, **SMALL, **fields}, timeout=60)
    assert response.status_code == 201, response.text
    return response.json()


def test_deleting_the_newest_tune_or_prompt_never_frees_its_id_even_after_a_restart(tmp_path, demo_model_dir):
    home = tmp_path / "home"
    with live_studio(home, demo_model_dir, worker=False) as (url, studio):
        first, newest = _tune(url, "First")["id"], _tune(url, "Newest")["id"]
        assert httpx.delete(f"{url}/tunes/{newest}").status_code == 200
        after = _tune(url, "After")["id"]
        assert after > newest > first

        kept, last = _prompt(url, 1, "a man")["id"], _prompt(url, 1, "a man again")["id"]
        assert httpx.delete(f"{url}/tunes/1/prompts/{last}").status_code == 200
        again = _prompt(url, 1, "a man once more")["id"]
        assert again > last > kept

        assert httpx.delete(f"{url}/tunes/{after}").status_code == 200
        assert httpx.delete(f"{url}/tunes/1/prompts/{again}").status_code == 200
        db_path = studio.store.path

    store = Store(db_path)  # a restart: the sequence is in the file, not in the process
    try:
        assert store.add_tune({"title": "Reopened", "model_type": "lora"}) > after
        assert store.add_prompt({"tune_id": 1, "text": "x"}) > again
    finally:
        store.close()


def _old_database(path) -> None:
    """A database at the schema before m080, with rows in every table that has an id, the
    newest tune deleted, and a job still naming a tune id above every row's."""
    db = Database(sqlite3.connect(path, isolation_level=None))
    db.execute("PRAGMA foreign_keys = ON")
    migrations.apply(db, stop_before="m080_ids_never_reused")
    run = db.execute
    for tune_id in (1, 7, 8):
        run(
            "INSERT INTO tunes (id, title, model_type, created_at, updated_at) VALUES (?, ?, 'lora', ?, ?)",
            [tune_id, f"t{tune_id}", STAMP, STAMP],
        )
    run("INSERT INTO photos (id, sha256, path, created_at) VALUES (3, 'ab', 'photos/ab/x.png', ?)", [STAMP])
    run("INSERT INTO tune_photos (tune_id, photo_id) VALUES (7, 3)")
    run("INSERT INTO packs (id, slug, title, created_at, updated_at) VALUES (2, 'p', 'P', ?, ?)", [STAMP, STAMP])
    run("INSERT INTO pack_prompts (id, pack_id, class_name, text, created_at) VALUES (4, 2, 'man', 'x', ?)", [STAMP])
    run("INSERT INTO prompt_runs (id, prompts_callback, created_at) VALUES (6, 'https://x.example/', ?)", [STAMP])
    for prompt_id in (10, 11):
        run(
            "INSERT INTO prompts (id, tune_id, text, orig_prompt_id, run_id, created_at, updated_at) "
            "VALUES (?, 7, 'x', 4, 6, ?, ?)",
            [prompt_id, STAMP, STAMP],
        )
    run("INSERT INTO images (prompt_id, idx, path, created_at) VALUES (10, 0, 'outputs/aa/x.png', ?)", [STAMP])
    run("INSERT INTO likes (prompt_id, user, created_at) VALUES (10, 'ann', ?)", [STAMP])
    run("INSERT INTO adapters (id, name, kind, path, created_at) VALUES (5, 'a', 'style', 'p', ?)", [STAMP])
    run("INSERT INTO api_keys (id, owner, key_hash, created_at) VALUES (9, 'me', 'h', ?)", [STAMP])
    run("INSERT INTO checkpoints (id, tune_id, step, weights_path, created_at) VALUES (12, 7, 5, 'w', ?)", [STAMP])
    run(
        "INSERT INTO jobs (id, kind, subject_id, created_at, updated_at) VALUES (13, 'train', 40, ?, ?)", [STAMP, STAMP]
    )
    run("DELETE FROM tunes WHERE id = 8")
    db.close()


def _layout(path) -> dict:
    """Every row of every table, each table's foreign keys, and every index's and trigger's SQL."""
    conn = sqlite3.connect(path)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    tables = [t for t in tables if not t.startswith(("sqlite_", "_sqlite"))]
    layout = {
        "rows": {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables},
        "keys": {t: conn.execute(f'PRAGMA foreign_key_list("{t}")').fetchall() for t in tables},
        "columns": {t: conn.execute(f'PRAGMA table_info("{t}")').fetchall() for t in tables},
        "indexes": sorted(conn.execute("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index'")),
        "triggers": sorted(conn.execute("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'")),
    }
    conn.close()
    return layout


def test_an_existing_database_keeps_everything_and_never_reuses_an_id_it_knows(tmp_path):
    path = tmp_path / "studio.db"
    _old_database(path)
    before = _layout(path)
    assert before["triggers"] and before["indexes"]

    # m080 alone keeps the layout; the migrations after it (owners) add to it.
    db = Database(sqlite3.connect(path, isolation_level=None))
    db.execute("PRAGMA foreign_keys = ON")
    migrations.apply(db, stop_before="m090_owners")
    db.conn.close()
    assert _layout(path) == before

    store = Store(path)
    try:
        assert not migrations.pending(store.db)
        for table in _NEVER_REUSED:
            sql = store._scalar("SELECT sql FROM sqlite_master WHERE name = ?", [table])
            assert "id INTEGER PRIMARY KEY AUTOINCREMENT" in sql, table
        assert store._query("PRAGMA foreign_key_check") == []
        assert store.add_tune({"title": "new", "model_type": "lora"}) == 41  # above the job's tune 40
        assert store.add_prompt({"tune_id": 7, "text": "y"}) == 12
        assert store.add_pack({"slug": "q", "title": "Q", "classes": ["man"]}) == 3
        # The foreign keys and triggers still act: the like counter, then the cascade.
        store.add_like(10, "bob")
        assert store.get_prompt(10)["likes_count"] == 2
        store.delete_tune(7)
        assert store.get_prompt(10) is None and store.tune_checkpoints(7) == []
    finally:
        store.close()


def test_deleting_a_tune_fails_the_unstarted_prompts_that_name_it(tmp_path, demo_model_dir, site):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False) as (url, studio):
        face = _tune(url, "Face", **{"tune[model_type]": "faceid"})
        assert face["status"] == "SUCCESS"
        token = f"<faceid:{face['id']}:1>"
        finished = _prompt(url, 1, f"{token} a man")
        assert studio.run_pending() == 1
        running = _prompt(url, 1, f"a man {token}")
        job = studio.store.claim_job()  # a worker took it: it runs now
        assert job["subject_id"] == running["id"]
        with pytest.raises(Conflict, match=f"prompt {running['id']} uses tune {face['id']} and is running"):
            studio.delete_tune(face["id"])
        studio.store.finish_job(job["id"], "CANCELED", "canceled")  # as its worker does once asked to stop
        queued = _prompt(url, 1, f"{token} a man", **{"prompt[callback]": f"{site.url}/hook"})
        other = _prompt(url, 1, "a man with a 5 in the text")
        lora = _tune(url, "Still training")  # its prompt waits for it, with no job yet
        waiting = _prompt(url, lora["id"], f"ohwx man {token}")

        assert httpx.delete(f"{url}/tunes/{face['id']}").status_code == 200

        def status(tune_id, prompt):
            return httpx.get(f"{url}/tunes/{tune_id}/prompts/{prompt['id']}").json()

        for tune_id, prompt in ((1, queued), (lora["id"], waiting)):
            failed = status(tune_id, prompt)
            assert (failed["status"], failed["message"]) == ("FAILED", f"tune {face['id']} was deleted")
        assert status(1, other)["status"] == "QUEUING"
        kept = status(1, finished)
        assert kept["status"] == "SUCCESS" and len(kept["images"]) == 1
        assert httpx.get(kept["images"][0]).status_code == 200
        [(_, posted)] = _wait(lambda: site.callbacks("/hook"))
        assert posted["prompt"]["status"] == "FAILED"

        # The id stays unused, so the token can never name another person.
        assert _tune(url, "Another face", **{"tune[model_type]": "faceid"})["id"] > face["id"]
        with pytest.raises(StudioError, match=f"there is no tune {face['id']}"):
            studio.rerun_prompt(finished["id"])


def _wait(condition, timeout: float = 30.0):
    from api_helpers import wait_for

    return wait_for(condition, timeout, "the callback")
