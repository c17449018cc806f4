"""Persistence: the database (`Store`) and the content-addressed file store (`FileStore`).
The only code that touches SQLite or decides where files live."""

from storage.files import FileStore
from storage.store import Store

__all__ = ["FileStore", "Store"]
