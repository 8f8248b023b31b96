"""Dramatiq's spelling of ``liteq worker``'s lists: ``-Q a b`` names two queues.

One rule, as Dramatiq's argparse reads it: the modules come first; after ``-Q``/``--queues``
(or ``-P``/``--path``) every word up to the next option is a queue (a path). Click has
no options taking several words, so :func:`regroup` rewrites ``-Q a b`` as ``-Q a -Q b``
before click parses, and :class:`WorkerCommand` refuses a command line left without a
module (``liteq worker -Q a tasks`` names two queues and no module).
"""

from __future__ import annotations

from collections.abc import Callable

import click

#: Options that take every following word up to the next option, by spelling.
LIST_OPTIONS = {"-Q": "-Q", "--queues": "-Q", "-P": "-P", "--path": "-P"}

RULE = ("the modules come first; after -Q/--queues (or -P/--path) every word up to "
        "the next option is a queue (a path)")


def _is_option(word: str) -> bool:
    return word.startswith("-") and word != "-"


def _short_cluster(word: str, takes_value: Callable[[str], bool]) -> tuple[str | None, bool]:
    """For ``-abc``: (the list option it ends with, or None; whether it consumes the next
    word as a value)."""
    for i, char in enumerate(word[1:], start=1):
        option = f"-{char}"
        rest = word[i + 1:]
        if option in LIST_OPTIONS:
            return (None if rest else LIST_OPTIONS[option]), False
        if takes_value(option):
            return None, not rest
    return None, False


def regroup(args: list[str], takes_value: Callable[[str], bool]) -> list[str]:
    """``args`` with every list option spelled once per word (``-Q a b`` → ``-Q a -Q b``).

    ``takes_value(option)`` says whether an option (``-p``, ``--threads``) takes a value,
    so that a value is never read as a queue. A value attached to a list option
    (``-Qa``, ``--queues=a``) is one word, as in argparse. Everything after ``--`` is left
    alone (modules). Raises :class:`click.UsageError` for a list option without a word.
    """
    out: list[str] = []
    current: str | None = None  # the list option collecting words
    given = ""  # how the user spelled it, for the error
    count = 0
    i = 0

    def close() -> None:
        if current is not None and count == 0:
            raise click.UsageError(f"{given} needs at least one word ({RULE})")

    while i < len(args):
        word = args[i]
        i += 1
        if word == "--":
            close()
            current = None
            out += args[i - 1:]
            break
        if not _is_option(word):
            if current is not None:
                out += [current, word]
                count += 1
            else:
                out.append(word)
            continue
        close()
        current, count, given = None, 0, word
        if word in LIST_OPTIONS:
            current = LIST_OPTIONS[word]
            continue
        out.append(word)
        if word.startswith("--"):
            if "=" not in word and takes_value(word) and i < len(args):
                out.append(args[i])
                i += 1
            continue
        current, consumes = _short_cluster(word, takes_value)
        if current is not None:
            given = current
            out[-1] = word[:-1]
            if out[-1] == "-":
                out.pop()
        elif consumes and i < len(args):
            out.append(args[i])
            i += 1
    close()
    return out


class WorkerCommand(click.Command):
    """A click command that reads ``-Q a b`` as Dramatiq does (:func:`regroup`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {
            name: not (param.is_flag or param.count)
            for param in self.params if isinstance(param, click.Option)
            for name in param.opts + param.secondary_opts
        }
        try:
            regrouped = regroup(list(args), lambda o: takes_value.get(o, False))
        except click.UsageError as e:
            e.ctx = ctx
            raise
        rest = super().parse_args(ctx, regrouped)
        if not ctx.params.get("modules") and not ctx.resilient_parsing:
            queues = ctx.params.get("queues") or ()
            taken = f" (here -Q took {', '.join(queues)})" if queues else ""
            raise click.UsageError(f"no MODULE given{taken}: {RULE}", ctx)
        return rest
