"""Post-processing plug-ins: availability reports, the Real-ESRGAN network on weights made here,
and the engine running a plug-in or warning when it cannot."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from studio.postprocess import PostContext, SuperResolution, load_rrdbnet, open_postprocessors, report


def tiny_realesrgan(path, *, scale: int = 4, seed: int = 0):
    """Real-ESRGAN weights in BasicSR's layout (`params_ema`), tiny: 8 features, 1 block."""
    import torch

    from studio.postprocess import _rrdbnet_class

    torch.manual_seed(seed)
    net = _rrdbnet_class()(num_feat=8, num_block=1, num_grow_ch=4, scale=scale)
    torch.save({"params_ema": net.state_dict()}, path)
    return net


def test_nothing_is_available_without_weights(tmp_path):
    status = report(open_postprocessors(tmp_path))
    assert set(status) == {"super_resolution", "face_correct", "face_swap"}
    assert not any(entry["available"] for entry in status.values())
    assert "RealESRGAN_x4plus" in status["super_resolution"]["missing"]
    assert str(tmp_path) not in status["super_resolution"]["missing"]  # API clients read these: no server paths
    home = tmp_path / "models" / "postprocess"
    assert "models/postprocess/ under STUDIO_HOME" in report(open_postprocessors(home))["face_swap"]["missing"]


@pytest.mark.parametrize("scale", [4, 2])
def test_realesrgan_weights_are_loaded_with_their_shape_and_upscale(tmp_path, scale):
    net = tiny_realesrgan(tmp_path / f"RealESRGAN_x{scale}plus.pth", scale=scale)
    loaded = load_rrdbnet(tmp_path / f"RealESRGAN_x{scale}plus.pth")
    assert loaded.scale == scale
    for name, tensor in net.state_dict().items():
        assert np.array_equal(tensor.numpy(), loaded.state_dict()[name].numpy())
    plugin = SuperResolution(tmp_path)
    assert plugin.missing(PostContext()) is None
    out = plugin.apply(Image.new("RGB", (24, 16), (90, 120, 200)), PostContext())
    assert out.size == (24 * scale, 16 * scale) and out.mode == "RGB"


def test_the_engine_runs_an_available_plug_in_and_warns_about_the_others(demo_model_dir, tmp_path):
    from studio.engine import Engine, GenerateRequest

    tiny_realesrgan(tmp_path / "RealESRGAN_x4plus.pth")
    engine = Engine("cpu", postprocess_dir=tmp_path)
    request = GenerateRequest(
        model=str(demo_model_dir), prompt="a man", num_inference_steps=2, width=32, height=32, super_resolution=True
    )
    (upscaled,) = engine.generate(request)
    assert upscaled.image.size == (128, 128) and upscaled.warnings == ()
    assert "Size: 128x128" in upscaled.parameters
    (kept,) = engine.generate(dataclasses.replace(request, super_resolution=False, face_swap=True))
    assert kept.image.size == (32, 32)
    assert kept.warnings == (
        "Face swap was skipped: put inswapper_128.onnx in the studio's models/postprocess/ folder under STUDIO_HOME.",
    )
