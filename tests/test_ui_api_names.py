"""Every public Gradio event (`api_name`) works from `gradio_client` against a running studio with
values a client can know: ids it made or was given back, not the choices a page was built with.
A new api_name without a call here fails the test."""

from __future__ import annotations

import pytest
from api_helpers import wait_for
from lora_files import write_sd15_lora
from photos import encode, friend

from studio.domain import CANCELED, SUCCESS

CALLED = {
    "upload_photos",
    "remove_photo",
    "clear_photos",
    "create_tune",
    "cancel_tune",
    "delete_tune",
    "set_active_checkpoint",
    "use_best_step",
    "set_captions",
    "add_lora",
    "add_avatar",
    "delete_adapter",
    "generate",
}


class Caller:
    """Calls api_names by the labels of their inputs (a form's inputs are a set, so their
    positional names are not stable), or by parameter name for an input without a label (a
    BrowserState's is `parameter_<component id>`), and records which were called."""

    def __init__(self, client):
        self.client = client
        self.endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        self.called: set[str] = set()

    def __call__(self, api_name: str, **by_label):
        params = self.endpoints[f"/{api_name}"]["parameters"]
        keys = {p["label"] for p in params} | {p["parameter_name"] for p in params}
        assert set(by_label) <= keys, f"/{api_name} has no input {set(by_label) - keys}"

        def value(param):
            return by_label.get(param["label"], by_label.get(param["parameter_name"]))

        kwargs = {
            p["parameter_name"]: value(p)
            for p in params
            if p["label"] in by_label or p["parameter_name"] in by_label or not p["parameter_has_default"]
        }
        self.called.add(api_name)
        return self.client.predict(**kwargs, api_name=f"/{api_name}")


@pytest.mark.slow
def test_every_api_name_works_from_gradio_client(live_url, studio, tmp_path):
    from gradio_client import Client, handle_file

    studio.start_worker()
    for name in ("rachel", "phoebe", "monica"):
        (tmp_path / f"{name}.jpg").write_bytes(encode(friend(name), "JPEG"))
    client = Client(live_url + "/", verbose=False)
    try:
        call = Caller(client)
        assert {name.lstrip("/") for name in call.endpoints} == CALLED, "an api_name without a call case here"
        assert client.view_api(print_info=False, return_format="dict")["unnamed_endpoints"] == {}

        # Photos: the set the upload gives back is what later calls send.
        files = [handle_file(str(tmp_path / f"{n}.jpg")) for n in ("rachel", "phoebe", "monica")]
        photo_set, *_ = call("upload_photos", **{"Drop photos here (PNG, JPEG or WEBP)": files})
        assert len(photo_set["ids"]) == 3
        with pytest.raises(Exception, match="not in the set"):
            call("remove_photo", Photo=10**6, photo_set=photo_set)
        photo_set, *_ = call("remove_photo", Photo=photo_set["ids"][2], photo_set=photo_set)
        assert len(photo_set["ids"]) == 2

        # Tunes: one trains (mock run) with checkpoints; another is canceled, then deleted.
        call(
            "create_tune",
            values=photo_set,
            Kind="lora",
            Title="From a client",
            Class="woman",
            **{"Mock run (branch fast): the demo model and a few steps, to try the flow": True},
            **{"Checkpoint every (steps)": 3},
        )
        [tune] = studio.list_tunes()
        trained = wait_for(lambda: studio.get_tune(tune["id"])["status"] == SUCCESS, what="training")
        assert trained
        steps = [c["step"] for c in studio.get_tune(tune["id"])["checkpoints"]]
        assert len(steps) > 1 and studio.get_tune(tune["id"])["active_step"] == steps[-1]
        with pytest.raises(Exception, match="no checkpoint at step"):
            call("set_active_checkpoint", Tune=tune["id"], **{"Checkpoint step to use": steps[-1] + 1})
        call("set_active_checkpoint", Tune=str(tune["id"]), **{"Checkpoint step to use": steps[0]})
        assert studio.get_tune(tune["id"])["active_step"] == steps[0]
        assert not studio.get_tune(tune["id"])["use_best_step"]  # a step picked by hand
        call("use_best_step", Tune=str(tune["id"]))
        assert studio.get_tune(tune["id"])["use_best_step"]
        photo_id = studio.get_tune(tune["id"])["captions"][0]["photo_id"]
        caption = f"photo of {tune['token']} woman, smiling, plain background"
        call("set_captions", Tune=str(tune["id"]), Photo=str(photo_id), Caption=caption)
        assert studio.get_tune(tune["id"])["captions"][0]["caption"] == caption

        call(
            "create_tune",
            values=photo_set,
            Kind="lora",
            Title="Too long",
            Class="woman",
            **{"Mock run (branch fast): the demo model and a few steps, to try the flow": True},
            **{"Steps (empty: per photo × photos)": 5000},
        )
        long = next(t for t in studio.list_tunes() if t["title"] == "Too long")
        call("cancel_tune", Tune=long["id"])
        wait_for(lambda: studio.get_tune(long["id"])["status"] == CANCELED, what="the cancel")
        call("delete_tune", Tune=long["id"])
        assert [t["id"] for t in studio.list_tunes()] == [tune["id"]]

        photo_set, *_ = call("clear_photos", **{"Who is in the photos": "woman"})
        assert photo_set["ids"] == []

        # Avatars and LoRAs.
        lora = write_sd15_lora(tmp_path / "toy.safetensors")
        call(
            "add_lora",
            **{"LoRA file (.safetensors)": handle_file(str(lora))},
            **{"LoRA name": "toy", "Trigger words": "toy style", "Default weight": 0.8},
        )
        call(
            "add_avatar",
            Image=handle_file(str(tmp_path / "rachel.jpg")),
            Kind="style",
            **{"Avatar name": "cartoon1", "Default weight": 0.5},
        )
        assert {(a["kind"], a["name"]) for a in studio.list_adapters()} == {("lora", "toy"), ("style", "cartoon1")}
        call("delete_adapter", **{"Avatar or LoRA": "lora:toy"})
        assert [a["name"] for a in studio.list_adapters()] == ["cartoon1"]

        # Generate on the tune made above (not among the page's choices when it was built).
        progress, images, _ = call(
            "generate",
            **{"Model or tune": str(tune["id"]), "Prompt": "ohwx woman", "Images": 1, "Steps": 2},
            **{"Width": 64, "Height": 64, "Seed": 5},
        )
        [prompt] = studio.list_prompts()
        assert (prompt["tune_id"], prompt["status"], len(images)) == (tune["id"], SUCCESS, 1)
        assert call.called == CALLED
    finally:
        client.close()
