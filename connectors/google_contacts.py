"""Google Contacts (People API). The HTTP client comes with the connectors issue."""

from connectors.base import FieldSpec, ServiceDescription
from domain.sources import ServiceId

DESCRIPTION = ServiceDescription(
    id=ServiceId.GOOGLE_CONTACTS,
    display_name="Google Contacts",
    fields=(
        FieldSpec("company", "Company"),
        FieldSpec("job_title", "Job Title"),
        FieldSpec("birthday", "Birthday"),
    ),
    criteria_description="all contacts, or the members of one contact group",
)
