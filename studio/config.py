"""Settings: everything the studio reads from the environment, read once at start-up.

`Settings.from_env()` is the only place environment variables are read; the rest of the code
gets a `Settings` (or explicit arguments) passed in. An invalid value fails at start with a
message naming the variable.

On a Hugging Face Space (SPACE_ID is set) the defaults change: the studio listens on 0.0.0.0
(the Space's proxy must reach it; the API then needs keys), keeps its data in the Space's
persistent storage (`/data/studio`) when that is mounted, and builds image URLs from SPACE_HOST.

An open UI is a choice, never an accident: a studio reachable from other machines (a host other
than loopback, or a Space) refuses to start without STUDIO_AUTH logins unless the operator sets
STUDIO_PUBLIC_DEMO=1. STUDIO_ADMINS names the logins and API-key owners that see everything and
manage keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from studio.errors import StudioError

DEVICES = ("auto", "cpu", "cuda", "mps")
FACE_BACKENDS = ("auto", "dlib", "insightface")
#: STUDIO_QUANTIZE: a quantized base model's transformer through diffusers' quantization
#: support ("nf4" and "int8" with bitsandbytes); "none" loads it unquantized.
QUANTIZE = ("none", "nf4", "int8")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
#: Where a Space mounts its persistent storage (a parameter of `from_env` for tests).
SPACE_STORAGE = Path("/data")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ConfigError(StudioError):
    """An environment variable has a value the studio cannot use."""


@dataclass(frozen=True)
class Settings:
    home: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 7860
    base_model: str = "demo"
    device: str = "auto"
    api_keys: tuple[str, ...] = ()
    share: bool = False
    auth: tuple[tuple[str, str], ...] = ()
    public_url: str | None = None
    face_backend: str = "auto"
    allow_private_urls: bool = False
    max_photos: int = 50
    max_upload_mb: int = 20
    max_lora_mb: int = 175
    demo_size: int = 256
    queue_limit: int = 100
    tune_expiry_days: int = 0  # 0: tunes never expire
    on_space: bool = False  # running on a Hugging Face Space (SPACE_ID is set)
    zero_gpu: bool = False  # the Space runs on ZeroGPU (SPACES_ZERO_GPU is set)
    likes_per_minute: int = 30  # per client address, for browsers that are not logged in
    login_failures_per_minute: int = 5  # per client address, then logins wait
    public_demo: bool = False  # STUDIO_PUBLIC_DEMO: an open UI without logins, on purpose
    admins: tuple[str, ...] = ()  # STUDIO_ADMINS: login names and/or API-key owner names
    cpu_offload: bool = False  # STUDIO_CPU_OFFLOAD: model CPU offload on CUDA (FLUX.1 on 16-24 GB cards)
    quantize: str | None = None  # STUDIO_QUANTIZE: "nf4" or "int8", None for unquantized
    ray_address: str | None = None  # STUDIO_RAY_ADDRESS: "auto" or "ray://host:10001"; None runs jobs in-process
    ray_workers: int = 0  # STUDIO_RAY_WORKERS: engine actors; 0 = one per GPU (on CPU: CPUs / ray_worker_cpus)
    ray_worker_cpus: int = 1  # STUDIO_RAY_WORKER_CPUS: CPUs each actor reserves (its torch threads)
    captioner: str | None = None  # STUDIO_CAPTIONER: a captioning model's folder (studio/captions.py)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, space_storage: Path = SPACE_STORAGE) -> Settings:
        """Build settings from `environ` (default `os.environ`); raise ConfigError naming the
        variable whose value is invalid. `space_storage` is where a Space mounts its persistent
        storage (used for STUDIO_HOME on a Space when it is a writable folder)."""
        env = os.environ if environ is None else environ
        on_space = bool(env.get("SPACE_ID"))
        share = _bool(env, "STUDIO_SHARE", False)
        auth = _auth(env.get("STUDIO_AUTH", ""))
        if share and on_space:
            raise ConfigError(
                "STUDIO_SHARE=1 does not work on a Hugging Face Space (it is reachable already): unset it."
            )
        if share and not auth:
            raise ConfigError(
                "STUDIO_SHARE=1 opens a public link to the studio and its photos of faces: "
                "set STUDIO_AUTH=user:password as well."
            )
        public_demo = _bool(env, "STUDIO_PUBLIC_DEMO", False)
        host = env.get("STUDIO_HOST") or ("0.0.0.0" if on_space else "127.0.0.1")
        if (on_space or host not in LOOPBACK_HOSTS) and not auth and not public_demo:
            # Gradio's event API answers anyone who reaches the page: without logins every
            # visitor could mint API keys, read photos and delete tunes.
            where = "on a Hugging Face Space" if on_space else f"on {host} (reachable from other machines)"
            raise ConfigError(
                f"The studio would be open to anyone {where}: set STUDIO_AUTH=user:password for logins, "
                "or STUDIO_PUBLIC_DEMO=1 to run an open demo on purpose."
            )
        space_url = f"https://{env['SPACE_HOST']}" if on_space and env.get("SPACE_HOST") else None
        return cls(
            home=Path(env.get("STUDIO_HOME") or _default_home(on_space, space_storage)),
            host=host,
            port=_int(env, "STUDIO_PORT", 7860, low=1, high=65535),
            base_model=env.get("STUDIO_BASE_MODEL") or "demo",
            device=_choice(env, "STUDIO_DEVICE", "auto", DEVICES),
            api_keys=tuple(k.strip() for k in env.get("STUDIO_API_KEYS", "").split(",") if k.strip()),
            share=share,
            auth=auth,
            public_url=(env.get("STUDIO_PUBLIC_URL") or "").rstrip("/") or space_url,
            face_backend=_choice(env, "STUDIO_FACE_BACKEND", "auto", FACE_BACKENDS),
            allow_private_urls=_bool(env, "STUDIO_ALLOW_PRIVATE_URLS", False),
            max_photos=_int(env, "STUDIO_MAX_PHOTOS", 50, low=1, high=1000),
            max_upload_mb=_int(env, "STUDIO_MAX_UPLOAD_MB", 20, low=1, high=2000),
            max_lora_mb=_int(env, "STUDIO_MAX_LORA_MB", 175, low=1, high=10000),
            demo_size=_int(env, "STUDIO_DEMO_SIZE", 256, low=16, high=1024, multiple_of=8),
            queue_limit=_int(env, "STUDIO_QUEUE_LIMIT", 100, low=1, high=100000),
            tune_expiry_days=_int(env, "STUDIO_TUNE_EXPIRY_DAYS", 0, low=0, high=3650),
            on_space=on_space,
            zero_gpu=(env.get("SPACES_ZERO_GPU") or "").strip().lower() not in _FALSE,
            likes_per_minute=_int(env, "STUDIO_LIKES_PER_MINUTE", 30, low=1, high=100000),
            login_failures_per_minute=_int(env, "STUDIO_LOGIN_FAILURES_PER_MINUTE", 5, low=1, high=100000),
            public_demo=public_demo,
            admins=tuple(a.strip() for a in env.get("STUDIO_ADMINS", "").split(",") if a.strip()),
            cpu_offload=_bool(env, "STUDIO_CPU_OFFLOAD", False),
            captioner=(env.get("STUDIO_CAPTIONER") or "").strip() or None,
            quantize=None if (quantize := _choice(env, "STUDIO_QUANTIZE", "none", QUANTIZE)) == "none" else quantize,
            ray_address=(env.get("STUDIO_RAY_ADDRESS") or "").strip() or None,
            ray_workers=_int(env, "STUDIO_RAY_WORKERS", 0, low=0, high=4096),
            ray_worker_cpus=_int(env, "STUDIO_RAY_WORKER_CPUS", 1, low=1, high=1024),
        )

    @property
    def is_loopback(self) -> bool:
        """True when the server only listens on this machine (the API may then run keyless)."""
        return self.host in LOOPBACK_HOSTS and not self.share


def _default_home(on_space: bool, space_storage: Path) -> Path:
    """./data, or the Space's persistent storage when the studio runs on a Space that has it
    (without it a Space's disk is wiped at every restart)."""
    if on_space and space_storage.is_dir() and os.access(space_storage, os.W_OK):
        return space_storage / "studio"
    return Path("data")


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int, multiple_of: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number.") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range: use {low} to {high}.")
    if value % multiple_of:
        raise ConfigError(f"{name}={value} must be a multiple of {multiple_of}.")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a yes/no value: use 1 or 0, true or false.")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of: {', '.join(choices)}.")
    return value


def _auth(raw: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in filter(None, (p.strip() for p in raw.split(","))):
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise ConfigError("STUDIO_AUTH must be user:password pairs separated by commas, e.g. 'ann:s3cret'.")
        pairs.append((user, password))
    return tuple(pairs)
