"""The invariant checker: ``python -m opex_engine check``.

For every shard it asks the engine for an audit (balances and totals as of one
input stream entry), waits until the history writer has persisted every event
up to that entry, and then checks, printing each difference:

1. the engine's own invariants: conservation (deposits + house flow == balances
   + margins + reserved + insurance, exactly) and nothing negative;
2. every account's balance, rebuilt by summing its ledger rows in Postgres
   (events up to the audit entry), equals the engine's balance;
3. each account's ledger is a chain: every row's balance_after is the previous
   row's plus its amount, and none is negative;
4. no ledger row is duplicated (event ids are the primary key, so a replayed
   event cannot add a row; the checker counts rows per event id anyway).

Exit status 0 when all hold, 1 on any difference, 2 when it could not check
(engine or history writer not answering in time).
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
import redis as redis_lib

from opex_common import messages as m
from opex_common.settings import Settings


class CheckUnavailable(Exception):
    pass


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    accounts: int = 0
    ledger_rows: int = 0
    shards: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _entry_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def audit_shard(r: redis_lib.Redis, settings: Settings, shard: int, timeout_s: float) -> dict[str, Any]:
    cid = f"audit-{uuid.uuid4().hex}"
    r.xadd(settings.keys.input_stream(shard), {m.FIELD: orjson.dumps({"id": cid, "type": m.AUDIT})})
    got = r.blpop([settings.keys.reply(cid)], timeout=timeout_s)
    if got is None:
        raise CheckUnavailable(f"shard {shard}: the engine did not answer the audit in {timeout_s}s")
    return orjson.loads(got[1])["data"]  # type: ignore[no-any-return]


def wait_history(r: redis_lib.Redis, settings: Settings, shard: int, timeout_s: float) -> None:
    """Wait until the history group has consumed and acknowledged every event
    entry that existed when we started waiting (which includes the audit's)."""
    stream = settings.keys.event_stream(shard)
    try:
        target = r.xinfo_stream(stream)["last-generated-id"].decode()
    except redis_lib.ResponseError:
        return  # no events at all on this shard
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        groups = {g["name"].decode(): g for g in r.xinfo_groups(stream)}
        g = groups.get(settings.keys.HISTORY_GROUP)
        if g is not None and g["pending"] == 0 and _entry_key(g["last-delivered-id"].decode()) >= _entry_key(target):
            return
        time.sleep(0.1)
    raise CheckUnavailable(f"shard {shard}: the history writer has not caught up in {timeout_s}s")


def check(settings: Settings, timeout_s: float = 30.0) -> Report:
    report = Report(shards=settings.engine_shards)
    r = redis_lib.Redis.from_url(settings.redis_url, socket_timeout=timeout_s + 5)
    audits = [audit_shard(r, settings, shard, timeout_s) for shard in range(settings.engine_shards)]
    for shard in range(settings.engine_shards):
        wait_history(r, settings, shard, timeout_s)
    r.close()
    with psycopg.connect(settings.database_url) as conn:
        for audit in audits:
            shard = audit["shard"]
            for p in audit["problems"]:
                report.problems.append(f"shard {shard}: engine invariant: {p}")
            ms, seq = _entry_key(audit["last_id"])
            rows = conn.execute(
                """
                SELECT user_id, event_id, amount, balance_after, kind FROM ledger
                WHERE split_part(event_id, ':', 1) = %(shard)s
                  AND (split_part(split_part(event_id, ':', 2), '-', 1)::bigint,
                       split_part(split_part(event_id, ':', 2), '-', 2)::bigint) <= (%(ms)s, %(seq)s)
                """,
                {"shard": str(shard), "ms": ms, "seq": seq},
            ).fetchall()
            report.ledger_rows += len(rows)
            by_user: dict[str, list[tuple[tuple[int, int, int], int, int, str]]] = {}
            for user_id, event_id, amount, after, kind in rows:
                _, entry, n = event_id.split(":")
                e_ms, e_seq = _entry_key(entry)
                by_user.setdefault(user_id, []).append(((e_ms, e_seq, int(n)), amount, after, kind))
            balances: dict[str, int] = audit["balances"]
            report.accounts += len(balances)
            for user_id in sorted(set(balances) | set(by_user)):
                entries = sorted(by_user.get(user_id, []))
                rebuilt = sum(e[1] for e in entries)
                engine_balance = balances.get(user_id)
                if engine_balance is None:
                    report.problems.append(f"user {user_id}: ledger rows but no account in shard {shard}")
                    continue
                if rebuilt != engine_balance:
                    report.problems.append(
                        f"user {user_id}: ledger rebuilds {rebuilt}, engine holds {engine_balance} "
                        f"(difference {engine_balance - rebuilt})")
                running = 0
                for key, amount, after, kind in entries:
                    running += amount
                    if after != running:
                        report.problems.append(
                            f"user {user_id}: ledger row {key} ({kind}) says balance_after {after}, "
                            f"the chain gives {running}")
                        break
                    if after < 0:
                        report.problems.append(f"user {user_id}: negative balance {after} at {key}")
                        break
    return report


def main(settings: Settings, timeout_s: float = 30.0) -> int:
    try:
        report = check(settings, timeout_s)
    except CheckUnavailable as exc:
        print(f"could not check: {exc}", file=sys.stderr)
        return 2
    for p in report.problems:
        print(f"DIFFERENCE: {p}")
    print(f"checked {report.shards} shard(s), {report.accounts} accounts, {report.ledger_rows} ledger rows: "
          f"{'OK' if report.ok else f'{len(report.problems)} difference(s)'}")
    return 0 if report.ok else 1
