"""Broker URLs are printed and logged: hide the password they may carry."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, safe to print or log."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "<unparseable broker URL>"


def scrub(text: str, url: str | None) -> str:
    """``text`` (an error message) with ``url``'s password replaced by ``***``."""
    if url:
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            text = text.replace(password, "***")
    return text
