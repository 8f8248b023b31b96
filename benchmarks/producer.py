"""The producer side of the benchmarks, run in its own process for each measurement.

``python benchmarks/producer.py SYSTEM MODE [--n N] [--batch B] [--interval S] [--flush]``

SYSTEM is liteq, dramatiq or huey (the broker comes from the task module's environment
variables); MODE is ``single`` (N ``noop`` messages, one send at a time), ``bulk``
(liteq's ``enqueue_many`` in groups of B) or ``latency`` (N ``latency`` messages
carrying their send time, S seconds apart). Prints one JSON line:
``{"start": t, "end": t, "elapsed": s, "n": N}`` (wall-clock ``time.time()``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _sender(system: str):  # -> (noop.send-like, latency.send-like, module)
    if system == "liteq":
        import tasks_liteq as m

        return m.noop.send, m.latency.send, m
    if system == "dramatiq":
        import tasks_dramatiq as m

        return m.noop.send, m.latency.send, m
    if system == "huey":
        import tasks_huey as m

        return m.noop, m.latency, m
    raise SystemExit(f"unknown system {system!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("system")
    parser.add_argument("mode", choices=["single", "bulk", "latency"])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--flush", action="store_true",
                        help="empty the system's queues first (Dramatiq, liteq on a server; "
                             "SQLite runs use a fresh file anyway)")
    args = parser.parse_args()
    send, send_latency, module = _sender(args.system)
    # Systems on a server (Dramatiq, liteq on Redis / RabbitMQ) share it across scenarios.
    on_server = args.system == "dramatiq" or (
        args.system == "liteq" and not os.environ["LITEQ_BROKER_URL"].startswith("sqlite"))
    if args.flush and on_server:
        module.broker.flush_all()
    n = args.n
    start = time.time()
    if args.mode == "single":
        for i in range(n):
            send(i)
    elif args.mode == "bulk":
        if args.system != "liteq":
            raise SystemExit("bulk enqueue is measured for liteq only")
        message = module.noop.message
        enqueue_many = module.broker.enqueue_many
        for offset in range(0, n, args.batch):
            enqueue_many([message(i) for i in range(offset, min(n, offset + args.batch))])
    else:
        next_at = time.monotonic()
        for _ in range(n):
            send_latency(time.time())
            next_at += args.interval
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    end = time.time()
    print(json.dumps({"start": start, "end": end, "elapsed": end - start, "n": n}), flush=True)
    if on_server:
        module.broker.close()


if __name__ == "__main__":
    main()
