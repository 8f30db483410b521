"""Issue 12 as a user of the official Python client sees it: a customer update with a
`primary_contact`, unmerges (`Customer.unmerge`) that give an external id back with the data that
came with it, every documented customer key, and contacts' integer positions."""

import chartmogul
import pytest
from tests.e2e.support import eventually, status_of, unique

ERR = chartmogul.APIError

# §3 of the contract: every key the customer object documents (Python drops `owner`, but the
# Node, Ruby, PHP and Go clients read it).
CUSTOMER_KEYS = {
    "id", "uuid", "external_id", "external_ids", "data_source_uuid", "data_source_uuids", "name", "email", "company",
    "status", "customer-since", "lead_created_at", "free_trial_started_at", "city", "state", "country", "zip",
    "address", "attributes", "mrr", "arr", "billing-system-url", "chartmogul-url", "billing-system-type",
    "currency", "currency-sign", "website_url", "owner",
}


@pytest.fixture(scope="module")
def source(owner):
    return chartmogul.DataSource.create(owner, data={"name": unique("record-api")}).get()


@pytest.fixture(scope="module")
def plan(owner, source):
    return chartmogul.Plan.create(owner, data={"data_source_uuid": source.uuid, "name": "Silver Monthly",
                                               "interval_count": 1, "interval_unit": "month"}).get()


@pytest.fixture
def new_customer(owner, source):
    def make(**fields):
        data = {"data_source_uuid": source.uuid, "external_id": unique("cus"), "name": "Acme", **fields}
        return chartmogul.Customer.create(owner, data=data).get()

    return make


def contacts_of(config, customer_uuid: str) -> list:
    return list(chartmogul.Contact.all(config, customer_uuid=customer_uuid, per_page=200).get().entries)


def retrieve(config, uuid: str):
    return chartmogul.Customer.retrieve(config, uuid=uuid).get()


def paid_invoice(plan, amount: int, start="2021-03-01", end="2021-04-01") -> dict:
    return {"external_id": unique("inv"), "date": start, "currency": "USD",
            "line_items": [{"type": "subscription", "subscription_external_id": unique("sub"), "plan_uuid": plan.uuid,
                            "service_period_start": start, "service_period_end": end, "amount_in_cents": amount}],
            "transactions": [{"date": start, "type": "payment", "result": "successful"}]}


# ---- 1. PATCH /customers/{uuid} with primary_contact -------------------------------------------------

PRIMARY = {"first_name": "Pat", "last_name": "Lee", "email": "pat@acme.example", "title": "CFO",
           "phone": "+1 555 0100", "linked_in": "https://www.linkedin.com/in/patlee", "twitter": "@patlee",
           "notes": "signs the renewals"}


def test_modify_with_a_primary_contact_creates_it_with_every_field_then_updates_it(owner, new_customer):
    customer = new_customer()

    answer = chartmogul.Customer.modify(owner, uuid=customer.uuid, data={"name": "Acme Inc",
                                                                         "primary_contact": PRIMARY}).get()

    assert answer.name == "Acme Inc"
    [created] = contacts_of(owner, customer.uuid)
    assert {field: getattr(created, field) for field in PRIMARY} == PRIMARY
    assert (created.position, created.customer_external_id) == (1, customer.external_id)

    chartmogul.Customer.update(owner, uuid=customer.uuid, data={  # PUT, the older alias
        "primary_contact": {"title": "CEO", "notes": None}}).get()

    [updated] = contacts_of(owner, customer.uuid)
    assert (updated.uuid, updated.title, updated.notes, updated.first_name) == (created.uuid, "CEO", None, "Pat")


def test_a_primary_contact_update_leaves_the_other_contacts_alone(owner, new_customer, source):
    customer = new_customer(primary_contact={"first_name": "Pat"})
    other = chartmogul.Contact.create(owner, data={"customer_uuid": customer.uuid, "data_source_uuid": source.uuid,
                                                   "first_name": "Sam", "title": "CTO"}).get()

    chartmogul.Customer.modify(owner, uuid=customer.uuid, data={"primary_contact": {"title": "CFO"}}).get()

    contacts = {c.first_name: c for c in contacts_of(owner, customer.uuid)}
    assert (contacts["Pat"].position, contacts["Pat"].title) == (1, "CFO")
    assert (contacts["Sam"].uuid, contacts["Sam"].position, contacts["Sam"].title) == (other.uuid, 2, "CTO")


# ---- 3. every documented customer key ------------------------------------------------------------------

def test_every_documented_customer_key_is_in_every_customer_answer(http, owner, new_customer, source):
    made = new_customer(email=unique("keys") + "@acme.example")
    answers = {
        "create": http.post("/v1/customers", json={"data_source_uuid": source.uuid, "external_id": unique("cus"),
                                                   "name": "Raw"}).json(),
        "retrieve": http.get(f"/v1/customers/{made.uuid}").json(),
        "modify": http.patch(f"/v1/customers/{made.uuid}", json={"city": "Berlin"}).json(),
        "list": http.get("/v1/customers", params={"external_id": made.external_id}).json()["entries"][0],
        "search": http.get("/v1/customers/search", params={"email": made.email}).json()["entries"][0],
    }
    for name, answer in answers.items():
        assert CUSTOMER_KEYS <= set(answer), (name, CUSTOMER_KEYS - set(answer))
        assert answer["billing-system-url"] is None, name  # until a connector sets it
    assert retrieve(owner, made.uuid).billing_system_url is None


# ---- 4. contact positions ------------------------------------------------------------------------------

def test_contact_positions_are_integers_1_for_the_primary_then_creation_order(owner, http, new_customer, source):
    customer = new_customer(primary_contact={"first_name": "Pat"})
    for name, position in (("Sam", None), ("Lee", 7), ("Kim", None)):
        data = {"customer_uuid": customer.uuid, "data_source_uuid": source.uuid, "first_name": name}
        if position:
            data["position"] = position
        chartmogul.Contact.create(owner, data=data).get()

    listed = {c.first_name: c.position for c in contacts_of(owner, customer.uuid)}
    raw = http.get("/v1/contacts", params={"customer_uuid": customer.uuid}).json()["entries"]

    assert listed == {"Pat": 1, "Sam": 2, "Lee": 7, "Kim": 8}
    assert all(isinstance(entry["position"], int) for entry in raw)
    through_customer = chartmogul.Customer.contacts(owner, uuid=customer.uuid).get().entries
    assert sorted(c.position for c in through_customer) == [1, 2, 7, 8]


# ---- 2. unmerges ---------------------------------------------------------------------------------------

def test_unmerge_gives_the_external_id_back_with_what_came_with_it(owner, http, source, plan, new_customer):
    gone = new_customer(name="Gone Labs", email="ops@gone.example", country="FR",
                        attributes={"tags": ["trial"], "custom": [{"type": "Integer", "key": "seats", "value": 5}]},
                        primary_contact={"first_name": "Pat"})
    chartmogul.Contact.create(owner, data={"customer_uuid": gone.uuid, "data_source_uuid": source.uuid,
                                           "first_name": "Kim"}).get()
    survivor = new_customer(name="Survivor", primary_contact={"first_name": "Sam"})
    chartmogul.Invoice.create(owner, uuid=gone.uuid, data={"invoices": [paid_invoice(plan, 3000)]}).get()
    chartmogul.Invoice.create(owner, uuid=survivor.uuid, data={"invoices": [paid_invoice(plan, 5000)]}).get()
    note = chartmogul.Customer.createEntityNote(owner, uuid=gone.uuid, data={"type": "note", "text": "Met Pat"}).get()
    task = chartmogul.Customer.createTask(owner, uuid=gone.uuid, data={
        "task_details": "Send the quote", "assignee": "sam@us.example", "due_date": "2030-01-01"}).get()
    opportunity = chartmogul.Customer.createOpportunity(owner, uuid=gone.uuid, data={
        "owner": "sam@us.example", "pipeline": "New business", "pipeline_stage": "Discovery",
        "estimated_close_date": "2030-01-01", "currency": "USD", "amount_in_cents": 10000}).get()
    eventually(lambda: retrieve(owner, gone.uuid).mrr == 3000)
    chartmogul.Customer.merge(owner, data={"from": {"customer_uuid": gone.uuid},
                                           "into": {"customer_uuid": survivor.uuid}}).get()
    eventually(lambda: len(contacts_of(owner, survivor.uuid)) == 3 and retrieve(owner, survivor.uuid).mrr == 8000)

    answer = chartmogul.Customer.unmerge(owner, data={
        "customer_uuid": survivor.uuid, "data_source_uuid": source.uuid, "external_id": gone.external_id,
        "move_to_new_customer": ["notes", "opportunities"]}).get()

    assert answer is None  # 202
    [new] = chartmogul.Customer.all(owner, external_id=gone.external_id).get().entries
    assert new.uuid not in (gone.uuid, survivor.uuid)
    assert (new.name, new.email, new.country, new.external_ids) == ("Gone Labs", "ops@gone.example", "FR",
                                                                    [gone.external_id])
    assert (new.attributes.tags, new.attributes.custom) == (["trial"], {"seats": 5})
    assert retrieve(owner, survivor.uuid).external_ids == [survivor.external_id]
    eventually(lambda: [(c.first_name, c.position) for c in contacts_of(owner, new.uuid)] == [("Pat", 1), ("Kim", 2)])
    assert [(c.first_name, c.position) for c in contacts_of(owner, survivor.uuid)] == [("Sam", 1)]
    eventually(lambda: (retrieve(owner, new.uuid).mrr, retrieve(owner, survivor.uuid).mrr) == (3000, 5000))
    assert [i.line_items[0].amount_in_cents for i in chartmogul.Invoice.all(owner, uuid=new.uuid).get().invoices] \
        == [3000]
    eventually(lambda: [n.uuid for n in chartmogul.Customer.entityNotes(owner, uuid=new.uuid).get().entries]
               == [note.uuid])
    assert [o.uuid for o in chartmogul.Customer.opportunities(owner, uuid=new.uuid).get().entries] == [opportunity.uuid]
    assert [t.task_uuid for t in chartmogul.Customer.tasks(owner, uuid=survivor.uuid).get().entries] == [task.task_uuid]

    def survivor_feed() -> set:
        kinds = {e["kind"] for e in http.get(f"/v1/customers/{survivor.uuid}/feed").json()["entries"]}
        return kinds if "customer_unmerged" in kinds else None

    assert "customer_merged" in eventually(survivor_feed)


def test_an_unmerge_over_raw_http_answers_202_with_both_customers(http, new_customer, source):
    gone, survivor = new_customer(name="Gone"), new_customer(name="Kept")
    http.post("/v1/customers/merges", json={"from": {"customer_uuid": gone.uuid},
                                            "into": {"customer_uuid": survivor.uuid}})

    response = http.post("/v1/customers/unmerges", json={"customer_uuid": survivor.uuid, "data_source_uuid": source.uuid,
                                                         "external_id": gone.external_id})

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["customer_uuid"] == survivor.uuid
    assert http.get(f"/v1/customers/{body['new_customer_uuid']}").json()["name"] == "Gone"


@pytest.mark.parametrize("change, status, param", [
    ({"external_id": "own"}, 422, "external_id"),
    ({"external_id": "nobody-has-this"}, 422, "external_id"),
    ({"move_to_new_customer": ["invoices"]}, 422, "move_to_new_customer"),
    ({"customer_uuid": "cus_nobody"}, 404, "customer_uuid"),
    ({"external_id": None}, 422, "external_id"),
])
def test_a_bad_unmerge_is_refused_naming_the_field_and_changes_nothing(http, owner, new_customer, source, change,
                                                                       status, param):
    gone, survivor = new_customer(), new_customer()
    chartmogul.Customer.merge(owner, data={"from": {"customer_uuid": gone.uuid},
                                           "into": {"customer_uuid": survivor.uuid}}).get()
    body = {"customer_uuid": survivor.uuid, "data_source_uuid": source.uuid, "external_id": gone.external_id, **change}
    if body["external_id"] == "own":
        body["external_id"] = survivor.external_id

    response = http.post("/v1/customers/unmerges", json=body)

    assert (response.status_code, response.json().get("param")) == (status, param), response.text
    assert retrieve(owner, survivor.uuid).external_ids == [survivor.external_id, gone.external_id]


def test_a_customers_only_external_id_cannot_be_unmerged_and_read_only_keys_may_not(http, cm_config, new_customer,
                                                                                    source):
    alone = new_customer()
    with pytest.raises(ERR) as refused:
        chartmogul.Customer.unmerge(cm_config("owner"), data={
            "customer_uuid": alone.uuid, "data_source_uuid": source.uuid, "external_id": alone.external_id}).get()
    assert status_of(refused.value) == 422
    with pytest.raises(ERR) as forbidden:
        chartmogul.Customer.unmerge(cm_config("read_only"), data={
            "customer_uuid": alone.uuid, "data_source_uuid": source.uuid, "external_id": alone.external_id}).get()
    assert status_of(forbidden.value) == 403
