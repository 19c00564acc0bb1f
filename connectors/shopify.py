"""Shopify (Admin REST customers). The HTTP client comes with the connectors issue."""

from connectors.base import FieldSpec, ServiceDescription
from domain.sources import ServiceId

DESCRIPTION = ServiceDescription(
    id=ServiceId.SHOPIFY,
    display_name="Shopify",
    fields=(
        FieldSpec("total_spent", "Total Spent"),
        FieldSpec("orders_count", "Orders Count"),
        FieldSpec("tags", "Tags"),
        FieldSpec("company", "Company"),
        FieldSpec("country", "Country"),
    ),
    criteria_description=(
        "all customers, only those subscribed to email marketing, and/or those with a customer tag"
    ),
)
