"""What the dead-letter tool reads out of a dead letter and what it puts back on replay."""
import datetime

from tools.dlq import DeadLetter, dead_letter_queue, replay_headers

HEADERS = {
    "x-roster-original-queue": "evt-customers-customer_deleted--contacts.customer_deleted",
    "x-roster-original-exchange": "customers.events",
    "x-roster-original-routing-key": "customer_deleted",
    "x-roster-attempts": 5,
    "x-roster-error": "KeyError: 'uuid'\n(after 5 attempts)",
    "x-roster-dead-lettered-at": "2026-11-26T21:00:00+00:00",
    "nameko.call_id_stack": ["customers.delete_customer.1"],
}
BODY = b'{"event_id": "9f0c", "occurred_at": "2026-11-26T20:59:00+00:00", "version": 1, "uuid": "cus_1"}'


def test_a_dead_letter_names_its_service_position_event_id_attempts_time_and_error_on_one_line():
    letter = DeadLetter("contacts", 2, BODY, HEADERS)

    assert letter.describe() == (
        "contacts #2 customers.customer_deleted event_id=9f0c attempts=5 at=2026-11-26T21:00:00+00:00 "
        "error: KeyError: 'uuid' (after 5 attempts)")


def test_a_body_that_is_not_an_event_and_missing_headers_still_describe():
    letter = DeadLetter("contacts", 1, b"\xff not json", {"x-roster-dead-lettered-at": datetime.datetime(
        2026, 11, 26, 21, tzinfo=datetime.timezone.utc)})

    assert letter.event_id is None
    assert letter.original_queue is None
    assert letter.describe() == "contacts #1 ? event_id=- attempts=? at=2026-11-26T21:00:00+00:00 error: -"


def test_replay_headers_reset_attempts_keep_the_origin_and_drop_the_dead_letter_details():
    headers = replay_headers(HEADERS)

    assert headers == {
        "x-roster-original-queue": "evt-customers-customer_deleted--contacts.customer_deleted",
        "x-roster-original-exchange": "customers.events",
        "x-roster-original-routing-key": "customer_deleted",
        "x-roster-attempts": 0,
        "nameko.call_id_stack": ["customers.delete_customer.1"],
    }
    assert HEADERS["x-roster-attempts"] == 5  # the dead letter's own headers are untouched


def test_dead_letter_queue_name():
    assert dead_letter_queue("contacts") == "dead_letters.contacts"
