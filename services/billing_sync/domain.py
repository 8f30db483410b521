"""Data source rules as plain functions. No nameko, database or network here."""
from roster.errors import invalid

IMPORT_API = "Import API"
NAME_MAX = 500


def clean_name(value) -> str:
    """Return a data source name trimmed; blank, too long or not text is a 422."""
    if not isinstance(value, str):
        raise invalid("name", "must be a string")
    name = value.strip()
    if not name:
        raise invalid("name", "must not be blank")
    if len(name) > NAME_MAX or "\x00" in name:
        raise invalid("name", f"must be at most {NAME_MAX} characters of text")
    return name
