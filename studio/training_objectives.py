"""What a LoRA training step computes, per family: `studio.training.train_lora` runs one of
these objectives, chosen by the family's `TrainingFacts.latent_format`.

Each objective caches the prompt's encoding (`encode_prompt`), turns a latent sampled from the
VAE into the denoiser's input (`latents`), predicts and gives the target (`predict`), reduces the
error to the loss (`loss`), and says what the pipeline needs for a checkpoint's sample image
(`sample_inputs`). Randomness comes only from the generator passed in, so a resumed training
draws what an uninterrupted one would.

torch and diffusers are imported inside the methods that need them.
"""

from __future__ import annotations

from studio.families import Family
from studio.tune_requests import TrainSettings

#: Timestep sampling of the flow-matching objective (diffusers' `weighting_scheme` values):
#: logit-normal sampling with its defaults (mean 0, std 1), and the mode scale of "mode".
_LOGIT_MEAN, _LOGIT_STD, _MODE_SCALE = 0.0, 1.0, 1.29


class EpsilonObjective:
    """SD 1.5 / SDXL: DDPM noise at uniform timesteps; the UNet predicts the noise (or v)."""

    def __init__(self, pipe, fam: Family, settings: TrainSettings, device):
        import torch
        from diffusers import DDPMScheduler

        self.pipe, self.settings, self.device = pipe, settings, device
        self.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.scaling = pipe.vae.config.scaling_factor
        width, height = settings.size
        dtype = pipe.vae.dtype  # the precision the model was loaded in
        self.time_ids = torch.tensor([[height, width, 0, 0, height, width]], device=device, dtype=dtype)
        self.cached = None

    def encode_prompt(self, *, train_text: bool) -> None:
        if not train_text:
            self.cached = _encode_sd_prompt(self.pipe, self.settings.instance_prompt, self.device)

    def latents(self, sampled):
        return sampled * self.scaling

    def predict(self, latents, generator):
        import torch

        size = len(latents)
        noise = torch.randn(latents.shape, generator=generator).to(self.device)
        timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (size,), generator=generator)
        timesteps = timesteps.to(self.device)
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        embeds, pooled = self.cached or _encode_sd_prompt(self.pipe, self.settings.instance_prompt, self.device)
        extra = {}
        if pooled is not None:  # SDXL's added conditioning
            extra = {
                "added_cond_kwargs": {"text_embeds": pooled.repeat(size, 1), "time_ids": self.time_ids.repeat(size, 1)}
            }
        prediction = self.pipe.unet(noisy, timesteps, embeds.repeat(size, 1, 1), **extra).sample
        if self.scheduler.config.prediction_type == "v_prediction":
            target = self.scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        return prediction, target, None

    def loss(self, prediction, target, weighting):
        import torch.nn.functional as F

        return F.mse_loss(prediction.float(), target.float())

    def sample_inputs(self) -> dict:
        return {"prompt": self.settings.instance_prompt}


class FlowObjective:
    """Flux: rectified flow. Latents x and noise n are mixed as (1 - s) x + s n at a sigma s
    drawn by the weighting scheme; the transformer predicts the velocity n - x, on packed
    2x2 patch tokens. The family's subclass encodes the prompt and packs the latents."""

    def __init__(self, pipe, fam: Family, settings: TrainSettings, device):
        import torch
        from diffusers import FlowMatchEulerDiscreteScheduler

        self.pipe, self.settings, self.device = pipe, settings, device
        self.transformer = pipe.transformer
        schedule = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
        self.num_train_timesteps = schedule.config.num_train_timesteps
        self.timesteps, self.sigmas = schedule.timesteps.float(), schedule.sigmas.float()
        self.guidance = None
        if getattr(self.transformer.config, "guidance_embeds", False):  # FLUX.1 [dev]'s distilled guidance
            self.guidance = torch.tensor([fam.default_guidance_scale], device=device)
        self.ids = None

    def predict(self, latents, generator):
        import torch
        from diffusers.training_utils import compute_density_for_timestep_sampling

        size = len(latents)
        noise = torch.randn(latents.shape, generator=generator).to(self.device)
        u = compute_density_for_timestep_sampling(
            self.settings.weighting_scheme,
            size,
            logit_mean=_LOGIT_MEAN,
            logit_std=_LOGIT_STD,
            mode_scale=_MODE_SCALE,
            generator=generator,
        )
        indices = (u * self.num_train_timesteps).long().clamp(max=self.num_train_timesteps - 1)
        timesteps = self.timesteps[indices].to(self.device)
        sigmas = self.sigmas[indices].to(self.device).view(-1, 1, 1, 1)
        noisy = (1.0 - sigmas) * latents + sigmas * noise
        target = self.pack(noise - latents)
        guidance = None if self.guidance is None else self.guidance.expand(size)
        prediction = self.transformer(
            hidden_states=self.pack(noisy),
            timestep=timesteps / 1000,
            guidance=guidance,
            img_ids=self.image_ids(latents),
            return_dict=False,
            **self.conditioning(size),
        )[0]
        return prediction[:, : target.shape[1]], target, sigmas.view(-1, 1, 1)

    def loss(self, prediction, target, sigmas):
        import torch
        from diffusers.training_utils import compute_loss_weighting_for_sd3

        weighting = compute_loss_weighting_for_sd3(self.settings.weighting_scheme, sigmas)
        error = (weighting.float() * (prediction.float() - target.float()) ** 2).reshape(len(target), -1)
        return torch.mean(error, 1).mean()


class Flux1Objective(FlowObjective):
    """FLUX.1: latents shifted and scaled by the VAE's factors, 2x2 patches packed into tokens
    with (t, h, w) ids; T5 sequence embeddings and CLIP's pooled embedding condition it."""

    def encode_prompt(self, *, train_text: bool) -> None:
        self.embeds, self.pooled, self.text_ids = self.pipe.encode_prompt(
            prompt=self.settings.instance_prompt, prompt_2=None, device=self.device, max_sequence_length=512
        )
        self.train_text = train_text  # CLIP trains: its pooled embedding is computed every step

    def _pooled(self):
        if not self.train_text:
            return self.pooled
        return self.pipe._get_clip_prompt_embeds(self.settings.instance_prompt, device=self.device)

    def latents(self, sampled):
        config = self.pipe.vae.config
        return (sampled - config.shift_factor) * config.scaling_factor

    def pack(self, latents):
        size, channels, height, width = latents.shape
        return self.pipe._pack_latents(latents, size, channels, height, width)

    def image_ids(self, latents):
        if self.ids is None:
            _, _, height, width = latents.shape
            self.ids = self.pipe._prepare_latent_image_ids(1, height // 2, width // 2, self.device, latents.dtype)
        return self.ids

    def conditioning(self, size: int) -> dict:
        return {
            "encoder_hidden_states": self.embeds.repeat(size, 1, 1),
            "pooled_projections": self._pooled().repeat(size, 1),
            "txt_ids": self.text_ids,
        }

    def sample_inputs(self) -> dict:
        return {"prompt_embeds": self.embeds, "pooled_prompt_embeds": self._pooled()}


class Flux2Objective(FlowObjective):
    """FLUX.2: latents patchified 2x2 and normalised by the VAE's batch-norm statistics, packed
    with (t, h, w, l) ids; stacked Qwen3 hidden states condition it."""

    def __init__(self, pipe, fam: Family, settings: TrainSettings, device):
        import torch

        super().__init__(pipe, fam, settings, device)
        bn, eps = pipe.vae.bn, pipe.vae.config.batch_norm_eps
        self.bn_mean = bn.running_mean.view(1, -1, 1, 1).float().to(device)
        self.bn_std = torch.sqrt(bn.running_var.view(1, -1, 1, 1).float() + eps).to(device)

    def encode_prompt(self, *, train_text: bool) -> None:
        self.embeds, self.text_ids = self.pipe.encode_prompt(
            prompt=self.settings.instance_prompt, device=self.device, max_sequence_length=512
        )
        # the samples' unconditional side of true classifier-free guidance: an empty prompt
        self.negative, _ = self.pipe.encode_prompt(prompt="", device=self.device, max_sequence_length=512)

    def latents(self, sampled):
        return (self.pipe._patchify_latents(sampled) - self.bn_mean) / self.bn_std

    def pack(self, latents):
        return self.pipe._pack_latents(latents)

    def image_ids(self, latents):
        if self.ids is None or len(self.ids) != len(latents):
            self.ids = self.pipe._prepare_latent_ids(latents).to(self.device)
        return self.ids

    def conditioning(self, size: int) -> dict:
        return {
            "encoder_hidden_states": self.embeds.repeat(size, 1, 1),
            "txt_ids": self.text_ids.repeat(size, 1, 1),
        }

    def sample_inputs(self) -> dict:
        return {"prompt_embeds": self.embeds, "negative_prompt_embeds": self.negative}


#: The objective of each `TrainingFacts.latent_format`.
OBJECTIVES = {"sd": EpsilonObjective, "flux1": Flux1Objective, "flux2": Flux2Objective}


def _encode_sd_prompt(pipe, prompt: str, device):
    """(prompt embeddings (1, 77, D), pooled embeddings (1, P) where the pipeline has a second
    text encoder (SDXL), else None)."""
    import torch

    second = getattr(pipe, "text_encoder_2", None) is not None
    encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if second else [])
    tokenizers = [pipe.tokenizer] + ([pipe.tokenizer_2] if second else [])
    hidden, pooled = [], None
    for tokenizer, encoder in zip(tokenizers, encoders):
        ids = tokenizer(
            [prompt], padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(device)
        if second:
            out = encoder(ids, output_hidden_states=True)
            hidden.append(out.hidden_states[-2])
            pooled = out[0]
        else:
            hidden.append(encoder(ids)[0])
    return torch.cat(hidden, dim=-1), pooled
