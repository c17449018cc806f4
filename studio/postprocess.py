"""Post-processing plug-ins: super resolution, face correction and face swap.

Each plug-in says whether it can run (`missing()` is None when its code and weights are
installed, else a sentence saying what to install where) and, when it can, turns one RGB PIL
image into another. None of them downloads anything: their weights come from GitHub releases
that an offline machine cannot reach, so a person puts the files in the plug-in folder (the
engine's `postprocess_dir`). The engine runs a requested plug-in when it is available and
otherwise keeps the image and records a warning, never a crash and never a silent skip.

- `SuperResolution`: Real-ESRGAN (RRDBNet) weights, `RealESRGAN_x4plus` or `RealESRGAN_x2plus`
  as `.safetensors` or `.pth` (read with `weights_only=True`). The network is defined here, so
  no extra package is needed.
- `FaceCorrect`: GFPGAN 1.4 through the `gfpgan` package and `GFPGANv1.4.pth`.
- `FaceSwap`: insightface's `inswapper_128.onnx` with the insightface detection pack; the source
  face is the prompt's FaceID embedding, which must be insightface's 512-d one.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

LABELS = {"super_resolution": "Super resolution", "face_correct": "Face correction", "face_swap": "Face swap"}


@dataclass(frozen=True)
class PostContext:
    """What a plug-in may need besides the image: the FaceID embedding the prompt used (unit
    norm, or None) and the torch device name."""

    face_embedding: tuple[float, ...] | None = None
    device: str = "cpu"


class PostProcessor(Protocol):
    name: str

    def missing(self, context: PostContext) -> str | None:
        """None when the plug-in can run for this context, else what is missing."""

    def apply(self, image, context: PostContext):
        """Return the processed RGB PIL image."""


def open_postprocessors(folder: Path | None, *, insightface_root: Path | None = None) -> dict[str, PostProcessor]:
    """The three plug-ins, keyed by their request field name, reading weights from `folder`."""
    folder = Path(folder) if folder is not None else None
    return {
        "super_resolution": SuperResolution(folder),
        "face_correct": FaceCorrect(folder),
        "face_swap": FaceSwap(folder, insightface_root),
    }


def report(plugins: dict[str, PostProcessor]) -> dict[str, dict[str, Any]]:
    """{name: {"available": bool, "missing": str | None}} for a status page."""
    context = PostContext(face_embedding=(0.0,) * 512)
    return {
        name: {"available": plugin.missing(context) is None, "missing": plugin.missing(context)}
        for name, plugin in plugins.items()
    }


def _find(folder: Path | None, stems: tuple[str, ...], suffixes: tuple[str, ...]) -> Path | None:
    if folder is None:
        return None
    for stem in stems:
        for suffix in suffixes:
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
    return None


def _where(folder: Path | None) -> str:
    # These hints reach API clients in a prompt's warnings, so they name the folder relative to
    # STUDIO_HOME rather than the server's absolute path.
    if folder is not None and folder.parent.name == "models":
        return f"{folder.parent.name}/{folder.name}/ under STUDIO_HOME"
    return "the studio's models/postprocess/ folder under STUDIO_HOME"


# -- super resolution (Real-ESRGAN) --------------------------------------------------------


class SuperResolution:
    """Real-ESRGAN upscaling (x4, or x2 with its weights) of the whole image."""

    name = "super_resolution"
    STEMS = ("RealESRGAN_x4plus", "RealESRGAN_x2plus")

    def __init__(self, folder: Path | None):
        self.folder = folder
        self._net = None

    def weights(self) -> Path | None:
        return _find(self.folder, self.STEMS, (".safetensors", ".pth"))

    def missing(self, context: PostContext) -> str | None:
        if self.weights() is None:
            return f"put RealESRGAN_x4plus.pth (or .safetensors) in {_where(self.folder)}"
        return None

    def apply(self, image, context: PostContext):
        import torch
        from PIL import Image

        if self._net is None:
            self._net = load_rrdbnet(self.weights()).to(context.device).eval()
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None].to(context.device)
        with torch.no_grad():
            out = self._net(tensor).clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
        return Image.fromarray((out * 255.0).round().astype(np.uint8))


def load_rrdbnet(path: Path):
    """An RRDBNet with the shape its weights imply (features, blocks, growth, scale 2 or 4),
    loaded from Real-ESRGAN's `.pth` (`params_ema` or `params`) or a `.safetensors` file."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("params_ema") or state.get("params") or state
    in_channels = state["conv_first.weight"].shape[1]
    net = _rrdbnet_class()(
        num_feat=state["conv_first.weight"].shape[0],
        num_block=len({k.split(".")[1] for k in state if k.startswith("body.")}),
        num_grow_ch=state["body.0.rdb1.conv1.weight"].shape[0],
        scale=4 if in_channels == 3 else 2,
    )
    net.load_state_dict(state)
    return net


def _rrdbnet_class():
    """Real-ESRGAN's RRDBNet (BasicSR's layout and parameter names), built on first use so
    importing this module does not import torch."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class DenseBlock(nn.Module):
        def __init__(self, num_feat: int, num_grow_ch: int):
            super().__init__()
            for i in range(5):
                out = num_feat if i == 4 else num_grow_ch
                setattr(self, f"conv{i + 1}", nn.Conv2d(num_feat + i * num_grow_ch, out, 3, 1, 1))
            self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

        def forward(self, x):
            features = [x]
            for i in range(4):
                features.append(self.lrelu(getattr(self, f"conv{i + 1}")(torch.cat(features, 1))))
            return self.conv5(torch.cat(features, 1)) * 0.2 + x

    class RRDB(nn.Module):
        def __init__(self, num_feat: int, num_grow_ch: int):
            super().__init__()
            self.rdb1, self.rdb2, self.rdb3 = (DenseBlock(num_feat, num_grow_ch) for _ in range(3))

        def forward(self, x):
            return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x

    class RRDBNet(nn.Module):
        def __init__(self, num_feat: int, num_block: int, num_grow_ch: int, scale: int):
            super().__init__()
            self.scale = scale
            self.conv_first = nn.Conv2d(3 * (16 // scale**2), num_feat, 3, 1, 1)
            self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
            self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

        def forward(self, x):
            if self.scale == 2:
                height, width = x.shape[-2:]
                x = F.pad(x, (0, width % 2, 0, height % 2), mode="reflect")
                x = F.pixel_unshuffle(x, 2)
            feat = self.conv_first(x)
            feat = feat + self.conv_body(self.body(feat))
            feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
            feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
            return self.conv_last(self.lrelu(self.conv_hr(feat)))

    return RRDBNet


# -- face correction (GFPGAN) --------------------------------------------------------------


class FaceCorrect:
    """GFPGAN 1.4 face restoration, pasted back into the image at its own size."""

    name = "face_correct"

    def __init__(self, folder: Path | None):
        self.folder = folder
        self._restorer = None

    def missing(self, context: PostContext) -> str | None:
        if importlib.util.find_spec("gfpgan") is None:
            return "the gfpgan package is not installed"
        if _find(self.folder, ("GFPGANv1.4",), (".pth",)) is None:
            return f"put GFPGANv1.4.pth in {_where(self.folder)}"
        return None

    def apply(self, image, context: PostContext):
        from gfpgan import GFPGANer
        from PIL import Image

        if self._restorer is None:
            weights = _find(self.folder, ("GFPGANv1.4",), (".pth",))
            self._restorer = GFPGANer(model_path=str(weights), upscale=1, arch="clean", channel_multiplier=2)
        bgr = np.asarray(image.convert("RGB"))[:, :, ::-1].copy()
        _, _, restored = self._restorer.enhance(bgr, has_aligned=False, only_center_face=False, paste_back=True)
        return Image.fromarray(restored[:, :, ::-1].copy())


# -- face swap (insightface inswapper) -----------------------------------------------------


class FaceSwap:
    """insightface's inswapper: every detected face takes the identity of the prompt's FaceID
    embedding."""

    name = "face_swap"

    def __init__(self, folder: Path | None, insightface_root: Path | None):
        self.folder = folder
        self.insightface_root = insightface_root
        self._models = None

    def missing(self, context: PostContext) -> str | None:
        from studio.faces import insightface_missing

        if importlib.util.find_spec("insightface") is None:
            return "the insightface package is not installed"
        if _find(self.folder, ("inswapper_128",), (".onnx",)) is None:
            return f"put inswapper_128.onnx in {_where(self.folder)}"
        pack = insightface_missing(self.insightface_root)
        if pack:
            return pack
        if context.face_embedding is None:
            return "it needs a <faceid:…> tune in the prompt to take the face from"
        if len(context.face_embedding) != 512:
            return "it needs a FaceID tune made with the insightface backend (512-d), not dlib's 128-d"
        return None

    def apply(self, image, context: PostContext):
        from insightface.app import FaceAnalysis
        from insightface.model_zoo import get_model
        from PIL import Image

        from studio.faces import insightface_pack_dir

        if self._models is None:
            analysis = FaceAnalysis(
                name=str(insightface_pack_dir(self.insightface_root)), allowed_modules=["detection"]
            )
            analysis.prepare(ctx_id=-1, det_size=(640, 640))
            swapper = get_model(str(_find(self.folder, ("inswapper_128",), (".onnx",))))
            self._models = (analysis, swapper)
        analysis, swapper = self._models
        source = _SourceFace(np.asarray(context.face_embedding, dtype=np.float32))
        bgr = np.asarray(image.convert("RGB"))[:, :, ::-1].copy()
        for face in analysis.get(bgr):
            bgr = swapper.get(bgr, face, source, paste_back=True)
        return Image.fromarray(bgr[:, :, ::-1].copy())


@dataclass(frozen=True)
class _SourceFace:
    """The one attribute inswapper reads from its source face."""

    normed_embedding: np.ndarray
