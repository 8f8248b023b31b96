"""Turning ``MODULE`` and ``MODULE:BROKER`` names from the command line into a broker.

``liteq worker tasks`` imports ``tasks`` (found on ``--path``, the working directory
or ``PYTHONPATH``) and uses the broker its actors were declared on: the global one,
which the module may have set with ``liteq.set_broker()`` or left to
``LITEQ_BROKER_URL`` / ``./liteq.db``. ``tasks:broker`` names a broker object in the
module instead (``tasks:make_broker`` names a function that returns one, or sets the
global broker and returns None).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable, Iterable

from .broker import Broker, get_broker, set_broker
from .errors import BrokerConnectionError, BrokerFailed, DatabaseError, ImportFailed


def prepend_paths(paths: Iterable[str]) -> None:
    """Put ``paths`` and the working directory in front of ``sys.path`` (once each)."""
    wanted = [os.path.abspath(p) for p in paths] + [os.getcwd()]
    for path in reversed(wanted):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)


def _split(spec: str) -> tuple[str, str | None]:
    module, _, attr = spec.partition(":")
    if not module or (":" in spec and not attr):
        raise ImportFailed(f"invalid module name {spec!r}: expected MODULE or MODULE:BROKER")
    return module, attr or None


def _import(module_name: str) -> object:
    try:
        return importlib.import_module(module_name)
    except (DatabaseError, BrokerConnectionError) as e:
        raise BrokerFailed(f"while importing {module_name!r}: {e}") from e
    except ImportError as e:
        raise ImportFailed(
            f"could not import module {module_name!r}: {type(e).__name__}: {e}"
        ) from e
    except SyntaxError as e:
        raise ImportFailed(
            f"could not import module {module_name!r}: SyntaxError: {e.msg} "
            f"({e.filename}, line {e.lineno})"
        ) from e
    except Exception as e:
        last = traceback.extract_tb(e.__traceback__)[-1]
        raise ImportFailed(
            f"could not import module {module_name!r}: {type(e).__name__}: {e} "
            f"({last.filename}, line {last.lineno})"
        ) from e


def _resolve(module: object, module_name: str, attr: str) -> Broker | None:
    target: object = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ImportFailed(
                f"module {module_name!r} has no attribute {attr!r}"
            ) from None
    if isinstance(target, Broker):
        return target
    if callable(target):
        try:
            result = target()
        except (DatabaseError, BrokerConnectionError) as e:
            raise BrokerFailed(f"{module_name}:{attr}(): {e}") from e
        if result is None or isinstance(result, Broker):
            return result
    raise ImportFailed(
        f"{module_name}:{attr} is neither a liteq Broker nor a function returning one"
    )


def import_broker(specs: Iterable[str], paths: Iterable[str] = ()) -> Broker:
    """Import every module of ``specs`` and return the broker their actors use.

    Raises :class:`ImportFailed` (a message naming the module and the error) or
    :class:`BrokerFailed` (the database or server is unusable).
    """
    prepend_paths(paths)
    named: Broker | None = None
    for spec in specs:
        module_name, attr = _split(spec)
        module = _import(module_name)
        if attr is not None:
            broker = _resolve(module, module_name, attr)
            if broker is not None:
                named = broker
                set_broker(broker)
    if named is not None:
        return named
    try:
        return get_broker()
    except (DatabaseError, BrokerConnectionError) as e:
        raise BrokerFailed(str(e)) from e


def import_function(spec: str, paths: Iterable[str] = ()) -> Callable[[], object]:
    """The function ``MODULE:FUNCTION`` names (``--fork-function``); or :class:`ImportFailed`."""
    prepend_paths(paths)
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ImportFailed(f"invalid function name {spec!r}: expected MODULE:FUNCTION")
    target: object = _import(module_name)
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ImportFailed(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(target):
        raise ImportFailed(f"{spec} is not a function")
    return target
