"""The contact's wire fields, said in three places, kept in step: what the contacts service
renders (services/contacts/schemas.py), what the gateway documents in its OpenAPI
(`ContactOut`), and the table in docs/events.md."""
import re
from pathlib import Path

import pytest

from gateway.schemas.contacts import ContactOut
from roster.errors import NotFound
from roster.testing import unit_of_work
from services.contacts import commands
from services.contacts.models import UNIQUE_RULES, Base, bookkeeping
from services.contacts.schemas import FIELDS

DS = "ds_1"
EVENTS_DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


class Customers:
    def __init__(self, external_id=None):
        self.external_id = external_id

    def get_survivor(self, uuid):
        raise NotFound(f"Customer {uuid} was not merged", param="uuid")

    def get_customer(self, uuid):
        return {"uuid": uuid, "external_id": self.external_id, "data_source_uuid": DS, "data_source_uuids": [DS]}


@pytest.fixture
def uow(tmp_path):
    return unit_of_work(Base, bookkeeping, tmp_path, unique_rules=UNIQUE_RULES)


@pytest.fixture
def bare(uow):
    """A contact with nothing but what every contact has (of a customer without an external id)."""
    return commands.create_contact(uow, {"customer_uuid": "cus_2", "data_source_uuid": DS},
                                   customers=Customers(), billing=None)


@pytest.fixture
def full(uow):
    """A contact with every field set."""
    return commands.create_contact(uow, {
        "customer_uuid": "cus_1", "data_source_uuid": DS, "external_id": "c-1", "first_name": "Jane",
        "last_name": "Doe", "position": 4, "title": "CTO", "email": "jane@example.com", "phone": "+1 555",
        "linked_in": "jane-doe", "twitter": "@jane", "notes": "n", "custom": {"a": 1},
        "last_seen": "2024-01-02T10:00:00-04:00"}, customers=Customers("ext-1"), billing=None)


def test_the_service_renders_exactly_the_fields_the_gateway_documents(bare, full):
    documented = set(ContactOut().fields)
    assert set(FIELDS) == documented
    assert set(bare) == set(full) == documented


def test_a_field_is_documented_as_nullable_exactly_when_the_service_may_leave_it_null(bare, full):
    assert all(value is not None for value in full.values())
    for name, field in ContactOut().fields.items():
        may_be_null = bare[name] is None
        assert field.allow_none == may_be_null, name
        assert field.required == (not may_be_null), name


def test_what_the_service_renders_loads_through_the_documented_schema(bare, full):
    for contact in (bare, full):
        assert ContactOut().validate(contact) == {}


def test_the_events_page_lists_every_field():
    section = EVENTS_DOC.read_text().split("## contacts", 1)[1].split("\n## ", 1)[0]
    table = section.split("### ", 1)[0]
    listed = {name for row in re.findall(r"^\| (.+?) \|", table, re.M) for name in re.findall(r"`(\w+)`", row)}
    assert listed == set(FIELDS)
