from pathlib import Path

import pytest

from studio.config import ConfigError, Settings


def test_defaults():
    settings = Settings.from_env({})
    assert settings.home == Path("data")
    assert (settings.host, settings.port) == ("127.0.0.1", 7860)
    assert settings.base_model == "demo"
    assert settings.max_photos == 50 and settings.max_lora_mb == 175
    assert settings.is_loopback


def test_values_are_parsed():
    settings = Settings.from_env(
        {
            "STUDIO_HOME": "/srv/studio",
            "STUDIO_PORT": "8080",
            "STUDIO_API_KEYS": "k1, k2,",
            "STUDIO_AUTH": "ann:pw1,bob:pw:with:colons",
            "STUDIO_SHARE": "yes",
            "STUDIO_DEVICE": "CUDA",
            "STUDIO_PUBLIC_URL": "https://studio.example/",
        }
    )
    assert settings.home == Path("/srv/studio")
    assert settings.port == 8080
    assert settings.api_keys == ("k1", "k2")
    assert settings.auth == (("ann", "pw1"), ("bob", "pw:with:colons"))
    assert settings.share and not settings.is_loopback
    assert settings.device == "cuda"
    assert settings.public_url == "https://studio.example"


@pytest.mark.parametrize(
    "name, value",
    [
        ("STUDIO_PORT", "http"),
        ("STUDIO_PORT", "70000"),
        ("STUDIO_DEVICE", "tpu"),
        ("STUDIO_SHARE", "maybe"),
        ("STUDIO_AUTH", "nopassword"),
        ("STUDIO_MAX_PHOTOS", "0"),
        ("STUDIO_DEMO_SIZE", "100"),
        ("STUDIO_FACE_BACKEND", "mediapipe"),
    ],
)
def test_invalid_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})
