"""Errors a person can act on. Each carries the HTTP status the REST API answers with and,
where one input is at fault, the name of that field. Anything else is a bug and propagates."""


class StudioError(Exception):
    """A problem the user can fix; the message says how."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(StudioError):
    """A request field is wrong (HTTP 422)."""

    status = 422


class NotFound(StudioError):
    """The id or name does not exist (HTTP 404)."""

    status = 404


class AdminsOnly(StudioError):
    """Only an admin (STUDIO_ADMINS) may do this: manage keys, change shared packs (HTTP 403).
    What is someone else's is NotFound instead, so it cannot be probed."""

    status = 403


class Conflict(StudioError):
    """The request clashes with the current state, e.g. deleting a tune while it trains (409)."""

    status = 409


class TooLarge(StudioError):
    """An upload is over a configured limit (HTTP 413)."""

    status = 413


class Busy(StudioError):
    """The job queue is full; try again later (HTTP 429)."""

    status = 429


class Unavailable(StudioError):
    """A model or plug-in is not installed or cannot be reached (HTTP 503)."""

    status = 503


class Canceled(StudioError):
    """The work was stopped on request before it finished (HTTP 409: nothing to retry)."""

    status = 409


class OutOfMemory(Unavailable):
    """The device ran out of memory; the message says what to lower (HTTP 503)."""


class ModelNotAvailable(Unavailable):
    """The request names a base model this machine cannot run (a family the studio does not
    run, or not downloaded while the hub is off). The request has to change, not the server's
    state, so the API answers 422 as for any other bad field."""

    status = 422


# Invisible marks that reorder the text around them: in a title they turn a label shown beside
# it back to front (and can make one name pass for another).
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def refuse_bidi(value: str, field: str) -> str:
    """`value` unchanged, or InvalidInput naming `field` when it holds a text-direction control
    character (U+200E/F, U+202A-U+202E, U+2066-U+2069, U+061C)."""
    found = sorted({f"U+{ord(c):04X}" for c in value if c in _BIDI_CONTROLS})
    if found:
        raise InvalidInput(
            f"{field} contains invisible text-direction characters ({', '.join(found)}): type it again without them.",
            field=field,
        )
    return value
