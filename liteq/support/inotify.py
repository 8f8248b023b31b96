"""The C library's inotify calls (Linux), found once: the SQLite broker's wake-up and the
supervisor's file watcher both use them."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_libc: ctypes.CDLL | None = None


def inotify_libc() -> ctypes.CDLL | None:
    """The C library when it offers ``inotify_init1`` (Linux), else None."""
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if hasattr(lib, "inotify_init1"):
            _libc = lib
    return _libc
