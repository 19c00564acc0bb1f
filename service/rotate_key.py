"""`autoimport rotate-key`: every stored event and snapshot re-encrypted under a new cipher key.

The history is kept as it is, row for row (the same ids, versions and notification ids, so the
read models and their tracking stay valid): only each row's ciphertext changes. Stop every
server and projector on the store first: one still running holds the old key and would fail on
the rows already rotated.

A run can stop part way (a crash, Ctrl-C) and be run again: each batch is one transaction, and a
row the new key already reads is left alone. With the key in the data directory (`cipher.key`,
generated on first start), the new key is first written beside it (`cipher.key.new`) and only
replaces it once every row is rotated; with the key given as AUTOIMPORT_CIPHER_KEY, the new one
comes from AUTOIMPORT_NEW_CIPHER_KEY, and the operator puts it in place of the old one after.
Page tokens handed out under the old key are refused after (callers start their lists again).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from eventsourcing.cryptography import AESCipher
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.utils import Environment

from service.application import AutoImports
from service.config import PREFIX, ConfigError, Settings, _read_or_create_secret
from service.stores import prepare_store

BATCH = 1000  # rows a transaction
NEW_KEY_VARIABLE = PREFIX + "NEW_CIPHER_KEY"


@dataclass
class Rotation:
    rotated: int = 0  # rows re-encrypted by this run
    already: int = 0  # rows an earlier, interrupted run had re-encrypted


def run(settings: Settings, environ: dict[str, str], out: TextIO) -> int:
    """The command: rotates, then puts the new key in place (or says where to)."""
    key_file = settings.cipher_key_file or settings.data_dir / "cipher.key"
    from_environment = settings.cipher_key_file is None
    given = environ.get(NEW_KEY_VARIABLE, "").strip()
    if from_environment and not given:
        raise ConfigError(
            f"the cipher key comes from {PREFIX}CIPHER_KEY: put the new key (from your secret "
            f"store; `python -c 'from eventsourcing.cryptography import AESCipher; "
            f"print(AESCipher.create_key(32))'` makes one) in {NEW_KEY_VARIABLE}"
        )
    pending = key_file.with_name("cipher.key.new")
    new_key = given or _read_or_create_secret(pending, lambda: AESCipher.create_key(num_bytes=32))
    _check_key(new_key)
    if new_key == settings.cipher_key:
        raise ConfigError(f"{NEW_KEY_VARIABLE} is the key in use: give another one")
    done = rotate(settings, new_key)
    out.write(f"rotate-key: {done.rotated:,} rows re-encrypted ({done.already:,} already were)\n")
    if from_environment:
        out.write(
            f"rotate-key: now set {PREFIX}CIPHER_KEY to the new key on every server and "
            "projector, then start them\n"
        )
    elif given:
        _write_secret(key_file, new_key)
        pending.unlink(missing_ok=True)
        out.write(f"rotate-key: the new key is in {key_file}\n")
    else:
        os.replace(pending, key_file)
        out.write(f"rotate-key: the new key is in {key_file}\n")
    return 0


def rotate(settings: Settings, new_key: str) -> Rotation:
    """Re-encrypts every row of the event store's events and snapshots tables under `new_key`.
    A batch is decided whole before it is written: a row that neither key reads (the wrong
    AUTOIMPORT_CIPHER_KEY) stops the run with nothing of its batch written."""
    old, new = _cipher(settings.cipher_key), _cipher(new_key)
    done = Rotation()
    prepare_store(settings)
    # Not open_application: its check reads the first event with the old key, which an
    # interrupted run may have rotated already.
    app = AutoImports(settings.store_env("events"))
    try:
        recorders: list[Any] = [app.recorder] + ([app.snapshots.recorder] if app.snapshots else [])
        for recorder in recorders:
            table = _qualified(recorder.datastore, recorder.events_table_name)
            for batch in _batches(recorder.datastore, table):
                updates = []
                for originator_id, version, state in batch:
                    if _reads(new, state):
                        done.already += 1
                        continue
                    if not _reads(old, state):
                        raise ConfigError(
                            f"{table} row {originator_id} v{version} is encrypted with neither "
                            f"key: is {PREFIX}CIPHER_KEY the key the store was written with?"
                        )
                    updates.append((new.encrypt(old.decrypt(state)), originator_id, version))
                _update(recorder.datastore, table, updates)
                done.rotated += len(updates)
    finally:
        app.close()
    return done


def _batches(datastore: Any, table: str) -> Iterator[list[tuple[Any, int, bytes]]]:
    """The table's rows in key order, a batch at a time (keyset paging: no offset to skip)."""
    mark = _placeholder(datastore)
    after: tuple[Any, int] | None = None
    while True:
        where = (
            ""
            if after is None
            else f" WHERE (originator_id, originator_version) > ({mark}, {mark})"
        )
        with datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT originator_id, originator_version, state FROM {table}{where}"
                f" ORDER BY originator_id, originator_version LIMIT {BATCH}",
                () if after is None else after,
            )
            rows = [_row(r) for r in cursor.fetchall()]
        if not rows:
            return
        yield rows
        after = rows[-1][0], rows[-1][1]


def _update(datastore: Any, table: str, updates: list[tuple[bytes, Any, int]]) -> None:
    if not updates:
        return
    mark = _placeholder(datastore)
    with datastore.transaction(commit=True) as cursor:
        cursor.executemany(
            f"UPDATE {table} SET state = {mark}"
            f" WHERE originator_id = {mark} AND originator_version = {mark}",
            updates,
        )


def _row(row: Any) -> tuple[Any, int, bytes]:
    if isinstance(row, dict):  # psycopg's dict rows
        return row["originator_id"], row["originator_version"], bytes(row["state"])
    return row[0], row[1], bytes(row[2])


def _qualified(datastore: Any, table: str) -> str:
    if isinstance(datastore, PostgresDatastore):
        return f"{datastore.schema}.{table}"
    return table


def _placeholder(datastore: Any) -> str:
    return "%s" if isinstance(datastore, PostgresDatastore) else "?"


def _cipher(key: str) -> AESCipher:
    return AESCipher(Environment(env={"CIPHER_KEY": key}))


def _reads(cipher: AESCipher, state: bytes) -> bool:
    try:
        cipher.decrypt(state)
    except ValueError:  # AES-GCM's tag does not match: another key
        return False
    return True


def _check_key(key: str) -> None:
    try:
        _cipher(key)
    except ValueError as e:
        raise ConfigError(f"{NEW_KEY_VARIABLE} is not an AES key in base64 ({e})") from None


def _write_secret(path: Path, value: str) -> None:
    """Replaces the file at once (a crash leaves the old key or the new one, never half)."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    os.replace(temporary, path)
