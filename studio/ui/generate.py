"""Generate tab: a prompt box with clickable token help, negative prompt, model or tune,
parameters, Generate and Stop, live progress, and the results with the seed and settings of
each image, a like button, "re-run with this seed" and download.

The controls follow the chosen model's family (studio/families.py): the negative prompt shows
only where guidance is classifier-free (not on FLUX.1's distilled guidance), the scheduler
list holds the family's schedulers only, and the guidance field says what it sets.

Generation runs on the studio's job queue (one GPU queue shared with training), never in the
event itself: Generate stores the prompt and then follows it in the database, so the page stays
responsive, and after a reload the prompt this browser followed last is picked up again with its
progress. The Generate event is public as `/generate` for gradio_client: it returns when the
images are made.
"""

from __future__ import annotations

import html
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gradio as gr

from studio.core import Studio
from studio.detailer import passes_ran
from studio.domain import CANCELED, FAILED, FINISHED, QUEUING, RUNNABLE_FAMILIES, SUCCESS, TRAINING
from studio.errors import InvalidInput, NotFound, StudioError
from studio.families import ASPECT_RATIOS, FAMILIES, SIZE_TIERS, Family
from studio.likeness import describe
from studio.look import COLOR_GRADINGS
from studio.prompts import MAX_BEST_OF, MAX_IMAGES, REFERENCE_ROLES, PromptRequest
from studio.ui.board import describe_params, viewer
from studio.ui.common import Context, card_css, guard, on_show, read_uploads

POLL_SECONDS = 0.5
DEFAULT = "default"

# Inserts a token at the caret of the prompt box; the 'input' event makes Gradio take the value.
INSERT_JS = """
element.addEventListener('click', (event) => {
  const chip = event.target.closest('button.insert-token');
  if (!chip) return;
  const box = document.querySelector('#gen-prompt textarea');
  if (!box) return;
  const start = box.selectionStart ?? box.value.length;
  const end = box.selectionEnd ?? box.value.length;
  const before = box.value.slice(0, start);
  const text = (before && !/\\s$/.test(before) ? ' ' : '') + chip.dataset.token + ' ';
  box.value = before + text + box.value.slice(end);
  box.selectionStart = box.selectionEnd = before.length + text.length;
  box.dispatchEvent(new Event('input', {bubbles: true}));
  box.focus();
});
"""

TOKENS_CSS = """
.tokens { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
.tokens button { font-family: var(--font-mono); font-size: 12px; padding: 2px 8px; cursor: pointer;
        border-radius: var(--radius-md); border: 1px solid var(--border-color-primary);
        background: var(--button-secondary-background-fill); color: var(--button-secondary-text-color); }
.tokens .hint, .grammar { font-size: 12px; color: var(--body-text-color-subdued); }
.grammar code { font-size: 12px; }
"""

GRAMMAR = (
    "<details class='grammar'><summary>Token grammar</summary>"
    "<code>&lt;lora:ID:W&gt;</code> a trained LoRA tune or <code>&lt;lora:NAME:W&gt;</code> an uploaded LoRA "
    "(several stack) · <code>&lt;faceid:ID:W&gt;</code> a FaceID tune · "
    "<code>&lt;be-face:NAME:W&gt;</code> <code>&lt;be-style:NAME:W&gt;</code> <code>&lt;be-pose:NAME:W&gt;</code> "
    "saved avatars (one of each per prompt). W is the weight, 1 when left out. A prompt on a tune uses "
    "that tune even without its token. Several people: <code>a scene BREAK &lt;faceid:1:1&gt; woman BREAK "
    "&lt;lora:2:1&gt; man</code>, one part per person from left to right; face detailing gives each "
    "face its person's tune.</details>"
)


def build(studio: Studio, ctx: Context) -> None:
    initial = _controls(studio, _default_model(studio))
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=300):
            # Custom values: API clients may name a tune made after the page was built.
            model = gr.Dropdown(
                _model_choices(studio),
                value=_default_model(studio),
                label="Model or tune",
                allow_custom_value=True,
                elem_id="gen-model",
            )
            prompt = gr.Textbox(
                label="Prompt",
                lines=3,
                placeholder="portrait of ohwx woman, studio light <faceid:7:1>",
                elem_id="gen-prompt",
            )
            tokens = gr.HTML(_token_help(studio), css_template=TOKENS_CSS, js_on_load=INSERT_JS, elem_id="gen-tokens")
            negative = gr.Textbox(
                label="Negative prompt", placeholder="blurry, deformed", elem_id="gen-negative", **initial["negative"]
            )
            family_note = gr.Markdown(initial["note"], elem_id="gen-family")
            num_images = gr.Slider(1, MAX_IMAGES, value=2, step=1, label="Images", elem_id="gen-num-images")
            # best_of: each image is drawn up to this many times; the most alike face is kept
            best_of = gr.Slider(
                1,
                MAX_BEST_OF,
                value=1,
                step=1,
                label="Retry until it looks like them: tries per image (the most alike is kept)",
                info="Each try costs one more generation; tunes of people only.",
                elem_id="gen-best-of",
            )
            with gr.Accordion("Parameters", open=False, elem_id="gen-parameters"):
                gr.Markdown("0 means the model's default; seed -1 picks a random seed.", elem_classes="hint")
                with gr.Row():
                    steps = gr.Number(0, label="Steps", precision=0, minimum=0, min_width=110)
                    cfg_scale = gr.Number(0, minimum=0, min_width=110, elem_id="gen-cfg", **initial["cfg"])
                    scheduler = gr.Dropdown(
                        value=DEFAULT, label="Scheduler", min_width=140, elem_id="gen-scheduler", **initial["scheduler"]
                    )
                with gr.Row():
                    width = gr.Number(0, label="Width", precision=0, minimum=0, step=8, min_width=110)
                    height = gr.Number(0, label="Height", precision=0, minimum=0, step=8, min_width=110)
                    seed = gr.Number(-1, label="Seed", precision=0, minimum=-1, min_width=110)
                with gr.Row():
                    face_correct = gr.Checkbox(label="Face correct")
                    super_resolution = gr.Checkbox(label="Super resolution")
                    face_swap = gr.Checkbox(label="Face swap")
                with gr.Row():
                    aspect_ratio = gr.Dropdown(
                        [DEFAULT, *ASPECT_RATIOS],
                        value=DEFAULT,
                        label="Aspect ratio",
                        elem_id="gen-aspect-ratio",
                        info="The model's native size for this shape; Width/Height above win.",
                    )
                    resolution = gr.Dropdown(
                        [DEFAULT, *SIZE_TIERS],
                        value=DEFAULT,
                        label="Resolution",
                        elem_id="gen-resolution",
                        info="1K is the model's native size; 2K makes the long side 2048 px where the model allows.",
                    )
                    lora_scale = gr.Number(
                        1.0,
                        label="LoRA scale",
                        minimum=-2,
                        maximum=2,
                        step=0.05,
                        min_width=110,
                        info="Strength of the tune's own LoRA when the prompt does not name it.",
                    )
                with gr.Row():
                    color_grading = gr.Dropdown(
                        ["none", *COLOR_GRADINGS],
                        value="none",
                        label="Color grading",
                        elem_id="gen-color-grading",
                        info="A film look (tone curves and saturation) applied to the finished image.",
                    )
                    film_grain = gr.Checkbox(
                        label="Film grain",
                        elem_id="gen-film-grain",
                        info="Adds seeded grain: the same seed gives the same grain.",
                    )
                    use_lpw = gr.Checkbox(
                        True,
                        label="Prompt weights",
                        elem_id="gen-use-lpw",
                        info="Reads (word:1.3), [word], BREAK and long prompts (SD 1.5, SDXL).",
                    )
                input_image = gr.Image(
                    type="filepath",
                    sources=["upload", "clipboard"],
                    label="Input image (img2img start, or ControlNet pose/edges)",
                    height=180,
                    elem_id="gen-input-image",
                )
                with gr.Row():
                    strength = gr.Slider(0, 1, value=0.8, step=0.05, label="Denoising strength")
                    controlnet = gr.Dropdown(["none", "pose", "canny"], value="none", label="ControlNet")
                with gr.Accordion("Reference images (FLUX.2 [klein])", open=False, elem_id="gen-references"):
                    gr.Markdown(
                        "Optional, one per role; the model is told what each is for (see the image's "
                        "parameters). A reference tune's <faceid:ID:w> adds its face crops.",
                        elem_classes="hint",
                    )
                    with gr.Row():
                        role_slots = [
                            gr.Image(
                                type="filepath",
                                sources=["upload", "clipboard"],
                                label=role.capitalize(),
                                height=120,
                                min_width=100,
                                elem_id=f"gen-ref-{role}",
                            )
                            for role in REFERENCE_ROLES
                        ]
                passes = _pass_controls()
            with gr.Row():
                run = gr.Button("Generate", variant="primary", elem_id="gen-run")
                stop = gr.Button("Stop", variant="stop", elem_id="gen-stop")
        with gr.Column(scale=6, min_width=300):
            progress = gr.HTML(_progress_html(None), css_template=card_css(), elem_id="gen-progress")
            gallery = gr.Gallery(
                label="Results",
                columns=3,
                height="auto",
                object_fit="contain",
                buttons=["download", "fullscreen"],
                interactive=False,
                elem_id="gen-gallery",
            )
            details = gr.Markdown(PICK_HINT, elem_id="gen-details")
            with gr.Row():
                like = gr.Button("♥ Like", size="sm", elem_id="gen-like")
                rerun = gr.Button("Re-run with this seed", size="sm", elem_id="gen-rerun")
    followed = gr.State(None)  # the prompt shown: its id
    selected = gr.State(None)  # the image clicked in the results: its index
    shown = gr.State(None)  # what the results show now, so polls re-render only on change
    timer = gr.Timer(1.0, active=False)

    def nothing() -> dict:
        """The results when no prompt is followed (none made yet, or it was deleted), not polled."""
        empty = {followed: None, selected: None, shown: None, gallery: [], details: PICK_HINT}
        return {**empty, progress: _progress_html(None), timer: gr.Timer(active=False)}

    def view(state: dict[str, Any], last: Any) -> dict:
        """The status line of a prompt's state, and its images and details unless the results
        show these images already (`last`, their signature), so a clicked image stays selected."""
        update = {shown: _signature(state), progress: _progress_html(state)}
        same_prompt = last is not None and last[0] == state["id"]
        if not (same_prompt and (last[1] in FINISHED) == (state["status"] in FINISHED)):
            update |= {gallery: _images(studio, state), details: PICK_HINT}
        return update

    def follow(prompt_id: int):
        """Yield the results whenever the prompt's state changes, until it finished."""
        state = studio.prompt_progress(prompt_id)
        while True:
            yield {followed: prompt_id, selected: None, **view(state, None)}
            if state["status"] in FINISHED:
                return
            snapshot = _signature(state)
            while _signature(state) == snapshot:
                time.sleep(POLL_SECONDS)
                state = studio.prompt_progress(prompt_id)

    @guard
    def generate(
        tune_id: int | str | None,
        text: str,
        negative_prompt: str | None = None,
        num_images: float = 2,
        steps: float | None = 0,
        cfg_scale: float | None = 0,
        scheduler: str = DEFAULT,
        w: float | None = 0,
        h: float | None = 0,
        seed: float | None = -1,
        face_correct: bool = False,
        super_resolution: bool = False,
        face_swap: bool = False,
        input_image: str | None = None,
        denoising_strength: float = 0.8,
        controlnet: str = "none",
        face_reference: str | None = None,
        outfit_reference: str | None = None,
        background_reference: str | None = None,
        pose_reference: str | None = None,
        style_reference: str | None = None,
        aspect_ratio: str = DEFAULT,
        resolution: str = DEFAULT,
        lora_scale: float | None = 1.0,
        color_grading: str = "none",
        film_grain: bool = False,
        use_lpw: bool = True,
        inpaint_faces: str = "auto",
        inpaint_faces_strength: float = 0.4,
        inpaint_faces_which: str | None = None,
        hires_fix: bool = False,
        hires_scale: float = 2.0,
        hires_denoising_strength: float = 0.5,
        hires_steps: float | None = 0,
        mask_image: str | None = None,
        best_of: float = 1,
    ):
        """Generate images for a prompt on a tune or base model (`tune_id`) and return once they
        are made: (progress HTML, images with "#n · seed s" captions, details). Steps, CFG
        scale, w and h left at 0 take the model's defaults; a negative seed picks one. The
        fields are the REST API's; tokens such as <faceid:7:1> go in `text`."""
        # The one place the form becomes a request; the parameter names are the public API's.
        slots = (face_reference, outfit_reference, background_reference, pose_reference, style_reference)
        if not (text or "").strip():
            raise InvalidInput("Write a prompt first (tokens from the list below it are optional).", field="text")
        request = PromptRequest(
            text=text.strip(),
            negative_prompt=(negative_prompt or "").strip(),
            num_images=int(num_images),
            seed=None if seed is None or seed < 0 else int(seed),
            steps=_number(steps, int),
            cfg_scale=_number(cfg_scale, float),
            w=_number(w, int),
            h=_number(h, int),
            scheduler=None if scheduler in (None, DEFAULT) else scheduler,
            input_image=_input_bytes(input_image),
            denoising_strength=float(denoising_strength),
            controlnet=None if controlnet in (None, "none") else controlnet,
            face_correct=bool(face_correct),
            super_resolution=bool(super_resolution),
            face_swap=bool(face_swap),
            references=tuple((role, _input_bytes(path)) for role, path in zip(REFERENCE_ROLES, slots) if path),
            aspect_ratio=None if aspect_ratio in (None, DEFAULT) else aspect_ratio,
            resolution=None if resolution in (None, DEFAULT) else resolution,
            lora_scale=None if lora_scale is None or lora_scale == 1 else float(lora_scale),
            color_grading=None if color_grading in (None, "none") else color_grading,
            film_grain=bool(film_grain),
            use_lpw=bool(use_lpw),
            inpaint_faces={"on": True, "off": False}.get(inpaint_faces),
            inpaint_faces_strength=float(inpaint_faces_strength),
            inpaint_faces_which=(inpaint_faces_which or "").strip() or None,
            hires_fix=bool(hires_fix),
            hires_scale=float(hires_scale),
            hires_denoising_strength=float(hires_denoising_strength),
            hires_steps=_number(hires_steps, int),
            mask_image=_input_bytes(mask_image),
            best_of=int(best_of or 1),
        )
        yield from follow(studio.create_prompt(_tune_id(tune_id), request)["id"])

    @guard
    def on_input_image(path: str | None):
        """An input image just uploaded: Gradio's cached original (EXIF, GPS and all) is read
        and deleted now, and the form holds a copy re-encoded from its pixels instead, which
        Generate reads as often as it is clicked."""
        if not path:
            return None
        [(_, data)] = read_uploads(path)
        try:
            image = studio.decode_image(data, "input_image")
        except StudioError as error:
            # The original is gone already: the form must not keep pointing at it.
            gr.Warning(html.escape(error.message, quote=False))
            return None
        return _clean_input(image)

    @guard
    def on_rerun(prompt_id: int | None, index: int | None):
        if prompt_id is None or index is None:
            raise InvalidInput("Click one of the results first, then re-run it.", field="image_idx")
        yield from follow(studio.rerun_prompt(prompt_id, index)["id"])

    @guard
    def on_stop(prompt_id: int | None) -> str:
        if prompt_id is None:
            raise InvalidInput("Nothing is being generated.", field="prompt_id")
        state = studio.prompt_progress(prompt_id)
        if state["status"] in FINISHED:  # a late click, not a mistake: no error toast
            gr.Info(f"Prompt #{prompt_id} has finished: there is nothing to stop.")
            return _progress_html(state)
        return _progress_html(studio.prompt_progress(studio.cancel_prompt(prompt_id)["id"]))

    @guard
    def on_select(prompt_id: int | None, browser_id: dict | None, request: gr.Request, event: gr.SelectData):
        return {selected: event.index, details: _details(studio, prompt_id, event.index, viewer(browser_id, request))}

    @guard
    def on_like(prompt_id: int | None, index: int | None, browser_id: dict | None, request: gr.Request):
        if prompt_id is None or index is None:
            raise InvalidInput("Click one of the results first, then like it.", field="image_idx")
        user = ctx.like_user(browser_id, request)
        liked = studio.prompt_images(prompt_id, user)[index]["liked"]
        (studio.unlike_prompt if liked else studio.like_prompt)(prompt_id, user, index)
        return _details(studio, prompt_id, index, user)

    def on_tick(prompt_id: int | None, last: Any):
        """The followed prompt's progress when it changed; an empty view once it was deleted
        elsewhere (the Gallery tab, the API). Also runs each time the tab is shown."""
        if prompt_id is None:  # nothing followed yet (the page load shows the newest prompt)
            return gr.skip()
        try:
            state = studio.prompt_progress(prompt_id)
        except NotFound:
            return nothing()
        running = gr.Timer(active=state["status"] not in FINISHED)
        if _signature(state) == last:
            return {timer: running}
        return {**view(state, last), timer: running}

    def on_load(last: dict | None):
        """After a (re)load: show the prompt this browser last followed (or, in a new browser,
        the newest one), following it while it runs."""
        prompt_id = last.get("id") if isinstance(last, dict) else None
        try:
            state = studio.prompt_progress(prompt_id) if prompt_id else None
        except NotFound:  # deleted since
            state = None
        if state is None:
            newest = studio.list_prompts(limit=1)
            if not newest:
                return nothing()
            state = studio.prompt_progress(newest[0]["id"])
        return {
            followed: state["id"],
            selected: None,
            **view(state, None),
            timer: gr.Timer(active=state["status"] not in FINISHED),
        }

    def refresh(current: int | None):
        choices = _model_choices(studio)
        value = current if current in {c[1] for c in choices} else _default_model(studio)
        return {model: gr.Dropdown(choices=choices, value=value), tokens: _token_help(studio)}

    def on_model(tune_id: int | str | None, current_scheduler: str | None):
        """Show the controls that apply to the chosen model's family; a value typed into a
        control it hides is cleared, so it is not sent."""
        wanted = _controls(studio, tune_id)
        keep = current_scheduler in wanted["scheduler"]["choices"]
        return {
            negative: gr.Textbox(**wanted["negative"], **({} if wanted["negative"]["visible"] else {"value": ""})),
            cfg_scale: gr.Number(**wanted["cfg"]),
            scheduler: gr.Dropdown(**wanted["scheduler"], value=current_scheduler if keep else DEFAULT),
            family_note: wanted["note"],
        }

    form = [
        model,
        prompt,
        negative,
        num_images,
        steps,
        cfg_scale,
        scheduler,
        width,
        height,
        seed,
        face_correct,
        super_resolution,
        face_swap,
        input_image,
        strength,
        controlnet,
        *role_slots,
        aspect_ratio,
        resolution,
        lora_scale,
        color_grading,
        film_grain,
        use_lpw,
        *passes,
        best_of,
    ]
    results = [followed, selected, shown, progress, gallery, details]
    # The work itself waits on the job queue; these events only watch the database, so they
    # need no concurrency limit of their own.
    # Progress and error marks go on the status line only: Gradio's red "Error" badge would
    # otherwise cover the results of the previous prompt.
    run.click(
        generate,
        form,
        results,
        api_name="generate",
        concurrency_limit=None,
        show_progress="minimal",
        show_progress_on=progress,
    )
    prompt.submit(generate, form, results, api_visibility="private", concurrency_limit=None, show_progress_on=progress)
    rerun.click(
        on_rerun,
        [followed, selected],
        results,
        api_visibility="private",
        concurrency_limit=None,
        show_progress_on=progress,
    )
    input_image.upload(on_input_image, input_image, input_image, api_visibility="private", show_progress="hidden")
    for slot in [*role_slots, passes[-1]]:  # each role's upload and the mask are cleaned like the input image
        slot.upload(on_input_image, slot, slot, api_visibility="private", show_progress="hidden")
    stop.click(on_stop, followed, progress, api_visibility="private")
    model.change(on_model, [model, scheduler], [negative, cfg_scale, scheduler, family_note], api_visibility="private")
    gallery.select(on_select, [followed, ctx.browser_id], [selected, details], api_visibility="private")
    like.click(on_like, [followed, selected, ctx.browser_id], details, api_visibility="private")
    timer.tick(on_tick, [followed, shown], [*results, timer], api_visibility="private")
    on_show(ctx, refresh, model, [model, tokens])
    on_show(ctx, on_tick, [followed, shown], [*results, timer])
    # Remembered in the browser, so a reload (or a second tab of this browser) goes back to it.
    followed.change(
        lambda prompt_id: {"id": prompt_id} if prompt_id else gr.skip(),
        followed,
        ctx.last_prompt,
        api_visibility="private",
    )
    ctx.blocks.load(
        on_load,
        ctx.last_prompt,
        [followed, selected, shown, progress, gallery, details, timer],
        api_visibility="private",
        show_progress="hidden",
    )


def _pass_controls() -> list:
    """The second passes' controls (face detailing, hires fix, the inpainting mask), in the
    order `generate` takes them."""
    with gr.Accordion("Face detailing · hires fix · inpainting mask", open=False, elem_id="gen-passes"):
        with gr.Row():
            inpaint_faces = gr.Dropdown(
                ["auto", "on", "off"],
                value="auto",
                label="Face detailing",
                info="Re-draw each face at the model's size with its person's tune; auto: small faces of a subject.",
                elem_id="gen-inpaint-faces",
            )
            strength = gr.Slider(
                0.05, 1, value=0.4, step=0.05, label="Face strength", info="How much of each face is re-drawn."
            )
            which = gr.Textbox(
                label="Faces", placeholder="all", info="Positions from the left, e.g. 1,3; empty: every face."
            )
        with gr.Row():
            hires_fix = gr.Checkbox(
                label="Hires fix", info="Make at width×height, upscale, then denoise again at the larger size."
            )
            hires_scale = gr.Slider(1.25, 4, value=2, step=0.25, label="Hires upscale", info="Factor of the size.")
            hires_strength = gr.Slider(
                0.05,
                1,
                value=0.5,
                step=0.05,
                label="Hires denoising strength",
                info="How much the second pass changes.",
            )
            hires_steps = gr.Number(0, label="Hires steps", precision=0, minimum=0, info="0: the prompt's steps.")
        mask = gr.Image(
            type="filepath",
            sources=["upload", "clipboard"],
            label="Inpainting mask (white = repaint; the input image's size)",
            height=140,
            elem_id="gen-mask",
        )
    return [inpaint_faces, strength, which, hires_fix, hires_scale, hires_strength, hires_steps, mask]


PICK_HINT = "Click an image to see its seed and settings, like it or re-run it."


def _tune_id(value: int | str | None) -> int:
    """The model dropdown's value (an id; API clients may send it as text)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidInput("Pick a model or tune to generate with (its id).", field="tune_id") from None


# The name of the input image's clean copy in Gradio's upload folder (see `_clean_input`).
CLEAN_INPUT = "studio-input.png"


def _clean_input(image) -> str:
    """`image` (a decoded upload: pixels only) saved as PNG in a folder of its own in Gradio's
    upload folder, where the form may hold it; the hourly cache sweep removes it."""
    import uuid

    from gradio.utils import get_upload_folder

    folder = Path(get_upload_folder()) / f"studio-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    path = folder / CLEAN_INPUT
    image.info = {}  # Pillow would write a comment, EXIF or ICC profile kept there back out
    image.save(path, format="PNG")
    return str(path)


def _input_bytes(path: str | None) -> bytes | None:
    """The input image's bytes. An upload the form did not clean first (an API client's) is
    deleted once read, as every tab does with originals."""
    if not path:
        return None
    if Path(path).name == CLEAN_INPUT:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:  # swept from Gradio's cache after a long while
            raise InvalidInput("The input image has expired: upload it again.", field="input_image") from None
    [(_, data)] = read_uploads(path)
    return data


def _number(value: float | None, kind: type) -> Any:
    """A number field's value, None when it is empty or 0 (the model's default)."""
    return None if value is None or value == 0 else kind(value)


def _signature(state: dict[str, Any]) -> tuple:
    return state["id"], state["status"], round(state["progress"] or 0, 2), state["step"], state["ahead"]


def _images(studio: Studio, state: dict[str, Any]) -> list[tuple[str, str]]:
    """A prompt's images for the results gallery, captioned "#n · seed s" and their likeness."""
    return [
        (str(studio.public_path(path)), " · ".join(filter(None, [f"#{index + 1} · seed {seed}", describe(record)])))
        for index, (path, seed, record) in enumerate(zip(state["images"], state["seeds"], state["likeness"]))
    ]


def _progress_html(state: dict[str, Any] | None) -> str:
    """The status line of the prompt shown: waiting (and behind how many jobs), the step it is
    at with the time left and a bar, or how it ended (images, warnings, or the message)."""
    if state is None:
        return "<p class='empty'>Write a prompt and press Generate. Every result is kept in the Gallery tab.</p>"
    status, pid = state["status"], int(state["id"])
    badge = f"<span class='badge {status}'>{status}</span> <b>Prompt #{pid}</b>"
    if status == QUEUING and not state["queued"]:
        line = "waiting for its tune to finish training"
    elif status == QUEUING:
        line = f"waiting: {state['ahead']} job(s) ahead" if state["ahead"] else "next in the queue"
    elif status == TRAINING:
        line = f"step {state['step']}/{state['total']}" if state["total"] else "starting"
        left = _seconds_left(state.get("eta"))
        line += f" · about {left} s left" if left is not None else ""
    elif status == SUCCESS:
        line = describe_params(state)
    else:
        line = state.get("message") or status.lower()
    parts = [
        f"<div class='title'><span>{badge}</span><span class='detail'>{html.escape(line, quote=False)}</span></div>"
    ]
    if status not in FINISHED:
        percent = round(100 * float(state["progress"] or 0))
        parts.append(
            f"<div class='bar' role='progressbar' aria-valuenow='{percent}'><div style='width:{percent}%'></div></div>"
        )
    parts += [f"<div class='detail'>⚠ {html.escape(str(w))}</div>" for w in state.get("warnings") or []]
    return f"<div class='card' data-status='{status}'>{''.join(parts)}</div>"


def _seconds_left(eta: str | None) -> int | None:
    if not eta:
        return None
    try:
        moment = datetime.fromisoformat(eta.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0, round((moment - datetime.now(UTC)).total_seconds()))


def _details(studio: Studio, prompt_id: int | None, index: int | None, user: str | None) -> Any:
    """The clicked image's seed, likes, likeness and the prompt's settings (Markdown)."""
    if prompt_id is None or index is None:
        return PICK_HINT
    prompt = studio.get_prompt(prompt_id)
    images = studio.prompt_images(prompt_id, user)
    if not 0 <= index < len(images):
        return PICK_HINT
    image = images[index]
    mine = " (you like it)" if image["liked"] else ""
    # Likeness: the face's cosine similarity to the tune's reference face (1 = identical).
    looks = f"**{describe(image['likeness'])}**\n\n" if image["likeness"] else ""
    return (
        f"**Image {index + 1} of prompt #{prompt_id}** · seed `{image['seed']}` · "
        f"{image['width']}×{image['height']} · ♥ {image['likes']}{mine}\n\n{looks}{_passes(studio, image['path'])}"
        f"{describe_params(prompt)}\n\n> {_markdown_text(prompt['text'])}"
    )


def _passes(studio: Studio, path: str) -> str:
    """The second passes that ran on an image, read from its PNG's parameters (Markdown)."""
    from PIL import Image

    with Image.open(studio.public_path(path)) as png:
        ran = passes_ran(png.info.get("parameters") or "")
    if not ran:
        return ""
    return "Passes: " + " · ".join(_markdown_text(line) for line in ran) + "\n\n"


def _markdown_text(text: str) -> str:
    """Prompt text shown as plain text inside Markdown (tokens like <lora:1:1> included)."""
    return html.escape(text, quote=False).replace("*", "\\*").replace("_", "\\_").replace("\n", " ")


def _model_choices(studio: Studio) -> list[tuple[str, int]]:
    """Tunes that can make images (newest first), then the base models of the gallery, each
    with its family."""
    tunes = [
        (
            f"{t['title']} · {t['model_type']} {t['name'] or ''} "
            f"(#{t['id']}, {_family_label(t.get('family'))}, {t['status'].lower()})",
            t["id"],
        )
        for t in studio.list_tunes(limit=200)
        if t["status"] not in (FAILED, CANCELED)
    ]
    models = [
        (
            f"{m['title']} · {m['family_label']} base model" + ("" if m["available"] else " (downloads on first use)"),
            m["id"],
        )
        for m in studio.base_models()
        if m["family"] in RUNNABLE_FAMILIES
    ]
    return tunes + models


def _family_label(family: str | None) -> str:
    return FAMILIES[family].label if family in FAMILIES else (family or "unknown family")


def _model_family(studio: Studio, tune_id: int | str | None) -> tuple[Family, str]:
    """The family a prompt on `tune_id` runs on, and its guidance kind (a gallery entry may
    set its own: FLUX.1 [schnell] has none). SD 1.5 when the id names nothing (yet)."""
    try:
        tune = studio.get_tune(int(tune_id))
    except (TypeError, ValueError, NotFound):
        return FAMILIES["sd15"], FAMILIES["sd15"].guidance
    facts = FAMILIES.get(tune.get("family") or "", FAMILIES["sd15"])
    guidance = facts.guidance
    if tune["model_type"] == "checkpoint":
        guidance = studio.base_model(tune["id"]).get("guidance") or guidance
    return facts, guidance


def _controls(studio: Studio, tune_id: int | str | None) -> dict[str, Any]:
    """Keyword arguments for the controls that depend on the model's family: the negative
    prompt (shown for classifier-free guidance only), the guidance field's label (hidden when
    the model takes none) and the family's schedulers, plus a one-line note."""
    facts, guidance = _model_family(studio, tune_id)
    cfg_label = {"cfg": "CFG scale", "distilled": "Guidance (distilled)", "none": "Guidance"}[guidance]
    note = {
        "cfg": "",
        "distilled": f"*{facts.label}: distilled guidance, one pass per step; no negative prompt.*",
        "none": f"*{facts.label}, step-distilled: no guidance and no negative prompt.*",
    }[guidance]
    return {
        "negative": {"visible": guidance == "cfg"},
        "cfg": {"label": cfg_label, "visible": guidance != "none"},
        "scheduler": {"choices": [DEFAULT, *facts.schedulers]},
        "note": note,
    }


def _default_model(studio: Studio) -> int | None:
    return studio.default_base_model()["id"]


def _token_help(studio: Studio) -> str:
    tokens = studio.prompt_tokens()
    if not tokens:
        chips = (
            "<span class='hint'>No tokens yet: make a tune in the Tunes tab or save an avatar in Avatars &amp; "
            "LoRAs, and its token shows here.</span>"
        )
    else:
        chips = "<span class='hint'>Insert a token:</span>" + "".join(
            f"<button class='insert-token' data-token='{html.escape(t['token'], quote=True)}' "
            f"title='{html.escape(t['label'], quote=True)} ({t['kind']})'>{html.escape(t['token'])}</button>"
            for t in tokens
        )
    return f"<div class='tokens'>{chips}</div>{GRAMMAR}"
