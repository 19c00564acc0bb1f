"""HubSpot (CRM v3 contacts). The HTTP client comes with the connectors issue."""

from connectors.base import FieldSpec, ServiceDescription
from domain.sources import ServiceId

DESCRIPTION = ServiceDescription(
    id=ServiceId.HUBSPOT,
    display_name="HubSpot",
    fields=(
        FieldSpec("company", "Company"),
        FieldSpec("job_title", "Job Title"),
        FieldSpec("lifecycle_stage", "Lifecycle Stage"),
    ),
    criteria_description="all contacts, or those in one lifecycle stage",
)
