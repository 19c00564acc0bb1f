"""ContactService and FieldService: the account's contacts and custom fields."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from uuid import UUID

from autoimport.v1 import contacts_pb2, contacts_pb2_grpc, fields_pb2, fields_pb2_grpc
from connectors import SOURCES
from domain.csv_file import CSV_SERVICE
from domain.csv_import import CsvOptions
from domain.errors import ValidationError
from service.api.convert import (
    contact_message,
    contact_row_of,
    csv_report_message,
    email_of,
    field_message,
    page_size_of,
    require,
)
from service.api.interceptors import current_principal
from service.application import AutoImports
from service.csv_import import CsvImporter
from service.errors import NotFound
from service.read_models import ReadModels
from service.read_models.sql import InvalidPageToken

log = logging.getLogger(__name__)


class ContactServicer(contacts_pb2_grpc.ContactServiceServicer):
    def __init__(self, app: AutoImports, read_models: ReadModels):
        self._app = app
        self._read = read_models
        self._csv = CsvImporter(app)

    def GetContact(
        self, request: contacts_pb2.GetContactRequest, context: Any
    ) -> contacts_pb2.Contact:
        account_id = _authorized_account(request.account_id)
        email = email_of(request.email)
        row = self._read.caught_up().get_contact(account_id, email)
        if row is None:
            raise NotFound("contact", f"{email} in account {account_id}")
        return contact_message(row)

    def ListContacts(
        self, request: contacts_pb2.ListContactsRequest, context: Any
    ) -> contacts_pb2.ListContactsResponse:
        account_id = _authorized_account(request.account_id)
        page_size = page_size_of(request.page_size, default=50, maximum=1000)
        tokens = self._read.page_tokens
        try:
            page = self._read.caught_up().list_contacts(
                account_id, page_size, tokens.verify(request.page_token)
            )
        except InvalidPageToken as e:
            raise ValidationError.single("page_token", str(e)) from None
        return contacts_pb2.ListContactsResponse(
            contacts=[contact_message(row) for row in page.rows],
            next_page_token=tokens.sign(page.next_page_token),
            total_size=page.total_size,
        )

    def UnsubscribeContact(
        self, request: contacts_pb2.UnsubscribeContactRequest, context: Any
    ) -> contacts_pb2.Contact:
        account_id = _authorized_account(request.account_id)
        email = email_of(request.email)
        contact = self._app.unsubscribe_contact(account_id, email, actor=current_principal().actor)
        return contact_message(contact_row_of(contact))

    def ImportCsv(
        self, request_iterator: Iterator[contacts_pb2.ImportCsvRequest], context: Any
    ) -> contacts_pb2.CsvImportReport:
        requests = iter(request_iterator)
        first = next(requests, None)
        if first is None or first.WhichOneof("part") != "options":
            raise ValidationError.single(
                "options", "must come first: the options, then the file's bytes in chunk messages"
            )
        options = first.options
        account_id = require(options.account_id, "options.account_id")
        principal = current_principal()
        principal.require_account(account_id)  # before reading a byte of the file
        if options.request_id:
            try:
                UUID(options.request_id)
            except ValueError:
                raise ValidationError.single(
                    "options.request_id", "must be a UUID (e.g. from uuid4()), or empty"
                ) from None
        report = self._csv.run(
            account_id,
            CsvOptions(list(options.list_ids), list(options.tags), options.request_id),
            _chunks(requests, context, options.size_bytes),
            actor=principal.actor,
        )
        return csv_report_message(report)


class FieldServicer(fields_pb2_grpc.FieldServiceServicer):
    def __init__(self, read_models: ReadModels):
        self._read = read_models

    def ListFields(
        self, request: fields_pb2.ListFieldsRequest, context: Any
    ) -> fields_pb2.ListFieldsResponse:
        account_id = _authorized_account(request.account_id)
        services = (*SOURCES, CSV_SERVICE)
        if request.service and request.service not in services:
            raise ValidationError.single(
                "service", f"must be one of {', '.join(services)}, or empty"
            )
        rows = self._read.caught_up().list_fields(account_id, request.service)
        return fields_pb2.ListFieldsResponse(fields=[field_message(row) for row in rows])


def _authorized_account(account_id: str) -> str:
    require(account_id, "account_id")
    current_principal().require_account(account_id)
    return account_id


def _chunks(
    requests: Iterator[contacts_pb2.ImportCsvRequest], context: Any, size: int
) -> Iterator[bytes]:
    """The file's bytes, as the messages after the options bring them. A stream that ends
    short of the declared size, or with the call no longer active, was cut off, not finished:
    grpcio may end the request iterator cleanly when a client cancels."""
    received = 0
    for request in requests:
        if request.WhichOneof("part") == "options":
            raise ValidationError.single("options", "must be sent once, in the first message")
        received += len(request.chunk)
        yield request.chunk
    if not context.is_active():
        raise ValidationError.single("chunk", "the upload was cancelled")
    if size and received != size:
        log.info("ImportCsv: the stream ended after %d of %d bytes", received, size)
        raise ValidationError.single(
            "options.size_bytes",
            f"the file is {size:,} bytes but the stream brought {received:,}: it was cut off",
        )
