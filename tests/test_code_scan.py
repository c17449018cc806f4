"""A scan of the studio's own code for calls that can run code hidden in data (DESIGN.md §7):
`torch.load` without `weights_only=True`, pickle loads, `numpy.load(allow_pickle=True)`,
`trust_remote_code=True`, and `eval`/`exec`. Each finding is named as file:line.

The scan reads the source with `ast`, so comments, strings and methods that merely share a name
(`module.eval()` switches a torch module to inference mode) are not findings."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("studio", "storage", "bench", "app.py")
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
PICKLE_CALLS = {"load", "loads", "Unpickler", "open"}


def _keyword_is(call: ast.Call, name: str, value: object) -> bool | None:
    """True/False when `name=` is given as a literal equal/unequal to `value`; None when absent
    or not a literal (a variable or **kwargs, which the scan cannot vouch for)."""
    for keyword in call.keywords:
        if keyword.arg == name:
            if isinstance(keyword.value, ast.Constant):
                return keyword.value.value is value
            return None
    return None


def _imported_names(tree: ast.AST) -> dict[str, str]:
    """Local name -> 'module.attr' for `from module import attr [as name]`, and local name ->
    module for `import module [as name]`."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
    return names


def _qualified(func: ast.expr, imported: dict[str, str]) -> str | None:
    """'torch.load', 'pickle.loads', 'eval'… for a call's function, through import aliases."""
    if isinstance(func, ast.Name):
        return imported.get(func.id, func.id)
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{imported.get(func.value.id, func.value.id)}.{func.attr}"
    return None


def scan_source(source: str, label: str) -> list[str]:
    """Findings in one module's source, each 'label:line: what'."""
    tree = ast.parse(source, filename=label)
    imported = _imported_names(tree)
    findings = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in PICKLE_MODULES:
            findings.append(f"{label}:{node.lineno}: imports from {node.module}")
        if not isinstance(node, ast.Call):
            continue
        name = _qualified(node.func, imported)
        where = f"{label}:{node.lineno}"
        if name in ("eval", "exec", "builtins.eval", "builtins.exec"):
            findings.append(f"{where}: {name}() runs arbitrary code")
        elif name == "torch.load" and _keyword_is(node, "weights_only", True) is not True:
            findings.append(f"{where}: torch.load without weights_only=True")
        elif name and name.split(".")[0] in PICKLE_MODULES and name.split(".")[-1] in PICKLE_CALLS:
            findings.append(f"{where}: {name} unpickles data")
        elif name in ("numpy.load", "np.load") and _keyword_is(node, "allow_pickle", True):
            findings.append(f"{where}: {name} with allow_pickle=True")
        elif _keyword_is(node, "trust_remote_code", True):
            findings.append(f"{where}: trust_remote_code=True runs code from the hub")
    return findings


def scanned_files() -> list[Path]:
    files = []
    for entry in SCANNED:
        path = ROOT / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def test_the_scan_covers_the_studio_storage_bench_and_app():
    names = {p.relative_to(ROOT).as_posix() for p in scanned_files()}
    assert {
        "app.py",
        "studio/core.py",
        "studio/engine.py",
        "storage/database.py",
        "storage/migrations.py",
        "storage/records/jobs.py",
        "storage/files.py",
    } <= names
    assert any(n.startswith("bench/") for n in names) and any(n.startswith("studio/ui/") for n in names)


def test_no_code_loads_pickles_or_evaluates_strings():
    findings = []
    for path in scanned_files():
        findings += scan_source(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())
    assert findings == [], "unsafe calls:\n" + "\n".join(findings)


BAD = """
import pickle
import torch as T
import numpy as np
from torch import load
from pickle import loads as unpickle
from transformers import AutoModel

state = T.load(path)
state = T.load(path, weights_only=False)
state = load(path, weights_only=flag)
data = pickle.load(handle)
data = unpickle(raw)
array = np.load(path, allow_pickle=True)
model = AutoModel.from_pretrained(name, trust_remote_code=True)
eval("1 + 1")
exec(code)
"""

GOOD = """
import torch
import numpy as np

state = torch.load(path, map_location="cpu", weights_only=True)
array = np.load(path, allow_pickle=False)
model.eval()
pipe.unet.eval()
text = "eval(x) and pickle.load(f) in a string"
# torch.load(path) in a comment
"""


@pytest.mark.parametrize(
    ("line", "what"),
    [
        (9, "torch.load without weights_only=True"),
        (10, "torch.load without weights_only=True"),
        (11, "torch.load without weights_only=True"),
        (12, "pickle.load unpickles"),
        (13, "pickle.loads unpickles"),
        (14, "allow_pickle=True"),
        (15, "trust_remote_code=True"),
        (16, "eval() runs"),
        (17, "exec() runs"),
    ],
)
def test_the_scanner_finds_each_kind_of_unsafe_call(line, what):
    findings = scan_source(BAD, "bad.py")
    assert any(f.startswith(f"bad.py:{line}: ") and what in f for f in findings), findings


def test_the_scanner_flags_a_from_pickle_import_and_passes_safe_code():
    assert "bad.py:6: imports from pickle" in scan_source(BAD, "bad.py")
    assert scan_source(GOOD, "good.py") == []
