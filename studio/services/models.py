"""Base models: the gallery (assets/base_models.json, Astria's ids), which of them can run
here, the default one (STUDIO_BASE_MODEL, its family read from its files), the embedded demos
(SD 1.5, SDXL, FLUX.1, FLUX.2 [klein]) built offline at first start, and where each family's
adapters live."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from storage import Store
from studio.config import Settings
from studio.domain import FLUX1, FLUX2, RUNNABLE_FAMILIES, SD15, SDXL
from studio.errors import ModelNotAvailable, NotFound
from studio.families import FAMILIES, distillation_lora, family_of_files, hub_repo

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent.parent / "assets"
DEMO_SOURCE = "embedded:demo"
#: Every embedded demo by its gallery source: (family, folder under STUDIO_HOME/models).
EMBEDDED = {
    DEMO_SOURCE: (SD15, "demo"),
    "embedded:sdxl": (SDXL, "demo-sdxl"),
    "embedded:flux1": (FLUX1, "demo-flux1"),
    "embedded:flux2": (FLUX2, "demo-flux2"),
}
#: Per-model defaults a gallery entry may set over its family's (FLUX.1 [schnell] runs 4 steps
#: without guidance; the FLUX.2 [klein] base 50 steps at CFG 4, as diffusers documents).
MODEL_DEFAULTS = ("steps", "cfg_scale", "guidance", "note")
# IP-Adapters, image encoders and ControlNets for real models, per family (hub files).
HUB_ADAPTERS: dict[str, dict[str, Any]] = {
    "sd15": {
        "style": "hf://h94/IP-Adapter/models/ip-adapter_sd15.safetensors",
        "image_encoder": "hf://h94/IP-Adapter/models/image_encoder",
        "faceid": {"512": "hf://h94/IP-Adapter-FaceID/ip-adapter-faceid_sd15.bin"},
        "controlnet": {
            "pose": "hf://lllyasviel/control_v11p_sd15_openpose",
            "canny": "hf://lllyasviel/control_v11p_sd15_canny",
        },
    },
    "sdxl": {
        "style": "hf://h94/IP-Adapter/sdxl_models/ip-adapter_sdxl_vit-h.safetensors",
        "image_encoder": "hf://h94/IP-Adapter/models/image_encoder",
        "faceid": {"512": "hf://h94/IP-Adapter-FaceID/ip-adapter-faceid_sdxl.bin"},
        "controlnet": {
            "pose": "hf://thibaud/controlnet-openpose-sdxl-1.0",
            "canny": "hf://diffusers/controlnet-canny-sdxl-1.0",
        },
    },
    # No FaceID or style IP-Adapter for Flux in diffusers (families.identity_adapters); the
    # canny ControlNet is the one diffusers' FluxControlNetPipeline documents.
    "flux1": {
        "style": None,
        "image_encoder": None,
        "faceid": {},
        "controlnet": {"canny": "hf://InstantX/FLUX.1-dev-Controlnet-Canny"},
    },
    "flux2": {"style": None, "image_encoder": None, "faceid": {}, "controlnet": {}},
}


class BaseModels:
    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store

    @property
    def demo_model_dir(self) -> Path:
        return self.embedded_dir(DEMO_SOURCE)

    def embedded_dir(self, source: str) -> Path:
        """The folder of the embedded demo whose gallery source is `source`."""
        return self.settings.home.resolve() / "models" / EMBEDDED[source][1]

    def ensure_embedded(self, source: str) -> Path:
        """Build the embedded demo `source` unless it is there (first start, or a new version)."""
        folder = self.embedded_dir(source)
        family = EMBEDDED[source][0]
        if family == SD15:
            from studio.demo_model import ensure_demo_model

            return ensure_demo_model(folder)
        if family == SDXL:
            from studio.demo_sdxl import ensure_sdxl_demo

            return ensure_sdxl_demo(folder)
        from studio.demo_flux import ensure_flux_demo

        return ensure_flux_demo(folder, family)

    def sync_gallery(self) -> None:
        """Add or update the gallery's entries from assets/base_models.json."""
        for model in _gallery_file():
            self.store.upsert_base_model(model)

    def prepare(self) -> None:
        """Do the slow start-up work: build the embedded demo models on first start. A default
        base model (STUDIO_BASE_MODEL) that cannot load here is logged, not raised: the studio
        still serves the demo models and the gallery, and prompts on it fail with the reason."""
        for source in EMBEDDED:
            self.ensure_embedded(source)
        base = self.default_base_model()
        reason = self.why_not_here(base) if not is_embedded(base) else None
        if reason:
            log.warning(
                "STUDIO_BASE_MODEL=%s cannot be used: %s, or set it to 'demo'.", self.settings.base_model, reason
            )

    def base_models(self) -> list[dict[str, Any]]:
        """The gallery, each entry with `available` (usable now without a download),
        `family_label` and the defaults its gallery entry sets over its family's."""
        extras = {m["id"]: {k: m[k] for k in MODEL_DEFAULTS if k in m} for m in _gallery_file()}
        return [
            {
                **m,
                "embedded": bool(m["embedded"]),
                "available": self._available(m),
                "family_label": _family_label(m["family"]),
                **extras.get(m["id"], {}),
            }
            for m in self.store.list_base_models()
        ]

    def base_model(self, model_id: int) -> dict[str, Any]:
        for model in self.base_models():
            if model["id"] == model_id:
                return model
        raise NotFound(f"Base model {model_id} is not in the gallery.", field="base_tune_id")

    def default_base_model(self) -> dict[str, Any]:
        """The model STUDIO_BASE_MODEL names: 'demo', a gallery id, or a hub id / local path. A
        local folder or file outside the gallery gets the family its files declare (a diffusers
        folder's pipeline class, a single file's state-dict keys); SD 1.5 when they say nothing."""
        wanted = self.settings.base_model
        models = self.base_models()
        for model in models:
            if wanted == "demo" and model["source"] == DEMO_SOURCE:
                return model
            if wanted in (str(model["id"]), model["source"]):
                return model
        family = family_of_files(Path(wanted).expanduser()) or SD15
        model = {"id": None, "title": wanted, "family": family, "source": wanted, "embedded": False}
        return {**model, "available": self._available(model), "family_label": _family_label(family)}

    def model_path(self, model: dict[str, Any]) -> str:
        """What the engine loads for a base model: an embedded demo's folder, or the model's own source."""
        return str(self.embedded_dir(model["source"])) if is_embedded(model) else model["source"]

    def _available(self, model: dict[str, Any]) -> bool:
        source = model["source"]
        if is_embedded(model):
            return True
        if model["family"] not in RUNNABLE_FAMILIES:
            return False
        if Path(source).exists():
            return True
        if _local_source(source):
            return False
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(source, "model_index.json")
        except ValueError:  # not a valid hub id either
            return False
        return isinstance(cached, str)

    def why_not_here(self, model: dict[str, Any]) -> str | None:
        """Why base model `model` cannot be loaded on this machine now, or None when it can (or
        the hub may still send it): a local path that does not exist, or a hub model that is not
        downloaded while the hub is switched off."""
        from huggingface_hub import constants

        if model["available"]:
            return None
        source = model["source"]
        name = source if model["title"] == source else f"{model['title']} ({source})"
        if _local_source(source):
            return f"{name} does not exist on this machine: check the path"
        if constants.HF_HUB_OFFLINE:
            return (
                f"{name} is not downloaded and the hub is switched off (HF_HUB_OFFLINE): "
                "download it on a connected machine"
            )
        return None

    def prompt_base(self, tune: dict[str, Any]) -> dict[str, Any]:
        """The gallery base model a prompt on `tune` runs on; Unavailable when it cannot run
        here (a family the studio does not run, a local path that is gone, or not downloaded
        while the hub is off). An embedded demo is built first if it is missing."""
        if tune["model_type"] == "checkpoint":
            model = self.base_model(tune["id"])
        elif tune.get("base_tune_id"):
            model = self.base_model(tune["base_tune_id"])
        else:
            model = self.default_base_model()
        if model["family"] not in RUNNABLE_FAMILIES:
            raise ModelNotAvailable(
                f"{model['title']} is a {model['family']} model; this studio runs {runnable_labels()} only. "
                "Pick another base model (or use branch=fast for the demo model).",
                field="tune_id",
            )
        if is_embedded(model):
            self.ensure_embedded(model["source"])
        elif reason := self.why_not_here(model):
            raise ModelNotAvailable(f"{reason}, or pick the demo model.", field="tune_id")
        return model

    def adapter_sources(self, base: dict[str, Any]) -> dict[str, Any]:
        """Where the IP-Adapters, image encoder and ControlNets for `base`'s family live: the
        SD demo model's own files, none for the Flux demos, or hub files (`hf://…`) for real
        models."""
        if not is_embedded(base):
            return HUB_ADAPTERS[base["family"]]
        if base["source"] != DEMO_SOURCE:
            return {"style": None, "image_encoder": None, "faceid": {}, "controlnet": {}}
        from studio.demo_model import read_manifest

        folder = self.demo_model_dir
        manifest = read_manifest(folder)
        return {
            "style": str(folder / manifest["style"]),
            "image_encoder": None,
            "faceid": {dim: str(folder / path) for dim, path in manifest["faceid"].items()},
            "controlnet": {name: str(folder / path) for name, path in manifest["controlnet"].items()},
        }

    def distillation_lora(self, base: dict[str, Any], scheduler: str) -> str | None:
        """The `hf://` distillation LoRA that LCM or TCD (`scheduler`) loads beside the prompt's
        LoRAs on `base`; None when none applies: another scheduler, a flow-matching family, or
        an embedded demo (random weights: there is nothing distilled to load; the images say the
        scheduler ran alone). ModelNotAvailable when it is needed but neither in the hub cache
        nor fetchable (the hub is switched off): a clear refusal rather than blurred images."""
        from huggingface_hub import constants, try_to_load_from_cache

        source = distillation_lora(base["family"], scheduler)
        if source is None or is_embedded(base):
            return None
        repo, filename = hub_repo(source), source[len("hf://") + len(hub_repo(source)) + 1 :]
        if constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(repo, filename), str):
            raise ModelNotAvailable(
                f"{scheduler.upper()} on {base['title']} needs its distillation LoRA {repo}, which is not "
                "downloaded and the hub is switched off (HF_HUB_OFFLINE): let the studio fetch it once on a "
                "connected machine, or pick another scheduler.",
                field="scheduler",
            )
        return source

    def native_resolution(self, base: dict) -> int:
        """The image side the base model was trained at: for a local folder its UNet's sample
        size times 8, or (a Flux transformer has no sample size) its VAE's sample size; else
        the family's (512 for SD 1.5, 1024 for SDXL and Flux)."""
        folder = Path(self.model_path(base))
        unet, vae = folder / "unet" / "config.json", folder / "vae" / "config.json"
        if unet.is_file():
            return int(json.loads(unet.read_text())["sample_size"]) * 8
        if FAMILIES[base["family"]].denoiser == "transformer" and vae.is_file():
            return int(json.loads(vae.read_text())["sample_size"])
        return FAMILIES[base["family"]].native_size


def is_embedded(model: dict[str, Any]) -> bool:
    """True for an embedded demo model (built here, never downloaded)."""
    return model["source"] in EMBEDDED


def runnable_labels() -> str:
    """The families this studio runs, by name: "SD 1.5, SDXL, FLUX.1 and FLUX.2 [klein]"."""
    labels = [FAMILIES[f].label for f in RUNNABLE_FAMILIES]
    return ", ".join(labels[:-1]) + " and " + labels[-1]


def _family_label(family: str) -> str:
    return FAMILIES[family].label if family in FAMILIES else family


def _gallery_file() -> list[dict[str, Any]]:
    return json.loads((ASSETS / "base_models.json").read_text())


def _local_source(source: str) -> bool:
    """True when a base model's source names a local folder or file rather than a hub id
    (owner/name), as the engine tells them apart."""
    return source.startswith(("/", ".", "~")) or source.endswith(".safetensors") or source.count("/") != 1
