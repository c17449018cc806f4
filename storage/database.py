"""The connection core every record group (storage/records/) builds on.

One SQLite file in WAL mode with a busy timeout and foreign keys on. Gradio runs handlers in
worker threads and the job worker has its own, so the one connection is opened with
`check_same_thread=False` and every statement runs under a re-entrant lock; `transaction()`
groups several statements atomically. Rows come back as plain dicts with JSON columns decoded.

The helpers here are the only SQL builders: verbs in the record modules are a few lines over
them, and `where()` is the one place a `WHERE` clause is assembled from optional filters.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from storage.migrations import migrations

#: Columns stored as JSON text; decoded on read, encoded on write, in every table that has them.
JSON_COLUMNS = frozenset(
    {"args", "characteristics", "inspection", "params", "warnings", "metadata", "likeness", "result"}
)

#: One filter of `where()`: SQL that always applies, `(sql with one ?, value)` that applies
#: unless the value is None, or None (nothing).
Condition = str | tuple[str, Any] | None


def now() -> str:
    """UTC timestamp as ISO 8601 with milliseconds and a Z, the form Astria's API returns; two of
    them compare as text in time order."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode(record: dict) -> dict:
    """`record` with its JSON columns dumped to text (None stays NULL)."""
    return {k: json.dumps(v) if k in JSON_COLUMNS and v is not None else v for k, v in record.items()}


def decode(row: dict) -> dict:
    """`row` (changed in place and returned) with its JSON columns parsed."""
    for key in JSON_COLUMNS.intersection(row):
        if isinstance(row[key], str):
            row[key] = json.loads(row[key])
    return row


def marks(values: Iterable[Any]) -> str:
    """The `?, ?, …` placeholders for `values` (an `IN (…)` list or a `VALUES (…)` row)."""
    return ", ".join("?" for _ in values)


def where(*conditions: Condition) -> tuple[str, list[Any]]:
    """`("WHERE a AND b …", parameters)` for the conditions that apply, or `("", [])` when none
    does. A string applies as it is; `(sql, value)` applies with `value` bound to its one `?`
    unless `value` is None, which is how a verb's optional filters (`tune_id=None`) drop out.
    Only for optional filters: a lookup whose value is required writes its SQL itself, so a
    None there matches nothing instead of everything."""
    clauses, params = [], []
    for condition in conditions:
        if isinstance(condition, tuple):
            sql, value = condition
            if value is None:
                continue
            params.append(value)
        elif condition is None:
            continue
        else:
            sql = condition
        clauses.append(sql)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


def insert_sql(table: str, record: dict) -> tuple[str, list[Any]]:
    """`INSERT INTO table (…) VALUES (…)` for `record` (JSON columns encoded) and its values,
    for verbs that add an `ON CONFLICT` or `RETURNING` tail."""
    record = encode(record)
    return f"INSERT INTO {table} ({', '.join(record)}) VALUES ({marks(record)})", list(record.values())


class Records:
    """The database connection and the query helpers the record groups share. `Store` is these
    plus every group's verbs; nothing outside storage/ calls the underscored helpers."""

    def __init__(self, path: Path | str | None = None):
        """Open (creating if needed) the database at `path`, or an in-memory one when None,
        and apply pending migrations."""
        if path is None:
            conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30, isolation_level=None)
        self.path = None if path is None else Path(path)
        self._lock = threading.RLock()
        self.db = Database(conn)
        self.db.execute("PRAGMA busy_timeout = 30000")
        self.db.execute("PRAGMA foreign_keys = ON")
        if path is not None:
            self.db.enable_wal()
            self.db.execute("PRAGMA synchronous = NORMAL")
        with self._lock:
            migrations.apply(self.db)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run several verbs atomically (nested calls join the outer transaction)."""
        with self._lock, self.db.atomic():
            yield

    @contextmanager
    def _write_transaction(self) -> Iterator[None]:
        """A transaction that takes the write lock before its first read (BEGIN IMMEDIATE, waiting
        under busy_timeout). A deferred transaction that reads and then writes fails at once with
        SQLITE_BUSY when another process wrote in between (WAL snapshot rule); the worker and
        the web process share the database, so read-then-write verbs use this."""
        with self._lock:
            if self.db.conn.in_transaction:
                yield
                return
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # -- reading -------------------------------------------------------------------------------

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[dict]:
        """Every row of `sql`, as decoded dicts."""
        with self._lock:
            cursor = self.db.execute(sql, list(params))
            names = [d[0] for d in cursor.description]
            return [decode(dict(zip(names, row))) for row in cursor.fetchall()]

    def _one(self, sql: str, params: Iterable[Any] = ()) -> dict | None:
        """The first row of `sql`, or None."""
        rows = self._query(sql, params)
        return rows[0] if rows else None

    def _scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        """The first column of the first row of `sql`, or None."""
        with self._lock:
            row = self.db.execute(sql, list(params)).fetchone()
        return row[0] if row else None

    def _get(self, table: str, row_id: int) -> dict | None:
        """The row of `table` with this id, or None."""
        return self._one(f"SELECT * FROM {table} WHERE id = ?", [row_id])

    def _rows(
        self, table: str, *conditions: Condition, order_by: str, limit: int | None = None, offset: int = 0
    ) -> list[dict]:
        """The rows of `table` that meet the `conditions` (see `where`), in `order_by` order,
        `limit` of them (-1 or None: all) from `offset`."""
        clause, params = where(*conditions)
        sql = f"SELECT * FROM {table} {clause} ORDER BY {order_by}"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params += [limit, offset]
        return self._query(sql, params)

    # -- writing -------------------------------------------------------------------------------

    def _insert(self, table: str, record: dict) -> int:
        """Insert `record` (column values, JSON columns as Python values); returns its id."""
        sql, values = insert_sql(table, record)
        with self._lock, self.db.atomic():
            return self.db.execute(sql, values).lastrowid

    def _update(self, table: str, row_id: int, fields: dict, *, touch: bool = True) -> None:
        """Set `fields` on the row with this id, and its `updated_at` unless `touch` is False
        (tables without that column)."""
        if touch:
            fields = {**fields, "updated_at": now()}
        fields = encode(fields)
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._lock, self.db.atomic():
            self.db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", [*fields.values(), row_id])

    def _delete(self, table: str, row_id: int) -> None:
        """Delete the row with this id (foreign keys and triggers do the rest)."""
        with self._lock, self.db.atomic():
            self.db.execute(f"DELETE FROM {table} WHERE id = ?", [row_id])
