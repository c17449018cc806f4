"""A trained tune's active checkpoint: the step whose weights prompts load and whose kohya copy
is downloaded. A tune follows its best step by likeness (`use_best_step`, the default) once its
samples are scored; its owner may pick another step, and go back to the best one."""

from __future__ import annotations

import shutil
from typing import Any

from storage import FileStore, Store
from studio import likeness
from studio.training import KOHYA_NAME, export_kohya


def activate_checkpoint(store: Store, files: FileStore, tune: dict[str, Any], step: int) -> None:
    """Make the checkpoint of `tune` at `step` (it exists) the one prompts load, with its kohya
    copy exported for download; the previous kohya copy goes when nothing else uses it."""
    checkpoint = store.get_checkpoint(tune["id"], step)
    scratch = files.scratch_dir()
    try:
        kohya = export_kohya(files.path(checkpoint["weights_path"]), scratch / KOHYA_NAME, family=tune["family"])
        kohya_path = files.put_file(kohya, "weights")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    store.update_tune(tune["id"], weights_path=checkpoint["weights_path"], kohya_path=kohya_path, active_step=step)
    for path in store.unreferenced([tune["kohya_path"]] if tune["kohya_path"] else []):
        files.delete(path)


def follow_best_step(store: Store, files: FileStore, tune: dict[str, Any]) -> int | None:
    """Activate the best checkpoint by likeness of a tune that follows it (`use_best_step`, the
    default) when that is not the active one already; returns the best step (None when no
    sample was scored with a face, and the active step stays)."""
    best = likeness.best_step(store.tune_checkpoints(tune["id"]))
    if best is not None and tune.get("use_best_step", 1) and best != tune["active_step"]:
        activate_checkpoint(store, files, tune, best)
    return best
