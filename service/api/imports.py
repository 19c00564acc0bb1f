"""AutoImportService: protobuf in, use case, protobuf out."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import grpc
from google.protobuf import empty_pb2

from autoimport.v1 import imports_pb2, imports_pb2_grpc
from connectors import SOURCES
from domain.auto_import import AutoImport
from domain.errors import ValidationError, shown
from domain.import_settings import ImportChanges
from service.api.convert import (
    auto_import_message,
    connection_check_message,
    credentials_from,
    criteria_from,
    due_import_message,
    history_event_message,
    new_import_of,
    not_started_message,
    page_size_of,
    parse_import_name,
    preview_message,
    require,
    row_of,
    service_message,
    sync_report_message,
    time_of,
)
from service.api.interceptors import current_principal
from service.application import AutoImports
from service.config import MAX_SYNCS
from service.errors import NotFound, TooManySyncs
from service.preview import Previewer
from service.read_models import ReadModels
from service.read_models.imports import ImportRow
from service.read_models.sql import InvalidPageToken
from service.sync import NotStarted, SyncEngine

UPDATABLE = ("display_name", "credentials", "criteria", "list_ids", "tags")
DEADLINE_MARGIN = 0.5  # seconds a sync leaves before its caller's deadline to save and answer


def deadline_of(context: Any) -> float | None:
    """When the work of the call must end (time.monotonic()): a moment before the caller's
    deadline, so that the answer still reaches it; None when the caller set none."""
    left = context.time_remaining()
    return None if left is None else time.monotonic() + left - DEADLINE_MARGIN


IMMUTABLE = ("service", "external_account")
OUTPUT_ONLY = (
    "name",
    "state",
    "state_reason",
    "create_time",
    "update_time",
    "last_sync",
    "next_sync_time",
    "etag",
)


class AutoImportServicer(imports_pb2_grpc.AutoImportServiceServicer):
    def __init__(
        self,
        app: AutoImports,
        read_models: ReadModels,
        engine: SyncEngine,
        sync_interval: float,
        previewer: Previewer,
        max_syncs: int = MAX_SYNCS,
    ):
        """`max_syncs`: syncs run at once; TriggerSync past it answers RESOURCE_EXHAUSTED at
        once rather than wait for a thread (the server's pool has that many more threads than
        the other calls need)."""
        self._app = app
        self._read = read_models
        self._engine = engine
        self._previewer = previewer
        self._interval = sync_interval
        self._max_syncs = max_syncs
        self._sync_slots = threading.BoundedSemaphore(max_syncs)

    def _message(self, row: ImportRow) -> imports_pb2.AutoImport:
        return auto_import_message(row, self._interval)

    def CreateImport(
        self, request: imports_pb2.CreateImportRequest, context: Any
    ) -> imports_pb2.AutoImport:
        principal = current_principal()
        account_id = require(request.account_id, "account_id")
        principal.require_account(account_id)
        _check_request_id(request.request_id)
        new = new_import_of(request.auto_import)
        try:
            auto_import = self._app.create_import(
                account_id, new, actor=principal.actor, request_id=request.request_id
            )
        except ValidationError as e:
            raise e.under("auto_import") from None
        return self._message(row_of(auto_import))

    def GetImport(
        self, request: imports_pb2.GetImportRequest, context: Any
    ) -> imports_pb2.AutoImport:
        account_id, import_id = self._authorized_import(request.name)
        row = self._read.caught_up().get_import(account_id, str(import_id))
        if row is None:
            raise NotFound("import", request.name)
        return self._message(row)

    def ListImports(
        self, request: imports_pb2.ListImportsRequest, context: Any
    ) -> imports_pb2.ListImportsResponse:
        account_id = require(request.account_id, "account_id")
        current_principal().require_account(account_id)
        if request.service and request.service not in SOURCES:
            raise ValidationError.single(
                "service", f"must be one of {', '.join(SOURCES)}, or empty"
            )
        page_size = page_size_of(request.page_size, default=50, maximum=1000)
        view, tokens = self._read.caught_up(), self._read.page_tokens
        try:
            page = view.list_imports(
                account_id, request.service, page_size, tokens.verify(request.page_token)
            )
        except InvalidPageToken as e:
            raise ValidationError.single("page_token", str(e)) from None
        counts = view.count_by_service(account_id)
        return imports_pb2.ListImportsResponse(
            auto_imports=[self._message(row) for row in page.rows],
            next_page_token=tokens.sign(page.next_page_token),
            counts_by_service={service: counts.get(service, 0) for service in SOURCES},
        )

    def UpdateImport(
        self, request: imports_pb2.UpdateImportRequest, context: Any
    ) -> imports_pb2.AutoImport:
        message = request.auto_import
        account_id, import_id = self._authorized_import(message.name, field="auto_import.name")
        changes = _changes_from(message, list(request.update_mask.paths))
        try:
            auto_import = self._app.update_import(
                account_id, import_id, changes, etag=message.etag, actor=current_principal().actor
            )
        except ValidationError as e:
            raise e.under("auto_import") from None
        return self._message(row_of(auto_import))

    def DeleteImport(
        self, request: imports_pb2.DeleteImportRequest, context: Any
    ) -> empty_pb2.Empty:
        account_id, import_id = self._authorized_import(request.name)
        self._app.delete_import(
            account_id, import_id, etag=request.etag, actor=current_principal().actor
        )
        return empty_pb2.Empty()

    def PauseImport(
        self, request: imports_pb2.PauseImportRequest, context: Any
    ) -> imports_pb2.AutoImport:
        account_id, import_id = self._authorized_import(request.name)
        auto_import = self._app.pause_import(account_id, import_id, actor=current_principal().actor)
        return self._message(row_of(auto_import))

    def ResumeImport(
        self, request: imports_pb2.ResumeImportRequest, context: Any
    ) -> imports_pb2.AutoImport:
        account_id, import_id = self._authorized_import(request.name)
        auto_import = self._app.resume_import(
            account_id, import_id, actor=current_principal().actor
        )
        return self._message(row_of(auto_import))

    def GetImportHistory(
        self, request: imports_pb2.GetImportHistoryRequest, context: grpc.ServicerContext
    ) -> Iterator[imports_pb2.ImportEvent]:
        account_id, import_id = self._authorized_import(request.name)
        for event in self._app.import_history(account_id, import_id):
            if not context.is_active():
                return  # the caller went away
            yield history_event_message(event)

    def ListServices(
        self, request: imports_pb2.ListServicesRequest, context: Any
    ) -> imports_pb2.ListServicesResponse:
        account_id = require(request.account_id, "account_id")
        current_principal().require_account(account_id)
        counts = self._read.caught_up().count_by_service(account_id)
        return imports_pb2.ListServicesResponse(
            services=[service_message(s, counts.get(s.id, 0)) for s in SOURCES.values()]
        )

    def CheckConnection(
        self, request: imports_pb2.CheckConnectionRequest, context: Any
    ) -> imports_pb2.ConnectionCheck:
        target = self._preview_target(request)
        deadline = deadline_of(context)
        return connection_check_message(self._previewer.check_connection(target, deadline))

    def PreviewImport(
        self, request: imports_pb2.PreviewImportRequest, context: Any
    ) -> imports_pb2.ImportPreview:
        if request.sample_size < 0:
            raise ValidationError.single("sample_size", "must not be negative")
        target = self._preview_target(request)
        deadline = deadline_of(context)
        preview, more = self._previewer.preview(target, request.sample_size, deadline)
        return preview_message(preview, more)

    def _preview_target(
        self, request: imports_pb2.CheckConnectionRequest | imports_pb2.PreviewImportRequest
    ) -> AutoImport:
        """An existing import by name, or a new one as CreateImport would make it (never
        saved); its account is the caller's."""
        if request.name:
            if request.HasField("auto_import"):
                raise ValidationError.single(
                    "auto_import", "give either name (an existing import) or auto_import"
                )
            account_id, import_id = self._authorized_import(request.name)
            if request.account_id and request.account_id != account_id:
                raise ValidationError.single("account_id", "must be the account of name")
            return self._previewer.target(account_id, None, import_id)
        account_id = require(request.account_id, "account_id")
        current_principal().require_account(account_id)
        if not request.HasField("auto_import"):
            raise ValidationError.single(
                "auto_import", "is required: the import to check, or name an existing one"
            )
        try:
            return self._previewer.target(account_id, new_import_of(request.auto_import), None)
        except ValidationError as e:
            raise e.under("auto_import") from None

    def TriggerSync(
        self, request: imports_pb2.TriggerSyncRequest, context: Any
    ) -> imports_pb2.SyncReport:
        account_id, import_id = self._authorized_import(request.name)
        if request.scheduled:
            current_principal().require_admin()
        _check_request_id(request.request_id)
        deadline = deadline_of(context)
        if not self._sync_slots.acquire(blocking=False):
            raise TooManySyncs(
                f"this server already runs {self._max_syncs} syncs (AUTOIMPORT_MAX_SYNCS): "
                "retry later"
            )
        try:
            if request.scheduled:
                result = self._engine.trigger_scheduled(
                    account_id, import_id, request_id=request.request_id, deadline=deadline
                )
                if isinstance(result, NotStarted):
                    return not_started_message(result, request.name)
                return sync_report_message(result, request.name)
            report = self._engine.trigger(
                account_id,
                import_id,
                request_id=request.request_id,
                actor=current_principal().actor,
                deadline=deadline,
            )
        finally:
            self._sync_slots.release()
        return sync_report_message(report, request.name)

    def ListDueImports(
        self, request: imports_pb2.ListDueImportsRequest, context: Any
    ) -> imports_pb2.ListDueImportsResponse:
        current_principal().require_admin()
        page_size = page_size_of(request.page_size, default=500, maximum=1000)
        due_before: datetime | None = None
        if request.HasField("due_before"):
            due_before = time_of(request.due_before, "due_before")
        elif not request.page_token:
            due_before = datetime.now(UTC)
        # Due at `due_before`: its last sync began at least one interval earlier.
        interval = timedelta(seconds=self._interval)
        # Never before year 1: near it, only imports never synced are due.
        earliest = datetime.min.replace(tzinfo=UTC) + interval
        cutoff = None if due_before is None else max(due_before, earliest) - interval
        tokens = self._read.page_tokens
        try:
            page = self._read.caught_up().list_due(
                cutoff, page_size, tokens.verify(request.page_token)
            )
        except InvalidPageToken as e:
            raise ValidationError.single("page_token", str(e)) from None
        return imports_pb2.ListDueImportsResponse(
            due_imports=[due_import_message(due, self._interval) for due in page.rows],
            next_page_token=tokens.sign(page.next_page_token),
        )

    def ListSyncs(
        self, request: imports_pb2.ListSyncsRequest, context: Any
    ) -> imports_pb2.ListSyncsResponse:
        account_id, import_id = self._authorized_import(request.name)
        page_size = page_size_of(request.page_size, default=20, maximum=100)
        auto_import = self._app.get_import(account_id, import_id, include_deleted=True)
        tokens = self._read.page_tokens
        try:
            page = self._read.caught_up().list_syncs(
                str(import_id), page_size, tokens.verify(request.page_token)
            )
        except InvalidPageToken as e:
            raise ValidationError.single("page_token", str(e)) from None
        reports = page.reports
        if auto_import.running_sync is not None and not request.page_token:
            reports = [auto_import.running_sync, *reports][:page_size]
        return imports_pb2.ListSyncsResponse(
            syncs=[sync_report_message(r, request.name) for r in reports],
            next_page_token=tokens.sign(page.next_page_token),
        )

    @staticmethod
    def _authorized_import(name: str, field: str = "name") -> tuple[str, UUID]:
        """Parses the name and checks the caller's access before anything about the import
        is looked up, so that a caller never learns whether another account's import exists."""
        account_id, import_id = parse_import_name(name, field)
        current_principal().require_account(account_id)
        return account_id, import_id


def _check_request_id(request_id: str) -> None:
    if request_id:
        try:
            UUID(request_id)
        except ValueError:
            raise ValidationError.single(
                "request_id", "must be a UUID (e.g. from uuid4()), or empty"
            ) from None


def _changes_from(message: imports_pb2.AutoImport, paths: list[str]) -> ImportChanges:
    """AIP-134: the mask names the fields to change ("*": all of them); without a mask, every
    updatable field that is set in the message changes."""
    fields: set[str] = set()
    if not paths:
        if message.display_name:
            fields.add("display_name")
        if message.HasField("credentials"):
            fields.add("credentials")
        if message.WhichOneof("criteria"):
            fields.add("criteria")
        if message.list_ids:
            fields.add("list_ids")
        if message.tags:
            fields.add("tags")
    for path in paths:
        top = path.split(".")[0]
        if path == "*":
            fields.update(UPDATABLE)
        elif top in UPDATABLE:
            fields.add(top)
        elif top in SOURCES:  # a criteria member is named after its service
            fields.add("criteria")
        elif top in IMMUTABLE:
            raise ValidationError.single(
                "update_mask", f"{top} cannot change after creation: create another import instead"
            )
        elif top in OUTPUT_ONLY:
            raise ValidationError.single("update_mask", f"{top} is output only")
        else:
            raise ValidationError.single(
                "update_mask", f"unknown field {shown(path)}; updatable: {', '.join(UPDATABLE)}"
            )
    criteria = criteria_from(message) if "criteria" in fields else None
    return ImportChanges(
        display_name=message.display_name if "display_name" in fields else None,
        credentials=credentials_from(message.credentials) if "credentials" in fields else None,
        criteria=criteria,
        reset_criteria="criteria" in fields and criteria is None,
        list_ids=list(message.list_ids) if "list_ids" in fields else None,
        tags=list(message.tags) if "tags" in fields else None,
    )
