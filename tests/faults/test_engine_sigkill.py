"""Fault: the engine is killed with SIGKILL several times under a steady load
of trades and price ticks, and restarted each time.

Clients keep sending while it is down and retry unanswered commands with the
same id. Afterwards every reply a client saw must be the reply of a reference
engine that applied every stream entry once, the final state must equal the
reference's byte for byte, and the checker and the history must agree: nothing
acknowledged is lost, nothing is applied twice.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.faults.support import (
    Figures,
    Load,
    count_trade_commands,
    record_figures,
    verify_after_load,
    wait_until,
)

KILLS = 3


@pytest.mark.slow
@pytest.mark.integration
def test_engine_sigkill_under_load(engine_factory, settings, redis, start_history) -> None:  # type: ignore[no-untyped-def]
    s = settings.model_copy(update={"snapshot_interval_s": 0.5})
    engine = engine_factory(settings_override=s).start()
    start_history(s)
    load = Load(s, clients=2, users_per_client=5, seed=11, tag="k")
    load.setup()
    load.start()
    rng = random.Random(5)
    recover: list[float] = []
    try:
        time.sleep(2.0)
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.5, 1.5))  # somewhere mid-load, mid-snapshot perhaps
            load.burst_ticks(600)  # and mid-batch
            time.sleep(rng.uniform(0.0, 0.01))
            killed_at = time.monotonic()
            engine.kill()
            engine = engine_factory(settings_override=s).start(wait=False)
            back = wait_until(lambda t=killed_at: load.first_reply_after(t), 30, "a reply after the restart")
            recover.append(back - killed_at)
            engine.wait_ready()
        time.sleep(1.5)
    finally:
        load.stop()

    fig = Figures("engine_sigkill")
    count_trade_commands(fig, load.trade_commands())
    verdict = verify_after_load(s, load, engine, lambda: engine_factory(settings_override=s).start())
    fig.lost, fig.duplicated = len(verdict.lost), len(verdict.duplicated)
    fig.recover_s = max(recover)
    fig.extra = {"kills": KILLS, "recover_each_s": [round(x, 2) for x in recover],
                 "ticks": load.stats.ticks_sent}
    record_figures(fig)

    assert fig.unanswered == 0
    assert fig.acknowledged > 100, "the load did not trade"
    assert verdict.problems == []
    assert verdict.lost == [] and verdict.duplicated == []
