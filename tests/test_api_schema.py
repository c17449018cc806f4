"""The published OpenAPI schema: it describes every route, and schemathesis, generating requests
from it against a live server, finds no 5xx and no answer the schema does not document."""

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from api_helpers import live_studio

ROUTES = {
    "/tunes": {"get", "post"},
    "/tunes/{tune_id}": {"get", "delete"},
    "/tunes/{tune_id}/best_step": {"post"},
    "/tunes/{tune_id}/prompts": {"get", "post"},
    "/tunes/{tune_id}/photos/{photo_id}": {"get"},
    "/tunes/{tune_id}/lora.safetensors": {"get"},
    "/tunes/{tune_id}/captions": {"get", "patch"},
    "/tunes/{tune_id}/prompts/{prompt_id}": {"get", "delete"},
    "/prompts": {"get"},
    "/prompts/{prompt_id}": {"get", "delete"},
    "/prompts/{prompt_id}/likes": {"post", "delete"},
    "/gallery/packs": {"get"},
    "/gallery/tunes": {"get"},
    "/p/{pack_id}": {"get"},
    "/p/{pack_id}/tunes": {"post"},
    "/images/inspect": {"post"},
    "/images/{name}": {"get"},
    "/adapters": {"get", "post"},
    "/adapters/{kind}/{name}": {"get", "delete"},
    "/tunes/{tune_id}/checkpoints": {"get"},
    "/tunes/{tune_id}/checkpoints/{step}/activate": {"post"},
    "/p/{pack_id}/export": {"get"},
    "/packs": {"get", "post"},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_model_dir):
    home = tmp_path_factory.mktemp("schema") / "home"
    with live_studio(home, demo_model_dir, worker=False, allow_private_urls=False, api_keys=("st-key",)) as served:
        yield served


def test_openapi_schema_describes_every_route(server):
    url, _ = server
    schema = httpx.get(f"{url}/openapi.json").json()
    assert {path: set(methods) for path, methods in schema["paths"].items()} == ROUTES
    create = schema["paths"]["/tunes"]["post"]
    assert set(create["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    form = create["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert form["tune[images][]"]["items"]["format"] == "binary" and "tune[title]" in form
    assert {"201", "401", "413", "422", "429"} <= set(create["responses"])
    fields = schema["components"]["schemas"]["TuneFields"]
    assert {"title", "name"} <= set(fields["required"]) and "prompts_attributes" in fields["properties"]


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(server, tmp_path):
    url, studio = server
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{url}/openapi.json",
        "--header=Authorization: Bearer st-key",
        "--checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--phases=examples,coverage,fuzzing,stateful",
        "--max-examples=10",
        "--seed=20261122",
        "--workers=1",
        "--request-timeout=30",
        "--report=json",
        f"--report-json-path={tmp_path / 'report.json'}",
    ]
    # In tmp_path: schemathesis keeps a cache of crashes in its working folder.
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert run.returncode == 0 and report["failures"] == [] and report["errors"] == [], run.stdout[-6000:]
    operations = sum(len(methods) for methods in ROUTES.values())
    assert report["operations"]["tested"] == report["operations"]["total"] == operations
    assert report["test_cases"]["generated"] > 500
    assert not list(studio.store.list_tunes()), "generated bodies carry no usable photo: no tune can exist"
