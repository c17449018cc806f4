import random
import sqlite3
import threading

from storage import Store
from storage.migrations import migrations


def _tune(store, title="Jane"):
    return store.add_tune(
        {"title": title, "name": "woman", "token": "ohwx", "model_type": "lora", "args": {"steps": 5}}
    )


def _prompt(store, tune_id):
    return store.add_prompt({"tune_id": tune_id, "text": "ohwx woman", "params": {"seed": 1}})


def test_migrations_run_on_empty_and_existing_database(tmp_path):
    path = tmp_path / "studio.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    applied = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY rowid")]
    assert applied == [m.name for m in migrations._migrations]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    store = Store(path)  # existing database: nothing re-applied, nothing lost
    assert len(migrations.applied(store.db)) == len(applied)
    assert not migrations.pending(store.db)
    store.close()


def test_data_survives_a_restart(tmp_path):
    store = Store(tmp_path / "studio.db")
    tune_id = _tune(store)
    prompt_id = _prompt(store, tune_id)
    store.add_like(prompt_id, "ann")
    store.close()
    store = Store(tmp_path / "studio.db")
    tune = store.get_tune(tune_id)
    assert tune["title"] == "Jane" and tune["args"] == {"steps": 5}
    assert store.get_prompt(prompt_id)["params"] == {"seed": 1}
    assert store.count_likes(prompt_id) == 1
    store.close()


def test_concurrent_likes_are_never_lost(store):
    prompt_id = _prompt(store, _tune(store))
    errors = []

    def like(thread_no):
        try:
            for user in range(50):
                assert store.add_like(prompt_id, f"t{thread_no}-u{user}")
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=like, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count_likes(prompt_id) == 1000


def test_concurrent_like_and_unlike_match_rows(store):
    prompt_id = _prompt(store, _tune(store))
    users = [f"u{i}" for i in range(30)]

    def churn(seed):
        rng = random.Random(seed)
        for _ in range(100):
            user = rng.choice(users)
            if rng.random() < 0.6:
                store.add_like(prompt_id, user)
            else:
                store.remove_like(prompt_id, user)

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    liked = sum(bool(store.liked_by(prompt_id, u)) for u in users)
    assert store.count_likes(prompt_id) == liked


def test_like_is_unique_per_user_and_image(store):
    prompt_id = _prompt(store, _tune(store))
    assert store.add_like(prompt_id, "ann")
    assert not store.add_like(prompt_id, "ann")
    assert store.add_like(prompt_id, "ann", image_idx=2)
    assert sorted(store.liked_by(prompt_id, "ann")) == [-1, 2]
    assert store.remove_like(prompt_id, "ann")
    assert not store.remove_like(prompt_id, "ann")
    assert store.count_likes(prompt_id) == 1


def test_deleting_a_tune_cascades(store):
    tune_id = _tune(store)
    prompt_id = _prompt(store, tune_id)
    store.add_image({"prompt_id": prompt_id, "idx": 0, "path": "outputs/aa/x.png", "seed": 3})
    store.add_like(prompt_id, "ann")
    photo_id = store.add_photo({"sha256": "ab" * 32, "path": "photos/ab/x.png"})
    store.link_photos(tune_id, [photo_id])
    assert store.tune_files(tune_id) == ["outputs/aa/x.png"]
    store.delete_tune(tune_id)
    assert store.get_prompt(prompt_id) is None
    assert store.prompt_images(prompt_id) == []
    assert store.count_likes(prompt_id) == 0
    assert [p["id"] for p in store.orphan_photos()] == [photo_id]


def test_base_models_share_the_tune_id_space(store):
    store.upsert_base_model({"id": 690204, "title": "RV", "family": "sd15", "source": "x/y"})
    store.upsert_base_model({"id": 690204, "title": "Realistic Vision", "family": "sd15", "source": "x/y"})
    assert [m["title"] for m in store.list_base_models()] == ["Realistic Vision"]
    tune_id = _tune(store)
    assert tune_id > 690204
    assert [t["id"] for t in store.list_tunes()] == [tune_id]


def test_write_from_a_gradio_worker_thread(store, tmp_path):
    import gradio as gr
    from gradio_client import Client

    from conftest import free_port

    def add(title):
        return str(store.add_tune({"title": title, "model_type": "lora"}))

    with gr.Blocks() as demo:
        box, out = gr.Textbox(), gr.Textbox()
        box.submit(add, box, out, api_name="add")
    port = free_port()
    demo.launch(server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        tune_id = Client(f"http://127.0.0.1:{port}/", verbose=False).predict("from gradio", api_name="/add")
    finally:
        demo.close()
    assert store.get_tune(int(tune_id))["title"] == "from gradio"
