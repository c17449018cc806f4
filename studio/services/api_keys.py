"""API keys: those of STUDIO_API_KEYS and those made in the Settings tab (kept only as hashes),
and who a request acts for."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from storage import Store
from studio.config import Settings
from studio.errors import AdminsOnly, InvalidInput, refuse_bidi
from studio.principals import LOCAL_ADMIN, Principal


def _admin(principal: Principal) -> None:
    """Keys act for whoever holds them: only an admin may make, see or revoke them."""
    if not principal.is_admin:
        raise AdminsOnly("Only an admin manages API keys: log in with a name listed in STUDIO_ADMINS.")


def key_hash(key: str) -> str:
    """How API keys are kept at rest: sha256 hex of the key."""
    return hashlib.sha256(key.encode()).hexdigest()


def env_key_user(key: str) -> str:
    """The user a STUDIO_API_KEYS key acts as (likes are per user), without the key itself."""
    return f"key:{key_hash(key)[:12]}"


class ApiKeys:
    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store

    def create_api_key(self, owner: str, *, principal: Principal = LOCAL_ADMIN) -> str:
        """Make a new API key for `owner` and return it; only its hash is kept, so this is the
        one time it can be shown. Admins only (AdminsOnly)."""
        _admin(principal)
        owner = owner.strip()
        if not owner or len(owner) > 64:
            raise InvalidInput("Give the key an owner name of 1 to 64 characters.", field="owner")
        refuse_bidi(owner, "owner")
        key = "sk_" + secrets.token_urlsafe(32)
        self.store.add_api_key(f"key:{owner}", key_hash(key))
        return key

    def list_api_keys(self, *, principal: Principal = LOCAL_ADMIN) -> list[dict[str, Any]]:
        _admin(principal)
        return self.store.list_api_keys()

    def revoke_api_key(self, key_id: int, *, principal: Principal = LOCAL_ADMIN) -> None:
        _admin(principal)
        self.store.delete_api_key(key_id)

    def api_key_user(self, key: str) -> str | None:
        """The user `key` acts for, or None when it is no key of this studio."""
        for env_key in self.settings.api_keys:
            if hmac.compare_digest(env_key, key):
                return env_key_user(key)
        return self.store.api_key_owner(key_hash(key))

    def keyless_allowed(self) -> bool:
        """True when requests need no key: no key exists at all and the server listens on
        loopback alone (the caller still checks the request came from loopback: a share tunnel
        or a Space's proxy forwards the public's requests from a loopback address)."""
        return not self.settings.api_keys and self.settings.is_loopback and not self.store.has_api_keys()
