"""The pusher's cached SigV4 signer (pusher/signing.py) against botocore's own SigV4Auth.

The requests are the real ones of boto3's ``apigatewaymanagementapi`` client,
captured at ``before-send`` (nothing leaves the process), with botocore's
clock frozen: with the cached signer enabled the request on the wire, the
``Authorization`` header included, must be byte for byte what botocore's
signer produces.
"""

from __future__ import annotations

import datetime
from typing import Any
from unittest import mock

import boto3
import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from opex_engine.pusher import signing
from opex_engine.pusher.config import PusherSettings
from opex_engine.pusher.poster import Poster

pytestmark = pytest.mark.unit

AWS_URL = "https://abc123defg.execute-api.eu-west-1.amazonaws.com/prod"
LOCAL_URL = "http://127.0.0.1:8001"


class _Body:
    def stream(self, **_: Any) -> Any:
        return iter(())


def client(url: str, *, cached: bool, token: str | None = None, region: str = "eu-west-1") -> tuple[Any, list[Any]]:
    session = boto3.session.Session(aws_access_key_id="AKIDEXAMPLE",
                                    aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                    aws_session_token=token, region_name=region)
    c = session.client("apigatewaymanagementapi", endpoint_url=url,
                       config=Config(parameter_validation=False, retries={"total_max_attempts": 1}))
    sent: list[Any] = []

    def capture(request: Any, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, {}, _Body())

    c.meta.events.register("before-send.apigatewaymanagementapi", capture)
    if cached:
        assert signing.enable(c)
    return c, sent


def frozen(at: datetime.datetime) -> Any:
    return mock.patch.object(botocore.auth, "get_current_datetime", lambda: at)


def wire(request: Any) -> tuple[str, str, list[tuple[str, str]], bytes]:
    skip = {"amz-sdk-invocation-id"}  # a fresh uuid per call
    headers = sorted((k, v if isinstance(v, str) else v.decode()) for k, v in request.headers.items()
                     if k.lower() not in skip)
    return request.method, request.url, headers, request.body


AT = datetime.datetime(2024, 5, 6, 7, 8, 9)


@pytest.mark.parametrize("url", [AWS_URL, LOCAL_URL, "http://localhost:4510/local"])
@pytest.mark.parametrize("token", [None, "IQoJb3JpZ2luX2VjE/session+token=="])
def test_the_wire_request_is_botocores(url: str, token: str | None) -> None:
    plain, plain_sent = client(url, cached=False, token=token)
    cached, cached_sent = client(url, cached=True, token=token)
    spy = mock.patch.object(signing.CachedSigV4Auth, "sign_at", autospec=True,
                            side_effect=signing.CachedSigV4Auth.sign_at)
    for cid, data in [("BFHPhfCWIAMCKlQ=", b'{"type":"prices"}'), ("a/b c", b""), ("x" * 40, b"\x00\xff" * 300)]:
        with frozen(AT):
            plain.post_to_connection(ConnectionId=cid, Data=data)
            cached.post_to_connection(ConnectionId=cid, Data=data)
            plain.get_connection(ConnectionId=cid)
            cached.get_connection(ConnectionId=cid)
            plain.delete_connection(ConnectionId=cid)
            cached.delete_connection(ConnectionId=cid)
    with frozen(AT), spy as calls:
        cached.post_to_connection(ConnectionId="spied", Data=b"{}")
        plain.post_to_connection(ConnectionId="spied", Data=b"{}")
    assert calls.call_count == 1  # the cached signer signed the cached client's request, and only that
    assert len(plain_sent) == len(cached_sent) == 10
    for a, b in zip(plain_sent, cached_sent, strict=True):
        assert "Authorization" in b.headers
        assert wire(a) == wire(b)


def test_a_new_day_a_new_key_and_the_same_body_twice() -> None:
    plain, plain_sent = client(AWS_URL, cached=False)
    cached, cached_sent = client(AWS_URL, cached=True)
    data = b'{"same":"bytes object"}'
    for at in (AT, AT + datetime.timedelta(days=1), AT + datetime.timedelta(days=1, seconds=1)):
        for cid in ("one", "two"):
            with frozen(at):
                plain.post_to_connection(ConnectionId=cid, Data=data)
                cached.post_to_connection(ConnectionId=cid, Data=data)
    assert [wire(r) for r in plain_sent] == [wire(r) for r in cached_sent]


@settings(max_examples=60, deadline=None)
@given(cid=st.text(min_size=1, max_size=30), data=st.binary(max_size=200),
       region=st.sampled_from(["us-east-1", "eu-west-1", "ap-southeast-2"]))
def test_any_connection_id_and_body(cid: str, data: bytes, region: str) -> None:
    creds = Credentials("AKID", "secret/key+", None).get_frozen_credentials()
    url = f"https://x.execute-api.{region}.amazonaws.com/stage/@connections/{botocore.utils.percent_encode(cid)}"
    a = AWSRequest(method="POST", url=url, data=data, headers={"User-Agent": "ua  with   spaces "})
    b = AWSRequest(method="POST", url=url, data=data, headers={"User-Agent": "ua  with   spaces "})
    signing.reference_sign(a, creds, "execute-api", region, "20240506T070809Z")
    assert signing.CachedSigV4Auth(creds, "execute-api", region).sign_at(b, "20240506T070809Z")
    assert sorted(a.headers.items()) == sorted(b.headers.items())


def test_unusual_requests_are_left_to_botocore() -> None:
    creds = Credentials("AKID", "secret", None).get_frozen_credentials()
    signer = signing.CachedSigV4Auth(creds, "execute-api", "us-east-1")
    non_ascii = AWSRequest(method="POST", url=f"{AWS_URL}/@connections/x", data=b"",
                           headers={"X-Custom": "caf\u00e9"})
    assert not signer.sign_at(non_ascii, "20240506T070809Z")
    assert "Authorization" not in non_ascii.headers
    # with params or a Date header add_auth is botocore's (and still signs)
    with_params = AWSRequest(method="GET", url=f"{AWS_URL}/@connections/x", params={"a": "b"})
    signer.add_auth(with_params)
    assert with_params.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID/")


def test_the_signer_is_chosen_only_for_plain_v4() -> None:
    assert signing._choose_signer(signature_version="v4", context={"auth_type": "v4"}) == signing.SIGNATURE_VERSION
    assert signing._choose_signer(signature_version="v4", context={}) == signing.SIGNATURE_VERSION
    for version, context in [("v4-query", {}), ("v4a", {"auth_type": "v4a"}), ("s3v4", {}),
                             ("v4", {"auth_type": "none"}), ("v4", {"auth_type": "v4", "unsigned_payload": True}),
                             ("v4", None)]:
        assert signing._choose_signer(signature_version=version, context=context) is None


def test_presigned_urls_still_work_with_the_signer_enabled() -> None:
    c, _ = client(AWS_URL, cached=True)
    url = c.generate_presigned_url("get_connection", Params={"ConnectionId": "abc"}, ExpiresIn=60)
    assert "X-Amz-Signature=" in url


def test_not_enabled_when_botocore_signs_differently(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "AUTH_TYPE_MAPS", dict(botocore.auth.AUTH_TYPE_MAPS))
    botocore.auth.AUTH_TYPE_MAPS.pop(signing.SIGNATURE_VERSION, None)
    monkeypatch.setattr(signing, "self_check", lambda *_: False)
    c, sent = client(AWS_URL, cached=False)
    assert not signing.enable(c)
    assert signing.SIGNATURE_VERSION not in botocore.auth.AUTH_TYPE_MAPS
    c.post_to_connection(ConnectionId="x", Data=b"{}")
    auth = sent[0].headers["Authorization"]
    assert (auth.decode() if isinstance(auth, bytes) else auth).startswith("AWS4-HMAC-SHA256 ")


def test_self_check_passes_with_this_botocore() -> None:
    assert signing.self_check(AWS_URL)
    assert signing.self_check(LOCAL_URL)


def test_poster_setting() -> None:
    base: dict[str, Any] = {"environment": "test", "key_prefix": "unit", "ws_callback_url": AWS_URL,
                            "ws_push_concurrency": 1}
    on = Poster(PusherSettings(**base))
    off = Poster(PusherSettings(**base, ws_push_signer="botocore"))
    try:
        assert on.cached_signer and not off.cached_signer
    finally:
        on.close()
        off.close()
