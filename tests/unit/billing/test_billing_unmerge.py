"""billing_sync's side of customer unmerges: the invoices billed to the unmerged external id move to
the new customer with the subscriptions only they bill; both customers are recomputed and announced;
the stored day rows stay the sum of the stored movements; a redelivery changes nothing."""
import pytest

from roster.testing import as_handler
from roster.uow import AlreadyHandled
from services.billing_sync import commands
from tests.unit.billing.test_billing_service import (
    day_rows, days_of_stored_movements, events, invoice, stored_movements,
)

NEW = "cus_new"


def merge(service, from_uuid="cus_2", into_uuid="cus_1", event_id="e-merge"):
    payload = {"event_id": event_id, "from_uuid": from_uuid, "into_uuid": into_uuid,
               "into_external_id": f"ext-{into_uuid}", "moved_external_ids": []}
    commands.on_customer_merged(as_handler(service.uow, "handle_customer_merged", payload), payload)


def unmerge_event(source, *, former="cus_2", from_uuid="cus_1", new_uuid=NEW, external_id="ext-cus_2",
                  event_id="e-unmerge"):
    return {"event_id": event_id, "from_uuid": from_uuid, "new_uuid": new_uuid, "former_uuid": former,
            "data_source_uuid": source, "external_id": external_id, "move_to_new_customer": [],
            "new_customer": {"uuid": new_uuid}}


def unmerge(service, payload):
    commands.on_customer_unmerged(as_handler(service.uow, "handle_customer_unmerged", payload), payload)


def owners(service):
    return {i["external_id"]: i["customer_uuid"] for i in service.list_invoices({})["invoices"]}


def test_an_unmerge_gives_the_ids_invoices_back_and_recomputes_both(service, plan, cus, source):
    service.import_invoices("cus_2", [invoice(plan, "m1", 1, 3000, sub="m")])
    service.import_invoices(cus, [invoice(plan, "i1", 2, 5000)])
    merge(service)
    service.import_invoices(cus, [invoice(plan, "i2", 3, 5000)])  # billed to the survivor's own id
    assert service.customer_metrics(cus)["mrr"] == 8000

    unmerge(service, unmerge_event(source))

    assert owners(service) == {"m1": NEW, "i1": cus, "i2": cus}
    survivor, new = service.customer_metrics(cus), service.customer_metrics(NEW)
    assert (survivor["mrr"], survivor["net_payments"], survivor["customer_since"]) == (5000, 10000,
                                                                                     "2024-02-01T00:00:00Z")
    assert (new["mrr"], new["net_payments"], new["customer_since"], new["status"]) == (3000, 3000,
                                                                                      "2024-01-01T00:00:00Z",
                                                                                      "Active")
    assert [m[1] for m in stored_movements(service, cus)] == ["new_biz"]
    assert [m[1] for m in stored_movements(service, NEW)] == ["new_biz"]
    assert {e["customer_uuid"] for e in events(service, "customer_metrics_changed")[-2:]} == {cus, NEW}
    assert day_rows(service) == days_of_stored_movements(service)
    assert service.list_subscriptions(NEW)["entries"][0]["external_id"] == "m"


def test_a_redelivered_unmerge_changes_nothing(service, plan, cus, source):
    service.import_invoices("cus_2", [invoice(plan, "m1", 1, 3000, sub="m")])
    merge(service)
    payload = unmerge_event(source)
    unmerge(service, payload)
    after = (owners(service), events(service), day_rows(service))

    with pytest.raises(AlreadyHandled):
        unmerge(service, payload)
    commands.on_customer_unmerged(service.uow, payload)  # applied again: nothing left to move, nothing said

    assert (owners(service), events(service), day_rows(service)) == after


def test_an_unmerge_handled_before_its_merge_ends_with_the_same_books(service, plan, cus, source, customers):
    customers.add("cus_3", source)
    service.import_invoices("cus_3", [invoice(plan, "d1", 1, 1000, sub="d")])
    service.import_invoices("cus_2", [invoice(plan, "m1", 1, 3000, sub="m")])
    merge(service, from_uuid="cus_3", into_uuid="cus_2", event_id="e-first")  # cus_3 was merged into cus_2 earlier

    unmerge(service, unmerge_event(source))  # the merge of cus_2 into cus_1 comes late
    merge(service)

    assert owners(service) == {"m1": NEW, "d1": cus}  # cus_3's external id stays with cus_1: so do its invoices
    assert service.customer_metrics(NEW)["mrr"] == 3000 and service.customer_metrics(cus)["mrr"] == 1000
    assert day_rows(service) == days_of_stored_movements(service)


def test_a_subscription_billed_on_both_sides_stays_and_its_lines_still_count(service, plan, cus, source):
    service.import_invoices("cus_2", [invoice(plan, "m1", 1, 3000, sub="shared")])
    merge(service)
    service.import_invoices(cus, [invoice(plan, "m2", 2, 3000, sub="shared")])

    unmerge(service, unmerge_event(source))

    assert owners(service) == {"m1": NEW, "m2": cus}
    assert [s["external_id"] for s in service.list_subscriptions(cus)["entries"]] == ["shared"]
    assert day_rows(service) == days_of_stored_movements(service)


def test_a_new_customer_deleted_before_the_unmerge_is_handled_takes_its_invoices_along(service, plan, cus, source):
    service.import_invoices("cus_2", [invoice(plan, "m1", 1, 3000, sub="m")])
    service.import_invoices(cus, [invoice(plan, "i1", 1, 5000)])
    merge(service)
    deleted = {"event_id": "e-del", "uuid": NEW}
    commands.on_customer_deleted(as_handler(service.uow, "handle_customer_deleted", deleted), deleted)

    unmerge(service, unmerge_event(source))

    assert owners(service) == {"i1": cus}
    assert service.customer_metrics(cus)["mrr"] == 5000 and service.customer_metrics(cus)["net_payments"] == 5000
    assert day_rows(service) == days_of_stored_movements(service)


def test_nothing_billed_to_the_id_means_nothing_moves_or_is_said(service, plan, cus, source):
    service.import_invoices(cus, [invoice(plan, "i1", 1, 5000)])
    merge(service)
    before = events(service)

    unmerge(service, unmerge_event(source))

    assert events(service) == before and owners(service) == {"i1": cus}
