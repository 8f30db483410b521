"""Customer, tag and custom-attribute routes (ChartMogul REST API v1 §2.1, §2.2)."""
import logging

from gateway.auth import ADMIN, WRITE
from gateway.http import api
from gateway.routes.contacts import (
    check_primary_contact,
    create_primary_contact,
    set_primary_contact,
    validate_primary_contact,
)
from gateway.schemas import customers as schemas
from gateway.schemas.customers import customer_wire, customers_wire, revision_headers

logger = logging.getLogger(__name__)

C = "/v1/customers"


def render_page(page: dict, per_page: int | None) -> dict:
    return {
        "entries": customers_wire(page["entries"]),
        "has_more": page["has_more"],
        "cursor": page["cursor"],
        "per_page": min(per_page or 200, 200),
    }


class CustomerRoutes:
    @api("POST", C, permission=WRITE, body=schemas.CustomerCreate(), response=schemas.CustomerOut(), status=201,
         summary="Create a customer (and its primary contact)")
    def create_customer(self, request, body):
        """Both or neither: the contact is checked first; if creating it still fails, the customer
        is discarded again (with its stored idempotent answer) and the contact's error answered."""
        primary_contact = body.pop("primary_contact", None) or None
        validate_primary_contact(self.contacts_rpc, primary_contact, body["data_source_uuid"])
        customer = self.customers_rpc.create_customer(body)
        try:
            create_primary_contact(self.contacts_rpc, customer, primary_contact)
        except Exception:
            self._discard(customer["uuid"])
            raise
        return 201, customer_wire(customer)

    def _discard(self, uuid: str) -> None:
        try:
            self.customers_rpc.discard_customer(uuid)
        except Exception:
            logger.exception("customer %s was created but its primary contact was not, and discarding it failed; "
                             "a retry with the same Idempotency-Key completes it", uuid)
        self.cache.invalidate(uuid)

    @api("GET", C, query=schemas.CustomerListQuery(), response=schemas.CustomerPage(), summary="List customers")
    def list_customers(self, request, query):
        cursor, per_page = query.pop("cursor", None), query.pop("per_page", None)
        return render_page(self.customers_rpc.list_customers(query, cursor, per_page), per_page)

    @api("GET", f"{C}/search", query=schemas.CustomerSearchQuery(), response=schemas.CustomerPage(),
         summary="Find customers by email")
    def search_customers(self, request, query):
        cursor, per_page = query.pop("cursor", None), query.pop("per_page", None)
        page = self.customers_rpc.list_customers({"email": query["email"]}, cursor, per_page)
        return render_page(page, per_page)

    @api("GET", f"{C}/<uuid>", cache_key="uuid", query=schemas.RetrieveQuery(),
         response=schemas.CustomerWithOverridesOut(),
         summary="Retrieve a customer (with_overrides=true adds `overrides`)")
    def get_customer(self, request, uuid, query):
        customer = self._retrieve(uuid, query)
        return 200, {**customer_wire(customer), **_options(customer)}, revision_headers(customer)

    @api("PATCH,PUT", f"{C}/<uuid>", permission=WRITE, body=schemas.CustomerUpdate(), write_key="uuid",
         response=schemas.CustomerOut(), summary="Update a customer (PUT is an alias of PATCH)")
    def update_customer(self, request, uuid, body):
        primary_contact = body.pop("primary_contact", None)
        check_primary_contact(self.contacts_rpc, primary_contact)  # a bad field changes nothing
        customer = self.customers_rpc.update_customer(uuid, body)
        set_primary_contact(self.contacts_rpc, uuid, primary_contact)
        return 200, customer_wire(customer), revision_headers(customer)  # the gateway caches this answer

    @api("DELETE", f"{C}/<uuid>", permission=ADMIN, status=204, summary="Delete a customer")
    def delete_customer(self, request, uuid):
        self.customers_rpc.delete_customer(uuid)
        self.cache.invalidate(uuid)
        return 204, None

    @api("POST", f"{C}/merges", permission=WRITE, body=schemas.MergeRequest(), status=204,
         summary="Merge one customer into another")
    def merge_customers(self, request, body):
        merge = self.customers_rpc.merge_customers(body["from_"], body["into"])
        self.cache.invalidate(merge["from_uuid"], merge["into"]["uuid"])
        return 204, None

    @api("POST", f"{C}/unmerges", permission=WRITE, body=schemas.UnmergeRequest(), status=202,
         summary="Make an external id a merge brought a customer of its own again")
    def unmerge_customers(self, request, body):
        """202 with `{customer_uuid, new_customer_uuid}`: the new customer exists when this answers;
        its contacts, activities and billing data follow through events."""
        unmerge = self.customers_rpc.unmerge_customer(body)
        self.cache.invalidate(unmerge["from"]["uuid"], unmerge["customer"]["uuid"])
        return 202, {"customer_uuid": unmerge["from"]["uuid"], "new_customer_uuid": unmerge["customer"]["uuid"]}

    @api("GET", f"{C}/<uuid>/attributes", query=schemas.RetrieveQuery(),
         response=schemas.AttributesWithOverridesOut(),
         summary="A customer's attributes (with_overrides=true adds `overrides`)")
    def get_customer_attributes(self, request, uuid, query):
        customer = self._retrieve(uuid, query)
        return {**customer["attributes"], **_options(customer)}

    def _retrieve(self, uuid: str, query: dict) -> dict:
        """The customer, with `overrides` and `historical_values` when the query asks for them."""
        if query.get("with_overrides") or query.get("attributes_with_history") is not None:
            return self.customers_rpc.get_customer(uuid, bool(query.get("with_overrides")),
                                                   query.get("attributes_with_history"))
        return self.customers_rpc.get_customer(uuid)

    @api("POST", f"{C}/<uuid>/attributes/tags", permission=WRITE, body=schemas.TagsIn(),
         response=schemas.TagsOut(), summary="Add tags to a customer")
    def add_tags(self, request, uuid, body):
        return self._changed(uuid, {"tags": self.customers_rpc.add_tags(uuid, body["tags"])})

    @api("DELETE", f"{C}/<uuid>/attributes/tags", permission=WRITE, body=schemas.TagsIn(),
         response=schemas.TagsOut(), summary="Remove tags from a customer")
    def remove_tags(self, request, uuid, body):
        return self._changed(uuid, {"tags": self.customers_rpc.remove_tags(uuid, body["tags"])})

    @api("POST", f"{C}/attributes/tags", permission=WRITE, body=schemas.TagsByEmailIn(),
         response=schemas.CustomerEntries(), summary="Add tags to every customer with an email")
    def add_tags_by_email(self, request, body):
        return self._changed_entries(self.customers_rpc.add_tags_by_email(body["email"], body["tags"]))

    @api("DELETE", f"{C}/attributes/tags", permission=WRITE, body=schemas.TagsByEmailIn(),
         response=schemas.CustomerEntries(), summary="Remove tags from every customer with an email")
    def remove_tags_by_email(self, request, body):
        return self._changed_entries(self.customers_rpc.remove_tags_by_email(body["email"], body["tags"]))

    @api("POST", f"{C}/<uuid>/attributes/custom", permission=WRITE, body=schemas.CustomAttributesIn(),
         response=schemas.CustomOut(), summary="Add typed custom attributes to a customer")
    def add_custom_attributes(self, request, uuid, body):
        return self._changed(uuid, {"custom": self.customers_rpc.add_custom_attributes(
            uuid, body["custom"], body.get("overrides"))})

    @api("PUT", f"{C}/<uuid>/attributes/custom", permission=WRITE, body=schemas.CustomValuesIn(),
         response=schemas.CustomOut(), summary="Update a customer's custom attribute values")
    def update_custom_attributes(self, request, uuid, body):
        return self._changed(uuid, {"custom": self.customers_rpc.update_custom_attributes(
            uuid, body["custom"], body.get("overrides"))})

    @api("DELETE", f"{C}/<uuid>/attributes/custom", permission=WRITE, body=schemas.CustomKeysIn(),
         response=schemas.CustomOut(), summary="Remove custom attributes from a customer")
    def remove_custom_attributes(self, request, uuid, body):
        """An overridden attribute is kept (ChartMogul 4.11); `message` names those kept."""
        custom = self.customers_rpc.remove_custom_attributes(uuid, body["custom"], body.get("overrides"))
        answer = {"custom": custom}
        kept = [key for key in dict.fromkeys(body["custom"]) if key in custom]
        if kept:
            answer["message"] = f"Kept the overridden custom attributes: {', '.join(kept)}"
        return self._changed(uuid, answer)

    @api("POST", f"{C}/attributes/custom", permission=WRITE, body=schemas.CustomAttributesByEmailIn(),
         response=schemas.CustomerEntries(), summary="Add custom attributes to every customer with an email")
    def add_custom_attributes_by_email(self, request, body):
        customers = self.customers_rpc.add_custom_attributes_by_email(body["email"], body["custom"])
        return self._changed_entries(customers)

    @api("PUT", f"{C}/attributes/custom", permission=WRITE, body=schemas.CustomValuesByEmailIn(),
         response=schemas.CustomerEntries(), summary="Update custom attribute values of every customer with an email")
    def update_custom_attributes_by_email(self, request, body):
        customers = self.customers_rpc.update_custom_attributes_by_email(body["email"], body["custom"])
        return self._changed_entries(customers)

    @api("DELETE", f"{C}/attributes/custom", permission=WRITE, body=schemas.CustomKeysByEmailIn(),
         response=schemas.CustomerEntries(), summary="Remove custom attributes from every customer with an email")
    def remove_custom_attributes_by_email(self, request, body):
        customers = self.customers_rpc.remove_custom_attributes_by_email(body["email"], body["custom"])
        return self._changed_entries(customers)

    def _changed(self, uuid: str, payload: dict) -> dict:
        self.cache.invalidate(uuid)
        return payload

    def _changed_entries(self, customers: list[dict]) -> dict:
        self.cache.invalidate(*(customer["uuid"] for customer in customers))
        return {"entries": customers_wire(customers)}


def _options(customer: dict) -> dict:
    """The top-level keys a retrieve adds when asked: `overrides`, `historical_values`."""
    return {name: customer[name] for name in ("overrides", "historical_values") if name in customer}
