"""Money rules: rounding to whole cents and converting into the account's currency.

Pure: no nameko, database or network. `docs/mrr.md` explains the rules; `tests/unit/test_mrr_money.py`
covers them.
"""
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from roster.errors import ValidationFailed

ONE_CENT = Decimal(1)

# A rate table: currency code → [(day, rate), ...] sorted oldest first, where `rate` is how many
# units of the account currency one unit of that currency buys on that day.
RateTable = Mapping[str, Sequence[tuple[date, Decimal]]]


def round_cents(value: Decimal) -> int:
    """Return `value` rounded half-up (away from zero) to whole cents, as an int."""
    return int(value.quantize(ONE_CENT, rounding=ROUND_HALF_UP))


def rate_on(
    currency: str, on_date: date | datetime, rates: RateTable, account_currency: str
) -> Decimal:
    """Return the rate from `currency` to `account_currency`: the latest one on or before `on_date`.

    The same currency converts at exactly 1. A currency with no rate on or before the day is a
    ValidationFailed naming the currency and the day (the import answers it with a 422).
    """
    code = currency.upper()
    if code == account_currency.upper():
        return ONE_CENT
    day = on_date.date() if isinstance(on_date, datetime) else on_date
    dated = rates.get(code, ())
    index = bisect_right(dated, day, key=lambda pair: pair[0])
    if index == 0:
        raise ValidationFailed(
            f"currency: no exchange rate from {code} to {account_currency.upper()} "
            f"on or before {day.isoformat()}",
            param="currency",
        )
    return Decimal(dated[index - 1][1])


def convert(
    amount_cents: int,
    currency: str,
    on_date: date | datetime,
    rates: RateTable,
    account_currency: str,
) -> int:
    """Return `amount_cents` of `currency` in whole cents of `account_currency` on `on_date`."""
    return round_cents(amount_cents * rate_on(currency, on_date, rates, account_currency))


def split_cents(amount_cents: int, weights: Sequence[int]) -> list[int]:
    """Return `amount_cents` split in proportion to `weights`, in whole cents that add up exactly.

    Largest remainder: every share is first rounded toward zero, then the cents left over go one
    each to the shares with the largest remainders (the earlier share on a tie).
    """
    total = sum(weights)
    if total <= 0 or any(w < 0 for w in weights):
        raise ValueError("weights: must be non-negative and not all zero")
    sign, amount = (-1 if amount_cents < 0 else 1), abs(amount_cents)
    shares = [amount * w // total for w in weights]
    remainders = [amount * w % total for w in weights]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in by_remainder[: amount - sum(shares)]:
        shares[i] += 1
    return [sign * share for share in shares]
