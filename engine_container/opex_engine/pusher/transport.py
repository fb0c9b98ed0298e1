"""A lean HTTP/1.1 keep-alive transport under boto3's client.

boto3's ``post_to_connection`` still does everything it always does here:
parameter serialization, endpoint resolution, SigV4 signing, response parsing
and its modelled errors (``GoneException``...). Only the last step, writing the
signed request on a socket and reading the answer, is done by this module
instead of urllib3 + ``http.client``: this object takes the place of the
client's HTTP session (``client._endpoint.http_session``, whose one method is
``send(prepared_request) -> AWSResponse``), with botocore's own session kept
as the fallback. Everything above the session, including the ``before-send``
event through which moto and botocore's Stubber answer, is unchanged.

Why: profiled against the local gateway, one post cost ~750 µs of CPU, and
~500 µs of it was urllib3 and ``http.client`` (two ``sendall`` calls per
request, header parsing through the ``email`` package, the pool bookkeeping).
This transport writes each request with one ``sendall`` and parses the
response head by hand: ~25 µs. The endpoint is whatever ``endpoint_url`` the
client has (plain HTTP to the local gateway, HTTPS to API Gateway); nothing
here knows which.

Robustness: anything it is not sure about (a body that is not bytes, a
streaming request, ``Expect: 100-continue``, chunked uploads, a proxy, a URL
for another host) hands the request to botocore's own session. A client without the expected
shape (``_endpoint.http_session.send``) is left as it is (``attach`` returns
False). Network failures raise botocore's own exceptions
(``EndpointConnectionError``, ``ConnectTimeoutError``, ``ReadTimeoutError``,
``ConnectionClosedError``), exactly what its urllib3 session raises. A keep-alive
connection idle for over a second that the server has closed is detected
before reuse (as urllib3 does), and a request that fails on a reused connection before any
byte of a response arrived is sent once more on a fresh one.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from botocore.awsrequest import AWSResponse
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from .cooperative import current_hub

_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
_DECLINE_HEADERS = frozenset({"expect", "transfer-encoding", "connection"})
_BAD_VALUE = re.compile(r"[\r\n\x00]")


class _Body:
    """The ``raw`` of an AWSResponse: botocore reads it with ``stream()``."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        if self._data:
            yield self._data

    def read(self, *_: Any, **__: Any) -> bytes:
        data, self._data = self._data, b""
        return data

    def close(self) -> None:
        self._data = b""


class _NotSent(Exception):
    """The request could not be written, or the connection closed before any
    byte of a response: safe to send again on a fresh connection."""


# a connection idle for less than this is reused without asking the kernel
# whether the peer closed it: one syscall (and one GIL hand-off between the
# posting threads) less per post; the rare race is covered by the retry-once
_CHECK_IDLE_AFTER_S = 1.0


class _Conn:
    __slots__ = ("sock", "buf", "used", "idle_since", "nonblocking")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.used = False
        self.idle_since = 0.0
        self.nonblocking = False  # set once a hub greenlet used it (cooperative.py)

    def dropped(self) -> bool:
        """True if the peer closed it (or sent something unasked) while idle."""
        if self.buf:
            return True
        if time.monotonic() - self.idle_since < _CHECK_IDLE_AFTER_S:
            return False
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class KeepAliveTransport:
    """A pool of persistent HTTP/1.1 connections to one endpoint, used as
    botocore's ``before-send`` handler (see the module docstring)."""

    def __init__(self, endpoint_url: str, *, connect_timeout: float, read_timeout: float,
                 max_connections: int = 10, tcp_keepalive: bool = True,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"unsupported endpoint URL: {endpoint_url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or _DEFAULT_PORTS[parts.scheme]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if parts.port in (None, _DEFAULT_PORTS[parts.scheme]) else f"{host}:{parts.port}"
        # requests this transport takes: same scheme, host and port as the endpoint
        self.origin = f"{self.scheme}://{parts.netloc.rsplit('@', 1)[-1].lower()}"
        self.endpoint_url = endpoint_url
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_connections = max(1, max_connections)
        self.tcp_keepalive = tcp_keepalive
        self._explicit_ssl = ssl_context is not None
        self._ssl = ssl_context if ssl_context is not None or self.scheme == "http" else _default_ssl_context()
        self._fallback: Any = None  # botocore's own session, for what this one declines
        self._idle: list[_Conn] = []
        self._lock = threading.Lock()
        self.requests = 0
        self.declined = 0
        self.connections_opened = 0

    # ---------------------------------------------------------------- botocore
    def attach(self, client: Any) -> bool:
        """Become ``client``'s HTTP session, keeping botocore's own session as
        the fallback. False (and nothing changed) if the client does not have
        the expected shape, or if a proxy or a different endpoint makes
        botocore's own transport the right one."""
        try:
            if getattr(client.meta.config, "proxies", None):
                return False
            if client.meta.endpoint_url.rstrip("/") != self.endpoint_url.rstrip("/"):
                return False
            from botocore.utils import get_environ_proxies, should_bypass_proxies

            if get_environ_proxies(self.endpoint_url) and not should_bypass_proxies(self.endpoint_url):
                return False
            endpoint = client._endpoint
            original = endpoint.http_session
            if not callable(getattr(original, "send", None)) or isinstance(original, KeepAliveTransport):
                return False
            # the client's ``verify``: False (no verification) stays botocore's business; a CA
            # bundle path is used here too (unless a context was given)
            verify = getattr(original, "_verify", True)
            if verify is False:
                return False
            if isinstance(verify, str) and self.scheme == "https" and not self._explicit_ssl:
                self._ssl = _default_ssl_context(verify)
            self._fallback = original
            endpoint.http_session = self
        except (AttributeError, TypeError, ValueError):
            return False
        return True

    def send(self, request: Any) -> Any:
        """botocore's ``http_session.send``: an ``AWSResponse`` for a prepared request."""
        wire = self._encode(request)
        if wire is None:
            self.declined += 1
            if self._fallback is None:
                raise ValueError("request not supported by KeepAliveTransport and no fallback session")
            return self._fallback.send(request)
        head_only = request.method == "HEAD"
        for attempt in (0, 1):
            conn = self._acquire()
            try:
                status, headers, body, keep = self._exchange(conn, wire, head_only)
            except _NotSent as exc:
                conn.close()
                if attempt == 0 and conn.used:
                    continue  # a stale keep-alive connection: once more on a fresh one
                raise ConnectionClosedError(endpoint_url=request.url) from exc.__cause__
            except BaseException:
                conn.close()
                raise
            conn.used = True
            if keep:
                self._release(conn)
            else:
                conn.close()
            self.requests += 1
            return AWSResponse(request.url, status, headers, _Body(body))
        raise AssertionError("unreachable")  # pragma: no cover

    # ---------------------------------------------------------------- request
    def _encode(self, request: Any) -> bytes | None:
        """The request's bytes on the wire, or None if this transport should not send it."""
        try:
            url, method, body, headers = request.url, request.method, request.body, request.headers
            if getattr(request, "stream_output", False) or not isinstance(url, str) or not isinstance(method, str):
                return None
            if body is None:
                body = b""
            elif isinstance(body, str):
                body = body.encode("utf-8")
            elif isinstance(body, bytearray | memoryview):
                body = bytes(body)
            elif not isinstance(body, bytes):
                return None  # a file or a stream: botocore's own transport
            origin, sep, rest = url.partition("://")
            host_end = rest.find("/")
            netloc, target = (rest, "/") if host_end < 0 else (rest[:host_end], rest[host_end:])
            if f"{origin}{sep}{netloc}".lower() != self.origin:
                return None
            target = target.split("#", 1)[0]
            lines = [f"{method} {target} HTTP/1.1"]
            seen: set[str] = set()
            declared: str | None = None
            for name, value in headers.items():
                if value.__class__ is bytes:
                    value = value.decode("latin-1")
                if name.__class__ is not str or value.__class__ is not str:
                    return None
                lower = name.lower()
                if lower == "content-length":
                    declared = value
                seen.add(lower)
                lines.append(f"{name}: {value}")
            # one scan for CR, LF or NUL anywhere (a header split in two) and ':' in a name
            if seen & _DECLINE_HEADERS or _BAD_VALUE.search("".join(lines)) or any(":" in n for n in seen):
                return None
            if "host" not in seen:
                lines.insert(1, f"Host: {self.host_header}")
            if declared is None:
                if body or method not in ("GET", "HEAD", "OPTIONS", "DELETE"):
                    lines.append(f"Content-Length: {len(body)}")
            elif not declared.strip().isdigit() or int(declared) != len(body):
                return None
            if "accept-encoding" not in seen:
                lines.append("Accept-Encoding: identity")
            lines.append("\r\n")
            return "\r\n".join(lines).encode("latin-1") + body
        except (AttributeError, TypeError, ValueError, UnicodeError):
            return None

    # ---------------------------------------------------------------- connections
    def _acquire(self) -> _Conn:
        hub = current_hub()
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._connect() if hub is None else hub.call_blocking(self._connect)
            elif conn.dropped():
                conn.close()
                continue
            if hub is not None and not conn.nonblocking:
                # from now on a wait on it goes through _wait (the hub's loop, or select)
                conn.sock.setblocking(False)
                conn.nonblocking = True
            return conn

    def _release(self, conn: _Conn) -> None:
        conn.idle_since = time.monotonic()
        with self._lock:
            if len(self._idle) < self.max_connections:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self) -> _Conn:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except TimeoutError as exc:
            raise ConnectTimeoutError(endpoint_url=self.endpoint_url, error=exc) from exc
        except OSError as exc:
            raise EndpointConnectionError(endpoint_url=self.endpoint_url, error=exc) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tcp_keepalive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.read_timeout)
        except TimeoutError as exc:
            sock.close()
            raise ConnectTimeoutError(endpoint_url=self.endpoint_url, error=exc) from exc
        except OSError as exc:  # incl. ssl.SSLError
            sock.close()
            raise EndpointConnectionError(endpoint_url=self.endpoint_url, error=exc) from exc
        self.connections_opened += 1
        return _Conn(sock)

    # ---------------------------------------------------------------- exchange
    def _exchange(self, conn: _Conn, wire: bytes, head_only: bool) -> tuple[int, dict[str, str], bytes, bool]:
        try:
            self._send_all(conn, wire)
        except TimeoutError as exc:
            raise ReadTimeoutError(endpoint_url=self.endpoint_url, error=exc) from exc
        except OSError as exc:
            raise _NotSent() from exc
        buf = conn.buf
        conn.buf = b""
        got_any = False
        while True:  # skip interim 1xx responses
            end = buf.find(b"\r\n\r\n")
            while end < 0:
                if len(buf) > _MAX_HEAD:
                    raise ConnectionClosedError(endpoint_url=self.endpoint_url)
                chunk = self._recv(conn, got_any)
                got_any = True
                buf += chunk
                end = buf.find(b"\r\n\r\n")
            head, buf = buf[:end], buf[end + 4:]
            status, headers, http10 = _parse_head(head, self.endpoint_url)
            if status >= 200 or status == 101:
                break
        conn_hdr = headers.get("connection", "").lower()
        keep = not http10 and "close" not in conn_hdr
        if http10 and "keep-alive" in conn_hdr:
            keep = True
        if head_only or status in (204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body, buf = self._read_chunked(conn, buf)
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError as exc:
                raise ConnectionClosedError(endpoint_url=self.endpoint_url) from exc
            if length < 0 or length > _MAX_BODY:
                raise ConnectionClosedError(endpoint_url=self.endpoint_url)
            while len(buf) < length:
                buf += self._recv(conn, True)
            body, buf = buf[:length], buf[length:]
        else:  # the body runs to the end of the connection
            parts = [buf]
            while True:
                try:
                    chunk = self._recv_some(conn)
                except TimeoutError as exc:
                    raise ReadTimeoutError(endpoint_url=self.endpoint_url, error=exc) from exc
                except OSError as exc:
                    raise ConnectionClosedError(endpoint_url=self.endpoint_url) from exc
                if not chunk:
                    break
                parts.append(chunk)
            body, buf, keep = b"".join(parts), b"", False
        conn.buf = buf
        return status, headers, body, keep

    # ---------------------------------------------------------------- socket I/O
    # A connection is blocking (its socket times out after read_timeout) until a
    # hub greenlet first uses it; from then on it is non-blocking and every wait
    # goes through _wait: the hub's event loop in a hub greenlet, select elsewhere.
    def _send_all(self, conn: _Conn, data: bytes) -> None:
        sock = conn.sock
        if not conn.nonblocking:
            sock.sendall(data)
            return
        view = memoryview(data)
        while view:
            try:
                sent = sock.send(view)
            except (BlockingIOError, ssl.SSLWantWriteError):
                self._wait(sock, True)
                continue
            except ssl.SSLWantReadError:  # TLS renegotiation wants the peer first
                self._wait(sock, False)
                continue
            view = view[sent:]

    def _recv_some(self, conn: _Conn) -> bytes:
        sock = conn.sock
        if not conn.nonblocking:
            return sock.recv(65536)
        while True:
            try:
                return sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                self._wait(sock, False)
            except ssl.SSLWantWriteError:
                self._wait(sock, True)

    def _wait(self, sock: socket.socket, write: bool) -> None:
        """Until ``sock`` is ready; TimeoutError after ``read_timeout`` (as a blocking socket would)."""
        hub = current_hub()
        if hub is not None:
            hub.wait_socket(sock, write, self.read_timeout)
            return
        if write:
            ready = select.select([], [sock], [], self.read_timeout)[1]
        else:
            ready = select.select([sock], [], [], self.read_timeout)[0]
        if not ready:
            raise TimeoutError("timed out")

    def _recv(self, conn: _Conn, got_any: bool) -> bytes:
        try:
            chunk = self._recv_some(conn)
        except TimeoutError as exc:
            raise ReadTimeoutError(endpoint_url=self.endpoint_url, error=exc) from exc
        except OSError as exc:
            if not got_any:
                raise _NotSent() from exc
            raise ConnectionClosedError(endpoint_url=self.endpoint_url) from exc
        if not chunk:
            if not got_any:
                raise _NotSent()
            raise ConnectionClosedError(endpoint_url=self.endpoint_url)
        return chunk

    def _read_chunked(self, conn: _Conn, buf: bytes) -> tuple[bytes, bytes]:
        parts: list[bytes] = []
        total = 0
        while True:
            end = buf.find(b"\r\n")
            while end < 0:
                buf += self._recv(conn, True)
                end = buf.find(b"\r\n")
            try:
                size = int(buf[:end].split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise ConnectionClosedError(endpoint_url=self.endpoint_url) from exc
            buf = buf[end + 2:]
            if size == 0:  # trailers, then an empty line
                while True:
                    end = buf.find(b"\r\n")
                    while end < 0:
                        buf += self._recv(conn, True)
                        end = buf.find(b"\r\n")
                    line, buf = buf[:end], buf[end + 2:]
                    if not line:
                        return b"".join(parts), buf
            total += size
            if total > _MAX_BODY:
                raise ConnectionClosedError(endpoint_url=self.endpoint_url)
            while len(buf) < size + 2:
                buf += self._recv(conn, True)
            parts.append(buf[:size])
            buf = buf[size + 2:]

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        if self._fallback is not None:
            with contextlib.suppress(Exception):
                self._fallback.close()


def _parse_head(head: bytes, url: str) -> tuple[int, dict[str, str], bool]:
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
        raise ConnectionClosedError(endpoint_url=url)
    try:
        status = int(status_line[1])
    except ValueError as exc:
        raise ConnectionClosedError(endpoint_url=url) from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return status, headers, status_line[0] == "HTTP/1.0"


def _default_ssl_context(cafile: str | None = None) -> ssl.SSLContext:
    """Certificates as botocore finds them: the client's bundle, AWS_CA_BUNDLE, else certifi, else the system's."""
    cafile = cafile or os.environ.get("AWS_CA_BUNDLE")
    if not cafile:
        with contextlib.suppress(ImportError):
            import certifi

            cafile = certifi.where()
    ctx = ssl.create_default_context(cafile=cafile or None)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
