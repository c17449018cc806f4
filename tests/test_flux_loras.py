"""Flux LoRA files in the layouts people download, on the tiny FLUX.1 and FLUX.2 [klein] flux_demo_dirs.

Each file is made by hand with keys shaped as the real trainers write them, sized for the demo
transformer (inner width D = 32; FLUX.1's MLP is 4D and its single-stream fused projection 7D,
FLUX.2's gated MLP 6D in and 3D out and its fused projection 9D):

- diffusers / peft and ai-toolkit's FLUX.1 export: `transformer.<diffusers module>.lora_A.weight`;
- kohya sd-scripts: `lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight`, `.lora_up.weight`,
  `.alpha`, `lora_unet_single_blocks_0_linear1…`, and CLIP keys
  `lora_te1_text_model_encoder_layers_0_self_attn_q_proj…`;
- ai-toolkit / ComfyUI (BFL names): `diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight`;
- XLabs: `double_blocks.0.processor.qkv_lora1.down.weight`, `proj_lora1`, `qkv_lora2`, `proj_lora2`.

Every one must change the image at weight 1 and give exactly the LoRA-free image at weight 0;
a LoRA of another family is refused, naming both, before anything is loaded.
"""

from __future__ import annotations

import numpy as np
import pytest

from studio.engine import Engine, GenerateRequest
from studio.errors import InvalidInput
from studio.lora_formats import lora_family

D = 32  # the demo transformers' inner width (2 heads of 16)
CLIP = 32  # the FLUX.1 demo's CLIP width
# BFL module -> (in, out) in units of D, per family.
DOUBLE = {
    "flux1": {"attn.qkv": (1, 3), "attn.proj": (1, 1), "mlp.0": (1, 4), "mlp.2": (4, 1)},
    "flux2": {"attn.qkv": (1, 3), "attn.proj": (1, 1), "mlp.0": (1, 6), "mlp.2": (3, 1)},
}
SINGLE = {"flux1": {"linear1": (1, 7), "linear2": (5, 1)}, "flux2": {"linear1": (1, 9), "linear2": (4, 1)}}
RANK = 4


@pytest.fixture(scope="module")
def engine():
    return Engine("cpu")


def _factor(generator, rows: int, cols: int, scale: float):
    import torch

    return (torch.randn(rows, cols, generator=generator) * scale).contiguous()


def _pair(generator, fan_in: int, fan_out: int) -> tuple:
    """(down [RANK, in], up [out, RANK]) strong enough to move an 8-bit image."""
    return _factor(generator, RANK, fan_in, fan_in**-0.5), _factor(generator, fan_out, RANK, 0.5)


def bfl_modules(family: str) -> dict[str, tuple[int, int]]:
    """BFL module paths (`double_blocks.0.img_attn.qkv`…) of the demo -> (in, out) widths."""
    modules = {}
    for stream in ("img", "txt"):
        for name, (fan_in, fan_out) in DOUBLE[family].items():
            modules[f"double_blocks.0.{stream}_{name}"] = (fan_in * D, fan_out * D)
    for block in (0, 1):
        for name, (fan_in, fan_out) in SINGLE[family].items():
            modules[f"single_blocks.{block}.{name}"] = (fan_in * D, fan_out * D)
    return modules


def kohya_lora(path, family: str, *, seed: int = 1, text_encoder: bool = False, metadata: dict | None = None):
    """sd-scripts' layout: `lora_unet_<BFL path with _>` with lora_down/lora_up/alpha (alpha =
    rank / 2, a scale of 0.5 the loader must apply)."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    modules = {"lora_unet_" + k.replace(".", "_"): v for k, v in bfl_modules(family).items()}
    if text_encoder:
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            modules[f"lora_te1_text_model_encoder_layers_0_self_attn_{proj}"] = (CLIP, CLIP)
    for key, (fan_in, fan_out) in modules.items():
        down, up = _pair(generator, fan_in, fan_out)
        tensors[f"{key}.lora_down.weight"] = down
        tensors[f"{key}.lora_up.weight"] = up * 2  # alpha/rank halves it back
        tensors[f"{key}.alpha"] = torch.tensor(RANK / 2)
    meta = {"ss_network_module": "networks.lora_flux"} | (metadata or {})
    save_file(tensors, str(path), metadata=meta)
    return path


def bfl_lora(path, family: str, *, seed: int = 2):
    """ai-toolkit's / ComfyUI's layout: `diffusion_model.<BFL path>.lora_A.weight` / `lora_B`."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for module, (fan_in, fan_out) in bfl_modules(family).items():
        down, up = _pair(generator, fan_in, fan_out)
        tensors[f"diffusion_model.{module}.lora_A.weight"] = down
        tensors[f"diffusion_model.{module}.lora_B.weight"] = up
    save_file(tensors, str(path))
    return path


def diffusers_lora(path, pipe, family: str, *, seed: int = 3):
    """diffusers' `save_lora_weights` layout (also ai-toolkit's FLUX.1 export):
    `transformer.<module>.lora_A.weight`, over the family's LoRA targets."""
    import torch
    from safetensors.torch import save_file

    from studio.families import family as facts

    generator = torch.Generator().manual_seed(seed)
    targets = facts(family).lora_targets
    tensors = {}
    for name, module in pipe.transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and any(name == t or name.endswith("." + t) for t in targets):
            down, up = _pair(generator, module.in_features, module.out_features)
            tensors[f"transformer.{name}.lora_A.weight"] = down
            tensors[f"transformer.{name}.lora_B.weight"] = up
    save_file(tensors, str(path))
    return path


def xlabs_lora(path, *, seed: int = 4):
    """XLabs' FLUX.1 layout: attention-processor LoRAs of the double-stream blocks."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, fan_out in (("qkv_lora1", 3 * D), ("proj_lora1", D), ("qkv_lora2", 3 * D), ("proj_lora2", D)):
        down, up = _pair(generator, D, fan_out)
        tensors[f"double_blocks.0.processor.{name}.down.weight"] = down
        tensors[f"double_blocks.0.processor.{name}.up.weight"] = up
    save_file(tensors, str(path))
    return path


def sdxl_lora(path):
    """A kohya SDXL LoRA (cross-attention keys 2048 wide)."""
    import torch
    from safetensors.torch import save_file

    key = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"
    save_file(
        {
            f"{key}.lora_down.weight": torch.zeros(4, 2048),
            f"{key}.lora_up.weight": torch.zeros(640, 4),
            f"{key}.alpha": torch.tensor(4.0),
        },
        str(path),
    )
    return path


def image(engine, folder, family: str, loras=()):
    request = GenerateRequest(
        model=str(folder),
        family=family,
        prompt="a photo of ohwx man",
        num_inference_steps=2,
        width=64,
        height=64,
        guidance_scale=3.5,
        scheduler="euler",
        seed=5,
        loras=tuple(loras),
    )
    return np.asarray(engine.generate(request)[0].image, dtype=np.int16)


def assert_changes_and_zero_is_base(engine, folder, family: str, path, name: str):
    base = image(engine, folder, family)
    with_lora = image(engine, folder, family, [(name, str(path), 1.0)])
    at_zero = image(engine, folder, family, [(name, str(path), 0.0)])
    assert np.abs(with_lora - base).mean() > 1.0, f"{name} did not change the image"
    assert np.array_equal(at_zero, base), f"{name} at weight 0 is not the base image"
    assert np.array_equal(image(engine, folder, family), base)  # and off again afterwards


@pytest.mark.parametrize("family", ["flux1", "flux2"])
def test_kohya_flux_loras_load_and_change_the_image(flux_demo_dirs, engine, tmp_path, family):
    path = kohya_lora(tmp_path / "kohya.safetensors", family, text_encoder=family == "flux1")
    assert_changes_and_zero_is_base(engine, flux_demo_dirs[family], family, path, "kohya")


@pytest.mark.parametrize("family", ["flux1", "flux2"])
def test_ai_toolkit_diffusion_model_loras_load_and_change_the_image(flux_demo_dirs, engine, tmp_path, family):
    path = bfl_lora(tmp_path / "aitk.safetensors", family)
    assert_changes_and_zero_is_base(engine, flux_demo_dirs[family], family, path, "aitk")


@pytest.mark.parametrize("family", ["flux1", "flux2"])
def test_diffusers_and_ai_toolkit_transformer_loras_load_and_change_the_image(flux_demo_dirs, engine, tmp_path, family):
    pipe = engine.load_model(str(flux_demo_dirs[family]), family)
    path = diffusers_lora(tmp_path / "diffusers.safetensors", pipe, family)
    assert_changes_and_zero_is_base(engine, flux_demo_dirs[family], family, path, "diffusers")


def test_xlabs_loras_load_and_change_the_image(flux_demo_dirs, engine, tmp_path):
    path = xlabs_lora(tmp_path / "xlabs.safetensors")
    assert_changes_and_zero_is_base(engine, flux_demo_dirs["flux1"], "flux1", path, "xlabs")


def test_a_kohya_text_encoder_lora_reaches_the_clip_encoder(flux_demo_dirs, engine, tmp_path):
    """FLUX.1 kohya files may train CLIP too (`lora_te1_…`): those weights must load, not be skipped."""
    path = kohya_lora(tmp_path / "te.safetensors", "flux1", text_encoder=True)
    engine.generate(
        GenerateRequest(model=str(flux_demo_dirs["flux1"]), family="flux1", prompt="x", num_inference_steps=1, width=64,
                        height=64, scheduler="euler", loras=(("te", str(path), 1.0),))
    )  # fmt: skip
    pipe = engine.load_model(str(flux_demo_dirs["flux1"]), "flux1")
    assert pipe.get_list_adapters().get("text_encoder"), "the CLIP LoRA weights were not loaded"


def test_stacked_flux_loras_add_up(flux_demo_dirs, engine, tmp_path):
    folder = flux_demo_dirs["flux1"]
    a = kohya_lora(tmp_path / "a.safetensors", "flux1", seed=7)
    b = bfl_lora(tmp_path / "b.safetensors", "flux1", seed=8)
    both = image(engine, folder, "flux1", [("a", str(a), 1.0), ("b", str(b), 0.7)])
    only_a = image(engine, folder, "flux1", [("a", str(a), 1.0)])
    assert np.abs(both - only_a).mean() > 1.0
    assert np.array_equal(image(engine, folder, "flux1", [("a", str(a), 1.0), ("b", str(b), 0.0)]), only_a)


@pytest.mark.parametrize(
    ("base", "make", "message"),
    [
        ("flux1", lambda p: sdxl_lora(p), "LoRA 'x' is for SDXL but this base model is FLUX.1"),
        ("flux2", lambda p: kohya_lora(p, "flux1"), r"LoRA 'x' is for FLUX.1 but this base model is FLUX.2 \[klein\]"),
        ("flux1", lambda p: kohya_lora(p, "flux2"), r"LoRA 'x' is for FLUX.2 \[klein\] but this base model is FLUX.1"),
        ("flux1", lambda p: xlabs_lora(p), None),
    ],
)
def test_a_lora_of_another_family_is_refused_naming_both(flux_demo_dirs, engine, tmp_path, base, make, message):
    path = make(tmp_path / "x.safetensors")
    if message is None:  # the control: a FLUX.1 LoRA on FLUX.1 loads
        image(engine, flux_demo_dirs[base], base, [("x", str(path), 1.0)])
        return
    with pytest.raises(InvalidInput, match=message) as info:
        image(engine, flux_demo_dirs[base], base, [("x", str(path), 1.0)])
    assert info.value.field == "loras"
    assert str(path) not in engine.loaded_loras


def test_a_flux_lora_on_an_sd_base_is_refused(demo_model_dir, engine, tmp_path):
    path = kohya_lora(tmp_path / "flux.safetensors", "flux1")
    request = GenerateRequest(model=str(demo_model_dir), prompt="x", num_inference_steps=1, width=64, height=64,
                              loras=(("f", str(path), 1.0),))  # fmt: skip
    with pytest.raises(InvalidInput, match="LoRA 'f' is for FLUX.1 but this base model is SD 1.5"):
        engine.generate(request)


def test_the_family_is_read_from_keys_shapes_and_metadata_at_real_size():
    """Headers only (no tensor data), shaped like real downloads of each family."""

    def header(shapes: dict, metadata: dict | None = None) -> dict:
        out = {k: {"dtype": "BF16", "shape": s, "data_offsets": [0, 0]} for k, s in shapes.items()}
        return out | ({"__metadata__": metadata} if metadata else {})

    kohya = "lora_unet_single_blocks_0_linear1"
    assert lora_family(header({f"{kohya}.lora_down.weight": [16, 3072], f"{kohya}.lora_up.weight": [21504, 16]})) == (
        "flux1"
    )
    assert lora_family(header({f"{kohya}.lora_down.weight": [16, 3072], f"{kohya}.lora_up.weight": [27648, 16]})) == (
        "flux2"
    )
    mlp = "diffusion_model.double_blocks.3.img_mlp.0"
    assert lora_family(header({f"{mlp}.lora_A.weight": [8, 3072], f"{mlp}.lora_B.weight": [12288, 8]})) == "flux1"
    assert lora_family(header({f"{mlp}.lora_A.weight": [8, 3072], f"{mlp}.lora_B.weight": [18432, 8]})) == "flux2"
    assert lora_family(header({"double_blocks.0.processor.qkv_lora1.down.weight": [16, 3072]})) == "flux1"
    peft = "transformer.single_transformer_blocks.0"
    assert lora_family(header({f"{peft}.proj_mlp.lora_A.weight": [4, 3072]})) == "flux1"
    assert lora_family(header({f"{peft}.attn.to_qkv_mlp_proj.lora_A.weight": [4, 3072]})) == "flux2"
    sd = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"
    assert lora_family(header({sd: [4, 768]})) == "sd15"
    assert lora_family(header({sd: [4, 2048]})) == "sdxl"
    # Metadata wins over shapes; unknown says nothing.
    assert lora_family(header({sd: [4, 768]}, {"modelspec.architecture": "flux-1-dev/lora"})) == "flux1"
    assert lora_family(header({"x.lora_A.weight": [4, 8]}, {"ss_base_model_version": "sdxl_base_v1-0"})) == "sdxl"
    text_only = "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"
    assert lora_family(header({text_only: [4, 768]})) is None  # CLIP alone: FLUX.1 and SDXL both have it
    assert lora_family(header({"x.lora_A.weight": [4, 8]}, {"modelspec.architecture": 5})) is None


@pytest.mark.parametrize("sparse", [True, False])
def test_a_kohya_fused_single_block_lora_splits_by_the_models_own_sizes(flux_demo_dirs, engine, tmp_path, sparse):
    """sd-scripts fuses q, k, v and the MLP input of a single-stream block into `linear1`;
    diffusers splits it by FLUX.1 [dev]'s sizes (3072…), which fails on any other width. Split by
    the loaded model's sizes it must act exactly as the same LoRA in diffusers' per-module form:
    block-diagonal (separate LoRAs exported fused: the rank splits too) or one shared down."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(9)
    parts = {"attn.to_q": D, "attn.to_k": D, "attn.to_v": D, "proj_mlp": 4 * D}
    prefix = "transformer.single_transformer_blocks.0."
    shared_down = _factor(generator, RANK, D, D**-0.5)
    pairs = {name: _pair(generator, D, out) if sparse else (shared_down, _factor(generator, out, RANK, 0.5))
             for name, out in parts.items()}  # fmt: skip
    per_module = {}
    for name, (down, up) in pairs.items():
        per_module[f"{prefix}{name}.lora_A.weight"] = down.clone()
        per_module[f"{prefix}{name}.lora_B.weight"] = up
    save_file(per_module, str(tmp_path / "per-module.safetensors"))
    ups = [up for _, up in pairs.values()]
    if sparse:
        down = torch.cat([d for d, _ in pairs.values()])
        up = torch.block_diag(*ups)
    else:
        down, up = shared_down, torch.cat(ups)
    rank = down.shape[0]
    key = "lora_unet_single_blocks_0_linear1"
    fused = {f"{key}.lora_down.weight": down.contiguous(), f"{key}.lora_up.weight": up.contiguous()}
    fused[f"{key}.alpha"] = torch.tensor(float(rank))
    save_file(fused, str(tmp_path / "fused.safetensors"))

    folder = flux_demo_dirs["flux1"]
    base = image(engine, folder, "flux1")
    split = image(engine, folder, "flux1", [("fused", str(tmp_path / "fused.safetensors"), 1.0)])
    reference = image(engine, folder, "flux1", [("per", str(tmp_path / "per-module.safetensors"), 1.0)])
    assert np.abs(split - base).mean() > 1.0
    assert np.abs(split - reference).max() <= 1


def test_an_sdxl_lora_on_an_sd15_base_is_refused_naming_both(demo_model_dir, engine, tmp_path):
    path = sdxl_lora(tmp_path / "xl.safetensors")
    request = GenerateRequest(model=str(demo_model_dir), prompt="x", num_inference_steps=1, width=64, height=64,
                              loras=(("xl", str(path), 1.0),))  # fmt: skip
    with pytest.raises(InvalidInput, match="LoRA 'xl' is for SDXL but this base model is SD 1.5") as info:
        engine.generate(request)
    assert info.value.field == "loras"


def test_an_uploaded_flux_lora_is_saved_with_its_family(studio, tmp_path):
    flux1 = kohya_lora(tmp_path / "k.safetensors", "flux1").read_bytes()
    assert studio.add_adapter("lora", "fluxone", flux1)["family"] == "flux1"
    assert (
        studio.add_adapter("lora", "fluxtwo", bfl_lora(tmp_path / "b.safetensors", "flux2").read_bytes())["family"]
        == "flux2"
    )
    assert studio.add_adapter("lora", "xlabs", xlabs_lora(tmp_path / "x.safetensors").read_bytes())["family"] == "flux1"
    with pytest.raises(InvalidInput, match="The LoRA's shapes say flux1, not sdxl") as info:
        studio.add_adapter("lora", "wrong", flux1, family="sdxl")
    assert info.value.field == "family"


@pytest.mark.parametrize("layout", ["unknown_module", "missing_block"])
def test_a_flux_lora_that_fits_nothing_is_refused_not_silently_skipped(flux_demo_dirs, engine, tmp_path, layout):
    """diffusers only logs "No LoRA keys associated…" for a file none of whose keys name a
    module (and asserts on a kohya block the model lacks): both are a clear 4xx here."""
    import torch
    from safetensors.torch import save_file

    if layout == "unknown_module":
        tensors = {"transformer.not_a_module.lora_A.weight": torch.ones(4, D), "transformer.not_a_module.lora_B.weight": torch.ones(D, 4)}  # fmt: skip
    else:
        key = "lora_unet_single_blocks_7_linear1"  # the demo has 2 single-stream blocks
        tensors = {f"{key}.lora_down.weight": torch.ones(4, D), f"{key}.lora_up.weight": torch.ones(7 * D, 4)}
    save_file(tensors, str(tmp_path / "n.safetensors"))
    with pytest.raises(InvalidInput, match="LoRA 'n' (has no weights this FLUX.1 model can use|does not fit)") as info:
        image(engine, flux_demo_dirs["flux1"], "flux1", [("n", str(tmp_path / "n.safetensors"), 1.0)])
    assert info.value.field == "loras"
    assert image(engine, flux_demo_dirs["flux1"], "flux1").shape == (64, 64, 3)  # the engine still works


def test_a_diffusers_flux_lora_keeps_the_alpha_its_metadata_carries(flux_demo_dirs, engine, tmp_path):
    """A LoRA saved by diffusers' `save_lora_weights` (what the studio's trainer and
    train_dreambooth_lora_flux.py export) carries its peft config, alpha included, in the file's
    metadata: lora_alpha = rank / 2 must act as the same LoRA with its up factors halved."""
    from diffusers import FluxPipeline
    from safetensors.torch import load_file, save_file

    pipe = engine.load_model(str(flux_demo_dirs["flux1"]), "flux1")
    plain = diffusers_lora(tmp_path / "plain.safetensors", pipe, "flux1", seed=12)
    tensors = {k.removeprefix("transformer."): v for k, v in load_file(str(plain)).items()}
    targets = sorted({k.rsplit(".lora_", 1)[0] for k in tensors})
    metadata = {"r": RANK, "lora_alpha": RANK / 2, "target_modules": targets}
    FluxPipeline.save_lora_weights(
        tmp_path / "alpha", transformer_lora_layers=tensors, transformer_lora_adapter_metadata=metadata
    )
    halved = {k: v / 2 if ".lora_B." in k else v for k, v in load_file(str(plain)).items()}
    save_file(halved, str(tmp_path / "halved.safetensors"))
    folder = flux_demo_dirs["flux1"]
    with_alpha = image(engine, folder, "flux1", [("alpha", str(tmp_path / "alpha" / "pytorch_lora_weights.safetensors"), 1.0)])  # fmt: skip
    reference = image(engine, folder, "flux1", [("halved", str(tmp_path / "halved.safetensors"), 1.0)])
    full = image(engine, folder, "flux1", [("plain", str(plain), 1.0)])
    assert np.abs(with_alpha - reference).max() <= 1 and np.abs(with_alpha - full).mean() > 0.5
