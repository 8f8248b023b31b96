"""The SQLite schema, its version and migrations, and every named query with the index serving it.

States of a row in ``liteq_messages``: READY rows sit in the ready index in claim
order; DELAYED rows (ETA in the future) sit only in the delayed index, so that
future rows never slow a claim; LEASED rows are held by a worker until acked,
nacked, or their lease lapses.

A SUSPECT row (``suspect = 1``, state READY) was running when its worker died or hung
(or, when nobody knows what ran, was leased by it). A consumer claims a suspect only
alone: with nothing else leased in its process, one at a time, and only such a solo
claim counts a delivery, so a message that kills its process is dead-lettered after
``max_deliveries`` deaths while the innocent messages around it run normally.
"""

from __future__ import annotations

from typing import cast

import apsw

from ...errors import NotALiteqDatabase, SchemaClash, SchemaTooNew

READY, DELAYED, LEASED, TOMBSTONE = 0, 1, 2, 3

#: ``PRAGMA application_id`` of a liteq database ("lteq").
APPLICATION_ID = 0x6C746571
SCHEMA_VERSION = 3

MIGRATIONS: dict[int, str] = {
    1: f"""
    CREATE TABLE liteq_messages (
        id INTEGER PRIMARY KEY,  -- may be reused after a delete: acks also match the lease token
        queue TEXT NOT NULL,
        state INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        eta INTEGER NOT NULL,
        message_id TEXT NOT NULL,
        body BLOB NOT NULL,
        enqueued_at INTEGER NOT NULL,
        deliveries INTEGER NOT NULL DEFAULT 0,
        lease_token INTEGER,
        lease_expires_at INTEGER,
        owner TEXT
    );
    -- CLAIM: directions match its ORDER BY, so a claim is an index walk, never a sort.
    CREATE INDEX liteq_messages_ready
        ON liteq_messages (queue, priority DESC, eta, id) WHERE state = {READY};
    -- PROMOTE_DUE / NEXT_ETA; covers TAIL_DELAYED
    CREATE INDEX liteq_messages_delayed
        ON liteq_messages (eta, queue) WHERE state = {DELAYED};
    -- REAP_LAPSED / RENEW_LEASES / RELEASE_OWNER; covers COUNT_RUNNING
    CREATE INDEX liteq_messages_leased
        ON liteq_messages (lease_expires_at, queue) WHERE state = {LEASED};

    CREATE TABLE liteq_dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        message_id TEXT NOT NULL,
        actor_name TEXT,
        priority INTEGER NOT NULL DEFAULT 0,
        body BLOB NOT NULL,
        reason TEXT NOT NULL,
        traceback TEXT,
        deliveries INTEGER NOT NULL DEFAULT 0,
        failed_at INTEGER NOT NULL
    );
    CREATE INDEX liteq_dead_letters_failed_at ON liteq_dead_letters (failed_at);
    CREATE INDEX liteq_dead_letters_queue ON liteq_dead_letters (queue, id);

    -- One row per declared queue: lifetime done/failed counters, updated in the ack
    -- transactions, and ready/delayed counts of the rows up to the watermark (liteq.counts).
    CREATE TABLE liteq_queues (
        queue TEXT PRIMARY KEY,
        done INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        ready INTEGER NOT NULL DEFAULT 0,
        delayed INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE liteq_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO liteq_meta VALUES ('counted_upto', 0);

    -- The worker registry read by ``liteq top``: one row per consumer, heartbeat
    -- written in the consumer's own batched transactions.
    CREATE TABLE liteq_workers (
        owner TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        queues TEXT NOT NULL,
        threads INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        heartbeat_at INTEGER NOT NULL,
        running TEXT NOT NULL DEFAULT '[]',
        processed INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        activity TEXT NOT NULL DEFAULT '{{}}'  -- JSON: recent run times and failures
    );

    -- Results of actors with store_results (liteq.results.backends.SqliteBackend).
    CREATE TABLE liteq_results (
        key TEXT PRIMARY KEY,
        value BLOB NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX liteq_results_expires_at ON liteq_results (expires_at);

    -- Counters of rate limiters and barriers (liteq.rate_limits.backends.SqliteBackend).
    CREATE TABLE liteq_rate_limits (
        key TEXT PRIMARY KEY,
        value INTEGER,
        expires_at INTEGER
    );
    CREATE INDEX liteq_rate_limits_expires_at ON liteq_rate_limits (expires_at);
    """,
    2: """
    ALTER TABLE liteq_messages ADD COLUMN suspect INTEGER NOT NULL DEFAULT 0;
    -- CLAIM_SUSPECTS: the few rows a dead or hung worker was running, claimed one at a
    -- time. Its WHERE names no column a claim or an ack changes but the row's existence,
    -- so leasing a row (a change of state) never has to look at this index.
    CREATE INDEX liteq_messages_suspect
        ON liteq_messages (queue, priority DESC, eta, id) WHERE suspect = 1 AND state = 0;
    """,
    # The counters of liteq.brokers.inspect: attempts that returned (``done`` counted
    # retried attempts too, so it is only an upper bound on a migrated file), failed
    # attempts (``failed`` counted dead letters only, a lower bound), retried,
    # dead-lettered; the registry publishes succeeded attempts and running per queue.
    3: """
    ALTER TABLE liteq_queues RENAME COLUMN done TO succeeded;
    ALTER TABLE liteq_queues ADD COLUMN retried INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE liteq_queues ADD COLUMN dead_lettered INTEGER NOT NULL DEFAULT 0;
    UPDATE liteq_queues SET dead_lettered = failed;
    ALTER TABLE liteq_workers ADD COLUMN succeeded INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE liteq_workers ADD COLUMN running_queues TEXT NOT NULL DEFAULT '{}';
    """,
}

# --- enqueue -------------------------------------------------------------------------
INSERT_MESSAGE = (
    "INSERT INTO liteq_messages (queue, state, priority, eta, message_id, body, enqueued_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
DECLARE_QUEUE = "INSERT OR IGNORE INTO liteq_queues (queue, created_at) VALUES (?, ?)"

# --- claim (served by liteq_messages_ready / liteq_messages_delayed) ------------------
PROMOTE_DUE = (
    f"UPDATE liteq_messages SET state = {READY} WHERE state = {DELAYED} AND eta <= ?"
    " RETURNING id, queue"
)
CLAIM = (
    f"SELECT id, body FROM liteq_messages INDEXED BY liteq_messages_ready"
    f" WHERE queue = ? AND state = {READY} AND suspect = 0 ORDER BY priority DESC, eta, id"
    " LIMIT ?"
)
# A batch claim counts no delivery: only a suspect claimed alone does (SOLO_LEASE).
LEASE = (
    f"UPDATE liteq_messages SET state = {LEASED}, lease_token = ?, lease_expires_at = ?,"
    " owner = ? WHERE id = ?"
)
# --- suspects (served by liteq_messages_suspect) ---------------------------------------
CLAIM_SUSPECTS = (
    f"SELECT id, body, deliveries, priority FROM liteq_messages INDEXED BY liteq_messages_suspect"
    f" WHERE queue = ? AND suspect = 1 AND state = {READY} ORDER BY priority DESC, eta, id"
)
SOLO_LEASE = (
    f"UPDATE liteq_messages SET state = {LEASED}, lease_token = ?, lease_expires_at = ?,"
    " deliveries = deliveries + 1, owner = ? WHERE id = ?"
)
NEXT_ETA = f"SELECT min(eta) FROM liteq_messages WHERE state = {DELAYED}"

# --- settle (by id and lease token: a stale token changes nothing) --------------------
ACK = "DELETE FROM liteq_messages WHERE id = ? AND lease_token = ?"
# deliveries + ?4: the delivery being settled, when its (batch) claim did not count it.
DEAD_LETTER_LEASED = (
    "INSERT INTO liteq_dead_letters"
    " (queue, message_id, actor_name, priority, body, reason, traceback, deliveries, failed_at)"
    " SELECT queue, message_id, ?1, priority, ?2, ?3, ?4, deliveries + ?5, ?6"
    " FROM liteq_messages WHERE id = ?7 AND lease_token = ?8"
)
# The lifetime counters of the messages settled (or dead-lettered) by a transaction.
COUNT_SETTLED = (
    "UPDATE liteq_queues SET succeeded = succeeded + ?, failed = failed + ?,"
    " retried = retried + ?, dead_lettered = dead_lettered + ? WHERE queue = ?"
)
# A suspect claimed alone counted a delivery that never started: take it back.
RETURN_UNSTARTED = (
    f"UPDATE liteq_messages SET state = {READY}, lease_token = NULL, lease_expires_at = NULL,"
    " owner = NULL, deliveries = deliveries - suspect WHERE id = ? AND lease_token = ?"
    " RETURNING id, queue"
)

# --- counts (counts.py; served by the primary key) -------------------------------------------
WATERMARK = "SELECT value FROM liteq_meta WHERE key = 'counted_upto'"
SET_WATERMARK = "UPDATE liteq_meta SET value = ? WHERE key = 'counted_upto'"
MAX_ID = "SELECT coalesce(max(id), 0) FROM liteq_messages"
# Rows above the watermark: a primary-key range when they are few, else a walk of the
# covering ready and delayed indexes (bounded by their size, never reading bodies).
TAIL_COUNTS = (
    f"SELECT queue, state, count(*) FROM liteq_messages WHERE id > ?"
    f" AND state IN ({READY}, {DELAYED}) GROUP BY queue, state"
)
TAIL_READY = (
    f"SELECT queue, {READY}, count(*) FROM liteq_messages INDEXED BY liteq_messages_ready"
    f" WHERE state = {READY} AND id > ? GROUP BY queue"
)
TAIL_DELAYED = (
    f"SELECT queue, {DELAYED}, count(*) FROM liteq_messages INDEXED BY liteq_messages_delayed"
    f" WHERE state = {DELAYED} AND id > ? GROUP BY queue"
)
ADD_COUNTS = (
    "INSERT INTO liteq_queues (queue, created_at, ready, delayed) VALUES (?1, 0, ?2, ?3)"
    " ON CONFLICT (queue) DO UPDATE SET ready = ready + ?2, delayed = delayed + ?3"
)
COUNTED = "SELECT queue, ready, delayed FROM liteq_queues"
TOMBSTONE_LEASED = (
    f"UPDATE liteq_messages SET state = {TOMBSTONE}, lease_token = NULL, owner = NULL"
    " WHERE id = ? AND lease_token = ?"
)
TOMBSTONE_ROW = f"UPDATE liteq_messages SET state = {TOMBSTONE} WHERE id = ?"
DROP_TOMBSTONES = f"DELETE FROM liteq_messages WHERE state = {TOMBSTONE} AND id < ?"
CLEAR_COUNTS = "UPDATE liteq_queues SET ready = 0, delayed = 0 WHERE (?1 IS NULL OR queue = ?1)"

# --- leases (served by liteq_messages_leased) ------------------------------------------
# Renews only the leases a consumer still holds (ids it has in memory, JSON array) and
# returns those it renewed: one it no longer holds was reaped and may be someone else's.
RENEW_LEASES = (
    f"UPDATE liteq_messages SET lease_expires_at = ?1 WHERE state = {LEASED} AND owner = ?2"
    " AND id IN (SELECT value FROM json_each(?3)) RETURNING id"
)
# A lapsed lease: its worker died or hung, and nobody knows what it was running.
REAP_LAPSED = (
    f"UPDATE liteq_messages SET state = {READY}, lease_token = NULL, lease_expires_at = NULL,"
    f" owner = NULL, suspect = 1 WHERE state = {LEASED} AND lease_expires_at < ?"
    " RETURNING id, queue"
)
# A dead process's leases: the messages it was running (?2, a JSON array of message ids;
# NULL when unknown, then all of them) become suspects; the others never started, so
# they are plain ready rows again (a suspect claimed alone but never started gives its
# delivery back). The messages that ``overran`` a hard time limit (?3) count a delivery
# even in a batch (alone, their solo claim counted it).
RELEASE_OWNER = (
    f"UPDATE liteq_messages SET state = {READY}, lease_token = NULL, lease_expires_at = NULL,"
    " owner = NULL,"
    " suspect = ?2 IS NULL OR suspect OR message_id IN (SELECT value FROM json_each(?2)),"
    " deliveries = deliveries - (suspect AND ?2 IS NOT NULL"
    " AND message_id NOT IN (SELECT value FROM json_each(?2)))"
    " + (NOT suspect AND message_id IN (SELECT value FROM json_each(?3)))"
    f" WHERE state = {LEASED} AND lease_expires_at IS NOT NULL"
    " AND substr(owner, 1, length(?1)) = ?1 RETURNING id, queue"
)

# --- worker registry ---------------------------------------------------------------------
HEARTBEAT = (
    "INSERT INTO liteq_workers (owner, pid, host, queues, threads, started_at, heartbeat_at,"
    " running, running_queues, processed, succeeded, failed, activity)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,"
    " running = excluded.running, running_queues = excluded.running_queues,"
    " processed = excluded.processed, succeeded = excluded.succeeded,"
    " failed = excluded.failed, activity = excluded.activity"
)
UNREGISTER = "DELETE FROM liteq_workers WHERE owner = ?"
UNREGISTER_PROCESS = "DELETE FROM liteq_workers WHERE substr(owner, 1, length(?1)) = ?1"
LIST_WORKERS = (
    "SELECT owner, pid, host, queues, threads, started_at, heartbeat_at, running,"
    " running_queues, processed, succeeded, failed, activity FROM liteq_workers"
    " ORDER BY host, pid"
)
DELETE_STALE_WORKERS = "DELETE FROM liteq_workers WHERE heartbeat_at < ?"

# --- joins, stats ----------------------------------------------------------------------
QUEUE_BUSY = (
    f"SELECT EXISTS (SELECT 1 FROM liteq_messages WHERE state = {READY} AND queue = ?)"
    f" OR EXISTS (SELECT 1 FROM liteq_messages WHERE state = {DELAYED} AND queue = ?)"
    f" OR EXISTS (SELECT 1 FROM liteq_messages WHERE state = {LEASED} AND queue = ?)"
)
COUNTERS = "SELECT queue, succeeded, failed, retried, dead_lettered FROM liteq_queues"
# Leased rows are few (a batch per worker process): counted live from their index
# (named COUNT_RUNNING in migration 1's comment).
COUNT_CLAIMED = (
    f"SELECT queue, count(*) FROM liteq_messages INDEXED BY liteq_messages_leased"
    f" WHERE state = {LEASED} GROUP BY queue"
)
# The oldest ready ETA of one queue by index seeks: one per distinct priority (skip-scan).
OLDEST_READY = f"""
WITH RECURSIVE levels(priority) AS (
    SELECT max(priority) FROM liteq_messages INDEXED BY liteq_messages_ready
     WHERE queue = ?1 AND state = {READY}
    UNION ALL
    SELECT (SELECT max(priority) FROM liteq_messages INDEXED BY liteq_messages_ready
             WHERE queue = ?1 AND state = {READY} AND priority < levels.priority)
      FROM levels WHERE levels.priority IS NOT NULL
)
SELECT min((SELECT min(eta) FROM liteq_messages INDEXED BY liteq_messages_ready
             WHERE queue = ?1 AND state = {READY} AND priority = levels.priority))
  FROM levels WHERE levels.priority IS NOT NULL
"""
FLUSH_QUEUE = "DELETE FROM liteq_messages WHERE queue = ?1 AND id != ?2"
FLUSH_ALL = "DELETE FROM liteq_messages WHERE id != ?"

# --- dead letters (served by liteq_dead_letters_queue / _failed_at) ----------------------
DEAD_LETTER_BODY = (
    "INSERT INTO liteq_dead_letters"
    " (queue, message_id, actor_name, priority, body, reason, traceback, deliveries, failed_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
DELETE_MESSAGE = "DELETE FROM liteq_messages WHERE id = ?"
LIST_DEAD = (
    "SELECT id, queue, message_id, actor_name, priority, body, reason, traceback, deliveries,"
    " failed_at FROM liteq_dead_letters WHERE (?1 IS NULL OR queue = ?1) AND id > ?2"
    " ORDER BY id LIMIT ?3"
)
GET_DEAD = LIST_DEAD.replace("WHERE (?1", "WHERE id = ?4 AND (?1")
COUNT_DEAD = "SELECT queue, count(*) FROM liteq_dead_letters GROUP BY queue"
NEWEST_DEAD = (
    "SELECT id, queue, message_id, actor_name, priority, body, reason, traceback, deliveries,"
    " failed_at FROM liteq_dead_letters ORDER BY id DESC LIMIT ?"
)
DELETE_DEAD = "DELETE FROM liteq_dead_letters WHERE id = ?"
# Every message of one queue in a state a purge deletes (counted before the purge).
COUNT_QUEUE = (
    f"SELECT count(*) FROM liteq_messages WHERE queue = ? AND state IN"
    f" ({READY}, {DELAYED}, {LEASED})"
)
EXPIRE_DEAD = "DELETE FROM liteq_dead_letters WHERE failed_at < ?"


# --- results (served by the primary key / liteq_results_expires_at) ----------------------
SELECT_RESULT = "SELECT value FROM liteq_results WHERE key = ? AND expires_at > ?"
UPSERT_RESULT = "INSERT OR REPLACE INTO liteq_results (key, value, expires_at) VALUES (?, ?, ?)"
PURGE_RESULTS = (
    "DELETE FROM liteq_results WHERE rowid IN"
    " (SELECT rowid FROM liteq_results WHERE expires_at <= ? LIMIT ?)"
)

# --- rate limits (served by the primary key / liteq_rate_limits_expires_at) ---------------
SELECT_LIMIT = "SELECT value FROM liteq_rate_limits WHERE key = ? AND expires_at > ?"
UPSERT_LIMIT = (
    "INSERT OR REPLACE INTO liteq_rate_limits (key, value, expires_at) VALUES (?, ?, ?)"
)
PURGE_LIMITS = (
    "DELETE FROM liteq_rate_limits WHERE rowid IN"
    " (SELECT rowid FROM liteq_rate_limits WHERE expires_at <= ? LIMIT ?)"
)


def check(conn: apsw.Connection, path: str) -> int:
    """Return the schema version of ``conn``'s file, or raise if liteq must not touch it.

    Runs before anything is written. The adoption rule: liteq adds its tables only to
    a file with application_id 0, user_version 0 and no ``liteq_*`` table (an empty
    file, or an application's own database, for transactional enqueue). Otherwise
    ``NotALiteqDatabase`` for another application's file (or not a database at all),
    ``SchemaClash`` for ``liteq_*`` tables liteq did not make, ``SchemaTooNew`` for a
    file from a newer liteq.
    """
    # One read snapshot: another process's migration must not commit between the reads.
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        return _check(conn, path)
    finally:
        if own and conn.in_transaction:
            conn.execute("COMMIT")


def _check(conn: apsw.Connection, path: str) -> int:
    try:
        # apsw types fetchone() as Optional Any; this select of two PRAGMAs is one row
        app_id, version = cast("tuple[int, int]", conn.execute(
            "SELECT * FROM pragma_application_id(), pragma_user_version()").fetchone())
    except apsw.NotADBError as e:
        raise NotALiteqDatabase(f"{path!r} is not a SQLite database: {e}") from None
    if app_id not in (0, APPLICATION_ID) or (app_id == 0 and version != 0):
        raise NotALiteqDatabase(
            f"{path!r} belongs to another application (application_id={app_id:#x}, "
            f"user_version={version}); refusing to use it as a liteq database"
        )
    if version == 0:
        clash = [name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE 'liteq\\_%' ESCAPE '\\'"
            " ORDER BY name")]
        if clash:
            raise SchemaClash(
                f"{path!r} already has table(s) named like liteq's ({', '.join(clash)}) but "
                "no liteq schema version (application_id 0, user_version 0); refusing to "
                "adopt it: rename those tables or give liteq another file"
            )
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{path!r} has liteq schema version {version}, newer than this liteq "
            f"understands ({SCHEMA_VERSION}); upgrade liteq"
        )
    return version


def migrate(conn: apsw.Connection, path: str) -> None:
    """Bring a checked liteq (or empty) database up to ``SCHEMA_VERSION``."""
    if check(conn, path) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = cast("tuple[int]", conn.execute("PRAGMA user_version").fetchone())[0]
        for target in range(version + 1, SCHEMA_VERSION + 1):
            conn.execute(MIGRATIONS[target])
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
