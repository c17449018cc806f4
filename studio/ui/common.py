"""Helpers shared by the tabs."""

from __future__ import annotations

import functools
import html
import inspect
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr

from studio.errors import Busy, InvalidInput, StudioError
from studio.principals import LOCAL_ADMIN, Principal, principal_for
from studio.throttle import Throttle

F = TypeVar("F", bound=Callable)

log = logging.getLogger(__name__)


def guard(fn: F) -> F:
    """Show a StudioError as a Gradio error toast with its message; anything else propagates.
    Generator handlers stay generators (Gradio streams their yields), guarded while they run."""

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except StudioError as error:
                raise _toast(fn, error) from error

        return streaming  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StudioError as error:
            raise _toast(fn, error) from error

    return wrapper  # type: ignore[return-value]


def _toast(fn: Callable, error: StudioError) -> gr.Error:
    """The error toast for a StudioError: the person's mistake, not the studio's, so the
    terminal gets one log line instead of Gradio's traceback."""
    log.info("%s: %s", fn.__name__, error.message)
    # Toasts render HTML: escape, or a token like <lora:12:1> in the message vanishes.
    return gr.Error(html.escape(error.message, quote=False), print_exception=False)


def read_uploads(paths: Any) -> list[tuple[str, bytes]]:
    """(file name, bytes) of each file Gradio wrote for an upload (one path or a list), the
    files deleted once read: the studio keeps only what it re-encodes, and Gradio's copy of
    an original (GPS and all) must not outlive the request in its cache."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths or [])
    try:
        return [(Path(path).name, Path(path).read_bytes()) for path in paths]
    finally:
        forget_uploads(paths)


def forget_uploads(paths: Any) -> None:
    """Delete files Gradio wrote for an upload (one path or a list), with the folder each had
    to itself. Only files inside Gradio's upload folder are touched."""
    from gradio.utils import get_upload_folder

    cache = Path(get_upload_folder()).resolve()
    for path in [paths] if isinstance(paths, (str, Path)) else list(paths or []):
        path = Path(path).resolve()
        if not path.is_relative_to(cache) or path == cache:
            continue
        try:
            path.unlink(missing_ok=True)
            if path.parent != cache:
                path.parent.rmdir()  # only when empty: Gradio keeps each upload in its own folder
        except OSError as error:
            log.debug("upload %s not removed: %s", path.name, error)


# A browser's photo set before any upload: the photos the Photos tab accepted (ids), the class
# they were inspected for, and the characteristics as the person edited them.
EMPTY_PHOTO_SET: dict[str, Any] = {"ids": [], "name": "woman", "characteristics": {}}


@dataclass(frozen=True)
class Context:
    """Components every tab may use. `browser_id` is a per-browser id kept in localStorage,
    so likes survive a reload; use `user()` to turn it (or the login name) into the like user.
    `photo_set` (a BrowserState, see EMPTY_PHOTO_SET) is this browser's uploaded photo set: the
    Photos tab fills it and the Tunes tab trains on it, and it survives a reload. `last_prompt`
    (a BrowserState, {"id": prompt id}) is the prompt this browser last followed in the Generate
    tab, shown again after a reload. `blocks` is the app itself, for tabs that refresh on page
    load (`blocks.load`)."""

    browser_id: Any
    photo_set: Any = None
    last_prompt: Any = None
    blocks: Any = None
    likes: Throttle | None = None  # anonymous browsers' likes, per client address

    @staticmethod
    def ensure_browser_id(current: dict | None) -> dict:
        # A dict, not a bare string: Gradio does not write falsy values back to the browser.
        if isinstance(current, dict) and current.get("id"):
            return current
        return {"id": uuid.uuid4().hex}

    @staticmethod
    def user(browser_id: dict | None, request: gr.Request | None) -> str:
        """Who is acting: the login name when the UI has auth, else this browser's id."""
        if request is not None and getattr(request, "username", None):
            return f"user:{request.username}"
        if isinstance(browser_id, dict) and browser_id.get("id"):
            return f"browser:{browser_id['id']}"
        raise StudioError("Your browser id is not set yet; reload the page and try again.")

    def like_user(self, browser_id: dict | None, request: gr.Request | None) -> str:
        """`user()` for a like or unlike. A browser without a login makes up its own id, so one
        person could like again from every fresh browser: those likes are throttled per client
        address (STUDIO_LIKES_PER_MINUTE); Busy (429) says how long to wait."""
        user = self.user(browser_id, request)
        if self.likes is not None and user.startswith("browser:"):
            client = getattr(request, "client", None)
            wait = self.likes.take(getattr(client, "host", None) or "unknown")
            if wait:
                raise Busy(f"Too many likes from your address: wait {math.ceil(wait)} s and try again.")
        return user


#: The cookie that tells anonymous visitors of a STUDIO_PUBLIC_DEMO studio apart (app.py sets it).
VISITOR_COOKIE = "avatar_studio_visitor"


#: Who the page is built for: no row is owned by the empty name.
NOBODY = Principal("")


class NotLoggedIn(StudioError):
    status = 401


def event_principal(settings) -> Principal:
    """Who the Gradio event being handled acts for: the STUDIO_AUTH login (an admin when
    STUDIO_ADMINS names it); 'local' (an admin) on a studio that only listens on loopback; in
    STUDIO_PUBLIC_DEMO mode without logins, an anonymous visitor told apart by a per-browser
    cookie. The visitor id is a demo convenience, not security: anyone can send any cookie.
    (Gradio gives a handler its request, not the browser's storage, so the cookie plays the
    part of the BrowserState id here.) Outside an event (the page being built, whose values
    every visitor is sent) it is nobody: the shared gallery and starter packs, nothing private.
    Refuses an event without a login where one is needed."""
    from gradio.context import LocalContext

    request = LocalContext.request.get(None)
    if request is None:
        return NOBODY
    username = getattr(request, "username", None)
    if username:
        return principal_for(f"login:{username}", settings.admins)
    if settings.auth:
        raise NotLoggedIn("Log in first: this studio needs a login (STUDIO_AUTH).")
    if settings.is_loopback and not settings.public_demo:
        return LOCAL_ADMIN
    visitor = (getattr(request, "cookies", None) or {}).get(VISITOR_COOKIE, "")
    if 16 <= len(visitor) <= 64 and visitor.replace("-", "").replace("_", "").isalnum():
        return Principal(f"browser:{visitor}")
    raise NotLoggedIn("Your browser has no visitor id yet: allow cookies and reload the page.")


class ActingStudio:
    """The studio as the person behind the current Gradio event may use it: every facade verb
    that takes a `principal` gets theirs (`event_principal`), so the UI sees and changes only
    what the REST API would let the same person see and change. Tabs are given this instead of
    the Studio itself; everything else passes through."""

    def __init__(self, studio):
        self._studio = studio
        self._takes_principal: dict[str, bool] = {}

    def __getattr__(self, name: str):
        value = getattr(self._studio, name)
        if not callable(value) or not self._wants_principal(name, value):
            return value

        @functools.wraps(value)
        def acting(*args, **kwargs):
            if "principal" not in kwargs:
                try:
                    kwargs["principal"] = event_principal(self._studio.settings)
                except NotLoggedIn as error:  # a toast even where the handler is not guarded
                    raise _toast(value, error) from error
            return value(*args, **kwargs)

        return acting

    def _wants_principal(self, name: str, value: Callable) -> bool:
        if name not in self._takes_principal:
            try:
                self._takes_principal[name] = "principal" in inspect.signature(value).parameters
            except (TypeError, ValueError):
                self._takes_principal[name] = False
        return self._takes_principal[name]

    def principal(self) -> Principal:
        """The current event's principal (see `event_principal`)."""
        return event_principal(self._studio.settings)


def data_url(image, quality: int = 85) -> str:
    """A PIL image as an inline JPEG data URL, for HTML that shows private images (photos,
    avatars) without serving their files."""
    import base64
    import io

    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def card_css() -> str:
    """Scoped CSS (a gr.HTML `css_template`) for a grid of cards with an image, a title, a
    coloured badge, a token line, a progress bar and details. Only Gradio's theme variables are
    used, so it follows the light and dark themes; the grid wraps down to one column on phones."""
    return """
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(140px, 1fr)); gap: 10px; }
.cards.tokens { grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); }
.cards.wide { grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); }
.card { border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg);
        background: var(--background-fill-secondary); padding: 8px; color: var(--body-text-color);
        display: flex; flex-direction: column; gap: 4px; min-width: 0; }
.card img { width: 100%; aspect-ratio: 1; object-fit: cover; border-radius: var(--radius-md); }
.card .mark { width: 100%; aspect-ratio: 1; display: flex; align-items: center; justify-content: center;
        border-radius: var(--radius-md); background: var(--background-fill-primary); font-weight: 700;
        color: var(--body-text-color-subdued); }
.card .title { display: flex; gap: 6px; align-items: center; justify-content: space-between; flex-wrap: wrap;
        overflow-wrap: anywhere; }
.badge { font-size: 12px; padding: 1px 8px; border-radius: 999px; white-space: nowrap;
        background: var(--background-fill-primary); border: 1px solid var(--border-color-primary); }
.badge.ok, .badge.SUCCESS { background: #16a34a; color: #fff; border-color: #16a34a; }
.badge.warning, .badge.QUEUING { background: #d97706; color: #fff; border-color: #d97706; }
.badge.rejected, .badge.FAILED { background: #dc2626; color: #fff; border-color: #dc2626; }
.badge.TRAINING { background: #2563eb; color: #fff; border-color: #2563eb; }
.badge.CANCELED { background: #6b7280; color: #fff; border-color: #6b7280; }
.token { display: flex; gap: 6px; align-items: center; flex-wrap: wrap; justify-content: flex-end; }
.token code { flex: 1 1 100%; min-width: 0; overflow-wrap: anywhere; font-size: 12px; padding: 2px 4px;
        border-radius: var(--radius-sm); background: var(--background-fill-primary); }
.token button { font-size: 12px; padding: 2px 8px; border-radius: var(--radius-md); cursor: pointer;
        border: 1px solid var(--border-color-primary); background: var(--button-secondary-background-fill);
        color: var(--button-secondary-text-color); }
.detail { font-size: 12px; color: var(--body-text-color-subdued); overflow-wrap: anywhere; }
.detail ul { margin: 2px 0 0 16px; padding: 0; }
.bar { height: 8px; border-radius: 4px; background: var(--background-fill-primary); overflow: hidden;
        border: 1px solid var(--border-color-primary); }
.bar > div { height: 100%; background: var(--color-accent); }
.empty { color: var(--body-text-color-subdued); }
.badge.likeness.match { background: #16a34a; color: #fff; border-color: #16a34a; }
.badge.likeness.miss { background: #d97706; color: #fff; border-color: #d97706; }
.badge.copy { background: #7c3aed; color: #fff; border-color: #7c3aed; }
.badge.likeness.noface { color: var(--body-text-color-subdued); }
"""


def copy_threshold_of(record: dict[str, Any]) -> float:
    """The copy threshold of the backend that scored `record`, from its same-person threshold
    (a similarity; studio/likeness.py turns distances into both)."""
    from studio.likeness import copy_threshold

    return copy_threshold(math.sqrt(max(0.0, 2.0 * (1.0 - float(record["threshold"])))))


def likeness_badge(record: dict[str, Any] | None) -> str:
    """An image's likeness (a studio/likeness.py record) as a small HTML badge for the cards:
    the score with its verdict and the backend's same-person threshold ('likeness 0.970 · same
    person ≥ 0.916'), 'no face found', or '' for an image that was not scored. The tooltip says
    what the number is. Style it with `card_css()`."""
    if not record:
        return ""
    threshold = float(record.get("threshold") or 0)
    meaning = html.escape(
        f"Cosine similarity of the face to the tune's reference face ({record.get('backend')}): 1 is "
        f"identical, the same person scores {threshold:.3f} or more.",
        quote=True,
    )
    if record.get("score") is None:
        text = html.escape(record.get("message") or "no face found")
        return f"<span class='badge likeness noface' title='{meaning}' data-score=''>{text}</span>"
    score = float(record["score"])
    if record["same_person"]:
        kind, verdict = "match", f"same person ≥ {threshold:.3f}"
    else:
        kind, verdict = "miss", f"other person < {threshold:.3f}"
    badge = (
        f"<span class='badge likeness {kind}' title='{meaning}' data-score='{score:.4f}'>"
        f"likeness {score:.3f} · {verdict}</span>"
    )
    if record.get("copy_paste"):
        why = html.escape(
            f"The face is nearly identical to one of the tune's training photos or reference crops "
            f"(similarity {record['reference_similarity']:.3f}, a copy from "
            f"{copy_threshold_of(record):.3f}): the model pasted it rather than drew the person.",
            quote=True,
        )
        badge += f" <span class='badge copy' title='{why}'>too alike: a copy</span>"
    return badge


def on_show(ctx: Context, fn: Callable, inputs: Any, outputs: Any) -> None:
    """Run `fn` when the page loads and each time the tab being built is selected, so the tab
    shows what other tabs and API clients changed meanwhile. Call it inside a tab's `build`."""
    from gradio.context import get_render_context

    tab = get_render_context()
    while tab is not None and not isinstance(tab, gr.Tab):
        tab = tab.parent
    triggers = [ctx.blocks.load] + ([tab.select] if tab is not None else [])
    gr.on(triggers, fn, inputs, outputs, api_visibility="private", show_progress="hidden")


# Copy buttons (`<button class='copy-token' data-token=...>`) in a gr.HTML's `js_on_load`: one
# listener on the component, so it keeps working after the HTML re-renders. The textarea
# fallback covers pages served over plain http from another host (no clipboard API there).
COPY_JS = """
element.addEventListener('click', async (event) => {
  const button = event.target.closest('button.copy-token');
  if (!button) return;
  const text = button.dataset.token;
  try {
    await navigator.clipboard.writeText(text);
  } catch (error) {
    const area = document.createElement('textarea');
    area.value = text;
    document.body.appendChild(area);
    area.select();
    document.execCommand('copy');
    area.remove();
  }
  button.textContent = 'Copied';
  setTimeout(() => { button.textContent = 'Copy'; }, 1500);
});
"""


def chosen_id(value: Any, field: str, missing: str) -> int:
    """A dropdown's id value as an int. Dropdowns whose choices change per session accept any
    value (`allow_custom_value`), so an API client can name what it made since the page was
    built; the studio then checks the id. InvalidInput `missing` when it is no number."""
    if isinstance(value, bool):
        raise InvalidInput(missing, field=field)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidInput(missing, field=field) from None
