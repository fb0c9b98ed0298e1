"""The user's balance changes, newest first, paged."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ..deps import CurrentUser, DbDep
from ..schemas import AUTH_ERRORS, LedgerOut
from ..services import history

router = APIRouter(tags=["account"])


@router.get("/ledger", response_model=LedgerOut, responses=AUTH_ERRORS)
async def ledger(
    user: CurrentUser,
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**62, description="`next` of the previous page")] = None,
) -> dict[str, Any]:
    """Every change of the free balance: deposit, margin locked and released,
    realized PnL, fees, funding, liquidation fees, bankruptcy cover, resets."""
    entries, next_cursor = await history.ledger(db, user.user_id, limit, before)
    return {"entries": entries, "decimal": 4, "next": next_cursor}
