"""ZeroGPU: Hugging Face Spaces' shared GPUs, lent only while a `spaces.GPU` function runs.

On a ZeroGPU Space (SPACES_ZERO_GPU set and the `spaces` package installed) each generation runs
through `spaces.GPU(duration=...)`; anywhere else `gpu_generate` hands back the engine's own
`generate`, so nothing changes. The duration asked of the visitor's GPU quota grows with the work:

    duration = LOAD_SECONDS[family] + ceil(steps × images × SECONDS_PER_STEP[family] × pixels / native pixels)

clamped to [MIN_DURATION, MAX_DURATION] seconds, where pixels is width × height and native
pixels the family's native size squared (512² for SD 1.5, 1024² for SDXL and Flux). LOAD_SECONDS
covers moving the model onto the GPU, the VAE decode and post-processing: FLUX.1 [dev] is about
24 GB in bf16 (transformer and T5), so it takes longer than SD. The per-step figures are
estimates for one image at the native size on ZeroGPU's class of GPU (an H200 slice), about
twice the expected time as a margin (a call that runs past its duration is killed): SD with
classifier-free guidance, FLUX.1 one pass per step (distilled guidance), FLUX.2 [klein] 4B two
passes (true CFG) of a smaller transformer. They are not measured yet — bench/gpu.py measures
it/s on a GPU box. ZeroGPU bills the time a call really took, so the margin costs visitors only
queue priority.

ZeroGPU runs the function in a forked worker process and pickles its arguments and result, so
the function is module-level and reaches the engine through a module global set before the first
call (the fork inherits it; the pipeline is never pickled), and the progress and cancel callables
(closures over the database) stay behind: on ZeroGPU a prompt's progress jumps from 0 to done,
and a cancel takes effect when the call returns. LoRA training needs far more time than
one call may hold the GPU, so the studio refuses it there (`TRAINING_REFUSED`).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from typing import Any

from studio.errors import Canceled
from studio.families import FAMILIES

LOAD_SECONDS = {"sd15": 20, "sdxl": 20, "flux1": 45, "flux2": 30}
SECONDS_PER_STEP = {"sd15": 0.12, "sdxl": 0.35, "flux1": 0.9, "flux2": 0.6}
NATIVE_SIDE = {name: facts.native_size for name, facts in FAMILIES.items()}
MIN_DURATION, MAX_DURATION = 20, 300

TRAINING_REFUSED = (
    "LoRA training is off on this ZeroGPU Space: ZeroGPU lends a GPU for a few minutes per call, "
    "too short to train. Make a FaceID tune (model_type=faceid, no training), or run the studio on "
    "a machine with its own GPU to train LoRAs."
)

# The engine the GPU function runs on. A module global on purpose: the forked worker inherits it,
# whereas an argument would be pickled (the whole pipeline) on every call.
_ENGINE: Any = None


def available() -> bool:
    """True when the `spaces` package (ZeroGPU's client) is installed."""
    return importlib.util.find_spec("spaces") is not None


def active(zero_gpu: bool) -> bool:
    """True when generations must go through `spaces.GPU`: the Space says it runs on ZeroGPU
    (`Settings.zero_gpu`, from SPACES_ZERO_GPU) and the package is there."""
    return zero_gpu and available()


def generate_duration(steps: int, num_images: int, *, family: str = "sd15", width: int = 0, height: int = 0) -> int:
    """Seconds of GPU to ask for one generation of `num_images` images of width × height
    (0: the family's native size) in `steps` denoising steps (the formula in the module
    docstring), between MIN_DURATION and MAX_DURATION."""
    side = NATIVE_SIDE.get(family, 512)
    pixels = (width or side) * (height or side) / (side * side)
    work = max(steps, 1) * max(num_images, 1) * SECONDS_PER_STEP.get(family, SECONDS_PER_STEP["sdxl"]) * pixels
    load = LOAD_SECONDS.get(family, LOAD_SECONDS["sdxl"])
    return min(MAX_DURATION, max(MIN_DURATION, load + math.ceil(work)))


def request_duration(request: Any, *_args: Any, **_kwargs: Any) -> int:
    """`generate_duration` of an engine `GenerateRequest` (ZeroGPU calls this with the GPU
    function's own arguments)."""
    return generate_duration(
        request.num_inference_steps,
        request.num_images,
        family=request.family,
        width=request.width,
        height=request.height,
    )


def gpu_generate(engine: Any, *, enabled: bool) -> Callable[..., list]:
    """A callable with `engine.generate`'s signature (request, on_step=None, should_stop=None).
    Not `enabled`: `engine.generate` itself. Enabled: the request runs in `spaces.GPU` with
    `request_duration`; progress is reported once, at the end, and a stop asked before the
    call raises Canceled."""
    if not enabled:
        return engine.generate
    import spaces  # only on a ZeroGPU Space; it patches torch's CUDA handling when imported

    global _ENGINE
    _ENGINE = engine
    run = spaces.GPU(duration=request_duration)(_generate_on_gpu)

    def generate(request, on_step=None, should_stop=None) -> list:
        if should_stop is not None and should_stop():
            raise Canceled("Canceled before it started.")
        results = run(request)
        if on_step is not None:
            on_step(request.num_inference_steps, request.num_inference_steps)
        return results

    return generate


def _generate_on_gpu(request: Any) -> list:
    return _ENGINE.generate(request)
