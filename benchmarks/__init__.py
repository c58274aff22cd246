"""Benchmarks (``make bench``): each ``bench_*.py`` module exposes ``run() -> list[Row]``.

Targets are checked here, not in timed unit tests: machines are noisy.
"""
