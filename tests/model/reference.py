"""The reference model of the sync model test: what the shops hold, what each import reads, and
what the account must therefore hold, in a few plain dicts and no code of the service.

The shops' contents are the scripted sources themselves (the outside world, not the system
under test); the model adds what the service must remember: the imports and their criteria,
every email any source or CSV file ever carried (and who carried it), the emails that must stay
unsubscribed, and the contact limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from connectors.shopify import ShopifyCriteria
from tests.scripted import ScriptedSource, SourceContact, matches

MISSING = "missing"
Carrier = tuple[str, SourceContact]  # a shop, and one of its customers
INVALID = "invalid"


def email_kind(raw: str) -> str:
    """The normalized email, or MISSING, or INVALID: the emails this test generates are either
    plainly valid (`name@example.com`, any case) or plainly not (no `@`)."""
    email = raw.strip()
    if not email:
        return MISSING
    if email.count("@") != 1 or "." not in email.partition("@")[2]:
        return INVALID
    return email.lower()


# What an import may read: every customer, those with a tag, those subscribed to email.
CRITERIA = {
    "everyone": ShopifyCriteria(),
    "tag vip": ShopifyCriteria(customer_tag="vip"),
    "tag new": ShopifyCriteria(customer_tag="new"),
    "subscribed only": ShopifyCriteria(subscribed_only=True),
}


@dataclass
class ImportModel:
    name: str
    import_id: UUID
    shop: str  # the shop's handle, however the import spelled it
    reading: str  # which customers it reads: a key of CRITERIA
    state: str = "ACTIVE"

    @property
    def criteria(self) -> ShopifyCriteria:
        return CRITERIA[self.reading]

    def reads(self, contact: SourceContact) -> bool:
        return matches(self.criteria, contact)


@dataclass
class Reference:
    account_id: str
    limit: int
    imports: dict[str, ImportModel] = field(default_factory=dict)
    # Who ever carried each normalized email: ("shop", external id) or ("csv", file number).
    carriers: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    # Emails that must stay unsubscribed: unsubscribed by a person, or seen unsubscribed.
    unsubscribed: set[str] = field(default_factory=set)
    # The names each source contact ever had, by (shop, external id).
    names: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    # Shops with more than one import ever: an older read of one may follow a newer of another.
    shared_shops: set[str] = field(default_factory=set)

    def carried(self, email: str, carrier: tuple[str, str]) -> None:
        kind = email_kind(email)
        if kind not in (MISSING, INVALID):
            self.carriers.setdefault(kind, set()).add(carrier)

    def saw_contact(self, shop: str, contact: SourceContact) -> None:
        """A source contact was added or changed: remember its email and name."""
        self.carried(contact.email, (shop, contact.external_id))
        self.names.setdefault((shop, contact.external_id), set()).add(contact.first_name)

    def active_imports(self) -> list[ImportModel]:
        return [i for i in self.imports.values() if i.state == "ACTIVE"]

    def expected(self, sources: dict[str, ScriptedSource]) -> dict[str, list[Carrier]]:
        """Every email the account must hold once the active imports have read everything: the
        contacts they select that are not deleted and have a valid email, with who carries it."""
        wanted: dict[str, list[Carrier]] = {}
        for auto_import in self.active_imports():
            source = sources.get(auto_import.shop)
            if source is None:
                continue
            for contact in source.contacts.values():
                kind = email_kind(contact.email)
                if contact.deleted or kind in (MISSING, INVALID):
                    continue
                if auto_import.reads(contact):
                    carriers = wanted.setdefault(kind, [])
                    if (auto_import.shop, contact) not in carriers:
                        carriers.append((auto_import.shop, contact))
        return wanted

    def only_carrier(self, email: str) -> tuple[str, str] | None:
        """The one source contact that ever carried the email (no other, no CSV row), if so."""
        carriers = self.carriers.get(email, set())
        if len(carriers) != 1:
            return None
        (carrier,) = carriers
        return None if carrier[0] == "csv" else carrier
