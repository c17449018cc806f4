"""What a LoRA training step computes, per family: `studio.training.train_lora` runs one of
these objectives, chosen by the family's `TrainingFacts.latent_format`.

Each objective caches the encoding of the instance prompt and of every photo caption
(`encode_prompt`), turns a latent sampled from the VAE into the denoiser's input (`latents`),
predicts from each batch item's text and gives the target (`predict`), reduces the error to the
loss (`loss`), weighing it per latent by the face-focused mask when there is one (`loss_mask`
lays the mask out as the target is: studio/face_loss.py), and says what the pipeline needs for
a checkpoint's sample image (`sample_inputs`). Randomness comes only from the generator passed in, so a resumed training
draws what an uninterrupted one would.

torch and diffusers are imported inside the methods that need them.
"""

from __future__ import annotations

from studio.families import Family
from studio.tune_requests import TrainSettings

#: Timestep sampling of the flow-matching objective (diffusers' `weighting_scheme` values):
#: logit-normal sampling with its defaults (mean 0, std 1), and the mode scale of "mode".
_LOGIT_MEAN, _LOGIT_STD, _MODE_SCALE = 0.0, 1.0, 1.29


def _masked_mean(error, mask):
    """Per item: the mask-weighted mean of `error` (weights summing to 0 give 0); then the batch
    mean. Errors where the mask is 0 do not reach the loss or its gradient."""
    import torch

    error, mask = error.reshape(len(error), -1), mask.reshape(len(mask), -1).to(error.dtype)
    return (torch.sum(error * mask, 1) / torch.sum(mask, 1).clamp_min(1e-8)).mean()


def _latent_mask(mask, latents):
    """A pixel mask (B, 1, H, W) averaged over each latent's area and repeated over the latent
    channels: (B, C, h, w) as `latents`."""
    import torch.nn.functional as F

    small = F.interpolate(mask.float(), size=tuple(latents.shape[-2:]), mode="area")
    return small.expand(-1, latents.shape[1], -1, -1).to(latents.device)


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
        self.cached: dict[str, tuple] = {}

    def encode_prompt(self, *, train_text: bool, texts=()) -> None:
        """Encode the instance prompt and `texts` (the captions) once, unless the text encoder
        trains: then every step encodes its batch's texts."""
        if not train_text:
            for text in dict.fromkeys([self.settings.instance_prompt, *texts]):
                self.cached[text] = _encode_sd_prompt(self.pipe, text, self.device)

    def _encoded(self, texts):
        import torch

        pairs = [self.cached.get(t) or _encode_sd_prompt(self.pipe, t, self.device) for t in texts]
        pooled = None if pairs[0][1] is None else torch.cat([p for _, p in pairs])
        return torch.cat([e for e, _ in pairs]), pooled

    def latents(self, sampled):
        return sampled * self.scaling

    def predict(self, latents, generator, texts=None):
        """(prediction, target, None) for a batch; `texts` is each item's prompt (None: the
        instance prompt for all)."""
        import torch

        size = len(latents)
        noise = torch.randn(latents.shape, generator=generator).to(self.device)
        timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (size,), generator=generator)
        timesteps = timesteps.to(self.device)
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        embeds, pooled = self._encoded(texts or [self.settings.instance_prompt] * size)
        extra = {}
        if pooled is not None:  # SDXL's added conditioning
            extra = {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": self.time_ids.repeat(size, 1)}}
        prediction = self.pipe.unet(noisy, timesteps, embeds, **extra).sample
        if self.scheduler.config.prediction_type == "v_prediction":
            target = self.scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        return prediction, target, None

    def loss_mask(self, mask, latents):
        return _latent_mask(mask, latents)

    def loss(self, prediction, target, weighting, mask=None):
        import torch.nn.functional as F

        if mask is not None:
            return _masked_mean((prediction.float() - target.float()) ** 2, mask)
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

    def predict(self, latents, generator, texts=None):
        """(prediction, target, sigmas) for a batch; `texts` is each item's prompt (None: the
        instance prompt for all)."""
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
            **self.conditioning(texts or [self.settings.instance_prompt] * size),
        )[0]
        return prediction[:, : target.shape[1]], target, sigmas.view(-1, 1, 1)

    def loss_mask(self, mask, latents):
        """The mask laid out as the target: per latent, then packed into tokens as latents are."""
        return self.pack(_latent_mask(mask, latents).to(latents.dtype))

    def loss(self, prediction, target, sigmas, mask=None):
        import torch
        from diffusers.training_utils import compute_loss_weighting_for_sd3

        weighting = compute_loss_weighting_for_sd3(self.settings.weighting_scheme, sigmas)
        error = weighting.float() * (prediction.float() - target.float()) ** 2
        if mask is not None:
            return _masked_mean(error, mask)
        return torch.mean(error.reshape(len(target), -1), 1).mean()


class Flux1Objective(FlowObjective):
    """FLUX.1: latents shifted and scaled by the VAE's factors, 2x2 patches packed into tokens
    with (t, h, w) ids; T5 sequence embeddings and CLIP's pooled embedding condition it."""

    def encode_prompt(self, *, train_text: bool, texts=()) -> None:
        self.encoded = {}
        for text in dict.fromkeys([self.settings.instance_prompt, *texts]):
            self.encoded[text] = self.pipe.encode_prompt(
                prompt=text, prompt_2=None, device=self.device, max_sequence_length=512
            )
        self.embeds, self.pooled, self.text_ids = self.encoded[self.settings.instance_prompt]
        self.train_text = train_text  # CLIP trains: its pooled embedding is computed every step

    def _pooled(self, texts=None):
        import torch

        texts = texts or [self.settings.instance_prompt]
        if not self.train_text:
            return torch.cat([self.encoded[t][1] for t in texts])
        return self.pipe._get_clip_prompt_embeds(list(texts), device=self.device)

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

    def conditioning(self, texts) -> dict:
        import torch

        return {
            "encoder_hidden_states": torch.cat([self.encoded[t][0] for t in texts]),
            "pooled_projections": self._pooled(texts),
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

    def encode_prompt(self, *, train_text: bool, texts=()) -> None:
        self.encoded = {}
        for text in dict.fromkeys([self.settings.instance_prompt, *texts]):
            self.encoded[text] = self.pipe.encode_prompt(prompt=text, device=self.device, max_sequence_length=512)
        self.embeds, self.text_ids = self.encoded[self.settings.instance_prompt]
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

    def conditioning(self, texts) -> dict:
        import torch

        return {
            "encoder_hidden_states": torch.cat([self.encoded[t][0] for t in texts]),
            "txt_ids": self.text_ids.repeat(len(texts), 1, 1),
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
