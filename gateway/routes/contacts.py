"""Contact routes (`/v1/contacts...`, `/v1/customers/{uuid}/contacts`) and the primary-contact helpers
the customer create and update routes call."""
from gateway.auth import READ, WRITE
from gateway.http import api
from gateway.schemas.contacts import (
    ContactListOut,
    ContactOut,
    ContactWithOverridesOut,
    CreateContactSchema,
    CustomerContactSchema,
    EmptyOut,
    ListContactsQuery,
    PageQuery,
    RetrieveContactQuery,
    UpdateContactSchema,
)
from roster.errors import NotFound, ValidationFailed

PRIMARY_CONTACT = "primary_contact."


def validate_primary_contact(contacts_rpc, primary_contact: dict | None, data_source_uuid: str) -> None:
    """Raise the 422 a customer create must answer when its `primary_contact` is invalid.

    Call it before the customer is created; errors name e.g. `primary_contact.email`.
    """
    if primary_contact is None:
        return
    contacts_rpc.validate_contact(primary_contact, PRIMARY_CONTACT, data_source_uuid)


def create_primary_contact(contacts_rpc, customer: dict, primary_contact: dict | None) -> dict | None:
    """Create the `primary_contact` of a just-created customer; return the contact (None if none given)."""
    if not primary_contact:
        return None
    data = {**primary_contact, "customer_uuid": customer["uuid"], "data_source_uuid": customer["data_source_uuid"]}
    try:
        return contacts_rpc.create_contact(data)
    except ValidationFailed as failure:
        name = f"{PRIMARY_CONTACT}{failure.param}" if failure.param else PRIMARY_CONTACT.rstrip(".")
        raise ValidationFailed(f"{PRIMARY_CONTACT}{failure.message}", param=name)


def check_primary_contact(contacts_rpc, primary_contact: dict | None) -> None:
    """Raise the 422 a customer update must answer when its `primary_contact` is invalid (before it changes anything)."""
    if primary_contact:
        contacts_rpc.check_primary_contact(primary_contact)


def set_primary_contact(contacts_rpc, customer_uuid: str, primary_contact: dict | None) -> dict | None:
    """Update the customer's primary contact, creating it when it has none; return it (None if nothing given)."""
    if not primary_contact:
        return None
    return contacts_rpc.set_primary_contact(customer_uuid, primary_contact)


def _page(query: dict) -> tuple[str | None, str | None]:
    """Take the paging parameters out of `query`; what is left are the filters."""
    return query.pop("cursor", None) or None, query.pop("per_page", None)


class ContactRoutes:
    @api("POST", "/v1/contacts", permission=WRITE, body=CreateContactSchema(), response=ContactOut(), status=201,
         summary="Create a contact")
    def contacts_create(self, request, body):
        return self.contacts_rpc.create_contact(body)

    @api("GET", "/v1/contacts", permission=READ, query=ListContactsQuery(), response=ContactListOut(),
         summary="List contacts")
    def contacts_list(self, request, query):
        cursor, per_page = _page(query)
        return self.contacts_rpc.list_contacts(query, cursor, per_page)  # the service knows its filters

    @api("GET", "/v1/contacts/<string:uuid>", permission=READ, query=RetrieveContactQuery(),
         response=ContactWithOverridesOut(), summary="Retrieve a contact (with_overrides=true adds `overrides`)")
    def contacts_retrieve(self, request, uuid, query):
        if query.get("with_overrides"):
            return self.contacts_rpc.get_contact(uuid, True)
        return self.contacts_rpc.get_contact(uuid)

    @api("PATCH", "/v1/contacts/<string:uuid>", permission=WRITE, body=UpdateContactSchema(),
         response=ContactOut(), summary="Update a contact")
    def contacts_update(self, request, uuid, body):
        return self.contacts_rpc.update_contact(uuid, body)

    @api("DELETE", "/v1/contacts/<string:uuid>", permission=WRITE, response=EmptyOut(),
         summary="Delete a contact")
    def contacts_delete(self, request, uuid):
        self.contacts_rpc.delete_contact(uuid)
        return {}  # the official client expects 200 with an empty object

    @api("POST", "/v1/contacts/<string:into_uuid>/merge/<string:from_uuid>", permission=WRITE,
         response=ContactOut(), summary="Merge two contacts")
    def contacts_merge(self, request, into_uuid, from_uuid):
        return self.contacts_rpc.merge_contacts(into_uuid, from_uuid)

    @api("GET", "/v1/customers/<string:uuid>/contacts", permission=READ, query=PageQuery(),
         response=ContactListOut(), summary="List a customer's contacts")
    def customer_contacts_list(self, request, uuid, query):
        cursor, per_page = _page(query)
        page = self.contacts_rpc.list_contacts({"customer_uuid": uuid}, cursor, per_page)
        if not page["entries"] and cursor is None:
            self.customers_rpc.get_customer(uuid)  # 404 for a customer that does not exist
        return page

    @api("POST", "/v1/customers/<string:uuid>/contacts", permission=WRITE, body=CustomerContactSchema(),
         response=ContactOut(), status=201, summary="Create a contact of a customer")
    def customer_contacts_create(self, request, uuid, body):
        try:
            return self.contacts_rpc.create_contact({**body, "customer_uuid": uuid})
        except ValidationFailed as failure:
            if failure.param == "customer_uuid":
                raise NotFound(f"Customer {uuid} not found", param="uuid")
            raise
