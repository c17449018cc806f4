"""Face detailing, hires fix and mask inpainting on the embedded demo model. The demo model draws
no faces, so the face pass runs on real photos (tests/photos.py): the astronaut, and two people
from the group photo side by side. Offline, CPU, dlib's detector."""

import dataclasses

import numpy as np
import photos
import pytest
from PIL import Image

from studio import detailer
from studio.demo_model import read_manifest
from studio.detailer import Person
from studio.errors import InvalidInput
from studio.prompts import parse_parameters

SIZE = 64


@pytest.fixture(scope="module")
def engine():
    from studio.engine import Engine

    return Engine("cpu", face_backend="dlib")


@pytest.fixture(scope="module")
def faceid(demo_model_dir):
    return str(demo_model_dir / read_manifest(demo_model_dir)["faceid"]["128"])


def unit(seed: int) -> tuple[float, ...]:
    vector = np.random.RandomState(seed).randn(128)
    return tuple(float(v) for v in vector / np.linalg.norm(vector))


def request(demo_model_dir, **fields):
    from studio.engine import GenerateRequest

    defaults = {
        "model": str(demo_model_dir),
        "prompt": "ohwx woman, portrait",
        "num_inference_steps": 3,
        "width": SIZE,
        "height": SIZE,
        "seed": 5,
        "scheduler": "euler",
        "detail_size": SIZE,
    }
    return GenerateRequest(**{**defaults, **fields})


def astronaut() -> Image.Image:
    return photos.astronaut().resize((256, 256), Image.Resampling.LANCZOS)


def two_people() -> Image.Image:
    """Rachel (left) and Ross (right) from the group photo, 128 px each, side by side."""
    group = photos.group()
    image = Image.new("RGB", (256, 128))
    for place, name in enumerate(("rachel", "ross")):
        image.paste(group.crop(photos.FRIENDS[name]).resize((128, 128), Image.Resampling.LANCZOS), (place * 128, 0))
    return image


def array(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def inside(crops, shape) -> np.ndarray:
    mask = np.zeros(shape[:2], dtype=bool)
    for x0, y0, x1, y1 in crops:
        mask[y0:y1, x0:x1] = True
    return mask


# -- geometry and assignment ---------------------------------------------------------------


def test_split_people_cuts_at_the_word_break_only():
    assert detailer.split_people("a <lora:1:1> woman BREAK <lora:2:1> man, smiling") == [
        "a <lora:1:1> woman",
        "<lora:2:1> man, smiling",
    ]
    assert detailer.split_people("BREAKFAST at noon") == ["BREAKFAST at noon"]


def test_faces_go_to_people_left_to_right_and_a_count_mismatch_is_a_warning():
    right, left, middle = (200, 10, 240, 50), (10, 12, 50, 52), (100, 0, 140, 40)
    pairs, warnings = detailer.assign_people([right, left, middle], 3)
    assert pairs == [(1, 0), (2, 1), (0, 2)] and warnings == []
    pairs, warnings = detailer.assign_people([right, left], 3)
    assert pairs == [(1, 0), (0, 1)]
    assert len(warnings) == 1 and "names 3 people but 2 faces" in warnings[0] and "people 3" in warnings[0]
    pairs, _ = detailer.assign_people([right, left, middle], 1, which=(2,))
    assert pairs == [(0, 0)]


def test_the_crop_is_a_square_inside_the_image_and_the_blend_mask_fades_to_nothing_at_its_edge():
    assert detailer.crop_box((2, 100, 42, 140), (256, 128)) == (0, 48, 80, 128)  # shifted into the image
    crop = detailer.crop_box((100, 40, 140, 80), (256, 128))
    assert crop == (80, 20, 160, 100)
    inpaint, blend = detailer.face_masks((100, 40, 140, 80), crop, 64)
    blend = np.asarray(blend)
    assert blend.shape == (64, 64)
    assert max(blend[:, 0].max(), blend[:, -1].max(), blend[0, :].max(), blend[-1, :].max()) == 0
    assert blend[32, 32] == 255 and np.asarray(inpaint)[32, 32] == 255


def test_face_detailing_left_unset_is_on_for_people_auto_for_a_subject_and_off_otherwise():
    from studio.families import FAMILIES
    from studio.services.resolution import face_detail_mode

    sd, klein = FAMILIES["sd15"], FAMILIES["flux2"]
    two = (Person("a"), Person("b"))
    assert face_detail_mode(None, sd, two, True) == "on"
    assert face_detail_mode(None, sd, (), True) == "auto"
    assert face_detail_mode(None, sd, (), False) == "off"
    assert face_detail_mode(None, klein, (), True) == "off"  # no inpaint pipeline
    assert face_detail_mode(True, sd, (), False) == "on" and face_detail_mode(False, sd, two, True) == "off"


# -- the face pass ---------------------------------------------------------------------------


def test_face_detailing_with_a_faceid_tune_changes_the_face_region_only(engine, demo_model_dir, faceid):
    source = astronaut()
    face = request(demo_model_dir, faceid_embedding=unit(1), faceid_adapter=faceid, inpaint_faces="on")
    result = engine.detail_faces(face, source)
    [done] = result.detailed_faces
    x0, y0, x1, y1 = done.box
    assert 70 < x0 < x1 < 150 and 20 < y0 < y1 < 100  # the astronaut's face
    before, after = array(source), array(result.image)
    change = np.abs(after - before).max(axis=2)
    outside = ~inside([done.crop], before.shape)
    assert change[outside].max() == 0  # not one pixel outside the crop moves
    assert change[y0:y1, x0:x1].mean() > 10  # the face itself was re-drawn
    again = engine.detail_faces(face, source)
    np.testing.assert_array_equal(array(again.image), after)  # same seed, same face
    other = engine.detail_faces(dataclasses.replace(face, faceid_embedding=unit(2)), source)
    assert np.abs(array(other.image) - after)[y0:y1, x0:x1].mean() > 1  # the identity drives the face
    weaker = engine.detail_faces(dataclasses.replace(face, detail_strength=0.1, num_inference_steps=10), source)
    assert np.abs(array(weaker.image) - before)[y0:y1, x0:x1].mean() < change[y0:y1, x0:x1].mean()
    params = parse_parameters(result.parameters)
    assert params["extra"]["Face detailing"].startswith("1 face(s), strength 0.4: face 1 at")


def test_two_people_each_detail_their_own_face(engine, demo_model_dir, faceid):
    source = two_people()
    anna = Person("faceid 11", "ohwx woman", faceid_embedding=unit(11), faceid_adapter=faceid)
    ben = Person("faceid 12", "ohwx man", faceid_embedding=unit(12), faceid_adapter=faceid)
    base = request(demo_model_dir, inpaint_faces="on")
    both = engine.detail_faces(dataclasses.replace(base, people=(anna, ben)), source)
    left, right = both.detailed_faces
    assert left.box[2] <= 128 <= right.box[0]  # one face on each side
    assert (left.person, right.person) == (0, 1)
    assert "by faceid 11" in both.parameters and "by faceid 12" in both.parameters
    # The left face is what Anna's tune alone makes of it, not Ben's; the right one Ben's.
    region = inside([left.crop], array(source).shape)
    anna_left = engine.detail_faces(dataclasses.replace(base, people=(anna,), detail_faces=(0,)), source)
    ben_left = engine.detail_faces(dataclasses.replace(base, people=(ben,), detail_faces=(0,)), source)
    np.testing.assert_array_equal(array(both.image)[region], array(anna_left.image)[region])
    assert np.abs(array(both.image)[region] - array(ben_left.image)[region]).mean() > 1
    region = inside([right.crop], array(source).shape)
    ben_right = engine.detail_faces(dataclasses.replace(base, people=(ben,), detail_faces=(1,)), source)
    np.testing.assert_array_equal(array(both.image)[region], array(ben_right.image)[region])
    outside = ~inside([left.crop, right.crop], array(source).shape)
    assert np.abs(array(both.image) - array(source))[outside].max() == 0


def test_three_people_and_two_faces_is_a_warning_not_an_error(engine, demo_model_dir, faceid):
    people = tuple(Person(f"faceid {i}", faceid_embedding=unit(i), faceid_adapter=faceid) for i in (1, 2, 3))
    result = engine.detail_faces(request(demo_model_dir, people=people, inpaint_faces="on"), two_people())
    assert [face.person for face in result.detailed_faces] == [0, 1]
    assert any("names 3 people but 2 faces" in warning for warning in result.warnings)


def test_automatic_detailing_leaves_large_faces_alone(engine, demo_model_dir, faceid):
    close_up = photos.astronaut().crop(photos.ASTRONAUT_FACE).resize((SIZE * 2, SIZE * 2))
    auto = request(demo_model_dir, faceid_embedding=unit(1), faceid_adapter=faceid, inpaint_faces="auto")
    result = engine.detail_faces(dataclasses.replace(auto, detail_size=SIZE * 2), close_up)
    assert result.detailed_faces == ()
    np.testing.assert_array_equal(array(result.image), array(close_up))


# -- generate: mask inpainting with the face pass, hires fix --------------------------------


def test_a_masked_generation_repaints_the_mask_only_then_details_the_face(engine, demo_model_dir, faceid):
    source = astronaut()
    mask = Image.new("L", source.size, 0)
    mask.paste(255, (0, 196, 64, 256))  # a corner far from the face
    masked = request(
        demo_model_dir, width=256, height=256, init_image=source, mask_image=mask, strength=0.9, detail_size=SIZE
    )
    [plain] = engine.generate(masked)
    change = np.abs(array(plain.image) - array(source)).max(axis=2)
    assert change[196:, :64].mean() > 10 and change[:196, :].max() == 0 and change[:, 64:].max() == 0
    assert parse_parameters(plain.parameters)["extra"]["Inpaint"] == "mask"
    detailed_request = dataclasses.replace(masked, faceid_embedding=unit(1), faceid_adapter=faceid, inpaint_faces="on")
    [detailed] = engine.generate(detailed_request)
    [done] = detailed.detailed_faces
    x0, y0, x1, y1 = done.box
    assert np.abs(array(detailed.image) - array(plain.image))[y0:y1, x0:x1].mean() > 10
    assert "Face detailing" in parse_parameters(detailed.parameters)["extra"]


def test_mask_checks_name_the_mask(engine, demo_model_dir):
    mask = Image.new("L", (SIZE, SIZE), 255)
    with pytest.raises(InvalidInput) as info:
        engine.generate(request(demo_model_dir, mask_image=mask))
    assert info.value.field == "mask_image"


def test_hires_fix_makes_the_larger_image_from_the_first_pass(engine, demo_model_dir):
    plain = request(demo_model_dir, num_images=2)
    [low, _] = engine.generate(plain)
    hires = dataclasses.replace(plain, hires_fix=True, hires_scale=2.0, hires_strength=0.5, hires_steps=4)
    first, second = engine.generate(hires)
    assert first.image.size == (SIZE * 2, SIZE * 2)
    again = engine.generate(hires)
    np.testing.assert_array_equal(array(again[0].image), array(first.image))
    assert np.abs(array(first.image) - array(second.image)).mean() > 1  # one seed per image
    # The second pass keeps the first one's composition: closer to it than another seed's.
    shrunk = array(first.image.resize((SIZE, SIZE), Image.Resampling.BOX))
    [other] = engine.generate(dataclasses.replace(plain, seed=99, num_images=1))
    assert np.abs(shrunk - array(low.image)).mean() < np.abs(shrunk - array(other.image)).mean()
    params = parse_parameters(first.parameters)
    extra = params["extra"]
    assert (extra["Hires upscale"], extra["Hires steps"], extra["Hires upscaler"]) == ("2.0", "4", "Latent")
    assert extra["Denoising strength"] == "0.5" and (params["width"], params["height"]) == (SIZE * 2, SIZE * 2)
    stronger = engine.generate(dataclasses.replace(hires, hires_strength=1.0, num_images=1))
    assert np.abs(array(stronger[0].image) - array(first.image)).mean() > 1


@pytest.mark.slow
def test_the_passes_run_on_flux1_through_its_own_pipelines(engine, flux_demo_dirs):
    """FLUX.1's inpaint and img2img pipelines: the face pass keeps everything outside the crop,
    the hires fix upscales the image (Lanczos: Flux latents are packed), the mask keeps the rest."""
    flux = request(flux_demo_dirs["flux1"], family="flux1", guidance_scale=3.5)
    source = astronaut()
    result = engine.detail_faces(flux, source)
    [done] = result.detailed_faces
    change = np.abs(array(result.image) - array(source)).max(axis=2)
    assert change[~inside([done.crop], change.shape)].max() == 0
    x0, y0, x1, y1 = done.box
    assert change[y0:y1, x0:x1].mean() > 5
    [hires] = engine.generate(dataclasses.replace(flux, hires_fix=True, hires_steps=4))
    assert hires.image.size == (SIZE * 2, SIZE * 2)
    assert parse_parameters(hires.parameters)["extra"]["Hires upscaler"] == "Lanczos"
    mask = Image.new("L", source.size, 0)
    mask.paste(255, (0, 0, 64, 64))
    masked = dataclasses.replace(flux, width=256, height=256, init_image=source, mask_image=mask, strength=0.9)
    [inpainted] = engine.generate(masked)
    change = np.abs(array(inpainted.image) - array(source)).max(axis=2)
    assert change[:64, :64].mean() > 5 and change[64:, :].max() == 0 and change[:, 64:].max() == 0
