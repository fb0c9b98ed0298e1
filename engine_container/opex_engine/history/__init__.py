"""The history writer: engine events -> Postgres (closed trades, ledger, funding, insurance)."""
