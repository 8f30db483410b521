"""The human sentence each feed entry shows, one function per kind of fact.

Pure: plain values in, one line of text out (`tests/unit/test_activities_descriptions.py`).
Long free text is cut to an excerpt so a feed line stays a line.
"""
import re
from datetime import date

EXCERPT_LENGTH = 140
CURRENCY_SIGNS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "AUD": "A$", "CAD": "C$", "NZD": "NZ$",
                  "INR": "₹", "BRL": "R$"}
MOVEMENT_LABELS = {
    "new_biz": "New business",
    "expansion": "Expansion",
    "contraction": "Contraction",
    "churn": "Churn",
    "reactivation": "Reactivation",
}
_SPACES = re.compile(r"\s+")


def excerpt(text: str, limit: int = EXCERPT_LENGTH) -> str:
    """Return `text` on one line, cut at a word boundary to at most `limit` characters (… marks a cut)."""
    flat = _SPACES.sub(" ", text or "").strip()
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    if " " in cut[limit // 2:]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:") + "…"


def money(cents: int, currency: str, *, signed: bool = False) -> str:
    """Return an amount in cents as text: `$1,234.56`, `-€5.00`, `12.00 SEK`; `+` shown when `signed`."""
    sign = "-" if cents < 0 else ("+" if signed and cents > 0 else "")
    whole, rest = divmod(abs(cents), 100)
    amount = f"{whole:,}.{rest:02d}"
    symbol = CURRENCY_SIGNS.get(currency.upper())
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {currency.upper()}"


def minutes(seconds: int) -> str:
    """Return a call's length in minutes, as the product shows calls: `1 min`, `25 min`."""
    if seconds <= 0:
        return ""
    return f"{max(1, round(seconds / 60))} min"


def person(name: str | None, email: str | None) -> str:
    """Return `Jane Doe (jane@example.com)`, or whichever half is known."""
    name = (name or "").strip()
    email = (email or "").strip()
    if name and email:
        return f"{name} ({email})"
    return name or email


def customer_created(name: str) -> str:
    return f"Customer created: {name}"


def customer_merged(merged_name: str) -> str:
    return f"Customer merged: {merged_name} was merged into this customer"


def contact_created(first_name: str | None, last_name: str | None, email: str | None) -> str:
    name = " ".join(part.strip() for part in (first_name, last_name) if part and part.strip())
    return f"Contact created: {person(name, email) or 'unnamed contact'}"


def note(text: str, author: str | None) -> str:
    by = f" by {author}" if author else ""
    body = excerpt(text)
    return f"Note{by}: {body}" if body else f"Note{by}"


def call(text: str, seconds: int, author: str | None) -> str:
    length = minutes(seconds)
    head = "Call" + (f" of {length}" if length else "") + (f" by {author}" if author else "")
    body = excerpt(text)
    return f"{head}: {body}" if body else head


def thread(subject: str, participants: list[str], message_count: int) -> str:
    shown = ", ".join(participants[:3]) + (f" and {len(participants) - 3} more" if len(participants) > 3 else "")
    plural = "message" if message_count == 1 else "messages"
    return f"Email thread “{excerpt(subject, 100)}” with {shown} ({message_count} {plural})"


def task_completed(task_details: str, assignee: str) -> str:
    return f"Task completed: {excerpt(task_details)} (assigned to {assignee})"


def opportunity_created(*, amount_in_cents: int, currency: str, pipeline: str, pipeline_stage: str,
                        estimated_close_date: date) -> str:
    return (f"Opportunity created: {money(amount_in_cents, currency)} in {pipeline} at {pipeline_stage}, "
            f"closing {estimated_close_date.isoformat()}")


def mrr_movement(*, type: str, description: str, mrr_movement: int, currency: str) -> str:
    label = MOVEMENT_LABELS.get(type, type)
    change = f"{money(mrr_movement, currency, signed=True)} MRR"
    body = excerpt(description)
    return f"{label}: {body} ({change})" if body else f"{label} ({change})"


def transaction(*, type: str, result: str, amount_in_cents: int, currency: str) -> str:
    kind = "Refund" if type == "refund" else "Payment"
    outcome = "failed" if result == "failed" else "succeeded"
    return f"{kind} of {money(abs(amount_in_cents), currency)} {outcome}"


def customer_unmerged(new_name: str) -> str:
    return f"Customer unmerged: {new_name} was split off into a customer of its own"
