"""Finding customers by part of their name, company or email for the web page's customer list.

The customers service filters by exact email only; until it can search names itself, the
gateway pages through its list (oldest first, keyset on `id`) and keeps the matches, reading at
most `budget` customers per request. A page may therefore hold fewer matches than asked, with
`has_more` and a cursor to read on. Pure code: the list is read through the `fetch` given.
"""
from __future__ import annotations

from typing import Callable

from roster.errors import ValidationFailed
from roster.pagination import decode_cursor, encode_cursor, page_size

BATCH = 200          # customers asked of the service at once
SCAN_BUDGET = 2000   # customers read per request at most
MAX_QUERY = 200      # characters of search text

Fetch = Callable[[str | None, int], dict]  # (service cursor, size) → {entries, has_more, cursor}


def search_text(value) -> str:
    """Return the search text folded for matching; a 422 naming `q` when it is not usable."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed("q: give some text to look for", param="q")
    if len(value) > MAX_QUERY:
        raise ValidationFailed(f"q: at most {MAX_QUERY} characters", param="q")
    return " ".join(value.split()).casefold()


def matches(customer: dict, text: str) -> bool:
    """Return True when `text` (already folded) is part of the customer's name, company or email."""
    for field in ("name", "company", "email"):
        value = customer.get(field)
        if isinstance(value, str) and text in " ".join(value.split()).casefold():
            return True
    return False


def find_page(fetch: Fetch, *, text: str, cursor: str | None, per_page, budget: int = SCAN_BUDGET) -> dict:
    """Return `{entries, has_more, cursor, scanned}`: the next customers matching `text`, oldest first.

    Our cursor names the service's cursor of the batch being read and the id of the last customer
    handed out, so paging neither repeats nor skips one, whatever the service's batch sizes.
    """
    size = page_size(per_page)
    position = decode_cursor(cursor, at=str, after_id=int) if cursor else {"at": "", "after_id": 0}
    at, after_id = position["at"] or None, position["after_id"]
    found: list[dict] = []
    scanned = 0
    while True:
        batch = fetch(at, BATCH)
        entries = [customer for customer in batch["entries"] if customer["id"] > after_id]
        for customer in entries:
            scanned += 1
            after_id = customer["id"]
            if matches(customer, text):
                found.append(customer)
                if len(found) == size:
                    more = customer is not entries[-1] or batch["has_more"]
                    return _page(found, more, at, after_id, scanned)
        if not batch["has_more"]:
            return _page(found, False, at, after_id, scanned)
        at = batch["cursor"]
        if scanned >= budget:
            return _page(found, True, at, after_id, scanned)


def _page(found: list[dict], more: bool, at: str | None, after_id: int, scanned: int) -> dict:
    cursor = encode_cursor({"at": at or "", "after_id": after_id}) if more else None
    return {"entries": found, "has_more": more, "cursor": cursor, "scanned": scanned}
