"""The public API's types, checked by mypy: tests/typing/check_public_api.py passes, and the
check fails on code that uses a result as the wrong type."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "tests" / "typing" / "check_public_api.py"

pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[dev]')")


def mypy(path: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """mypy with the project's configuration on ``path`` alone (imports checked silently)."""
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache), "--follow-imports=silent",
         "--no-error-summary", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240)


def test_the_public_api_type_checks_as_users_write_it(tmp_path):
    done = mypy(CHECK, tmp_path / "cache")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_check_rejects_a_result_used_as_the_wrong_type(tmp_path):
    wrong = tmp_path / "wrong_types.py"
    wrong.write_text(
        "from typing_extensions import assert_type\n"
        "import liteq\n\n"
        "@liteq.actor\n"
        "async def fetch(url: str) -> bytes:\n"
        "    return b''\n\n"
        "assert_type(fetch.send('u').get_result(), str)\n"
        "(fetch.message('u') | fetch.message(1)).run()\n")
    done = mypy(wrong, tmp_path / "cache")
    assert done.returncode == 1
    assert 'Expression is of type "bytes", not "str"' in done.stdout
    assert 'incompatible type "int"; expected "str"' in done.stdout
