"""The event-sourced application: each use case loads aggregates, calls a command, saves.

Concurrency is optimistic: a save on a stale version raises IntegrityError, and the use case
either reloads and decides again or, when the caller sent an etag, reports the conflict.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate, DomainEventProtocol
from eventsourcing.persistence import IntegrityError, Recording

from connectors import SOURCES
from domain.account import (
    API_KEY_SCHEME,
    Account,
    ApiKey,
    ApiKeyInfo,
    KeyStanding,
    UnknownApiKey,
    api_key_prefix,
)
from domain.auto_import import AutoImport
from domain.contact import Contact
from domain.csv_import import CsvImport, CsvImportState
from domain.custom_field import CustomField
from domain.external_account import ExternalAccount
from domain.import_settings import ImportChanges, NewImport
from service.errors import ApiKeyExpired, ApiKeyRevoked, EtagMismatch, NotFound
from service.existing import aggregates_of
from service.key_cache import TtlCache

HISTORY_PAGE = 500
# What every sync page or CSV batch loads again after saving it (not the many contacts).
RELOADED_OFTEN = (AutoImport, Account, ExternalAccount, CsvImport)
# How many times a use case decides again after its save met a concurrent write.
MAX_ATTEMPTS = 20
T = TypeVar("T")


def retry_on_conflict(attempt: Callable[[], T], what: str) -> T:
    """Runs `attempt` (load, decide, save) until its save does not meet a concurrent write
    (IntegrityError): each try decides again on fresh state. `what` names what kept changing."""
    for _ in range(MAX_ATTEMPTS):
        try:
            return attempt()
        except IntegrityError:
            continue
    raise IntegrityError(f"{what} kept changing; try again")


def etag_of(auto_import: AutoImport) -> str:
    """A strong etag (RFC 7232): the version of the import's last change of settings or state,
    quoted. Sync progress does not change it."""
    return f'"{auto_import.config_version}"'


def import_name(account_id: str, import_id: UUID | str) -> str:
    return f"accounts/{account_id}/imports/{import_id}"


def default_display_name(service: str, external_account: str) -> str:
    return f"{SOURCES[service].display_name} ({external_account})"


def hash_api_key(key: str) -> str:
    # Keys are 256-bit random: a fast hash is enough, no stretching needed.
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KnownKey:
    """What authentication needs of a key: its account and its record there."""

    account_id: str
    info: ApiKeyInfo


class AutoImports(Application[UUID]):
    name = "AutoImports"
    # Keep recently used aggregates in memory. Each load still reads the events saved after the
    # cached version (fast-forward), so replicas sharing a database stay consistent; it spares
    # replaying up to 200 events since the last snapshot (UpdateImport 6.5 ms -> 0.8 ms).
    env = {"AGGREGATE_CACHE_MAXSIZE": "10000"}  # noqa: RUF012 (the library's API)
    snapshotting_intervals = {  # noqa: RUF012 (the library's API)
        AutoImport: 200,
        Account: 200,
        Contact: 200,
        ExternalAccount: 200,
        CsvImport: 200,
    }

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__(env)
        self._save_listeners: list[Callable[[list[Recording[UUID]]], None]] = []
        # By key hash; entries live KEY_CACHE_TTL, so revocations elsewhere are seen in time.
        self._key_cache: TtlCache[str, KnownKey] = TtlCache()

    def on_saved(self, listener: Callable[[list[Recording[UUID]]], None]) -> None:
        """Calls `listener` after every save, e.g. to wake an in-process projector at once."""
        self._save_listeners.append(listener)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """Application.save for aggregates (this application saves no bare event), without
        its runtime-protocol isinstance checks: they cost 35 us an aggregate, a fifth of a CSV
        import's time (README, Performance)."""
        processing_event = ProcessingEvent[UUID]()
        aggregate: Aggregate | None
        for aggregate in objs:
            if aggregate is not None:
                processing_event.events.extend(aggregate.collect_events())
                processing_event.aggregates[aggregate.id] = aggregate
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        for listener in self._save_listeners:
            listener(recordings)
        return recordings

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        """Snapshots each saved aggregate whose new events reached a multiple of its interval,
        from the aggregate in hand, at its version: eventsourcing's own reloads it from the
        store (the last snapshot and up to 200 events decoded again), which was a third of a
        500-contact sync."""
        assert self.snapshots is not None
        aggregates = processing_event.aggregates
        due = set()
        for e in processing_event.events:
            aggregate = aggregates.get(e.originator_id)
            interval = aggregate and self.snapshotting_intervals.get(type(aggregate))
            if interval and e.originator_version % interval == 0:
                due.add(e.originator_id)
        for aggregate_id in due:
            aggregate = aggregates[aggregate_id]
            assert isinstance(aggregate, Aggregate)  # all this application saves
            self.snapshots.put([aggregate.Snapshot.take(aggregate)])

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        try:
            recordings = super()._record(processing_event)
        except IntegrityError:
            if not self._were_recorded(processing_event.events):
                raise
            # The write committed but its acknowledgement was lost: eventsourcing's PostgreSQL
            # recorder retries an insert after an OperationalError, and the retry meets the
            # rows its first attempt committed. Ours: not a concurrent write.
            recordings = []
        self._cache_saved(processing_event)
        return recordings

    def _cache_saved(self, processing_event: ProcessingEvent[UUID]) -> None:
        """Puts a copy of each saved aggregate that use cases load again and again in the
        cache, as it is now stored. With fast-forward on, eventsourcing caches only what it
        loads: the next load of an import read back and decoded every event of the page just
        saved (a hundred per page). A copy, because the caller may go on changing its object
        without saving it. Another replica's later writes are still read by the fast-forward."""
        cache = self.repository.cache
        if cache is None:
            return
        for aggregate_id, aggregate in processing_event.aggregates.items():
            finished_csv = (
                isinstance(aggregate, CsvImport) and aggregate.state is not CsvImportState.RUNNING
            )
            if isinstance(aggregate, RELOADED_OFTEN) and not finished_csv:
                cache.put(aggregate_id, copy.deepcopy(aggregate))
                continue
            # Out of the cache, where the repository put it when it was loaded: a finished CSV
            # import (only a retried upload reads it again, and it holds its report, up to 1,000
            # row errors), and whatever use cases seldom load twice, such as the contact an
            # UnsubscribeContact loads. There are many of those: a soak of unsubscribes filled
            # the cache with a contact every 0.4 s, towards its 10,000 entries.
            with contextlib.suppress(KeyError):
                cache.get(aggregate_id, evict=True)

    def _were_recorded(self, events: list[DomainEventProtocol[UUID]]) -> bool:
        """Whether the store holds exactly these events (same ids, versions and contents)."""
        for e in events:
            stored = self.recorder.select_events(
                e.originator_id, gt=e.originator_version - 1, lte=e.originator_version
            )
            if not stored or self.mapper.to_domain_event(stored[0]) != e:
                return False
        return bool(events)

    # -- accounts ---------------------------------------------------------------------------
    def upsert_account(
        self, account_id: str, plan: str, contact_limit: int, *, actor: str
    ) -> Account:

        def attempt() -> Account:
            try:
                account = self.get_account(account_id)
            except NotFound:
                account = Account.register(account_id, plan, contact_limit, actor=actor)
            else:
                account.change_plan(plan, contact_limit, actor=actor)
            self.save(account)
            return account

        return retry_on_conflict(attempt, f"account {account_id}")

    def get_account(self, account_id: str) -> Account:
        try:
            account: Account = self.repository.get(Account.create_id(account_id))
        except AggregateNotFoundError:
            raise NotFound(
                "account", account_id, hint=": create it with AccountService.UpsertAccount"
            ) from None
        return account

    def create_api_key(
        self,
        account_id: str,
        *,
        actor: str,
        expire_time: datetime | None = None,
        ttl: timedelta | None = None,
    ) -> tuple[str, ApiKeyInfo]:
        """Returns the key and its record. Only the key's hash is stored."""
        key_id = secrets.token_hex(4)
        key = f"{API_KEY_SCHEME}{key_id}_{secrets.token_urlsafe(32)}"

        def attempt() -> tuple[str, ApiKeyInfo]:
            account = self.get_account(account_id)
            index = account.add_api_key(
                key_id,
                hash_api_key(key),
                prefix=api_key_prefix(key),
                actor=actor,
                now=datetime.now(UTC),
                expire_time=expire_time,
                ttl=ttl,
            )
            self.save(account, index)
            info = account.api_key_of(key_id)
            assert info is not None
            return key, info

        return retry_on_conflict(attempt, f"account {account_id}")

    def list_api_keys(self, account_id: str) -> list[ApiKeyInfo]:
        return self.get_account(account_id).list_api_keys()

    def revoke_api_key(self, account_id: str, key_id: str, *, actor: str) -> ApiKeyInfo:
        """Revokes the account's key (again: the same answer). Takes effect here at once, and on
        other replicas when their cache entry ends (KEY_CACHE_TTL)."""

        def attempt() -> ApiKeyInfo:
            account = self.get_account(account_id)
            try:
                revoked = account.revoke_api_key(key_id, actor=actor, now=datetime.now(UTC))
            except UnknownApiKey:
                # The same answer whether or not another account has a key of this id.
                raise NotFound("API key", f"{key_id} of account {account_id}") from None
            self.save(account)
            return revoked

        revoked = retry_on_conflict(attempt, f"account {account_id}")
        self._key_cache.forget_values(
            lambda known: (known.account_id, known.info.key_id) == (account_id, key_id)
        )
        return revoked

    def identify_api_key(self, key: str) -> tuple[str, str] | None:
        """(account_id, key_id) of a valid key, None for an unknown one; raises ApiKeyRevoked or
        ApiKeyExpired for a key that no longer opens its account."""
        key_hash = hash_api_key(key)
        known = self._key_cache.get(key_hash)
        if known is None:
            known = self._look_up_key(key_hash)
            if known is None:
                return None
            self._key_cache.put(key_hash, known)
        info = known.info
        standing = info.standing(datetime.now(UTC))
        if standing is KeyStanding.REVOKED:
            raise ApiKeyRevoked(
                f"the API key {info.prefix}... was revoked at {_rfc3339(info.revoke_time)}: "
                "create a new one with AccountService.CreateApiKey"
            )
        if standing is KeyStanding.EXPIRED:
            raise ApiKeyExpired(
                f"the API key {info.prefix}... expired at {_rfc3339(info.expire_time)}: "
                "create a new one with AccountService.CreateApiKey"
            )
        return known.account_id, info.key_id

    def _look_up_key(self, key_hash: str) -> KnownKey | None:
        try:
            index: ApiKey = self.repository.get(ApiKey.create_id(key_hash))
            account = self.get_account(index.account_id)
        except (AggregateNotFoundError, NotFound):
            return None
        info = account.api_key_of(index.key_id)
        return None if info is None else KnownKey(index.account_id, info)

    # -- imports ----------------------------------------------------------------------------
    def create_import(
        self, account_id: str, new: NewImport, *, actor: str, request_id: str = ""
    ) -> AutoImport:
        self.get_account(account_id)
        auto_import = AutoImport.start(
            account_id,
            new,
            SOURCES,
            actor=actor,
            request_id=request_id,
            default_display_name=default_display_name,
        )
        try:
            self.save(auto_import)
        except IntegrityError:
            if not request_id:
                raise
            # A retry of a request that already succeeded: answer as the first time.
            return self.get_import(account_id, auto_import.id, include_deleted=True)
        return auto_import

    def get_import(
        self, account_id: str, import_id: UUID, *, include_deleted: bool = False
    ) -> AutoImport:
        auto_import: object = None
        with contextlib.suppress(AggregateNotFoundError):
            auto_import = self.repository.get(import_id)
        if (
            not isinstance(auto_import, AutoImport)
            or auto_import.account_id != account_id
            or (auto_import.is_deleted and not include_deleted)
        ):
            raise NotFound("import", import_name(account_id, import_id))
        return auto_import

    def update_import(
        self, account_id: str, import_id: UUID, changes: ImportChanges, *, etag: str, actor: str
    ) -> AutoImport:
        return self._change_import(
            account_id,
            import_id,
            etag,
            lambda i: i.update(changes, SOURCES[i.service], actor=actor),
        )

    def delete_import(self, account_id: str, import_id: UUID, *, etag: str, actor: str) -> None:
        self._change_import(account_id, import_id, etag, lambda i: i.delete(actor=actor))

    def pause_import(self, account_id: str, import_id: UUID, *, actor: str) -> AutoImport:
        return self._change_import(account_id, import_id, "", lambda i: i.pause(actor=actor))

    def resume_import(self, account_id: str, import_id: UUID, *, actor: str) -> AutoImport:
        return self._change_import(account_id, import_id, "", lambda i: i.resume(actor=actor))

    def _change_import(
        self,
        account_id: str,
        import_id: UUID,
        etag: str,
        command: Callable[[AutoImport], None],
    ) -> AutoImport:
        """Load, check the etag, command, save; on a conflicting write (by a person, or by a
        sync's progress), all of it again: the etag check turns a change of settings into
        ABORTED."""

        def attempt() -> AutoImport:
            auto_import = self.get_import(account_id, import_id)
            if etag and _unquote(etag) != _unquote(etag_of(auto_import)):
                raise EtagMismatch(import_name(account_id, import_id), etag_of(auto_import))
            command(auto_import)
            self.save(auto_import)
            return auto_import

        return retry_on_conflict(attempt, import_name(account_id, import_id))

    # -- what a sync (or a preview of one) decides on ---------------------------------------
    def find(self, aggregate_id: UUID) -> Any:
        """The aggregate at `aggregate_id`, or None when there is none."""
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def external_account_of(self, auto_import: AutoImport) -> ExternalAccount:
        """The budget the import's external account shares (by its identity, however the
        import spells it): loaded, or opened (not saved) when none exists yet."""
        account_id, service = auto_import.account_id, auto_import.service
        identity = SOURCES[service].external_account_identity(auto_import.external_account)
        external = self.find(ExternalAccount.create_id(account_id, service, identity))
        if external is None:
            external = ExternalAccount(
                account_id=account_id, service=service, external_account=identity
            )
        assert isinstance(external, ExternalAccount)
        return external

    def fields_of(
        self, account_id: str, service: str, keys: Iterable[str]
    ) -> dict[str, CustomField | None]:
        """The account's custom field of the service for each key, or None where none exists
        (in one query: a page checks every field its source declares)."""
        ids = {key: CustomField.create_id(account_id, service, key) for key in keys}
        found = aggregates_of(self, ids.values())
        return {key: found[field_id] for key, field_id in ids.items()}

    # -- contacts ---------------------------------------------------------------------------
    def unsubscribe_contact(self, account_id: str, email: str, *, actor: str) -> Contact:

        def attempt() -> Contact:  # again when a sync updated it meanwhile
            try:
                contact: Contact = self.repository.get(Contact.create_id(account_id, email))
            except AggregateNotFoundError:
                raise NotFound("contact", f"{email} in account {account_id}") from None
            contact.unsubscribe(actor=actor)
            self.save(contact)
            return contact

        return retry_on_conflict(attempt, f"contact {email}")

    def import_history(
        self, account_id: str, import_id: UUID
    ) -> Iterator[DomainEventProtocol[UUID]]:
        """Every event of the import, oldest first, read page by page (deleted imports too)."""
        self.get_import(account_id, import_id, include_deleted=True)
        version: int | None = None
        while True:
            page = list(self.events.get(import_id, gt=version, limit=HISTORY_PAGE))
            yield from page
            if len(page) < HISTORY_PAGE:
                return
            version = page[-1].originator_version


def _rfc3339(moment: datetime | None) -> str:
    return "?" if moment is None else moment.isoformat().replace("+00:00", "Z")


def _unquote(etag: str) -> str:
    return etag.strip().removeprefix("W/").strip('"')
