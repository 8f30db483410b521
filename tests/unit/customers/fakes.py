"""What lies outside the customers service, as its unit tests see it."""
from roster.errors import NotFound

SOURCE = "ds_known"


class FakeBilling:
    """Knows one data source, like billing_sync would after it was created."""

    def get_data_source(self, uuid):
        if uuid != SOURCE:
            raise NotFound(f"Data source {uuid} not found")
        return {"uuid": SOURCE, "name": "Imports", "system": "Import API"}
