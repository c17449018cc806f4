"""Photos of subjects: uploads checked and stored once per content with their inspection,
stored sets inspected as one (with the report card), image URLs fetched, uploads decoded."""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from storage import FileStore, Store
from studio import packs
from studio.config import Settings
from studio.errors import InvalidInput, NotFound, StudioError, TooLarge
from studio.images import decode_image, thumbnail
from studio.inspection import decode_photo
from studio.principals import LOCAL_ADMIN, Principal
from studio.runtime import Runtime

PHOTO_SET_CACHE = 32  # photo sets whose inspection is kept in memory (inspect_photo_set)


class Photos:
    def __init__(self, settings: Settings, store: Store, files: FileStore, runtime: Runtime):
        self.settings = settings
        self.store = store
        self.files = files
        self.runtime = runtime
        # Stored photos never change, so a set's inspection is kept by (photo ids, class): the
        # Photos and Tunes tabs redraw the same sets often, and each photo costs ~0.3 s of CPU.
        self._set_cache: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
        self._set_lock = threading.Lock()

    def add_photos(
        self,
        files: Sequence[tuple[str, bytes]],
        *,
        added: list[int] | None = None,
        principal: Principal = LOCAL_ADMIN,
    ) -> tuple[list[dict[str, Any]], list]:
        """Check and store uploads ((filename, bytes) pairs): each good one is stored
        normalised (upright, re-encoded from its pixels: no metadata, no trailing bytes) in the
        private "photos" area with its inspection JSON, once per content (a photo uploaded again
        is the same row). Returns (the photo rows in upload order, `inspection.Rejection`s
        naming each refused file and why). The ids of rows this call inserted are appended to
        `added`, so a request that fails later can take them back (`discard_photos`)."""
        from studio.inspection import Rejection, analyze_photo, validate_uploads

        photos, rejections = validate_uploads(
            files, max_photos=self.settings.max_photos, max_bytes=self.settings.max_upload_mb * 2**20
        )
        rows = []
        for photo in photos:
            existing = self.store.find_photo(photo.sha256)
            if existing is not None:
                rows.append(existing)
                continue
            try:
                data, suffix = photo.normalised_bytes()
            except InvalidInput as error:
                rejections.append(Rejection(photo.filename, error.message))
                continue
            path = self.files.put(data, "photos", suffix)
            try:
                photo_id = self.store.add_photo(
                    {
                        "sha256": photo.sha256,
                        "path": path,
                        "width": photo.image.width,
                        "height": photo.image.height,
                        "format": photo.format,
                        "filename": photo.filename,
                        "inspection": analyze_photo(photo.rgb(), self.runtime.face_analyzer).to_json(),
                    }
                )
            except BaseException:
                for orphan in self.store.unreferenced([path]):
                    self.files.delete(orphan)
                raise
            if added is not None:
                added.append(photo_id)
            rows.append(self.store.get_photo(photo_id))
        for row in rows:
            self.store.add_photo_owner(row["id"], principal.owner)
        return rows, rejections

    def discard_photos(self, photo_ids: Sequence[int]) -> None:
        """Delete photos a failed request stored, rows and files, unless a tune uses them."""
        if photo_ids:
            for path in self.store.discard_photos(list(photo_ids)):
                self.files.delete(path)

    def may_see(self, photo_id: int, principal: Principal) -> bool:
        """True when `principal` uploaded the photo, owns a tune made from it, or is an admin."""
        return principal.is_admin or self.store.photo_owned_by(photo_id, principal.owner)

    def inspect_photo_set(
        self, photo_ids: Sequence[int], name: str | None, *, principal: Principal = LOCAL_ADMIN
    ) -> dict[str, Any]:
        """Inspect stored photos as one set of a subject of class `name`: `photos` (id,
        filename, `inspection` JSON, and `level` 'ok' or 'warning' with the `reasons`, the set's
        verdicts on that photo included), `report` (`inspection_report.report_card`), and the
        `characteristics` most photos agree on with their `confidence` (0..1). Photos no longer
        stored, or someone else's, are left out."""
        rows = self.get_photos(photo_ids, principal=principal)
        key = (tuple(row["id"] for row in rows), name)
        with self._set_lock:
            if key in self._set_cache:
                self._set_cache.move_to_end(key)
                return copy.deepcopy(self._set_cache[key])
        result = self._inspect_stored_photos(rows, name)
        with self._set_lock:
            self._set_cache[key] = copy.deepcopy(result)
            while len(self._set_cache) > PHOTO_SET_CACHE:
                self._set_cache.popitem(last=False)
        return result

    def _inspect_stored_photos(self, rows: list[dict[str, Any]], name: str | None) -> dict[str, Any]:
        from studio.inspection import analyze_photo
        from studio.inspection_report import photo_labels, report_card

        analyzer = self.runtime.face_analyzer
        inspections = [analyze_photo(np.asarray(self.photo_image(row)), analyzer, name) for row in rows]
        names = [row["filename"] for row in rows]
        card = report_card(inspections, analyzer.same_person_distance, names)
        label = photo_labels(len(rows), names)
        reasons = [list(inspection.warnings) for inspection in inspections]
        for group in card["near_duplicates"]:
            for index in group:
                others = ", ".join(label[other] for other in group if other != index)
                reasons[index].append(f"Nearly the same as {others}: keep one of them.")
        for outlier in card["identity_outliers"]:
            reasons[outlier["index"]].append("This may be a different person: remove it.")
        photos = [
            {
                "id": row["id"],
                "filename": row["filename"],
                "inspection": inspection.to_json(),
                "level": "warning" if why else "ok",
                "reasons": why,
            }
            for row, inspection, why in zip(rows, inspections, reasons)
        ]
        return {
            "photos": photos,
            "report": card,
            "characteristics": card["characteristics"],
            "confidence": card["characteristics_confidence"],
        }

    def detected_characteristics(
        self,
        name: str,
        files: Sequence[tuple[str, bytes]] = (),
        photo_ids: Sequence[int] = (),
        *,
        principal: Principal = LOCAL_ADMIN,
    ) -> dict[str, str]:
        """The characteristics (eye_color, hair_color, glasses…) the usable photos of a subject
        of class `name` agree on, found as the Photos tab finds them for a set: for uploads
        ((filename, bytes); files that are no photo are skipped) and stored photos by id. What
        the UI shows a person to correct, an API tune gets as it is."""
        from studio.inspection import analyze_photo, validate_uploads
        from studio.inspection_report import report_card

        limit = self.settings.max_upload_mb * 2**20
        uploads = validate_uploads(files, max_photos=self.settings.max_photos, max_bytes=limit)[0] if files else []
        images = [photo.rgb() for photo in uploads]
        images += [np.asarray(self.photo_image(row)) for row in self.get_photos(photo_ids, principal=principal)]
        if not images:
            return {}
        analyzer = self.runtime.face_analyzer
        pool = self.runtime.inspection_pool(len(images))  # as `inspect_set`: big sets on all cores
        inspections = pool.analyze(images, name) if pool else [analyze_photo(rgb, analyzer, name) for rgb in images]
        card = report_card(inspections, analyzer.same_person_distance)
        return {key: value for key, value in card["characteristics"].items() if key != "name"}

    def get_photos(self, photo_ids: Sequence[int], *, principal: Principal = LOCAL_ADMIN) -> list[dict[str, Any]]:
        """The stored photos with these ids, in that order, each with its inspection JSON. Ids
        that no longer exist (their tune was deleted with them), or that are someone else's,
        are left out."""
        rows = (self.store.get_photo(int(photo_id)) for photo_id in dict.fromkeys(photo_ids))
        return [row for row in rows if row is not None and self.may_see(row["id"], principal)]

    def photo_thumbnail(self, photo_id: int, side: int = 192, *, principal: Principal = LOCAL_ADMIN):
        """A stored photo as an RGB PIL image at most `side` px a side. Photos are private: the
        UI shows these renderings, never a URL of the photo file."""
        row = self.store.get_photo(photo_id)
        if row is None or not self.may_see(photo_id, principal):
            raise NotFound(f"Photo {photo_id} does not exist; upload it again.", field="photo_id")
        return thumbnail(self.photo_image(row), side)

    def photo_image(self, row: dict):
        """A stored photo as an upright RGB PIL image."""
        return decode_photo(self.files.read(row["path"]), row.get("filename") or "photo").image

    def inspect_photo(self, data: bytes | None, name: str | None = None, *, url: str | None = None) -> dict[str, Any]:
        """Astria's image inspect for one photo (`data`, else fetched from `url` like
        `image_urls`) of a subject of class `name` (one of packs.CLASS_NAMES; None for any
        person): the `PhotoInspection` JSON (characteristics as strings, findings as booleans,
        plus each finding's score and threshold, warnings, faces, face_backend). Nothing is
        stored. Raises InvalidInput for an unknown class or a file that is not a usable photo
        (field 'file'), and Unavailable when the face backend is not installed."""
        from studio.inspection import analyze_photo

        if name is not None and name not in packs.CLASS_NAMES:
            raise InvalidInput(
                f"name must be the class of the subject, one of {', '.join(packs.CLASS_NAMES)}.", field="name"
            )
        if data is None:
            if not url:
                raise InvalidInput("Send the photo as `file` (multipart) or as `file_url`.", field="file")
            [(_, data)] = self.fetch_photos([url], field="file_url")
        photo = decode_photo(data, "file", max_bytes=self.settings.max_upload_mb * 2**20)
        return analyze_photo(photo.rgb(), self.runtime.face_analyzer, name).to_json()

    def inspect_set(self, files: Sequence[tuple[str, bytes]], name: str | None = None) -> dict[str, Any]:
        """Inspect uploads ((filename, bytes) pairs) as one training set of class `name`.

        Returns `photos` (per accepted photo: `index`, `filename` and its inspection JSON),
        `rejected` ({filename, reason} per refused file: bad files never stop the good ones),
        `report` (`inspection_report.report_card`; its indexes are those of `photos`),
        `characteristics` with `characteristics_confidence`, and `face_backend`."""
        from studio.inspection import analyze_photo, validate_uploads
        from studio.inspection_report import report_card

        photos, rejections = validate_uploads(
            files, max_photos=self.settings.max_photos, max_bytes=self.settings.max_upload_mb * 2**20
        )
        analyzer = self.runtime.face_analyzer
        pool = self.runtime.inspection_pool(len(photos))
        if pool is not None:
            inspections = pool.analyze([photo.rgb() for photo in photos], name)
        else:
            inspections = [analyze_photo(photo.rgb(), analyzer, name) for photo in photos]
        card = report_card(inspections, analyzer.same_person_distance, [photo.filename for photo in photos])
        return {
            "photos": [
                {"index": i, "filename": photo.filename, **inspection.to_json()}
                for i, (photo, inspection) in enumerate(zip(photos, inspections))
            ],
            "rejected": [rejection.to_json() for rejection in rejections],
            "report": card,
            "characteristics": card["characteristics"],
            "characteristics_confidence": card["characteristics_confidence"],
            "face_backend": analyzer.name,
        }

    def face_backend_status(self) -> str:
        """The face backend in use and why the others are not, for the status view. Looks at
        installed files only; nothing is loaded."""
        from studio.faces import backends_report

        report = backends_report(self.settings.face_backend)
        missing = [f"{name}: {why}" for name, why in report["missing"].items() if why and name != report["backend"]]
        chosen = f"{report['backend']} (STUDIO_FACE_BACKEND={report['choice']})"
        if report["missing"].get(report["backend"]):
            chosen += f", not usable: {report['missing'][report['backend']]}"
        return chosen + ("; " + "; ".join(missing) if missing else "")

    def photo_urls(self, urls: Any, uploads: int) -> list[str]:
        """`image_urls` checked without fetching: http(s) URLs (one string counts as a list of
        one) that, with the `uploads` files, make at most max_photos photos (else TooLarge)."""
        if urls is None or urls == "":
            urls = []
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
            raise InvalidInput("image_urls must be a list of http or https URLs.", field="image_urls")
        total = uploads + len(urls)
        if total > self.settings.max_photos:
            raise TooLarge(
                f"{total} photos are too many: a tune takes at most {self.settings.max_photos} "
                "(STUDIO_MAX_PHOTOS); send your best ones.",
                field="images",
            )
        for url in urls:
            if urlsplit(url.strip()).scheme not in ("http", "https"):
                raise InvalidInput(f"image URL {url!r} must be an http or https address.", field="image_urls")
        return [url.strip() for url in urls]

    def fetch_photos(self, urls: Sequence[str], field: str = "image_urls") -> list[tuple[str, bytes]]:
        """Download `urls` (four at a time) as (filename, bytes) uploads with `fetch_url`'s
        rules: http(s) only, public addresses unless STUDIO_ALLOW_PRIVATE_URLS, at most
        max_upload_mb each, a time limit. The first failure raises InvalidInput (or TooLarge)
        naming `field`."""
        from concurrent.futures import ThreadPoolExecutor

        from studio.fetch import fetch_url

        def fetch(url: str) -> tuple[str, bytes]:
            try:
                data = fetch_url(
                    url,
                    max_bytes=self.settings.max_upload_mb * 2**20,
                    allow_private=self.settings.allow_private_urls,
                )
            except StudioError as error:
                error.field = field
                raise
            return (Path(urlsplit(url).path).name or "image"), data

        if not urls:
            return []
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="studio-fetch") as pool:
            return list(pool.map(fetch, urls))

    def decode_image(self, data: bytes, field: str):
        """An upload as an upright RGB PIL image (`images.decode_image` at the upload limit)."""
        return decode_image(data, field, max_bytes=self.settings.max_upload_mb * 2**20)
