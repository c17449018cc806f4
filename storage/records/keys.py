"""API keys, stored as hashes, never as the key: a leaked database gives no working key."""

from __future__ import annotations

from storage.database import Records, now


class ApiKeys(Records):
    def add_api_key(self, owner: str, key_hash: str) -> int:
        return self._insert("api_keys", {"owner": owner, "key_hash": key_hash, "created_at": now()})

    def api_key_owner(self, key_hash: str) -> str | None:
        """The owner of the key with this hash, recording its use; None when unknown."""
        with self._lock, self.db.atomic():
            row = self.db.execute(
                "UPDATE api_keys SET last_used_at = ? WHERE key_hash = ? RETURNING owner", [now(), key_hash]
            ).fetchone()
        return row[0] if row else None

    def has_api_keys(self) -> bool:
        return bool(self._scalar("SELECT EXISTS (SELECT 1 FROM api_keys)"))

    def list_api_keys(self) -> list[dict]:
        """Every key's id, owner and times, oldest first (never the hash)."""
        return self._query("SELECT id, owner, created_at, last_used_at FROM api_keys ORDER BY id")

    def delete_api_key(self, key_id: int) -> None:
        self._delete("api_keys", key_id)
