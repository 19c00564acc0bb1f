"""The namespace of every deterministic id of the service (imports by request_id, accounts,
contacts, fields, API keys): the same name always gives the same id, on every replica."""

from uuid import NAMESPACE_URL, uuid5

ID_NAMESPACE = uuid5(NAMESPACE_URL, "urn:contact-autoimport")
