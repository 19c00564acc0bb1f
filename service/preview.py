"""Check and preview, for the person setting an import up: what an import would connect with,
and what its next sync would do with the first page it reads. Nothing is saved.

Both take a target: an import about to be created (validated and normalized by the rules of
CreateImport, through `AutoImport.start` without a save), or an existing one, with its stored
credentials and, for a preview, its cursor (so a preview says what the next sync would do).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from uuid import UUID

from connectors import SOURCES
from connectors.base import ConnectorFactory, DeadlinePassed, Finding
from domain.auto_import import AutoImport
from domain.external_account import window_of
from domain.import_settings import NewImport
from domain.sync import Preview, preview_page
from service.application import AutoImports, default_display_name
from service.existing import contacts_by_email

MAX_SAMPLE = 100
DEFAULT_SAMPLE = 10


MAX_SECONDS = 60.0  # a check or a preview without a deadline of its own ends by then
# A connector stopping at the deadline speaks of a sync ("the next sync resumes where this one
# stopped"): a check or a preview resumes nothing.
DEADLINE_PASSED = (
    f"the service did not answer within the call's deadline (at most {MAX_SECONDS:.0f} s): "
    "nothing was changed; retry, with a longer deadline if one was set"
)


class Previewer:
    def __init__(
        self,
        app: AutoImports,
        connector_for: ConnectorFactory,
        *,
        interval: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._app = app
        self._connector_for = connector_for
        self._interval = interval
        self._clock = clock

    def target(self, account_id: str, new: NewImport | None, import_id: UUID | None) -> AutoImport:
        """The import checked: an existing one (NOT_FOUND when it is not the account's), or
        the one `new` describes, validated as CreateImport validates it and never saved."""
        if import_id is not None:
            return self._app.get_import(account_id, import_id)
        assert new is not None
        self._app.get_account(account_id)  # NOT_FOUND for an unknown account, as on create
        return AutoImport.start(
            account_id,
            new,
            SOURCES,
            actor="preview",
            default_display_name=default_display_name,
        )

    def check_connection(self, target: AutoImport, deadline: float | None = None) -> list[Finding]:
        source = SOURCES[target.service]
        with contextlib.closing(self._connector_for(target)) as connector, _own_words():
            return connector.check_connection(
                source.criteria_of(target.criteria),
                target.external_account,
                deadline=_bounded(deadline),
            )

    def preview(
        self, target: AutoImport, sample_size: int = DEFAULT_SAMPLE, deadline: float | None = None
    ) -> tuple[Preview, bool]:
        """What the target's next sync would do with its first page, and whether the source
        has more after it."""
        source = SOURCES[target.service]
        now = self._clock()
        with contextlib.closing(self._connector_for(target)) as connector, _own_words():
            page = connector.fetch_page(
                source.criteria_of(target.criteria),
                target.cursor or "",
                now - connector.lag,
                deadline=_bounded(deadline),
            )
        account_id = target.account_id
        declared = page.fields_beside(source.declared_fields())
        preview = preview_page(
            service=target.service,
            account=self._app.get_account(account_id),
            # What is left of the window's 500 for the target's external account.
            budget=self._app.external_account_of(target).remaining(
                window_of(now.timestamp(), self._interval)
            ),
            page=page,
            list_ids=target.list_ids,
            tags=target.tags,
            contacts=contacts_by_email(
                self._app, account_id, (c.email for c in page.contacts if not c.deleted)
            ),
            fields=self._app.fields_of(account_id, target.service, declared),
            declared=declared,
            sample_size=max(0, min(sample_size or DEFAULT_SAMPLE, MAX_SAMPLE)),
        )
        return preview, page.has_more


def _bounded(deadline: float | None) -> float:
    """The caller's deadline (time.monotonic()), or MAX_SECONDS from now if it is later."""
    latest = time.monotonic() + MAX_SECONDS
    return latest if deadline is None else min(deadline, latest)


@contextlib.contextmanager
def _own_words() -> Iterator[None]:
    try:
        yield
    except DeadlinePassed:
        raise DeadlinePassed(DEADLINE_PASSED) from None
