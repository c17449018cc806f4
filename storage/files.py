"""FileStore: content-addressed blobs under one root.

Every file is named by the sha256 of its bytes (`<area>/<2 hex>/<sha256><suffix>`), written to a
temporary file in the same folder and renamed into place, so a crash never leaves a half-written
file under a real name and two writers of the same bytes agree. User-supplied names are never
used as paths. Areas separate what may be served over HTTP (generated images, pack covers,
checkpoint samples) from what must not be (photos, weights, embeddings).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

AREAS = ("photos", "crops", "weights", "embeddings", "outputs", "covers", "samples")
PUBLIC_AREAS = ("outputs", "covers", "samples")
_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".safetensors", ".json", ".npy"}


class FileStore:
    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()
        for area in AREAS:
            (self.root / area).mkdir(parents=True, exist_ok=True)

    def public_dirs(self) -> list[Path]:
        """Folders whose files may be served to browsers and API clients."""
        return [self.root / area for area in PUBLIC_AREAS]

    def put(self, data: bytes, area: str, suffix: str) -> str:
        """Store `data` and return its path relative to the root. Idempotent for equal bytes."""
        if area not in AREAS:
            raise ValueError(f"unknown file area {area!r}")
        if suffix not in _SUFFIXES:
            raise ValueError(f"suffix {suffix!r} is not one the store keeps")
        digest = hashlib.sha256(data).hexdigest()
        relative = f"{area}/{digest[:2]}/{digest}{suffix}"
        target = self.root / relative
        if target.exists():
            return relative
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return relative

    def put_file(self, source: Path | str, area: str, suffix: str | None = None) -> str:
        """Store the bytes of a file written elsewhere (e.g. by a training run)."""
        source = Path(source)
        return self.put(source.read_bytes(), area, suffix or source.suffix)

    def path(self, relative: str) -> Path:
        """Absolute path of a stored file; refuses anything that would leave the root."""
        full = (self.root / relative).resolve()
        if not full.is_relative_to(self.root):
            raise ValueError(f"{relative!r} is outside the file store")
        return full

    def read(self, relative: str) -> bytes:
        return self.path(relative).read_bytes()

    def delete(self, relative: str) -> None:
        self.path(relative).unlink(missing_ok=True)

    def scratch_dir(self) -> Path:
        """A fresh private folder for work in progress (training runs); caller removes it."""
        base = self.root / "tmp"
        base.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(dir=base))
