"""Fault: Postgres stops for 30 s under load, then starts again.

A private Postgres cluster of this test's own (never the machine's on 5432) is
stopped like a crash (``pg_ctl -m immediate``) while clients keep trading
through the engine. Trading must not pause: commands keep getting replies all
through the outage. History waits in the event stream and catches up once
Postgres is back; then the checker and the history must agree with what
clients were told.
"""

from __future__ import annotations

import time

import pytest
import redis as redis_lib

from opex_common.migrations import migrate
from tests.faults.support import (
    Figures,
    Load,
    PrivatePostgres,
    count_trade_commands,
    history_lag,
    record_figures,
    verify_after_load,
    wait_history_caught_up,
)

OUTAGE_S = 30.0
# a reply gap longer than this during the outage counts as trading pausing
MAX_PAUSE_S = 1.0


@pytest.mark.slow
@pytest.mark.integration
def test_postgres_down_for_30s_delays_history_not_trading(engine_factory, settings, redis,  # type: ignore[no-untyped-def]
                                                          start_history) -> None:
    try:
        pg = PrivatePostgres().init().start()
    except (RuntimeError, OSError) as exc:  # no Postgres binaries on this machine
        pytest.skip(f"cannot run a private Postgres cluster: {exc}")
    try:
        dsn = pg.create_db("opex_fault")
        migrate(dsn)
        s = settings.model_copy(update={"database_url": dsn, "snapshot_interval_s": 1.0})
        engine = engine_factory(settings_override=s).start()
        history = start_history(s)
        load = Load(s, clients=2, users_per_client=5, seed=37, pause=0.02, tick_interval=0.2, tag="p")
        load.setup()
        load.start()
        client = redis_lib.Redis.from_url(s.redis_url)
        try:
            time.sleep(2.0)
            down_at = time.monotonic()
            pg.stop("immediate")
            backlog = 0
            while time.monotonic() - down_at < OUTAGE_S:
                time.sleep(1.0)
                lag = history_lag(client, s)
                if lag is not None:  # event entries waiting for Postgres: never read, or read and not written
                    backlog = max(backlog, int(lag["lag"] or 0) + int(lag["pending"]))
            up_at = time.monotonic()
            replies_during = load.replies_between(down_at, up_at)
            pause = load.max_reply_gap(down_at, up_at)
            pg.start()
            caught_up = wait_history_caught_up(s, 60)
            time.sleep(1.0)
        finally:
            load.stop()
            client.close()

        fig = Figures("postgres_outage")
        count_trade_commands(fig, load.trade_commands())
        verdict = verify_after_load(s, load, engine, lambda: engine_factory(settings_override=s).start())
        verdict.engine.stop()
        fig.lost, fig.duplicated = len(verdict.lost), len(verdict.duplicated)
        fig.recover_s = caught_up if caught_up is not None else float("nan")
        fig.extra = {"outage_s": OUTAGE_S, "replies_during_outage": replies_during,
                     "max_trading_pause_s": round(pause, 3), "history_backlog_entries": backlog,
                     "recover_means": "history caught up after Postgres started"}
        record_figures(fig)

        assert "Postgres unavailable" in history.log_text(), "the history writer never noticed the outage"
        assert replies_during > 10 * OUTAGE_S, f"trading slowed down: {replies_during} replies in {OUTAGE_S}s"
        assert pause < MAX_PAUSE_S, f"trading paused for {pause:.2f}s during the outage"
        assert caught_up is not None, "history did not catch up within 60 s of Postgres starting"
        assert fig.unanswered == 0
        assert verdict.problems == []
        assert verdict.lost == [] and verdict.duplicated == []
    finally:
        pg.destroy()
