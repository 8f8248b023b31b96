"""The in-process worker: one consumer thread claiming in batches, N worker threads.

The consumer thread is the only one that talks to the broker on the hot path: each
round trip acknowledges the messages the worker threads finished and claims enough
new ones to keep them busy (prefetch). Unless fixed, the prefetch adapts to how fast
tasks finish: about ``PREFETCH_WINDOW`` seconds of work, at least one message per
thread, so that no-op tasks are claimed in large batches (the write lock, not Python,
is then the limit) while slow tasks are not hoarded by one process and a message of
higher priority waits behind little. Hand-offs use ``SimpleQueue``, the cheapest
thread-safe queue, and hooks are dispatched only to middleware that implement them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from queue import Empty, SimpleQueue
from time import perf_counter
from time import time as wall_clock
from typing import Any, Protocol

from . import lease_log
from .activity import Activity
from .asyncio import EventLoopThread, get_event_loop_thread, set_event_loop_thread
from .broker import Broker, Consumer, MessageProxy
from .errors import (
    ActorNotFound,
    DatabaseUnavailable,
    HookFailed,
    Interrupt,
    MessageTooLarge,
    MiddlewareError,
    RateLimitExceeded,
    Retry,
    SkipMessage,
    UnusableDatabase,
)
from .middleware.middleware import Middleware
from .options import NO_OPTIONS, resolve
from .support.text import exception_text

logger = logging.getLogger("liteq.worker")


class Board(Protocol):
    """Where a pool child publishes what each worker thread runs (the supervisor's
    ``liteq.process.board.RunningBoard``; the worker needs only these two calls)."""

    def start(self, slot: int, message_id: str) -> None: ...
    def finish(self, slot: int) -> None: ...

_STOP = object()

#: Seconds of work an adaptive prefetch claims ahead, and its upper bound in messages.
PREFETCH_WINDOW = 0.005
MAX_PREFETCH = 256

#: Broker errors that retrying cannot cure: the consumer stops (``liteq worker`` exits 3).
FATAL_ERRORS = (UnusableDatabase, MessageTooLarge)
#: Longest pause between two round trips refused by a full or unavailable database.
MAX_BACKOFF = 5.0


class Worker:
    """Consumes ``queues`` (all declared ones by default) of ``broker`` in this process."""

    def __init__(
        self,
        broker: Broker,
        *,
        queues: list[str] | set[str] | None = None,
        worker_timeout: int = 1000,
        worker_threads: int = 8,
        prefetch: int | None = None,
        board: Board | None = None,
    ) -> None:
        if worker_threads < 1:
            raise ValueError("worker_threads must be at least 1")
        self.broker = broker
        self.queues = set(queues) if queues else None
        self.worker_timeout = worker_timeout
        self.worker_threads = worker_threads
        self.fixed_prefetch = prefetch
        self.prefetch = prefetch or MAX_PREFETCH
        self.consumer: Consumer | None = None
        self.work: SimpleQueue[Any] = SimpleQueue()
        self.done: SimpleQueue[MessageProxy] = SimpleQueue()
        #: Messages a worker thread did not start because their lease had lapsed.
        self.lapsed: SimpleQueue[MessageProxy] = SimpleQueue()
        #: Where a pool child publishes what each thread runs (``liteq.process.board``).
        self.board = board
        self.threads: list[WorkerThread] = []
        self.consumer_thread: ConsumerThread | None = None
        self._own_loop: EventLoopThread | None = None
        self._declarations: _Declarations | None = None
        self.processed = 0
        self.failed = 0
        self.activity = Activity()
        #: The broker error that stopped the consumer for good (see ``FATAL_ERRORS``).
        self.fatal: BaseException | None = None

    @property
    def queue_names(self) -> list[str]:
        return sorted(self.queues or self.broker.get_declared_queues())

    def start(self) -> None:
        """Boot the threads; returns at once.

        Without ``queues``, queues declared later are consumed too, and an event-loop
        thread starts when the first ``async def`` actor is declared (as in Dramatiq,
        whose testing guide starts a worker before the test declares its actors).
        """
        self.broker.emit_before("worker_boot", self)
        if any(getattr(a, "is_async", False) for a in self.broker.actors.values()):
            self._ensure_event_loop()
        self.consumer = self.broker.consume(
            self.queue_names, prefetch=self.prefetch, timeout=self.worker_timeout
        )
        self._declarations = _Declarations(self)
        self.broker.add_middleware(self._declarations)
        for i in range(self.worker_threads):
            thread = WorkerThread(self, i)
            thread.start()
            self.threads.append(thread)
        self.consumer.describe = self.describe  # type: ignore[attr-defined]
        self.consumer_thread = ConsumerThread(self, self.consumer)
        self.consumer_thread.start()
        self.broker.emit_after("worker_boot", self)

    def _ensure_event_loop(self) -> None:
        """Run ``async def`` actors on an event-loop thread (this worker's own, unless
        the process already has one)."""
        if get_event_loop_thread() is None:
            self._own_loop = EventLoopThread(logger)
            self._own_loop.start(timeout=10)
            set_event_loop_thread(self._own_loop)

    def describe(self) -> dict[str, Any]:
        """What the worker registry publishes about this worker (see
        :meth:`liteq.brokers.inspect.Inspector.workers`): ``threads``, ``running``
        (actor names), ``running_queues`` ({queue: threads running one of its
        messages}), ``processed``, ``succeeded``, ``failed`` and ``activity``."""
        running: list[str] = []
        running_queues: dict[str, int] = {}
        for t in self.threads:
            message = t.current
            if message is not None:
                running.append(message.actor_name)
                running_queues[message.queue_name] = running_queues.get(message.queue_name, 0) + 1
        return {"threads": self.worker_threads, "running": running,
                "running_queues": running_queues, "processed": self.processed,
                "succeeded": self.processed - self.failed, "failed": self.failed,
                "activity": self.activity.snapshot()}

    def pause(self) -> None:
        """Stop claiming new messages; running ones go on."""
        if self.consumer_thread:
            self.consumer_thread.paused = True

    def resume(self) -> None:
        if self.consumer_thread:
            self.consumer_thread.paused = False
            self.consumer_thread.nudge()

    def stop(self, timeout: int = 600000) -> None:
        """Stop claiming, requeue unstarted messages, give running ones ``timeout`` ms."""
        self.broker.emit_before("worker_shutdown", self)
        if self._declarations is not None:
            self.broker.remove_middleware(self._declarations)
            self._declarations = None
        if self.consumer_thread:
            self.consumer_thread.shutdown(timeout / 1000)
        if self._own_loop is not None:
            self._own_loop.stop()
            set_event_loop_thread(None)
            self._own_loop = None
        self.broker.emit_after("worker_shutdown", self)

    def join(self) -> None:
        """Wait until this worker's queues are drained (for tests)."""
        for name in self.queue_names:
            self.broker.join(name, fail_fast=False)


class _Declarations(Middleware):
    """Keeps a started worker up with declarations: a queue declared later is consumed
    (unless the worker was given its queues), an ``async def`` actor gets a loop."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def after_declare_queue(self, broker: Broker, queue_name: str) -> None:
        consumer = self.worker.consumer
        if (self.worker.queues is None and consumer is not None
                and queue_name not in getattr(consumer, "queue_names", ())):
            consumer.add_queue(queue_name)

    def after_declare_actor(self, broker: Broker, actor: Any) -> None:
        if getattr(actor, "is_async", False):
            self.worker._ensure_event_loop()


class ConsumerThread(threading.Thread):
    """Acks finished messages and claims new ones, one broker round trip at a time."""

    def __init__(self, worker: Worker, consumer: Consumer) -> None:
        super().__init__(name="liteq-consumer", daemon=True)
        self.worker = worker
        self.consumer = consumer
        self.paused = False
        self.stopping = False
        self.idle = False
        self.outstanding = 0
        self._stopped = threading.Event()

    def nudge(self) -> None:
        """Wake the consumer if it is waiting (called by worker threads when they finish)."""
        if self.idle:
            self.consumer.wakeup()

    def _drain_done(self) -> list[MessageProxy]:
        done = []
        get = self.worker.done.get_nowait
        try:
            while True:
                done.append(get())
        except Empty:
            pass
        if not self.worker.lapsed.empty():
            self._hand_back_lapsed()
        return done

    def _hand_back_lapsed(self) -> None:
        """Give back, by id and token, messages whose lease lapsed before they started."""
        lapsed = []
        with contextlib.suppress(Empty):
            while True:
                lapsed.append(self.worker.lapsed.get_nowait())
        self.outstanding -= len(lapsed)
        self._requeue(lapsed)

    def _requeue(self, messages: list[MessageProxy]) -> None:
        """Give ``messages`` back; if the broker cannot take them now, they come back
        when their lease lapses."""
        try:
            self.consumer.requeue(messages)
        except Exception as e:  # noqa: BLE001 - never kill the consumer thread for it
            logger.warning("could not hand back %d message(s) now (they come back when "
                           "their lease lapses): %s", len(messages), e)

    def run(self) -> None:
        broker = self.worker.broker
        broker.emit_after("consumer_thread_boot", self)
        threads = self.worker.worker_threads
        prefetch = self.worker.fixed_prefetch or threads
        rate = _Rate()
        timeout = self.worker.worker_timeout / 1000
        put = self.worker.work.put
        pending: list[MessageProxy] = []
        refusals = 0
        try:
            while not self.stopping:
                pending += self._before_settle(self._drain_done())
                if not self.worker.fixed_prefetch and rate.add(len(pending)):
                    prefetch = min(max(int(rate.per_second * PREFETCH_WINDOW), threads),
                                   MAX_PREFETCH)
                want = 0
                if not self.paused and self.outstanding <= prefetch // 2:
                    want = prefetch - self.outstanding
                try:
                    received = self.consumer.exchange(pending, want)
                except FATAL_ERRORS as e:
                    self.worker.fatal = e
                    logger.critical("%s: %s; this worker stops", type(e).__name__, e)
                    return
                except DatabaseUnavailable as e:
                    refusals += 1
                    pause = min(0.5 * 2 ** (refusals - 1), MAX_BACKOFF)
                    logger.warning("%s: %s; retrying in %.1fs (attempt %d)",
                                   type(e).__name__, e, pause, refusals)
                    self._stopped.wait(pause)
                    continue
                except Exception:
                    logger.exception("broker round trip failed; retrying in 1s")
                    self._stopped.wait(1.0)
                    continue
                if refusals:
                    logger.info("the database accepts writes again after %d attempt(s)",
                                refusals)
                    refusals = 0
                self._after_settle(pending)
                self.outstanding += len(received) - len(pending)
                settled, pending = pending, []
                for proxy in received:
                    put(proxy)
                if received or settled:
                    continue
                self.idle = True
                if self.worker.done.empty() and not self.stopping:
                    try:
                        self.consumer.wait(timeout)
                    except Exception:
                        logger.exception("waiting on the broker failed; retrying in 1s")
                        self._stopped.wait(1.0)
                self.idle = False
        finally:
            if self.worker.fatal is None:
                self._finish(pending)
            else:
                self._abandon()
            broker.emit_before("consumer_thread_shutdown", self)

    def _abandon(self) -> None:
        """After a fatal broker error: stop the worker threads without another broker
        call (the leases of unsettled messages lapse, or the supervisor releases them)."""
        with contextlib.suppress(Empty):
            while True:
                self.worker.work.get_nowait()
        for _ in self.worker.threads:
            self.worker.work.put(_STOP)
        self._stopped.set()

    def _before_settle(self, done: list[MessageProxy]) -> list[MessageProxy]:
        """Emit ``before_ack``/``before_nack`` for each finished message, once, before the
        broker settles it (as Dramatiq's consumer thread does); returns ``done``."""
        broker = self.worker.broker
        if done and (broker.hooks("before_ack") or broker.hooks("before_nack")):
            for proxy in done:
                try:
                    broker.emit_before("nack" if proxy.failed else "ack", proxy)
                except MiddlewareError:  # the consumer thread settles the message anyway
                    logger.critical("middleware hook before_%s of message %s failed",
                                    "nack" if proxy.failed else "ack", proxy.message_id,
                                    exc_info=True)
        return done

    def _after_settle(self, settled: list[MessageProxy]) -> None:
        broker = self.worker.broker
        if not settled or not (broker.hooks("after_ack") or broker.hooks("after_nack")):
            return
        for proxy in settled:
            broker.emit_after("nack" if proxy.failed else "ack", proxy)

    def _finish(self, pending: list[MessageProxy]) -> None:
        """Requeue unstarted messages, wait for running ones, settle what finished."""
        unstarted = []
        try:
            while True:
                item = self.worker.work.get_nowait()
                if item is not _STOP:
                    unstarted.append(item)
        except Empty:
            pass
        for _ in self.worker.threads:
            self.worker.work.put(_STOP)
        if unstarted:
            self.outstanding -= len(unstarted)
            self._requeue(unstarted)
        deadline = time.monotonic() + self._grace
        for thread in self.worker.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        pending += self._before_settle(self._drain_done())
        if pending:
            try:
                self.consumer.exchange(pending, 0)
                self._after_settle(pending)
            except Exception:
                logger.exception("could not acknowledge %d messages at shutdown", len(pending))
        self.consumer.close()
        self._stopped.set()

    _grace = 600.0

    def shutdown(self, grace: float) -> None:
        self._grace = grace
        self.stopping = True
        self.consumer.wakeup()
        self._stopped.wait()


class _Rate:
    """Completions per second, smoothed over windows of at least 20 ms."""

    def __init__(self) -> None:
        self.per_second = 0.0
        self._count = 0
        self._since = time.monotonic()

    def add(self, count: int) -> bool:
        """Count ``count`` completions; True when the estimate was updated."""
        self._count += count
        now = time.monotonic()
        elapsed = now - self._since
        if elapsed < 0.02:
            return False
        self.per_second = 0.5 * self.per_second + 0.5 * self._count / elapsed
        self._count, self._since = 0, now
        return True


class WorkerThread(threading.Thread):
    """Runs messages: before hooks, the actor, after hooks; then hands them back."""

    def __init__(self, worker: Worker, index: int) -> None:
        super().__init__(name=f"liteq-worker-{index}", daemon=True)
        self.worker = worker
        self.index = index
        self.current: Any = None

    def run(self) -> None:
        broker = self.worker.broker
        broker.emit_after("worker_thread_boot", self)
        get = self.worker.work.get
        process = self.process_message
        try:
            while True:
                proxy = get()
                if proxy is _STOP:
                    return
                if proxy.lease_until < wall_clock() * 1000:
                    self._hand_back(proxy)
                    continue
                try:
                    process(proxy)
                except Interrupt:
                    logger.warning("an interrupt arrived after its message had finished")
        finally:
            broker.emit_before("worker_thread_shutdown", self)

    def _hand_back(self, proxy: MessageProxy) -> None:
        """Do not start ``proxy``: another worker may hold its lease by now."""
        logger.warning("not starting message %s: its lease lapsed before it could start "
                       "(was this process stopped or starved?); handing it back",
                       proxy.message_id)
        self.worker.lapsed.put(proxy)
        consumer_thread = self.worker.consumer_thread
        if consumer_thread is not None:
            consumer_thread.nudge()

    def process_message(self, proxy: MessageProxy) -> None:
        broker = self.worker.broker
        board = self.worker.board
        self.current = proxy._message
        if board is not None:
            board.start(self.index, proxy.message_id)
        if lease_log.enabled:
            lease_log.run("start", proxy)
        try:
            actor = broker.actors.get(proxy._message.actor_name)
            if actor is None:
                proxy.fail()
                raise ActorNotFound(
                    f"actor {proxy._message.actor_name!r} is not declared in this worker"
                )
            # emit_before's rule (MiddlewareError propagates, others are logged), inlined
            # like the after hooks below: the generic call costs ~0.3 µs per message.
            for hook in broker._hooks["before_process_message"]:
                try:
                    hook(broker, proxy)
                except MiddlewareError:
                    raise
                except Exception:
                    logger.critical("middleware hook before_process_message failed", exc_info=True)
            message = proxy._message
            started = perf_counter()
            if actor.is_async:
                from .asyncio import run_coroutine

                # is_async: fn is an ``async def``, so it returns a coroutine.
                result = run_coroutine(actor.fn(*message.args, **message.kwargs))  # type: ignore[arg-type]
            else:
                result = actor.fn(*message.args, **message.kwargs)
            self.worker.activity.ran(message.queue_name, perf_counter() - started)
            # emit_after's rule (log and go on), inlined: passing ``result=`` through
            # emit_after's **kwargs costs a dict per hook on the hot path.
            for hook in broker._hooks["after_process_message"]:
                try:
                    hook(broker, proxy, result=result)
                except Exception:
                    logger.critical("after_process_message hook failed", exc_info=True)
        except SkipMessage as exc:
            if proxy.failed:  # e.g. past its age limit: join and Results see why
                proxy.stuff_exception(exc)
            broker.emit_after("skip_message", proxy)
        except BaseException as exc:
            self.worker.failed += 1
            self.worker.activity.failed(proxy._message.actor_name, proxy._message.message_id,
                                        exc)
            self._log_failure(broker, proxy, exc)
            proxy.stuff_exception(exc)
            self._after_failure(broker, proxy, exc)
        finally:
            if lease_log.enabled:
                lease_log.run("end", proxy)
            if board is not None:
                board.finish(self.index)
            self.current = None
            self.worker.processed += 1
            self.worker.done.put(proxy)
            consumer_thread = self.worker.consumer_thread
            if (consumer_thread is not None and consumer_thread.idle
                    and self.worker.work.qsize() <= self.worker.worker_threads):
                consumer_thread.consumer.wakeup()

    @staticmethod
    def _after_failure(broker: Broker, proxy: MessageProxy, exc: BaseException) -> None:
        """Run the after_process_message hooks of a failed message. A hook that raises
        must not turn the failure into a success: the message is then dead-lettered with
        the hook's error and the original one as its reason (the other hooks still run)."""
        for hook in broker.hooks("after_process_message"):
            try:
                hook(broker, proxy, exception=exc)
            except Exception as hook_exc:
                name = getattr(hook, "__qualname__", repr(hook))
                logger.critical("%s failed while handling a failure of message %s",
                                name, proxy._message.message_id, exc_info=True)
                if not isinstance(proxy._exception, HookFailed):
                    failure = HookFailed(f"{name} raised {exception_text(hook_exc)} while "
                                         f"handling {exception_text(exc)}")
                    failure.__cause__ = hook_exc
                    proxy.stuff_exception(failure)
                proxy.fail()

    @staticmethod
    def _log_failure(broker: Broker, proxy: MessageProxy, exc: BaseException) -> None:
        """Log a failure as Dramatiq does: one ERROR record carrying the traceback; a
        retry request or a rate limit at DEBUG, an exception the actor ``throws`` at INFO."""
        message = proxy._message
        if isinstance(exc, (Retry, RateLimitExceeded)):
            logger.debug("%s asked for a retry of message %s: %r", message.actor_name,
                         message.message_id, exc)
            return
        actor = broker.actors.get(message.actor_name)
        throws = resolve("throws", message.options, actor.options if actor else NO_OPTIONS)
        if _is_instance(exc, throws):
            logger.info("actor %s failed on message %s with expected exception %s",
                        message.actor_name, message.message_id, type(exc).__name__)
            return
        logger.error("actor %s failed on message %s: %s", message.actor_name,
                     message.message_id, exception_text(exc), exc_info=exc)


def _is_instance(exc: BaseException, kinds: Any) -> bool:
    """``isinstance(exc, kinds)``, false for a missing or malformed ``throws`` option."""
    try:
        return bool(kinds) and isinstance(exc, kinds)
    except TypeError:
        return False
