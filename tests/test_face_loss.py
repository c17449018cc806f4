"""Face-focused training: the loss mask from the face box reaches every objective's loss (a
zero-weight background takes the background out of the gradient), captions reach the text
encoder, and both are recorded in the LoRA's metadata and the tune's stored settings."""

import numpy as np
import pytest
import torch

from studio import face_loss, training_objectives
from studio.families import FAMILIES
from studio.training import load_pipeline, read_metadata, train_lora
from studio.training_objectives import OBJECTIVES
from studio.tune_requests import TrainSettings, TuneRequest, plan_training

SIZE = 64
SETTINGS = TrainSettings(
    instance_prompt="a close photo of ohwx woman",
    max_train_steps=2,
    size=(SIZE, SIZE),
    rank=4,
    seed=3,
    sample_steps=0,
    face_loss_weight=2.0,
    background_loss_weight=0.0,
)
FACE = (28, 4, 36, 12)  # a face box in a 64 px photo (small: FLUX.2 latents are 16 px apart)


def _photos(count=2, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).resize((SIZE, SIZE), Image.Resampling.BICUBIC)
        for _ in range(count)
    ]


def test_the_mask_weighs_face_subject_and_background():
    mask = face_loss.loss_mask((SIZE, SIZE), FACE, 2.0, 0.25)
    assert mask.shape == (SIZE, SIZE) and mask.dtype == np.float32
    assert mask[8, 32] == 2.0  # the face
    assert mask[60, 32] == 1.0  # below the face: the rest of the subject
    assert mask[60, 2] == 0.25 and mask[2, 2] == 0.25  # beside it: the background
    assert (face_loss.loss_mask((SIZE, 48), None, 2.0, 0.0) == 1.0).all()
    assert face_loss.masked(2.0, 1.0) and not face_loss.masked(1.0, 1.0)


@pytest.fixture(scope="module")
def pipes(demo_model_dir, flux_demo_dirs):
    out = {"sd15": load_pipeline(demo_model_dir, "sd15")}
    out.update({family: load_pipeline(flux_demo_dirs[family], family) for family in ("flux1", "flux2")})
    return out


@pytest.mark.parametrize("family", ["sd15", "flux1", "flux2"])
def test_a_zero_weight_background_does_not_change_the_gradient(pipes, family):
    """The same batch with the target changed only where the mask is 0 gives the same gradient
    of the denoiser's output layer; without the mask the change shows, and a change in the face
    shows with it (so the comparison can fail)."""
    pipe = pipes[family]
    fam = FAMILIES[family]
    flow = OBJECTIVES[{"sd15": "sd", "flux1": "flux1", "flux2": "flux2"}[family]](pipe, fam, SETTINGS, "cpu")
    with torch.no_grad():
        flow.encode_prompt(train_text=False)
        pixels = torch.from_numpy(np.stack([np.asarray(p, np.float32) / 127.5 - 1 for p in _photos(1)]))
        latents = flow.latents(pipe.vae.encode(pixels.permute(0, 3, 1, 2)).latent_dist.mean)
    denoiser = getattr(pipe, fam.denoiser)
    weight = (denoiser.conv_out if family == "sd15" else denoiser.proj_out).weight
    weight.requires_grad_(True)
    pixel_mask = torch.from_numpy(face_loss.loss_mask((SIZE, SIZE), FACE, 2.0, 0.0))[None, None]
    mask = flow.loss_mask(pixel_mask, latents)
    background = (mask == 0).float()
    assert 0 < background.mean() < 1

    def gradient(mask, change):
        prediction, target, weighting = flow.predict(latents, torch.Generator().manual_seed(0))
        loss = flow.loss(prediction, target + change, weighting, mask)
        return torch.autograd.grad(loss, weight)[0]

    shift = 3.0 * torch.randn(mask.shape, generator=torch.Generator().manual_seed(1))
    base = gradient(mask, 0.0)
    assert base.abs().sum() > 0
    torch.testing.assert_close(gradient(mask, shift * background), base)
    assert not torch.allclose(gradient(None, shift * background), gradient(None, 0.0))
    assert not torch.allclose(gradient(mask, shift * (1 - background)), base)


@pytest.mark.slow
def test_masked_training_runs_and_its_weights_are_in_the_metadata(demo_model_dir, tmp_path):
    photos = _photos()
    masks = [face_loss.loss_mask(p.size, FACE, 2.0, 0.0) for p in photos]
    result = train_lora(
        demo_model_dir, "sd15", photos, SETTINGS, tmp_path / "masked", title="m", trigger="ohwx", masks=masks
    )
    meta = read_metadata(result.weights)
    assert (meta["ss_masked_loss"], meta["ss_face_loss_weight"], meta["ss_background_loss_weight"]) == (
        "True",
        "2.0",
        "0.0",
    )
    plain = train_lora(demo_model_dir, "sd15", photos, SETTINGS, tmp_path / "plain", title="m", trigger="ohwx")
    assert read_metadata(plain.weights)["ss_masked_loss"] == "False"
    assert result.loss != plain.loss  # the mask changed what was learned


def test_captions_are_what_the_text_encoder_reads(demo_model_dir, tmp_path, monkeypatch):
    """Each distinct caption is encoded (the tokens the CLIP tokenizer receives are the
    caption's), and the steps train on them; the instance prompt is encoded for dropout and
    samples."""
    seen: list[str] = []
    encode = training_objectives._encode_sd_prompt

    def spy(pipe, prompt, device):
        ids = pipe.tokenizer([prompt], truncation=True).input_ids[0]
        # the demo's byte-level tokenizer decodes with spaces around punctuation
        seen.append("".join(pipe.tokenizer.decode(ids, skip_special_tokens=True).split()))
        return encode(pipe, prompt, device)

    monkeypatch.setattr(training_objectives, "_encode_sd_prompt", spy)
    captions = ["ohwx woman, wearing glasses, close-up", "ohwx woman, wearing a hat, outdoors"]
    settings = TrainSettings(**{**SETTINGS.to_json(), "train_text_encoder": True, "caption_dropout": 0.0})
    result = train_lora(
        demo_model_dir, "sd15", _photos(), settings, tmp_path, title="c", trigger="ohwx", captions=captions
    )
    # the text encoder trains: each step encodes its batch's caption
    assert set(seen) == {"".join(c.split()) for c in captions}
    assert len(seen) == settings.max_train_steps
    tags = __import__("json").loads(read_metadata(result.weights)["ss_tag_frequency"])["instance"]
    assert tags["ohwx woman"] == 2 and tags["wearing glasses"] == 1


def test_person_tunes_get_the_face_loss_by_default_and_others_do_not():
    person = plan_training(TuneRequest(title="t", name="woman"), num_images=4, native_resolution=64)
    assert (person.face_loss_weight, person.background_loss_weight) == (
        face_loss.PERSON_FACE_WEIGHT,
        face_loss.PERSON_BACKGROUND_WEIGHT,
    )
    dog = plan_training(TuneRequest(title="t", name="dog"), num_images=4, native_resolution=64)
    assert (dog.face_loss_weight, dog.background_loss_weight) == (1.0, 1.0)
    chosen = plan_training(
        TuneRequest(title="t", name="man", face_loss_weight=3.0, background_loss_weight=1.0),
        num_images=4,
        native_resolution=64,
    )
    assert (chosen.face_loss_weight, chosen.background_loss_weight) == (3.0, 1.0)


def test_steps_follow_the_photo_count_with_the_presets_floor():
    def steps(preset, photos):
        request = TuneRequest(title="t", name="woman", preset=preset)
        return plan_training(request, num_images=photos, native_resolution=64).max_train_steps

    assert (steps("per-photo", 5), steps("per-photo", 20)) == (300, 540)  # Astria: 27 a photo, at least 300
    assert (steps("portrait", 2), steps("portrait", 10)) == (300, 1000)
    assert steps(None, 4) == 400  # the default: 100 a photo
