"""Likeness: how much a generated image looks like the subject of its tune.

Every image made from a subject tune (a LoRA or FaceID tune of a person) is scored on the job
worker right after it is generated: its faces are detected and embedded with the face backend
that built the tune's reference embedding, and each face is compared with that reference. The
best-matching face is reported. The `Studio` (studio/core.py) ties this to storage; everything
here is pure apart from the analyzer it is given.

What the number means
---------------------
`score` is the cosine similarity of two unit face embeddings, 1 for the same vector and lower as
they differ. Each backend has a distance under which two faces are the same person
(`FaceAnalyzer.same_person_distance`, an L2 distance `d` between unit vectors). For unit vectors
cosine = 1 - d²/2, so the same threshold as a similarity is:

    dlib (128-d ResNet, unit d < 0.41)   same person from 0.916
    insightface (512-d ArcFace, d < 1.1) same person from 0.395

Scores of different backends are not comparable; each score carries its backend and threshold.

A likeness record (the JSON stored per image and per checkpoint sample, and the API's
`likeness` list) is either None (not scored: no subject tune, a non-human class, or no
reference face) or:

    {"backend": "dlib", "threshold": 0.916, "faces": 2, "score": 0.97, "distance": 0.24,
     "same_person": true, "face": {"index": 0, "bbox": [x0, y0, x1, y1], "det_score": 1.3},
     "message": null}

with `score`, `distance` and `face` None and `message` NO_FACE when no face was found.

Copy-paste ("too alike") flag
-----------------------------
A model can paste a face it was given or trained on instead of drawing the person: a reference
model (a FaceID tune on FLUX.2 [klein] passes its face crops to the model) its input crops, a
LoRA that overfits one of its training photos. An image of a scored tune therefore also gets
`reference_similarity`, the highest cosine similarity of its reported face to any single one of
those faces (the reference crops of a reference tune, else the best face of each training photo
of the LoRA or FaceID tune; None without a face), and `copy_paste`, true when that similarity is
at least `copy_threshold`: the similarity of faces COPY_DISTANCE_FRACTION (a quarter) of the
backend's same-person distance apart, i.e. far closer than two real photos of one person get:

    dlib        same person from 0.916, a copy from 0.9947 (unit d < 0.1025)
    insightface same person from 0.395, a copy from 0.9622 (d < 0.275)

Re-embedding the very same face crop (resized or slightly rotated) scores above 0.999 with dlib.

Consistency of a pack run
-------------------------
A pack run on a tune (its prompts made from one pack) is consistent when its images look like
the person alike. `consistency` reports, per tune, the `spread` (population standard deviation)
of the face scores of the run's images with the mean, min and max, the tune's `typical` score
(the median of every face score of the tune's images, the pack's and others'), and `below`: the
prompts whose mean face score is under `typical - max(tune's own spread, MIN_MARGIN)`, or
whose scored images show no face at all (score None), worst first.

Rankings
--------
A pack or pack prompt also gets likeness figures from the images scored for it (kept by database
triggers): `likeness_mean` (mean score of the images that show a face), `likeness_rate` (share of
scored images that show the subject; an image without a face does not), and `likeness_score`,
the Wilson lower bound of that rate (as for likes, studio/packs.py). The blended ranking is

    blended_score = (1 - LIKENESS_WEIGHT) * score + LIKENESS_WEIGHT * likeness_score

with LIKENESS_WEIGHT = 0.3: likes, which say what people want, stay the larger part, and a pack
whose images stop looking like the person drops even when they are liked. An item none of whose
images was scored (a style pack, a pet) keeps its like score unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from studio.face_loss import NON_PERSON
from studio.faces import FaceAnalyzer
from studio.packs import wilson_lower_bound
from studio.prompts import parse_prompt

log = logging.getLogger(__name__)

NO_FACE = "no face found"
#: Share of the blended ranking that likeness takes (see the module docstring).
LIKENESS_WEIGHT = 0.3
#: Faces embedded per image at most, by detection score: a crowd scene costs no more than this.
MAX_FACES = 5
#: Tune classes whose subject has no human face for the face backends to find.
NON_HUMAN = NON_PERSON
#: A face this share of the same-person distance from a reference crop's is a copy of it: real
#: photos of one person sit well apart inside the same-person distance, a pasted crop does not.
COPY_DISTANCE_FRACTION = 0.25
COPIES = "copies a reference"
#: A prompt is below its tune's typical score by at least this much (consistency).
MIN_MARGIN = 0.01


def similarity_threshold(same_person_distance: float) -> float:
    """The cosine similarity at which two unit embeddings are `same_person_distance` apart."""
    return round(1.0 - same_person_distance**2 / 2.0, 4)


def copy_threshold(same_person_distance: float) -> float:
    """The cosine similarity from which a face copies a reference crop (module docstring)."""
    return similarity_threshold(same_person_distance * COPY_DISTANCE_FRACTION)


def copy_paste(embedding: Any, crops: Sequence[Any], threshold: float) -> tuple[float | None, bool]:
    """(highest cosine similarity of `embedding` to one of the `crops` embeddings, whether it
    reaches `threshold`); (None, False) without crops."""
    if not len(crops):
        return None, False
    face = unit(embedding)
    best = max(float(np.dot(face, unit(crop))) for crop in crops)
    return round(best, 4), bool(best >= threshold)


def unit(vector: Any) -> np.ndarray:
    """`vector` flattened to float32 and scaled to length 1 (a reference as stored, made unit
    again so that a dot product is a cosine similarity)."""
    v = np.asarray(vector, np.float32).reshape(-1)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def scores_subject(tune: Mapping[str, Any]) -> bool:
    """Whether images of `tune` are scored: LoRA and FaceID tunes of anything but a pet or a
    style (the backends find human faces only)."""
    return tune.get("model_type") in ("lora", "faceid") and (tune.get("name") or "") not in NON_HUMAN


def subject_tune_id(tune: Mapping[str, Any], text: str) -> int | None:
    """The tune whose subject a prompt's images should look like: the prompt's own tune when it
    is a LoRA or FaceID tune, else the first `<faceid:ID>` token of the text, else its first
    `<lora:ID>` token naming a tune; None when there is none. `text` must parse (it did when
    the prompt was generated)."""
    if tune.get("model_type") in ("lora", "faceid"):
        return int(tune["id"])
    references = parse_prompt(text).references
    for kind in ("faceid", "lora"):
        for ref in references:
            if ref.kind == kind and ref.tune_id is not None:
                return ref.tune_id
    return None


def score_image(
    analyzer: FaceAnalyzer, reference: np.ndarray, rgb: np.ndarray, crops: Sequence[np.ndarray] | None = None
) -> dict[str, Any]:
    """Score the faces of an RGB uint8 (H, W, 3) image against a unit `reference` embedding made
    by `analyzer`'s backend; returns a likeness record (module docstring) for the best-matching
    face of at most MAX_FACES, or the NO_FACE record. With `crops` (the embeddings of a reference
    tune's face crops, by the same backend) the record also has `reference_similarity` and
    `copy_paste` for that face. ValueError when the reference's size is not the analyzer's
    embedding size (a reference made by another backend)."""
    reference = unit(reference)
    if reference.size != analyzer.embedding_dim:
        raise ValueError(
            f"a {reference.size}-d reference cannot be compared with {analyzer.name}'s "
            f"{analyzer.embedding_dim}-d embeddings"
        )
    threshold = similarity_threshold(analyzer.same_person_distance)
    faces = analyzer.detect(rgb)
    record: dict[str, Any] = {
        "backend": analyzer.name,
        "threshold": threshold,
        "faces": len(faces),
        "score": None,
        "distance": None,
        "same_person": False,
        "face": None,
        "message": NO_FACE if not faces else None,
    }
    if crops is not None:
        record.update(reference_similarity=None, copy_paste=False)
    best_index, best_score, best_embedding = -1, -2.0, None
    for index, face in enumerate(faces[:MAX_FACES]):  # detect() returns the best detections first
        embedding = analyzer.embed(rgb, face)
        score = float(np.dot(embedding, reference))
        if score > best_score:
            best_index, best_score, best_embedding = index, score, embedding
    if best_index >= 0:
        face = faces[best_index]
        distance = float(np.sqrt(max(0.0, 2.0 - 2.0 * best_score)))
        record.update(
            score=round(best_score, 4),
            distance=round(distance, 4),
            same_person=bool(distance < analyzer.same_person_distance),
            face={
                "index": best_index,
                "bbox": [round(float(v), 1) for v in face.bbox],
                "det_score": round(float(face.score), 3),
            },
        )
        if crops is not None:
            similarity, copied = copy_paste(best_embedding, crops, copy_threshold(analyzer.same_person_distance))
            record.update(reference_similarity=similarity, copy_paste=copied)
    return record


def best_faces(analyzer: FaceAnalyzer, photos: Iterable[np.ndarray]) -> list[np.ndarray]:
    """The embedding of the highest-scoring face of each photo (RGB uint8 arrays) that shows one."""
    embeddings = []
    for rgb in photos:
        faces = analyzer.detect(rgb)
        if faces:
            embeddings.append(analyzer.embed(rgb, faces[0]))
    return embeddings


def reference_from_photos(analyzer: FaceAnalyzer, photos: Iterable[np.ndarray]) -> np.ndarray | None:
    """A subject's reference embedding from its photos (RGB uint8 arrays): the unit mean of the
    highest-scoring face of each photo that shows one, as a FaceID tune's is made; None when no
    photo shows a face."""
    embeddings = best_faces(analyzer, photos)
    return reference_embedding(embeddings) if embeddings else None


def best_step(checkpoints: Sequence[Mapping[str, Any]]) -> int | None:
    """The step of the checkpoint whose sample scored highest (the later step on a tie); None
    when no sample showed a face. Each checkpoint has `step` and `likeness` (a record or None)."""
    scored = [c for c in checkpoints if (c.get("likeness") or {}).get("score") is not None]
    if not scored:
        return None
    return max(scored, key=lambda c: (c["likeness"]["score"], c["step"]))["step"]


def with_stats(row: Mapping[str, Any], weight: float = LIKENESS_WEIGHT) -> dict[str, Any]:
    """A ranked pack or pack prompt (`packs.scored`: it has `score`) plus its likeness figures
    from the trigger-kept counters `likeness_scored`, `likeness_matched`, `likeness_faces` and
    `likeness_sum`: `likeness_mean` and `likeness_rate` (None before anything was scored),
    `likeness_score` (Wilson lower bound, 0 before) and `blended_score` (module docstring)."""
    scored, matched = int(row.get("likeness_scored") or 0), int(row.get("likeness_matched") or 0)
    faces, total = int(row.get("likeness_faces") or 0), float(row.get("likeness_sum") or 0.0)
    likeness_score = wilson_lower_bound(matched, scored)
    blended = row["score"] if scored == 0 else (1 - weight) * row["score"] + weight * likeness_score
    return {
        **row,
        "likeness_mean": round(total / faces, 4) if faces else None,
        "likeness_rate": round(matched / scored, 6) if scored else None,
        "likeness_score": round(likeness_score, 6),
        "blended_score": round(blended, 6),
    }


def rank_blended(rows: Iterable[Mapping[str, Any]], weight: float = LIKENESS_WEIGHT) -> list[dict[str, Any]]:
    """Ranked rows (`packs.scored`) by `blended_score`, best first; ties as in `packs.rank`."""
    return sorted(
        (with_stats(row, weight) for row in rows), key=lambda r: (-r["blended_score"], r["images_shown"], -r["id"])
    )


def consistency(rows: Sequence[Mapping[str, Any]], tune_scores: Mapping[int, Sequence[float]]) -> list[dict[str, Any]]:
    """The consistency of each pack run (module docstring) from its scored images (`rows` as
    `Store.pack_run_images` gives them) and each tune's face scores; one dict per tune, in the
    order of `rows`."""
    runs: dict[int, dict[str, Any]] = {}
    for row in rows:
        run = runs.setdefault(row["tune_id"], {"tune_title": row["tune_title"], "prompts": {}})
        prompt = run["prompts"].setdefault(
            row["prompt_id"],
            {"prompt_id": row["prompt_id"], "pack_prompt_id": row["orig_prompt_id"], "text": row["text"], "scores": []},
        )
        if row["likeness_score"] is not None:
            prompt["scores"].append(float(row["likeness_score"]))
    out = []
    for tune_id, run in runs.items():
        scores = [s for p in run["prompts"].values() for s in p["scores"]]
        own = list(tune_scores.get(tune_id) or scores)
        typical = float(np.median(own)) if own else None
        margin = max(float(np.std(own)) if own else 0.0, MIN_MARGIN)
        below = []
        for prompt in run["prompts"].values():
            mean = float(np.mean(prompt["scores"])) if prompt["scores"] else None
            if mean is None or (typical is not None and mean < typical - margin):
                below.append({**{k: v for k, v in prompt.items() if k != "scores"}, "score": _round(mean)})
        below.sort(key=lambda p: -2.0 if p["score"] is None else p["score"])
        out.append(
            {
                "tune_id": tune_id,
                "tune_title": run["tune_title"],
                "prompts": len(run["prompts"]),
                "faces": len(scores),
                "mean": _round(float(np.mean(scores)) if scores else None),
                "spread": _round(float(np.std(scores)) if scores else None),
                "min": _round(min(scores) if scores else None),
                "max": _round(max(scores) if scores else None),
                "typical": _round(typical),
                "below": below,
            }
        )
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def describe(record: Mapping[str, Any] | None) -> str:
    """One line for a person: 'likeness 0.970 · same person (from 0.916, dlib)', 'no face found
    (dlib)', or '' for an image that was not scored."""
    if not record:
        return ""
    if record.get("score") is None:
        return f"{record.get('message') or NO_FACE} ({record['backend']})"
    verdict = "same person" if record["same_person"] else "not a match"
    line = f"likeness {record['score']:.3f} · {verdict} (from {record['threshold']:.3f}, {record['backend']})"
    if record.get("copy_paste"):
        line += f" · {COPIES} ({record['reference_similarity']:.3f})"
    return line


def reference_embedding(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """A FaceID tune's identity: the mean of the L2-normalised embeddings, normalised again so
    it has the unit length IP-Adapter-FaceID expects. float32 of the embeddings' dimension."""
    if not embeddings:
        raise ValueError("a reference embedding needs at least one face embedding")
    units = [np.asarray(e, np.float32).reshape(-1) for e in embeddings]
    units = [u / max(float(np.linalg.norm(u)), 1e-12) for u in units]
    mean = np.mean(units, axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
