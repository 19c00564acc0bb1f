"""The page cache of each SQLite connection to a store, kept small.

SQLite's default is 2,000 KiB a connection, and a server holds up to 15 connections to each of
its two files (eventsourcing's pool, one per thread in a transaction). In WAL mode each
connection drops its cache whenever another connection commits, that is all the time under
load, and fills it again from the file: as the store grew, each refill took more pages, and
glibc kept the memory freed between refills. A soak (bench/load.py --soak) measured SQLite's
peak memory at 13 MiB and the server's malloc heap growing 28 -> 48 MiB in 10 minutes (its
memory in use flat at 16-25 MiB); with 256 KiB a connection the heap stayed at 22-24 MiB and the
throughput was the same: the file's pages are in the operating system's cache anyway.

The size is written once into each database file's header (PRAGMA default_cache_size), where
every connection of every process reads it when it opens the file: eventsourcing opens the
connections, and offers no hook to set a PRAGMA on each.
"""

from __future__ import annotations

import sqlite3

CACHE_PAGES = 64  # of 4 KiB: 256 KiB a connection


def limit_page_cache(env: dict[str, str]) -> None:
    """Sets the default page cache of the SQLite file of a store's eventsourcing environment
    (Settings.store_env), if it is not set already; nothing for PostgreSQL. Before eventsourcing
    opens the file: the connections of its pool live as long as the process, each with the page
    cache it opened with (an empty file is made a database; eventsourcing then adds its tables)."""
    if env.get("PERSISTENCE_MODULE") != "eventsourcing.sqlite":
        return
    path = env["SQLITE_DBNAME"]
    if ":memory:" in path or "mode=memory" in path:
        return
    connection = sqlite3.connect(path, timeout=float(env.get("SQLITE_LOCK_TIMEOUT") or 30))
    try:
        (pages,) = connection.execute("PRAGMA default_cache_size").fetchone()
        if pages != CACHE_PAGES:
            connection.execute(f"PRAGMA default_cache_size = {CACHE_PAGES}")
            connection.commit()
    finally:
        connection.close()
