"""Owners: the studio refuses to be open by accident; each API key, login and demo visitor sees
only its own tunes, prompts and photos (others get 404, in lists too); admins see all; the UI's
events go through the same checks as the REST routes. Everything is served on loopback."""

import json
import os
import subprocess
import sys
import uuid
from contextlib import contextmanager

import httpx
import pytest
from api_helpers import photo_files

from conftest import ROOT, serve
from studio.config import ConfigError, Settings
from studio.core import Studio
from studio.principals import Principal

FACE = {"ann": "rachel", "bob": "monica", "carl": "phoebe", "dora": "chandler"}
SPACE = {"SPACE_ID": "ann/avatar-studio", "SPACE_HOST": "ann-avatar-studio.hf.space"}


# -- an open UI is a choice ----------------------------------------------------------------------


@pytest.mark.parametrize("env", [{"STUDIO_HOST": "0.0.0.0"}, {"STUDIO_HOST": "192.168.1.5"}, SPACE])
def test_a_reachable_studio_needs_logins_or_an_explicit_public_demo(env):
    with pytest.raises(ConfigError) as error:
        Settings.from_env(env)
    assert "STUDIO_AUTH" in error.value.message and "STUDIO_PUBLIC_DEMO" in error.value.message
    assert Settings.from_env({**env, "STUDIO_AUTH": "ann:pw"}).auth == (("ann", "pw"),)
    demo = Settings.from_env({**env, "STUDIO_PUBLIC_DEMO": "1", "STUDIO_ADMINS": "ann, key-owner"})
    assert demo.public_demo and not demo.is_loopback and demo.admins == ("ann", "key-owner")
    assert Settings.from_env({}).is_loopback  # loopback needs neither


def test_the_studio_refuses_to_start_on_all_interfaces_without_a_login(tmp_path):
    env = {**os.environ, "STUDIO_HOST": "0.0.0.0", "STUDIO_HOME": str(tmp_path / "home")}
    for name in ("STUDIO_AUTH", "STUDIO_PUBLIC_DEMO", "SPACE_ID"):
        env.pop(name, None)
    run = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "cannot start" in run.stderr and "STUDIO_AUTH" in run.stderr and "STUDIO_PUBLIC_DEMO" in run.stderr
    assert not (tmp_path / "home").exists()  # refused before anything was created


# -- serving, and calling the UI's events as a browser (or an attacker) does ----------------------


@contextmanager
def served(tmp_path, demo_model_dir, **settings):
    """The whole app for a fresh studio; yields (url, studio, blocks)."""
    from starlette.routing import Mount

    from app import create_app

    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "demo").symlink_to(demo_model_dir, target_is_directory=True)
    studio = Studio.open(Settings(home=home, demo_size=64, allow_private_urls=True, **settings))
    app = create_app(studio)
    blocks = next(r.app for r in app.routes if isinstance(r, Mount)).get_blocks()
    url, stop = serve(app)
    try:
        yield url, studio, blocks
    finally:
        stop()
        studio.close()


def fn_index(blocks, module: str, name: str) -> int:
    """The index of the UI event whose handler is `name` in studio.ui.`module`."""
    [index] = [
        i
        for i, block_fn in blocks.fns.items()
        if block_fn.fn is not None
        and getattr(block_fn.fn, "__module__", "") == f"studio.ui.{module}"
        and block_fn.fn.__qualname__.endswith(f".{name}")
    ]
    return index


def call_event(client: httpx.Client, url: str, index: int, data: list, session: str | None = None) -> dict:
    """Run one Gradio event through the queue API (what the page does) in page session
    `session` (default: a new one); returns the final message ({"success": …, "output":
    {"data": […]} or {"error": …}}) or {"status": code}."""
    session = session or uuid.uuid4().hex
    body = {"data": data, "fn_index": index, "session_hash": session, "event_data": None, "trigger_id": None}
    joined = client.post(f"{url}/gradio_api/queue/join", json=body)
    if joined.status_code != 200:
        return {"status": joined.status_code}
    with client.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}, timeout=60) as s:
        for line in s.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the event never completed")


# -- API keys ------------------------------------------------------------------------------------


def test_two_api_keys_are_isolated_both_ways_and_an_admin_sees_both(tmp_path, demo_model_dir):
    with served(tmp_path, demo_model_dir, admins=("boss",)) as (url, studio, _):
        keys = {who: studio.create_api_key(who) for who in ("ann", "bob", "boss")}
        auth = {who: {"Authorization": f"Bearer {key}"} for who, key in keys.items()}
        made = {}
        for who in ("ann", "bob"):
            form = {"tune[title]": f"{who}'s tune", "tune[name]": "woman", "tune[branch]": "fast"}
            response = httpx.post(
                f"{url}/tunes", data=form, files=photo_files((FACE[who],)), headers=auth[who], timeout=120
            )
            assert response.status_code == 201, response.text
            tune = response.json()
            prompt = httpx.post(
                f"{url}/tunes/{tune['id']}/prompts",
                json={"prompt": {"text": "a portrait", "num_images": 1, "steps": 2}},
                headers=auth[who],
            )
            assert prompt.status_code == 201, prompt.text
            made[who] = (tune, prompt.json())

        for me, other in (("ann", "bob"), ("bob", "ann")):
            mine, theirs = made[me], made[other]
            tune_id, prompt_id = theirs[0]["id"], theirs[1]["id"]
            photo_id = theirs[0]["orig_images"][0].rsplit("/", 1)[1]
            h = auth[me]
            assert [t["id"] for t in httpx.get(f"{url}/tunes", headers=h).json()] == [mine[0]["id"]]
            assert [p["id"] for p in httpx.get(f"{url}/prompts", headers=h).json()] == [mine[1]["id"]]
            for path in (
                f"/tunes/{tune_id}",
                f"/tunes/{tune_id}/prompts",
                f"/tunes/{tune_id}/photos/{photo_id}",
                f"/tunes/{tune_id}/lora.safetensors",
                f"/prompts/{prompt_id}",
                f"/tunes/{tune_id}/prompts/{prompt_id}",
            ):
                response = httpx.get(url + path, headers=h)
                assert response.status_code == 404, (me, path, response.status_code)
            assert httpx.post(f"{url}/prompts/{prompt_id}/likes", headers=h).status_code == 404
            assert (
                httpx.post(
                    f"{url}/tunes/{tune_id}/prompts", json={"prompt": {"text": "x", "steps": 2}}, headers=h
                ).status_code
                == 404
            )
            # A token naming the other's tune reads as a tune that does not exist.
            token = httpx.post(
                f"{url}/tunes/1/prompts", json={"prompt": {"text": f"<faceid:{tune_id}:1> x", "steps": 2}}, headers=h
            )
            assert token.status_code == 422 and f"no tune {tune_id}" in token.json()["error"]
            # Titles are per owner: someone else's makes a tune of one's own, never returns theirs.
            form = {"tune[title]": theirs[0]["title"], "tune[name]": "woman", "tune[branch]": "fast"}
            again = httpx.post(f"{url}/tunes", data=form, files=photo_files((FACE[me],)), headers=h, timeout=120)
            assert again.status_code == 201 and again.json()["id"] != tune_id, again.text
            assert httpx.delete(f"{url}/tunes/{again.json()['id']}", headers=h).status_code == 200
            assert httpx.delete(f"{url}/prompts/{prompt_id}", headers=h).status_code == 404
            assert httpx.delete(f"{url}/tunes/{tune_id}", headers=h).status_code == 404
            assert httpx.get(f"{url}/tunes/{tune_id}", headers=auth[other]).status_code == 200  # still there

        boss = auth["boss"]
        ids = {t["id"] for t in httpx.get(f"{url}/tunes", headers=boss).json()}
        assert ids == {made["ann"][0]["id"], made["bob"][0]["id"]}
        assert {p["id"] for p in httpx.get(f"{url}/prompts", headers=boss).json()} == {
            made["ann"][1]["id"],
            made["bob"][1]["id"],
        }
        photo = made["ann"][0]["orig_images"][0]
        assert httpx.get(photo, headers=boss).status_code == 200
        assert httpx.delete(f"{url}/tunes/{made['bob'][0]['id']}", headers=boss).status_code == 200
        assert httpx.get(f"{url}/tunes/{made['bob'][0]['id']}", headers=auth["bob"]).status_code == 404


# -- the UI's events -----------------------------------------------------------------------------


def own_tune(studio, principal: Principal, title: str, person: str) -> tuple[int, int]:
    """A fast LoRA tune of `principal` made from one photo; returns (tune id, photo id)."""
    from studio.tune_requests import TuneRequest

    [(_, (filename, data, _))] = photo_files((person,))
    [row], _ = studio.add_photos([(filename, data)], principal=principal)
    request = TuneRequest(title=title, name="woman", branch="fast")
    tune = studio.create_tune(request, photo_ids=[row["id"]], principal=principal)
    return tune["id"], row["id"]


def photo_set(photo_id: int) -> dict:
    return {"ids": [photo_id], "name": "woman", "characteristics": {}}


def shown(message: dict) -> str:
    assert message.get("success"), message
    return json.dumps(message["output"]["data"])


def refused(message: dict) -> str:
    assert message.get("success") is False, message
    return message["output"].get("error") or ""


def test_a_public_demo_keeps_key_minting_and_other_visitors_things_closed(tmp_path, demo_model_dir):
    from studio.ui.common import VISITOR_COOKIE

    with served(tmp_path, demo_model_dir, host="0.0.0.0", public_demo=True) as (url, studio, blocks):
        ann, bob = httpx.Client(timeout=60), httpx.Client(timeout=60)
        for client in (ann, bob):
            assert client.get(url + "/").status_code == 200
        ann_id, bob_id = ann.cookies[VISITOR_COOKIE], bob.cookies[VISITOR_COOKIE]
        assert ann_id != bob_id
        tune_id, photo_id = own_tune(studio, Principal(f"browser:{ann_id}"), "Ann's tune", "rachel")
        mint, load_photos = fn_index(blocks, "status", "on_create"), fn_index(blocks, "photos", "on_load")
        open_tunes, delete = fn_index(blocks, "tunes", "on_open"), fn_index(blocks, "tunes", "on_delete")

        for client in (ann, bob):  # no visitor mints a key
            assert "STUDIO_ADMINS" in refused(call_event(client, url, mint, ["mallory"]))
        assert studio.list_api_keys() == []

        assert "data:image/jpeg" in shown(call_event(ann, url, load_photos, [photo_set(photo_id)]))
        assert "data:image/jpeg" not in shown(call_event(bob, url, load_photos, [photo_set(photo_id)]))
        assert "Ann" in shown(call_event(ann, url, open_tunes, [None]))
        assert "Ann" not in shown(call_event(bob, url, open_tunes, [None]))

        # The page's tune choices are each visitor's own: another's id is refused as it comes in.
        shown(call_event(bob, url, open_tunes, [None], session="bob-page"))
        refused(call_event(bob, url, delete, [tune_id], session="bob-page"))
        assert studio.get_tune(tune_id)["id"] == tune_id
        # Without a visitor cookie an event acts for nobody at all.
        assert "cookie" in refused(call_event(httpx.Client(timeout=60), url, open_tunes, [None]))
        shown(call_event(ann, url, open_tunes, [None], session="ann-page"))
        shown(call_event(ann, url, delete, [tune_id], session="ann-page"))
        assert studio.list_tunes() == []


def login(url: str, user: str, password: str) -> httpx.Client:
    client = httpx.Client(timeout=60)
    response = client.post(f"{url}/login", data={"username": user, "password": password})
    assert response.status_code == 200, response.text
    return client


def test_logins_are_isolated_both_ways_an_admin_sees_both_and_events_need_a_login(tmp_path, demo_model_dir):
    auth = (("ann", "pw-a"), ("bob", "pw-b"), ("boss", "pw-c"))
    with served(tmp_path, demo_model_dir, auth=auth, admins=("boss",)) as (url, studio, blocks):
        made = {
            who: own_tune(studio, Principal(f"login:{who}"), f"{who.title()}'s tune", person)
            for who, person in (("ann", "rachel"), ("bob", "monica"))
        }
        mint, load_photos = fn_index(blocks, "status", "on_create"), fn_index(blocks, "photos", "on_load")
        open_tunes, delete = fn_index(blocks, "tunes", "on_open"), fn_index(blocks, "tunes", "on_delete")

        # No login, no event at all.
        assert call_event(httpx.Client(timeout=60), url, mint, ["mallory"]) == {"status": 401}
        assert call_event(httpx.Client(timeout=60), url, load_photos, [photo_set(made["ann"][1])]) == {"status": 401}

        clients = {who: login(url, who, password) for who, password in auth}
        for me, other in (("ann", "bob"), ("bob", "ann")):
            client, (tune_id, photo_id) = clients[me], made[other]
            listing = shown(call_event(client, url, open_tunes, [None]))
            assert f"{me.title()}" in listing and f"{other.title()}" not in listing
            assert "data:image/jpeg" in shown(call_event(client, url, load_photos, [photo_set(made[me][1])]))
            assert "data:image/jpeg" not in shown(call_event(client, url, load_photos, [photo_set(photo_id)]))
            shown(call_event(client, url, open_tunes, [None], session=f"{me}-page"))
            refused(call_event(client, url, delete, [tune_id], session=f"{me}-page"))
            assert "STUDIO_ADMINS" in refused(call_event(client, url, mint, [me]))
        assert {t["id"] for t in studio.list_tunes()} == {made["ann"][0], made["bob"][0]}

        boss = clients["boss"]
        listing = shown(call_event(boss, url, open_tunes, [None]))
        assert "Ann" in listing and "Bob" in listing
        assert "data:image/jpeg" in shown(call_event(boss, url, load_photos, [photo_set(made["bob"][1])]))
        key = json.loads(shown(call_event(boss, url, mint, ["robot"])))[0]
        assert key.startswith("sk_") and studio.api_key_user(key) == "key:robot"
        shown(call_event(boss, url, open_tunes, [None], session="boss-page"))
        shown(call_event(boss, url, delete, [made["bob"][0]], session="boss-page"))
        assert [t["id"] for t in studio.list_tunes()] == [made["ann"][0]]


# -- adapters and packs --------------------------------------------------------------------------


def test_avatars_and_packs_belong_to_their_maker_and_starter_packs_are_shared(tmp_path, demo_model_dir):
    from photos import encode, friend

    from studio.errors import AdminsOnly, NotFound
    from studio.packs import PackRequest

    with served(tmp_path, demo_model_dir, admins=("boss",)) as (url, studio, _):
        keys = {who: studio.create_api_key(who) for who in ("ann", "bob", "boss")}
        auth = {who: {"Authorization": f"Bearer {key}"} for who, key in keys.items()}
        ann, bob, boss = (Principal(f"key:{who}", is_admin=who == "boss") for who in ("ann", "bob", "boss"))

        style = studio.add_adapter("style", "annstyle", encode(friend("ross"), "PNG"), principal=ann)
        assert [a["name"] for a in studio.list_adapters(principal=ann)] == ["annstyle"]
        assert studio.list_adapters(principal=bob) == []
        for verb in (studio.get_adapter, studio.adapter_thumbnail, studio.delete_adapter):
            with pytest.raises(NotFound):
                verb("style", "annstyle", principal=bob)
        token = studio.adapter_token(style)
        assert token not in json.dumps(studio.prompt_tokens(principal=bob))
        used = httpx.post(
            f"{url}/tunes/1/prompts", json={"prompt": {"text": f"{token} a cat", "steps": 2}}, headers=auth["bob"]
        )
        assert used.status_code == 422 and "annstyle" in used.json()["error"]
        assert [a["name"] for a in studio.list_adapters(principal=boss)] == ["annstyle"]

        pack = studio.create_pack(PackRequest(title="Ann's pack", classes=("woman",)), principal=ann)
        starter = "corporate-headshots"
        assert httpx.get(f"{url}/p/{pack['slug']}", headers=auth["ann"]).status_code == 200
        assert httpx.get(f"{url}/p/{pack['slug']}", headers=auth["bob"]).status_code == 404
        assert httpx.get(f"{url}/p/{pack['id']}", headers=auth["bob"]).status_code == 404
        assert httpx.get(f"{url}/p/{starter}", headers=auth["bob"]).status_code == 200
        listed = {p["slug"] for p in httpx.get(f"{url}/packs", headers=auth["bob"]).json()}
        assert starter in listed and pack["slug"] not in listed
        assert pack["slug"] in {p["slug"] for p in httpx.get(f"{url}/packs", headers=auth["boss"]).json()}
        with pytest.raises(NotFound):
            studio.delete_pack(pack["id"], principal=bob)
        with pytest.raises(AdminsOnly):
            studio.update_pack(starter, title="Mine now", principal=ann)
        assert studio.update_pack(starter, title="Headshots", principal=boss)["title"] == "Headshots"
        studio.delete_pack(pack["id"], principal=ann)
