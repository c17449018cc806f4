"""Face-focused training: the per-pixel weights of the masked diffusion loss.

A LoRA of a person learns the face best when the loss weighs the face more than the clothes and
the background, as the masked-loss options of the open-source trainers do (kohya's
`masked_loss`, OneTrainer's masked training). The studio has no segmentation model, so the
regions come from the face backend's box alone:

- the face: the detected box grown by FACE_MARGIN on each side, weight `face_loss_weight`;
- the rest of the subject: a box SUBJECT_WIDTH face widths wide around the face, from a little
  above it down to the bottom of the photo (head, neck, shoulders and body), weight 1;
- the background: everything else, weight `background_loss_weight`.

A photo without a face weighs 1 everywhere. `studio.training.train_lora` scales the mask to
the latent grid (area average), weighs each latent's squared error by it and divides by the
mask's sum, so the loss keeps its scale and a zero weight removes a region from the gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Share of the face box's side added on each side for the face region (hair line, chin, ears).
FACE_MARGIN = 0.2
#: Width of the subject region in face widths, centred on the face.
SUBJECT_WIDTH = 3.0
#: Tune classes with no human face (the face backends find human faces only).
NON_PERSON = frozenset({"cat", "dog", "style"})
#: The defaults for person classes: the face twice the rest of the subject, the background half.
PERSON_FACE_WEIGHT = 2.0
PERSON_BACKGROUND_WEIGHT = 0.5


def masked(face_loss_weight: float, background_loss_weight: float) -> bool:
    """Whether these weights change the loss (both 1 is the plain loss)."""
    return face_loss_weight != 1.0 or background_loss_weight != 1.0


def loss_mask(
    size: tuple[int, int],
    face_box: Sequence[float] | None,
    face_loss_weight: float,
    background_loss_weight: float,
) -> np.ndarray:
    """The (height, width) float32 weights of a photo of `size` (width, height) whose subject's
    face is `face_box` (x0, y0, x1, y1 in its pixels; None: no face, all ones)."""
    width, height = size
    if face_box is None:
        return np.ones((height, width), np.float32)
    x0, y0, x1, y1 = (float(v) for v in face_box)
    w, h = x1 - x0, y1 - y0
    mask = np.full((height, width), background_loss_weight, np.float32)
    cx = (x0 + x1) / 2
    mask[_rows(y0 - 0.5 * h, height, height), _cols(cx - SUBJECT_WIDTH * w / 2, cx + SUBJECT_WIDTH * w / 2, width)] = (
        1.0
    )
    mask[
        _rows(y0 - FACE_MARGIN * h, y1 + FACE_MARGIN * h, height),
        _cols(x0 - FACE_MARGIN * w, x1 + FACE_MARGIN * w, width),
    ] = face_loss_weight
    return mask


def _rows(top: float, bottom: float, height: int) -> slice:
    return slice(max(0, int(round(top))), min(height, int(round(bottom))))


def _cols(left: float, right: float, width: int) -> slice:
    return slice(max(0, int(round(left))), min(width, int(round(right))))
