"""What the UI tabs do, over HTTP too (studio/api/library.py): uploading a LoRA or an avatar,
listing a tune's checkpoints and switching its active one, and exporting and importing a pack
file; each owner reaches only its own."""

import json

import httpx
import pytest
from api_helpers import live_studio, photo_files
from lora_files import write_sd15_lora
from photos import encode, friend

from studio.services.api_keys import env_key_user

ANN, BOB = "ann-key", "bob-key"


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def served(tmp_path, demo_model_dir):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, api_keys=(ANN, BOB)) as served:
        yield served


def test_a_lora_and_an_avatar_upload_list_and_delete_per_owner(served, tmp_path):
    url, studio = served
    lora = write_sd15_lora(tmp_path / "toy.safetensors").read_bytes()
    form = {"adapter[kind]": "lora", "adapter[name]": "toy", "adapter[weight]": "0.8"}
    form["adapter[trigger_words][]"] = ["toy style", "plastic"]
    files = {"adapter[file]": ("toy.safetensors", lora, "application/octet-stream")}
    response = httpx.post(f"{url}/adapters", data=form, files=files, headers=_auth(ANN))
    assert response.status_code == 201, response.text
    made = response.json()
    assert (made["kind"], made["name"], made["family"], made["weight"]) == ("lora", "toy", "sd15", 0.8)
    assert made["trigger_words"] == ["toy style", "plastic"] and made["token"] == "<be-lora:toy:0.8>"
    stored = studio.get_adapter("lora", "toy")
    assert studio.files.read(stored["path"]) == lora and stored["owner"] == env_key_user(ANN)

    style = {"adapter[kind]": "style", "adapter[name]": "cartoon1", "adapter[weight]": "0.5"}
    picture = {"adapter[file]": ("style.jpg", encode(friend("rachel"), "JPEG"), "image/jpeg")}
    response = httpx.post(f"{url}/adapters", data=style, files=picture, headers=_auth(ANN))
    assert response.status_code == 201 and response.json()["token"] == "<be-style:cartoon1:0.5>"

    listed = httpx.get(f"{url}/adapters", headers=_auth(ANN)).json()
    assert sorted((a["kind"], a["name"]) for a in listed) == [("lora", "toy"), ("style", "cartoon1")]
    assert all("path" not in a for a in listed)  # storage paths stay private
    assert [a["name"] for a in httpx.get(f"{url}/adapters?kind=lora", headers=_auth(ANN)).json()] == ["toy"]
    assert httpx.get(f"{url}/adapters/lora/toy", headers=_auth(ANN)).json()["id"] == made["id"]

    # Bob sees none of Ann's, may use the same name, and cannot delete hers.
    assert httpx.get(f"{url}/adapters", headers=_auth(BOB)).json() == []
    assert httpx.get(f"{url}/adapters/lora/toy", headers=_auth(BOB)).status_code == 404
    assert httpx.delete(f"{url}/adapters/lora/toy", headers=_auth(BOB)).status_code == 404
    response = httpx.post(f"{url}/adapters", data=form, files=files, headers=_auth(BOB))
    assert response.status_code == 201 and response.json()["id"] != made["id"]

    again = httpx.post(f"{url}/adapters", data=form, files=files, headers=_auth(ANN))
    assert again.status_code == 409 and again.json()["field"] == "name"
    pickle = {"adapter[file]": ("toy.safetensors", b"\x80\x04not safetensors", "application/octet-stream")}
    bad = httpx.post(f"{url}/adapters", data={**form, "adapter[name]": "bad"}, files=pickle, headers=_auth(ANN))
    assert bad.status_code == 422 and bad.json()["field"] == "file"
    assert httpx.post(f"{url}/adapters", data=form, headers=_auth(ANN)).json()["field"] == "file"
    assert httpx.post(f"{url}/adapters", data=form, files=files).status_code == 401

    response = httpx.delete(f"{url}/adapters/lora/toy", headers=_auth(ANN))
    assert response.status_code == 200
    assert [a["name"] for a in httpx.get(f"{url}/adapters", headers=_auth(ANN)).json()] == ["cartoon1"]
    assert httpx.get(f"{url}/adapters/lora/toy", headers=_auth(ANN)).status_code == 404
    assert httpx.get(f"{url}/adapters/lora/toy", headers=_auth(BOB)).status_code == 200  # Bob's stays


def test_a_pack_exports_as_json_and_imports_for_its_owner_only(served):
    url, studio = served
    exported = httpx.get(f"{url}/p/corporate-headshots/export", headers=_auth(ANN))
    assert exported.status_code == 200, exported.text
    assert 'filename="corporate-headshots.json"' in exported.headers["content-disposition"]
    document = exported.json()
    assert document["format"] == "avatar-studio-pack" and document["slug"] == "corporate-headshots"
    women = document["prompts_per_class"]["woman"]

    response = httpx.post(f"{url}/packs?slug=ann-headshots", json=document, headers=_auth(ANN))
    assert response.status_code == 201, response.text
    imported = response.json()
    assert imported["slug"] == "ann-headshots" and imported["title"] == document["title"]
    assert [p["text"] for p in imported["prompts_per_class"]["woman"]] == [p["text"] for p in women]
    assert httpx.get(f"{url}/p/ann-headshots", headers=_auth(ANN)).status_code == 200
    assert httpx.get(f"{url}/p/ann-headshots", headers=_auth(BOB)).status_code == 404
    assert httpx.get(f"{url}/p/{imported['id']}/export", headers=_auth(BOB)).status_code == 404
    assert studio.store.get_pack(imported["id"])["owner"] == env_key_user(ANN)

    # The export of the copy is the same file under its new slug.
    copy = httpx.get(f"{url}/p/ann-headshots/export", headers=_auth(ANN)).json()
    assert {**copy, "slug": "corporate-headshots"} == document

    taken = httpx.post(f"{url}/packs?slug=ann-headshots", json=document, headers=_auth(ANN))
    assert taken.status_code == 409 and taken.json()["field"] == "slug"
    # As a file upload, Bob may import it under the same slug: slugs are per owner.
    upload = {"file": ("pack.json", json.dumps(document).encode(), "application/json")}
    response = httpx.post(f"{url}/packs?slug=ann-headshots", files=upload, headers=_auth(BOB))
    assert response.status_code == 201 and response.json()["id"] != imported["id"]
    broken = httpx.post(f"{url}/packs", json={"format": "something else"}, headers=_auth(ANN))
    assert broken.status_code == 422 and broken.json()["field"] == "file"


@pytest.mark.slow
def test_a_tunes_checkpoints_list_and_the_active_one_switches(tmp_path, demo_model_dir):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, api_keys=(ANN, BOB)) as (url, studio):
        form = {"tune[title]": "Rachel", "tune[name]": "woman", "tune[branch]": "fast"}
        form["tune[checkpointing_steps]"] = "3"
        response = httpx.post(
            f"{url}/tunes", data=form, files=photo_files(("rachel", "phoebe")), headers=_auth(ANN), timeout=60
        )
        assert response.status_code == 201, response.text
        tune_id = response.json()["id"]
        studio.run_pending()

        checkpoints = httpx.get(f"{url}/tunes/{tune_id}/checkpoints", headers=_auth(ANN)).json()
        steps = [c["step"] for c in checkpoints]
        assert len(steps) > 1 and [c["step"] for c in checkpoints if c["active"]] == [steps[-1]]
        assert all(c["sample"].startswith(f"{url}/images/") for c in checkpoints)
        final = httpx.get(f"{url}/tunes/{tune_id}/lora.safetensors", headers=_auth(ANN)).content

        assert (
            httpx.post(f"{url}/tunes/{tune_id}/checkpoints/{steps[0]}/activate", headers=_auth(BOB)).status_code == 404
        )
        assert httpx.get(f"{url}/tunes/{tune_id}/checkpoints", headers=_auth(BOB)).status_code == 404
        response = httpx.post(f"{url}/tunes/{tune_id}/checkpoints/{steps[0]}/activate", headers=_auth(ANN))
        assert response.status_code == 200, response.text
        tune = response.json()
        assert tune["active_step"] == steps[0] and [c["step"] for c in tune["checkpoints"] if c["active"]] == [steps[0]]
        earlier = httpx.get(tune["ckpt_url"], headers=_auth(ANN)).content
        assert earlier != final and earlier[:8] != b""
        weights = studio.store.get_tune(tune_id)["weights_path"]
        assert weights == studio.store.get_checkpoint(tune_id, steps[0])["weights_path"]

        missing = httpx.post(f"{url}/tunes/{tune_id}/checkpoints/{steps[-1] + 1}/activate", headers=_auth(ANN))
        assert missing.status_code == 404 and missing.json()["field"] == "step"
