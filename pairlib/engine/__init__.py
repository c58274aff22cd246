"""Orchestration: the tick, order execution, reconciliation, pair generation and the
backtest."""
