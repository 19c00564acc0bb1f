"""Adapters to the external services, one module each, behind the Connector protocol."""

from connectors import google_contacts, hubspot, shopify
from connectors.base import ServiceDescription
from domain.sources import ServiceId

SERVICES: dict[ServiceId, ServiceDescription] = {
    d.id: d for d in (google_contacts.DESCRIPTION, shopify.DESCRIPTION, hubspot.DESCRIPTION)
}
