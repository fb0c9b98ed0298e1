"""The engine container's processes: one table for ECS, docker compose and the tests.

The image's ENTRYPOINT is ``python -m opex_engine``; each process is that
entry point plus the arguments below (see engine_container/opex_engine/__main__.py).
``health --shard N`` exits 0 when shard N's heartbeat in Redis is fresh (ready
or replaying). The poller, pusher and history writer publish no heartbeat of
their own yet, so they have no health command: ECS restarts them when they exit.
"""

from __future__ import annotations

from dataclasses import dataclass

ENTRYPOINT = ("python", "-m", "opex_engine")


@dataclass(frozen=True)
class Process:
    name: str
    args: tuple[str, ...]
    health_args: tuple[str, ...] | None
    # seconds between SIGTERM and SIGKILL (Fargate allows at most 120)
    stop_timeout_s: int
    # how long a fresh process may take before its health counts
    start_period_s: int
    # does the process call the WebSocket API's @connections endpoint
    pushes_to_websocket: bool = False
    # runs to completion before the others of its task start (ECS dependsOn SUCCESS)
    one_shot: bool = False
    entrypoint: tuple[str, ...] = ENTRYPOINT

    @property
    def command(self) -> list[str]:
        return [*self.entrypoint, *self.args]

    @property
    def health_command(self) -> list[str] | None:
        return None if self.health_args is None else [*ENTRYPOINT, *self.health_args]


def engine(shard: int) -> Process:
    # The engine snapshots to MongoDB on SIGTERM, after draining the batch in
    # hand: give it Fargate's maximum. Boot replays the stream after the last
    # snapshot, so the first health check waits for that.
    return Process(
        name=f"engine-{shard}",
        args=("engine", "--shard", str(shard)),
        health_args=("health", "--shard", str(shard)),
        stop_timeout_s=120,
        start_period_s=180,
    )


POLLER = Process("poller", ("poller",), None, stop_timeout_s=30, start_period_s=0)
PUSHER = Process("pusher", ("pusher",), None, stop_timeout_s=30, start_period_s=0, pushes_to_websocket=True)
# the writer flushes its batch to Postgres before it exits
HISTORY = Process("history", ("history",), None, stop_timeout_s=60, start_period_s=0)

# Applies the Postgres (Neon) schema migrations (idempotent, under an advisory
# lock) before the history writer and the poller touch the database.
MIGRATE_CODE = "import os; from opex_common.migrations import migrate; print(migrate(os.environ['DATABASE_URL']))"
MIGRATE = Process(
    "migrate", (MIGRATE_CODE,), None, stop_timeout_s=30, start_period_s=0, one_shot=True,
    entrypoint=("python", "-c"),
)

# run once per deployment, whatever the shard count
WORKERS = (POLLER, PUSHER, HISTORY)


def all_processes(shards: int) -> list[Process]:
    return [MIGRATE] + [engine(i) for i in range(shards)] + list(WORKERS)
