"""What a tune leaves in the database, read straight from the file with plain SQL (not through
`Store`), so the delete-everything tests see what a person inspecting the file would."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def tune_rows(db_path: Path, tune_id: int, prompt_ids: list[int], photo_ids: list[int]) -> dict[str, int]:
    """Rows per table that belong to the tune, its prompts or its photos; tables with none are
    left out, so a fully deleted tune gives {}."""
    prompts = ", ".join(str(int(i)) for i in prompt_ids) or "NULL"
    photos = ", ".join(str(int(i)) for i in photo_ids) or "NULL"
    queries = {
        "tunes": f"SELECT COUNT(*) FROM tunes WHERE id = {tune_id}",
        "tune_photos": f"SELECT COUNT(*) FROM tune_photos WHERE tune_id = {tune_id}",
        "photos": f"SELECT COUNT(*) FROM photos WHERE id IN ({photos})",
        "checkpoints": f"SELECT COUNT(*) FROM checkpoints WHERE tune_id = {tune_id}",
        "prompts": f"SELECT COUNT(*) FROM prompts WHERE tune_id = {tune_id} OR id IN ({prompts})",
        "images": f"SELECT COUNT(*) FROM images WHERE prompt_id IN ({prompts})",
        "likes": f"SELECT COUNT(*) FROM likes WHERE prompt_id IN ({prompts})",
        "jobs": f"SELECT COUNT(*) FROM jobs WHERE (kind = 'train' AND subject_id = {tune_id}) "
        f"OR (kind = 'generate' AND subject_id IN ({prompts}))",
    }
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        counts = {table: connection.execute(sql).fetchone()[0] for table, sql in queries.items()}
    finally:
        connection.close()
    return {table: count for table, count in counts.items() if count}


def owned_ids(store, tune_id: int) -> tuple[list[int], list[int]]:
    """(prompt ids, photo ids) of a tune, read before it is deleted."""
    prompts = [p["id"] for p in store.list_prompts(tune_id=tune_id, limit=-1)]
    photos = [p["id"] for p in store.tune_photos(tune_id)]
    return prompts, photos


def stored_files(studio) -> set[str]:
    """Every file in the studio's file store, relative to it (scratch folders of running jobs
    left out)."""
    root = studio.files.root
    files = (p.relative_to(root) for p in root.rglob("*") if p.is_file())
    return {str(p) for p in files if p.parts[0] != "tmp"}
