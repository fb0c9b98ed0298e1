"""Abuse of the WebSocket: one connection flooding messages.

The contract (docs/reliability.md, "WebSocket flood"): each connection may send
``WS_MESSAGE_RATE_PER_S`` messages per second on average with bursts of
``WS_MESSAGE_BURST`` (counted where every ws Lambda instance sees the same
count, i.e. Redis); a message beyond that is not acted on and is answered
``{"type": "error", "code": "rate_limited", ...}`` (at most one such error per
second, so the answers do not become a flood of their own); a connection that
keeps flooding may be closed. Other connections are not slowed down.

Runs through the local gateway process (the same handler code API Gateway
calls) with real WebSocket clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis as redis_lib
import websockets

from opex_api.security import issue_token
from opex_common.settings import Settings
from opex_ws.config import WsSettings
from tests.faults.support import Proc, free_port, wait_until

RATE, BURST, FLOOD = 5, 10, 200
HAS_LIMIT = "ws_message_rate_per_s" in WsSettings.model_fields and "ws_message_burst" in WsSettings.model_fields


async def _frames(ws: websockets.ClientConnection, seconds: float) -> tuple[list[dict], bool]:
    """Every frame received within ``seconds``; and whether the server closed the connection."""
    out: list[dict] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.append(orjson.loads(await asyncio.wait_for(ws.recv(), left)))
        except TimeoutError:
            break
        except websockets.ConnectionClosed:
            return out, True
    return out, False


@pytest.mark.integration
@pytest.mark.skipif(not HAS_LIMIT, reason=(
    "functions/opex_ws has no per-connection message rate limit yet (no WsSettings.ws_message_rate_per_s / "
    "ws_message_burst; handler.message() acts on every frame): contract in docs/reliability.md"))
def test_a_flooding_connection_is_rate_limited_and_others_are_not(settings: Settings, redis: redis_lib.Redis,
                                                                  tmp_path: Path) -> None:
    port = free_port()
    gateway = Proc("ws-gateway", [sys.executable, "-m", "opex_ws.local_gateway", "--host", "127.0.0.1",
                                  "--port", str(port)], settings, tmp_path,
                   WS_CALLBACK_URL=f"http://127.0.0.1:{port}", WS_MESSAGE_RATE_PER_S=str(RATE),
                   WS_MESSAGE_BURST=str(BURST), POWERTOOLS_LOG_LEVEL="WARNING").start()

    def listening() -> bool:
        import socket

        if not gateway.alive():
            raise RuntimeError(gateway.log_tail())
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        return False

    async def scenario() -> None:
        url = f"ws://127.0.0.1:{port}"
        flooder_jwt = issue_token("ws-flooder", "flooder@example.com", settings)[0]
        calm_jwt = issue_token("ws-calm", "calm@example.com", settings)[0]
        flooder = await websockets.connect(url, additional_headers={"Cookie": f"jwt={flooder_jwt}"})
        calm = await websockets.connect(url, additional_headers={"Cookie": f"jwt={calm_jwt}"})
        try:
            t0 = time.monotonic()
            for _ in range(FLOOD):
                await flooder.send('{"type":"ping"}')
            # meanwhile another connection is answered promptly
            await calm.send('{"type":"ping"}')
            calm_frames, _ = await _frames(calm, 2.0)
            assert calm_frames and calm_frames[0]["type"] == "pong", calm_frames
            frames, closed = await _frames(flooder, 3.0)
            elapsed = time.monotonic() - t0
            pongs = [f for f in frames if f["type"] == "pong"]
            limited = [f for f in frames if f["type"] == "error" and f.get("code") == "rate_limited"]
            assert len(pongs) <= BURST + RATE * elapsed + 2, f"{len(pongs)} of {FLOOD} flood messages acted on"
            assert limited, "the flood got no rate_limited error"
            assert len(limited) <= int(elapsed) + 2, f"{len(limited)} error frames: the answers flood too"
            assert all(f["message"] for f in limited)
            if not closed:  # not closed: once the bucket refills, the connection works again
                await asyncio.sleep(BURST / RATE + 0.5)
                await flooder.send('{"type":"ping"}')
                again, _ = await _frames(flooder, 2.0)
                assert any(f["type"] == "pong" for f in again), again
        finally:
            await flooder.close()
            await calm.close()

    try:
        wait_until(listening, 20, "the local gateway")
        asyncio.run(scenario())
    finally:
        gateway.stop()
