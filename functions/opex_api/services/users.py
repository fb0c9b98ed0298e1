"""Users in Postgres; their trading accounts in the engine."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from starlette.concurrency import run_in_threadpool

from opex_common import messages
from opex_common.engine_client import EngineClient

from .. import security
from ..errors import Unavailable


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    password_hash: str


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def find_by_email(pool: AsyncConnectionPool, email: str) -> User | None:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT id, email, password_hash FROM users WHERE email = %s", (email,))
        row = await cur.fetchone()
    return User(*row) if row else None


async def insert(pool: AsyncConnectionPool, email: str, password_hash: str) -> User | None:
    """Create the user; None if the email is taken."""
    user = User(uuid.uuid4().hex, email, password_hash)
    try:
        async with pool.connection() as conn:
            await conn.execute("INSERT INTO users (id, email, password_hash) VALUES (%s, %s, %s)",
                               (user.id, user.email, user.password_hash))
    except psycopg.errors.UniqueViolation:
        return None
    return user


async def update_password_hash(pool: AsyncConnectionPool, user_id: str, password_hash: str) -> None:
    async with pool.connection() as conn:
        await conn.execute("UPDATE users SET password_hash = %s WHERE id = %s", (password_hash, user_id))


async def hash_password(password: str) -> str:
    # argon2 takes tens of milliseconds of CPU: off the event loop
    return await run_in_threadpool(security.hash_password, password)


async def check_password(user: User | None, password: str) -> bool:
    if user is None:
        await run_in_threadpool(security.burn_password_check, password)
        return False
    return await run_in_threadpool(security.verify_password, user.password_hash, password)


# ---------------------------------------------------------------------- engine account
def create_account_id(user_id: str) -> str:
    """The command id of a user's account creation: the same on every retry,
    so the engine applies it once."""
    return f"acct-{user_id}"


async def open_engine_account(engine: EngineClient, user_id: str, *, fresh: bool = False) -> dict[str, Any]:
    """Make the engine open the user's account (idempotent) and return its read model.

    ``fresh``: use a new command id rather than the signup's, so a retry long
    after the signup is a new command (the engine refuses a second account for
    the same user either way, answering ``conflict``)."""
    cid = create_account_id(user_id) + (f":{uuid.uuid4().hex}" if fresh else "")
    reply = await engine.call({"id": cid, "type": messages.CREATE_ACCOUNT, "user_id": user_id})
    if reply.get("code") not in (messages.OK, messages.CONFLICT):
        raise Unavailable(f"the trading engine could not open the account: {reply.get('message')}")
    return await account_after_reply(engine, user_id, reply)


async def account_after_reply(engine: EngineClient, user_id: str, reply: dict[str, Any]) -> dict[str, Any]:
    """The account read model that goes with an engine reply: attached to it
    when the command changed the account, else the one in Redis (the engine
    writes read models before it replies)."""
    account = reply.get("data", {}).get("account")
    if isinstance(account, dict):
        return account
    account = await engine.account(user_id)
    if account is None:
        raise Unavailable("your account is being restored by the trading engine; please retry")
    return account
