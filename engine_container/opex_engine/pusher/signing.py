"""SigV4 for the pusher's posts, without re-deriving what does not change between them.

Signing was ~38 % of the CPU of one ``post_to_connection`` (measured: ~300 µs
per post signed, ~190 µs with signing switched off). Most of it is constant
from one post to the next: the signing key (four HMACs of the secret, the
date, the region and the service), the host, the canonical path of a
connection's URL (``urlsplit`` + ``quote`` twice), and botocore's headers
passing through ``email.message`` objects several times.

``CachedSigV4Auth`` is botocore's ``SigV4Auth`` (a subclass) that produces the
same ``Authorization`` header with those pieces cached: the key per (secret,
date, region, service), the path/query/host per URL. Everything that varies is
computed per request as botocore does: the timestamp, the headers (incl. the
session token of rotating task-role credentials, read from the credentials
botocore hands the signer for each request), the body hash. Anything unusual
(query parameters in ``request.params``, a non-ASCII or non-``str`` header, a
``Date`` header) is signed by botocore's own code.

How it is plugged in, through botocore's own extension points only: the class
is added to ``botocore.auth.AUTH_TYPE_MAPS`` under its own name (nothing
botocore registered is replaced), and a ``choose-signer`` handler on the
pusher's client picks it where botocore would pick plain ``v4`` (never for
presigning, ``v4a``, S3 or unsigned operations). ``enable`` first signs
sample requests with both signers and enables nothing unless the headers are
identical (so a botocore upgrade that changed SigV4 keeps botocore's signer);
tests/ws/test_ws_signing.py compares the two on generated requests.
"""

from __future__ import annotations

import hmac
import logging
from hashlib import sha256
from typing import Any
from urllib.parse import urlsplit

import botocore.auth
from botocore.auth import EMPTY_SHA256_HASH, SIGNED_HEADERS_BLACKLIST, SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials
from botocore.exceptions import NoCredentialsError

log = logging.getLogger("opex.pusher")

SIGNATURE_VERSION = "opex-v4-cached"
_SKIP = frozenset(SIGNED_HEADERS_BLACKLIST)
_MAX_URLS = 100_000
_MAX_KEYS = 64


class _UrlOnly:
    """Just enough of a request for ``SigV4Auth.headers_to_sign`` to derive the host."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.headers = HTTPHeaders()


class CachedSigV4Auth(SigV4Auth):
    """botocore's SigV4 with the per-URL and per-day pieces cached (see the module docstring)."""

    # botocore creates one signer object per request: the caches are the class's
    _urls: dict[str, tuple[str, str, str]] = {}  # url -> (canonical path, canonical query, host)
    _keys: dict[tuple[str, str, str, str], bytes] = {}  # (secret, yyyymmdd, region, service) -> key
    _last_body: tuple[bytes | None, str] = (None, "")  # the last body signed, and its SHA-256

    def add_auth(self, request: Any) -> None:
        if self.credentials is None:
            raise NoCredentialsError()
        if request.params or "Date" in request.headers:
            super().add_auth(request)
            return
        # as botocore: module attribute looked up per call (tests may freeze it)
        timestamp = botocore.auth.get_current_datetime().strftime(SIGV4_TIMESTAMP)
        if not self.sign_at(request, timestamp):
            super().add_auth(request)

    def sign_at(self, request: Any, timestamp: str) -> bool:
        """Sign ``request`` as of ``timestamp``; False (request untouched) if it
        is not one of the simple cases this class handles."""
        headers = request.headers
        signed: dict[str, list[str]] = {}
        for name, value in headers.raw_items():
            if name.__class__ is not str or value.__class__ is not str or not (name.isascii() and value.isascii()):
                return False
            lname = name.lower()
            if lname == "authorization" or lname == "x-amz-date" or lname == "x-amz-security-token":
                continue  # replaced below, as _modify_request_before_signing does
            if lname == "date":
                return False
            if lname not in _SKIP:
                signed.setdefault(lname, []).append(value)
        url = request.url
        parts = self._urls.get(url)
        if parts is None:
            split = urlsplit(url)
            host = SigV4Auth.headers_to_sign(self, _UrlOnly(url))["host"]
            parts = (self._normalize_url_path(split.path), self._canonical_query_string_url(split), host)
            if len(self._urls) >= _MAX_URLS:
                self._urls.clear()
            self._urls[url] = parts
        path, query, host = parts

        request.context["timestamp"] = timestamp
        # what _modify_request_before_signing does for a request without a Date header
        if "Authorization" in headers:
            del headers["Authorization"]
        if "X-Amz-Date" in headers:
            del headers["X-Amz-Date"]
        headers["X-Amz-Date"] = timestamp
        signed["x-amz-date"] = [timestamp]
        token = self.credentials.token
        if token:
            if "X-Amz-Security-Token" in headers:
                del headers["X-Amz-Security-Token"]
            headers["X-Amz-Security-Token"] = token
            signed["x-amz-security-token"] = [token]
        if not request.context.get("payload_signing_enabled", True) and "X-Amz-Content-SHA256" in headers:
            del headers["X-Amz-Content-SHA256"]
            signed.pop("x-amz-content-sha256", None)
        if "host" not in signed:
            signed["host"] = [host]

        names = sorted(signed)
        canonical_headers = "\n".join(f"{n}:{','.join(' '.join(v.split()) for v in signed[n])}" for n in names)
        signed_headers = ";".join(names)
        checksum = signed.get("x-amz-content-sha256")
        body_hash = headers["X-Amz-Content-SHA256"] if checksum else self._body_hash(request)
        canonical = "\n".join((request.method.upper(), path, query, canonical_headers + "\n", signed_headers,
                               body_hash))
        day = timestamp[:8]
        scope = f"{day}/{self._region_name}/{self._service_name}/aws4_request"
        string_to_sign = f"AWS4-HMAC-SHA256\n{timestamp}\n{scope}\n{sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(day), string_to_sign.encode(), sha256).hexdigest()
        headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.credentials.access_key}/{scope}, "
                                    f"SignedHeaders={signed_headers}, Signature={signature}")
        return True

    def _body_hash(self, request: Any) -> str:
        """``SigV4Auth.payload`` without ``request.body``, which prepares the whole
        request (headers included) just to read the body; the hash of the last
        body is kept: every connection of a tick is sent the same bytes object."""
        data = request.data
        if (data.__class__ is not bytes or self._is_streaming_checksum_payload(request)
                or not self._should_sha256_sign_payload(request)):
            return str(self.payload(request))
        if not data:
            return EMPTY_SHA256_HASH
        last = CachedSigV4Auth._last_body
        if last[0] is data:
            return last[1]
        digest = sha256(data).hexdigest()
        CachedSigV4Auth._last_body = (data, digest)  # one tuple: atomic for the posting threads
        return digest

    def _signing_key(self, day: str) -> bytes:
        secret = self.credentials.secret_key
        cache_key = (secret, day, self._region_name, self._service_name)
        key = self._keys.get(cache_key)
        if key is None:
            k = hmac.new(f"AWS4{secret}".encode(), day.encode(), sha256).digest()
            k = hmac.new(k, self._region_name.encode(), sha256).digest()
            k = hmac.new(k, self._service_name.encode(), sha256).digest()
            key = hmac.new(k, b"aws4_request", sha256).digest()
            if len(self._keys) >= _MAX_KEYS:
                self._keys.clear()
            self._keys[cache_key] = key
        return key


def reference_sign(request: Any, credentials: Any, service: str, region: str, timestamp: str) -> None:
    """botocore's own ``SigV4Auth.add_auth`` as of ``timestamp`` (its body, minus reading the clock)."""
    ref = SigV4Auth(credentials, service, region)
    request.context["timestamp"] = timestamp
    ref._modify_request_before_signing(request)
    canonical = ref.canonical_request(request)
    string_to_sign = ref.string_to_sign(request, canonical)
    ref._inject_signature_to_request(request, ref.signature(string_to_sign, request))


def _sample(url: str, body: bytes) -> AWSRequest:
    req = AWSRequest(method="POST", url=url, data=body,
                     headers={"User-Agent": "Boto3/1 md/Botocore#1 ua/2.1 os/linux",
                              "Content-Length": str(len(body)), "amz-sdk-invocation-id": "x"})
    return req  # botocore signs the request before preparing it


def self_check(endpoint_url: str = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod") -> bool:
    """True if ``CachedSigV4Auth`` signs sample requests exactly as botocore's ``SigV4Auth``."""
    base = endpoint_url.rstrip("/")
    ids = ("BFHPhfCWIAMCKlQ=", "a%2Fb", "conn-1")
    for token in (None, "session-token/with+chars="):
        creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token).get_frozen_credentials()
        for cid in ids:
            for ts in ("20240102T030405Z", "20240103T000000Z"):
                url = f"{base}/@connections/{cid.replace('=', '%3D')}"
                body = b'{"type":"prices","prices":{}}'
                a, b = _sample(url, body), _sample(url, body)
                reference_sign(a, creds, "execute-api", "eu-west-1", ts)
                if not CachedSigV4Auth(creds, "execute-api", "eu-west-1").sign_at(b, ts):
                    return False
                if sorted(a.headers.items()) != sorted(b.headers.items()):
                    return False
    return True


def _choose_signer(signature_version: Any = None, context: Any = None, **_: Any) -> str | None:
    """A ``choose-signer`` handler: the cached signer where botocore would use plain v4."""
    if signature_version != "v4" or not isinstance(context, dict):
        return None
    if context.get("auth_type") not in (None, "v4") or context.get("unsigned_payload"):
        return None
    return SIGNATURE_VERSION


def enable(client: Any) -> bool:
    """Use ``CachedSigV4Auth`` for ``client``'s SigV4 requests. False (nothing
    changed) if botocore's SigV4 no longer matches it, or the client lacks the hooks."""
    try:
        maps = botocore.auth.AUTH_TYPE_MAPS
        if maps.get("v4") is not SigV4Auth:
            return False
        if maps.get(SIGNATURE_VERSION) is not CachedSigV4Auth:
            if SIGNATURE_VERSION in maps or not self_check(client.meta.endpoint_url):
                log.warning("botocore's SigV4 differs from the cached signer; using botocore's")
                return False
            maps[SIGNATURE_VERSION] = CachedSigV4Auth
        service_id = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register_first(f"choose-signer.{service_id}", _choose_signer,
                                          unique_id="opex-cached-sigv4")
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        log.warning("cached SigV4 signer not enabled", extra={"error": repr(exc)[:200]})
        return False
    return True
