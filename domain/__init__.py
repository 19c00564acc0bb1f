"""The business rules of contact auto-import: aggregates, events and value objects. No I/O here."""
