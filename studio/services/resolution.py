"""Prompt resolution: a stored or requested prompt, its tune and its tokens turned into the
engine's `GenerateRequest` — the base model and its adapters, each LoRA/face/style/pose token
checked and resolved, and the defaults the request left to the base model."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from storage import FileStore, Store
from studio.config import Settings
from studio.detailer import Person, split_people
from studio.domain import CANCELED, FAILED, SUCCESS
from studio.errors import Conflict, NotFound
from studio.families import FAMILIES, Family, aspect_ratio, bucket_size, hub_repo
from studio.principals import LOCAL, Principal, principal_for
from studio.prompts import (
    MAX_SIZE,
    ParsedPrompt,
    PromptError,
    PromptRequest,
    Reference,
    add_trigger_words,
    check_img2img_steps,
    face_positions,
    format_weight,
    parse_prompt,
    reference_instructions,
)
from studio.services.lookups import named_adapter
from studio.services.models import BaseModels, is_embedded
from studio.services.photos import Photos

MOCK_STEPS = 4  # inference steps of prompts on branch=fast (mock mode) tunes, at most


class PromptResolver:
    def __init__(self, settings: Settings, store: Store, files: FileStore, models: BaseModels, photos: Photos):
        self.settings = settings
        self.store = store
        self.files = files
        self.models = models
        self.photos = photos

    def prompt_tune(self, tune_id: int) -> dict[str, Any]:
        tune = self.store.get_tune(tune_id)
        if tune is None:
            raise NotFound(f"Tune {tune_id} does not exist.", field="tune_id")
        if tune["status"] in (FAILED, CANCELED):
            raise Conflict(f"Tune {tune_id} is {tune['status']}: it cannot make images; train a new one.")
        return tune

    def generate_request(
        self,
        tune: dict[str, Any],
        request: PromptRequest,
        *,
        seed: int,
        input_image,
        owner: str = LOCAL,
        references: Sequence[tuple[str, Any]] = (),
        mask_image=None,
    ) -> Any:
        """Resolve a prompt's tokens and defaults into the engine's request. Adapter names
        resolve within the adapters of `owner`, the prompt's owner (see `named_adapter`).
        `references` are the prompt's role-tagged reference images, (role, PIL image) pairs.

        On a base model that takes reference images (FLUX.2 [klein]) `<faceid:ID:w>` of a
        reference tune passes the tune's face crops, best first, as `face` references, before
        the role references: `w` is the share of its crops passed (round(w × crops), at least
        one for w > 0, none for w = 0), within the model's limit left by the role references.
        The text the model sees starts with `prompts.reference_instructions` of the roles.

        Multi-person: a text of `BREAK`-separated parts, two or more of which name a subject
        (a LoRA tune or a FaceID token), makes one `Person` per such part, left to right; the
        scene is drawn without their identities and the face detailer gives each face its
        person's (`face_detail_mode`). `mask_image` (mode L PIL) masks the input image.

        The tune's own LoRA or FaceID applies when the text does not name it. Raises
        PromptError (unknown LoRA, a faceid tune used as a LoRA, one face/style/pose at most…),
        Conflict for a tune that is not trained, Unavailable for a base model that cannot run."""
        from studio.engine import GenerateRequest

        # 1. The base model, its family's facts, and where the adapters for the family live.
        base = self.models.prompt_base(tune)
        facts = FAMILIES[base["family"]]
        sources = self.models.adapter_sources(base)
        # 2. Tokens: LoRAs stack; a prompt has at most one face, one style and one pose.
        parsed = parse_prompt(request.text)
        principal = principal_for(owner, self.settings.admins)
        people, person_tokens = self._people(request.text, base, facts, sources, principal)
        if people:
            tokens = [ref for ref in parsed.references if ref not in person_tokens]
        else:
            tokens = [*parsed.references, *self._implicit_references(tune, parsed, request.lora_scale)]
        loras, triggers, single = [], [], {}
        for ref in tokens:
            if ref.kind == "lora":
                name, path, weight, words = self._resolve_lora(ref, base, principal)
                loras.append((name, path, weight))
                triggers += words
                continue
            if not (ref.kind == "faceid" and facts.reference_images):
                _check_adapter_applies(ref, base, facts, sources)
            slot = "face" if ref.kind in ("face", "faceid") else ref.kind
            if slot in single:
                raise PromptError(f"{ref.token}: a prompt takes one {slot} token; remove {single[slot].token} or it.")
            single[slot] = ref
        if "pose" in single and request.controlnet:
            raise PromptError(f"{single['pose'].token} and controlnet both set a pose: keep one.", field="controlnet")
        if request.controlnet and request.controlnet not in sources["controlnet"]:
            have = ", ".join(sources["controlnet"]) or "none"
            raise PromptError(
                f"controlnet '{request.controlnet}' is not available for {base['title']} ({facts.label}); "
                f"available here: {have}.",
                field="controlnet",
            )
        # 3. Defaults the request left to the base model, then its family.
        family = base["family"]
        multiple = facts.size_multiple
        size = self.settings.demo_size // multiple * multiple if is_embedded(base) else facts.native_size
        scheduler = request.scheduler or base.get("scheduler") or facts.default_scheduler
        if scheduler not in facts.schedulers:
            raise PromptError(
                f"scheduler '{scheduler}' does not apply to {base['title']} ({facts.label}): "
                f"use one of {', '.join(facts.schedulers)}, or leave it empty for {facts.default_scheduler}.",
                field="scheduler",
            )
        fast = scheduler in ("lcm", "tcd")
        # LCM and TCD sample with their distillation LoRA beside the prompt's own LoRAs.
        if distillation := self.models.distillation_lora(base, scheduler):
            loras.append((hub_repo(distillation), distillation, 1.0))
        steps = request.steps or (8 if fast else base.get("steps") or facts.default_steps)
        width, height = _request_size(request, facts, base, size)
        _check_size_multiple(facts, base, width=width, height=height)
        if tune.get("branch") == "fast":
            # Mock mode (Astria's free test mode): few steps and at most the demo model's size,
            # whatever the request asks, so a client's end-to-end test takes seconds.
            steps = min(steps, MOCK_STEPS)
            width, height = min(width, self.settings.demo_size), min(height, self.settings.demo_size)
        # 4. Adapters with their inputs; an input image is a control image, a start image or both.
        options: dict[str, Any] = {}
        text = parsed.text
        if references and not facts.reference_images:
            raise PromptError(
                f"{base['title']} ({facts.label}) takes no reference images: use a FLUX.2 [klein] base model "
                "for face, outfit, background, pose and style references.",
                field="references",
            )
        if facts.reference_images and ("face" in single or references):
            faces = self._reference_faces(single.pop("face"), base, facts, len(references)) if "face" in single else []
            role_images = (*faces, *references)
            if len(role_images) > facts.reference_images:
                raise PromptError(
                    f"{len(role_images)} reference images, but {base['title']} takes {facts.reference_images}: "
                    "leave some out.",
                    field="references",
                )
            options["reference_images"] = role_images
            text = f"{reference_instructions([role for role, _image in role_images])} {text}".strip()
        if "face" in single:
            embedding, adapter, scale = self._resolve_face(single["face"], base, sources, principal)
            options.update(faceid_embedding=embedding, faceid_adapter=adapter, faceid_scale=scale)
        if "style" in single:
            image, scale = self._adapter_image("style", single["style"], principal)
            options.update(style_image=image, style_adapter=sources["style"], style_scale=scale)
            options["image_encoder"] = sources["image_encoder"]
        if "pose" in single:
            image, scale = self._adapter_image("pose", single["pose"], principal)
            options.update(control_image=image, controlnet=sources["controlnet"]["pose"])
            options["controlnet_conditioning_scale"] = scale
        if input_image is not None and request.controlnet:
            options.update(
                control_image=input_image,
                controlnet=sources["controlnet"][request.controlnet],
                controlnet_conditioning_scale=request.controlnet_conditioning_scale,
                control_mode="canny" if request.controlnet == "canny" else "auto",
            )
        if input_image is not None and not (request.controlnet and request.controlnet_txt2img):
            check_img2img_steps(steps, request.denoising_strength)  # the steps that will run, mock cap included
            options.update(init_image=input_image, strength=request.denoising_strength)
        if mask_image is not None:
            if "inpaint" not in facts.pipelines:
                raise PromptError(
                    f"{base['title']} ({facts.label}) has no inpaint pipeline: leave mask_image out.",
                    field="mask_image",
                )
            options["mask_image"] = mask_image
        # 5. Second passes: hires fix, and face detailing with each person's identity.
        options.update(
            hires_fix=request.hires_fix,
            hires_scale=request.hires_scale,
            hires_strength=request.hires_denoising_strength,
            hires_steps=request.hires_steps,
            inpaint_faces=face_detail_mode(request.inpaint_faces, facts, people, any(map(_is_subject, tokens))),
            detail_strength=request.inpaint_faces_strength,
            detail_faces=face_positions(request.inpaint_faces_which),
            detail_size=size,
            people=people,
        )
        # 6. The engine's request; the PNGs record the text as written, tokens included.
        return GenerateRequest(
            model=self.models.model_path(base),
            family=family,
            prompt=add_trigger_words(text, triggers),
            negative_prompt=request.negative_prompt,
            num_images=request.num_images,
            seed=seed,
            num_inference_steps=steps,
            guidance_scale=request.cfg_scale if request.cfg_scale is not None else _default_guidance(base, facts, fast),
            width=width,
            height=height,
            scheduler=scheduler,
            loras=tuple(loras),
            super_resolution=request.super_resolution,
            face_correct=request.face_correct,
            face_swap=request.face_swap,
            model_name=base["title"],
            parameters_prompt=request.text,
            prompt_weights=request.use_lpw is not False,
            color_grading=request.color_grading,
            film_grain=request.film_grain,
            distillation_lora=hub_repo(distillation) if distillation else None,
            **options,
        )

    def _people(
        self, text: str, base: dict[str, Any], facts: Family, sources: dict, principal: Principal
    ) -> tuple[tuple[Person, ...], list[Reference]]:
        """The people of a multi-person prompt, left to right, and the tokens that made them;
        ((), []) unless two or more BREAK parts name a subject (a LoRA tune, a FaceID tune or a
        saved face). A part names one subject at most."""
        parts = [(part, parse_prompt(part)) for part in split_people(text)]
        subjects = [(part, parsed, [r for r in parsed.references if _is_subject(r)]) for part, parsed in parts]
        subjects = [entry for entry in subjects if entry[2]]
        if len(subjects) < 2:
            return (), []
        people, used = [], []
        for _part, parsed, refs in subjects:
            if len(refs) > 1:
                raise PromptError(
                    f"{refs[0].token} and {refs[1].token} are in the same BREAK part: a part describes one "
                    "person; put each person's token in their own part, left to right."
                )
            ref = refs[0]
            if ref.kind == "lora":
                name, path, weight, words = self._resolve_lora(ref, base, principal)
                person = Person(
                    label=f"{ref.kind} {ref.ref}",
                    prompt=add_trigger_words(parsed.text, words),
                    loras=((name, path, weight),),
                )
            else:
                _check_adapter_applies(ref, base, facts, sources)
                embedding, adapter, scale = self._resolve_face(ref, base, sources, principal)
                person = Person(
                    label=f"{ref.kind} {ref.ref}",
                    prompt=parsed.text,
                    faceid_embedding=embedding,
                    faceid_adapter=adapter,
                    faceid_scale=scale,
                )
            people.append(person)
            used.append(ref)
        return tuple(people), used

    def _implicit_references(
        self, tune: dict[str, Any], parsed: ParsedPrompt, lora_scale: float | None = None
    ) -> list[Reference]:
        """A prompt posted to a LoRA or FaceID tune uses that tune unless its text names it;
        a LoRA tune's at `lora_scale` (Astria's override of its default scale, 1)."""
        kind = tune["model_type"]
        if kind not in ("lora", "faceid"):
            return []
        if any(r.kind == kind and r.tune_id == tune["id"] for r in parsed.references):
            return []
        weight = lora_scale if kind == "lora" and lora_scale is not None else 1.0
        return [Reference(kind, str(tune["id"]), weight, f"<{kind}:{tune['id']}:{format_weight(weight)}>")]

    def _referenced_tune(self, ref: Reference, kind: str) -> dict[str, Any]:
        """The trained tune of `kind` that `ref` names, or the error saying what is wrong."""
        if ref.tune_id is None:
            raise PromptError(f"{ref.token}: '{ref.ref}' is not a tune id.")
        tune = self.store.get_tune(ref.tune_id)
        if tune is None:
            raise PromptError(f"{ref.token}: there is no tune {ref.ref} (it was deleted, or never existed).")
        if tune["model_type"] != kind:
            hint = {
                "lora": f"use <lora:{ref.ref}:{format_weight(ref.weight)}>",
                "faceid": f"use <faceid:{ref.ref}:{format_weight(ref.weight)}>",
                "checkpoint": "it is a base model: post the prompt to it instead",
            }.get(tune["model_type"], "use a token of its kind")
            raise PromptError(f"{ref.token}: {ref.kind} {ref.ref} is a {tune['model_type']} tune; {hint}.")
        if tune["status"] != SUCCESS:
            raise Conflict(f"{ref.token}: tune {ref.ref} is {tune['status']}; use it once it is trained.", field="text")
        return tune

    def _resolve_lora(
        self, ref: Reference, base: dict[str, Any], principal: Principal
    ) -> tuple[str, str, float, list[str]]:
        """(name, absolute weights path, weight, trigger words) for a LoRA token."""
        if ref.tune_id is not None:
            tune = self._referenced_tune(ref, "lora")
            if not tune.get("weights_path"):
                raise Conflict(f"{ref.token}: tune {ref.ref} has no weights yet.", field="text")
            family = tune.get("family") or self._tune_base_family(tune)
            name, path, words = tune["title"], tune["weights_path"], [tune.get("token") or "ohwx"]
            weight = ref.weight
        else:
            adapter = named_adapter(self.store, "lora", ref.ref, principal)
            if adapter is None:
                raise PromptError(f"{ref.token}: unknown LoRA '{ref.ref}'; upload it under Adapters or use a tune id.")
            family, name, path = adapter["family"], ref.ref, adapter["path"]
            words = list((adapter["metadata"] or {}).get("trigger_words") or [])
            weight = _weight(ref, adapter)
        if family and family != base["family"]:
            raise PromptError(
                f"{ref.token}: LoRA '{name}' is for {family} but {base['title']} is {base['family']}; "
                "use a LoRA made for this base model."
            )
        return name, str(self.files.path(path)), weight, words

    def _tune_base_family(self, tune: dict[str, Any]) -> str:
        base_id = tune.get("base_tune_id")
        base = self.store.get_tune(base_id) if base_id else None
        return (base or self.models.default_base_model())["family"]

    def _resolve_face(
        self, ref: Reference, base: dict[str, Any], sources: dict, principal: Principal
    ) -> tuple[tuple[float, ...], str, float]:
        """(unit face embedding, FaceID adapter for its size, scale) for a faceid or face token."""
        if ref.kind == "faceid":
            tune = self._referenced_tune(ref, "faceid")
            if not tune.get("embedding_path"):
                raise Conflict(f"{ref.token}: tune {ref.ref} has no reference embedding yet.", field="text")
            path, weight = tune["embedding_path"], ref.weight
        else:
            adapter = named_adapter(self.store, "face", ref.ref, principal)
            if adapter is None:
                raise PromptError(f"{ref.token}: unknown face '{ref.ref}'; save it under Adapters first.")
            path, weight = adapter["metadata"]["embedding_path"], _weight(ref, adapter)
        vector = np.load(io.BytesIO(self.files.read(path)), allow_pickle=False).astype(np.float64)
        if vector.ndim == 2:
            vector = vector.mean(axis=0)
        vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        adapters = sources["faceid"]
        if str(vector.size) not in adapters:
            sizes = ", ".join(adapters) or "none"
            raise PromptError(
                f"{ref.token}: the face embedding has {vector.size} values but {base['title']}'s FaceID "
                f"adapter expects {sizes}; make the face with the matching face backend "
                "(insightface gives 512, dlib 128)."
            )
        return tuple(float(v) for v in vector), adapters[str(vector.size)], weight

    def _reference_faces(
        self, ref: Reference, base: dict[str, Any], facts: Family, roles: int
    ) -> list[tuple[str, Any]]:
        """The ("face", crop) references of a reference tune's `<faceid:ID:w>`: round(w × its
        crops), at least one for w > 0, within the model's limit less `roles` role references."""
        tune = self._referenced_tune(ref, "faceid")
        crops = (tune.get("args") or {}).get("references") or []
        if not crops:
            raise PromptError(
                f"{ref.token}: FaceID tune {ref.ref} has no reference crops (it was made on an SD base model), "
                f"and diffusers has no FaceID adapter for {facts.label}; make the FaceID tune on {base['title']} "
                f"(a reference tune), train a LoRA tune of the person on it (model_type=lora) and use <lora:ID:1>, "
                f"or use an SD 1.5 / SDXL base model for {ref.token}."
            )
        wanted = 0 if ref.weight <= 0 else max(1, round(ref.weight * len(crops)))
        out = []
        for crop in crops[: min(wanted, max(facts.reference_images - roles, 1))]:
            row = self.store.get_photo(crop["photo_id"])
            if row is not None:
                out.append(("face", self.photos.photo_image(row).crop(tuple(crop["box"]))))
        return out

    def _adapter_image(self, kind: str, ref: Reference, principal: Principal) -> tuple[Any, float]:
        """(image, scale) of a saved style or pose."""
        adapter = named_adapter(self.store, kind, ref.ref, principal)
        if adapter is None:
            raise PromptError(f"{ref.token}: unknown {kind} '{ref.ref}'; save it under Adapters first.")
        return self.photos.decode_image(self.files.read(adapter["path"]), kind), _weight(ref, adapter)


def _is_subject(ref: Reference) -> bool:
    """A token that stands for a person: a LoRA tune, a FaceID tune or a saved face."""
    return (ref.kind == "lora" and ref.tune_id is not None) or ref.kind in ("faceid", "face")


def face_detail_mode(asked: bool | None, facts: Family, people: tuple, subject: bool) -> str:
    """The engine's `inpaint_faces` for a request's `inpaint_faces` (True "on", False "off").
    Left unset (None) it is "on" for a multi-person prompt (the detailer is what gives each
    person their face), "auto" (small faces only) where the picture has a subject identity
    (a LoRA tune or FaceID) on a family with an inpaint pipeline, else "off": on a base model
    with no identity, re-drawing faces only costs time."""
    if asked is not None:
        return "on" if asked else "off"
    if "inpaint" not in facts.pipelines:
        return "off"
    if people:
        return "on"
    return "auto" if subject else "off"


def _default_guidance(base: dict[str, Any], facts: Family, fast: bool) -> float:
    """`guidance_scale` when the request gives no cfg_scale: low for LCM/TCD on a CFG model,
    else the gallery entry's own default, else the family's."""
    if fast and facts.guidance == "cfg":
        return 1.5
    default = base.get("cfg_scale")
    return float(default) if default is not None else facts.default_guidance_scale


def _check_adapter_applies(ref: Reference, base: dict[str, Any], facts: Family, sources: dict) -> None:
    """Refuse a face, FaceID or style token on a base model whose family has no identity or
    style adapter (Flux in diffusers today), and a pose token where there is no pose ControlNet:
    the token would otherwise do nothing."""
    if ref.kind in ("face", "faceid", "style") and not facts.identity_adapters:
        what = "style IP-Adapter" if ref.kind == "style" else "FaceID adapter"
        instead = (
            "describe the style in words, or use a style LoRA (<lora:NAME:W>)"
            if ref.kind == "style"
            else "train a LoRA tune of the person on it (model_type=lora) and use <lora:ID:1>"
        )
        if ref.kind == "faceid":
            instead += " (FLUX.2 [klein] takes a FaceID tune as reference images)"

        raise PromptError(
            f"{ref.token}: {base['title']} is a {facts.label} model, and diffusers has no {what} for "
            f"{facts.label}; {instead}, or use an SD 1.5 / SDXL base model for {ref.token}."
        )
    if ref.kind == "pose" and "pose" not in sources["controlnet"]:
        raise PromptError(
            f"{ref.token}: there is no pose ControlNet for {base['title']} ({facts.label}); "
            "describe the pose in words, or use an SD 1.5 / SDXL base model for it."
        )


def _request_size(request: PromptRequest, facts: Family, base: dict[str, Any], native: int) -> tuple[int, int]:
    """(width, height): the bucket of the request's aspect_ratio (or legacy ar) and resolution
    on the family (families.bucket_size, scaled to `native`, the base's own size), with an
    explicit w or h winning; given one side and a ratio, the other follows the ratio."""
    ratio_text = request.aspect_ratio or request.ar
    tier = (request.resolution or "1K").upper()
    if tier not in facts.resolutions:
        raise PromptError(
            f"resolution {tier} is not available for {base['title']} ({facts.label}): "
            f"use {', '.join(facts.resolutions)}, or super_resolution to upscale.",
            field="resolution",
        )
    if ratio_text is None and request.resolution is None:
        return request.w or native, request.h or native
    ratio = aspect_ratio(ratio_text or "1:1")
    width, height = bucket_size(facts, ratio, tier, native=native)
    m = facts.size_multiple
    if request.w and not request.h:
        width, height = request.w, max(m, round(request.w * height / width / m) * m)
    elif request.h and not request.w:
        width, height = max(m, round(request.h * width / height / m) * m), request.h
    else:
        width, height = request.w or width, request.h or height
    if max(width, height) > MAX_SIZE:
        raise PromptError(
            f"{ratio} at {tier} is {width}x{height}, over the {MAX_SIZE} px limit: pick a lower resolution.",
            field="resolution",
        )
    return width, height


def _check_size_multiple(facts: Family, base: dict[str, Any], *, width: int, height: int) -> None:
    """Flux packs 2×2 latent patches, so its sides are multiples of 16 (SD's of 8)."""
    step = facts.size_multiple
    for name, value in (("w", width), ("h", height)):
        if value % step:
            raise PromptError(
                f"{name}={value} is not a multiple of {step}, which {base['title']} ({facts.label}) needs: "
                f"try {max(step, value // step * step)}.",
                field=name,
            )


def _weight(ref: Reference, adapter: Mapping[str, Any]) -> float:
    """The token's weight, or the saved adapter's default when the token gave none."""
    return ref.weight if ref.explicit else float(adapter["weight"])
