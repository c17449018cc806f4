"""The heavy resources the studio builds lazily and shares: the engine, the face analyzers, the
inspection pool and the ZeroGPU wrapping of generation.

One `Runtime` per studio, made in `Studio.__init__` (or passed in, so a test can give every
studio of a module one warm engine). With `remote` set (studio/ray_runner.py's `RayWorkers`,
when STUDIO_RAY_ADDRESS is), generation and training run there instead of on this process's
engine. Nothing here loads at construction: torch, diffusers and
the face backends load on first use, each behind a lock, so concurrent Gradio handlers and the
job worker share one of each.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from studio import zerogpu
from studio.config import Settings
from studio.errors import Unavailable
from studio.faces import open_analyzer, resolve_backend

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings, *, engine: Any = None, face_analyzer: Any = None):
        """`engine` and `face_analyzer` are built on first use unless given (tests, benchmarks)."""
        self.settings = settings
        self._engine = engine
        self._face_analyzer = face_analyzer
        self._lock = threading.Lock()
        self._captioner: Any = None
        self._analyzers: dict[str, Any] = {}  # other backends that made tune references
        self._pool = None  # worker processes for inspecting sets
        # On a ZeroGPU Space generations run through spaces.GPU (studio/zerogpu.py).
        self.zero_gpu = zerogpu.active(settings.zero_gpu)
        self._generate = None  # the engine's generate, wrapped for ZeroGPU when it is on
        self.remote = None  # where the heavy calls go instead (RayWorkers), None: here

    @property
    def engine(self):
        """The studio's one `Engine`, made on first use (it loads no model until a request),
        with the memory options STUDIO_CPU_OFFLOAD and STUDIO_QUANTIZE ask for."""
        with self._lock:
            if self._engine is None:
                from studio.engine import Engine

                postprocess = self.settings.home.resolve() / "models" / "postprocess"
                self._engine = Engine(
                    self.settings.device,
                    postprocess_dir=postprocess,
                    face_backend=self.settings.face_backend,
                    **self.memory_settings(),
                )
            return self._engine

    def memory_settings(self) -> dict[str, Any]:
        """The Engine's memory options the settings turn on (`cpu_offload`, `quantize`); those
        left off are not passed, so the Engine's own defaults stand."""
        options: dict[str, Any] = {}
        if self.settings.cpu_offload:
            options["cpu_offload"] = True
        if self.settings.quantize:
            options["quantize"] = self.settings.quantize
        return options

    def memory_description(self) -> str:
        """What the Settings tab says about the memory options: what the engine reports as
        active once it was made (`Engine.memory_options()`), else what the settings ask for."""
        engine = self._engine
        report = getattr(engine, "memory_options", None) if engine is not None else None
        if report is not None:  # an injected test engine may not report them
            active = {name: value for name, value in report().items() if value}
            if active:
                return "; ".join(f"{name.replace('_', ' ')}: {value}" for name, value in active.items())
        asked = []
        if self.settings.cpu_offload:
            asked.append("model CPU offload (STUDIO_CPU_OFFLOAD=1; on CUDA only)")
        if self.settings.quantize:
            asked.append(f"{self.settings.quantize} quantized base model (STUDIO_QUANTIZE={self.settings.quantize})")
        if not asked:
            return "none: the whole model on the device (STUDIO_CPU_OFFLOAD=0, STUDIO_QUANTIZE=none)"
        return "asked: " + "; ".join(asked) + " (they take effect when a model loads)"

    def unload_engine(self) -> None:
        """Free the engine's loaded model (before a training needs the memory); a no-op when no
        engine was made."""
        if self._engine is not None:
            self._engine.unload()

    def generate(self, request, **callbacks):
        """`Engine.generate`, through spaces.GPU on a ZeroGPU Space, or on a remote worker."""
        if self.remote is not None:
            return self.remote.generate(request, **callbacks)
        if self._generate is None:
            self._generate = zerogpu.gpu_generate(self.engine, enabled=self.zero_gpu)
        return self._generate(request, **callbacks)

    def train_lora(self, *args, **kwargs):
        """`studio.training.train_lora` (the same arguments), here or on a remote worker."""
        if self.remote is not None:
            return self.remote.train_lora(*args, **kwargs)
        from studio.training import train_lora

        return train_lora(*args, **kwargs)

    def runner_description(self) -> str:
        """Where jobs run, for the status tab."""
        if self.remote is not None:
            return self.remote.describe()
        return "in this process, one job at a time (STUDIO_RAY_ADDRESS unset)"

    @property
    def face_analyzer(self):
        """The studio's face analyzer (STUDIO_FACE_BACKEND), loaded on first use and shared by
        inspection, FaceID, face avatars and likeness. Raises Unavailable when the backend is
        missing."""
        with self._lock:
            if self._face_analyzer is None:
                self._face_analyzer = open_analyzer(self.settings.face_backend)
            return self._face_analyzer

    @property
    def captioner(self):
        """The captioning model of training photos (STUDIO_CAPTIONER, studio/captions.py), or
        None when none is configured. Tests set `_captioner` to one of their own."""
        with self._lock:
            if self._captioner is None and self.settings.captioner:
                from studio.captions import TransformersCaptioner

                self._captioner = TransformersCaptioner(self.settings.captioner)
            return self._captioner

    def analyzer_for(self, backend: str):
        """The analyzer of `backend` (the one that made a reference): the studio's own when it
        is that backend, else one loaded once and kept."""
        if backend == resolve_backend(self.settings.face_backend):
            return self.face_analyzer
        with self._lock:
            if backend not in self._analyzers:
                self._analyzers[backend] = open_analyzer(backend)
            return self._analyzers[backend]

    def inspection_pool(self, count: int):
        """Worker processes for inspecting `count` photos, or None to inspect them here: only
        the dlib backend gains from them (it holds the GIL; onnxruntime already uses every
        core), only with a second core, and only for sets big enough to repay starting them.
        Started on first use and kept until `close`."""
        from studio.inspection import InspectionPool

        workers = min(4, os.cpu_count() or 1)
        if count < 6 or workers < 2 or resolve_backend(self.settings.face_backend) != "dlib":
            return None
        with self._lock:
            if self._pool is None:
                self._pool = InspectionPool("dlib", workers)
            return self._pool

    def device_description(self) -> str:
        """The device and dtype generation and training run on, as STUDIO_DEVICE resolves here."""
        from studio.engine_models import pick_device

        try:
            device, dtype = pick_device(self.settings.device)
        except Unavailable as error:
            return f"{self.settings.device}, not available: {error}"
        chosen = "chosen automatically" if self.settings.device == "auto" else "STUDIO_DEVICE"
        return f"{device} ({str(dtype).removeprefix('torch.')}, {chosen})"

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self.remote is not None:
            self.remote.close()
