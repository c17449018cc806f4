"""Names every layer shares: the statuses of tunes, prompts and jobs, and the model families.

One definition each; the UI and the API import them from here (statuses are defined beside the
job state machine in `storage/status.py`, which may not import `studio`)."""

from storage.status import CANCELED, FAILED, FINISHED, QUEUING, RUNNING, SUCCESS, TRAINING

#: Model families by DESIGN.md §9's names.
SD15, SDXL, FLUX1, FLUX2 = "sd15", "sdxl", "flux1", "flux2"
#: Families the engine and training run today; a gallery entry of another family is listed
#: but cannot be used here.
RUNNABLE_FAMILIES = (SD15, SDXL, FLUX1, FLUX2)
#: What a saved adapter (avatar) is: prompt tokens name them (`<be-face:NAME>`, `<lora:NAME>`…).
ADAPTER_KINDS = ("face", "style", "pose", "lora")

__all__ = [
    "ADAPTER_KINDS",
    "CANCELED",
    "FLUX1",
    "FLUX2",
    "FAILED",
    "FINISHED",
    "QUEUING",
    "RUNNABLE_FAMILIES",
    "RUNNING",
    "SD15",
    "SDXL",
    "SUCCESS",
    "TRAINING",
]
