"""Face detailing (A1111's ADetailer): re-generate each face of a finished image at the model's
native resolution, with the face's own person, and blend it back.

Faces in a generated picture are often a small part of it, so the model drew them with few
latent pixels and the person's LoRA or FaceID had little room to act. The detailer finds the faces
with the studio's face backend (studio/faces.py), takes a square crop around each (the face and
as much margin again, so the model sees head and hair), scales the crop to the model's native
size, re-generates the face inside it through the family's inpaint pipeline at a denoising
`strength` with that person's identity, scales it back and pastes it with a feathered elliptic
mask. Pixels outside the crops are never touched; inside a crop, only the feathered face ellipse.

People: a multi-person prompt (`split_people`) gives one `Person` per `BREAK` part that names a
subject, left to right; faces are assigned to them left to right by the centre of their boxes
(OpenPose, when a pose image is used, draws them in the order its skeletons run left to right
too). A count mismatch is a warning, never an error.

This module holds the pure geometry and assignment; the engine (studio/engine.py) runs the
pipelines. Heavy imports happen inside functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

#: Side of the crop around a face, as a multiple of the face box's larger side.
CROP_SCALE = 2.0
#: The re-generated ellipse: the face box grown by this share of its side on each edge.
MASK_GROW = 0.12
#: Feathering of the blend mask (Gaussian radius), as a share of the face box's side.
FEATHER = 0.08
#: Default denoising strength of the face pass (ADetailer's default).
DEFAULT_STRENGTH = 0.4
#: With `inpaint_faces` left to the studio ("auto"), only faces smaller than this share of the
#: model's native size are detailed: larger faces already had the latent pixels they need.
AUTO_MAX_FACE = 0.5

_BREAK = re.compile(r"\bBREAK\b")


@dataclass(frozen=True)
class Person:
    """One person's identity for the face pass: their LoRAs ((name, path, weight) triples, as
    `GenerateRequest.loras`), or a FaceID embedding with its adapter and scale, and their part
    of the prompt (`prompt`, tokens removed). `label` names them in warnings and PNG text (a
    tune id or title)."""

    label: str
    prompt: str = ""
    loras: tuple[tuple[str, str, float], ...] = ()
    faceid_embedding: tuple[float, ...] | None = field(default=None, repr=False)
    faceid_adapter: str | None = None
    faceid_scale: float = 1.0


@dataclass(frozen=True)
class DetailedFace:
    """What the pass did to one face: its box (x0, y0, x1, y1) in the image, the crop that was
    re-generated, and the index of the person (in the request's people) who detailed it."""

    box: tuple[int, int, int, int]
    crop: tuple[int, int, int, int]
    person: int


def split_people(text: str) -> list[str]:
    """The parts of a prompt separated by the word `BREAK` (A1111's separator), stripped, empty
    parts dropped. One part means no BREAK."""
    return [part.strip(" ,\n") for part in _BREAK.split(text) if part.strip(" ,\n")]


def left_to_right(boxes: list[tuple[float, float, float, float]]) -> list[int]:
    """Indices of `boxes` ordered by the x of their centres, then y."""
    return sorted(range(len(boxes)), key=lambda i: ((boxes[i][0] + boxes[i][2]) / 2, (boxes[i][1] + boxes[i][3]) / 2))


def assign_people(
    boxes: list[tuple[float, float, float, float]], people: int, which: tuple[int, ...] = ()
) -> tuple[list[tuple[int, int]], list[str]]:
    """Pair faces with people: ([(box index, person index)], warnings). Faces are taken left to
    right; `which` (0-based positions in that order; empty: all) picks some. With one person,
    every chosen face is theirs; with several, the i-th chosen face is person i's, and a
    different count is a warning saying who or what was left out."""
    order = left_to_right(boxes)
    chosen = [order[i] for i in which if 0 <= i < len(order)] if which else order
    warnings = []
    missing = [i + 1 for i in which if not 0 <= i < len(order)]
    if missing:
        warnings.append(
            f"Face detailing: face {', '.join(map(str, missing))} was asked for, but {len(order)} "
            f"face{'s' if len(order) != 1 else ''} were found."
        )
    if people <= 1:
        return [(box, 0) for box in chosen], warnings
    if len(chosen) != people:
        what = (
            f"people {', '.join(str(i + 1) for i in range(len(chosen), people))} kept the scene's face"
            if len(chosen) < people
            else f"the {len(chosen) - people} face(s) right of the last person were left as generated"
        )
        warnings.append(
            f"The prompt names {people} people but {len(chosen)} face{'s' if len(chosen) != 1 else ''} "
            f"were found for detailing: {what}. Use a pose image with {people} people, or describe "
            f"{people} people in the scene."
        )
    return [(box, person) for person, box in enumerate(chosen[:people])], warnings


def crop_box(box: tuple[float, float, float, float], image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A square (x0, y0, x1, y1) of CROP_SCALE × the face's larger side around its centre,
    shifted to lie inside the image (and no larger than it)."""
    width, height = image_size
    side = min(round(max(box[2] - box[0], box[3] - box[1]) * CROP_SCALE), width, height)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0 = min(max(round(cx - side / 2), 0), width - side)
    y0 = min(max(round(cy - side / 2), 0), height - side)
    return (x0, y0, x0 + side, y0 + side)


def face_masks(box: tuple[float, float, float, float], crop: tuple[int, int, int, int], size: int):
    """(inpaint mask, blend mask), both mode-L images of `size`×`size` for the crop scaled to
    `size`: the inpaint mask is the grown face ellipse in white; the blend mask is the same
    ellipse feathered, shrunk so that its blur stays inside the crop."""
    from PIL import Image, ImageDraw, ImageFilter

    scale = size / (crop[2] - crop[0])
    side = max(box[2] - box[0], box[3] - box[1]) * scale
    grow = side * MASK_GROW
    ellipse = [
        (box[0] - crop[0]) * scale - grow,
        (box[1] - crop[1]) * scale - grow,
        (box[2] - crop[0]) * scale + grow,
        (box[3] - crop[1]) * scale + grow,
    ]
    inpaint = Image.new("L", (size, size), 0)
    ImageDraw.Draw(inpaint).ellipse(ellipse, fill=255)
    radius = max(side * FEATHER, 1.0)
    inner = [ellipse[0] + radius, ellipse[1] + radius, ellipse[2] - radius, ellipse[3] - radius]
    blend = Image.new("L", (size, size), 0)
    ImageDraw.Draw(blend).ellipse(inner, fill=255)
    return inpaint, blend.filter(ImageFilter.GaussianBlur(radius))


def paste_face(image, detailed, crop: tuple[int, int, int, int], blend) -> Any:
    """`image` with `detailed` (the re-generated crop, any size) scaled back onto `crop` through
    the feathered `blend` mask; a new image, pixels outside the mask unchanged."""
    from PIL import Image

    side = crop[2] - crop[0]
    patch = detailed.convert("RGB").resize((side, side), Image.Resampling.LANCZOS)
    mask = blend.resize((side, side), Image.Resampling.BILINEAR)
    out = image.copy()
    region = Image.composite(patch, out.crop(crop), mask)
    out.paste(region, crop[:2])
    return out


def wanted_faces(
    faces: list, mode: str, native_size: int, image_size: tuple[int, int]
) -> tuple[list[tuple[float, float, float, float]], str | None]:
    """The boxes of `faces` (studio.faces.Face) the pass should detail, and why some were not.
    `mode` "on" takes every face; "auto" only faces under AUTO_MAX_FACE × the native size,
    measured in the image scaled to the native size (where the model drew them)."""
    boxes = [tuple(float(v) for v in face.bbox) for face in faces]
    if mode == "on":
        return boxes, None
    scale = native_size / max(image_size)
    small = [b for b in boxes if max(b[2] - b[0], b[3] - b[1]) * scale < AUTO_MAX_FACE * native_size]
    if len(small) < len(boxes):
        return small, f"{len(boxes) - len(small)} large face(s) left as generated (face detailing was automatic)"
    return small, None


#: The A1111 parameters entries that say a second pass ran, in the order they run.
PASS_ENTRIES = (
    *("Denoising strength", "ControlNet", "Inpaint", "Hires upscale", "Hires upscaler", "Hires steps"),
    *("Face detailing", "Color grading", "Film grain"),
)


def passes_ran(parameters: str) -> list[str]:
    """ "Name: value" lines for the second passes an image's A1111 parameters text records
    (img2img, ControlNet, inpainting, hires fix, face detailing, the look), for the image details; [] when none ran."""
    from studio.prompts import PromptError, parse_parameters

    try:
        extra = parse_parameters(parameters).get("extra") or {}
    except PromptError:
        return []
    return [f"{name}: {extra[name]}" for name in PASS_ENTRIES if name in extra]
