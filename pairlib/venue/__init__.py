"""The venue edge: the one ccxt adapter, the records it returns, request pacing,
opening the venue named in params (with the live guard) and the paper venue."""
