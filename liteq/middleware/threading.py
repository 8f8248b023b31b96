"""Raising an exception inside another thread (how time limits and shutdown interrupt actors)."""

from __future__ import annotations

import ctypes
import threading

from ..errors import Interrupt

__all__ = ["Interrupt", "raise_thread_exception"]


def raise_thread_exception(thread_id: int, exception: type[BaseException]) -> None:
    """Raise ``exception`` asynchronously in the thread ``thread_id`` at its next bytecode.

    It cannot interrupt C code or a blocking system call; the CLI's hard time limit
    covers those by replacing the process.
    """
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exception)
    )
    if done > 1:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)
    if done == 0 and thread_id not in {t.ident for t in threading.enumerate()}:
        raise ValueError(f"no thread with id {thread_id}")
