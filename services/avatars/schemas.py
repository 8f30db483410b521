"""What the avatars service answers over RPC and announces: plain dicts of one shape."""
import base64


def dump_avatar(avatar) -> dict:
    """Return a cached avatar as `get_avatar` answers it: the image bytes as base64 text."""
    return {
        "content_type": avatar.content_type,
        "body": base64.b64encode(avatar.body).decode("ascii"),
        "etag": avatar.etag,
        "source": avatar.source,
    }


def resolved_event(avatar) -> dict:
    """Return the fields of an `avatar_resolved` event."""
    return {
        "customer_uuid": avatar.customer_uuid,
        "source": avatar.source,
        "content_type": avatar.content_type,
        "etag": avatar.etag,
    }
