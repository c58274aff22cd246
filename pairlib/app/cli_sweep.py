"""``pairlib sweep``: registered on :data:`pairlib.app.cli.app` when the CLI module loads."""

from __future__ import annotations

from pairlib.app.cli import app  # noqa: F401
