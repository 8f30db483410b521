"""Every row of the contract's client-method table (`../shared/reference/chartmogul-api.md` §2)
through the official Python client against the running platform.

Each call Roster serves is one test below (`WALK`): it is made as a user's code makes it and
its answer must parse into the client's own objects, so a missing route or a wire shape the
client cannot load fails here, not in a user's bug report. The calls Roster does not serve are
listed in `NOT_SERVED` with the reason; `test_the_table_is_complete` checks that the two
together cover every call the contract names and every method of the client's classes.
"""
import re
import warnings
from pathlib import Path

import chartmogul
import pytest
from chartmogul.resource import Resource
from tests.e2e.support import eventually, status_of, unique

ERR = chartmogul.APIError
CONTRACT = Path(__file__).resolve().parents[3] / "shared" / "reference" / "chartmogul-api.md"
class World:
    """What the calls need, made through the client itself: a data source, a plan, customers."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.source = chartmogul.DataSource.create(cfg, data={"name": unique("client-table")}).get()
        self.plan = chartmogul.Plan.create(cfg, data={"data_source_uuid": self.source.uuid, "name": "Silver Monthly",
                                                      "interval_count": 1, "interval_unit": "month"}).get()

    def customer(self, **fields):
        data = {"data_source_uuid": self.source.uuid, "external_id": unique("cus"), "name": "Table Co",
                "email": f"{unique('table')}@table.example", **fields}
        return chartmogul.Customer.create(self.cfg, data=data).get()

    def contact(self, customer, **fields):
        return chartmogul.Contact.create(self.cfg, data={"customer_uuid": customer.uuid,
                                                         "data_source_uuid": self.source.uuid, **fields}).get()

    def invoice_data(self, *, subscription=None, start="2019-03-01", end="2019-04-01", paid=True):
        return {"external_id": unique("inv"), "date": start, "currency": "USD",
                "line_items": [{"type": "subscription", "subscription_external_id": subscription or unique("sub"),
                                "plan_uuid": self.plan.uuid, "service_period_start": start,
                                "service_period_end": end, "amount_in_cents": 1000}],
                "transactions": [{"date": start, "type": "payment", "result": "successful"}] if paid else []}

    def billed_customer(self, invoices=1):
        customer = self.customer()
        imported = chartmogul.Invoice.create(self.cfg, uuid=customer.uuid, data={
            "invoices": [self.invoice_data() for _ in range(invoices)]}).get()
        return customer, imported.invoices

    def task_data(self, **fields):
        return {"task_details": "Call back", "assignee": "sam@us.example", "due_date": "2030-01-01", **fields}

    def opportunity_data(self, **fields):
        return {"owner": "sam@us.example", "pipeline": "New business", "pipeline_stage": "Discovery",
                "estimated_close_date": "2030-01-01", "currency": "USD", "amount_in_cents": 1000, **fields}


@pytest.fixture(scope="module")
def cfg(cm_config):
    return cm_config("owner")


@pytest.fixture(scope="module")
def world(cfg):
    return World(cfg)


WALK = {}


def row(name: str, http: str):
    """Register a served client call: `name` as the contract names it (a variant in brackets)."""
    def register(check):
        WALK[name] = (http, check)
        return check
    return register


# ---- §2.1 customers -------------------------------------------------------------------------------------

@row("Customer.create", "POST /customers")
def _(cfg, world):
    made = world.customer(attributes={"tags": ["a"], "custom": [{"type": "Integer", "key": "seats", "value": 2}]})
    assert isinstance(made, chartmogul.Customer) and made.uuid.startswith("cus_")
    assert (made.attributes.tags, made.attributes.custom) == (["a"], {"seats": 2})


@row("Customer.retrieve", "GET /customers/{uuid}")
def _(cfg, world):
    made = world.customer()
    fetched = chartmogul.Customer.retrieve(cfg, uuid=made.uuid).get()
    assert isinstance(fetched, chartmogul.Customer)
    assert (fetched.uuid, fetched.external_ids, fetched.billing_system_url) == (made.uuid, [made.external_id], None)
    assert isinstance(fetched.address, chartmogul.api.customer.Address)


@row("Customer.all", "GET /customers")
def _(cfg, world):
    made = [world.customer() for _ in range(2)]
    first = chartmogul.Customer.all(cfg, data_source_uuid=world.source.uuid, per_page=1).get()
    assert first.has_more is True and isinstance(first.cursor, str)
    second = chartmogul.Customer.all(cfg, data_source_uuid=world.source.uuid, per_page=1, cursor=first.cursor).get()
    assert isinstance(second.entries[0], chartmogul.Customer) and second.entries[0].uuid != first.entries[0].uuid
    by_id = chartmogul.Customer.all(cfg, external_id=made[1].external_id).get()
    assert [c.uuid for c in by_id.entries] == [made[1].uuid]


@row("Customer.search", "GET /customers/search?email=")
def _(cfg, world):
    made = world.customer()
    found = chartmogul.Customer.search(cfg, email=made.email).get()
    assert [c.uuid for c in found.entries] == [made.uuid]


@row("Customer.modify", "PATCH /customers/{uuid}")
def _(cfg, world):
    made = world.customer()
    assert chartmogul.Customer.modify(cfg, uuid=made.uuid, data={"country": "US"}).get().country == "US"


@row("Customer.update", "PUT /customers/{uuid}")
def _(cfg, world):
    made = world.customer()
    assert chartmogul.Customer.update(cfg, uuid=made.uuid, data={"city": "Berlin"}).get().city == "Berlin"


@row("Customer.destroy", "DELETE /customers/{uuid}")
def _(cfg, world):
    made = world.customer()
    assert chartmogul.Customer.destroy(cfg, uuid=made.uuid).get() is None
    with pytest.raises(ERR) as gone:
        chartmogul.Customer.retrieve(cfg, uuid=made.uuid).get()
    assert status_of(gone.value) == 404


@row("Customer.merge", "POST /customers/merges")
def _(cfg, world):
    merged, survivor = world.customer(), world.customer()
    assert chartmogul.Customer.merge(cfg, data={"from": {"customer_uuid": merged.uuid},
                                                "into": {"customer_uuid": survivor.uuid}}).get() is None
    assert chartmogul.Customer.retrieve(cfg, uuid=survivor.uuid).get().external_ids == [
        survivor.external_id, merged.external_id]


@row("Customer.unmerge", "POST /customers/unmerges")
def _(cfg, world):
    merged, survivor = world.customer(), world.customer()
    chartmogul.Customer.merge(cfg, data={"from": {"customer_uuid": merged.uuid},
                                         "into": {"customer_uuid": survivor.uuid}}).get()
    assert chartmogul.Customer.unmerge(cfg, data={
        "customer_uuid": survivor.uuid, "data_source_uuid": world.source.uuid, "external_id": merged.external_id,
        "move_to_new_customer": ["tasks", "opportunities", "notes"]}).get() is None
    [new] = chartmogul.Customer.all(cfg, external_id=merged.external_id).get().entries
    assert new.uuid != survivor.uuid and new.external_ids == [merged.external_id]


@row("Customer.connectSubscriptions", "POST /customers/{uuid}/connect_subscriptions")
def _(cfg, world):
    customer, _ = world.billed_customer(invoices=2)
    refs = [{"data_source_uuid": world.source.uuid, "uuid": s.uuid}
            for s in chartmogul.Customer.subscriptions(cfg, uuid=customer.uuid).get().entries]
    assert chartmogul.Customer.connectSubscriptions(cfg, uuid=customer.uuid, data={"subscriptions": refs}).get() \
        is None


@row("Customer.disconnectSubscriptions", "POST /customers/{uuid}/disconnect_subscriptions")
def _(cfg, world):
    customer, _ = world.billed_customer(invoices=2)
    refs = [{"data_source_uuid": world.source.uuid, "uuid": s.uuid}
            for s in chartmogul.Customer.subscriptions(cfg, uuid=customer.uuid).get().entries]
    chartmogul.Customer.connectSubscriptions(cfg, uuid=customer.uuid, data={"subscriptions": refs}).get()
    assert chartmogul.Customer.disconnectSubscriptions(cfg, uuid=customer.uuid,
                                                       data={"subscriptions": refs}).get() is None


@row("Customer.subscriptions", "GET /customers/{uuid}/subscriptions")
def _(cfg, world):
    customer, _ = world.billed_customer()
    page = chartmogul.Customer.subscriptions(cfg, uuid=customer.uuid).get()
    [subscription] = page.entries
    assert isinstance(subscription, chartmogul.CustomerSubscription)
    assert (subscription.mrr, subscription.billing_cycle, page.has_more) == (1000, "month", False)


@row("Customer.contacts", "GET /customers/{uuid}/contacts")
def _(cfg, world):
    customer = world.customer(primary_contact={"first_name": "Pat"})
    page = chartmogul.Customer.contacts(cfg, uuid=customer.uuid).get()
    assert [(c.first_name, c.position) for c in page.entries] == [("Pat", 1)] and page.has_more is False


@row("Customer.createContact", "POST /customers/{uuid}/contacts")
def _(cfg, world):
    customer = world.customer()
    made = chartmogul.Customer.createContact(cfg, uuid=customer.uuid, data={
        "data_source_uuid": world.source.uuid, "first_name": "Kim"}).get()
    assert isinstance(made, chartmogul.Contact) and (made.customer_uuid, made.position) == (customer.uuid, 1)


@row("Customer.notes", "GET /customer_notes?customer_uuid=")
def _(cfg, world):
    customer = world.customer()
    chartmogul.EntityNote.create(cfg, data={"customer_uuid": customer.uuid, "type": "note", "text": "hi"}).get()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        page = chartmogul.Customer.notes(cfg, uuid=customer.uuid).get()
    assert [n.text for n in page.entries] == ["hi"] and page.cursor is None


@row("Customer.createNote", "POST /customer_notes")
def _(cfg, world):
    customer = world.customer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        made = chartmogul.Customer.createNote(cfg, uuid=customer.uuid, data={"type": "call", "text": "rang",
                                                                             "call_duration": 60}).get()
    assert isinstance(made, chartmogul.CustomerNote) and (made.customer_uuid, made.call_duration) == (
        customer.uuid, 60)


@row("Customer.entityNotes", "GET /notes?customer_uuid=")
def _(cfg, world):
    customer = world.customer()
    chartmogul.EntityNote.create(cfg, data={"customer_uuid": customer.uuid, "type": "note", "text": "hi"}).get()
    assert [n.text for n in chartmogul.Customer.entityNotes(cfg, uuid=customer.uuid).get().entries] == ["hi"]


@row("Customer.createEntityNote", "POST /notes")
def _(cfg, world):
    customer = world.customer()
    made = chartmogul.Customer.createEntityNote(cfg, uuid=customer.uuid, data={"type": "note", "text": "x"}).get()
    assert isinstance(made, chartmogul.EntityNote) and made.customer_uuid == customer.uuid


@row("Customer.opportunities", "GET /opportunities?customer_uuid=")
def _(cfg, world):
    customer = world.customer()
    chartmogul.Opportunity.create(cfg, data=world.opportunity_data(customer_uuid=customer.uuid)).get()
    page = chartmogul.Customer.opportunities(cfg, uuid=customer.uuid).get()
    assert [o.pipeline for o in page.entries] == ["New business"] and page.has_more is False


@row("Customer.createOpportunity", "POST /opportunities")
def _(cfg, world):
    customer = world.customer()
    made = chartmogul.Customer.createOpportunity(cfg, uuid=customer.uuid, data=world.opportunity_data()).get()
    assert isinstance(made, chartmogul.Opportunity) and str(made.estimated_close_date) == "2030-01-01"


@row("Customer.tasks", "GET /tasks?customer_uuid=")
def _(cfg, world):
    customer = world.customer()
    chartmogul.Task.create(cfg, data=world.task_data(customer_uuid=customer.uuid)).get()
    page = chartmogul.Customer.tasks(cfg, uuid=customer.uuid).get()
    assert [t.task_details for t in page.entries] == ["Call back"] and page.cursor is None


@row("Customer.createTask", "POST /tasks")
def _(cfg, world):
    customer = world.customer()
    made = chartmogul.Customer.createTask(cfg, uuid=customer.uuid, data=world.task_data()).get()
    assert isinstance(made, chartmogul.Task) and made.task_uuid and made.customer_uuid == customer.uuid


# ---- §2.2 attributes, tags, custom attributes ------------------------------------------------------------

@row("Attributes.retrieve", "GET /customers/{uuid}/attributes")
def _(cfg, world):
    customer = world.customer(attributes={"tags": ["t"]})
    attributes = chartmogul.Attributes.retrieve(cfg, uuid=customer.uuid).get()
    assert isinstance(attributes, chartmogul.Attributes) and (attributes.tags, attributes.custom) == (["t"], {})


@row("Tags.add[uuid]", "POST /customers/{uuid}/attributes/tags")
def _(cfg, world):
    customer = world.customer(attributes={"tags": ["a"]})
    assert chartmogul.Tags.add(cfg, uuid=customer.uuid, data={"tags": ["b"]}).get().tags == ["a", "b"]


@row("Tags.add[email]", "POST /customers/attributes/tags")
def _(cfg, world):
    customer = world.customer()
    found = chartmogul.Tags.add(cfg, data={"email": customer.email, "tags": ["c"]}).get()
    assert [(c.uuid, c.attributes.tags) for c in found.entries] == [(customer.uuid, ["c"])]


@row("Tags.add_by_email", "POST /customers/attributes/tags")
def _(cfg, world):
    customer = world.customer()
    found = chartmogul.Tags.add_by_email(cfg, data={"email": customer.email, "tags": ["d"]}).get()
    assert [c.attributes.tags for c in found.entries] == [["d"]]


@row("Tags.remove[uuid]", "DELETE /customers/{uuid}/attributes/tags")
def _(cfg, world):
    customer = world.customer(attributes={"tags": ["a", "b"]})
    assert chartmogul.Tags.remove(cfg, uuid=customer.uuid, data={"tags": ["a"]}).get().tags == ["b"]


@row("Tags.remove[email]", "DELETE /customers/attributes/tags")
def _(cfg, world):
    customer = world.customer(attributes={"tags": ["a", "b"]})
    found = chartmogul.Tags.remove(cfg, data={"email": customer.email, "tags": ["b"]}).get()
    assert [c.attributes.tags for c in found.entries] == [["a"]]


@row("CustomAttributes.add[uuid]", "POST /customers/{uuid}/attributes/custom")
def _(cfg, world):
    customer = world.customer()
    answer = chartmogul.CustomAttributes.add(cfg, uuid=customer.uuid, data={"custom": [
        {"type": "String", "key": "channel", "value": "Twitter", "source": "integration"}]}).get()
    assert isinstance(answer, chartmogul.CustomAttributes) and answer.custom == {"channel": "Twitter"}


@row("CustomAttributes.add[email]", "POST /customers/attributes/custom")
def _(cfg, world):
    customer = world.customer()
    found = chartmogul.CustomAttributes.add(cfg, data={"email": customer.email, "custom": [
        {"type": "Integer", "key": "age", "value": 8}]}).get()
    assert [c.attributes.custom for c in found.entries] == [{"age": 8}]


@row("CustomAttributes.add_by_email", "POST /customers/attributes/custom")
def _(cfg, world):
    customer = world.customer()
    found = chartmogul.CustomAttributes.add_by_email(cfg, data={"email": customer.email, "custom": [
        {"type": "Boolean", "key": "pro", "value": True}]}).get()
    assert [c.attributes.custom for c in found.entries] == [{"pro": True}]


@row("CustomAttributes.update[uuid]", "PUT /customers/{uuid}/attributes/custom")
def _(cfg, world):
    customer = world.customer()
    answer = chartmogul.CustomAttributes.update(cfg, uuid=customer.uuid, data={"custom": {"age": 20,
                                                                                          "channel": "Ads"}}).get()
    assert answer.custom == {"age": 20, "channel": "Ads"}


@row("CustomAttributes.remove[uuid]", "DELETE /customers/{uuid}/attributes/custom")
def _(cfg, world):
    customer = world.customer(attributes={"custom": [{"type": "Integer", "key": "CAC", "value": 1},
                                                     {"type": "Integer", "key": "LTV", "value": 2}]})
    answer = chartmogul.CustomAttributes.remove(cfg, uuid=customer.uuid, data={"custom": ["CAC"]}).get()
    assert answer.custom == {"LTV": 2}


@row("CustomAttributes.remove[email]", "DELETE /customers/attributes/custom")
def _(cfg, world):
    customer = world.customer(attributes={"custom": [{"type": "Integer", "key": "CAC", "value": 1}]})
    found = chartmogul.CustomAttributes.remove(cfg, data={"email": customer.email, "custom": ["CAC"]}).get()
    assert [c.attributes.custom for c in found.entries] == [{}]


# ---- §2.3 contacts --------------------------------------------------------------------------------------

@row("Contact.create", "POST /contacts")
def _(cfg, world):
    customer = world.customer()
    made = world.contact(customer, first_name="Jane", position=1, custom=[{"key": "Facebook", "value": "fb"}])
    assert isinstance(made, chartmogul.Contact) and (made.position, made.custom) == (1, {"Facebook": "fb"})
    assert made.external_id is None


@row("Contact.all", "GET /contacts")
def _(cfg, world):
    customer = world.customer()
    made = [world.contact(customer, first_name=f"P{n}") for n in range(2)]
    first = chartmogul.Contact.all(cfg, customer_uuid=customer.uuid, per_page=1).get()
    rest = chartmogul.Contact.all(cfg, customer_uuid=customer.uuid, per_page=1, cursor=first.cursor).get()
    assert [c.uuid for c in first.entries + rest.entries] == [c.uuid for c in made]
    assert (first.has_more, rest.has_more, rest.cursor) == (True, False, None)
    by_source = chartmogul.Contact.all(cfg, data_source_uuid=world.source.uuid, customer_uuid=customer.uuid).get()
    assert len(by_source.entries) == 2


@row("Contact.retrieve", "GET /contacts/{uuid}")
def _(cfg, world):
    made = world.contact(world.customer(), first_name="Jane")
    assert chartmogul.Contact.retrieve(cfg, uuid=made.uuid).get().first_name == "Jane"


@row("Contact.modify", "PATCH /contacts/{uuid}")
def _(cfg, world):
    made = world.contact(world.customer(), first_name="Jane")
    changed = chartmogul.Contact.modify(cfg, uuid=made.uuid, data={"title": "CTO",
                                                                   "last_seen": "2024-01-02T10:00:00-04:00"}).get()
    assert changed.title == "CTO" and changed.last_seen.hour == 14


@row("Contact.destroy", "DELETE /contacts/{uuid}")
def _(cfg, world):
    made = world.contact(world.customer())
    chartmogul.Contact.destroy(cfg, uuid=made.uuid).get()
    with pytest.raises(ERR) as gone:
        chartmogul.Contact.retrieve(cfg, uuid=made.uuid).get()
    assert status_of(gone.value) == 404


@row("Contact.merge", "POST /contacts/{into_uuid}/merge/{from_uuid}")
def _(cfg, world):
    customer = world.customer()
    into, merged = world.contact(customer, first_name="Jane"), world.contact(customer, title="CTO")
    answer = chartmogul.Contact.merge(cfg, into_uuid=into.uuid, from_uuid=merged.uuid).get()
    assert (answer.uuid, answer.first_name, answer.title) == (into.uuid, "Jane", "CTO")


@row("Contact.tasks", "GET /tasks?contact_uuid=")
def _(cfg, world):
    contact = world.contact(world.customer())
    chartmogul.Contact.createTask(cfg, uuid=contact.uuid, data=world.task_data()).get()
    assert [t.associated_object_uuid for t in chartmogul.Contact.tasks(cfg, uuid=contact.uuid).get().entries] == [
        contact.uuid]


@row("Contact.createTask", "POST /tasks (associated contact)")
def _(cfg, world):
    customer = world.customer()
    contact = world.contact(customer)
    made = chartmogul.Contact.createTask(cfg, uuid=contact.uuid, data=world.task_data()).get()
    assert (made.associated_object, made.associated_object_uuid) == ("contact", contact.uuid)


@row("Contact.entityNotes", "GET /notes?contact_uuid=")
def _(cfg, world):
    contact = world.contact(world.customer())
    chartmogul.Contact.createEntityNote(cfg, uuid=contact.uuid, data={"type": "note", "text": "hi"}).get()
    assert [n.text for n in chartmogul.Contact.entityNotes(cfg, uuid=contact.uuid).get().entries] == ["hi"]


@row("Contact.createEntityNote", "POST /notes (associated contact)")
def _(cfg, world):
    contact = world.contact(world.customer())
    made = chartmogul.Contact.createEntityNote(cfg, uuid=contact.uuid, data={"type": "call", "text": "x"}).get()
    assert (made.associated_object, made.associated_object_uuid) == ("contact", contact.uuid)


# ---- §2.4 notes and call logs ----------------------------------------------------------------------------

def _legacy(method, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return method(*args, **kwargs).get()


def _legacy_note(cfg, customer):
    return _legacy(chartmogul.CustomerNote.create, cfg, data={"customer_uuid": customer.uuid, "type": "note",
                                                              "text": "legacy", "author_email": "sam@us.example"})


@row("CustomerNote.create", "POST /customer_notes")
def _(cfg, world):
    made = _legacy_note(cfg, world.customer())
    assert isinstance(made, chartmogul.CustomerNote) and (made.type, made.call_duration) == ("note", 0)
    assert "sam@us.example" in made.author


@row("CustomerNote.all", "GET /customer_notes")
def _(cfg, world):
    customer = world.customer()
    made = _legacy_note(cfg, customer)
    page = _legacy(chartmogul.CustomerNote.all, cfg, customer_uuid=customer.uuid, per_page=10)
    assert [n.uuid for n in page.entries] == [made.uuid] and (page.has_more, page.cursor) == (False, None)


@row("CustomerNote.retrieve", "GET /customer_notes/{uuid}")
def _(cfg, world):
    made = _legacy_note(cfg, world.customer())
    assert _legacy(chartmogul.CustomerNote.retrieve, cfg, uuid=made.uuid).text == "legacy"


@row("CustomerNote.modify", "PATCH /customer_notes/{uuid}")
def _(cfg, world):
    made = _legacy_note(cfg, world.customer())
    assert _legacy(chartmogul.CustomerNote.modify, cfg, uuid=made.uuid, data={"text": "edited"}).text == "edited"


@row("CustomerNote.patch", "PATCH /customer_notes/{uuid}")
def _(cfg, world):
    made = _legacy_note(cfg, world.customer())
    assert _legacy(chartmogul.CustomerNote.patch, cfg, uuid=made.uuid, data={"text": "patched"}).text == "patched"


@row("CustomerNote.destroy", "DELETE /customer_notes/{uuid}")
def _(cfg, world):
    made = _legacy_note(cfg, world.customer())
    _legacy(chartmogul.CustomerNote.destroy, cfg, uuid=made.uuid)
    with pytest.raises(ERR) as gone:
        _legacy(chartmogul.CustomerNote.retrieve, cfg, uuid=made.uuid)
    assert status_of(gone.value) == 404


def _entity_note(cfg, customer, text="entity"):
    return chartmogul.EntityNote.create(cfg, data={"customer_uuid": customer.uuid, "type": "note", "text": text}).get()


@row("EntityNote.create", "POST /notes")
def _(cfg, world):
    made = _entity_note(cfg, world.customer())
    assert isinstance(made, chartmogul.EntityNote) and made.associated_object == "customer"


@row("EntityNote.all", "GET /notes")
def _(cfg, world):
    customer = world.customer()
    made = _entity_note(cfg, customer)
    assert [n.uuid for n in chartmogul.EntityNote.all(cfg, customer_uuid=customer.uuid, type="note").get().entries] \
        == [made.uuid]


@row("EntityNote.retrieve", "GET /notes/{uuid}")
def _(cfg, world):
    made = _entity_note(cfg, world.customer())
    assert chartmogul.EntityNote.retrieve(cfg, uuid=made.uuid).get().text == "entity"


@row("EntityNote.patch", "PATCH /notes/{uuid}")
def _(cfg, world):
    made = _entity_note(cfg, world.customer())
    assert chartmogul.EntityNote.patch(cfg, uuid=made.uuid, data={"text": "changed"}).get().text == "changed"
    assert chartmogul.EntityNote.patch(cfg, uuid=made.uuid, data={"text": "changed"}).get() is None  # 304


@row("EntityNote.modify", "PATCH /notes/{uuid}")
def _(cfg, world):
    made = _entity_note(cfg, world.customer())
    assert chartmogul.EntityNote.modify(cfg, uuid=made.uuid, data={"text": "modified"}).get().text == "modified"


@row("EntityNote.destroy", "DELETE /notes/{uuid}")
def _(cfg, world):
    made = _entity_note(cfg, world.customer())
    assert chartmogul.EntityNote.destroy(cfg, uuid=made.uuid).get() is None  # 202
    with pytest.raises(ERR) as gone:
        chartmogul.EntityNote.retrieve(cfg, uuid=made.uuid).get()
    assert status_of(gone.value) == 404


# ---- §2.5 activities -------------------------------------------------------------------------------------

@row("CustomerActivity.all", "GET /customers/{uuid}/activities")
def _(cfg, world):
    customer, _ = world.billed_customer()
    page = eventually(lambda: (lambda p: p if p.entries else None)(
        chartmogul.CustomerActivity.all(cfg, uuid=customer.uuid).get()))
    [activity] = page.entries
    assert isinstance(activity, chartmogul.CustomerActivity)
    assert (activity.type, activity.activity_mrr, activity.activity_mrr_movement) == ("new_biz", 1000, 1000)


@row("Activity.all", "GET /activities")
def _(cfg, world):
    world.billed_customer()
    page = eventually(lambda: (lambda p: p if p.entries else None)(chartmogul.Activity.all(
        cfg, start_date="2019-02-01", end_date="2019-03-31", type="new_biz", order="date", per_page=1).get()))
    assert isinstance(page.entries[0], chartmogul.Activity) and page.entries[0].type == "new_biz"
    assert page.entries[0].date.year == 2019 and page.entries[0].customer_uuid.startswith("cus_")


# ---- §2.6 data sources -----------------------------------------------------------------------------------

@row("DataSource.create", "POST /data_sources")
def _(cfg, world):
    made = chartmogul.DataSource.create(cfg, data={"name": unique("walk")}).get()
    assert isinstance(made, chartmogul.DataSource) and made.uuid.startswith("ds_") and made.system == "Import API"


@row("DataSource.all", "GET /data_sources")
def _(cfg, world):
    found = chartmogul.DataSource.all(cfg, name=world.source.name, with_processing_status=True).get()
    assert [s.uuid for s in found.data_sources] == [world.source.uuid]


@row("DataSource.retrieve", "GET /data_sources/{uuid}")
def _(cfg, world):
    found = chartmogul.DataSource.retrieve(cfg, uuid=world.source.uuid, with_processing_status=True,
                                           with_auto_churn_subscription_setting=True,
                                           with_invoice_handling_setting=True).get()
    assert found.name == world.source.name and found.auto_churn_subscription_setting.enabled is False


@row("DataSource.destroy", "DELETE /data_sources/{uuid}")
def _(cfg, world):
    made = chartmogul.DataSource.create(cfg, data={"name": unique("gone")}).get()
    assert chartmogul.DataSource.destroy(cfg, uuid=made.uuid).get() is None


# ---- §2.7 plans -----------------------------------------------------------------------------------------

def _plan(cfg, world, **fields):
    return chartmogul.Plan.create(cfg, data={"data_source_uuid": world.source.uuid, "name": "Bronze",
                                             "interval_count": 3, "interval_unit": "month", **fields}).get()


@row("Plan.create", "POST /plans")
def _(cfg, world):
    made = _plan(cfg, world, external_id=unique("bronze"))
    assert isinstance(made, chartmogul.Plan) and (made.interval_count, made.interval_unit) == (3, "month")


@row("Plan.all", "GET /plans")
def _(cfg, world):
    made = _plan(cfg, world, external_id=unique("listed"))
    found = chartmogul.Plan.all(cfg, data_source_uuid=world.source.uuid, external_id=made.external_id).get()
    assert [p.uuid for p in found.plans] == [made.uuid] and found.has_more is False


@row("Plan.retrieve", "GET /plans/{uuid}")
def _(cfg, world):
    made = _plan(cfg, world)
    assert chartmogul.Plan.retrieve(cfg, uuid=made.uuid).get().name == "Bronze"


@row("Plan.modify", "PATCH /plans/{uuid}")
def _(cfg, world):
    made = _plan(cfg, world)
    assert chartmogul.Plan.modify(cfg, uuid=made.uuid, data={"name": "Bronze+"}).get().name == "Bronze+"


@row("Plan.destroy", "DELETE /plans/{uuid}")
def _(cfg, world):
    made = _plan(cfg, world)
    assert chartmogul.Plan.destroy(cfg, uuid=made.uuid).get() is None


# ---- §2.8 invoices --------------------------------------------------------------------------------------

@row("Invoice.create", "POST /import/customers/{uuid}/invoices")
def _(cfg, world):
    customer = world.customer()
    made = chartmogul.Invoice.create(cfg, uuid=customer.uuid, data={"invoices": [world.invoice_data()]}).get()
    [invoice] = made.invoices
    assert isinstance(invoice, chartmogul.Invoice) and invoice.line_items[0].amount_in_cents == 1000
    assert invoice.transactions[0].result == "successful"


@row("Invoice.all[customer]", "GET /import/customers/{uuid}/invoices")
def _(cfg, world):
    customer, made = world.billed_customer()
    found = chartmogul.Invoice.all(cfg, uuid=customer.uuid).get()
    assert [i.uuid for i in found.invoices] == [made[0].uuid] and found.customer_uuid == customer.uuid


@row("Invoice.all[filters]", "GET /invoices")
def _(cfg, world):
    customer, made = world.billed_customer()
    found = chartmogul.Invoice.all(cfg, customer_uuid=customer.uuid).get()
    assert [i.uuid for i in found.invoices] == [made[0].uuid]
    by_id = chartmogul.Invoice.all(cfg, data_source_uuid=world.source.uuid, external_id=made[0].external_id).get()
    assert [i.uuid for i in by_id.invoices] == [made[0].uuid]


@row("Invoice.all_any", "GET /invoices")
def _(cfg, world):
    customer, made = world.billed_customer()
    found = chartmogul.Invoice.all_any(cfg, customer_uuid=customer.uuid, validation_type="all").get()
    assert [i.uuid for i in found.invoices] == [made[0].uuid]


@row("Invoice.retrieve", "GET /invoices/{uuid}")
def _(cfg, world):
    _, made = world.billed_customer()
    assert chartmogul.Invoice.retrieve(cfg, uuid=made[0].uuid).get().external_id == made[0].external_id
    by_id = chartmogul.Invoice.retrieve(cfg, data_source_uuid=world.source.uuid,
                                        external_id=made[0].external_id).get()
    assert by_id.uuid == made[0].uuid


@row("Invoice.destroy", "DELETE /invoices/{uuid}")
def _(cfg, world):
    _, made = world.billed_customer()
    assert chartmogul.Invoice.destroy(cfg, uuid=made[0].uuid).get() is None
    with pytest.raises(ERR) as gone:
        chartmogul.Invoice.destroy(cfg, uuid=made[0].uuid).get()
    assert status_of(gone.value) == 404


@row("Invoice.destroy_all", "DELETE /data_sources/{ds}/customers/{cus}/invoices")
def _(cfg, world):
    customer, _ = world.billed_customer(invoices=2)
    assert chartmogul.Invoice.destroy_all(cfg, data_source_uuid=world.source.uuid, customer_uuid=customer.uuid).get() \
        is None
    assert chartmogul.Invoice.all(cfg, uuid=customer.uuid).get().invoices == []


# ---- §2.9 transactions ----------------------------------------------------------------------------------

@row("Transaction.create", "POST /import/invoices/{uuid}/transactions")
def _(cfg, world):
    customer = world.customer()
    made = chartmogul.Invoice.create(cfg, uuid=customer.uuid, data={"invoices": [world.invoice_data(paid=False)]})
    invoice = made.get().invoices[0]
    transaction = chartmogul.Transaction.create(cfg, uuid=invoice.uuid, data={
        "type": "payment", "date": "2019-03-02", "result": "successful", "external_id": unique("tr")}).get()
    assert isinstance(transaction, chartmogul.Transaction) and transaction.uuid and transaction.result == "successful"


# ---- §2.10 subscriptions --------------------------------------------------------------------------------

@row("CustomerSubscription.all", "GET /customers/{uuid}/subscriptions")
def _(cfg, world):
    customer, _ = world.billed_customer()
    [subscription] = chartmogul.CustomerSubscription.all(cfg, uuid=customer.uuid).get().entries
    assert subscription.plan == "Silver Monthly" and subscription.status in ("active", "cancelled")


@row("CustomerSubscription.list_imported", "GET /import/customers/{uuid}/subscriptions")
def _(cfg, world):
    customer, _ = world.billed_customer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        imported = chartmogul.CustomerSubscription.list_imported(cfg, uuid=customer.uuid).get()
    assert imported.customer_uuid == customer.uuid and imported.subscriptions[0].plan_uuid == world.plan.uuid


@row("CustomerSubscription.cancel", "PATCH /import/subscriptions/{uuid}")
def _(cfg, world):
    customer, _ = world.billed_customer()
    [subscription] = chartmogul.CustomerSubscription.all(cfg, uuid=customer.uuid).get().entries
    cancelled = chartmogul.CustomerSubscription.cancel(cfg, uuid=subscription.uuid,
                                                       data={"cancelled_at": "2019-03-15"}).get()
    assert [d.day for d in cancelled.cancellation_dates] == [15]


@row("CustomerSubscription.modify", "PATCH /import/subscriptions/{uuid}")
def _(cfg, world):
    customer, _ = world.billed_customer()
    [subscription] = chartmogul.Subscription.all(cfg, uuid=customer.uuid).get().entries
    changed = chartmogul.CustomerSubscription.modify(cfg, uuid=subscription.uuid, data={
        "cancellation_dates": ["2019-03-20T00:00:00Z"]}).get()
    assert [d.day for d in changed.cancellation_dates] == [20]


# ---- §2.12 tasks and opportunities -----------------------------------------------------------------------

def _task(cfg, world):
    return chartmogul.Task.create(cfg, data=world.task_data(customer_uuid=world.customer().uuid)).get()


@row("Task.create", "POST /tasks")
def _(cfg, world):
    made = _task(cfg, world)
    assert isinstance(made, chartmogul.Task) and made.completed_at is None


@row("Task.all", "GET /tasks")
def _(cfg, world):
    made = _task(cfg, world)
    page = chartmogul.Task.all(cfg, customer_uuid=made.customer_uuid, completed=False).get()
    assert [t.task_uuid for t in page.entries] == [made.task_uuid] and (page.has_more, page.cursor) == (False, None)


@row("Task.retrieve", "GET /tasks/{uuid}")
def _(cfg, world):
    made = _task(cfg, world)
    assert chartmogul.Task.retrieve(cfg, uuid=made.task_uuid).get().task_details == "Call back"


@row("Task.modify", "PATCH /tasks/{uuid}")
def _(cfg, world):
    made = _task(cfg, world)
    done = chartmogul.Task.modify(cfg, uuid=made.task_uuid, data={"completed_at": "2024-01-02T00:00:00Z"}).get()
    assert done.completed_at.year == 2024
    assert chartmogul.Task.modify(cfg, uuid=made.task_uuid, data={"completed_at": "2024-01-02T00:00:00Z"}).get() \
        is None  # 304: nothing changed


@row("Task.destroy", "DELETE /tasks/{uuid}")
def _(cfg, world):
    made = _task(cfg, world)
    chartmogul.Task.destroy(cfg, uuid=made.task_uuid).get()
    with pytest.raises(ERR) as gone:
        chartmogul.Task.retrieve(cfg, uuid=made.task_uuid).get()
    assert status_of(gone.value) == 404


def _opportunity(cfg, world):
    return chartmogul.Opportunity.create(cfg, data=world.opportunity_data(customer_uuid=world.customer().uuid)).get()


@row("Opportunity.create", "POST /opportunities")
def _(cfg, world):
    made = _opportunity(cfg, world)
    assert isinstance(made, chartmogul.Opportunity) and (made.type, made.forecast_category) == ("recurring", "pipeline")


@row("Opportunity.all", "GET /opportunities")
def _(cfg, world):
    made = _opportunity(cfg, world)
    page = chartmogul.Opportunity.all(cfg, customer_uuid=made.customer_uuid, pipeline="New business").get()
    assert [o.uuid for o in page.entries] == [made.uuid] and (page.has_more, page.cursor) == (False, None)


@row("Opportunity.retrieve", "GET /opportunities/{uuid}")
def _(cfg, world):
    made = _opportunity(cfg, world)
    assert chartmogul.Opportunity.retrieve(cfg, uuid=made.uuid).get().amount_in_cents == 1000


@row("Opportunity.modify", "PATCH /opportunities/{uuid}")
def _(cfg, world):
    made = _opportunity(cfg, world)
    assert chartmogul.Opportunity.modify(cfg, uuid=made.uuid, data={"pipeline_stage": "Won"}).get() \
        .pipeline_stage == "Won"


@row("Opportunity.destroy", "DELETE /opportunities/{uuid}")
def _(cfg, world):
    made = _opportunity(cfg, world)
    chartmogul.Opportunity.destroy(cfg, uuid=made.uuid).get()
    with pytest.raises(ERR) as gone:
        chartmogul.Opportunity.retrieve(cfg, uuid=made.uuid).get()
    assert status_of(gone.value) == 404


# ---- §2.13 metrics, §2.14 ping ---------------------------------------------------------------------------

def _series(method, cfg, key):
    found = method(cfg, start_date="2019-01-01", end_date="2019-03-31", interval="month").get()
    assert [str(entry.date) for entry in found.entries] == ["2019-01-31", "2019-02-28", "2019-03-31"]
    assert all(isinstance(getattr(entry, key), int) for entry in found.entries)
    return found


@row("Metrics.mrr", "GET /metrics/mrr")
def _(cfg, world):
    found = _series(chartmogul.Metrics.mrr, cfg, "mrr")
    assert isinstance(found.entries[0].mrr_new_business, int)


@row("Metrics.arr", "GET /metrics/arr")
def _(cfg, world):
    _series(chartmogul.Metrics.arr, cfg, "arr")


@row("Metrics.customer_count", "GET /metrics/customer-count")
def _(cfg, world):
    _series(chartmogul.Metrics.customer_count, cfg, "customers")


@row("Ping.ping", "GET /ping")
def _(cfg, world):
    assert chartmogul.Ping.ping(cfg).get().data == "pong!"


# ---- what Roster does not serve, and why -----------------------------------------------------------------

NO_PLAN_GROUPS = "plan groups are not modelled: plans are listed per data source (§2.7)"
NO_SUBSCRIPTION_EVENTS = ("the subscription-events import path is not built: billing data comes in as invoices "
                          "(Invoice.create) and from connectors")
NO_INVOICE_EDITS = "invoices cannot be disabled or edited in place: delete and import again"
NO_STANDALONE_LINES = "line items are imported and read with their invoice; there are no /line_items routes"
NO_STANDALONE_TRANSACTIONS = ("transactions are imported on an invoice (Transaction.create) and read with it; "
                              "there are no /transactions routes")
ONLY_THREE_METRICS = "only MRR, ARR and customer count are computed (billing_sync metrics); no ARPA/ASP/churn/LTV"

NOT_SERVED = {
    "Account.retrieve": "one account per deployment: its currency and rules are settings (ACCOUNT_CURRENCY), "
                        "with no /account route",
    "ActivitiesExport.create": "no asynchronous activities export: GET /activities pages through them",
    "ActivitiesExport.retrieve": "no asynchronous activities export: GET /activities pages through them",
    "JsonImport.create": "no bulk JSON import jobs: imports are synchronous (Invoice.create) or CSV (docs/csv-import.md)",
    "JsonImport.retrieve": "no bulk JSON import jobs: imports are synchronous (Invoice.create) or CSV",
    "PlanGroup.create": NO_PLAN_GROUPS,
    "PlanGroup.all": NO_PLAN_GROUPS,
    "PlanGroup.all_any": NO_PLAN_GROUPS,
    "PlanGroup.retrieve": NO_PLAN_GROUPS,
    "PlanGroup.modify": NO_PLAN_GROUPS,
    "PlanGroup.destroy": NO_PLAN_GROUPS,
    "PlanGroupPlans.all": NO_PLAN_GROUPS,
    "SubscriptionEvent.create": NO_SUBSCRIPTION_EVENTS,
    "SubscriptionEvent.all": NO_SUBSCRIPTION_EVENTS,
    "SubscriptionEvent.modify_with_params": NO_SUBSCRIPTION_EVENTS,
    "SubscriptionEvent.destroy_with_params": NO_SUBSCRIPTION_EVENTS,
    "SubscriptionEvent.disable": NO_SUBSCRIPTION_EVENTS,
    "SubscriptionEvent.enable": NO_SUBSCRIPTION_EVENTS,
    "Invoice.disable": NO_INVOICE_EDITS,
    "Invoice.update_status": NO_INVOICE_EDITS,
    "LineItem.create": NO_STANDALONE_LINES,
    "LineItem.retrieve": NO_STANDALONE_LINES,
    "LineItem.modify": NO_STANDALONE_LINES,
    "LineItem.destroy": NO_STANDALONE_LINES,
    "LineItem.disable": NO_STANDALONE_LINES,
    "Transaction.retrieve": NO_STANDALONE_TRANSACTIONS,
    "Transaction.modify": NO_STANDALONE_TRANSACTIONS,
    "Transaction.destroy": NO_STANDALONE_TRANSACTIONS,
    "Transaction.disable": NO_STANDALONE_TRANSACTIONS,
    "Metrics.all": ONLY_THREE_METRICS,
    "Metrics.arpa": ONLY_THREE_METRICS,
    "Metrics.asp": ONLY_THREE_METRICS,
    "Metrics.customer_churn_rate": ONLY_THREE_METRICS,
    "Metrics.mrr_churn_rate": ONLY_THREE_METRICS,
    "Metrics.ltv": ONLY_THREE_METRICS,
}

# Client methods that are the same call as a row above under another name.
ALIASES = {"Subscription": "CustomerSubscription"}


def method_of(row_name: str) -> str:
    """`Tags.add[email]` → `Tags.add`."""
    return row_name.split("[", 1)[0]


@pytest.mark.parametrize("name", sorted(WALK))
def test_client_call(name, cfg, world):
    _http, check = WALK[name]
    check(cfg, world)


def test_the_table_is_complete():
    covered = {method_of(name) for name in WALK} | set(NOT_SERVED)
    assert not {method_of(name) for name in WALK} & set(NOT_SERVED)

    text = CONTRACT.read_text()
    resources = text[text.index("## 2. Resources"):text.index("## 3. Customer object")]
    named = {f"{cls}.{method}" for cls, method in re.findall(r"`([A-Z][A-Za-z]+)\.([a-z][A-Za-z_]*)[(`]", resources)}
    assert named - covered == set(), "calls the contract names that are neither walked nor listed as not served"

    defined = set()
    for exported in dir(chartmogul):
        cls = getattr(chartmogul, exported)
        if isinstance(cls, type) and issubclass(cls, Resource) and cls is not Resource:
            owner = ALIASES.get(exported, exported)
            defined |= {f"{owner}.{name}" for name in vars(cls)
                        if not name.startswith("_") and callable(getattr(cls, name)) and name != "make"}
    assert defined - covered == set(), "client methods that are neither walked nor listed as not served"
