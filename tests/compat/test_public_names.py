"""Dramatiq's public names, module by module, exist in liteq's module of the same path.

Public means the module's ``__all__`` when it defines one; otherwise every callable
(class, function, cached function) whose ``__module__`` is that module: names it
merely imports, type variables and constants do not count. liteq's module is the same
dotted path with ``dramatiq`` replaced by ``liteq``; thin alias modules (``liteq.actor``,
``liteq.results.errors``) exist where the code lives elsewhere. Every Dramatiq module is
either compared or in ``NOT_COMPARED``; a name may be missing only if ``ABSENT`` gives
the reason. Both lists are checked too, so an entry that stops being true fails until
it is removed.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import subprocess
import sys
import warnings
from types import ModuleType

import pytest

dramatiq = pytest.importorskip("dramatiq")

#: Dramatiq modules whose names are not compared, with the reason.
NOT_COMPARED: dict[str, str] = {
    "dramatiq.__main__": "a script: `python -m liteq` runs liteq's CLI",
    "dramatiq.cli": "CLI internals: programs use the command line's flags, not these names",
    "dramatiq.canteen": "CLI internal: shared memory between Dramatiq's worker processes",
    "dramatiq.compat": "CLI internal: Dramatiq's log pipe between processes",
    "dramatiq.watcher": "CLI internal: Dramatiq's --watch on watchdog; liteq has its own",
    "dramatiq.common": "internal helpers (backoff, queue-name suffixes) used by brokers",
    "dramatiq.threading": "the same names as dramatiq.middleware.threading, compared there",
    "dramatiq.results.result": "internal: how Results wraps values and exceptions to store",
    "dramatiq.results.backends.memcached":
        "deliberately absent: no Memcached result backend (SQLite, Redis and stub are)",
    "dramatiq.rate_limits.backends.memcached":
        "deliberately absent: no Memcached rate-limit backend (SQLite, Redis and stub are)",
}

#: Public Dramatiq names liteq deliberately lacks, per module, with the reason.
ABSENT: dict[str, dict[str, str]] = {
    "dramatiq.actor": {
        "ActorDecorator": "a typing-only Protocol; liteq's `actor` overloads type the decorator",
    },
    "dramatiq.middleware.threading": {
        "current_platform": "liteq runs on CPython only and does not expose the check",
        "supported_platforms": "liteq runs on CPython only and does not expose the check",
        "is_gevent_active": "gevent is not supported: liteq's workers are threads",
    },
    "dramatiq.worker": {
        "has_results_middleware": "a helper of Dramatiq's worker loop, not documented API",
    },
    "dramatiq.results.backends": {
        "MemcachedBackend": "no Memcached result backend (SQLite, Redis and stub are)",
    },
    "dramatiq.rate_limits.backends": {
        "MemcachedBackend": "no Memcached rate-limit backend (SQLite, Redis and stub are)",
    },
}


def dramatiq_modules() -> list[str]:
    """Every module of the installed Dramatiq (packages are imported to list their modules)."""
    found = ["dramatiq"]
    found += [m.name for m in pkgutil.walk_packages(dramatiq.__path__, "dramatiq.")]
    return sorted(found)


def public_names(module: ModuleType) -> set[str]:
    """The module's public names by the rule in this file's docstring."""
    declared = getattr(module, "__all__", None)
    if declared is not None:
        return set(declared)
    return {
        name for name, value in vars(module).items()
        if not name.startswith("_")
        and callable(value)
        and getattr(value, "__module__", None) == module.__name__
    }


COMPARED = [name for name in dramatiq_modules() if name not in NOT_COMPARED]


def liteq_path(dramatiq_path: str) -> str:
    return "liteq" + dramatiq_path[len("dramatiq"):]


@pytest.mark.parametrize("module_name", COMPARED)
def test_public_names_of_each_dramatiq_module_exist_in_liteq(module_name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        theirs = importlib.import_module(module_name)
    ours = importlib.import_module(liteq_path(module_name))
    allowed = ABSENT.get(module_name, {})
    missing = sorted(
        name for name in public_names(theirs) - set(allowed) if not hasattr(ours, name)
    )
    assert missing == [], f"{ours.__name__} lacks Dramatiq's {missing}"
    for name in public_names(theirs) - set(allowed):
        theirs_value, ours_value = getattr(theirs, name), getattr(ours, name)
        if inspect.isclass(theirs_value):
            assert inspect.isclass(ours_value), f"{ours.__name__}.{name} is not a class"
        elif callable(theirs_value):
            assert callable(ours_value), f"{ours.__name__}.{name} is not callable"


def test_every_dramatiq_module_is_compared_or_excused() -> None:
    assert set(NOT_COMPARED) <= set(dramatiq_modules()), "NOT_COMPARED names a stale module"
    assert len(COMPARED) >= 40


@pytest.mark.parametrize("module_name", sorted(ABSENT))
def test_each_absence_is_still_true(module_name: str) -> None:
    theirs = importlib.import_module(module_name)
    ours = importlib.import_module(liteq_path(module_name))
    for name in ABSENT[module_name]:
        assert name in public_names(theirs), f"Dramatiq no longer has {module_name}.{name}"
        assert not hasattr(ours, name), f"{ours.__name__}.{name} exists: drop it from ABSENT"


@pytest.mark.parametrize("module_name", [
    name for name, reason in NOT_COMPARED.items() if reason.startswith("deliberately absent")
])
def test_deliberately_absent_modules_are_absent(module_name: str) -> None:
    assert importlib.util.find_spec(liteq_path(module_name)) is None


def _exception_classes() -> list[tuple[str, str]]:
    pairs = []
    for module_name in COMPARED:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = importlib.import_module(module_name)
        for name in sorted(public_names(module) - set(ABSENT.get(module_name, {}))):
            value = getattr(module, name)
            if inspect.isclass(value) and issubclass(value, BaseException):
                pairs.append((module_name, name))
    return pairs


@pytest.mark.parametrize(("module_name", "name"), _exception_classes())
def test_exceptions_have_dramatiqs_bases(module_name: str, name: str) -> None:
    """``except DramatiqError`` / ``except BrokerError`` catch the same errors in both."""
    theirs = getattr(importlib.import_module(module_name), name)
    ours = getattr(importlib.import_module(liteq_path(module_name)), name)
    their_bases = {c.__name__ for c in theirs.__mro__[1:]}
    our_bases = {c.__name__ for c in ours.__mro__[1:]}
    assert their_bases <= our_bases, f"{name} lacks the bases {their_bases - our_bases}"


@pytest.mark.parametrize("module_name", ["liteq", "liteq.errors"])
def test_connection_error_is_a_deprecated_alias(module_name: str) -> None:
    module = importlib.import_module(module_name)
    with pytest.warns(DeprecationWarning, match="BrokerConnectionError"):
        alias = module.ConnectionError
    assert alias is module.BrokerConnectionError


def test_dramatiq_error_is_the_base_of_liteqs_errors() -> None:
    import liteq
    from liteq import errors

    assert liteq.LiteqError is liteq.DramatiqError
    own = [value for value in vars(errors).values()
           if inspect.isclass(value) and issubclass(value, Exception)
           and value.__module__ == errors.__name__
           and value is not liteq.DramatiqError]
    # MiddlewareError and its subclasses are plain Exceptions in Dramatiq too.
    outside = sorted(c.__name__ for c in own
                     if not issubclass(c, (liteq.DramatiqError, errors.MiddlewareError)))
    assert outside == []
    with pytest.raises(liteq.DramatiqError):
        raise errors.QueueNotFound("no such queue")


def test_importing_the_alias_module_keeps_the_decorator() -> None:
    """``import liteq.actor`` must not rebind ``liteq.actor`` from the decorator to the module."""
    code = ("import liteq.actor, liteq.logging, liteq.generic, liteq;"
            "from liteq.actor import actor;"
            "assert liteq.actor is actor, liteq.actor;"
            "assert liteq.get_logger is liteq.logging.get_logger")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
