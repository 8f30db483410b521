"""roster.pagination: integer cursor fields are bounded to what the id columns hold."""
import base64

import pytest

from roster.errors import BadRequest
from roster.pagination import CURSOR_INT_MAX, decode_cursor, encode_cursor


def _raw(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_cursor_int_bound_is_the_signed_32_bit_integer_column():
    assert CURSOR_INT_MAX == 2**31 - 1


def test_largest_id_a_32_bit_column_holds_is_a_cursor():
    assert decode_cursor(encode_cursor({"after_id": 2**31 - 1}), after_id=int) == {"after_id": 2**31 - 1}
    assert decode_cursor(encode_cursor({"date": "2024-01-01T00:00:00Z", "id": 2**31 - 1}),
                         date=str, id=int)["id"] == 2**31 - 1


@pytest.mark.parametrize("forged, fields", [
    (_raw('{"after_id": 2147483648}'), {"after_id": int}),
    (_raw(f'{{"after_id": {2**63 - 1}}}'), {"after_id": int}),
    (_raw('{"date": "2024-01-01T00:00:00Z", "id": 2147483648}'), {"date": str, "id": int}),
])
def test_id_beyond_the_32_bit_column_is_a_400_forged_cursor(forged, fields):
    with pytest.raises(BadRequest) as failure:
        decode_cursor(forged, **fields)
    assert failure.value.param == "cursor"
    assert str(failure.value) == "cursor: is not a cursor this API returned" and failure.value.status == 400
