"""Importing the application layers must stay cheap: no gradio, torch or diffusers."""

import subprocess
import sys

from conftest import ROOT

HEAVY = ("gradio", "torch", "diffusers", "transformers", "peft")


def test_studio_and_storage_import_without_heavy_libraries():
    code = (
        "import sys, importlib, pkgutil, studio, storage\n"
        "skip = {'studio.ui'}\n"
        "for pkg in (studio, storage):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if not any(m.name == s or m.name.startswith(s + '.') for s in skip):\n"
        "            importlib.import_module(m.name)\n"
        f"print(sorted(n for n in {HEAVY!r} if n in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
