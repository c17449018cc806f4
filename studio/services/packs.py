"""Packs: collections of prompt templates per class with a tune config — authored, edited,
ordered, exported and imported (starter packs included), ranked by likes and likeness, and run:
a new tune made from a pack, or a pack's prompts made on existing tunes."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from storage import FileStore, Store
from studio import likeness, packs
from studio.config import Settings
from studio.errors import AdminsOnly, Conflict, InvalidInput, NotFound, TooLarge
from studio.families import FAMILIES
from studio.jobs import check_callback_url
from studio.packs import PackPromptRequest, PackRequest
from studio.principals import LOCAL_ADMIN, Principal
from studio.prompts import PromptRequest
from studio.services.lookups import prompt_row
from studio.services.models import ASSETS, BaseModels
from studio.services.prompts import Prompts
from studio.services.queue import JobQueue
from studio.services.tunes import Tunes
from studio.tune_requests import PRESET_FAMILIES, PromptSpec, TuneRequest

log = logging.getLogger(__name__)


class Packs:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        files: FileStore,
        models: BaseModels,
        tunes: Tunes,
        prompts: Prompts,
        queue: JobQueue,
    ):
        self.settings = settings
        self.store = store
        self.files = files
        self.models = models
        self.tunes = tunes
        self.prompts = prompts
        self.queue = queue

    def create_pack(self, request: PackRequest, *, principal: Principal = LOCAL_ADMIN) -> dict[str, Any]:
        """Create `principal`'s pack without prompts yet. Raises InvalidInput for a bad field,
        NotFound for a base model not in the gallery, Conflict when the slug is taken."""
        request = packs.check_pack(request)
        self._check_pack_base(request)
        if self.store.find_pack_by_slug(request.slug, principal.owner):  # its own or a shared one
            raise Conflict(f"A pack with the slug '{request.slug}' exists: choose another slug.", field="slug")
        pack_id = self.store.add_pack({**packs.pack_columns(request), "owner": principal.owner})
        return self.get_pack(pack_id, principal=principal)

    def update_pack(self, pack_id: int | str, *, principal: Principal = LOCAL_ADMIN, **changes: Any) -> dict[str, Any]:
        """Change some of a pack's own fields (those of `PackRequest`); returns the pack."""
        pack = self._pack_row(pack_id, principal, change=True)
        pack_id = pack["id"]
        unknown = set(changes) - {f.name for f in dataclasses.fields(PackRequest)}
        if unknown:
            raise InvalidInput(f"Packs have no field(s) {', '.join(sorted(unknown))}.", field=sorted(unknown)[0])
        request = packs.check_pack(dataclasses.replace(packs.pack_request(pack), **changes))
        self._check_pack_base(request)
        other = self.store.find_pack_by_slug(request.slug, pack["owner"])
        if other and other["id"] != pack_id:
            raise Conflict(f"Another pack has the slug '{request.slug}': choose another slug.", field="slug")
        self.store.update_pack(pack_id, **packs.pack_columns(request))
        return self.get_pack(pack_id, principal=principal)

    def delete_pack(self, pack_id: int | str, *, principal: Principal = LOCAL_ADMIN) -> None:
        """Delete a pack and its prompts. Prompts already made from it keep their images and
        likes; they no longer count for any pack."""
        pack = self._pack_row(pack_id, principal, change=True)
        pack_id = pack["id"]
        paths = [p["image_path"] for p in self.store.list_pack_prompts(pack_id)] + [pack["cover_path"]]
        self.store.delete_pack(pack_id)
        self._forget_pack_images(paths)

    def add_pack_prompt(
        self,
        pack_id: int | str,
        request: PackPromptRequest,
        image: bytes | None = None,
        *,
        principal: Principal = LOCAL_ADMIN,
    ) -> dict[str, Any]:
        """Add a template at the end of its class, with an optional example image (PNG, JPEG or
        WEBP bytes). The pack's cover becomes the image of the last prompt added that has one,
        and the class joins the pack's classes. Returns the pack prompt."""
        pack = self._pack_row(pack_id, principal, change=True)
        pack_id = pack["id"]
        columns = packs.check_pack_prompt(request)
        image_path = self._store_pack_image(image) if image is not None else None
        with self.store.transaction():
            pack_prompt_id = self.store.add_pack_prompt({"pack_id": pack_id, **columns, "image_path": image_path})
            if columns["class_name"] not in pack["classes"]:
                self.store.update_pack(pack_id, classes=[*pack["classes"], columns["class_name"]])
            self.store.update_pack(pack_id, cover_path=self.store.pack_cover(pack_id))
        return self.get_pack_prompt(pack_prompt_id, principal=principal)

    def add_prompt_to_pack(
        self, pack_id: int | str, prompt_id: int, image_idx: int = 0, *, principal: Principal = LOCAL_ADMIN
    ) -> dict[str, Any]:
        """Astria's way of authoring a pack: turn an existing prompt into a template of its
        tune's class. The tune's "token class" words become `{{token}} {{name}}`, its generation
        parameters (not its seed) are kept, and its image `image_idx` becomes the example image,
        so the pack's cover becomes that image. Returns the pack prompt."""
        prompt = prompt_row(self.store, prompt_id, principal)
        tune = self.store.get_tune(prompt["tune_id"])
        images = self.store.prompt_images(prompt_id)
        if not 0 <= image_idx < len(images):
            raise InvalidInput(
                f"Prompt {prompt_id} has {len(images)} image(s) to take the example from.", field="image_idx"
            )
        subject = rf"\b{re.escape(tune['token'] or 'ohwx')}\s+{re.escape(tune['name'] or '')}\b"
        # A stored prompt holds every field; those at the prompt's defaults stay unset.
        defaults = {f.name: f.default for f in dataclasses.fields(PromptRequest)}
        params = {
            k: v
            for k, v in (prompt["params"] or {}).items()
            if k in packs.PARAM_NAMES and k != "seed" and v != defaults[k]
        }
        request = PackPromptRequest(
            class_name=tune["name"],
            text=re.sub(subject, "{{token}} {{name}}", prompt["text"]),
            negative_prompt=prompt["negative_prompt"] or "",
            num_images=(prompt["params"] or {}).get("num_images", len(images)),
            **params,
        )
        image = self.files.read(images[image_idx]["path"])
        return self.add_pack_prompt(pack_id, request, image=image, principal=principal)

    def edit_pack_prompt(
        self,
        pack_prompt_id: int,
        request: PackPromptRequest,
        image: bytes | None = None,
        *,
        principal: Principal = LOCAL_ADMIN,
    ) -> dict[str, Any]:
        """Replace a template's class, text and parameters (and its example image when `image`
        is given). A prompt moved to another class goes to the end of it."""
        current = self._pack_prompt_row(pack_prompt_id, principal, change=True)
        pack = self._pack_row(current["pack_id"], principal, change=True)
        columns = packs.check_pack_prompt(request)
        if image is not None:
            columns["image_path"] = self._store_pack_image(image)
        with self.store.transaction():
            if columns["class_name"] != current["class_name"]:
                last = [p["position"] for p in self.store.list_pack_prompts(pack["id"], columns["class_name"])]
                columns["position"] = max(last, default=-1) + 1
                if columns["class_name"] not in pack["classes"]:
                    self.store.update_pack(pack["id"], classes=[*pack["classes"], columns["class_name"]])
            self.store.update_pack_prompt(pack_prompt_id, **columns)
            self.store.update_pack(pack["id"], cover_path=self.store.pack_cover(pack["id"]))
        if image is not None:
            self._forget_pack_images([current["image_path"]])
        return self.get_pack_prompt(pack_prompt_id, principal=principal)

    def reorder_pack_prompts(
        self, pack_id: int | str, class_name: str, pack_prompt_ids: list[int], *, principal: Principal = LOCAL_ADMIN
    ) -> list[dict[str, Any]]:
        """Put one class's prompts in the order given; `pack_prompt_ids` must name each of them
        once. Returns the class's prompts in their new order."""
        pack_id = self._pack_row(pack_id, principal, change=True)["id"]
        current = {p["id"] for p in self.store.list_pack_prompts(pack_id, class_name)}
        if len(pack_prompt_ids) != len(current) or set(pack_prompt_ids) != current:
            raise InvalidInput(
                f"Give each of the {len(current)} '{class_name}' prompts of pack {pack_id} once: {sorted(current)}.",
                field="pack_prompt_ids",
            )
        self.store.reorder_pack_prompts(pack_id, class_name, pack_prompt_ids)
        return [packs.scored(p) for p in self._prompts_seen(principal, pack_id, class_name)]

    def remove_pack_prompt(self, pack_prompt_id: int, *, principal: Principal = LOCAL_ADMIN) -> None:
        """Remove a template; its likes leave the pack's counts and the cover is chosen again."""
        pack_prompt = self._pack_prompt_row(pack_prompt_id, principal, change=True)
        with self.store.transaction():
            self.store.delete_pack_prompt(pack_prompt_id)
            self.store.update_pack(pack_prompt["pack_id"], cover_path=self.store.pack_cover(pack_prompt["pack_id"]))
        self._forget_pack_images([pack_prompt["image_path"]])

    def get_pack(self, pack_id: int | str, *, principal: Principal = LOCAL_ADMIN) -> dict[str, Any]:
        """A pack by id or slug, scored, with `prompts_per_class`: each class's templates in
        order, each scored by its own likes and images shown (and its likeness figures), all
        counted as `principal` may know them (`_prompts_seen`), and its runs' `consistency` on
        `principal`'s tunes (`pack_consistency`)."""
        pack = self._pack_row(pack_id, principal)
        prompts = self._prompts_seen(principal, pack["id"])
        per_class: dict[str, list[dict[str, Any]]] = {name: [] for name in pack["classes"]}
        for prompt in prompts:
            per_class.setdefault(prompt["class_name"], []).append(likeness.with_stats(packs.scored(prompt)))
        if not principal.is_admin:
            pack = _counted_from(pack, prompts)
        return {
            **likeness.with_stats(packs.scored(packs.pack_view(pack))),
            "prompts_per_class": per_class,
            "consistency": self.pack_consistency(pack["id"], principal=principal),
        }

    def pack_consistency(self, pack_id: int, *, principal: Principal = LOCAL_ADMIN) -> list[dict[str, Any]]:
        """Per run of the pack on one of `principal`'s tunes (the 20 latest): the spread of its
        images' likeness and the prompts below the tune's typical score (`likeness.consistency`)."""
        rows = self.store.pack_run_images(pack_id, principal.owner_filter)
        scores = self.store.tune_likeness_scores(sorted({row["tune_id"] for row in rows}))
        return likeness.consistency(rows, scores)

    def get_pack_prompt(self, pack_prompt_id: int, *, principal: Principal = LOCAL_ADMIN) -> dict[str, Any]:
        """A pack prompt, scored, with its likeness figures, counted as `principal` may know them."""
        prompt = self._pack_prompt_row(pack_prompt_id, principal)
        [prompt] = [p for p in self._prompts_seen(principal, prompt["pack_id"]) if p["id"] == pack_prompt_id]
        return likeness.with_stats(packs.scored(prompt))

    def list_packs(
        self,
        *,
        public: bool | None = None,
        listed: bool | None = None,
        blend: bool = False,
        principal: Principal = LOCAL_ADMIN,
    ) -> list[dict[str, Any]]:
        """Packs ranked by their like rate's Wilson lower bound (see studio/packs.py), each with
        `score`, `like_rate` and `rating` ('new', 'few ratings' or None), and its likeness
        figures (`likeness_mean`, `likeness_rate`, `likeness_score`, `blended_score`; see
        studio/likeness.py); `blend` ranks by `blended_score` instead. The shared packs and
        `principal`'s (an admin's: all), counted as `principal` may know them (`_prompts_seen`)."""
        owner = principal.owner_filter
        rows = [packs.pack_view(p) for p in self.store.list_packs(public=public, listed=listed, owner=owner)]
        if not principal.is_admin:
            per_pack: dict[int, list[dict[str, Any]]] = {}
            for prompt in self._prompts_seen(principal):
                per_pack.setdefault(prompt["pack_id"], []).append(prompt)
            rows = [_counted_from(row, per_pack.get(row["id"], [])) for row in rows]
        return likeness.rank_blended(map(packs.scored, rows)) if blend else with_likeness(packs.rank(rows))

    def pack_prompt_rankings(
        self,
        pack_id: int | None = None,
        class_name: str | None = None,
        *,
        blend: bool = False,
        principal: Principal = LOCAL_ADMIN,
    ) -> list[dict[str, Any]]:
        """Pack prompts (of one pack, or of all `principal` may read) ranked like packs, by their
        own likes (`blend`: by likes and likeness), each with its likeness figures. An admin's
        ranking counts everyone's prompts; anyone else's counts only their own, so it tells
        nothing of what others made, liked or how their faces scored."""
        if pack_id is not None:
            pack_id = self._pack_row(pack_id, principal)["id"]
        rows = self._prompts_seen(principal, pack_id, class_name)
        return likeness.rank_blended(map(packs.scored, rows)) if blend else with_likeness(packs.rank(rows))

    def lint_pack(
        self, pack_id: int | str, characteristics: dict[str, Any] | None = None, *, principal: Principal = LOCAL_ADMIN
    ) -> list[packs.LintIssue]:
        """What would go wrong running the pack (see `packs.lint`), errors first."""
        pack = self._pack_row(pack_id, principal)
        issues = packs.lint(pack, self.store.list_pack_prompts(pack["id"]), characteristics)
        return sorted(issues, key=lambda issue: issue.level != "error")

    def export_pack(self, pack_id: int | str, *, principal: Principal = LOCAL_ADMIN) -> str:
        """The pack as one JSON document (format in `packs.pack_document`), its cover and
        example images embedded as base64 data URLs."""
        pack = self._pack_row(pack_id, principal)
        prompts = self.store.list_pack_prompts(pack["id"])
        images = {}
        for path in {pack["cover_path"], *(p["image_path"] for p in prompts)} - {None}:
            try:
                images[path] = packs.data_url(self.files.read(path), Path(path).suffix)
            except FileNotFoundError:
                log.warning("pack %s: image %s is missing from the file store; exported without it", pack["id"], path)
        return json.dumps(packs.pack_document(pack, prompts, images), indent=2, ensure_ascii=False)

    def import_pack(
        self, source: str | bytes | Path | dict, *, slug: str | None = None, principal: Principal = LOCAL_ADMIN
    ) -> dict[str, Any]:
        """Create `principal`'s pack from a pack file: a Path (its images may be sibling files
        named in it), JSON text or bytes, or the parsed object. `slug` imports it under another
        slug. Raises InvalidInput for a bad file, Conflict when the slug is taken."""
        return self._import(source, slug, principal.owner)

    def _import(self, source: str | bytes | Path | dict, slug: str | None, owner: str | None) -> dict[str, Any]:
        """`import_pack` for `owner` (None: a shared pack)."""
        folder = source.parent if isinstance(source, Path) else None
        document = packs.read_document(source, packs.max_file_bytes(self.settings.max_upload_mb))
        request, prompts, prompt_images, cover = packs.parse_document(document)
        request = packs.check_pack(dataclasses.replace(request, slug=slug)) if slug else request
        self._check_pack_base(request)
        if self.store.find_pack_by_slug(request.slug, owner):
            raise Conflict(f"A pack with the slug '{request.slug}' exists: import with another slug.", field="slug")
        # Read and check every image before storing any, so a bad file leaves nothing behind.
        blobs = {ref: packs.image_bytes(ref, folder) for ref in {*prompt_images, cover} - {None}}
        for data in blobs.values():
            packs.image_suffix(data, "image")
        stored = {ref: self._store_pack_image(data) for ref, data in blobs.items()}
        with self.store.transaction():
            pack_id = self.store.add_pack({**packs.pack_columns(request), "owner": owner})
            for prompt, ref in zip(prompts, prompt_images):
                columns = packs.check_pack_prompt(prompt)
                self.store.add_pack_prompt({"pack_id": pack_id, **columns, "image_path": stored.get(ref)})
            self.store.update_pack(pack_id, cover_path=stored[cover] if cover else self.store.pack_cover(pack_id))
        return self.get_pack(pack_id)

    def tune_from_pack(
        self,
        pack_id: int | str,
        photos: list[tuple[str, bytes]] | None,
        name: str,
        title: str,
        characteristics: Mapping[str, Any] | None = None,
        *,
        photo_ids: list[int] | None = None,
        image_urls: Sequence[str] | str | None = None,
        prompt_ids: Sequence[int] | None = None,
        callback: str | None = None,
        prompt_callback: str | None = None,
        prompts_callback: str | None = None,
        branch: str | None = None,
        base_url: str | None = None,
        detect_characteristics: bool = False,
        principal: Principal = LOCAL_ADMIN,
    ) -> dict[str, Any]:
        """Astria's `POST /p/:id/tunes`: `principal`'s tune of class `name` from `photos` ((filename, bytes)
        uploads), stored `photo_ids` and/or `image_urls` (fetched last), with the pack's model_type, base model, preset, token
        and training args, queued to train (`create_tune`, so a title in use returns that tune);
        its prompts
        (one per pack prompt of that class, or of `prompt_ids`, templates filled from the token,
        class and `characteristics`) are created with it and run once it is trained, each
        remembering its pack prompt; `prompts_callback` is called once they are all done.
        With `detect_characteristics` (the API's tunes) the photos' characteristics fill what
        `characteristics` leaves out, before the templates are filled (`image_urls` are then
        fetched first). Raises InvalidInput when the pack has no prompts for the class or its
        prompts have lint errors, before anything is stored. Returns the tune."""
        pack = self._pack_row(pack_id, principal)
        name = packs.check_class_name(name)
        check_callback_url(prompt_callback, "prompt_callback", allow_private=self.settings.allow_private_urls)
        runs = self._pack_runs(pack, name, pack["token"], characteristics, prompt_ids)
        if detect_characteristics:
            photo_service = self.tunes.photos
            if image_urls:
                urls = photo_service.photo_urls(image_urls, len(photos or []) + len(photo_ids or []))
                photos, image_urls = [*(photos or []), *photo_service.fetch_photos(urls)], None
            found = photo_service.detected_characteristics(name, photos or (), photo_ids or (), principal=principal)
            characteristics = {**found, **(characteristics or {})}
            runs = self._pack_runs(pack, name, pack["token"], characteristics, prompt_ids)
        specs = tuple(
            PromptSpec(
                text=request.text,
                negative_prompt=request.negative_prompt or None,
                # The request's warnings (placeholders left empty) reach the prompt made later.
                params={
                    k: v
                    for k, v in {**request.params(), "warnings": list(request.warnings) or None}.items()
                    if v is not None
                },
                callback=prompt_callback,
                orig_prompt_id=pack_prompt_id,
            )
            for pack_prompt_id, request in runs
        )
        request = TuneRequest(
            **{**pack["args"], "title": title, "name": name, "token": pack["token"]},
            model_type=pack["model_type"],
            base_tune_id=pack["base_tune_id"],
            preset=pack["preset"],
            branch=branch,
            characteristics=dict(characteristics or {}),
            callback=callback,
            prompts=specs,
            prompts_callback=prompts_callback,
        )
        tune = self.tunes.create_tune(
            request, photos=photos, photo_ids=photo_ids, image_urls=image_urls, base_url=base_url, principal=principal
        )
        if self.store.get_tune(tune["id"])["pack_id"] is None:  # not when the title named an older tune
            self.store.update_tune(tune["id"], pack_id=pack["id"])
        return tune

    def run_pack(
        self,
        pack_id: int | str,
        tune_ids: Sequence[int],
        *,
        prompt_ids: Sequence[int] | None = None,
        prompt_callback: str | None = None,
        prompts_callback: str | None = None,
        base_url: str | None = None,
        principal: Principal = LOCAL_ADMIN,
    ) -> list[dict[str, Any]]:
        """Astria's `POST /p/:id/tunes` with `tune_ids`: for each existing tune `principal` may see, one prompt per
        pack prompt of the tune's class (or of `prompt_ids`), filled from the tune's token and
        characteristics and remembering its pack prompt. Every tune is checked before any prompt
        is made. Prompts on a tune still training wait for it. Each prompt posts to
        `prompt_callback` when done, and `prompts_callback` gets them all (a list of prompt
        JSON, as with `tune_from_pack`) once every one is done. Returns the prompts."""
        pack = self._pack_row(pack_id, principal)
        if not tune_ids:
            raise InvalidInput("Give the ids of the tunes to run the pack on.", field="tune_ids")
        for url, field_name in [(prompt_callback, "prompt_callback"), (prompts_callback, "prompts_callback")]:
            check_callback_url(url, field_name, allow_private=self.settings.allow_private_urls)
        plans = []
        for tune_id in dict.fromkeys(tune_ids):
            tune = self.store.get_tune(tune_id)
            if tune is None or tune["model_type"] == "checkpoint" or not principal.sees(tune["owner"]):
                raise NotFound(f"Tune {tune_id} does not exist: list tunes to see their ids.", field="tune_ids")
            token = tune["token"] or pack["token"]
            plans.append((tune, self._pack_runs(pack, tune["name"], token, tune["characteristics"], prompt_ids)))
        made = [
            self.prompts.create_prompt(
                tune["id"],
                dataclasses.replace(request, callback=prompt_callback),
                orig_prompt_id=pp_id,
                base_url=base_url,
                principal=principal,
            )
            for tune, runs in plans
            for pp_id, request in runs
        ]
        if prompts_callback:
            # Grouped once all exist; prompts that finished meanwhile are caught by the check.
            run_id = self.store.add_prompt_run(prompts_callback, [p["id"] for p in made])
            self.queue.send_run_callback(run_id)
        return made

    def _pack_runs(
        self,
        pack: dict[str, Any],
        class_name: str,
        token: str,
        characteristics: Mapping[str, Any] | None,
        prompt_ids: Sequence[int] | None,
    ) -> list[tuple[int, PromptRequest]]:
        """The prompt requests a pack makes for one tune: (pack prompt id, request) for each
        pack prompt of the class (or of `prompt_ids`), in order, templates filled. Raises
        InvalidInput for a class without prompts, foreign prompt ids or lint errors."""
        templates = self.store.list_pack_prompts(pack["id"], class_name)
        if prompt_ids is not None:
            known = {p["id"] for p in self.store.list_pack_prompts(pack["id"])}
            foreign = sorted(set(prompt_ids) - known)
            if foreign:
                raise InvalidInput(f"Prompt ids {foreign} are not prompts of pack {pack['id']}.", field="prompt_ids")
            templates = [p for p in templates if p["id"] in set(prompt_ids)]
        if not templates:
            classes = ", ".join(sorted({p["class_name"] for p in self.store.list_pack_prompts(pack["id"])})) or "none"
            raise InvalidInput(
                f"Pack '{pack['slug']}' has no '{class_name}' prompts to run (its classes: {classes}).", field="name"
            )
        errors = [i.message for i in packs.lint(pack, templates, characteristics or {}) if i.level == "error"]
        if errors:
            raise InvalidInput("Fix the pack first: " + " ".join(errors), field="pack_id")
        values = packs.pack_values({"token": token, "name": class_name, "characteristics": characteristics or {}})
        runs = []
        for template in templates:
            text, missing = packs.fill_template(template["text"], values)
            request = PromptRequest(
                text=text,
                negative_prompt=template["negative_prompt"] or "",
                num_images=template["num_images"],
                warnings=(packs.missing_warning(missing),) if missing else (),
                **(template["params"] or {}),
            )
            runs.append((template["id"], request.validate()))
        return runs

    def load_starter_packs(self) -> None:
        """Import each starter pack in assets/packs/ whose slug no shared pack has yet."""
        for path in sorted((ASSETS / "packs").glob("*.json")):
            slug = json.loads(path.read_text()).get("slug")
            if not self.store.find_pack_by_slug(slug):
                self._import(path, None, None)  # shared: everyone reads it, admins change it
                log.info("added the starter pack %s", slug)

    def _prompts_seen(
        self, principal: Principal, pack_id: int | None = None, class_name: str | None = None
    ) -> list[dict[str, Any]]:
        """The pack prompts `principal` may read (of one pack, or of all), each with the figures
        it may know: an admin's count everyone's prompts (the trigger-kept counters); anyone
        else's only their own prompts, so a shared pack tells nothing of what others made of
        it, liked, or how their faces scored."""
        if principal.is_admin:
            return self.store.list_pack_prompts(pack_id, class_name)
        return self.store.list_pack_prompts_seen_by(principal.owner, pack_id, class_name)

    def _pack_row(self, pack_id: int | str, principal: Principal = LOCAL_ADMIN, *, change: bool = False) -> dict:
        """The pack `principal` may read (a shared one, or its own), or may change (`change`:
        its own; a shared one only as an admin)."""
        if isinstance(pack_id, str):
            pack = self.store.find_pack_by_slug(pack_id, principal.owner, anyone=principal.is_admin)
        else:
            pack = self.store.get_pack(pack_id)
        if pack is None or (pack["owner"] is not None and not principal.sees(pack["owner"])):
            raise NotFound(f"Pack {pack_id!r} does not exist: list packs to see their ids and slugs.", field="pack_id")
        if change and pack["owner"] is None and not principal.is_admin:
            raise AdminsOnly(
                f"Pack '{pack['slug']}' is shared by everyone: only an admin (STUDIO_ADMINS) changes it. "
                "Export it and import a copy of your own to change that.",
                field="pack_id",
            )
        return pack

    def _pack_prompt_row(
        self, pack_prompt_id: int, principal: Principal = LOCAL_ADMIN, *, change: bool = False
    ) -> dict[str, Any]:
        prompt = self.store.get_pack_prompt(pack_prompt_id)
        if prompt is None:
            raise NotFound(f"Pack prompt {pack_prompt_id} does not exist.", field="pack_prompt_id")
        try:
            self._pack_row(prompt["pack_id"], principal, change=change)
        except NotFound:
            raise NotFound(f"Pack prompt {pack_prompt_id} does not exist.", field="pack_prompt_id") from None
        return prompt

    def _check_pack_base(self, request: PackRequest) -> None:
        """NotFound for a base model not in the gallery; InvalidInput naming `preset` for a
        preset made for other families than the pack's base model (the default one when unset)."""
        if request.base_tune_id is not None:
            base = self.models.base_model(request.base_tune_id)
        else:
            base = self.models.default_base_model()
        families = PRESET_FAMILIES.get(request.preset or "")
        if families and base["family"] not in families:
            raise InvalidInput(
                f"preset {request.preset} is for {' and '.join(FAMILIES[f].label for f in families)} base models, "
                f"but this pack's base model {base['title']} is {FAMILIES[base['family']].label}: "
                "use portrait or style, or a FLUX base model.",
                field="preset",
            )

    def _store_pack_image(self, data: bytes) -> str:
        """Store an example image re-encoded from its pixels: covers are public, so nothing of
        the upload's own bytes (GPS, comments, anything appended) is served."""
        from studio.images import clean_bytes, decode_image, image_format

        if len(data) > self.settings.max_upload_mb * 2**20:
            raise TooLarge(f"The image is over {self.settings.max_upload_mb} MB: use a smaller one.", field="image")
        image = decode_image(data, "image", max_bytes=self.settings.max_upload_mb * 2**20)
        jpeg = image_format(data) == "JPEG"
        return self.files.put(clean_bytes(image, "JPEG" if jpeg else "PNG"), "covers", ".jpg" if jpeg else ".png")

    def _forget_pack_images(self, paths: list[str | None]) -> None:
        """Delete stored pack images nothing shows any more (files are shared by content)."""
        for path in set(paths) - {None}:
            if not self.store.pack_image_in_use(path):
                self.files.delete(path)


# A pack's counters, each the sum of its pack prompts' (the m040/m060 triggers keep it so).
_PACK_COUNTERS = ("likes_count", "images_shown", "runs", "likeness_scored", "likeness_matched")
_PACK_COUNTERS += ("likeness_faces", "likeness_sum")


def _counted_from(pack: dict[str, Any], prompts: list[dict[str, Any]]) -> dict[str, Any]:
    """`pack` with its counters summed from `prompts` (its prompts, as `_prompts_seen` counts
    them) instead of the stored totals of everyone's."""
    return {**pack, **{name: sum(p[name] for p in prompts) for name in _PACK_COUNTERS}}


def with_likeness(ranked: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ranked rows, in their order, with their likeness figures (studio/likeness.py)."""
    return [likeness.with_stats(row) for row in ranked]
