"""The report card of a photo set: near-duplicates, identity outliers, too few usable photos,
no variety (all frontal, one background), and the characteristics most photos agree on.

It reads what `studio.inspection.check_photo` measured on each photo (perceptual hash, border
histogram, yaw, face embedding, findings) and decodes nothing itself. Thresholds were calibrated
on the test photos (tests/photos.py), as inspection's were.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from studio.inspection import PhotoInspection
from studio.inspection_checks import Finding

MIN_PHOTOS = 5
DUPLICATE_BITS = 10  # perceptual-hash Hamming distance (of 64) at or under which two photos match
FRONTAL_YAW = 0.12  # |nose offset| / eye distance under which a face looks straight at the camera
SAME_BACKGROUND = 0.75  # mean histogram intersection of the photos' borders


def report_card(
    inspections: list[PhotoInspection], same_person_distance: float, names: Sequence[str | None] | None = None
) -> dict[str, Any]:
    """Judge a set of inspected photos (in upload order; indexes, from 0, refer to it). The
    sentences name a photo by its file name from `names` (parallel to `inspections`), else as
    `photos[i]` with the same index the fields use: one convention, never a number from 1.

    Returns `near_duplicates` (groups of indexes), `identity_outliers` (index, distance to the
    medoid), `too_few_photos` and `no_variety` (findings as JSON), `usable` (indexes with one
    face, no serious finding and not an outlier), `characteristics` (the value most usable
    photos agree on, where at least half have one) with `characteristics_confidence`, and
    `warnings`, one sentence each."""
    duplicates = near_duplicates(inspections)
    outliers = identity_outliers(inspections, same_person_distance)
    outlier_set = {o["index"] for o in outliers}
    usable = [i for i, p in enumerate(inspections) if i not in outlier_set and _usable(p)]
    too_few = Finding(
        len(usable) < MIN_PHOTOS,
        float(len(usable)),
        float(MIN_PHOTOS),
        f"Only {len(usable)} usable photos: add more (at least {MIN_PHOTOS}; 10 to 20 give the best likeness).",
    )
    variety = no_variety([inspections[i] for i in usable])
    characteristics, confidence = aggregate_characteristics([inspections[i] for i in usable])
    label = photo_labels(len(inspections), names)
    warnings = [_duplicate_warning([label[i] for i in group]) for group in duplicates]
    warnings += [f"{label[o['index']]} may be a different person: remove it." for o in outliers]
    warnings += [finding.message for finding in (too_few, variety) if finding.value]
    return {
        "photos": len(inspections),
        "usable": usable,
        "near_duplicates": duplicates,
        "identity_outliers": outliers,
        "too_few_photos": too_few.to_json(),
        "no_variety": variety.to_json(),
        "characteristics": characteristics,
        "characteristics_confidence": confidence,
        "warnings": warnings,
    }


# Findings that make a photo useless for learning a face (the others are advice).
_SERIOUS = ("no_face", "includes_multiple_people", "wearing_sunglasses", "blurry", "face_cut_off")


def _usable(inspection: PhotoInspection) -> bool:
    return inspection.subject is not None and not any(
        inspection.findings[key].value for key in _SERIOUS if key in inspection.findings
    )


def near_duplicates(inspections: list[PhotoInspection]) -> list[list[int]]:
    """Groups (each sorted, two or more) of photos whose perceptual hashes are within
    DUPLICATE_BITS of each other, joined transitively."""
    parent = list(range(len(inspections)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(inspections)):
        for j in range(i + 1, len(inspections)):
            if hamming(inspections[i].phash, inspections[j].phash) <= DUPLICATE_BITS:
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(inspections)):
        groups.setdefault(root(i), []).append(i)
    return [group for group in groups.values() if len(group) > 1]


def identity_outliers(inspections: list[PhotoInspection], same_person_distance: float) -> list[dict[str, Any]]:
    """Photos whose face is further than `same_person_distance` from the medoid (the face with
    the smallest total distance to the others). Needs three faces: with two, which one is the
    stranger cannot be told, so both are reported when they differ."""
    indexed = [(i, p.embedding) for i, p in enumerate(inspections) if p.embedding is not None]
    if len(indexed) < 2:
        return []
    vectors = np.stack([v for _, v in indexed])
    distances = np.linalg.norm(vectors[:, None, :] - vectors[None, :, :], axis=2)
    if len(indexed) == 2:
        gap = float(distances[0, 1])
        return [{"index": i, "distance": round(gap, 3)} for i, _ in indexed] if gap > same_person_distance else []
    medoid = int(np.argmin(distances.sum(axis=1)))
    return [
        {"index": i, "distance": round(float(distances[medoid, k]), 3)}
        for k, (i, _) in enumerate(indexed)
        if distances[medoid, k] > same_person_distance
    ]


def no_variety(inspections: list[PhotoInspection]) -> Finding:
    """True when three or more photos are all frontal and share one background. The score is
    the mean border-histogram intersection when all faces are frontal, else 0."""
    message = "The photos are all frontal shots in front of one background: add other angles and places."
    if len(inspections) < 3:
        return Finding(False, 0.0, SAME_BACKGROUND, message)
    frontal = all(p.yaw is not None and abs(p.yaw) < FRONTAL_YAW for p in inspections)
    pairs = [
        float(np.minimum(a.background, b.background).sum())
        for k, a in enumerate(inspections)
        for b in inspections[k + 1 :]
    ]
    same = float(np.mean(pairs))
    return Finding(frontal and same >= SAME_BACKGROUND, same if frontal else 0.0, SAME_BACKGROUND, message)


def aggregate_characteristics(inspections: list[PhotoInspection]) -> tuple[dict[str, str], dict[str, float]]:
    """Astria's aggregation: per attribute, the most common non-empty value, kept when at least
    half of the photos have a value; confidence = share of photos that agree with it."""
    values: dict[str, list[str]] = {}
    for inspection in inspections:
        attributes = {"name": inspection.name, **inspection.characteristics}
        for key, value in attributes.items():
            if value:
                values.setdefault(key, []).append(value)
    chosen: dict[str, str] = {}
    confidence: dict[str, float] = {}
    for key, found in values.items():
        if len(found) * 2 < len(inspections):
            continue
        value, count = Counter(found).most_common(1)[0]
        chosen[key] = value
        confidence[key] = round(count / len(inspections), 2)
    return chosen, confidence


def photo_labels(count: int, names: Sequence[str | None] | None = None) -> list[str]:
    """How sentences name each of `count` photos: its file name, else `photos[i]` (the index,
    from 0, that the report card's fields and the API's `photos` list use)."""
    names = list(names or [])
    return [(names[i] if i < len(names) and names[i] else f"photos[{i}]") for i in range(count)]


def _duplicate_warning(labels: list[str]) -> str:
    return f"{', '.join(labels)} are near-duplicates: keep one and add different photos."


def hamming(a: int, b: int) -> int:
    """How many of two perceptual hashes' 64 bits differ."""
    return (a ^ b).bit_count()


def best_references(inspections: list[PhotoInspection], same_person_distance: float, keep: int) -> list[int]:
    """The indexes of the `keep` photos a reference tune passes to a multi-reference model,
    best first, chosen with the report card: photos with one face that are not identity
    outliers and have no serious finding (`usable`; when none is, every photo with a face),
    one per group of near-duplicates, ranked by fewest warnings, then most frontal (|yaw|),
    then sharpest (the `blurry` check's score)."""
    card = report_card(inspections, same_person_distance)
    candidates = card["usable"] or [i for i, p in enumerate(inspections) if p.subject is not None]
    for group in card["near_duplicates"]:
        kept = [i for i in group if i in candidates][:1]
        candidates = [i for i in candidates if i not in group or i in kept]

    def rank(index: int) -> tuple[int, float, float]:
        photo = inspections[index]
        blurry = photo.findings.get("blurry")
        return len(photo.warnings), abs(photo.yaw or 0.0), -(blurry.score if blurry else 0.0)

    return sorted(candidates, key=rank)[:keep]
