"""The CustomField aggregate: one per connector field per account, created on first need. Its id
is derived from the account, service and field key, so it can only be created once."""

from __future__ import annotations

from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.ids import ID_NAMESPACE


class CustomField(Aggregate):
    @staticmethod
    def create_id(account_id: str, service: str, key: str) -> UUID:
        return uuid5(ID_NAMESPACE, f"field/{account_id}/{service}/{key}")

    class Created(Aggregate.Created):
        account_id: str
        service: str
        key: str
        title: str
        personalization_tag: str

    @event(Created)
    def __init__(
        self, *, account_id: str, service: str, key: str, title: str, personalization_tag: str
    ) -> None:
        self.account_id = account_id
        self.service = service
        self.key = key
        self.title = title
        self.personalization_tag = personalization_tag
