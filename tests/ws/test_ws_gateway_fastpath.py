"""The local gateway's @connections fast path (ConnectionsProtocol), in-process.

Raw HTTP on a real socket: pipelined requests, the stage prefix, the hand-over
of anything else to aiohttp (the WebSocket upgrade, a plain GET), malformed
requests, DELETE, frame encoding, and a client that does not read (the post
waits, then 410 and the client is closed with 1008).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import pytest
import websockets
from websockets.frames import Frame, Opcode

from opex_ws.local_gateway import LocalGateway, is_connections_target, serve, ws_frame
from tests.helpers import free_port

pytestmark = pytest.mark.integration  # real sockets on 127.0.0.1


def test_frames_are_valid_websocket_frames() -> None:
    from websockets.streams import StreamReader

    for n in (0, 1, 125, 126, 65535, 65536, 128 * 1024):
        for text in (True, False):
            payload = b"a" * n
            reader = StreamReader()
            reader.feed_data(ws_frame(payload, text))
            parser = Frame.parse(reader.read_exact, mask=False)
            try:
                next(parser)
            except StopIteration as done:
                frame = done.value
            assert frame.opcode == (Opcode.TEXT if text else Opcode.BINARY) and frame.fin and frame.data == payload


def test_what_the_fast_path_takes() -> None:
    assert is_connections_target(b"/@connections/abc%3D")
    assert is_connections_target(b"/local/@connections/abc")
    assert is_connections_target(b"/@connections/abc?x=1")
    assert not is_connections_target(b"/")
    assert not is_connections_target(b"/?ticket=x")
    assert not is_connections_target(b"/a/b/@connections/abc")
    assert not is_connections_target(b"/@connections/")


class Gateway:
    def __init__(self, **kw: Any) -> None:
        self.connected: list[str] = []

        def handler(event: dict[str, Any], _ctx: Any) -> dict[str, Any]:
            ctx = event["requestContext"]
            if ctx["routeKey"] == "$connect":
                self.connected.append(ctx["connectionId"])
            return {"statusCode": 200}

        self.gateway = LocalGateway(handler, stage="local", **kw)
        self.port = free_port()
        self.stop = asyncio.Event()

    async def __aenter__(self) -> Gateway:
        self.task = asyncio.ensure_future(serve(self.gateway, "127.0.0.1", self.port, self.stop))
        for _ in range(100):
            with contextlib.suppress(OSError):
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return self
            await asyncio.sleep(0.05)
        raise RuntimeError("gateway not listening")

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 20)

    async def client(self) -> tuple[Any, str]:
        before = len(self.connected)
        ws = await websockets.connect(f"ws://127.0.0.1:{self.port}/", max_queue=None)
        while len(self.connected) == before:
            await asyncio.sleep(0.01)
        return ws, self.connected[-1]

    async def http(self, raw: bytes, responses: int = 1) -> list[tuple[int, dict[str, str], bytes]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(raw)
        out = []
        try:
            for _ in range(responses):
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                out.append((int(lines[0].split(" ")[1]), headers, body))
        finally:
            writer.close()
        return out


def post(path: str, body: bytes, *, close: bool = False) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def test_pipelined_posts_stage_prefix_and_errors() -> None:
    async def main() -> None:
        async with Gateway() as gw:
            ws, cid = await gw.client()
            quoted = cid.replace("=", "%3D")
            raw = (post(f"/@connections/{quoted}", b'{"n":1}') + post(f"/local/@connections/{quoted}", b'{"n":2}')
                   + post(f"/other/@connections/{quoted}", b'{"n":3}') + post("/@connections/nope%3D", b"{}")
                   + f"GET /@connections/{quoted} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                   + post(f"/@connections/{quoted}", b"\xff\xfe", close=True))
            answers = await gw.http(raw, responses=6)
            assert [a[0] for a in answers] == [200, 200, 410, 410, 200, 200]
            assert answers[2][1]["x-amzn-errortype"] == "GoneException"
            assert answers[4][2].startswith(b'{"connectedAt":')
            assert answers[5][1]["connection"] == "close"
            assert await asyncio.wait_for(ws.recv(), 5) == '{"n":1}'
            assert await asyncio.wait_for(ws.recv(), 5) == '{"n":2}'
            assert await asyncio.wait_for(ws.recv(), 5) == b"\xff\xfe"  # not UTF-8: a binary frame

            too_big = await gw.http(post(f"/@connections/{quoted}", b"x" * (129 * 1024)))
            assert too_big[0][0] == 413 and too_big[0][1]["x-amzn-errortype"] == "PayloadTooLargeException"
            bad = await gw.http(b"POST /@connections/x HTTP/1.1\r\nContent-Length: zz\r\n\r\n")
            assert bad[0][0] == 400
            # anything else is aiohttp's, as before: a plain GET is told to upgrade
            plain = await gw.http(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert plain[0][0] == 426

            deleted = await gw.http(f"DELETE /@connections/{quoted} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert deleted[0][0] == 204
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1000
            gone = await gw.http(post(f"/@connections/{quoted}", b"{}"))
            assert gone[0][0] == 410

    asyncio.run(main())


def test_a_client_that_does_not_read_is_dropped() -> None:
    async def main() -> None:
        async with Gateway(send_timeout_s=0.5) as gw:
            ws, cid = await gw.client()
            quoted = cid.replace("=", "%3D")
            # stop reading on the client's side: its socket buffers fill up
            ws.transport.pause_reading()
            sock = ws.transport.get_extra_info("socket")
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            statuses = []
            chunk = b"x" * (120 * 1024)
            for _ in range(400):
                writer.write(post(f"/@connections/{quoted}", chunk))
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                status = int(head.split(b" ")[1])
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                await reader.readexactly(length)
                statuses.append(status)
                if status != 200:
                    break
            writer.close()
            assert statuses[-1] == 410 and set(statuses[:-1]) == {200}
            conn_gone = await gw.http(post(f"/@connections/{quoted}", b"{}"))
            assert conn_gone[0][0] == 410
            assert cid not in gw.gateway.connections or gw.gateway.connections[cid].ws.closed
            ws.transport.abort()

    asyncio.run(main())
