"""A committed liteq measured beside the working tree: ``run.py --baseline REF``.

REF is checked out in a temporary detached git worktree, removed at the end (also after
an error or Ctrl-C). Its processes use this interpreter and this checkout's benchmark
harness, with the worktree first on ``PYTHONPATH`` so that ``import liteq`` (and
``python -m liteq worker``) load REF's package; ``BENCH_LITEQ_SOURCE`` makes the task
module refuse to load any other liteq, in producers and workers alike. REF's liteq
therefore runs on the current environment's dependencies.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from benchmarks.pools import HERE, PY, ROOT


class BaselineError(RuntimeError):
    """REF cannot be checked out, or its liteq cannot be imported from its worktree."""


@dataclass(frozen=True)
class Baseline:
    """REF as named on the command line, the commit it resolved to, its worktree."""

    ref: str
    commit: str
    path: str


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[Baseline]:
    """REF in a temporary detached worktree of this repository, for the ``with`` block."""
    resolved = _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if resolved.returncode != 0:
        raise BaselineError(f"--baseline {ref!r} is not a commit of {ROOT}")
    commit = resolved.stdout.strip()
    parent = tempfile.mkdtemp(prefix="liteq-baseline-")
    path = os.path.join(parent, "tree")
    try:
        added = _git("worktree", "add", "--detach", "--quiet", path, commit)
        if added.returncode != 0:
            raise BaselineError(f"git worktree add failed: {added.stderr.strip()}")
        yield Baseline(ref, commit, path)
    finally:
        # Works whether or not the add succeeded and the directory still exists.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _git("worktree", "remove", "--force", path)
        shutil.rmtree(parent, ignore_errors=True)


def pythonpath(source: str) -> str:
    """The harness first, then the liteq tree ``source``, then a caller's path, then ROOT."""
    caller = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    return os.pathsep.join([HERE, source, *caller, ROOT])


def is_under(path: str, root: str) -> bool:
    """Whether ``path`` lies inside directory ``root`` (symbolic links resolved)."""
    path, root = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([path, root]) == root


def probe(baseline: Baseline, env: dict[str, str]) -> dict[str, str]:
    """Import liteq and its CLI as the baseline's processes will; check they are REF's."""
    code = ("import json, liteq, liteq.cli; "
            "print(json.dumps({'liteq_file': liteq.__file__, 'cli_file': liteq.cli.__file__}))")
    done = subprocess.run([PY, "-c", code], env=env, cwd=HERE, capture_output=True,
                          text=True, timeout=60)
    if done.returncode != 0:
        raise BaselineError(f"liteq of {baseline.ref} does not import with its CLI: "
                            f"{done.stderr.strip()[-1500:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    for key, file in found.items():
        if not is_under(file, baseline.path):
            raise BaselineError(f"{key} is {file}, not in the worktree of {baseline.ref} "
                                f"({baseline.path})")
    return {"ref": baseline.ref, "commit": baseline.commit, "worktree": baseline.path,
            **found}
