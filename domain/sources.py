"""What an import reads: the external services, their accounts and their criteria.

Each service's criteria is a small value object that validates itself; events store it as a plain
dict (`to_dict`) so that the stored history never depends on these classes' layout.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, ClassVar

from email_validator import EmailNotValidError, validate_email

from domain.errors import Violations


class ServiceId(StrEnum):
    GOOGLE_CONTACTS = "google_contacts"
    SHOPIFY = "shopify"
    HUBSPOT = "hubspot"


SERVICE_IDS = tuple(s.value for s in ServiceId)

_CONTACT_GROUP = re.compile(r"contactGroups/[A-Za-z0-9_-]{1,128}")
_SHOP_HANDLE = re.compile(r"[a-z0-9][a-z0-9-]{0,59}")
_PORTAL_ID = re.compile(r"[1-9][0-9]{0,11}")
_CUSTOM_STAGE = re.compile(r"[0-9]{1,20}")
# HubSpot's default lifecycle stages; custom stages have numeric ids.
HUBSPOT_LIFECYCLE_STAGES = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)
MAX_TAG_LENGTH = 255


@dataclass(frozen=True)
class Criteria(ABC):
    """Which of the external account's contacts an import reads. Unset fields select everything."""

    service: ClassVar[ServiceId]

    @abstractmethod
    def validate(self, violations: Violations, field: str) -> None:
        """Adds a violation for each invalid field, under the path `field`."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GoogleContactsCriteria(Criteria):
    service: ClassVar[ServiceId] = ServiceId.GOOGLE_CONTACTS
    contact_group: str = ""

    def validate(self, violations: Violations, field: str) -> None:
        if self.contact_group and not _CONTACT_GROUP.fullmatch(self.contact_group):
            violations.add(
                f"{field}.contact_group",
                "must be a contact group resource name such as 'contactGroups/myContacts', "
                "or empty for all contacts",
            )


@dataclass(frozen=True)
class ShopifyCriteria(Criteria):
    service: ClassVar[ServiceId] = ServiceId.SHOPIFY
    subscribed_only: bool = False
    customer_tag: str = ""

    def validate(self, violations: Violations, field: str) -> None:
        tag = self.customer_tag
        if tag != tag.strip() or "," in tag or len(tag) > MAX_TAG_LENGTH:
            violations.add(
                f"{field}.customer_tag",
                f"must be one Shopify tag: no commas, no surrounding spaces, "
                f"at most {MAX_TAG_LENGTH} characters",
            )


@dataclass(frozen=True)
class HubSpotCriteria(Criteria):
    service: ClassVar[ServiceId] = ServiceId.HUBSPOT
    lifecycle_stage: str = ""

    def validate(self, violations: Violations, field: str) -> None:
        stage = self.lifecycle_stage
        if stage and stage not in HUBSPOT_LIFECYCLE_STAGES and not _CUSTOM_STAGE.fullmatch(stage):
            violations.add(
                f"{field}.lifecycle_stage",
                f"must be one of {', '.join(HUBSPOT_LIFECYCLE_STAGES)}, a custom stage id "
                "(digits), or empty for any stage",
            )


CRITERIA_TYPES: dict[ServiceId, type[Criteria]] = {
    ServiceId.GOOGLE_CONTACTS: GoogleContactsCriteria,
    ServiceId.SHOPIFY: ShopifyCriteria,
    ServiceId.HUBSPOT: HubSpotCriteria,
}


def criteria_from_dict(service: ServiceId, data: dict[str, Any]) -> Criteria:
    return CRITERIA_TYPES[service](**data)


def check_service(service: str, violations: Violations, field: str = "service") -> ServiceId | None:
    try:
        return ServiceId(service)
    except ValueError:
        violations.add(field, f"must be one of {', '.join(SERVICE_IDS)}")
        return None


def check_criteria(
    service: ServiceId, criteria: Criteria, violations: Violations, field: str = "criteria"
) -> None:
    if criteria.service is not service:
        violations.add(
            f"{field}.{criteria.service.value}",
            f"criteria of {criteria.service.value} do not apply to a {service.value} import; "
            f"set {field}.{service.value} or leave the criteria unset",
        )
        return
    criteria.validate(violations, f"{field}.{service.value}")


def normalize_external_account(
    service: ServiceId, value: str, violations: Violations, field: str = "external_account"
) -> str:
    """The canonical form of the external account, so that two imports of one account match.

    Google Contacts: the Google account's email, lower-cased. Shopify: the shop's handle
    ("my-store", also accepted as "my-store.myshopify.com"). HubSpot: the portal (hub) id.
    """
    value = value.strip()
    if service is ServiceId.GOOGLE_CONTACTS:
        try:
            return validate_email(value, check_deliverability=False).normalized.lower()
        except EmailNotValidError as e:
            violations.add(field, f"must be the Google account's email address ({e})")
            return value
    if service is ServiceId.SHOPIFY:
        handle = _shop_handle(value)
        if not _SHOP_HANDLE.fullmatch(handle):
            violations.add(
                field, "must be the shop's handle, e.g. 'my-store' or 'my-store.myshopify.com'"
            )
        return handle
    if not _PORTAL_ID.fullmatch(value):
        violations.add(field, "must be the HubSpot portal (hub) id, digits only")
    return value


def _shop_handle(value: str) -> str:
    return value.lower().removeprefix("https://").rstrip("/").removesuffix(".myshopify.com")


# Gmail delivers every dotted spelling and every +tag of a local part to one mailbox, and
# googlemail.com is another name of gmail.com (still given to accounts in Germany and the UK).
_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
_DIGITS = re.compile(r"[0-9]+")


def external_account_identity(service: ServiceId | str, external_account: str) -> str:
    """The one identity of an external account however it is spelled: two imports of one
    account get the same identity (and so share its budget of contacts per sync window), two
    accounts never do. It accepts what `normalize_external_account` gives as well as raw input
    (the identity of either is the same), so imports stored before a rule existed share too.

    Google Contacts: the email, lower-cased; at gmail.com or googlemail.com without dots or a
    +tag in the local part, at gmail.com. At any other domain (Google Workspace) dots are part
    of the address (`j.doe` and `jdoe` may be two people), but a +tag still reaches the same
    mailbox, so only the tag is dropped. Shopify: the shop's handle, lower-cased. HubSpot: the
    portal id's digits without leading zeros (a number: `0012345` is portal 12345).
    """
    value = external_account.strip()
    match ServiceId(service):
        case ServiceId.GOOGLE_CONTACTS:
            return _google_identity(value)
        case ServiceId.SHOPIFY:
            return _shop_handle(value)
        case ServiceId.HUBSPOT:
            return (value.lstrip("0") or "0") if _DIGITS.fullmatch(value) else value


def _google_identity(value: str) -> str:
    try:
        email = validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        email = value.lower()  # not an address: its spelling is all there is to compare
    local, at, domain = email.rpartition("@")
    if not at:
        return email
    untagged = local.partition("+")[0] or local
    if domain in _GMAIL_DOMAINS:
        return f"{untagged.replace('.', '') or untagged}@gmail.com"
    return f"{untagged}@{domain}"


def field_title(service_display_name: str, field_label: str) -> str:
    """The custom field's title in the account: "<Service display name> <Field label>"."""
    return f"{service_display_name} {field_label}"


def personalization_tag(service_display_name: str, field_label: str) -> str:
    """`%<SERVICE>_<FIELD>%`: upper case, every non-alphanumeric character as `_`."""
    return personalization_tag_of(field_title(service_display_name, field_label))


def personalization_tag_of(title: str) -> str:
    """A field's personalization tag from its title: `%<TITLE>%`, upper case, every
    non-alphanumeric character as `_` (a CSV column "Company name" gives `%COMPANY_NAME%`)."""
    return f"%{re.sub(r'[^A-Z0-9]', '_', title.upper())}%"
