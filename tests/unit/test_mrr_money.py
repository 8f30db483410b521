"""Money: half-up rounding, conversion at the latest rate on or before a day, exact splits."""
from datetime import date
from decimal import Decimal

import pytest

from roster.errors import ValidationFailed
from services.billing_sync.money import convert, rate_on, round_cents, split_cents
from tests.unit.mrr_builders import utc

RATES = {"EUR": [(date(2024, 1, 1), Decimal("1.10")), (date(2024, 2, 1), Decimal("1.08"))],
         "JPY": [(date(2024, 1, 1), Decimal("0.0068"))]}


@pytest.mark.parametrize("value, expected", [
    ("0.5", 1), ("1.5", 2), ("2.5", 3), ("2.4999", 2), ("-0.5", -1), ("-2.5", -3), ("7", 7),
])
def test_round_cents_is_half_up_away_from_zero(value, expected):
    assert round_cents(Decimal(value)) == expected


def test_same_currency_needs_no_rate():
    assert convert(1234, "usd", date(1990, 1, 1), {}, "USD") == 1234


def test_conversion_uses_the_latest_rate_on_or_before_the_day():
    assert convert(10000, "EUR", date(2024, 1, 1), RATES, "USD") == 11000   # that day's rate
    assert convert(10000, "EUR", date(2024, 1, 31), RATES, "USD") == 11000  # the day before's
    assert convert(10000, "EUR", utc(2024, 3, 15), RATES, "USD") == 10800   # a datetime works
    assert convert(12345, "JPY", date(2024, 6, 1), RATES, "USD") == 84      # 83.946 → 84


def test_a_missing_rate_names_the_currency_and_the_day():
    with pytest.raises(ValidationFailed) as failure:
        convert(100, "EUR", date(2023, 12, 31), RATES, "USD")  # before the first EUR rate
    assert failure.value.param == "currency"
    assert failure.value.message == (
        "currency: no exchange rate from EUR to USD on or before 2023-12-31")
    with pytest.raises(ValidationFailed, match="GBP .*2024-05-02"):
        rate_on("GBP", date(2024, 5, 2), RATES, "USD")


@pytest.mark.parametrize("amount, weights, expected", [
    (9000, [31, 28, 31], [3100, 2800, 3100]),
    (100, [31, 28, 31], [35, 31, 34]),      # 34.44, 31.11, 34.44: the spare cent to the first tie
    (-100, [31, 28, 31], [-35, -31, -34]),  # credits split the same way
    (1, [1, 1, 1], [1, 0, 0]),
    (0, [5, 5], [0, 0]),
])
def test_split_cents_adds_up_exactly(amount, weights, expected):
    assert split_cents(amount, weights) == expected
    assert sum(split_cents(amount, weights)) == amount


def test_split_cents_refuses_weights_that_cannot_split():
    with pytest.raises(ValueError):
        split_cents(100, [0, 0])
