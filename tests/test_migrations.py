"""Migrations are defined in number order, and databases made before that are left alone or
upgraded to the same schema. sqlite-utils records applied migrations by name and applies the
pending ones in definition order; before the split of storage/db.py the file defined m040
before m030-m032, so existing databases applied them in that order."""

import importlib.util
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlite_utils import Database

from conftest import ROOT
from storage import Store
from storage.migrations import migrations

#: The order the pre-split module defined (and so applied) the migrations in.
OLD_ORDER = (
    "m001_initial_schema",
    "m040_pack_counters",
    "m030_job_cancel_and_eta",
    "m031_checkpoints",
    "m032_tune_outputs",
    "m050_api_base_url",
    "m060_likeness",
    "m065_prompt_runs",
    "m070_checkpoint_resume_state",
)
#: The last commit with storage/db.py, the module before the split.
PRE_SPLIT = "539f9a2171768989259b1b3a35426ab9bccad163"
STAMP = "2026-01-01T00:00:00.000Z"


def schema(path) -> dict:
    """Every table, index and trigger with its SQL (column order included), order-insensitive."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall()
    conn.close()
    return {(kind, name): sql for kind, name, sql in rows}


def applied(path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT migration_set, name, applied_at FROM _sqlite_migrations ORDER BY rowid").fetchall()
    conn.close()
    return rows


def apply_in_old_order(path, names) -> None:
    """Apply `names` the way the pre-split module did: in OLD_ORDER, each recorded by name."""
    functions = {m.name: m.fn for m in migrations._migrations}
    db = Database(path)
    migrations.ensure_migrations_table(db)
    for name in names:
        with db.atomic():
            functions[name](db)
            db["_sqlite_migrations"].insert(
                {"migration_set": "avatar-studio", "name": name, "applied_at": str(datetime.now(UTC))}
            )
    db.close()


@pytest.fixture(scope="module")
def fresh_schema(tmp_path_factory):
    path = tmp_path_factory.mktemp("fresh") / "studio.db"
    Store(path).close()
    return schema(path)


def test_migrations_keep_their_set_name_and_names_and_are_in_number_order():
    names = [m.name for m in migrations._migrations]
    assert migrations.name == "avatar-studio"
    assert names[: len(OLD_ORDER)] == sorted(OLD_ORDER)
    assert names == sorted(names, key=lambda name: int(name[1:4]))
    assert all(m.fn.__doc__ for m in migrations._migrations)


@pytest.mark.parametrize("done", range(1, len(OLD_ORDER) + 1))
def test_a_database_part_way_through_the_old_order_upgrades_to_the_fresh_schema(tmp_path, fresh_schema, done):
    path = tmp_path / "studio.db"
    apply_in_old_order(path, OLD_ORDER[:done])
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO tunes (id, title, model_type, created_at, updated_at) VALUES (7, 'kept', 'lora', ?, ?)",
            [STAMP, STAMP],
        )
    conn.close()
    before = applied(path)
    store = Store(path)
    assert not migrations.pending(store.db)
    assert store.get_tune(7)["title"] == "kept"
    store.close()
    after = applied(path)
    assert after[:done] == before  # what was applied is not applied again
    assert [row[1] for row in after[done:]] == [
        m.name for m in migrations._migrations if m.name not in OLD_ORDER[:done]
    ]
    assert schema(path) == fresh_schema


def test_a_database_made_by_the_pre_split_module_is_left_alone(tmp_path, fresh_schema):
    source = subprocess.run(["git", "show", f"{PRE_SPLIT}:storage/db.py"], cwd=ROOT, capture_output=True, text=True)
    if source.returncode != 0:
        pytest.skip("the pre-split storage/db.py is not in this checkout's git history")
    module_path = tmp_path / "old_storage_db.py"
    module_path.write_text(source.stdout)
    spec = importlib.util.spec_from_file_location("old_storage_db", module_path)
    old_db = importlib.util.module_from_spec(spec)
    sys.modules["old_storage_db"] = old_db
    try:
        spec.loader.exec_module(old_db)
    finally:
        del sys.modules["old_storage_db"]
    assert [m.name for m in old_db.migrations._migrations] == list(OLD_ORDER)

    path = tmp_path / "studio.db"
    old = old_db.Store(path)
    tune_id = old.add_tune({"title": "Jane", "model_type": "lora", "args": {"steps": 5}})
    pack_id = old.add_pack({"slug": "p", "title": "P", "classes": ["woman"]})
    pack_prompt_id = old.add_pack_prompt({"pack_id": pack_id, "class_name": "woman", "text": "x"})
    prompt_id = old.add_prompt(
        {"tune_id": tune_id, "text": "x", "params": {"seed": 1}, "orig_prompt_id": pack_prompt_id}
    )
    old.finish_prompt(prompt_id, [{"idx": 0, "path": "outputs/aa/x.png", "seed": 1}], warnings=[])
    old.set_image_likeness(prompt_id, 0, {"score": 0.8, "same_person": True})
    old.add_like(prompt_id, "ann")
    job_id = old.enqueue_job("train", tune_id, limit=5)
    old.add_checkpoint({"tune_id": tune_id, "step": 10, "weights_path": "w/aa/x.safetensors"})
    expected = {
        "tune": old.get_tune(tune_id),
        "prompt": old.get_prompt(prompt_id),
        "pack": old.get_pack(pack_id),
        "pack_prompts": old.list_pack_prompts(pack_id),
        "job": old.get_job(job_id),
        "checkpoints": old.tune_checkpoints(tune_id),
    }
    old.close()
    before = applied(path)

    store = Store(path)
    rows = {
        "tune": store.get_tune(tune_id),
        "prompt": store.get_prompt(prompt_id),
        "pack": store.get_pack(pack_id),
        "pack_prompts": store.list_pack_prompts(pack_id),
        "job": store.get_job(job_id),
        "checkpoints": store.tune_checkpoints(tune_id),
    }
    # m090 gave rows made before owners to 'local' (an admin); packs made before are shared.
    assert rows["tune"].pop("owner") == rows["prompt"].pop("owner") == "local"
    assert rows["pack"].pop("owner") is None
    assert rows["tune"].pop("use_best_step") == 1  # m140: old tunes follow their best step too
    assert rows == expected
    assert store.count_likes(prompt_id) == 1
    store.close()
    after = applied(path)
    assert after[: len(before)] == before  # nothing re-ran; only the migrations made since are added
    assert [row[1] for row in after[len(before) :]] == [
        m.name for m in migrations._migrations if m.name not in OLD_ORDER
    ]
    assert schema(path) == fresh_schema
