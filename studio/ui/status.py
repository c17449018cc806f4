"""Settings & status tab: what the studio runs on, where its data lives, API keys and a curl
example for the REST API."""

from __future__ import annotations

import gradio as gr

from studio.core import Studio
from studio.errors import InvalidInput
from studio.ui.common import guard, on_show


def build(studio: Studio, ctx) -> None:
    status_text = gr.Markdown(_describe(studio), elem_id="status-text")
    models = gr.Dataframe(
        headers=["id", "title", "family", "source", "available"],
        value=_gallery_rows(studio),
        interactive=False,
        label="Base models (gallery)",
        elem_id="status-models",
    )
    refresh = gr.Button("Refresh", size="sm")
    refresh.click(
        lambda: {status_text: _describe(studio), models: _gallery_rows(studio)},
        None,
        [status_text, models],
        api_visibility="private",
    )

    gr.Markdown("### API keys")
    gr.Markdown(
        "Keys let programs use the REST API (Astria's paths and fields). A new key is shown once; "
        "only its hash is kept."
    )
    # Filled per person when the page loads: the page itself is the same for every visitor.
    who = gr.Markdown("", elem_id="api-keys-access")
    with gr.Row():
        owner = gr.Textbox(label="Owner", placeholder="e.g. my-app", scale=3)
        create = gr.Button("Create key", scale=1)
    new_key = gr.Textbox(label="New key (copy it now)", interactive=False, buttons=["copy"], elem_id="new-api-key")
    keys = gr.Dataframe(
        headers=["id", "owner", "created", "last used"], value=[], interactive=False, elem_id="api-keys"
    )
    with gr.Row():
        revoke_id = gr.Number(label="Key id to revoke", precision=0, scale=3)
        revoke = gr.Button("Revoke", variant="stop", scale=1)
    gr.Markdown(_curl_example(studio), elem_id="curl-example")

    @guard
    def on_create(name: str):
        key = studio.create_api_key(name or "")
        return {new_key: key, keys: _key_rows(studio)}

    @guard
    def on_revoke(key_id: float | None):
        known = {k["id"] for k in studio.list_api_keys()}  # refuses anyone but an admin first
        if not key_id:
            raise InvalidInput("Enter the id of the key to revoke (the first column of the keys).", field="key_id")
        if int(key_id) not in known:
            raise InvalidInput(f"There is no key {int(key_id)}: pick an id from the keys above.", field="key_id")
        studio.revoke_api_key(int(key_id))
        gr.Info(f"Revoked key {int(key_id)}: programs using it are refused from now on.")
        return _key_rows(studio)

    # Error marks on the keys table only: a badge over the new key would hide it, and it is
    # shown once.
    create.click(on_create, owner, [new_key, keys], api_visibility="private", show_progress_on=keys)
    revoke.click(on_revoke, revoke_id, keys, api_visibility="private")

    # Keys made in another browser, and models downloaded since, show when the tab is opened.
    @guard
    def on_open():
        admin = studio.principal().is_admin
        return {
            status_text: _describe(studio),
            models: _gallery_rows(studio),
            keys: _key_rows(studio) if admin else [],
            who: "" if admin else KEYS_NEED_ADMIN,
        }

    on_show(ctx, on_open, None, [status_text, models, keys, who])


KEYS_NEED_ADMIN = (
    "**Key management needs an admin.** Keys act for whoever holds them, so only a login named in "
    "`STUDIO_ADMINS` can make, see or revoke them."
)


def _describe(studio: Studio) -> str:
    s = studio.status()
    lines = [
        f"- **Base model:** {s['base_model']}{' (embedded demo)' if s['demo_model'] else ''}",
        f"- **Device:** {s['device']}",
        f"- **Data folder:** `{s['home']}`",
        f"- **API keys from STUDIO_API_KEYS:** {s['api_keys']}",
        f"- **Login required:** {'yes' if s['auth'] else 'no'}",
    ]
    lines += [f"- **{k.replace('_', ' ').capitalize()}:** {v}" for k, v in s.items() if k not in _SHOWN]
    return "\n".join(lines)


_SHOWN = {"base_model", "demo_model", "device", "home", "api_keys", "auth"}


def _gallery_rows(studio: Studio) -> list[list]:
    return [
        [m["id"], m["title"], m["family_label"], m["source"], "yes" if m["available"] else "no"]
        for m in studio.base_models()
    ]


def _key_rows(studio: Studio) -> list[list]:
    return [
        [k["id"], k["owner"].removeprefix("key:"), k["created_at"], k["last_used_at"] or ""]
        for k in studio.list_api_keys()
    ]


def _curl_example(studio: Studio) -> str:
    base = studio.settings.public_url or f"http://{studio.settings.host}:{studio.settings.port}"
    return (
        "**API base URL:** `" + base + "`\n\n```bash\n"
        "export API_KEY=sk_...   # a key created above\n"
        f'curl -H "Authorization: Bearer $API_KEY" {base}/gallery/tunes\n'
        f'curl -X POST -H "Authorization: Bearer $API_KEY" {base}/tunes \\\n'
        "  -F 'tune[title]=Jane Doe 1234' -F 'tune[name]=woman' -F 'tune[model_type]=faceid' \\\n"
        "  -F 'tune[images][]=@1.jpg' -F 'tune[images][]=@2.jpg'\n```"
    )
