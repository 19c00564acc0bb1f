import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Credentials(_message.Message):
    __slots__ = ("access_token", "refresh_token")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    refresh_token: str
    def __init__(self, access_token: _Optional[str] = ..., refresh_token: _Optional[str] = ...) -> None: ...

class GoogleContactsCriteria(_message.Message):
    __slots__ = ("contact_group",)
    CONTACT_GROUP_FIELD_NUMBER: _ClassVar[int]
    contact_group: str
    def __init__(self, contact_group: _Optional[str] = ...) -> None: ...

class ShopifyCriteria(_message.Message):
    __slots__ = ("subscribed_only", "customer_tag")
    SUBSCRIBED_ONLY_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_TAG_FIELD_NUMBER: _ClassVar[int]
    subscribed_only: bool
    customer_tag: str
    def __init__(self, subscribed_only: _Optional[bool] = ..., customer_tag: _Optional[str] = ...) -> None: ...

class HubSpotCriteria(_message.Message):
    __slots__ = ("lifecycle_stage",)
    LIFECYCLE_STAGE_FIELD_NUMBER: _ClassVar[int]
    lifecycle_stage: str
    def __init__(self, lifecycle_stage: _Optional[str] = ...) -> None: ...

class MailchimpCriteria(_message.Message):
    __slots__ = ("audience_id", "member_status", "member_tag", "segment_id")
    AUDIENCE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_STATUS_FIELD_NUMBER: _ClassVar[int]
    MEMBER_TAG_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    audience_id: str
    member_status: str
    member_tag: str
    segment_id: str
    def __init__(self, audience_id: _Optional[str] = ..., member_status: _Optional[str] = ..., member_tag: _Optional[str] = ..., segment_id: _Optional[str] = ...) -> None: ...

class AutoImport(_message.Message):
    __slots__ = ("name", "service", "display_name", "external_account", "credentials", "google_contacts", "shopify", "hubspot", "mailchimp", "list_ids", "tags", "state", "state_reason", "create_time", "update_time", "last_sync", "next_sync_time", "etag")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[AutoImport.State]
        ACTIVE: _ClassVar[AutoImport.State]
        PAUSED: _ClassVar[AutoImport.State]
        NEEDS_REAUTH: _ClassVar[AutoImport.State]
        DELETED: _ClassVar[AutoImport.State]
    STATE_UNSPECIFIED: AutoImport.State
    ACTIVE: AutoImport.State
    PAUSED: AutoImport.State
    NEEDS_REAUTH: AutoImport.State
    DELETED: AutoImport.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    GOOGLE_CONTACTS_FIELD_NUMBER: _ClassVar[int]
    SHOPIFY_FIELD_NUMBER: _ClassVar[int]
    HUBSPOT_FIELD_NUMBER: _ClassVar[int]
    MAILCHIMP_FIELD_NUMBER: _ClassVar[int]
    LIST_IDS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_SYNC_FIELD_NUMBER: _ClassVar[int]
    NEXT_SYNC_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    service: str
    display_name: str
    external_account: str
    credentials: Credentials
    google_contacts: GoogleContactsCriteria
    shopify: ShopifyCriteria
    hubspot: HubSpotCriteria
    mailchimp: MailchimpCriteria
    list_ids: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    state: AutoImport.State
    state_reason: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    last_sync: SyncReport
    next_sync_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., service: _Optional[str] = ..., display_name: _Optional[str] = ..., external_account: _Optional[str] = ..., credentials: _Optional[_Union[Credentials, _Mapping]] = ..., google_contacts: _Optional[_Union[GoogleContactsCriteria, _Mapping]] = ..., shopify: _Optional[_Union[ShopifyCriteria, _Mapping]] = ..., hubspot: _Optional[_Union[HubSpotCriteria, _Mapping]] = ..., mailchimp: _Optional[_Union[MailchimpCriteria, _Mapping]] = ..., list_ids: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[AutoImport.State, str]] = ..., state_reason: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_sync: _Optional[_Union[SyncReport, _Mapping]] = ..., next_sync_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class SyncReport(_message.Message):
    __slots__ = ("sync_id", "import_name", "outcome", "start_time", "end_time", "fetched", "added", "updated", "unchanged", "skipped_missing_email", "skipped_invalid_email", "deferred", "blocked_by_limit", "fields_created", "skipped", "error", "deleted_at_source", "skipped_at_source", "not_started", "next_sync_time")
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OUTCOME_UNSPECIFIED: _ClassVar[SyncReport.Outcome]
        RUNNING: _ClassVar[SyncReport.Outcome]
        COMPLETED: _ClassVar[SyncReport.Outcome]
        CAPPED: _ClassVar[SyncReport.Outcome]
        LIMIT_REACHED: _ClassVar[SyncReport.Outcome]
        FAILED: _ClassVar[SyncReport.Outcome]
    OUTCOME_UNSPECIFIED: SyncReport.Outcome
    RUNNING: SyncReport.Outcome
    COMPLETED: SyncReport.Outcome
    CAPPED: SyncReport.Outcome
    LIMIT_REACHED: SyncReport.Outcome
    FAILED: SyncReport.Outcome
    class NotStarted(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NOT_STARTED_UNSPECIFIED: _ClassVar[SyncReport.NotStarted]
        NOT_DUE: _ClassVar[SyncReport.NotStarted]
        ALREADY_RUNNING: _ClassVar[SyncReport.NotStarted]
    NOT_STARTED_UNSPECIFIED: SyncReport.NotStarted
    NOT_DUE: SyncReport.NotStarted
    ALREADY_RUNNING: SyncReport.NotStarted
    class SkippedContact(_message.Message):
        __slots__ = ("external_id", "email", "reason")
        EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
        EMAIL_FIELD_NUMBER: _ClassVar[int]
        REASON_FIELD_NUMBER: _ClassVar[int]
        external_id: str
        email: str
        reason: str
        def __init__(self, external_id: _Optional[str] = ..., email: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
    SYNC_ID_FIELD_NUMBER: _ClassVar[int]
    IMPORT_NAME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    FETCHED_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_MISSING_EMAIL_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_INVALID_EMAIL_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_BY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    FIELDS_CREATED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_AT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    NOT_STARTED_FIELD_NUMBER: _ClassVar[int]
    NEXT_SYNC_TIME_FIELD_NUMBER: _ClassVar[int]
    sync_id: str
    import_name: str
    outcome: SyncReport.Outcome
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    fetched: int
    added: int
    updated: int
    unchanged: int
    skipped_missing_email: int
    skipped_invalid_email: int
    deferred: int
    blocked_by_limit: int
    fields_created: int
    skipped: _containers.RepeatedCompositeFieldContainer[SyncReport.SkippedContact]
    error: str
    deleted_at_source: int
    skipped_at_source: int
    not_started: SyncReport.NotStarted
    next_sync_time: _timestamp_pb2.Timestamp
    def __init__(self, sync_id: _Optional[str] = ..., import_name: _Optional[str] = ..., outcome: _Optional[_Union[SyncReport.Outcome, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fetched: _Optional[int] = ..., added: _Optional[int] = ..., updated: _Optional[int] = ..., unchanged: _Optional[int] = ..., skipped_missing_email: _Optional[int] = ..., skipped_invalid_email: _Optional[int] = ..., deferred: _Optional[int] = ..., blocked_by_limit: _Optional[int] = ..., fields_created: _Optional[int] = ..., skipped: _Optional[_Iterable[_Union[SyncReport.SkippedContact, _Mapping]]] = ..., error: _Optional[str] = ..., deleted_at_source: _Optional[int] = ..., skipped_at_source: _Optional[int] = ..., not_started: _Optional[_Union[SyncReport.NotStarted, str]] = ..., next_sync_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateImportRequest(_message.Message):
    __slots__ = ("account_id", "auto_import", "request_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AUTO_IMPORT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    auto_import: AutoImport
    request_id: str
    def __init__(self, account_id: _Optional[str] = ..., auto_import: _Optional[_Union[AutoImport, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetImportRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListImportsRequest(_message.Message):
    __slots__ = ("account_id", "service", "page_size", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    service: str
    page_size: int
    page_token: str
    def __init__(self, account_id: _Optional[str] = ..., service: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListImportsResponse(_message.Message):
    __slots__ = ("auto_imports", "next_page_token", "counts_by_service")
    class CountsByServiceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    AUTO_IMPORTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COUNTS_BY_SERVICE_FIELD_NUMBER: _ClassVar[int]
    auto_imports: _containers.RepeatedCompositeFieldContainer[AutoImport]
    next_page_token: str
    counts_by_service: _containers.ScalarMap[str, int]
    def __init__(self, auto_imports: _Optional[_Iterable[_Union[AutoImport, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., counts_by_service: _Optional[_Mapping[str, int]] = ...) -> None: ...

class UpdateImportRequest(_message.Message):
    __slots__ = ("auto_import", "update_mask")
    AUTO_IMPORT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    auto_import: AutoImport
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, auto_import: _Optional[_Union[AutoImport, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteImportRequest(_message.Message):
    __slots__ = ("name", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    etag: str
    def __init__(self, name: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class PauseImportRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ResumeImportRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class TriggerSyncRequest(_message.Message):
    __slots__ = ("name", "request_id", "scheduled")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    scheduled: bool
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ..., scheduled: _Optional[bool] = ...) -> None: ...

class ListDueImportsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "due_before")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DUE_BEFORE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    due_before: _timestamp_pb2.Timestamp
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., due_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListDueImportsResponse(_message.Message):
    __slots__ = ("due_imports", "next_page_token")
    DUE_IMPORTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    due_imports: _containers.RepeatedCompositeFieldContainer[DueImport]
    next_page_token: str
    def __init__(self, due_imports: _Optional[_Iterable[_Union[DueImport, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DueImport(_message.Message):
    __slots__ = ("name", "next_sync_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NEXT_SYNC_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    next_sync_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., next_sync_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListSyncsRequest(_message.Message):
    __slots__ = ("name", "page_size", "page_token")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    page_size: int
    page_token: str
    def __init__(self, name: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSyncsResponse(_message.Message):
    __slots__ = ("syncs", "next_page_token")
    SYNCS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    syncs: _containers.RepeatedCompositeFieldContainer[SyncReport]
    next_page_token: str
    def __init__(self, syncs: _Optional[_Iterable[_Union[SyncReport, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetImportHistoryRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ImportEvent(_message.Message):
    __slots__ = ("version", "type", "time", "actor", "details")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    version: int
    type: str
    time: _timestamp_pb2.Timestamp
    actor: str
    details: _struct_pb2.Struct
    def __init__(self, version: _Optional[int] = ..., type: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., details: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ListServicesRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class ListServicesResponse(_message.Message):
    __slots__ = ("services",)
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[ExternalService]
    def __init__(self, services: _Optional[_Iterable[_Union[ExternalService, _Mapping]]] = ...) -> None: ...

class ExternalService(_message.Message):
    __slots__ = ("id", "display_name", "fields", "import_count", "criteria_description", "description")
    ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    IMPORT_COUNT_FIELD_NUMBER: _ClassVar[int]
    CRITERIA_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    id: str
    display_name: str
    fields: _containers.RepeatedCompositeFieldContainer[ServiceField]
    import_count: int
    criteria_description: str
    description: str
    def __init__(self, id: _Optional[str] = ..., display_name: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[ServiceField, _Mapping]]] = ..., import_count: _Optional[int] = ..., criteria_description: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ServiceField(_message.Message):
    __slots__ = ("key", "label", "title", "personalization_tag")
    KEY_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZATION_TAG_FIELD_NUMBER: _ClassVar[int]
    key: str
    label: str
    title: str
    personalization_tag: str
    def __init__(self, key: _Optional[str] = ..., label: _Optional[str] = ..., title: _Optional[str] = ..., personalization_tag: _Optional[str] = ...) -> None: ...

class CheckConnectionRequest(_message.Message):
    __slots__ = ("account_id", "auto_import", "name")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AUTO_IMPORT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    auto_import: AutoImport
    name: str
    def __init__(self, account_id: _Optional[str] = ..., auto_import: _Optional[_Union[AutoImport, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class ConnectionCheck(_message.Message):
    __slots__ = ("ok", "findings")
    class Finding(_message.Message):
        __slots__ = ("check", "ok", "detail")
        CHECK_FIELD_NUMBER: _ClassVar[int]
        OK_FIELD_NUMBER: _ClassVar[int]
        DETAIL_FIELD_NUMBER: _ClassVar[int]
        check: str
        ok: bool
        detail: str
        def __init__(self, check: _Optional[str] = ..., ok: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...
    OK_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    findings: _containers.RepeatedCompositeFieldContainer[ConnectionCheck.Finding]
    def __init__(self, ok: _Optional[bool] = ..., findings: _Optional[_Iterable[_Union[ConnectionCheck.Finding, _Mapping]]] = ...) -> None: ...

class PreviewImportRequest(_message.Message):
    __slots__ = ("account_id", "auto_import", "name", "sample_size")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AUTO_IMPORT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    auto_import: AutoImport
    name: str
    sample_size: int
    def __init__(self, account_id: _Optional[str] = ..., auto_import: _Optional[_Union[AutoImport, _Mapping]] = ..., name: _Optional[str] = ..., sample_size: _Optional[int] = ...) -> None: ...

class ImportPreview(_message.Message):
    __slots__ = ("records", "more", "would_add", "would_update", "unchanged", "skipped_missing_email", "skipped_invalid_email", "skipped_at_source", "blocked_by_limit", "deferred", "deleted_at_source", "skipped", "fields_to_create", "sample")
    class Record(_message.Message):
        __slots__ = ("external_id", "email", "first_name", "last_name", "outcome", "unsubscribed", "fields")
        class FieldsEntry(_message.Message):
            __slots__ = ("key", "value")
            KEY_FIELD_NUMBER: _ClassVar[int]
            VALUE_FIELD_NUMBER: _ClassVar[int]
            key: str
            value: str
            def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
        EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
        EMAIL_FIELD_NUMBER: _ClassVar[int]
        FIRST_NAME_FIELD_NUMBER: _ClassVar[int]
        LAST_NAME_FIELD_NUMBER: _ClassVar[int]
        OUTCOME_FIELD_NUMBER: _ClassVar[int]
        UNSUBSCRIBED_FIELD_NUMBER: _ClassVar[int]
        FIELDS_FIELD_NUMBER: _ClassVar[int]
        external_id: str
        email: str
        first_name: str
        last_name: str
        outcome: str
        unsubscribed: bool
        fields: _containers.ScalarMap[str, str]
        def __init__(self, external_id: _Optional[str] = ..., email: _Optional[str] = ..., first_name: _Optional[str] = ..., last_name: _Optional[str] = ..., outcome: _Optional[str] = ..., unsubscribed: _Optional[bool] = ..., fields: _Optional[_Mapping[str, str]] = ...) -> None: ...
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    WOULD_ADD_FIELD_NUMBER: _ClassVar[int]
    WOULD_UPDATE_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_MISSING_EMAIL_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_INVALID_EMAIL_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_AT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_BY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    FIELDS_TO_CREATE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    records: int
    more: bool
    would_add: int
    would_update: int
    unchanged: int
    skipped_missing_email: int
    skipped_invalid_email: int
    skipped_at_source: int
    blocked_by_limit: int
    deferred: int
    deleted_at_source: int
    skipped: _containers.RepeatedCompositeFieldContainer[SyncReport.SkippedContact]
    fields_to_create: _containers.RepeatedCompositeFieldContainer[ServiceField]
    sample: _containers.RepeatedCompositeFieldContainer[ImportPreview.Record]
    def __init__(self, records: _Optional[int] = ..., more: _Optional[bool] = ..., would_add: _Optional[int] = ..., would_update: _Optional[int] = ..., unchanged: _Optional[int] = ..., skipped_missing_email: _Optional[int] = ..., skipped_invalid_email: _Optional[int] = ..., skipped_at_source: _Optional[int] = ..., blocked_by_limit: _Optional[int] = ..., deferred: _Optional[int] = ..., deleted_at_source: _Optional[int] = ..., skipped: _Optional[_Iterable[_Union[SyncReport.SkippedContact, _Mapping]]] = ..., fields_to_create: _Optional[_Iterable[_Union[ServiceField, _Mapping]]] = ..., sample: _Optional[_Iterable[_Union[ImportPreview.Record, _Mapping]]] = ...) -> None: ...
