"""The sentence each feed entry shows (services/activities/descriptions.py)."""
from datetime import date

import pytest

from services.activities import descriptions as d


@pytest.mark.parametrize("cents, currency, signed, text", [
    (0, "USD", False, "$0.00"),
    (5, "USD", False, "$0.05"),
    (123456, "usd", False, "$1,234.56"),
    (-500, "EUR", False, "-€5.00"),
    (4900, "GBP", True, "+£49.00"),
    (-4900, "GBP", True, "-£49.00"),
    (0, "USD", True, "$0.00"),
    (1200, "SEK", False, "12.00 SEK"),
    (100_000_000_00, "JPY", False, "¥100,000,000.00"),
])
def test_money(cents, currency, signed, text):
    assert d.money(cents, currency, signed=signed) == text


@pytest.mark.parametrize("seconds, text", [(0, ""), (1, "1 min"), (89, "1 min"), (90, "2 min"), (3600, "60 min")])
def test_minutes_of_a_call(seconds, text):
    assert d.minutes(seconds) == text


def test_an_excerpt_is_one_line_cut_at_a_word_with_a_mark():
    assert d.excerpt("  two\n\nlines\tand  spaces ") == "two lines and spaces"
    long = "word " * 100
    cut = d.excerpt(long)
    assert len(cut) <= d.EXCERPT_LENGTH and cut.endswith("word…")
    assert d.excerpt("x" * 500, 10) == "x" * 9 + "…"  # no space to cut at: cut mid-word
    assert d.excerpt(None) == ""


def test_people_and_contacts():
    assert d.person("Jane Doe", "jane@x.io") == "Jane Doe (jane@x.io)"
    assert d.person("", "jane@x.io") == "jane@x.io"
    assert d.person("Jane", None) == "Jane"
    assert d.contact_created("Jane", "Doe", "jane@x.io") == "Contact created: Jane Doe (jane@x.io)"
    assert d.contact_created(None, " ", None) == "Contact created: unnamed contact"


def test_notes_and_calls():
    assert d.note("Renewal next month", "sam@x.io") == "Note by sam@x.io: Renewal next month"
    assert d.note("", None) == "Note"
    assert d.call("Pricing", 300, "sam@x.io") == "Call of 5 min by sam@x.io: Pricing"
    assert d.call("", 0, None) == "Call"


def test_threads_name_at_most_three_participants():
    assert d.thread("Hi", ["a@x.io"], 1) == "Email thread “Hi” with a@x.io (1 message)"
    assert d.thread("Hi", ["a@x.io", "b@x.io", "c@x.io", "d@x.io", "e@x.io"], 4) == \
        "Email thread “Hi” with a@x.io, b@x.io, c@x.io and 2 more (4 messages)"


def test_lifecycle_events():
    assert d.customer_created("Acme") == "Customer created: Acme"
    assert d.customer_merged("Globex") == "Customer merged: Globex was merged into this customer"
    assert d.task_completed("Send\nquote", "sam@x.io") == "Task completed: Send quote (assigned to sam@x.io)"
    assert d.opportunity_created(amount_in_cents=100, currency="USD", pipeline="New business",
                                 pipeline_stage="Discovery", estimated_close_date=date(2023, 12, 22)) == \
        "Opportunity created: $1.00 in New business at Discovery, closing 2023-12-22"


@pytest.mark.parametrize("kind, movement, description, text", [
    ("new_biz", 4900, "purchased the Silver Monthly plan", "New business: purchased the Silver Monthly plan (+$49.00 MRR)"),
    ("expansion", 1000, "", "Expansion (+$10.00 MRR)"),
    ("contraction", -1000, "moved to Bronze", "Contraction: moved to Bronze (-$10.00 MRR)"),
    ("churn", -4900, "cancelled", "Churn: cancelled (-$49.00 MRR)"),
    ("reactivation", 4900, "came back", "Reactivation: came back (+$49.00 MRR)"),
])
def test_mrr_movements(kind, movement, description, text):
    assert d.mrr_movement(type=kind, description=description, mrr_movement=movement, currency="USD") == text


@pytest.mark.parametrize("kind, result, cents, text", [
    ("payment", "successful", 4900, "Payment of $49.00 succeeded"),
    ("payment", "failed", 4900, "Payment of $49.00 failed"),
    ("refund", "successful", -1250, "Refund of $12.50 succeeded"),  # a refund may come signed
    ("refund", "failed", 1250, "Refund of $12.50 failed"),
])
def test_transactions(kind, result, cents, text):
    assert d.transaction(type=kind, result=result, amount_in_cents=cents, currency="USD") == text
