"""`Store`: the studio's database, one object with every table group's verbs.

Each group in storage/records/ is a mixin over `storage.database.Records` (the connection, lock
and query helpers); `Store` only combines them. Safe to share between threads.
"""

from __future__ import annotations

from storage.records.adapters import Adapters
from storage.records.checkpoints import Checkpoints
from storage.records.jobs import Jobs
from storage.records.keys import ApiKeys
from storage.records.likes import Likes
from storage.records.packs import Packs
from storage.records.paths import Paths
from storage.records.photos import Photos
from storage.records.prompts import Prompts
from storage.records.purge import Purges
from storage.records.tunes import Tunes


class Store(Purges, Tunes, Photos, Prompts, Likes, Packs, Checkpoints, Paths, Jobs, Adapters, ApiKeys):
    """Domain verbs over the studio's tables. `Store(path)` opens (creating and migrating) the
    database file, `Store()` an in-memory one; `close()` when done."""
