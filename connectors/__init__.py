"""Adapters to the external services, one module each, behind the Connector protocol."""

from connectors import google_contacts, hubspot, shopify
from connectors.base import Connector, ConnectorUnavailable, ServiceDescription
from domain.auto_import import AutoImport
from domain.sources import ServiceId

SERVICES: dict[ServiceId, ServiceDescription] = {
    d.id: d for d in (google_contacts.DESCRIPTION, shopify.DESCRIPTION, hubspot.DESCRIPTION)
}


def connector_for(auto_import: AutoImport) -> Connector:
    """The connector of an import's service, with the import's credentials. Only Shopify has an
    HTTP client in this build; syncs of the other services' imports are refused clearly."""
    if auto_import.service is ServiceId.SHOPIFY:
        return shopify.ShopifyConnector(
            auto_import.external_account, auto_import.credentials.access_token
        )
    name = SERVICES[auto_import.service].display_name
    raise ConnectorUnavailable(
        f"this build has no {name} connector yet: syncs of {name} imports cannot run"
    )
