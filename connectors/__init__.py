"""Adapters to the external services, one module each, behind the Connector protocol."""

from connectors import google_contacts, hubspot, shopify
from connectors.base import Connector, ConnectorUnavailable, ServiceDescription
from domain.auto_import import AutoImport
from domain.sources import ServiceId

SERVICES: dict[ServiceId, ServiceDescription] = {
    d.id: d for d in (google_contacts.DESCRIPTION, shopify.DESCRIPTION, hubspot.DESCRIPTION)
}


def connector_for(auto_import: AutoImport) -> Connector:
    """The connector of an import's service. The HTTP clients of Google Contacts, Shopify and
    HubSpot are not part of this build yet, so syncs of real imports are refused clearly."""
    name = SERVICES[auto_import.service].display_name
    raise ConnectorUnavailable(
        f"this build has no {name} connector yet: syncs of {name} imports cannot run"
    )
