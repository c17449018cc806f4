"""Who acts: the principal a request or a UI event acts for, and what it may see.

Every tune, photo, prompt (and so its images and likes) belongs to the principal that made it.
Others are told it does not exist (404, never 403: a probe learns nothing), in lists too.
Admins see and change everything. The base-model gallery and the starter packs are shared.

Owner names: `key:<owner>` (an API key made in the Settings tab), `key:<hash12>` (a key of
STUDIO_API_KEYS), `login:<username>` (a STUDIO_AUTH login), `local` (keyless loopback use; an
admin), `browser:<id>` (an anonymous visitor of a STUDIO_PUBLIC_DEMO studio: the id is the one
the browser keeps, so this separates visitors for convenience, it does not secure anything).
Rows made before owners existed belong to `local`, which only admins see.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: The owner of keyless loopback use, and of every row made before owners existed.
LOCAL = "local"


@dataclass(frozen=True)
class Principal:
    owner: str
    is_admin: bool = False

    def sees(self, owner: str | None) -> bool:
        """True when this principal may read and change a row owned by `owner`."""
        return self.is_admin or owner == self.owner

    @property
    def owner_filter(self) -> str | None:
        """The owner a store listing keeps to, or None (an admin: everything)."""
        return None if self.is_admin else self.owner


#: The all-seeing default of the facade's verbs: tests, scripts, the job worker, keyless loopback.
LOCAL_ADMIN = Principal(LOCAL, is_admin=True)


def principal_for(owner: str, admins: Iterable[str]) -> Principal:
    """The principal of `owner` (a `kind:name` owner name or 'local'): an admin when it is
    'local' or its name (or the whole owner name) is in `admins` (STUDIO_ADMINS)."""
    if owner == LOCAL:
        return LOCAL_ADMIN
    admins = set(admins)
    _, _, name = owner.partition(":")
    return Principal(owner, is_admin=owner in admins or (bool(name) and name in admins))
