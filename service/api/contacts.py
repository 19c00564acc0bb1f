"""ContactService and FieldService: the account's contacts and custom fields."""

from __future__ import annotations

from typing import Any

from autoimport.v1 import contacts_pb2, contacts_pb2_grpc, fields_pb2, fields_pb2_grpc
from domain.errors import ValidationError
from domain.sources import SERVICE_IDS
from service.api.convert import (
    contact_message,
    contact_row_of,
    email_of,
    field_message,
    page_size_of,
    require,
)
from service.api.interceptors import current_principal
from service.application import AutoImports
from service.errors import NotFound
from service.read_models import ReadModels
from service.read_models.sql import InvalidPageToken


class ContactServicer(contacts_pb2_grpc.ContactServiceServicer):
    def __init__(self, app: AutoImports, read_models: ReadModels):
        self._app = app
        self._read = read_models

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
        try:
            page = self._read.caught_up().list_contacts(account_id, page_size, request.page_token)
        except InvalidPageToken as e:
            raise ValidationError.single("page_token", str(e)) from None
        return contacts_pb2.ListContactsResponse(
            contacts=[contact_message(row) for row in page.rows],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    def UnsubscribeContact(
        self, request: contacts_pb2.UnsubscribeContactRequest, context: Any
    ) -> contacts_pb2.Contact:
        account_id = _authorized_account(request.account_id)
        email = email_of(request.email)
        contact = self._app.unsubscribe_contact(account_id, email, actor=current_principal().actor)
        return contact_message(contact_row_of(contact))


class FieldServicer(fields_pb2_grpc.FieldServiceServicer):
    def __init__(self, read_models: ReadModels):
        self._read = read_models

    def ListFields(
        self, request: fields_pb2.ListFieldsRequest, context: Any
    ) -> fields_pb2.ListFieldsResponse:
        account_id = _authorized_account(request.account_id)
        if request.service and request.service not in SERVICE_IDS:
            raise ValidationError.single(
                "service", f"must be one of {', '.join(SERVICE_IDS)}, or empty"
            )
        rows = self._read.caught_up().list_fields(account_id, request.service)
        return fields_pb2.ListFieldsResponse(fields=[field_message(row) for row in rows])


def _authorized_account(account_id: str) -> str:
    require(account_id, "account_id")
    current_principal().require_account(account_id)
    return account_id
