"""Persistence: the database (`Store`) and the content-addressed file store (`FileStore`).
The only code that touches SQLite or decides where files live."""

from storage.db import Store
from storage.files import FileStore

__all__ = ["FileStore", "Store"]
