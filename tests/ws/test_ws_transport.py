"""The pusher's KeepAliveTransport under boto3's client (transport.py).

Against a scripted HTTP server on 127.0.0.1 (real sockets): the request on the
wire is the one botocore's own session sends (same signed headers, body and
target), keep-alive reuse, every response framing, a stale connection, network
failures as botocore's exceptions, and the fallbacks (botocore's session for a
request it declines, no attach on an unexpected client). Plus: under moto the
transport is attached but moto still answers (its before-send hook comes first).
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import (
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from opex_engine.pusher.config import PusherSettings, available_cpus, push_processes
from opex_engine.pusher.poster import GONE, OK, Poster
from opex_engine.pusher.transport import KeepAliveTransport
from tests.ws.support import (
    MOTO_CALLBACK_URL,
    OK_200,
    HttpServer,
    MotoApi,
    answer_ok_or_gone,
    tls_server,
)

pytestmark = pytest.mark.integration  # real sockets on 127.0.0.1

def client_for(url: str, keepalive: bool = True, read_timeout: float = 3.0) -> tuple[Any, KeepAliveTransport]:
    client = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local",
                                   region_name="us-east-1").client(
        "apigatewaymanagementapi", endpoint_url=url,
        config=Config(parameter_validation=False, retries={"total_max_attempts": 1},
                      read_timeout=read_timeout, connect_timeout=1))
    transport = KeepAliveTransport(url, connect_timeout=1, read_timeout=read_timeout, max_connections=4)
    if keepalive:
        assert transport.attach(client)
    return client, transport


def parse(request: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, body


def test_the_request_on_the_wire_is_botocores(server_factory: Callable[..., HttpServer]) -> None:
    server = server_factory(lambda req, i: OK_200)
    plain, _ = client_for(server.url, keepalive=False)
    lean, transport = client_for(server.url)
    data = b'{"type":"prices","n":1}'
    plain.post_to_connection(ConnectionId="BFHPhfCWIAMCKlQ=", Data=data)
    lean.post_to_connection(ConnectionId="BFHPhfCWIAMCKlQ=", Data=data)
    assert transport.requests == 1 and transport.declined == 0
    (line_a, headers_a, body_a), (line_b, headers_b, body_b) = (parse(r) for r in server.requests)
    assert line_a == line_b == "POST /@connections/BFHPhfCWIAMCKlQ%3D HTTP/1.1"
    assert body_a == body_b == data
    assert set(headers_a) == set(headers_b)  # Host, Content-Length, X-Amz-Date, Authorization, User-Agent...
    for name in ("host", "content-length", "user-agent", "accept-encoding"):
        assert headers_a[name] == headers_b[name], name
    assert headers_b["authorization"].startswith("AWS4-HMAC-SHA256 Credential=local/")
    assert "SignedHeaders=host;x-amz-date" in headers_b["authorization"]


def test_keep_alive_and_the_modelled_errors(server_factory: Callable[..., HttpServer]) -> None:
    server = server_factory(answer_ok_or_gone)
    client, transport = client_for(server.url)
    for i in range(20):
        client.post_to_connection(ConnectionId=f"c{i}", Data=b"{}")
    with pytest.raises(client.exceptions.GoneException) as gone:
        client.post_to_connection(ConnectionId="gone", Data=b"{}")
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    client.post_to_connection(ConnectionId="after", Data=b"{}")
    assert server.connections == 1 and transport.connections_opened == 1 and transport.requests == 22


@pytest.mark.parametrize("response", [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
])
def test_response_framings(server_factory: Callable[..., HttpServer], response: bytes) -> None:
    server = server_factory(lambda req, i: response)
    client, transport = client_for(server.url)
    for i in range(3):
        client.post_to_connection(ConnectionId=f"c{i}", Data=b"{}")
    closes = b"Connection: close" in response or response.startswith(b"HTTP/1.0")
    assert server.connections == (3 if closes else 1)
    assert transport.requests == 3


def test_a_body_that_runs_to_the_end_of_the_connection() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    def serve() -> None:  # answers without a length, then closes
        conn, _ = sock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n{}")

    threading.Thread(target=serve, daemon=True).start()
    try:
        client, transport = client_for(url)
        client.post_to_connection(ConnectionId="c", Data=b"{}")
        assert transport.requests == 1 and not transport._idle
    finally:
        sock.close()


@pytest.mark.parametrize("check_idle_after_s", [0.0, 60.0])  # noticed before reuse / by the retry-once
def test_a_connection_the_server_closed_while_idle_is_not_reused(server_factory: Callable[..., HttpServer],
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 check_idle_after_s: float) -> None:
    from opex_engine.pusher import transport as transport_module

    monkeypatch.setattr(transport_module, "_CHECK_IDLE_AFTER_S", check_idle_after_s)
    server = server_factory(lambda req, i: OK_200)
    server.close_after_answer = True
    client, transport = client_for(server.url)
    for i in range(3):
        client.post_to_connection(ConnectionId=f"c{i}", Data=b"{}")
        time.sleep(0.05)
    assert transport.connections_opened == 3 and transport.requests == 3 and server.connections == 3
    assert len(server.requests) == 3  # nothing sent twice


def test_a_server_that_closes_mid_exchange_retries_once_then_fails(server_factory: Callable[..., HttpServer]) -> None:
    server = server_factory(lambda req, i: OK_200 if i == 0 else None)
    client, transport = client_for(server.url)
    client.post_to_connection(ConnectionId="a", Data=b"{}")  # connection 0, kept
    server.respond = lambda req, i: None  # from now on: read the request, close without answering
    with pytest.raises(ConnectionClosedError):
        client.post_to_connection(ConnectionId="b", Data=b"{}")
    # the reused connection failed, one fresh one was tried, and nothing more
    assert len(server.requests) == 3


def test_timeouts_and_refused_connections(server_factory: Callable[..., HttpServer]) -> None:
    server = server_factory(lambda req, i: (time.sleep(1.5), OK_200)[1])
    client, _ = client_for(server.url, read_timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        client.post_to_connection(ConnectionId="slow", Data=b"{}")
    assert time.monotonic() - t0 < 1.2

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client, _ = client_for(f"http://127.0.0.1:{port}")
    with pytest.raises(EndpointConnectionError):
        client.post_to_connection(ConnectionId="x", Data=b"{}")


def test_what_it_declines_goes_to_botocores_session(server_factory: Callable[..., HttpServer]) -> None:
    server = server_factory(lambda req, i: OK_200)
    client, transport = client_for(server.url)
    sent: list[Any] = []

    class Fallback:
        def send(self, request: Any) -> Any:
            sent.append(request)
            return "fallback"

        def close(self) -> None:
            pass

    transport._fallback = Fallback()

    class Req:
        url = f"{server.url}/@connections/x"
        method = "POST"
        headers = {"Content-Length": "2"}
        body: Any = io.BytesIO(b"{}")  # a stream: not this transport's business
        stream_output = False

    assert transport.send(Req()) == "fallback"
    Req.body = b"{}"
    Req.headers = {"Expect": "100-continue", "Content-Length": "2"}
    assert transport.send(Req()) == "fallback"
    Req.headers = {"Content-Length": "2"}
    Req.url = "http://elsewhere.example/@connections/x"
    assert transport.send(Req()) == "fallback"
    Req.url = f"{server.url}/@connections/x"
    Req.headers = {"X-Bad": "a\r\nInjected: 1", "Content-Length": "2"}
    assert transport.send(Req()) == "fallback"
    assert len(sent) == 4 and transport.declined == 4 and not server.requests


def test_attach_only_to_the_expected_shape(server_factory: Callable[..., HttpServer],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    server = server_factory(lambda req, i: OK_200)
    transport = KeepAliveTransport(server.url, connect_timeout=1, read_timeout=1)
    assert not transport.attach(object())
    proxied = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1").client(
        "apigatewaymanagementapi", endpoint_url=server.url, config=Config(proxies={"http": "http://proxy:3128"}))
    assert not transport.attach(proxied)
    other, _ = client_for("http://127.0.0.1:1", keepalive=False)
    assert not transport.attach(other)  # a different endpoint
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "")
    env_proxied, _ = client_for(server.url, keepalive=False)
    assert not KeepAliveTransport(server.url, connect_timeout=1, read_timeout=1).attach(env_proxied)
    monkeypatch.delenv("HTTP_PROXY")
    client, t = client_for(server.url)
    assert not KeepAliveTransport(server.url, connect_timeout=1, read_timeout=1).attach(client)  # not twice
    with pytest.raises(ValueError):
        KeepAliveTransport("ftp://x", connect_timeout=1, read_timeout=1)


def test_the_poster_uses_it_and_counts_outcomes(server_factory: Callable[..., HttpServer]) -> None:
    server = server_factory(answer_ok_or_gone)
    s = PusherSettings(environment="test", key_prefix="unit", ws_callback_url=server.url, ws_push_concurrency=2)
    poster = Poster(s)
    try:
        assert poster.transport is not None
        assert poster.post("c1", b"{}")[0] == OK
        assert poster.post("gone", b"{}")[0] == GONE
        assert poster.transport.requests == 2
    finally:
        poster.close()
    plain = Poster(PusherSettings(environment="test", key_prefix="unit", ws_callback_url=server.url,
                                  ws_push_concurrency=2, ws_push_transport="botocore"))
    try:
        assert plain.transport is None and plain.post("c1", b"{}")[0] == OK
    finally:
        plain.close()


def test_under_moto_the_transport_is_attached_but_moto_answers(moto_api: MotoApi) -> None:
    s = PusherSettings(environment="test", key_prefix="unit", ws_callback_url=MOTO_CALLBACK_URL, ws_push_concurrency=2)
    poster = Poster(s)
    try:
        assert poster.transport is not None
        assert poster.post("m1", b'{"x":1}')[0] == OK
        assert poster.transport.requests == 0  # moto's before-send hook answered
        assert moto_api.frames("m1") == [{"x": 1}]
    finally:
        poster.close()


def test_poster_jobs_run_in_its_threads_and_close_drops_the_rest() -> None:
    s = PusherSettings(environment="test", key_prefix="unit", ws_callback_url="http://127.0.0.1:9",
                       ws_push_concurrency=2, ws_push_mode="threads")
    poster = Poster(s)
    done: list[int] = []
    gate = threading.Event()
    poster.submit(lambda: (gate.wait(2), done.append(1)))
    poster.submit(lambda: (gate.wait(2), done.append(2)))
    for i in range(10):
        poster.submit(done.append, 100 + i)
    poster.submit(lambda: 1 / 0)  # a failing job does not kill its thread
    gate.set()
    time.sleep(0.3)
    assert sorted(done)[:2] == [1, 2] and len(done) == 12
    poster.close()
    with pytest.raises(RuntimeError):
        poster.submit(done.append, 0)


def test_auto_processes() -> None:
    assert push_processes(PusherSettings(_env_file=None, ws_push_processes=3)) == 3
    auto = push_processes(PusherSettings(_env_file=None, ws_push_processes=0))
    assert 1 <= auto <= 4 and auto == min(4, available_cpus())


def test_tls_endpoints(tmp_path: Path) -> None:
    """HTTPS as to API Gateway: the certificate is verified (hostname included)."""
    server, cert = tls_server(tmp_path)
    try:
        client = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1").client(
            "apigatewaymanagementapi", endpoint_url=server.url, verify=str(cert),
            config=Config(retries={"total_max_attempts": 1}))
        transport = KeepAliveTransport(server.url, connect_timeout=2, read_timeout=3)
        assert transport.attach(client)  # and takes the client's CA bundle (verify=...)
        for i in range(3):
            client.post_to_connection(ConnectionId=f"c{i}", Data=b"{}")
        with pytest.raises(client.exceptions.GoneException):
            client.post_to_connection(ConnectionId="gone", Data=b"{}")
        assert transport.requests == 4 and transport.connections_opened == 1
        line, headers, _ = parse(server.requests[0])
        assert headers["host"] == f"localhost:{server.port}"

        # an untrusted certificate: the default context (certifi / AWS_CA_BUNDLE) refuses it
        untrusting = KeepAliveTransport(server.url, connect_timeout=2, read_timeout=3)
        other = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1").client(
            "apigatewaymanagementapi", endpoint_url=server.url, config=Config(retries={"total_max_attempts": 1}))
        assert untrusting.attach(other)
        with pytest.raises(EndpointConnectionError):
            other.post_to_connection(ConnectionId="c", Data=b"{}")
        insecure = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b",
                                         region_name="us-east-1").client(
            "apigatewaymanagementapi", endpoint_url=server.url, verify=False)
        assert not KeepAliveTransport(server.url, connect_timeout=2, read_timeout=3).attach(insecure)
    finally:
        server.close()
