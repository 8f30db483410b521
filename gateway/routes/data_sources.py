"""Data source routes (ChartMogul REST API v1 §2.6); billing_sync owns data sources."""
from gateway.auth import ADMIN
from gateway.http import api
from gateway.schemas import data_sources as schemas

DS = "/v1/data_sources"


class DataSourceRoutes:
    @api("POST", DS, permission=ADMIN, body=schemas.DataSourceCreate(), response=schemas.DataSourceOut(),
         status=201, summary="Create a data source")
    def create_data_source(self, request, body):
        return 201, self.billing_rpc.create_data_source(body)

    @api("GET", DS, query=schemas.DataSourceListQuery(), response=schemas.DataSourceList(),
         summary="List data sources")
    def list_data_sources(self, request, query):
        return {"data_sources": self.billing_rpc.list_data_sources(query)}

    @api("GET", f"{DS}/<uuid>", query=schemas.DataSourceOptions(), response=schemas.DataSourceOut(),
         summary="Retrieve a data source")
    def get_data_source(self, request, uuid, query):
        return self.billing_rpc.get_data_source(uuid, query)

    @api("DELETE", f"{DS}/<uuid>", permission=ADMIN, status=204,
         summary="Delete a data source with its plans, invoices and subscriptions")
    def delete_data_source(self, request, uuid):
        self.billing_rpc.delete_data_source(uuid)
        return 204, None
