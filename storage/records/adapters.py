"""Adapters: uploaded LoRAs and the face, style and pose avatars prompt tokens name, one per
owner, kind and name."""

from __future__ import annotations

from storage.database import Records, now


class Adapters(Records):
    def add_adapter(self, adapter: dict) -> int:
        """Insert an adapter; `adapter` holds column values (`metadata` as a dict). Returns its id."""
        return self._insert("adapters", {"created_at": now(), **adapter})

    def get_adapter(self, kind: str, name: str, owner: str | None = None) -> dict | None:
        """The adapter of this kind and name: `owner`'s, or (None) the first made by anyone."""
        if owner is not None:
            return self._one("SELECT * FROM adapters WHERE kind = ? AND name = ? AND owner = ?", [kind, name, owner])
        return self._one("SELECT * FROM adapters WHERE kind = ? AND name = ? ORDER BY id LIMIT 1", [kind, name])

    def list_adapters(self, kind: str | None = None, *, owner: str | None = None) -> list[dict]:
        """Adapters by kind and name; only one kind's and/or only `owner`'s when given."""
        return self._rows("adapters", ("kind = ?", kind), ("owner = ?", owner), order_by="kind, name")

    def delete_adapter(self, adapter_id: int) -> None:
        self._delete("adapters", adapter_id)
