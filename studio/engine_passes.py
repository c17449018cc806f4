"""The engine's second passes: hires fix and face detailing, run by `Engine.generate` after the
first denoising (and face detailing alone by `Engine.detail_faces`), plus the mask helpers of
inpainting. Functions of the engine (its model cache, post-processors and face analyzer) and
the warm pipeline; each pass derives its pipeline variant from the base with `from_pipe`, so
they share its modules. The geometry and face assignment live in studio/detailer.py.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from studio import detailer, families
from studio.engine_models import FACEID_LORA
from studio.errors import InvalidInput
from studio.postprocess import PostContext
from studio.prompts import MAX_SEED


def hires_upscaler(engine, request) -> str | None:
    """A1111's name of the upscaler the hires fix uses: the super-resolution plug-in when
    installed, else the latents on a UNet family (SD), else Lanczos on the image (Flux).
    None when there is no hires fix or the family has no img2img."""
    facts = families.family(request.family)
    if not request.hires_fix or "img2img" not in facts.pipelines:
        return None
    if engine.postprocessors["super_resolution"].missing(PostContext(device=engine.device)) is None:
        return "R-ESRGAN"
    # Latents only where the mask, which needs the decoded image, is not in play.
    return "Latent" if facts.denoiser == "unet" and request.mask_image is None else "Lanczos"


def hires(engine, pipe, request, images, seeds, prompt_inputs, ip_embeds, extras, step_end):
    """Upscale the first pass by `hires_scale` and denoise it again at the target size
    (img2img at `hires_strength`); `images` are latents for the "Latent" upscaler, else
    PIL images. Returns (PIL images, warnings) and records A1111's Hires entries."""
    import diffusers
    import torch

    facts = families.family(request.family)
    upscaler = hires_upscaler(engine, request)
    if upscaler is None:
        return images, [f"Hires fix was skipped: {facts.label} has no img2img pipeline in diffusers."]
    multiple = facts.size_multiple
    width = int(request.width * request.hires_scale) // multiple * multiple
    height = int(request.height * request.hires_scale) // multiple * multiple
    runner = getattr(diffusers, facts.pipelines["img2img"]).from_pipe(pipe)
    runner.set_progress_bar_config(disable=True)
    runner.scheduler = engine.new_scheduler(request)
    if upscaler == "Latent":
        factor = pipe.vae_scale_factor
        start = torch.nn.functional.interpolate(images, size=(height // factor, width // factor), mode="bilinear")
    else:
        if upscaler == "R-ESRGAN":
            plugin = engine.postprocessors["super_resolution"]
            images = [plugin.apply(image, PostContext(device=engine.device)) for image in images]
        start = [fit_image(image, (width, height)) for image in images]
    steps = request.hires_steps or request.num_inference_steps
    if int(steps * request.hires_strength) < 1:
        raise InvalidInput("hires_strength × hires_steps is less than one step; raise either.", field="hires_strength")
    accepts = inspect.signature(type(runner).__call__).parameters
    inputs: dict[str, Any] = {"width": width, "height": height} if "width" in accepts else {}
    if ip_embeds:
        inputs["ip_adapter_image_embeds"] = ip_embeds
    with torch.inference_mode():
        out = runner(
            **prompt_inputs,
            image=start,
            strength=request.hires_strength,
            num_inference_steps=steps,
            guidance_scale=request.guidance_scale,
            num_images_per_prompt=request.num_images,
            generator=[torch.Generator(device="cpu").manual_seed(s) for s in seeds],
            callback_on_step_end=step_end,
            output_type="pil",
            **inputs,
        ).images
    for extra in extras:
        extra.update(
            {
                "Hires upscale": request.hires_scale,
                "Hires steps": steps,
                "Hires upscaler": upscaler,
                "Denoising strength": request.hires_strength,
            }
        )
    return out, []


def detail_faces(engine, pipe, request, images, seeds, extras, details, step_end=None):
    """Face detailing (studio/detailer.py) on each image: returns (images, warnings) and
    records, per image, which faces were detailed by whom (in `extras` for the PNG text,
    in `details` as `DetailedFace`s)."""
    import numpy as np

    facts = families.family(request.family)
    if "inpaint" not in facts.pipelines:
        return images, [f"Face detailing was skipped: {facts.label} has no inpaint pipeline in diffusers."]
    size = request.detail_size or facts.native_size
    warnings: list[str] = []
    out = []
    for index, (image, seed) in enumerate(zip(images, seeds)):
        faces = engine.face_analyzer().detect(np.asarray(image.convert("RGB")), small_faces=True)
        boxes, why = detailer.wanted_faces(faces, request.inpaint_faces, facts.native_size, image.size)
        pairs, notes = detailer.assign_people(boxes, max(len(request.people), 1), request.detail_faces)
        warnings += notes
        done = []
        # Each face's seed follows its position from the left, so a face re-detailed alone
        # (inpaint_faces_which) comes out as it did among the others.
        position = {box: place for place, box in enumerate(detailer.left_to_right(boxes))}
        for box_index, person in pairs:
            box = boxes[box_index]
            face_seed = seed + 1 + position[box_index]
            image = _detail_one(engine, pipe, request, image, box, person, size, face_seed, step_end)
            done.append(detailer.DetailedFace(tuple(round(v) for v in box), detailer.crop_box(box, image.size), person))
        out.append(image)
        if done or request.inpaint_faces == "on":  # "auto" that found nothing to do did not run
            extras[index]["Face detailing"] = _describe_detailing(request, done, len(faces), why)
        details[index] = tuple(done)
    return out, warnings


def _describe_detailing(request, done: list, found: int, why: str | None) -> str:
    """The PNG's "Face detailing" entry: what ran, on which faces, with whom."""
    if not done:
        text = f"no face detailed ({found} found{'; ' + why if why else ''})"
        return text
    parts = []
    for number, face in enumerate(done, 1):
        who = request.people[face.person].label if request.people else "the prompt's identity"
        parts.append(f"face {number} at {face.box[0]}:{face.box[1]} by {who}")
    text = f"{len(done)} face(s), strength {request.detail_strength:g}: " + "; ".join(parts)
    return text + (f" ({why})" if why else "")


def _detail_one(engine, pipe, request, image, box, person: int, size: int, seed: int, step_end):
    """Re-generate one face: its crop at `size` through the family's inpaint pipeline with
    person `person`'s identity (or the request's own), pasted back feathered."""
    import dataclasses

    import diffusers
    import torch

    facts = families.family(request.family)
    if request.people:
        who = request.people[person]
        identity = dataclasses.replace(
            request,
            prompt=who.prompt or request.prompt,
            loras=request.loras + who.loras,
            faceid_embedding=who.faceid_embedding,
            faceid_adapter=who.faceid_adapter,
            faceid_scale=who.faceid_scale,
        )
    else:
        identity = request
    # The face pass draws the person only: no style image, pose or input image.
    identity = dataclasses.replace(
        identity, style_image=None, style_adapter=None, control_image=None, controlnet=None, init_image=None
    )
    ip_embeds = engine._prepare_ip_adapters(pipe, identity)
    faceid_lora = identity.faceid_scale if FACEID_LORA in engine.models.adapter_names(pipe) else None
    engine.activate_loras(identity.loras, faceid_lora=faceid_lora)
    runner = getattr(diffusers, facts.pipelines["inpaint"]).from_pipe(pipe)
    runner.set_progress_bar_config(disable=True)
    runner.scheduler = engine.new_scheduler(request)
    prompt_inputs, _warnings = engine._prompt_inputs(runner, identity)
    crop = detailer.crop_box(box, image.size)
    inpaint_mask, blend = detailer.face_masks(box, crop, size)
    from PIL import Image

    source = image.crop(crop).resize((size, size), Image.Resampling.LANCZOS)
    # At least one step runs whatever the strength (int(steps × strength) ≥ 1).
    steps = max(request.num_inference_steps, math.ceil(1 / request.detail_strength))
    extra: dict[str, Any] = {"ip_adapter_image_embeds": ip_embeds} if ip_embeds else {}
    with torch.inference_mode():
        detailed = runner(
            **prompt_inputs,
            image=source,
            mask_image=inpaint_mask,
            width=size,
            height=size,
            strength=request.detail_strength,
            num_inference_steps=steps,
            guidance_scale=request.guidance_scale,
            generator=torch.Generator(device="cpu").manual_seed(seed % (MAX_SEED + 1)),
            callback_on_step_end=step_end,
            output_type="pil",
            **extra,
        ).images[0]
    return detailer.paste_face(image, detailed, crop, blend)


def fit_mask(mask, size: tuple[int, int]):
    """An inpaint mask (mode L, 1 or RGB; white = repaint) as mode L, fitted to `size` the way
    `fit_image` fits its input image, so that the two stay aligned."""
    from PIL import Image, ImageOps

    return ImageOps.fit(mask.convert("L"), size, method=Image.Resampling.BILINEAR)


def keep_unmasked(image, init_image, mask):
    """`image` where the mask is white and the input image elsewhere: the pipeline's VAE round
    trip leaves pixels outside the mask only nearly equal, so they are taken back as given."""
    from PIL import Image

    return Image.composite(image, fit_image(init_image, image.size), fit_mask(mask, image.size))


def fit_image(image, size: tuple[int, int]):
    """`image` as RGB, centre-cropped to the aspect of `size` and resized to it (Lanczos)."""
    from PIL import Image, ImageOps

    return ImageOps.fit(image.convert("RGB"), size, method=Image.Resampling.LANCZOS)
