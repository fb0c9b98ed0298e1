"""The hot path's flat dependencies and serving settings behave as the
dependency chain they replaced: where the token may come from, the order of
401 / 400 / 422, the OpenAPI security requirement, route order, GC tuning."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from opex_api import serve, serving
from opex_api.app import create_app
from opex_api.config import ApiSettings
from opex_api.routes import MODULES, trades
from tests.api.api_support import API, LiveServer, open_body, signup_and_signin

HOT = [("post", "/trade/open"), ("post", "/trade/close"), ("get", "/trade/open"), ("get", "/balance"),
       ("get", "/balance/asset"), ("get", "/account"), ("post", "/orders"), ("get", "/orders"),
       ("delete", "/orders/{orderId}"), ("put", "/trade/{orderId}/tpsl"), ("post", "/trade/{orderId}/margin")]


@pytest.mark.integration
def test_openapi_keeps_the_session_requirement_and_the_idempotency_header(api_settings: ApiSettings) -> None:
    spec = create_app(api_settings).openapi()
    assert set(spec["components"]["securitySchemes"]) == {"APIKeyCookie", "HTTPBearer"}
    for method, path in HOT:
        op = spec["paths"][f"{API}{path}"][method]
        assert op["security"] == [{"APIKeyCookie": []}, {"HTTPBearer": []}], (method, path)
        if method != "get":
            (header,) = [p for p in op["parameters"] if p["in"] == "header"]
            assert header["name"] == "idempotency-key" and not header["required"]
            assert {"type": "string", "maxLength": 256} in header["schema"]["anyOf"]


@pytest.mark.unit
def test_the_trade_routes_are_matched_first() -> None:
    assert MODULES[0] is trades
    assert [r.path for r in trades.router.routes][:2] == ["/trade/open", "/trade/open"]


@pytest.mark.anyio
@pytest.mark.integration
async def test_token_sources_and_error_order(api_client: httpx.AsyncClient) -> None:
    await signup_and_signin(api_client)
    token = api_client.cookies["jwt"]
    api_client.cookies.clear()
    for headers in ({"Cookie": f"jwt={token}"}, {"Authorization": f"Bearer {token}"},
                    {"Authorization": f"bearer   {token}  "}):
        r = await api_client.get(f"{API}/balance", headers=headers)
        assert r.status_code == 200, (headers, r.text)
    # the cookie wins over the header, as it did with the cookie / bearer schemes
    r = await api_client.get(f"{API}/balance", headers={"Cookie": f"jwt={token}", "Authorization": "Bearer x.y.z"})
    assert r.status_code == 200
    r = await api_client.get(f"{API}/balance", headers={"Cookie": "jwt=x.y.z", "Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    for headers in ({}, {"Authorization": f"Basic {token}"}, {"Authorization": "Bearer"},
                    {"Authorization": "Bearer   "}, {"Cookie": "jwt="}):
        for method, path, body in (("GET", "/balance", None), ("GET", "/account", None),
                                   ("POST", "/trade/open", open_body()), ("POST", "/trade/close", {"orderId": "x"})):
            r = await api_client.request(method, f"{API}{path}", json=body, headers=headers)
            assert r.status_code == 401, (headers, path, r.text)
            assert r.headers["www-authenticate"].startswith("Cookie")

    auth = {"Authorization": f"Bearer {token}"}
    # no session beats everything else: 401 before a bad key or a bad body
    r = await api_client.post(f"{API}/trade/open", json={"asset": 1}, headers={"Idempotency-Key": "bad key"})
    assert r.status_code == 401
    # a malformed key (400) is refused before the body is validated
    r = await api_client.post(f"{API}/trade/open", json={"asset": 1}, headers={**auth, "Idempotency-Key": "bad key"})
    assert r.status_code == 400 and "Idempotency-Key" in r.json()["message"]
    r = await api_client.post(f"{API}/trade/open", json=open_body(), headers={**auth, "Idempotency-Key": "k" * 129})
    assert r.status_code == 400
    # longer than the header's maxLength: a validation error, reported with the body's
    r = await api_client.post(f"{API}/trade/open", json={**open_body(), "leverage": 0},
                              headers={**auth, "Idempotency-Key": "k" * 257})
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"idempotency-key", "leverage"}, r.json()

    # and the happy path, with a key, twice: applied once
    headers = {**auth, "Idempotency-Key": "hot-path-1"}
    first = await api_client.post(f"{API}/trade/open", json=open_body(), headers=headers)
    again = await api_client.post(f"{API}/trade/open", json=open_body(), headers=headers)
    assert first.status_code == again.status_code == 200, first.text
    assert first.json()["orderId"] == again.json()["orderId"]
    r = await api_client.post(f"{API}/trade/close", json={"orderId": first.json()["orderId"]}, headers=auth)
    assert r.status_code == 200 and r.json()["message"] == "Trade closed"


@pytest.mark.unit
def test_tune_gc_freezes_start_up_objects_once(monkeypatch: pytest.MonkeyPatch) -> None:
    before = gc.get_threshold()
    monkeypatch.setattr(serving, "_tuned", False)
    try:
        serving.tune_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (serving.GC_GEN0_THRESHOLD, before[1], before[2])
        serving.tune_gc()  # a second call changes nothing
        assert gc.get_threshold()[0] == serving.GC_GEN0_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.integration
def test_serve_spreads_connections_over_its_workers_and_stops_on_sigterm(
        api_settings: ApiSettings, tmp_path: Path) -> None:
    server = LiveServer(api_settings, tmp_path, workers=2).start()
    try:
        assert server.proc is not None
        workers = _children(server.proc.pid)
        assert len(workers) == 2
        # /health answered from one worker: wait until both listen
        deadline = time.monotonic() + 30
        while sum(_sockets(pid, server.port, "0A") for pid in workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        clients = [httpx.Client(base_url=server.url, timeout=5) for _ in range(32)]
        for client in clients:
            assert client.get(f"{API}/health").status_code == 200
        # every worker holds some of the 32 keep-alive connections (one shared
        # socket under uvloop typically gave one worker nearly all of them)
        held = {pid: _sockets(pid, server.port, "01") for pid in workers}
        assert sum(held.values()) == 32 and min(held.values()) >= 4, held
        for client in clients:
            client.close()
    finally:
        code = server.stop()
    assert code == 0, server.log_tail()
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or _state(pid) == "Z"


@pytest.mark.unit
def test_serve_refuses_an_ephemeral_port_with_several_workers() -> None:
    with pytest.raises(SystemExit):
        serve.main(["--port", "0", "--workers", "2"])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return found


def _state(pid: int) -> str:
    return (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[0]


def _sockets(pid: int, port: int, state_hex: str) -> int:
    """``pid``'s TCP sockets on local ``port`` in a state (01 established, 0A listening)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        local, state, inode = cols[1], cols[3], cols[9]
        if state == state_hex and int(local.split(":")[1], 16) == port and inode in inodes:
            count += 1
    return count


@pytest.mark.unit
@pytest.mark.parametrize("raw", ["lots", "0", "-5"])
def test_a_bad_gc_threshold_stops_the_api_naming_it(raw: str) -> None:
    out = subprocess.run([sys.executable, "-c", "import opex_api.serving"], capture_output=True, text=True,
                         env={**os.environ, "API_GC_GEN0_THRESHOLD": raw}, check=False)
    assert out.returncode != 0 and "API_GC_GEN0_THRESHOLD must be an integer" in out.stderr
