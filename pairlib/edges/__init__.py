"""The other edges: market data (closed candles, cache, quality) and the SQLite state
store."""
