"""Broker URLs are printed and logged: hide the password they may carry; and whether
a URL's host is this machine (a server elsewhere without a password earns a warning).

The password is found without a URL parser, so that a malformed URL (a ``#``, ``/``
or ``@`` left unencoded in the password) is masked as well as a valid one: the user
information is everything between ``scheme://`` and the last ``@`` of the URL.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit

_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
#: A URL with user information inside a longer text (ends at blanks and quotes).
_EMBEDDED = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<rest>[^\s'\"<>]*@)")
MASK = "***"


def _userinfo(url: str) -> tuple[str, str, str] | None:
    """``(scheme://, user information, rest from the last @)`` of ``url``, or None."""
    match = _SCHEME.match(url)
    if match is None:
        return None
    after = url[match.end():]
    at = after.rfind("@")
    if at < 0 or after.startswith("/"):
        return None
    return match.group(), after[:at], after[at:]


def _split_password(scheme: str, userinfo: str) -> tuple[str, str | None]:
    """``(user part kept, password)``; ``redis://secret@host`` is a password alone."""
    if ":" in userinfo:
        user, password = userinfo.split(":", 1)
        return user + ":", password
    if scheme.lower().startswith(("redis", "unix")) and userinfo:
        return "", userinfo
    return userinfo, None


def url_password(url: str) -> str | None:
    """The password ``url`` carries (as written, possibly percent-encoded), or None."""
    parts = _userinfo(url)
    return None if parts is None else _split_password(parts[0], parts[1])[1]


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, safe to print or log."""
    parts = _userinfo(url)
    if parts is None:
        return url
    scheme, userinfo, rest = parts
    kept, password = _split_password(scheme, userinfo)
    return url if password is None else f"{scheme}{kept}{MASK}{rest}"


def check_url(url: str) -> None:
    """Raise ``ValueError`` (naming the masked URL) if ``url``'s host and port do not
    parse, which an unencoded ``#``, ``/``, ``?`` or ``@`` in the password causes."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError(
            f"malformed broker URL {mask_url(url)}: its host and port do not parse "
            "(percent-encode characters such as # / ? @ : in the user name and password)"
        ) from None
    password = url_password(url)
    if password is not None and password not in (parts.password, parts.username):
        raise ValueError(
            f"malformed broker URL {mask_url(url)}: the password is cut short by an "
            "unencoded character (percent-encode # / ? @ in it)")


def hide(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` (as given, percent-decoded or percent-encoded)
    replaced by ``***``."""
    for secret in secrets:
        if secret:
            for form in {secret, unquote(secret), quote(unquote(secret), safe="")}:
                if form:
                    text = text.replace(form, MASK)
    return text


def scrub(text: str, url: str | None = None) -> str:
    """``text`` (an error message) with the password of ``url`` and of every URL in it
    replaced by ``***``."""
    password = url_password(url) if url else None
    if password:
        text = hide(text, [password])
    return _EMBEDDED.sub(lambda m: mask_url(m.group()), text)


_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def is_local_host(host: str | None) -> bool:
    """Whether ``host`` (empty or None: a Unix socket or the client's default) is this machine."""
    if not host:
        return True
    host = host.strip("[]").lower()
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Secret(str):
    """A credential in a release recipe (sent to the supervisor): a ``str`` whose
    ``repr`` hides it, so a logged recipe shows no password."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"
