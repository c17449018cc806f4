"""Adapters: the saved assets prompt tokens name — uploaded LoRAs (`<lora:NAME>`,
`<be-lora:NAME>`) and face, style and pose avatars (`<be-face:NAME>`…) — and the token help."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from storage import FileStore, Store
from studio.config import Settings
from studio.domain import ADAPTER_KINDS, RUNNABLE_FAMILIES, SUCCESS
from studio.errors import Conflict, InvalidInput, NotFound, TooLarge
from studio.images import png_bytes, thumbnail
from studio.lora_formats import lora_family
from studio.principals import LOCAL_ADMIN, Principal
from studio.prompts import make_token
from studio.runtime import Runtime
from studio.services.lookups import named_adapter
from studio.services.photos import Photos


class Adapters:
    def __init__(self, settings: Settings, store: Store, files: FileStore, runtime: Runtime, photos: Photos):
        self.settings = settings
        self.store = store
        self.files = files
        self.runtime = runtime
        self.photos = photos

    def add_adapter(
        self,
        kind: str,
        name: str,
        data: bytes,
        *,
        weight: float = 1.0,
        trigger_words: Sequence[str] = (),
        family: str | None = None,
        principal: Principal = LOCAL_ADMIN,
    ) -> dict[str, Any]:
        """Save an asset that prompt tokens name: a LoRA (`data` is a .safetensors file, header
        checked, at most max_lora_mb; its family read from its metadata, keys and shapes when
        they say: sd15, sdxl, flux1, flux2) or a
        face/style/pose image (PNG/JPEG/WEBP). A face gets its embedding now from the studio's
        face backend, so `<face:NAME>` works like a FaceID tune. Raises InvalidInput naming
        the field, TooLarge, Conflict when `principal` already has one of that kind and name
        (names are unique per owner: a token resolves within its owner's adapters). It belongs
        to `principal`."""
        if kind not in ADAPTER_KINDS:
            raise InvalidInput(f"kind '{kind}' is not one of {', '.join(ADAPTER_KINDS)}.", field="kind")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", name):
            raise InvalidInput(
                "name must be one word: a letter, then letters, digits, '_' or '-' (64 at most).", field="name"
            )
        low = -2.0 if kind == "lora" else 0.0
        if not (isinstance(weight, (int, float)) and low <= weight <= 2.0):
            raise InvalidInput(f"weight {weight!r} is out of range: use {low:g} to 2.", field="weight")
        if self.store.get_adapter(kind, name, principal.owner) is not None:
            raise Conflict(f"There is already a {kind} named '{name}': pick another name or delete it.", field="name")
        metadata: dict[str, Any] = {"trigger_words": [w.strip() for w in trigger_words if w and w.strip()]}
        if kind == "lora":
            path, family = self._store_lora(data, family)
        else:
            image = self.photos.decode_image(data, "file")
            path = self.files.put(png_bytes(image), "photos", ".png")
            metadata.update(width=image.width, height=image.height)
            if kind == "face":
                metadata.update(self._face_embedding(image))
        self.store.add_adapter(
            {
                "name": name,
                "kind": kind,
                "path": path,
                "family": family,
                "weight": float(weight),
                "metadata": metadata,
                "owner": principal.owner,
            }
        )
        return self.get_adapter(kind, name, principal=principal)

    def get_adapter(self, kind: str, name: str, *, principal: Principal = LOCAL_ADMIN) -> dict[str, Any]:
        """The adapter of this kind and name; NotFound when there is none `principal` may see."""
        adapter = named_adapter(self.store, kind, name, principal)
        if adapter is None or not principal.sees(adapter["owner"]):
            raise NotFound(f"There is no {kind} named '{name}'.", field="name")
        return adapter

    def list_adapters(self, kind: str | None = None, *, principal: Principal = LOCAL_ADMIN) -> list[dict[str, Any]]:
        """`principal`'s adapters (an admin's: all), by kind and name."""
        return self.store.list_adapters(kind, owner=principal.owner_filter)

    def delete_adapter(self, kind: str, name: str, *, principal: Principal = LOCAL_ADMIN) -> None:
        """Delete the adapter and its files unless another adapter shares them."""
        adapter = self.get_adapter(kind, name, principal=principal)
        self.store.delete_adapter(adapter["id"])
        paths = [adapter["path"], (adapter["metadata"] or {}).get("embedding_path")]
        in_use = {a["path"] for a in self.store.list_adapters()}
        in_use |= {(a["metadata"] or {}).get("embedding_path") for a in self.store.list_adapters()}
        for path in paths:
            if path and path not in in_use:
                self.files.delete(path)

    def _store_lora(self, data: bytes, family: str | None) -> tuple[str, str | None]:
        from studio.engine_models import safetensors_header

        if len(data) > self.settings.max_lora_mb * 2**20:
            raise TooLarge(f"The LoRA is over {self.settings.max_lora_mb} MB (STUDIO_MAX_LORA_MB).", field="file")
        try:
            header = safetensors_header(data, label="The LoRA file")
        except ValueError as exc:
            raise InvalidInput(f"{exc}: upload a .safetensors LoRA (pickle files are refused).", field="file") from None
        keys = [k for k in header if k != "__metadata__"]
        if not any("lora" in k.lower() for k in keys):
            raise InvalidInput(
                "The file holds no LoRA weights (no 'lora' keys): is it a full checkpoint?", field="file"
            )
        broken = _nonfinite_tensors(data, header)
        if broken:
            raise InvalidInput(
                f"The LoRA holds NaN or infinite weights ({', '.join(broken[:3])}"
                f"{f' and {len(broken) - 3} more' if len(broken) > 3 else ''}): it would draw black "
                "images; re-export it from a training run that did not diverge.",
                field="file",
            )
        inferred = lora_family(header)
        if family is not None and inferred is not None and family != inferred:
            raise InvalidInput(f"The LoRA's shapes say {inferred}, not {family}.", field="family")
        if (family or inferred) not in (None, *RUNNABLE_FAMILIES):
            raise InvalidInput(f"family '{family}' is not one of {', '.join(RUNNABLE_FAMILIES)}.", field="family")
        return self.files.put(data, "weights", ".safetensors"), family or inferred

    def _face_embedding(self, image) -> dict[str, Any]:
        """The largest-scoring face's unit embedding, stored as .npy; InvalidInput when the
        image has no face."""
        analyzer = self.runtime.face_analyzer
        rgb = np.asarray(image)
        faces = analyzer.detect(rgb)
        if not faces:
            raise InvalidInput("No face was found in the image: use a clear photo of one face.", field="file")
        vector = analyzer.embed(rgb, max(faces, key=lambda f: f.score)).astype(np.float32)
        buffer = io.BytesIO()
        np.save(buffer, vector, allow_pickle=False)
        return {
            "embedding_path": self.files.put(buffer.getvalue(), "embeddings", ".npy"),
            "face_backend": analyzer.name,
            "embedding_dim": int(vector.size),
        }

    def adapter_thumbnail(self, kind: str, name: str, side: int = 192, *, principal: Principal = LOCAL_ADMIN):
        """A face, style or pose avatar's image at most `side` px a side; None for a LoRA."""
        adapter = self.get_adapter(kind, name, principal=principal)
        if kind == "lora":
            return None
        return thumbnail(self.photos.decode_image(self.files.read(adapter["path"]), kind), side)

    def adapter_token(self, adapter: Mapping[str, Any]) -> str:
        """The prompt token that uses a saved adapter at its default weight, in Block Entropy's
        form, e.g. `<be-style:cartoon1:0.5>`."""
        return make_token(f"be-{adapter['kind']}", adapter["name"], adapter["weight"])

    def prompt_tokens(self, *, principal: Principal = LOCAL_ADMIN) -> list[dict[str, str]]:
        """The tokens a prompt can use now, for the token help beside a prompt box: each trained
        LoRA and FaceID tune (`<lora:12:1>`, `<faceid:7:1>`), then each saved avatar and LoRA at
        its default weight (`<be-style:cartoon1:0.5>`), of those `principal` may use. Each is
        {token, kind, label}."""
        tokens = [
            {"token": make_token(tune["model_type"], tune["id"]), "kind": tune["model_type"], "label": tune["title"]}
            for tune in self.store.list_tunes(limit=1000, owner=principal.owner_filter)
            if tune["model_type"] in ("lora", "faceid") and tune["status"] == SUCCESS
        ]
        tokens += [
            {"token": self.adapter_token(adapter), "kind": adapter["kind"], "label": adapter["name"]}
            for adapter in self.list_adapters(principal=principal)
        ]
        return tokens


# Float dtypes a LoRA may store, as numpy reads their bytes (bfloat16: the top half of a float32).
_FLOAT_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2"}


def _nonfinite_tensors(data: bytes, header: Mapping[str, Any]) -> list[str]:
    """The names of the tensors (of a checked safetensors header) holding a NaN or infinity."""
    body = 8 + int.from_bytes(data[:8], "little")
    broken = []
    for key, info in header.items():
        dtype = _FLOAT_DTYPES.get(info.get("dtype")) if key != "__metadata__" else None
        if dtype is None:
            continue
        start, end = info["data_offsets"]
        values = np.frombuffer(data, dtype=dtype, count=(end - start) // np.dtype(dtype).itemsize, offset=body + start)
        if info["dtype"] == "BF16":
            values = (values.astype(np.uint32) << 16).view(np.float32)
        if not np.isfinite(values).all():
            broken.append(key)
    return broken
