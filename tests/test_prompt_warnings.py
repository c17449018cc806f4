"""Warnings known when a prompt is made (a pack placeholder the tune has no value for) are on
the prompt from the start and stay first once it has run, beside the run's own."""

from studio.domain import SUCCESS
from studio.packs import PackPromptRequest, PackRequest, missing_warning
from studio.prompts import PromptRequest

DEMO_ID = 1


def test_a_requests_warnings_are_stored_at_once_and_first_when_it_finishes(studio):
    request = PromptRequest(text="a red bicycle", num_images=1, steps=2, w=64, h=64, warnings=("left out: x",))
    made = studio.create_prompt(DEMO_ID, request)
    assert made["warnings"] == ["left out: x"] and studio.prompt_json(made["id"])["warnings"] == ["left out: x"]
    studio.run_pending()
    done = studio.prompt_json(made["id"])
    assert done["status"] == SUCCESS and done["warnings"][0] == "left out: x"
    assert done["warnings"].count("left out: x") == 1


def test_a_pack_run_warns_of_every_placeholder_it_could_not_fill(studio):
    pack = studio.create_pack(PackRequest(title="Looks", classes=("woman",)))
    template = "{{token}} {{name}}, {{eye_color}}, {{hair_color}}, {{age}}, smiling"
    studio.add_pack_prompt(pack["id"], PackPromptRequest("woman", template))
    studio.add_pack_prompt(pack["id"], PackPromptRequest("woman", "{{token}} {{name}} in a park"))
    fair = studio.store.add_tune(
        {
            "title": "Fair",
            "name": "woman",
            "token": "ohwx",
            "model_type": "lora",
            "characteristics": {"hair_color": "red hair"},
        }
    )
    bare = studio.store.add_tune({"title": "Bare", "name": "woman", "token": "sks", "model_type": "lora"})
    made = studio.run_pack(pack["id"], [fair, bare])
    by_tune = {(p["tune_id"], p["text"]): p["warnings"] for p in made}
    assert by_tune == {
        (fair, "ohwx woman, red hair, smiling"): [missing_warning(["eye_color", "age"])],
        (fair, "ohwx woman in a park"): [],
        (bare, "sks woman, smiling"): [missing_warning(["eye_color", "hair_color", "age"])],
        (bare, "sks woman in a park"): [],
    }
    assert "{{eye_color}}, {{hair_color}}, {{age}}" in missing_warning(["eye_color", "hair_color", "age"])


def test_a_tune_from_a_pack_carries_the_warning_to_the_prompt_made_with_it(studio):
    from photos import astronaut, encode

    pack = studio.create_pack(PackRequest(title="Later", classes=("woman",)))
    studio.add_pack_prompt(pack["id"], PackPromptRequest("woman", "{{token}} {{name}}, {{eye_color}}", num_images=1))
    tune = studio.tune_from_pack(pack["id"], [("a.png", encode(astronaut(), "PNG"))], "woman", "Waits", branch="fast")
    [prompt] = studio.list_prompts(tune_id=tune["id"])  # made now, run once the tune is trained
    assert prompt["text"] == "ohwx woman" and prompt["warnings"] == [missing_warning(["eye_color"])]
