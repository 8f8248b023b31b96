"""``PickleEncoder()`` as Dramatiq code writes it: the key comes from ``LITEQ_PICKLE_KEY``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import wait_for

import liteq
from liteq.encoder import PickleEncoder
from liteq.errors import DecodeError, LiteqError, PickleKeyMissing


@pytest.fixture
def restore_encoder() -> Iterator[None]:
    previous = liteq.get_encoder()
    yield
    liteq.set_encoder(previous)


def test_without_key_or_variable_the_error_names_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LITEQ_PICKLE_KEY", raising=False)
    with pytest.raises(PickleKeyMissing) as e:
        PickleEncoder()
    assert "PickleEncoder(key=...)" in str(e.value) and "LITEQ_PICKLE_KEY" in str(e.value)
    assert isinstance(e.value, LiteqError) and isinstance(e.value, ValueError)
    monkeypatch.setenv("LITEQ_PICKLE_KEY", "")
    with pytest.raises(PickleKeyMissing):
        PickleEncoder()
    with pytest.raises(PickleKeyMissing):
        PickleEncoder(key=b"")


def test_the_variable_is_the_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"args": [{1, 2}], "kwargs": {}}
    monkeypatch.setenv("LITEQ_PICKLE_KEY", "shared secret")
    from_env = PickleEncoder()
    assert PickleEncoder(key="shared secret").decode(from_env.encode(data)) == data
    with pytest.raises(DecodeError, match="bad signature"):
        PickleEncoder(key="other").decode(from_env.encode(data))
    # An explicit key wins over the variable.
    assert PickleEncoder(key="other").decode(PickleEncoder(key="other").encode(data)) == data
    with pytest.raises(DecodeError, match="bad signature"):
        from_env.decode(PickleEncoder(key="other").encode(data))


TASKS = '''
import os

import liteq

liteq.set_encoder(liteq.PickleEncoder())


@liteq.actor
def remember(value):
    with open(os.environ["LITEQ_TEST_RECORD"], "a") as f:
        f.write(f"{sorted(value)} {os.getpid()}\\n")
'''


def test_a_worker_reads_the_key_from_its_environment(
    tmp_path: Path, env: dict[str, str], pools: Callable, restore_encoder: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A set (not JSON-serializable) goes through a ``liteq worker`` that got the key only
    from its environment; without the variable the worker refuses to start and says why."""
    (tmp_path / "pickled_tasks.py").write_text(textwrap.dedent(TASKS))
    monkeypatch.setenv("LITEQ_PICKLE_KEY", "k3y")
    liteq.set_encoder(PickleEncoder())
    broker = liteq.SqliteBroker(str(tmp_path / "q.db"))
    try:
        remember = liteq.actor(lambda value: None, actor_name="remember", broker=broker)
        remember.send({3, 1, 2})
    finally:
        broker.close()

    keyless = dict(env)
    keyless.pop("LITEQ_PICKLE_KEY", None)
    refused = subprocess.run(
        [sys.executable, "-m", "liteq", "worker", "pickled_tasks", "--path", str(tmp_path)],
        env=keyless, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert refused.returncode == 2
    assert "LITEQ_PICKLE_KEY" in refused.stderr + refused.stdout

    pool = pools("--path", str(tmp_path), "--processes", "1", modules=("pickled_tasks",),
                 extra_env={"LITEQ_PICKLE_KEY": "k3y"})
    record = tmp_path / "record.txt"
    wait_for(lambda: record.exists() and record.read_text().count("\n") == 1, timeout=30)
    assert record.read_text().split()[:3] == ["[1,", "2,", "3]"]
    pool.kill()
