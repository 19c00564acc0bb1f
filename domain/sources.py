"""What an import reads, as the domain sees it: a source's rules, its criteria, its field names.

Each external service is one unit in connectors/ (a `connectors.base.Source`, listed in the
registry `connectors.SOURCES`); the domain knows a service only through the `SourceRules` the
application hands it, so that adding a service edits nothing here. Criteria are small value
objects that validate themselves; events store them as plain dicts (`to_dict`) so that the stored
history never depends on these classes' layout.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from domain.errors import Violations
from domain.limits import MAX_CRITERIA_TEXT, NO_NUL
from domain.text import without_controls

if TYPE_CHECKING:
    from domain.auto_import import Credentials


@dataclass(frozen=True)
class Criteria(ABC):
    """Which of the external account's contacts an import reads. Unset fields select everything.

    Each field is one criteria option: its name is the field of the service's protobuf criteria
    message and the CLI's option (`--customer-tag`), so names are unique across services; its
    metadata's "help" is the option's help.
    """

    service: ClassVar[str]

    @abstractmethod
    def validate(self, violations: Violations, field: str) -> None:
        """Adds a violation for each invalid field, under the path `field`."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Criteria:
        """From what `to_dict` stored, by any version: a field added since takes its default."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


class SourceRules(Protocol):
    """What the domain needs of an external service: `connectors.base.Source` provides it."""

    @property
    def id(self) -> str: ...

    @property
    def criteria_type(self) -> type[Criteria]: ...

    def normalize_external_account(self, value: str, violations: Violations, field: str) -> str:
        """The canonical spelling of an external account, so that two imports of one match."""
        ...

    def external_account_identity(self, external_account: str) -> str:
        """The one identity of an external account however it is spelled (its budget's key)."""
        ...

    def check_credentials(
        self, credentials: Credentials, violations: Violations, path: str
    ) -> None: ...


def find_source(
    sources: Mapping[str, SourceRules], service: str, violations: Violations, field: str = "service"
) -> SourceRules | None:
    source = sources.get(service)
    if source is None:
        violations.add(field, f"must be one of {', '.join(sources)}")
    return source


def check_criteria(
    source: SourceRules, criteria: Criteria, violations: Violations, field: str = "criteria"
) -> None:
    if criteria.service != source.id:
        violations.add(
            f"{field}.{criteria.service}",
            f"criteria of {criteria.service} do not apply to a {source.id} import; "
            f"set {field}.{source.id} or leave the criteria unset",
        )
        return
    for name, value in asdict(criteria).items():
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(t, str) and len(t) > MAX_CRITERIA_TEXT for t in texts):
            violations.add(f"{field}.{source.id}.{name}", f"at most {MAX_CRITERIA_TEXT} characters")
            return  # the connector's own checks would quote it again
        if any(isinstance(t, str) and "\0" in t for t in texts):
            violations.add(f"{field}.{source.id}.{name}", NO_NUL)
            return
    criteria.validate(violations, f"{field}.{source.id}")


def field_title(service_display_name: str, field_label: str) -> str:
    """The custom field's title in the account: "<Service display name> <Field label>". A label
    may come from the source (Mailchimp's merge fields): no control characters (domain/text.py)."""
    return f"{service_display_name} {without_controls(field_label)[0]}"


def personalization_tag(service_display_name: str, field_label: str) -> str:
    """`%<SERVICE>_<FIELD>%`: upper case, every non-alphanumeric character as `_`."""
    return personalization_tag_of(field_title(service_display_name, field_label))


def personalization_tag_of(title: str) -> str:
    """A field's personalization tag from its title: `%<TITLE>%`, upper case, every
    non-alphanumeric character as `_` (a CSV column "Company name" gives `%COMPANY_NAME%`)."""
    return f"%{re.sub(r'[^A-Z0-9]', '_', title.upper())}%"
