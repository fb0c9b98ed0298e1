-- One-minute OHLC candles built by the price poller; the API rolls them up.
-- Prices in 1e-4 USD (same unit as the engine and the REST wire).
CREATE TABLE candles_1m (
    market      text    NOT NULL,
    start_s     bigint  NOT NULL,   -- unix seconds at the start of the minute
    open        bigint  NOT NULL CHECK (open > 0),
    high        bigint  NOT NULL,
    low         bigint  NOT NULL,
    close       bigint  NOT NULL,
    ticks       integer NOT NULL DEFAULT 0,
    source      text    NOT NULL DEFAULT 'live',  -- live | simulated | backfill
    PRIMARY KEY (market, start_s),
    CHECK (low <= high AND low <= open AND low <= close AND high >= open AND high >= close)
);
