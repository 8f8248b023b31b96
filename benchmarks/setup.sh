#!/bin/sh
# Install what benchmarks/run.py compares liteq with: Redis and RabbitMQ servers (Debian or
# Ubuntu, via apt; the benchmark starts its own private instances, so the system services
# are not needed) and the `bench` extra (Dramatiq with its RabbitMQ/Redis clients, Huey)
# into the project's virtual environment.
#   usage: benchmarks/setup.sh            (run from anywhere; uses sudo when not root)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

if command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server rabbitmq-server
    # On hosts with systemd, apt starts the system services; the benchmark does not use them.
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $SUDO systemctl stop redis-server rabbitmq-server 2>/dev/null || true
    fi
else
    echo "apt-get not found: install redis-server and rabbitmq-server yourself" >&2
fi

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -e "$ROOT[bench]"
echo "ready: $VENV/bin/python benchmarks/run.py [--quick]"
