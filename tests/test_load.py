"""The load bench's core, small: 10 clients for about 3 s against a served studio (in this
process; `bench/load.py` itself serves it from a child process). No 5xx, no transport error,
no answer other than 200/201/429, and no lost like: every client's last like state matches the
API and the database, and every prompt's counter matches its like rows."""

import asyncio
import importlib.util
import secrets
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from api_helpers import live_studio

from conftest import ROOT


def _bench():
    spec = importlib.util.spec_from_file_location("bench_load", ROOT / "bench" / "load.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up there
    spec.loader.exec_module(bench)
    return bench


def run_async(coroutine):
    """`asyncio.run` in a thread of its own: a browser test earlier in the session keeps
    Playwright's event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.mark.slow
def test_ten_clients_lose_no_like_and_get_no_5xx(tmp_path, demo_model_dir):
    load = _bench()
    keys = [f"test-{n}-{secrets.token_hex(4)}" for n in range(11)]
    # Everybody likes the same prompts, so the clients are admins (as in bench/load.py).
    settings = {"api_keys": tuple(keys), "queue_limit": 8, "admins": tuple(map(load._key_owner, keys))}
    with live_studio(tmp_path / "home", demo_model_dir, **settings) as (url, studio):
        tune_id, prompt_ids = load.prepare(url, keys[0], pool=5)
        clients = [load.Client(key) for key in keys[1:]]
        results = run_async(load.run_load(url, clients, tune_id, prompt_ids, duration=3))
        problems = run_async(load.check_likes(url, clients, prompt_ids, studio.store))

    assert results.requests > 0 and results.reads and results.writes
    assert results.server_errors == 0 and not results.errors, (results.statuses, results.errors)
    assert set(results.statuses) <= {200, 201, 429}, {route: len(t) for route, t in results.by_route.items()}
    assert results.problems == [] and problems == []
    # Some likes were given and taken back, and the clients' states were all known.
    assert results.by_route["POST /prompts/:id/likes 201"] and results.by_route["DELETE /prompts/:id/likes 200"]
    assert all(state is not None for client in clients for state in client.liked.values())


@pytest.mark.slow
def test_clients_that_are_no_admins_like_their_own_and_never_see_anothers(tmp_path, demo_model_dir):
    load = _bench()
    keys = [f"test-{n}-{secrets.token_hex(4)}" for n in range(6)]
    settings = {"api_keys": tuple(keys), "queue_limit": 20, "admins": ()}
    with live_studio(tmp_path / "home", demo_model_dir, **settings) as (url, studio):
        clients = [load.Client(key) for key in keys]
        tune_id = load.prepare_own(url, clients, own=2)
        results = run_async(load.run_load(url, clients, tune_id, [], duration=3))
        problems = run_async(load.check_likes(url, clients, [], studio.store))
        owners = {p["id"]: p["owner"] for p in studio.list_prompts(limit=100)}

    assert results.server_errors == 0 and not results.errors, (results.statuses, results.errors)
    assert set(results.statuses) <= {200, 201, 404, 429}
    assert results.problems == [] and problems == []
    # Each client's prompts are its own, it liked only those, and it asked about others' (404).
    for client in clients:
        assert {owners[p] for p in client.prompts} == {load._key_owner(client.key)}
        assert set(client.liked) <= set(client.prompts)
    peeks = sum(len(t) for route, t in results.by_route.items() if ":other" in route)
    assert peeks and all(route.endswith(" 404") for route in results.by_route if ":other" in route)
