"""The activity routes' wire shapes against the official client's own schemas: what the gateway
renders from the activities service's answers loads without error and with the right values
(a null where the client forbids one would raise, a missing list key would break its namedtuple)."""
from datetime import date, datetime, timezone

import chartmogul
import pytest
from chartmogul.api.customers.activity import CustomerActivity

from gateway.schemas.activities import (
    activity_wire,
    customer_activity_wire,
    customer_note_wire,
    entity_note_wire,
    opportunity_wire,
    task_wire,
)
from services.activities.schemas import dump_mrr_activity, dump_note, dump_opportunity, dump_task

class Row:
    def __init__(self, **fields):
        self.__dict__.update(fields)


def note(contact_uuid=None, **fields):
    at = datetime(2024, 5, 1, 10, tzinfo=timezone.utc)
    values = {"uuid": "note_1", "customer_uuid": "cus_1", "contact_uuid": contact_uuid, "type": "note", "text": "hi",
              "author_email": None, "call_duration": 0, "created_at": at, "updated_at": at, **fields}
    return dump_note(Row(**values))


def test_an_entity_note_loads_with_the_client_and_a_contact_note_has_no_customer():
    loaded = chartmogul.EntityNote._schema.load(entity_note_wire(note()))
    assert (loaded.uuid, loaded.customer_uuid, loaded.associated_object, loaded.author) == \
        ("note_1", "cus_1", "customer", "")
    contact = chartmogul.EntityNote._schema.load(entity_note_wire(note(contact_uuid="con_1", type="call",
                                                                      call_duration=60)))
    assert (contact.customer_uuid, contact.associated_object, contact.associated_object_uuid) == \
        (None, "contact", "con_1")


def test_a_legacy_note_has_every_field_and_no_null():
    wire = customer_note_wire(note(contact_uuid="con_1"))
    assert set(wire) == {"uuid", "customer_uuid", "type", "text", "author", "call_duration", "created_at",
                         "updated_at"}
    assert None not in wire.values()
    loaded = chartmogul.CustomerNote._schema.load(wire)
    assert loaded.customer_uuid == "cus_1" and loaded.call_duration == 0


def test_a_task_loads_with_the_client():
    at = datetime(2025, 4, 30, tzinfo=timezone.utc)
    task = dump_task(Row(uuid="t-1", customer_uuid="cus_1", contact_uuid="con_1", assignee="a@x.io",
                         task_details="Call", due_date=at, completed_at=None, created_at=at, updated_at=at))
    loaded = chartmogul.Task._schema.load(task_wire(task))
    assert (loaded.task_uuid, loaded.customer_uuid, loaded.completed_at) == ("t-1", None, None)
    assert loaded.associated_object_uuid == "con_1"


@pytest.mark.parametrize("win_likelihood", [None, 40])
def test_an_opportunity_loads_with_the_client_and_leaves_out_an_unset_likelihood(win_likelihood):
    at = datetime(2024, 3, 13, tzinfo=timezone.utc)
    opportunity = dump_opportunity(Row(
        uuid="o-1", customer_uuid="cus_1", owner="a@x.io", pipeline="P", pipeline_stage="S",
        estimated_close_date=date(2024, 12, 22), currency="USD", amount_in_cents=100, type="recurring",
        forecast_category="pipeline", win_likelihood=win_likelihood, custom={}, created_at=at, updated_at=at))
    wire = opportunity_wire(opportunity)
    assert ("win_likelihood" in wire) is (win_likelihood is not None)
    loaded = chartmogul.Opportunity._schema.load(wire)
    assert loaded.estimated_close_date == date(2024, 12, 22) and loaded.amount_in_cents == 100


def test_mrr_activities_load_with_the_client_with_their_hyphenated_keys():
    row = Row(id=7, uuid="mov-1", customer_uuid="cus_1", date=datetime(2024, 3, 1, tzinfo=timezone.utc),
              type="churn", mrr_movement=-4900, mrr=0, arr=0, currency="EUR", description="cancelled",
              subscription_external_id="sub-1", plan_external_id="", data_source_uuid="ds_1")
    activity = dump_mrr_activity(row, Row(name="Acme", external_id="ext-1"))
    mine = CustomerActivity._schema.load(customer_activity_wire(activity))
    assert (mine.id, mine.activity_mrr_movement, mine.currency_sign, mine.type) == (7, -4900, "€", "churn")
    anyone = chartmogul.Activity._schema.load(activity_wire(activity))
    assert (anyone.uuid, anyone.customer_name, anyone.customer_external_id, anyone.billing_connector_uuid) == \
        ("mov-1", "Acme", "ext-1", "ds_1")
    unknown = activity_wire(dump_mrr_activity(row, None))
    assert unknown["customer-name"] == "" and None not in unknown.values()
