"""Adapters to the external services: one module per service, each exporting its `Source`.

The registry: every service the service imports from is one line of SOURCES. Adding one is its
module (with its Source), its criteria message in the proto, its emulator and its tests, and its
line here; everything else (configuration, the API's conversions and ListServices, the CLI, the
domain's rules, the sync engine) reads the Source.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from connectors import google_contacts, hubspot, mailchimp, shopify
from connectors.base import Connector, ConnectorFactory, ImportTarget, Source

SOURCES: dict[str, Source] = {
    source.id: source
    for source in (
        google_contacts.SOURCE,
        shopify.SOURCE,
        hubspot.SOURCE,
        mailchimp.SOURCE,
    )
}


@dataclass(frozen=True)
class ConnectorSettings:
    """Each source's settings (by source id, then `Setting.name`); a setting not given takes
    its default. Secrets stay out of repr()."""

    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def of(self, source: Source) -> dict[str, str]:
        return source.settings_with(self.values.get(source.id, {}))

    def secrets(self) -> list[str]:
        """The values of every setting marked secret."""
        return [
            self.of(source)[s.name]
            for source in SOURCES.values()
            for s in source.settings
            if s.secret
        ]

    def __repr__(self) -> str:
        shown = {
            source.id: {
                s.name: "<hidden>" if s.secret else self.of(source)[s.name] for s in source.settings
            }
            for source in SOURCES.values()
        }
        return f"ConnectorSettings({shown})"


def factory(settings: ConnectorSettings) -> ConnectorFactory:
    """Builds, for an import (or an import about to be created), the connector of its service
    with its credentials."""

    def connector_for(target: ImportTarget) -> Connector:
        source = SOURCES[target.service]
        return source.connect(target, settings.of(source))

    return connector_for
