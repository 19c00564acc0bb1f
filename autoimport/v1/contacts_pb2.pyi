import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Contact(_message.Message):
    __slots__ = ("id", "email", "first_name", "last_name", "phone", "status", "fields", "list_ids", "tags", "source_imports", "create_time", "update_time")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[Contact.Status]
        ACTIVE: _ClassVar[Contact.Status]
        UNSUBSCRIBED: _ClassVar[Contact.Status]
    STATUS_UNSPECIFIED: Contact.Status
    ACTIVE: Contact.Status
    UNSUBSCRIBED: Contact.Status
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    FIRST_NAME_FIELD_NUMBER: _ClassVar[int]
    LAST_NAME_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    LIST_IDS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IMPORTS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    email: str
    first_name: str
    last_name: str
    phone: str
    status: Contact.Status
    fields: _containers.ScalarMap[str, str]
    list_ids: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    source_imports: _containers.RepeatedScalarFieldContainer[str]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., email: _Optional[str] = ..., first_name: _Optional[str] = ..., last_name: _Optional[str] = ..., phone: _Optional[str] = ..., status: _Optional[_Union[Contact.Status, str]] = ..., fields: _Optional[_Mapping[str, str]] = ..., list_ids: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., source_imports: _Optional[_Iterable[str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetContactRequest(_message.Message):
    __slots__ = ("account_id", "email")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    email: str
    def __init__(self, account_id: _Optional[str] = ..., email: _Optional[str] = ...) -> None: ...

class ListContactsRequest(_message.Message):
    __slots__ = ("account_id", "page_size", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    page_size: int
    page_token: str
    def __init__(self, account_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListContactsResponse(_message.Message):
    __slots__ = ("contacts", "next_page_token", "total_size")
    CONTACTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    contacts: _containers.RepeatedCompositeFieldContainer[Contact]
    next_page_token: str
    total_size: int
    def __init__(self, contacts: _Optional[_Iterable[_Union[Contact, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class UnsubscribeContactRequest(_message.Message):
    __slots__ = ("account_id", "email")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    email: str
    def __init__(self, account_id: _Optional[str] = ..., email: _Optional[str] = ...) -> None: ...

class ImportCsvRequest(_message.Message):
    __slots__ = ("options", "chunk")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    options: CsvImportOptions
    chunk: bytes
    def __init__(self, options: _Optional[_Union[CsvImportOptions, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class CsvImportOptions(_message.Message):
    __slots__ = ("account_id", "list_ids", "tags", "request_id", "size_bytes")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    LIST_IDS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    list_ids: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    size_bytes: int
    def __init__(self, account_id: _Optional[str] = ..., list_ids: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class CsvImportReport(_message.Message):
    __slots__ = ("rows", "added", "updated", "unchanged", "duplicates_in_file", "skipped_missing_email", "skipped_invalid_email", "blocked_by_limit", "fields_created", "errors", "cells_cleaned", "rows_with_formulas", "formula_rows")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_IN_FILE_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_MISSING_EMAIL_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_INVALID_EMAIL_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_BY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    FIELDS_CREATED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    CELLS_CLEANED_FIELD_NUMBER: _ClassVar[int]
    ROWS_WITH_FORMULAS_FIELD_NUMBER: _ClassVar[int]
    FORMULA_ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    added: int
    updated: int
    unchanged: int
    duplicates_in_file: int
    skipped_missing_email: int
    skipped_invalid_email: int
    blocked_by_limit: int
    fields_created: int
    errors: _containers.RepeatedCompositeFieldContainer[CsvRowError]
    cells_cleaned: int
    rows_with_formulas: int
    formula_rows: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, rows: _Optional[int] = ..., added: _Optional[int] = ..., updated: _Optional[int] = ..., unchanged: _Optional[int] = ..., duplicates_in_file: _Optional[int] = ..., skipped_missing_email: _Optional[int] = ..., skipped_invalid_email: _Optional[int] = ..., blocked_by_limit: _Optional[int] = ..., fields_created: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[CsvRowError, _Mapping]]] = ..., cells_cleaned: _Optional[int] = ..., rows_with_formulas: _Optional[int] = ..., formula_rows: _Optional[_Iterable[int]] = ...) -> None: ...

class CsvRowError(_message.Message):
    __slots__ = ("row", "reason")
    ROW_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    row: int
    reason: str
    def __init__(self, row: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...
