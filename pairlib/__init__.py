"""pairlib: research-to-live pairs trading for crypto perpetual futures.

The library is a pure core (``coint``, ``pairs``, ``strategy``, ``risk``) with I/O at the
edges (``exchange``, the only module that imports ccxt; ``data``; ``store``). Notebooks under
``notebooks/`` are run headlessly by papermill through ``pairlib.app.runner``.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
