"""Opportunities (`/v1/opportunities`, §2.12): creating one is an event in the customer's feed."""
from gateway.auth import READ, WRITE
from gateway.http import api
from gateway.routes.notes import page_of, paging
from gateway.schemas import activities as schemas
from gateway.schemas.activities import opportunity_wire

OPPORTUNITY_FILTERS = ("customer_uuid", "owner", "pipeline", "pipeline_stage", "estimated_close_date_on_or_after",
                       "estimated_close_date_on_or_before")


class OpportunityRoutes:
    @api("POST", "/v1/opportunities", permission=WRITE, body=schemas.OpportunityCreate(),
         response=schemas.OpportunityOut(), status=201, summary="Create an opportunity")
    def opportunities_create(self, request, body):
        return opportunity_wire(self.activities_rpc.create_opportunity(body))

    @api("GET", "/v1/opportunities", permission=READ, query=schemas.OpportunityListQuery(),
         response=schemas.OpportunityPage(), summary="List opportunities")
    def opportunities_list(self, request, query):
        filters = {name: query[name] for name in OPPORTUNITY_FILTERS if query.get(name)}
        return page_of(self.activities_rpc.list_opportunities(filters, *paging(query)), opportunity_wire)

    @api("GET", "/v1/opportunities/<string:uuid>", permission=READ, response=schemas.OpportunityOut(),
         summary="Retrieve an opportunity")
    def opportunities_retrieve(self, request, uuid):
        return opportunity_wire(self.activities_rpc.get_opportunity(uuid))

    @api("PATCH", "/v1/opportunities/<string:uuid>", permission=WRITE, body=schemas.OpportunityUpdate(),
         response=schemas.OpportunityOut(), summary="Update an opportunity (custom fields merged by key)")
    def opportunities_update(self, request, uuid, body):
        return opportunity_wire(self.activities_rpc.update_opportunity(uuid, body))

    @api("DELETE", "/v1/opportunities/<string:uuid>", permission=WRITE, response=schemas.EmptyObjectOut(),
         summary="Delete an opportunity")
    def opportunities_delete(self, request, uuid):
        self.activities_rpc.delete_opportunity(uuid)
        return {}
