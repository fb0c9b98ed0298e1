"""Client messages, cookies and the local gateway's events, without any I/O."""

from __future__ import annotations

import base64

import pytest
from aiohttp.test_utils import make_mocked_request
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from opex_ws import protocol
from opex_ws.auth import cookie_value
from opex_ws.local_gateway import LocalConnection, LocalGateway, new_id
from tests.ws.support import BTC, ETH, connect_event, disconnect_event, message_event

pytestmark = pytest.mark.unit
MARKETS = frozenset({BTC, ETH, "SOL_USDC_PERP"})


def parse(body: str) -> object:
    return protocol.parse(protocol.decode_body(body, False, 4096), MARKETS)


def test_valid_messages() -> None:
    assert parse('{"type":"ping"}') == protocol.Ping(type="ping")
    msg = parse('{"type":"subscribe","markets":["BTC_USDC_PERP","ETH_USDC_PERP"]}')
    assert isinstance(msg, protocol.Subscribe) and msg.markets == [BTC, ETH]
    assert isinstance(parse('{"type":"unsubscribe","markets":["ETH_USDC_PERP"]}'), protocol.Unsubscribe)


@pytest.mark.parametrize(("body", "code", "fragment"), [
    ("", "bad_request", "empty message"),
    ("not json", "bad_request", "not valid JSON"),
    ("[1, 2]", "bad_request", "JSON object"),
    ('{"markets": []}', "bad_request", 'no "type"'),
    ('{"type": 5}', "bad_request", 'no "type"'),
    ('{"type": "chat"}', "unknown_type", "unknown message type 'chat'"),
    ('{"type": "subscribe"}', "bad_request", "markets"),
    ('{"type": "subscribe", "markets": []}', "bad_request", "at least 1"),
    ('{"type": "subscribe", "markets": "BTC_USDC_PERP"}', "bad_request", "markets"),
    ('{"type": "subscribe", "markets": [1]}', "bad_request", "markets.0"),
    ('{"type": "subscribe", "markets": ["DOGE_USDC_PERP"]}', "unknown_market", "DOGE_USDC_PERP"),
    ('{"type": "unsubscribe", "markets": ["btc"]}', "unknown_market", "available: BTC_USDC_PERP"),
    ('{"type": "ping", "extra": true}', "bad_request", "extra"),
    ('{"type": "subscribe", "markets": [' + ",".join(['"BTC_USDC_PERP"'] * 33) + "]}", "bad_request", "at most 32"),
])
def test_bad_messages_get_a_clear_error(body: str, code: str, fragment: str) -> None:
    with pytest.raises(protocol.ProtocolError) as info:
        parse(body)
    assert info.value.code == code
    assert fragment in str(info.value)


def test_size_limit_and_base64() -> None:
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.decode_body("x" * 5000, False, 4096)
    assert info.value.code == "too_large"
    raw = base64.b64encode(b'{"type":"ping"}').decode()
    assert protocol.decode_body(raw, True, 4096) == b'{"type":"ping"}'
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_body("!!!not base64", True, 4096)
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_body(None, False, 4096)


@settings(derandomize=True, database=None, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_any_text_is_accepted_or_refused_never_crashes(body: str) -> None:
    try:
        parse(body)
    except protocol.ProtocolError as exc:
        assert exc.code in {"bad_request", "unknown_type", "unknown_market", "too_large"}
        assert str(exc)


def test_cookie_value() -> None:
    assert cookie_value({"Cookie": "a=1; jwt=abc.def; b=2"}, {}, "jwt") == "abc.def"
    assert cookie_value({"cookie": 'jwt="quoted"'}, {}, "jwt") == "quoted"
    assert cookie_value({}, {"Cookie": ["a=1", "jwt=second"]}, "jwt") == "second"
    assert cookie_value({"Cookie": "xjwt=1; jwtx=2"}, {}, "jwt") is None
    assert cookie_value({"Cookie": "jwt="}, {}, "jwt") is None
    assert cookie_value({"Cookie": ";;;=;jwt"}, {}, "jwt") is None


def test_test_events_match_powertools_models() -> None:
    APIGatewayWebSocketConnectEventModel.model_validate(connect_event("abc=", cookie="jwt=x"))
    APIGatewayWebSocketMessageEventModel.model_validate(message_event("abc=", '{"type":"ping"}'))
    APIGatewayWebSocketDisconnectEventModel.model_validate(disconnect_event("abc="))


def test_local_gateway_events_match_powertools_models() -> None:
    gateway = LocalGateway(lambda e, c: {"statusCode": 200}, stage="local")
    try:
        request = make_mocked_request("GET", "/?ticket=t1&x=1&x=2", headers={
            "Host": "127.0.0.1:8001", "Cookie": "jwt=abc", "Upgrade": "websocket", "User-Agent": "ua"})
        cid = new_id()
        event = gateway.connect_event(request, cid, 1_700_000_000_000)
        model = APIGatewayWebSocketConnectEventModel.model_validate(event)
        assert model.request_context.connection_id == cid
        assert event["headers"]["Cookie"] == "jwt=abc"
        assert event["queryStringParameters"]["ticket"] == "t1"
        assert event["multiValueQueryStringParameters"]["x"] == ["1", "2"]
        conn = LocalConnection(cid, None, 1_700_000_000_000, "127.0.0.1", "ua")  # type: ignore[arg-type]
        msg = gateway.message_event(request, conn, '{"type":"ping"}', False)
        assert APIGatewayWebSocketMessageEventModel.model_validate(msg).request_context.route_key == "$default"
        bye = gateway.disconnect_event(request, conn, 1000, "Client disconnected")
        assert APIGatewayWebSocketDisconnectEventModel.model_validate(bye).request_context.disconnect_status_code == 1000
        # the ids are unique per message and URL-path safe
        ids = {new_id() for _ in range(1000)}
        assert len(ids) == 1000 and all("/" not in i and "+" not in i for i in ids)
    finally:
        gateway.pool.shutdown()


def test_route_selection_falls_back_to_default() -> None:
    plain = LocalGateway(lambda e, c: None)
    routed = LocalGateway(lambda e, c: None, route_keys=("$connect", "$disconnect", "$default", "ping"))
    try:
        assert plain.select_route('{"type":"ping"}', False) == "$default"
        assert routed.select_route('{"type":"ping"}', False) == "ping"
        assert routed.select_route('{"type":"subscribe"}', False) == "$default"
        assert routed.select_route('{"type":"$connect"}', False) == "$default"
        assert routed.select_route("garbage", False) == "$default"
    finally:
        plain.pool.shutdown()
        routed.pool.shutdown()


def test_gateway_connections_targets_and_request_ids() -> None:
    from opex_ws import local_gateway as gw

    assert gw._parse_target(b"/@connections/BFHPhfCWIAMCKlQ%3D") == (None, "BFHPhfCWIAMCKlQ=")
    assert gw._parse_target(b"/local/@connections/abc?x=1") == ("local", "abc")
    assert gw._parse_target(b"/local/@connections/abc?x=1") == ("local", "abc")  # cached: the same answer
    assert gw._parse_target(b"/other/path") is None
    ids = {gw._request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 36 and i.count("-") == 4 for i in ids)
    assert gw.ws_frame(b"x" * 200, True)[:4] == bytes((0x81, 126, 0, 200))
