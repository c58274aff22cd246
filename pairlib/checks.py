"""Small argument checks shared by the pure modules (never a silent bad number or URL)."""

from __future__ import annotations

import ipaddress
import math
import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["LOOPBACK_ALLOWED", "finite", "loopback_url"]

LOOPBACK_ALLOWED = (
    "an http:// URL whose host is a loopback IP (127.0.0.0/8 or ::1) or localhost, "
    "with no user info, query or fragment, e.g. http://127.0.0.1:8765"
)
"""What :func:`loopback_url` accepts, as its error messages say."""

_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def finite(name: str, value: float) -> float:
    """``value`` as a finite float, or a ValueError naming ``name`` and the value."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number, got {value!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return f


def _shown(value: str) -> str:
    """``value`` with any user info (``user:password@``) replaced by ``***@``."""
    return _USERINFO.sub(r"\1***@", value)


def loopback_url(name: str, value: str) -> str:
    """``value`` as a canonical loopback base URL, or a ValueError naming ``name``.

    A URL that a credential-carrying client may be pointed at (the simulator's, a test
    stand-in for a public venue) must stay on this machine. The check parses the URL
    (:func:`urllib.parse.urlsplit`) instead of matching a prefix, because prefixes are
    fooled by user info (``http://127.0.0.1@evil.example``, ``http://[::1]@evil.example``)
    and by host names that merely start like an address (``http://127.0.0.1.evil.example``).

    Parameters
    ----------
    name : str
        What the value is (``"sim_url"``, ``"public_url"``); starts the error message.
    value : str
        The URL.

    Returns
    -------
    str
        ``http://<host>[:<port>][<path>]`` rebuilt from the parsed parts: the host in its
        canonical form (``localhost``, ``127.0.0.1``, ``[::1]``), trailing ``/`` removed.

    Raises
    ------
    ValueError
        Unless ``value`` is :data:`LOOPBACK_ALLOWED`. The message names ``name``, the value
        (user info masked) and what is wrong.
    """

    def bad(reason: str) -> ValueError:
        shown = _shown(value) if isinstance(value, str) else value
        return ValueError(f"{name} must be {LOOPBACK_ALLOWED}; got {shown!r}: {reason}")

    if not isinstance(value, str):
        raise bad("not a string")
    if any(c.isspace() or not c.isprintable() or c == "\\" for c in value):
        raise bad("it contains whitespace, control characters or a backslash")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as e:
        raise bad(f"not a valid URL ({e})") from None
    if parts.scheme != "http":
        raise bad(f"the scheme is {parts.scheme or '(none)'!r}, only 'http' is allowed")
    if "@" in parts.netloc:
        raise bad("it carries user info (user@ or user:password@ before the host)")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise bad("it has a query or fragment")
    host = parts.hostname or ""
    if not host:
        raise bad("it names no host")
    if host == "localhost":
        canonical = "localhost"
    else:
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            raise bad(f"the host {host!r} is not a loopback IP or localhost") from None
        if addr.version == 4 and addr.is_loopback:
            canonical = str(addr)
        elif addr == ipaddress.IPv6Address("::1") and not getattr(addr, "scope_id", None):
            canonical = "[::1]"
        else:
            raise bad(f"the host {host!r} is not a loopback address")
    netloc = canonical if port is None else f"{canonical}:{port}"
    return urlunsplit(("http", netloc, parts.path.rstrip("/"), "", ""))
