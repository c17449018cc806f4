"""Avatar Studio: a self-hosted studio for personalised avatar images.

Importing this package is cheap: torch, diffusers and gradio load inside the functions that
need them, so tests of pure logic and command-line tools do not pay for them.
"""

__version__ = "0.1.0"
