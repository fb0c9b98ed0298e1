-- Trading history, written by the history writer (engine_container/opex_engine/history)
-- from the engine's event streams. Each row carries the id of the event it came
-- from (`{shard}:{input entry id}:{n}`, deterministic), unique, so a replayed or
-- re-delivered event never adds a second row. `seq` orders rows as they were
-- written (a user lives on one shard, so per user it is the engine's order) and
-- is the paging cursor of the API.
-- Money and prices in 1e-4 USD, quantities in 1e-8 base units, as in the engine.
-- No CHECKs on the figures: the engine enforces its invariants, and history
-- must record whatever it said rather than stall the writer on a refused row.

-- One row per close of a trade: full close, partial close, take-profit,
-- stop-loss, liquidation, operator reset.
CREATE TABLE closed_trades (
    seq              bigserial   NOT NULL,
    event_id         text        PRIMARY KEY,
    user_id          text        NOT NULL,
    trade_id         text        NOT NULL,
    market           text        NOT NULL,
    side             smallint    NOT NULL,
    margin_mode      text        NOT NULL,
    leverage         integer     NOT NULL,
    entry_price      bigint      NOT NULL,
    close_price      bigint      NOT NULL,
    qty              bigint      NOT NULL,       -- closed quantity
    remaining_qty    bigint      NOT NULL,
    margin           bigint      NOT NULL,                       -- margin of the closed quantity
    pnl              bigint      NOT NULL,                       -- realized, before the fee
    fee              bigint      NOT NULL,
    funding          bigint      NOT NULL DEFAULT 0,             -- paid over the trade's life so far
    bankruptcy_cover bigint      NOT NULL DEFAULT 0,
    reason           text        NOT NULL,
    liquidated       boolean     NOT NULL,
    opened_ms        bigint,
    closed_ms        bigint      NOT NULL,
    closed_at        timestamptz NOT NULL
);
CREATE INDEX closed_trades_user_seq ON closed_trades (user_id, seq DESC);
CREATE INDEX closed_trades_trade ON closed_trades (trade_id);

-- Every change of an account's free balance (engine `ledger` events): deposits,
-- margin locked and released, realized PnL, fees, funding, liquidation fees,
-- bankruptcy cover, resets. amount is signed; balance_after is the balance
-- right after it.
CREATE TABLE ledger (
    seq           bigserial   NOT NULL,
    event_id      text        PRIMARY KEY,
    user_id       text        NOT NULL,
    kind          text        NOT NULL,
    amount        bigint      NOT NULL,
    balance_after bigint      NOT NULL,
    trade_id      text,
    market        text,
    ts_ms         bigint      NOT NULL,
    created_at    timestamptz NOT NULL
);
CREATE INDEX ledger_user_seq ON ledger (user_id, seq DESC);

-- Every funding payment, whether from the balance (also in the ledger) or from
-- an isolated trade's margin (`margin_debit` events, not balance changes).
-- amount is what the trader paid (negative: received).
CREATE TABLE funding_payments (
    seq          bigserial   NOT NULL,
    event_id     text        PRIMARY KEY,
    user_id      text        NOT NULL,
    trade_id     text,
    market       text,
    amount       bigint      NOT NULL,
    source       text        NOT NULL,   -- 'balance' | 'margin'
    ts_ms        bigint      NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX funding_payments_user_seq ON funding_payments (user_id, seq DESC);

-- Movements of the insurance fund (liquidation fees in, bankruptcy cover out).
CREATE TABLE insurance_fund (
    seq          bigserial   NOT NULL,
    event_id     text        PRIMARY KEY,
    shard        integer     NOT NULL,
    user_id      text,
    kind         text        NOT NULL,
    amount       bigint      NOT NULL,
    fund_after   bigint      NOT NULL,
    ts_ms        bigint      NOT NULL,
    created_at   timestamptz NOT NULL
);
