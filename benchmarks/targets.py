"""The figures the benchmark reports (DESIGN §7), with liteq's targets.

One table drives both the output rows and the pass/fail marks, so they cannot disagree.
"""

from __future__ import annotations

#: key, label, unit, target (op, value) for liteq or None, higher_is_better
METRICS: list[tuple[str, str, str, tuple[str, float] | None, bool]] = [
    ("enqueue_single", "enqueue, one send() at a time", "msg/s", (">=", 40000), True),
    ("enqueue_bulk", "bulk enqueue, enqueue_many x1000", "msg/s", (">=", 150000), True),
    ("e2e", "enqueue while the pool drains (end to end)", "msg/s", (">=", 25000), True),
    ("drain", "drain N, worker CLI 2x8, launch to last task", "task/s", (">=", 50000), True),
    ("drain_steady", "drain N, first to last task", "task/s", None, True),
    ("durable_drain", "drain N, durable (sync FULL), launch to last", "task/s",
     (">=", 15000), True),
    ("start_to_first", "worker launch to first task", "s", ("<=", 0.3), False),
    ("latency_p50", "idle pickup latency p50", "ms", ("<=", 1.0), False),
    ("latency_p95", "idle pickup latency p95", "ms", None, False),
    ("latency_p99", "idle pickup latency p99", "ms", ("<=", 5.0), False),
    ("idle_cpu", "CPU of the idle pool (all processes)", "% core", ("<=", 1.0), False),
    ("rss_start", "RSS per worker process, at start", "MB", ("<=", 50), False),
    ("rss_after_n", "RSS per worker process, after N tasks", "MB", ("<=", 50), False),
    ("rss_after_depth", "RSS per worker process, after the deep drain", "MB", ("<=", 50),
     False),
    ("rss_growth_depth", "RSS growth across the deep drain", "MB", ("<=", 5), False),
    ("depth_shallow_rate", "drain first W of a shallow queue (N)", "task/s", None, True),
    ("depth_deep_rate", "drain first W of a deep queue", "task/s", None, True),
    ("depth_ratio", "deep / shallow drain rate", "x", (">=", 0.85), True),
]


def target_met(key: str, value: float | None) -> bool | None:
    for k, _label, _unit, target, _hib in METRICS:
        if k == key and target is not None and value is not None:
            op, limit = target
            return value >= limit if op == ">=" else value <= limit
    return None


#: DESIGN §7, liteq on a server beside Dramatiq on the same server: liteq system -> peer.
SAME_SERVER_PEERS: dict[str, str] = {
    "liteq-redis": "dramatiq-redis",
    "liteq-rabbitmq": "dramatiq-rabbitmq",
}
#: Targets of the liteq / Dramatiq ratio on the same server (higher is better: for a
#: lower-is-better figure the ratio is Dramatiq / liteq).
RATIO_TARGETS: dict[str, tuple[str, float]] = {"drain": (">=", 1.0)}
#: Targets of liteq on a server, in place of the SQLite ones of METRICS.
SYSTEM_TARGETS: dict[str, dict[str, tuple[str, float]]] = {
    "liteq-redis": {"latency_p99": ("<=", 10.0)},
}


def _check(target: tuple[str, float] | None, value: float | None) -> bool | None:
    if target is None or value is None:
        return None
    op, limit = target
    return value >= limit if op == ">=" else value <= limit


def higher_is_better(key: str) -> bool:
    return next((hib for k, _l, _u, _t, hib in METRICS if k == key), True)


def peer_ratio(key: str, value: float | None, peer: float | None) -> float | None:
    """liteq against a peer, as "times better": >1 means liteq is ahead."""
    if not value or not peer:
        return None
    return value / peer if higher_is_better(key) else peer / value


def ratio_target_met(key: str, ratio: float | None) -> bool | None:
    return _check(RATIO_TARGETS.get(key), ratio)


def system_target_met(name: str, key: str, value: float | None) -> bool | None:
    """A §7 mark for ``name``'s figure: SQLite targets for ``liteq``, the server ones for
    liteq on a server, none for peers."""
    if name == "liteq":
        return target_met(key, value)
    return _check(SYSTEM_TARGETS.get(name, {}).get(key), value)


def same_server_targets(name: str, systems: dict) -> dict[str, bool | None]:
    """The §7 marks of liteq-on-a-server ``name`` given every system's results."""
    peer = SAME_SERVER_PEERS.get(name)
    mine = systems.get(name, {}).get("metrics", {})
    theirs = systems.get(peer, {}).get("metrics", {}) if peer else {}
    marks: dict[str, bool | None] = {}
    for key in RATIO_TARGETS:
        marks[f"{key}_vs_{peer}"] = ratio_target_met(
            key, peer_ratio(key, mine.get(key), theirs.get(key)))
    for key in SYSTEM_TARGETS.get(name, {}):
        marks[key] = system_target_met(name, key, mine.get(key))
    return marks
