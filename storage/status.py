"""The statuses tunes, prompts and jobs share (Novita's names, DESIGN.md §2): the one
definition. `studio.domain` re-exports them for the layers that may not import storage."""

QUEUING, TRAINING, SUCCESS, FAILED, CANCELED = "QUEUING", "TRAINING", "SUCCESS", "FAILED", "CANCELED"
#: Where work stops: nothing moves out of these.
FINISHED = frozenset({SUCCESS, FAILED, CANCELED})
#: Waiting in the queue or running.
RUNNING = frozenset({QUEUING, TRAINING})
