"""Adapters to the external services, one module each, behind the Connector protocol."""

from dataclasses import dataclass, field

from connectors import google_contacts, hubspot, shopify
from connectors.base import Connector, ConnectorFactory, ServiceDescription
from domain.auto_import import AutoImport
from domain.sources import ServiceId

SERVICES: dict[ServiceId, ServiceDescription] = {
    d.id: d for d in (google_contacts.DESCRIPTION, shopify.DESCRIPTION, hubspot.DESCRIPTION)
}


@dataclass(frozen=True)
class ConnectorSettings:
    """Where the connectors find their services (an emulator or a proxy in place of the real
    API), and the OAuth client that refreshes Google access tokens."""

    google_contacts_url: str = google_contacts.DEFAULT_URL
    google_oauth_url: str = google_contacts.DEFAULT_OAUTH_URL
    google_client_id: str = ""
    google_client_secret: str = field(default="", repr=False)
    shopify_url: str = ""  # empty: each shop's own https://{shop}.myshopify.com
    hubspot_url: str = hubspot.DEFAULT_URL


def factory(settings: ConnectorSettings) -> ConnectorFactory:
    """Builds, for an import, the connector of its service with the import's credentials."""

    def connector_for(auto_import: AutoImport) -> Connector:
        credentials = auto_import.credentials
        match auto_import.service:
            case ServiceId.GOOGLE_CONTACTS:
                return google_contacts.GoogleContactsConnector(
                    credentials,
                    base_url=settings.google_contacts_url,
                    oauth_url=settings.google_oauth_url,
                    client_id=settings.google_client_id,
                    client_secret=settings.google_client_secret,
                )
            case ServiceId.SHOPIFY:
                return shopify.ShopifyConnector(
                    auto_import.external_account,
                    credentials.access_token,
                    base_url=shopify.base_url_of(
                        auto_import.external_account, settings.shopify_url
                    ),
                )
            case ServiceId.HUBSPOT:
                return hubspot.HubSpotConnector(
                    credentials.access_token,
                    base_url=settings.hubspot_url,
                    portal=auto_import.external_account,
                )

    return connector_for
