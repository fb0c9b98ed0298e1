"""What the routes do, behind them: users, the engine, market data, history."""
