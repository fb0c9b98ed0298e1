"""The invariant checker against a real engine, history writer and Postgres."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from opex_engine.checker import check
from tests.conftest import ROOT, settings_env
from tests.helpers import call, send_tick

BTC = "BTC_USDC_PERP"


@pytest.fixture
def settings(settings, fresh_pg_dsn):
    """The checker reads the whole ledger: give each test a database of its own."""
    return settings.model_copy(update={"database_url": fresh_pg_dsn})


@pytest.fixture
def history(settings, redis):
    proc = subprocess.Popen([sys.executable, "-m", "opex_engine", "history"], env=settings_env(settings),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield proc
    proc.terminate()
    proc.wait(20)


def trade_a_little(settings, redis, users=("alice", "bob")):
    send_tick(settings, BTC, 1_000_000_000, 1_000_010_000, client=redis)
    for u in users:
        call(settings, {"type": "create_account", "user_id": u}, client=redis)
    ids = []
    for i, u in enumerate(users * 3):
        rep = call(settings, {"type": "open", "user_id": u, "market": BTC, "side": "long" if i % 2 else "short",
                              "qty": 100_000 * (i + 1), "leverage": 10, "slippage_bps": 100,
                              "price": 1_000_010_000 if i % 2 else 1_000_000_000}, client=redis)
        assert rep["ok"], rep
        ids.append((u, rep["data"]["trade"]["id"]))
    send_tick(settings, BTC, 1_010_000_000, 1_010_010_000, client=redis)
    for u, tid in ids[:3]:
        assert call(settings, {"type": "close", "user_id": u, "trade_id": tid}, client=redis)["ok"]


@pytest.mark.integration
def test_checker_passes_on_a_consistent_platform_and_names_a_tampered_row(engine, history, settings, redis):
    trade_a_little(settings, redis)
    report = check(settings, timeout_s=20)
    assert report.ok, report.problems
    assert report.accounts == 2 and report.ledger_rows >= 2 + 6 * 2 + 3 * 3

    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("UPDATE ledger SET amount = amount + 1 WHERE event_id = "
                     "(SELECT event_id FROM ledger WHERE user_id = 'alice' AND kind = 'fee' "
                     "AND event_id LIKE %s LIMIT 1)", (f"{0}:%",))
    report = check(settings, timeout_s=20)
    assert not report.ok
    assert any("alice" in p and "difference" in p for p in report.problems), report.problems
    assert any("chain" in p for p in report.problems), report.problems


@pytest.mark.integration
def test_checker_cli_exit_codes(engine, history, settings, redis):
    trade_a_little(settings, redis, users=("carol",))
    ok = subprocess.run([sys.executable, "-m", "opex_engine", "check", "--timeout", "20"],
                        env=settings_env(settings), cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK" in ok.stdout
