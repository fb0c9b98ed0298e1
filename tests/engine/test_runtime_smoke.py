import pytest

from tests.helpers import call, send_tick


@pytest.mark.integration
def test_commands_through_redis_get_replies(engine, settings, redis):
    send_tick(settings, "BTC_USDC_PERP", 1_000_000_000, 1_000_010_000, client=redis)
    rep = call(settings, {"type": "create_account", "user_id": "u1"}, client=redis)
    assert rep["ok"], rep
    rep = call(settings, {"type": "open", "user_id": "u1", "market": "BTC_USDC_PERP", "side": "long",
                          "qty": 1_000_000, "leverage": 10, "slippage_bps": 50, "price": 1_000_010_000},
               client=redis)
    assert rep["ok"], rep
    assert rep["data"]["trade"]["entry"] == 1_000_010_000
